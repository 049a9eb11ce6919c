//! Task-throughput workloads on a real 2-worker cluster: map-noop (plain and under a nanny),
//! chain, tree, latency, and map-cmd beside the machine's own spawn rate.

use crate::cluster::{limit_for, Cluster, Workers};
use crate::procs::CpuMeter;
use crate::report::{fail, num, Context, Outcome, Report, Stats};
use crate::Bench;
use distd::TaskDesc;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Slowest rate at which noop tasks may run before a run counts as stuck.
const NOOP_MIN_RATE: f64 = 500.0;

/// Slowest rate for command tasks.
const CMD_MIN_RATE: f64 = 50.0;

/// How long released tasks may take to be forgotten by the scheduler.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// `n` independent noop tasks in one batch, gathered. Under nannies when `nanny`. Beside the
/// rate it reports how much of a run was spent before the last task finished (the rest is the
/// gather) and the CPU the scheduler and the workers used, to show where the time goes.
pub fn map_noop(bench: &Bench, nanny: bool) -> Outcome<Report> {
    let n = bench.sizes.map_noop;
    let (name, workers) = if nanny {
        ("map-noop-nanny", Workers::Nanny(2))
    } else {
        ("map-noop", Workers::Plain(2))
    };
    let cluster = Cluster::start(&bench.env, &bench.cluster_label(name), workers)?;
    cluster.warm_up()?;
    let worker_pids: Vec<u32> = cluster.info()?.workers.iter().map(|w| w.pid).collect();
    let (mut rates, mut finished_rates, mut sched_cpu, mut worker_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..bench.sizes.runs {
        let tasks: Vec<TaskDesc> = (0..n)
            .map(|_| TaskDesc::function(cluster.client.unique_key("noop"), "noop", Vec::new()))
            .collect();
        let scheduler = CpuMeter::start(cluster.scheduler_pid)?;
        let workers = worker_pids
            .iter()
            .map(|&p| CpuMeter::start(p))
            .collect::<Outcome<Vec<_>>>()?;
        let start = Instant::now();
        let keys = cluster.client.submit(tasks).context("submitting the batch")?;
        cluster.wait_finished(&keys, limit_for(n, NOOP_MIN_RATE))?;
        let finished = start.elapsed().as_secs_f64();
        let results = cluster.gather(&keys, limit_for(n, NOOP_MIN_RATE))?;
        let secs = start.elapsed().as_secs_f64();
        sched_cpu.push(scheduler.share()?);
        worker_cpu.push(workers.iter().map(CpuMeter::share).sum::<Outcome<f64>>()?);
        if results.len() != n || results.iter().any(|r| !r.is_empty()) {
            return fail(format!("gathered {} results, expected {n} empty ones", results.len()));
        }
        rates.push(n as f64 / secs);
        finished_rates.push(n as f64 / finished);
        bench.progress(
            name,
            run,
            &format!(
                "{:.0} tasks/s ({:.0} tasks/s until the last finished; gather took {:.2} s)",
                n as f64 / secs,
                n as f64 / finished,
                secs - finished
            ),
        );
        cluster.client.release(&keys).context("releasing the batch")?;
        cluster.wait_idle(IDLE_LIMIT)?;
    }
    Ok(Report::new(name, "tasks/s", &rates)
        .param("tasks", n)
        .param("workers", 2)
        .param("nthreads", 1)
        .param("nanny", nanny)
        .field("finished_rate", num(Stats::of(&finished_rates).median))
        .field("scheduler_cpu", num(Stats::of(&sched_cpu).median))
        .field("workers_cpu", num(Stats::of(&worker_cpu).median)))
}

/// `n` noop tasks, each depending on the one before; only the last is wanted.
pub fn chain(bench: &Bench) -> Outcome<Report> {
    let n = bench.sizes.chain;
    let cluster = Cluster::start(&bench.env, &bench.cluster_label("chain"), Workers::Plain(2))?;
    cluster.warm_up()?;
    let mut rates = Vec::new();
    for run in 0..bench.sizes.runs {
        let mut tasks = Vec::with_capacity(n);
        let mut prev: Option<String> = None;
        for _ in 0..n {
            let key = cluster.client.unique_key("chain");
            let task = TaskDesc::function(key.clone(), "noop", Vec::new()).with_deps(prev.take());
            prev = Some(key);
            tasks.push(task);
        }
        let last = prev.context("a chain has at least one task")?;
        let start = Instant::now();
        cluster
            .client
            .submit_wanting(tasks, vec![last.clone()])
            .context("submitting the chain")?;
        cluster.wait_finished(std::slice::from_ref(&last), limit_for(n, NOOP_MIN_RATE))?;
        let secs = start.elapsed().as_secs_f64();
        rates.push(n as f64 / secs);
        bench.progress("chain", run, &format!("{:.0} tasks/s", n as f64 / secs));
        cluster.client.release(&[last]).context("releasing the chain")?;
        cluster.wait_idle(IDLE_LIMIT)?;
    }
    Ok(Report::new("chain", "tasks/s", &rates).param("tasks", n))
}

/// A binary tree of `sum` tasks over `leaves` `identity` leaves; the root's result is checked.
pub fn tree(bench: &Bench) -> Outcome<Report> {
    let leaves = bench.sizes.tree_leaves;
    if !leaves.is_power_of_two() {
        return fail(format!("tree leaves must be a power of two, not {leaves}"));
    }
    let total = 2 * leaves - 1;
    let cluster = Cluster::start(&bench.env, &bench.cluster_label("tree"), Workers::Plain(2))?;
    cluster.warm_up()?;
    let mut rates = Vec::new();
    for run in 0..bench.sizes.runs {
        let (tasks, root, expected) = tree_tasks(&cluster, leaves);
        let start = Instant::now();
        cluster
            .client
            .submit_wanting(tasks, vec![root.clone()])
            .context("submitting the tree")?;
        let got = cluster.gather(std::slice::from_ref(&root), limit_for(total, NOOP_MIN_RATE))?;
        let secs = start.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&got[0]).into_owned();
        if text.trim().parse::<u64>().ok() != Some(expected) {
            return fail(format!("the tree's root summed to {text:?}, expected {expected}"));
        }
        rates.push(total as f64 / secs);
        bench.progress(
            "tree",
            run,
            &format!("{:.0} tasks/s, root {expected} checked", total as f64 / secs),
        );
        cluster.client.release(&[root]).context("releasing the tree")?;
        cluster.wait_idle(IDLE_LIMIT)?;
    }
    Ok(Report::new("tree", "tasks/s", &rates)
        .param("leaves", leaves)
        .param("tasks", total)
        .field("root_checked", true))
}

