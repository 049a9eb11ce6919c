//! A real cluster on 127.0.0.1 for one workload: a `distd scheduler` process and its workers
//! (plain `--no-nanny` processes or one nanny), a client connected to it, and the bounded
//! waits every workload uses. Dropping the cluster kills and reaps all of its processes.

use crate::procs::{reap_orphans, Output, Proc};
use crate::report::{fail, Context, Failure, Outcome};
use distd::protocol::ClusterInfo;
use distd::{Client, ClientError, KeyStatus};
use futures_lite::FutureExt;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a process may take to start and say so.
pub const START_LIMIT: Duration = Duration::from_secs(30);

/// How long a single request to the scheduler may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// What the bench knows before it starts any cluster.
pub struct Env {
    /// The `distd` executable (target/release/distd).
    pub distd: PathBuf,
    /// Per-suite folder for the processes' logs and local directories.
    pub dir: PathBuf,
}

/// The workers a cluster starts with.
#[derive(Clone, Copy, Debug)]
pub enum Workers {
    None,
    /// `n` processes `distd worker ADDR --nthreads 1 --no-nanny`.
    Plain(usize),
    /// One nanny, `distd worker ADDR --nthreads 1 --nworkers n`.
    Nanny(usize),
}

pub struct Cluster {
    /// `tcp://127.0.0.1:PORT`.
    pub address: String,
    pub client: Client,
    /// Worker names, in start order (plain worker i is `LABEL-i`).
    pub worker_names: Vec<String>,
    pub scheduler_pid: u32,
    /// The scheduler first, then worker or nanny processes.
    procs: Vec<Proc>,
    /// Folder of this cluster's logs and local directories.
    dir: PathBuf,
    distd: PathBuf,
}

impl Cluster {
    /// Starts a scheduler and `workers`, connects a client and waits for every worker.
    pub fn start(env: &Env, label: &str, workers: Workers) -> Outcome<Cluster> {
        let dir = env.dir.join(label);
        std::fs::create_dir_all(&dir).context(format!("cannot create {}", dir.display()))?;
        let args: Vec<String> = ["scheduler", "--host", "127.0.0.1", "--port", "0"]
            .map(String::from)
            .into();
        let mut scheduler = Proc::spawn(
            "scheduler",
            &env.distd,
            &args,
            &dir.join("scheduler.log"),
            Output::Lines,
        )?;
        let line = scheduler.expect_line(START_LIMIT, |l| l.starts_with("scheduler at "))?;
        let address = line
            .trim()
            .strip_prefix("scheduler at ")
            .context(format!("the scheduler's first line is {line:?}"))?
            .to_string();
        let scheduler_pid = scheduler.pid();
        let client = connect(&address)?;
        let mut cluster = Cluster {
            address,
            client,
            worker_names: Vec::new(),
            scheduler_pid,
            procs: vec![scheduler],
            dir,
            distd: env.distd.clone(),
        };
        match workers {
            Workers::None => {}
            Workers::Plain(n) => {
                for i in 0..n {
                    cluster.add_plain_worker(&format!("{label}-{i}"))?;
                }
            }
            Workers::Nanny(n) => {
                cluster.add_nanny(label, n)?;
            }
        }
        let names = cluster.worker_names.clone();
        cluster.wait_for_workers(&names, START_LIMIT)?;
        Ok(cluster)
    }

    /// Starts `distd worker ADDR --nthreads 1 --no-nanny --name NAME`.
    pub fn add_plain_worker(&mut self, name: &str) -> Outcome<()> {
        let args = vec![
            "worker".into(),
            self.address.clone(),
            "--nthreads".into(),
            "1".into(),
            "--no-nanny".into(),
            "--name".into(),
            name.into(),
            "--local-directory".into(),
            self.dir.join(name).display().to_string(),
        ];
        let log = self.dir.join(format!("{name}.log"));
        let p = Proc::spawn(&format!("worker {name}"), &self.distd, &args, &log, Output::Discard)?;
        self.procs.push(p);
        self.worker_names.push(name.to_string());
        Ok(())
    }

    /// Starts a nanny `distd worker ADDR --nthreads 1 --nworkers N --name NAME`; its workers
    /// are `NAME-i` (or `NAME` when N is 1). Returns the index of the nanny for `stop_proc`.
    pub fn add_nanny(&mut self, name: &str, nworkers: usize) -> Outcome<usize> {
        let args = vec![
            "worker".into(),
            self.address.clone(),
            "--nthreads".into(),
            "1".into(),
            "--nworkers".into(),
            nworkers.to_string(),
            "--name".into(),
            name.into(),
            "--local-directory".into(),
            self.dir.join(name).display().to_string(),
        ];
        let log = self.dir.join(format!("nanny-{name}.log"));
        let p = Proc::spawn(&format!("nanny {name}"), &self.distd, &args, &log, Output::Discard)?;
        self.procs.push(p);
        if nworkers == 1 {
            self.worker_names.push(name.to_string());
        } else {
            self.worker_names.extend((0..nworkers).map(|i| format!("{name}-{i}")));
        }
        Ok(self.procs.len() - 1)
    }

