//! scale-workers: many simulated workers in the bench process, each speaking the real worker
//! protocol over its own socket to one real scheduler process, running map-noop.
//!
//! A stand-in registers, answers every `Compute` at once with `Started` and `Finished` (no
//! bytes), gives nothing back on `Steal` (everything it got has already finished), sends a
//! heartbeat at the interval the scheduler asks for, and serves no peer port: noop tasks have
//! no inputs, so nobody fetches from it, and the client waits instead of gathering.

use crate::cluster::{limit_for, Cluster, Workers};
use crate::procs::CpuMeter;
use crate::report::{fail, num, Context, Outcome, Report, Stats};
use crate::Bench;
use distd::protocol::{
    dial, encode_frame, write_loop, FrameReader, FromWorker, LinkReader, Role, ToWorker, WorkerInfo,
};
use distd::TaskDesc;
use futures_lite::{AsyncWriteExt, FutureExt};
use smol::Executor;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How many stand-ins connect and register at once (the scheduler's accept backlog is finite).
const CONNECTING_AT_ONCE: usize = 64;

/// How long all stand-ins may take to register.
const REGISTER_LIMIT: Duration = Duration::from_secs(120);

pub fn scale_workers(bench: &Bench) -> Outcome<Report> {
    let nworkers = bench.sizes.standins;
    let n = bench.sizes.standin_tasks;
    let (soft, hard) = bench.open_files;
    // One socket per stand-in in the scheduler and one in the bench, plus their other files.
    let needed = 2 * nworkers as u64 + 100;
    if soft < needed {
        return fail(format!(
            "{nworkers} simulated workers need about {needed} open files per process, but RLIMIT_NOFILE \
             is {soft} (hard limit {hard}) even after raising the soft limit; raise the hard limit \
             (ulimit -Hn) and run again"
        ));
    }
    let label = bench.cluster_label("scale");
    let cluster = Cluster::start(&bench.env, &label, Workers::None)?;
    let start = Instant::now();
    let standins = StandIns::start(&cluster.address, (0..nworkers).map(|i| format!("{label}-{i}")));
    standins.wait_registered(nworkers, REGISTER_LIMIT)?;
    wait_worker_count(&cluster, nworkers)?;
    let register_ms = start.elapsed().as_secs_f64() * 1e3;
    bench.progress(
        "scale-workers",
        0,
        &format!("{nworkers} stand-ins registered in {register_ms:.0} ms"),
    );
    let (mut rates, mut sched_cpu, mut bench_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..bench.sizes.runs {
        let tasks: Vec<TaskDesc> = (0..n)
            .map(|_| TaskDesc::function(cluster.client.unique_key("noop"), "noop", Vec::new()))
            .collect();
        let scheduler = CpuMeter::start(cluster.scheduler_pid)?;
        let ours = CpuMeter::start(std::process::id())?;
        let computed = standins.computed();
        let start = Instant::now();
        let keys = cluster.client.submit(tasks).context("submitting the batch")?;
        cluster.wait_finished(&keys, limit_for(n, 500.0))?;
        let secs = start.elapsed().as_secs_f64();
        let (share, own) = (scheduler.share()?, ours.share()?);
        standins.check()?;
        let ran = standins.computed() - computed;
        if ran < n as u64 {
            return fail(format!("{n} tasks finished but the stand-ins computed only {ran}"));
        }
        bench.progress(
            "scale-workers",
            run,
            &format!(
                "{:.0} tasks/s on {nworkers} workers; scheduler CPU {share:.2} cores, bench {own:.2}",
                n as f64 / secs
            ),
        );
        rates.push(n as f64 / secs);
        sched_cpu.push(share);
        bench_cpu.push(own);
        cluster.client.release(&keys).context("releasing the batch")?;
        cluster.wait_idle(Duration::from_secs(60))?;
    }
    Ok(Report::new("scale-workers", "tasks/s", &rates)
        .param("workers", nworkers)
        .param("tasks", n)
        .param("simulated", "in-process stand-ins speaking the worker protocol")
        .field("scheduler_cpu", num(Stats::of(&sched_cpu).median))
        .field("bench_cpu", num(Stats::of(&bench_cpu).median))
        .field("register_ms", num(register_ms))
        .field("open_files_limit", soft))
}

/// Waits until the scheduler lists `n` workers.
fn wait_worker_count(cluster: &Cluster, n: usize) -> Outcome<()> {
    let deadline = Instant::now() + REGISTER_LIMIT;
    loop {
        let have = cluster.info()?.workers.len();
        if have == n {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return fail(format!("the scheduler lists {have} workers, expected {n}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What the stand-ins report to the bench.
#[derive(Default)]
struct Shared {
    registered: AtomicUsize,
    computed: AtomicU64,
    /// Why stand-ins stopped, for those that did.
    errors: Mutex<Vec<String>>,
}

/// The simulated workers, on one executor thread of their own. Dropping them closes every
/// connection.
pub struct StandIns {
    shared: Arc<Shared>,
    /// One per stand-in; dropping one cancels it.
    tasks: Vec<smol::Task<()>>,
    /// Closed to stop the executor thread.
    stop: Option<async_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StandIns {
    /// Starts one stand-in per name, registering with the scheduler at `address`.
    pub fn start(address: &str, names: impl Iterator<Item = String>) -> StandIns {
        let executor = Arc::new(Executor::new());
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let thread = {
            let executor = executor.clone();
            std::thread::spawn(move || {
                let _ = smol::block_on(executor.run(stopped.recv()));
            })
        };
        let shared = Arc::new(Shared::default());
        let gate = Arc::new(smol::lock::Semaphore::new(CONNECTING_AT_ONCE));
        let address = address.trim_start_matches("tcp://").to_string();
        let tasks = names
            .map(|name| {
                let (address, shared, gate) = (address.clone(), shared.clone(), gate.clone());
                executor.spawn(async move {
                    if let Err(e) = stand_in(&address, &name, &shared, &gate).await {
                        shared
                            .errors
                            .lock()
                            .expect("the error list lock is never poisoned")
                            .push(format!("stand-in {name}: {e}"));
                    }
                })
            })
            .collect();
        StandIns {
            shared,
            tasks,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn computed(&self) -> u64 {
        self.shared.computed.load(Ordering::Relaxed)
    }

    /// Fails with the first stand-in that stopped, and how many did.
    fn check(&self) -> Outcome<()> {
        let errors = self
            .shared
            .errors
            .lock()
            .expect("the error list lock is never poisoned");
        match errors.first() {
            None => Ok(()),
            Some(first) => fail(format!("{} stand-ins stopped; the first: {first}", errors.len())),
        }
    }

    fn wait_registered(&self, n: usize, limit: Duration) -> Outcome<()> {
        let deadline = Instant::now() + limit;
        loop {
            self.check()?;
            let have = self.shared.registered.load(Ordering::Relaxed);
            if have == n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return fail(format!("only {have} of {n} stand-ins registered within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for StandIns {
    fn drop(&mut self) {
        // Cancel while the executor still runs, then stop it.
        self.tasks.clear();
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One simulated worker, from connect until its connection ends or it is cancelled.
async fn stand_in(address: &str, name: &str, shared: &Shared, gate: &smol::lock::Semaphore) -> Result<(), String> {
    let permit = gate.acquire().await;
    // The one dial of distd, TLS and all, as a real worker's.
    let link = dial(address, Role::Worker, Role::Scheduler, Duration::ZERO)
        .await
        .map_err(|e| format!("cannot connect to {address}: {e}"))?
        .link;
    let mut stream = link.writer;
    let info = WorkerInfo {
        name: name.to_string(),
        // Nothing ever fetches from a stand-in; this is the discard port, never served here.
        peer_address: "127.0.0.1:9".into(),
        nthreads: 1,
        resources: Vec::new(),
        memory_limit: 0,
        pid: std::process::id(),
        host: "127.0.0.1".into(),
    };
    let mut frame = Vec::new();
    encode_frame(&mut frame, &FromWorker::Register(info)).map_err(|e| format!("encoding Register: {e}"))?;
    stream
        .write_all(&frame)
        .await
        .map_err(|e| format!("sending Register: {e}"))?;
    stream.flush().await.map_err(|e| format!("sending Register: {e}"))?;
    let mut reader = FrameReader::new(link.reader);
    let every = match reader.next::<ToWorker>().await {
        Ok(Some(ToWorker::Registered { heartbeat_ms, .. })) => Duration::from_millis(heartbeat_ms.max(10)),
        Ok(Some(other)) => return Err(format!("expected Registered, got {other:?}")),
        Ok(None) => return Err("the scheduler closed the connection during registration".into()),
        Err(e) => return Err(format!("reading Registered: {e}")),
    };
    drop(permit);
    shared.registered.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = async_channel::unbounded();
    let writer = async {
        match write_loop(rx, &mut stream).await {
            Ok(()) => Err("the writer stopped".to_string()),
            Err(e) => Err(format!("writing to the scheduler: {e}")),
        }
    };
    let heartbeat = {
        let tx = tx.clone();
        async move {
            loop {
                smol::Timer::after(every).await;
                if tx.send(FromWorker::Heartbeat { memory: 0 }).await.is_err() {
                    return Err("the writer stopped".to_string());
                }
            }
        }
    };
    serve(&mut reader, &tx, shared).or(writer).or(heartbeat).await
}

/// Answers the scheduler's messages until the connection ends.
async fn serve(
    reader: &mut FrameReader<LinkReader>,
    tx: &async_channel::Sender<FromWorker>,
    shared: &Shared,
) -> Result<(), String> {
    // Scheduler messages read so far, `Registered` included: reports of results carry it.
    let mut seen = 1;
    loop {
        let msg = match reader.next::<ToWorker>().await {
            Ok(Some(m)) => m,
            Ok(None) => return Err("the scheduler closed the connection".into()),
            Err(e) => return Err(format!("reading from the scheduler: {e}")),
        };
        seen += 1;
        let replies = match msg {
            ToWorker::Compute(task) => {
                shared.computed.fetch_add(1, Ordering::Relaxed);
                vec![
                    FromWorker::Started {
                        task: task.id,
                        attempt: task.attempt,
                    },
                    FromWorker::Finished {
                        task: task.id,
                        attempt: task.attempt,
                        nbytes: 0,
                        fetched: Vec::new(),
                        seen,
                    },
                ]
            }
            // Every task it was given has already finished: nothing to give back.
            ToWorker::Steal { .. } => vec![FromWorker::Stolen { tasks: Vec::new() }],
            ToWorker::PutData { task, data, .. } => vec![FromWorker::DataStored {
                task,
                nbytes: data.len() as u64,
            }],
            ToWorker::Shutdown { reason } => return Err(format!("the scheduler shut down: {reason}")),
            // Registered again, ReleaseData, Cancel: a stand-in holds nothing and runs nothing.
            _ => Vec::new(),
        };
        for r in replies {
            tx.try_send(r).map_err(|_| "the writer stopped".to_string())?;
        }
    }
}