/// The tree's tasks (leaves first, then each level), its root key, and the expected sum.
fn tree_tasks(cluster: &Cluster, leaves: usize) -> (Vec<TaskDesc>, String, u64) {
    let mut tasks = Vec::with_capacity(2 * leaves);
    let mut level: Vec<String> = Vec::with_capacity(leaves);
    let mut expected = 0u64;
    for i in 0..leaves {
        let value = (i % 10) as u64;
        expected += value;
        let key = cluster.client.unique_key("leaf");
        tasks.push(TaskDesc::function(
            key.clone(),
            "identity",
            value.to_string().into_bytes(),
        ));
        level.push(key);
    }
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len() / 2);
        for pair in level.chunks(2) {
            let key = cluster.client.unique_key("sum");
            tasks.push(TaskDesc::function(key.clone(), "sum", Vec::new()).with_deps(pair.iter().cloned()));
            next.push(key);
        }
        level = next;
    }
    let root = level.pop().expect("a tree of at least one leaf has a root");
    (tasks, root, expected)
}

/// One noop task submitted and waited for, `n` times in a row: p50 and p99 in µs.
pub fn latency(bench: &Bench) -> Outcome<Report> {
    let n = bench.sizes.latency;
    let cluster = Cluster::start(&bench.env, &bench.cluster_label("latency"), Workers::Plain(2))?;
    cluster.warm_up()?;
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for run in 0..bench.sizes.runs {
        let mut micros = Vec::with_capacity(n);
        for _ in 0..n {
            let key = cluster.client.unique_key("lat");
            let start = Instant::now();
            cluster
                .client
                .submit(vec![TaskDesc::function(key.clone(), "noop", Vec::new())])
                .context("submitting a task")?;
            cluster.wait_finished(std::slice::from_ref(&key), Duration::from_secs(10))?;
            micros.push(start.elapsed().as_secs_f64() * 1e6);
            cluster.client.release(&[key]).context("releasing a task")?;
        }
        micros.sort_by(f64::total_cmp);
        let (p50, p99) = (micros[n / 2], micros[(n * 99 / 100).min(n - 1)]);
        bench.progress("latency", run, &format!("p50 {p50:.0} us, p99 {p99:.0} us"));
        p50s.push(p50);
        p99s.push(p99);
        cluster.wait_idle(IDLE_LIMIT)?;
    }
    let p99 = Stats::of(&p99s);
    // The floor: one task is two round trips (client to scheduler, scheduler to worker).
    let (rtt50, rtt99) = tcp_round_trip(n)?;
    bench.progress(
        "latency",
        bench.sizes.runs,
        &format!("raw loopback TCP round trip: p50 {rtt50:.0} us, p99 {rtt99:.0} us"),
    );
    Ok(Report::new("latency", "us", &p50s)
        .param("tasks", n)
        .field("stat", "median/min/max are of each run's p50")
        .field("p50", num(Stats::of(&p50s).median))
        .field("p99", num(p99.median))
        .field("p99_min", num(p99.min))
        .field("p99_max", num(p99.max))
        .field("reference_rtt_p50", num(rtt50))
        .field("reference_rtt_p99", num(rtt99))
        .field(
            "reference_what",
            "one-byte ping-pong between two threads over loopback TCP; a task needs two round trips",
        ))
}

