//! Workloads about the processes rather than task throughput: the scheduler's memory per
//! pending task, `distd local` startup time, and how fast a nanny replaces a killed worker.

use crate::cluster::{limit_for, Cluster, Workers, START_LIMIT};
use crate::procs::{rss_bytes, Output, Proc};
use crate::report::{fail, num, whole, Context, Outcome, Report, Stats};
use crate::Bench;
use distd::TaskDesc;
use std::time::{Duration, Instant};

/// The scheduler's RSS growth per task with `n` noop tasks pending on one blocked task.
/// A fresh cluster per run, so every run starts from the same baseline.
pub fn memory(bench: &Bench) -> Outcome<Report> {
    let n = bench.sizes.memory_tasks;
    let batch = bench.sizes.memory_batch;
    let (mut per_task, mut before_all, mut after_all, mut submit_secs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..bench.sizes.runs {
        let cluster = Cluster::start(&bench.env, &bench.cluster_label("memory"), Workers::Plain(2))?;
        // A function sleep (not a `sleep` command): it dies with its worker when the cluster
        // is killed, so it leaves no process behind.
        let blocker = cluster.client.unique_key("blocker");
        cluster
            .client
            .submit(vec![TaskDesc::function(blocker.clone(), "sleep", b"600s".to_vec())])
            .context("submitting the blocking task")?;
        wait_for_state(&cluster, "processing", 1, Duration::from_secs(30))?;
        let before = rss_bytes(cluster.scheduler_pid)?;
        let start = Instant::now();
        let mut submitted = 0;
        while submitted < n {
            let size = batch.min(n - submitted);
            let tasks: Vec<TaskDesc> = (0..size)
                .map(|_| {
                    TaskDesc::function(cluster.client.unique_key("pending"), "noop", Vec::new())
                        .with_deps([blocker.clone()])
                })
                .collect();
            cluster.client.submit(tasks).context("submitting pending tasks")?;
            submitted += size;
        }
        wait_for_state(&cluster, "waiting", n as u64, limit_for(n, 10_000.0))?;
        let secs = start.elapsed().as_secs_f64();
        let after = rss_bytes(cluster.scheduler_pid)?;
        let bytes = after as f64 - before as f64;
        bench.progress(
            "memory",
            run,
            &format!(
                "scheduler RSS {:.1} -> {:.1} MiB: {:.0} bytes per pending task (submitted in {secs:.1} s)",
                before as f64 / 1048576.0,
                after as f64 / 1048576.0,
                bytes / n as f64
            ),
        );
        per_task.push(bytes / n as f64);
        before_all.push(before as f64);
        after_all.push(after as f64);
        submit_secs.push(secs);
        // Dropping the cluster kills it: cancelling a million tasks would only measure that.
    }
    Ok(Report::new("memory", "bytes/task", &per_task)
        .param("tasks", n)
        .param("batch", batch)
        .param("blocked_on", "one `sleep 600s` function task")
        .param(
            "wanted",
            "every pending task (the scheduler drops unwanted new tasks at once)",
        )
        .field("rss_before", whole(Stats::of(&before_all).median))
        .field("rss_after", whole(Stats::of(&after_all).median))
        .field("submit_s", num(Stats::of(&submit_secs).median)))
}

/// Waits until the scheduler counts `count` tasks in `state`.
fn wait_for_state(cluster: &Cluster, state: &str, count: u64, limit: Duration) -> Outcome<()> {
    let deadline = Instant::now() + limit;
    loop {
        // The request queues behind the submissions on the same connection, so it may take
        // as long as they do.
        let info = cluster.info_within(limit)?;
        let have = info
            .tasks
            .iter()
            .find(|(s, _)| s == state)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        if have == count {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return fail(format!(
                "expected {count} tasks {state}, the scheduler has {:?}",
                info.tasks
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `distd local -n 4`: from exec to its "4 workers ready" line.
pub fn startup(bench: &Bench) -> Outcome<Report> {
    let mut millis = Vec::new();
    for run in 0..bench.sizes.startup_runs {
        let dir = bench.env.dir.join(bench.cluster_label("startup"));
        std::fs::create_dir_all(&dir).context(format!("cannot create {}", dir.display()))?;
        let args: Vec<String> = vec![
            "local".into(),
            "-n".into(),
            "4".into(),
            "--local-directory".into(),
            dir.join("work").display().to_string(),
        ];
        let start = Instant::now();
        let mut local = Proc::spawn(
            "distd local",
            &bench.env.distd,
            &args,
            &dir.join("local.log"),
            Output::Lines,
        )?;
        local.expect_line(START_LIMIT, |l| l.trim() == "4 workers ready")?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        drop(local);
        bench.progress("startup", run, &format!("{ms:.1} ms"));
        millis.push(ms);
    }
    Ok(Report::new("startup", "ms", &millis)
        .param("command", "distd local -n 4")
        .param("until", "\"4 workers ready\" on stdout"))
}

/// SIGKILL of a worker under a nanny (`--nworkers 1`) until its replacement is registered.
/// A fresh nanny per run, so each run measures a first crash (no grown backoff).
pub fn restart_time(bench: &Bench) -> Outcome<Report> {
    let label = bench.cluster_label("restart");
    let mut cluster = Cluster::start(&bench.env, &label, Workers::None)?;
    let (mut back_ms, mut gone_ms) = (Vec::new(), Vec::new());
    for run in 0..bench.sizes.restart_runs {
        let name = format!("{label}-{run}");
        let nanny = cluster.add_nanny(&name, 1)?;
        cluster.wait_for_workers(std::slice::from_ref(&name), START_LIMIT)?;
        let info = cluster.info()?;
        let old = info
            .workers
            .iter()
            .find(|w| w.name == name)
            .context(format!("worker {name} vanished right after registering"))?
            .clone();
        // The nanny acts on a periodic timer; killing right after registration would always hit
        // the same phase of it. Spreading the kills over 100 ms keeps the figure unbiased.
        std::thread::sleep(Duration::from_millis(20 + (run as u64 * 37) % 100));
        let start = Instant::now();
        // SAFETY: kill has no memory-safety preconditions; the pid is the live worker's.
        if unsafe { libc::kill(old.pid as i32, libc::SIGKILL) } != 0 {
            return fail(format!(
                "cannot kill worker {name} (pid {}): {}",
                old.pid,
                std::io::Error::last_os_error()
            ));
        }
        let (gone, back) = watch_replacement(&cluster, &name, old.id, start)?;
        bench.progress(
            "restart-time",
            run,
            &format!("old worker gone after {gone:.1} ms, replacement registered after {back:.1} ms"),
        );
        gone_ms.push(gone);
        back_ms.push(back);
        cluster.stop_proc(nanny);
        cluster.worker_names.retain(|n| *n != name);
    }
    Ok(Report::new("restart-time", "ms", &back_ms)
        .param("command", "distd worker ADDR --nworkers 1 --nthreads 1")
        .param("from", "SIGKILL of the worker child")
        .param("until", "a new worker of the same name is registered")
        .param("poll_ms", 1)
        .param("kill_after_register_ms", "20 + (run * 37) % 100")
        .field("gone_ms", num(Stats::of(&gone_ms).median)))
}

/// Polls the scheduler every millisecond until the worker `old` has left and another of the
/// same name has registered; milliseconds since `start` for both.
fn watch_replacement(
    cluster: &Cluster,
    name: &str,
    old: distd::protocol::WorkerId,
    start: Instant,
) -> Outcome<(f64, f64)> {
    let limit = Duration::from_secs(30);
    let mut gone = None;
    loop {
        let info = cluster.info()?;
        let at = start.elapsed().as_secs_f64() * 1e3;
        if gone.is_none() && !info.workers.iter().any(|w| w.id == old) {
            gone = Some(at);
        }
        let replaced = info.workers.iter().any(|w| w.name == name && w.id != old);
        if let (Some(gone), true) = (gone, replaced) {
            return Ok((gone, at));
        }
        if start.elapsed() > limit {
            return fail(format!(
                "worker {name} was not replaced within {limit:?} (old one gone: {})",
                gone.is_some()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