    /// Kills the process at `index` (from `add_nanny`) and reaps it and its orphans.
    pub fn stop_proc(&mut self, index: usize) {
        assert!(
            index > 0,
            "index 0 is the scheduler, which lives as long as the cluster"
        );
        drop(self.procs.remove(index));
        self.reap_orphans();
    }

    /// Fails if the scheduler or any worker process has exited.
    pub fn check_alive(&mut self) -> Outcome<()> {
        self.procs.iter_mut().try_for_each(|p| p.check_alive())
    }

    /// The scheduler's view of the cluster, within a bounded time.
    pub fn info(&self) -> Outcome<ClusterInfo> {
        self.info_within(REQUEST_LIMIT)
    }

    /// The scheduler's view, allowing `limit` (it answers after what the client sent before).
    pub fn info_within(&self, limit: Duration) -> Outcome<ClusterInfo> {
        within(limit, "asking the scheduler for info", self.client.as_async().info())
    }

    /// Waits until a worker of each name is registered.
    pub fn wait_for_workers(&mut self, names: &[String], limit: Duration) -> Outcome<()> {
        let deadline = Instant::now() + limit;
        loop {
            let info = self.info()?;
            let missing: Vec<&String> = names
                .iter()
                .filter(|n| !info.workers.iter().any(|w| &w.name == *n))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                return fail(format!(
                    "workers {missing:?} did not register within {limit:?} (logs in {})",
                    self.dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the scheduler knows no task at all (after releases), so runs do not overlap.
    pub fn wait_idle(&self, limit: Duration) -> Outcome<()> {
        let deadline = Instant::now() + limit;
        loop {
            let info = self.info()?;
            let known: u64 = info.tasks.iter().map(|(_, n)| n).sum();
            if known == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return fail(format!(
                    "the scheduler still knows tasks {:?} {limit:?} after they were released",
                    info.tasks
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until every key has finished; fails on a timeout or an erred key.
    pub fn wait_finished(&self, keys: &[String], limit: Duration) -> Outcome<()> {
        let what = format!("waiting for {} tasks", keys.len());
        within(limit, &what, self.client.as_async().wait(keys))?;
        for k in keys {
            match self.client.status(k) {
                Some(KeyStatus::Finished { .. }) => {}
                other => return fail(format!("task {k:?} did not finish: {other:?}")),
            }
        }
        Ok(())
    }

    /// Waits for the keys and fetches their results from the workers.
    pub fn gather(&self, keys: &[String], limit: Duration) -> Outcome<Vec<Vec<u8>>> {
        let what = format!("gathering {} results", keys.len());
        within(limit, &what, self.client.as_async().gather(keys))
    }

    /// A few tasks through every worker first, so connections exist before anything is timed.
    pub fn warm_up(&self) -> Outcome<()> {
        let tasks: Vec<distd::TaskDesc> = (0..4 * self.worker_names.len().max(1))
            .map(|_| distd::TaskDesc::function(self.client.unique_key("warm"), "noop", Vec::new()))
            .collect();
        let keys = self.client.submit(tasks).context("submitting warm-up tasks")?;
        self.gather(&keys, Duration::from_secs(30))?;
        self.client.release(&keys).context("releasing warm-up tasks")?;
        self.wait_idle(Duration::from_secs(30))
    }

    fn reap_orphans(&self) {
        let ours: Vec<u32> = self.procs.iter().map(Proc::pid).collect();
        let left = reap_orphans(&ours, Duration::from_secs(5));
        if !left.is_empty() {
            eprintln!("bench: WARNING: processes {left:?} survived SIGKILL for 5 s");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Workers first, then the scheduler: each is killed with its process group and reaped.
        while self.procs.len() > 1 {
            drop(self.procs.pop());
        }
        self.procs.clear();
        self.reap_orphans();
    }
}

/// Connects a client, giving up after `START_LIMIT` (the blocking connect has no timeout of its
/// own, so it runs on a helper thread that is abandoned if it hangs).
pub fn connect(address: &str) -> Outcome<Client> {
    let (tx, rx) = std::sync::mpsc::channel();
    let addr = address.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(Client::connect(&addr));
    });
    match rx.recv_timeout(START_LIMIT) {
        Ok(client) => client.context(format!("connecting a client to {address}")),
        Err(_) => fail(format!(
            "connecting a client to {address}: no answer within {START_LIMIT:?}"
        )),
    }
}

/// Runs a client future to completion, failing if it takes longer than `limit`.
pub fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = Result<T, ClientError>>) -> Outcome<T> {
    let timed = async { Some(fut.await) }.or(async {
        smol::Timer::after(limit).await;
        None
    });
    match smol::block_on(timed) {
        Some(result) => result.context(what),
        None => Err(Failure(format!("{what}: no answer within {limit:?}"))),
    }
}

/// A bound for a batch of `n` tasks: a fixed allowance plus `n` at no less than `min_rate`
/// tasks per second. Only there so that a stuck run fails instead of hanging.
pub fn limit_for(n: usize, min_rate: f64) -> Duration {
    Duration::from_secs(30) + Duration::from_secs_f64(n as f64 / min_rate)
}