/// p50 and p99 in µs of `n` one-byte round trips between two threads over loopback TCP.
fn tcp_round_trip(n: usize) -> Outcome<(f64, f64)> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    let addr = listener.local_addr().context("reading the loopback port")?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read(&mut b)? == 1 {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut s = std::net::TcpStream::connect(addr).context("connecting over loopback")?;
    s.set_nodelay(true).context("setting TCP_NODELAY")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .context("setting a read timeout")?;
    let mut micros = Vec::with_capacity(n);
    let mut b = [7u8; 1];
    for _ in 0..n.max(1) {
        let start = Instant::now();
        s.write_all(&b).context("pinging")?;
        s.read_exact(&mut b).context("waiting for the pong")?;
        micros.push(start.elapsed().as_secs_f64() * 1e6);
    }
    drop(s);
    let _ = echo.join();
    micros.sort_by(f64::total_cmp);
    let len = micros.len();
    Ok((micros[len / 2], micros[(len * 99 / 100).min(len - 1)]))
}

/// `n` `true` command tasks, and in the same run the rate at which this machine spawns and
/// reaps `true` from a plain loop (one at a time, and two threads at once: the reference).
pub fn map_cmd(bench: &Bench) -> Outcome<Report> {
    let n = bench.sizes.map_cmd;
    let spawns = bench.sizes.spawn_reference;
    let cluster = Cluster::start(&bench.env, &bench.cluster_label("map-cmd"), Workers::Plain(2))?;
    cluster.warm_up()?;
    let (mut rates, mut sequential, mut parallel, mut ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..bench.sizes.runs {
        let tasks: Vec<TaskDesc> = (0..n)
            .map(|_| TaskDesc::command(cluster.client.unique_key("true"), ["true"]))
            .collect();
        let start = Instant::now();
        let keys = cluster.client.submit(tasks).context("submitting the commands")?;
        let results = cluster.gather(&keys, limit_for(n, CMD_MIN_RATE))?;
        let secs = start.elapsed().as_secs_f64();
        if results.len() != n {
            return fail(format!("gathered {} results, expected {n}", results.len()));
        }
        cluster.client.release(&keys).context("releasing the commands")?;
        cluster.wait_idle(IDLE_LIMIT)?;
        let rate = n as f64 / secs;
        let seq = spawn_rate(spawns, 1)?;
        let par = spawn_rate(spawns, 2)?;
        bench.progress(
            "map-cmd",
            run,
            &format!("{rate:.0} tasks/s; plain loop {seq:.0}/s, 2 threads {par:.0}/s"),
        );
        rates.push(rate);
        sequential.push(seq);
        parallel.push(par);
        ratios.push(rate / par);
    }
    Ok(Report::new("map-cmd", "tasks/s", &rates)
        .param("tasks", n)
        .param("reference_spawns", spawns)
        .field("reference", num(Stats::of(&parallel).median))
        .field(
            "reference_what",
            "`true` spawned and reaped by 2 threads of a plain Rust loop, per second",
        )
        .field("reference_sequential", num(Stats::of(&sequential).median))
        .field("ratio", num(Stats::of(&ratios).median)))
}

/// Spawns and reaps `true` `n` times from `threads` threads, capturing its output as a
/// command task's would be; processes per second.
fn spawn_rate(n: usize, threads: usize) -> Outcome<f64> {
    let start = Instant::now();
    let per_thread = n / threads;
    let outcomes: Vec<Outcome<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || -> Outcome<()> {
                    for _ in 0..per_thread {
                        let out = Command::new("true")
                            .stdin(Stdio::null())
                            .output()
                            .context("spawning `true`")?;
                        if !out.status.success() {
                            return fail(format!("`true` exited with {}", out.status));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| fail("a spawning thread panicked")))
            .collect()
    });
    outcomes.into_iter().collect::<Outcome<Vec<()>>>()?;
    Ok((per_thread * threads) as f64 / start.elapsed().as_secs_f64())
}
