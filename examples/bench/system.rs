//! Workloads about the processes rather than task throughput: the scheduler's and the
//! client's memory per pending task, `distd local` startup time, and how fast a nanny replaces a killed worker.

use crate::cluster::{limit_for, Cluster, Workers, START_LIMIT};
use crate::procs::{rss_bytes, status_bytes, Output, Proc};
use crate::report::{fail, num, whole, Context, Outcome, Report, Stats};
use crate::Bench;
use std::time::{Duration, Instant};

/// Memory per pending task of a 1,000,000-task graph (`n` noop tasks pending on one blocked
/// task), in both processes that hold it, submitted in one call by a real client process:
/// `distd run GRAPH.toml --scheduler ADDR`. The figure is the scheduler's RSS growth per
/// task; the client's is its peak RSS (`VmHWM`, graph file read, parsed and submitted) less
/// that of the same command on a one-task graph, per task. A fresh cluster per run, so every
/// run starts from the same baseline.
pub fn memory(bench: &Bench) -> Outcome<Report> {
    let n = bench.sizes.memory_tasks;
    let dir = bench.env.dir.join(bench.cluster_label("memory-graphs"));
    std::fs::create_dir_all(&dir).context(format!("cannot create {}", dir.display()))?;
    let graph = dir.join("graph.toml");
    let one = dir.join("one.toml");
    write_pending_graph(&graph, n, "big")?;
    write_pending_graph(&one, 1, "one")?;
    let mut samples: Vec<[f64; 6]> = Vec::new();
    for run in 0..bench.sizes.runs {
        let cluster = Cluster::start(&bench.env, &bench.cluster_label("memory"), Workers::Plain(2))?;
        let before = rss_bytes(cluster.scheduler_pid)?;
        let base = run_pending_graph(bench, &cluster, &one, 1, &dir.join(format!("one-{run}.log")))?;
        // The client gone, its tasks are forgotten: wait for that, so the scheduler holds
        // only the big graph next (its blocker still sleeps on a worker thread).
        wait_for_tasks(&cluster, PENDING, 0, Duration::from_secs(30))?;
        let big = run_pending_graph(bench, &cluster, &graph, n, &dir.join(format!("run-{run}.log")))?;
        let scheduler = (big.scheduler_rss as f64 - before as f64) / n as f64;
        let client = (big.client_peak as f64 - base.client_peak as f64) / n as f64;
        bench.progress(
            "memory",
            run,
            &format!(
                "scheduler RSS {:.1} -> {:.1} MiB: {scheduler:.0} bytes per pending task; client peak RSS \
                 {:.1} MiB (one task: {:.1}), {:.1} MiB once submitted: {client:.0} bytes per task; \
                 submitted in {:.1} s",
                before as f64 / 1048576.0,
                big.scheduler_rss as f64 / 1048576.0,
                big.client_peak as f64 / 1048576.0,
                base.client_peak as f64 / 1048576.0,
                big.client_rss as f64 / 1048576.0,
                big.secs,
            ),
        );
        samples.push([
            scheduler,
            client,
            before as f64,
            big.scheduler_rss as f64,
            big.client_peak as f64,
            big.secs,
        ]);
        // Dropping the cluster kills it: cancelling a million tasks would only measure that.
    }
    let column = |i: usize| Stats::of(&samples.iter().map(|s| s[i]).collect::<Vec<_>>()).median;
    let per_task: Vec<f64> = samples.iter().map(|s| s[0]).collect();
    Ok(Report::new("memory", "bytes/task", &per_task)
        .param("tasks", n)
        .param("submitted", "in one call: distd run GRAPH.toml --scheduler ADDR")
        .param("blocked_on", "one `sleep 600s` function task of the graph")
        .param("wanted", "every pending task (each is a sink, so an output of the run)")
        .param(
            "client_bytes_per_task",
            "peak RSS (VmHWM) of the distd run process less that of one on a one-task graph, per task",
        )
        .field("client_bytes_per_task", whole(column(1)))
        .field("rss_before", whole(column(2)))
        .field("rss_after", whole(column(3)))
        .field("client_peak_rss", whole(column(4)))
        .field("submit_s", num(column(5))))
}

/// A graph of one blocking task (a function sleep, not a `sleep` command: it dies with its
/// worker when the cluster is killed, so it leaves no process behind) and `n` noop tasks on it.
/// Keys start with `tag`, so that graphs run on one cluster never share a task.
fn write_pending_graph(path: &std::path::Path, n: usize, tag: &str) -> Outcome<()> {
    use std::io::Write;
    let file = std::fs::File::create(path).context(format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut text =
        format!("[[task]]\nkey = \"{tag}-blocker\"\nfunction = \"sleep\"\nargs = \"600s\"\noutput = false\n");
    for i in 0..n {
        text.push_str(&format!(
            "\n[[task]]\nkey = \"{tag}-{i:07}\"\nfunction = \"noop\"\ndeps = [\"{tag}-blocker\"]\n"
        ));
        if text.len() > 1 << 20 {
            out.write_all(text.as_bytes()).context("cannot write the graph")?;
            text.clear();
        }
    }
    out.write_all(text.as_bytes()).context("cannot write the graph")?;
    out.flush().context("cannot write the graph")
}

/// What one `distd run` of a pending graph cost, once the scheduler held all of it.
struct PendingRun {
    client_peak: u64,
    client_rss: u64,
    scheduler_rss: u64,
    /// From the client's start until the scheduler held every pending task.
    secs: f64,
}

/// Runs `distd run graph --scheduler ADDR` until the scheduler holds its `n` pending tasks,
/// measures both processes, and stops the client.
fn run_pending_graph(
    bench: &Bench,
    cluster: &Cluster,
    graph: &std::path::Path,
    n: usize,
    log: &std::path::Path,
) -> Outcome<PendingRun> {
    let args: Vec<String> = vec![
        "run".into(),
        graph.display().to_string(),
        "--scheduler".into(),
        cluster.address.clone(),
        "--no-progress".into(),
    ];
    let start = Instant::now();
    let mut client = Proc::spawn("distd run", &bench.env.distd, &args, log, Output::Discard)?;
    // The blocker and its dependents: some are queued on the blocker's worker behind it.
    let waiting = wait_for_tasks(cluster, PENDING, n as u64 + 1, limit_for(n, 10_000.0));
    client.check_alive()?;
    waiting?;
    let secs = start.elapsed().as_secs_f64();
    let (client_peak, client_rss) = (
        status_bytes(client.pid(), "VmHWM")?,
        status_bytes(client.pid(), "VmRSS")?,
    );
    Ok(PendingRun {
        client_peak,
        client_rss,
        scheduler_rss: rss_bytes(cluster.scheduler_pid)?,
        secs,
    })
}

/// The states of a task that has not run yet.
const PENDING: &[&str] = &["waiting", "processing"];

/// Waits until the scheduler counts `count` tasks in `states` together.
fn wait_for_tasks(cluster: &Cluster, states: &[&str], count: u64, limit: Duration) -> Outcome<()> {
    let deadline = Instant::now() + limit;
    loop {
        // The request queues behind the submissions on the same connection, so it may take
        // as long as they do.
        let info = cluster.info_within(limit)?;
        let have: u64 = info
            .tasks
            .iter()
            .filter(|(s, _)| states.contains(&s.as_str()))
            .map(|(_, n)| *n)
            .sum();
        if have == count {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return fail(format!(
                "expected {count} tasks {}, the scheduler has {:?}",
                states.join(" or "),
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
