//! Rest when idle, and never miss a stop: real `distd scheduler`, nanny and worker
//! processes.
//!
//! - After a graph ran, an idle scheduler, nanny and worker each use under 0.1% of a core
//!   (CPU time from `/proc/PID/task/*/schedstat`, in nanoseconds) in a release build; the
//!   debug build `make test` runs does the same wake-ups at several times the CPU each, so
//!   it is held to 0.3%, which still fails any spin or timer that does not rest (the spin
//!   this replaced used 50-100%).
//! - Under load (a graph of 20,000 function tasks running), a SIGTERM to the scheduler, to
//!   a nanny, or to a worker without a nanny ends it within seconds, every time.

mod harness;

use harness::procfs::children;
use harness::{Cluster, DEADLINE};
use std::time::{Duration, Instant};

/// The most of a core an idle process may use: 0.1% (the target) in a release build, 0.3%
/// in a debug one, whose every wake-up costs several times as much.
const IDLE_LIMIT: f64 = if cfg!(debug_assertions) { 0.003 } else { 0.001 };

/// One test at a time: the idle one measures rest, which the others' load would disturb.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// CPU time `pid` used so far (all its threads), in nanoseconds.
fn cpu_ns(pid: i32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process is alive");
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `chains` chains of `length` noop function tasks: `chains * length` tasks, `chains`
/// outputs (the chains' ends), none of them wide.
fn chains(chains: usize, length: usize) -> String {
    let mut toml = String::new();
    for c in 0..chains {
        for i in 0..length {
            toml.push_str(&format!("[[task]]\nkey = \"c{c}-{i}\"\nfunction = \"noop\"\n"));
            if i > 0 {
                toml.push_str(&format!("deps = [\"c{c}-{}\"]\n", i - 1));
            }
        }
    }
    toml
}

#[test]
fn idle_scheduler_nanny_and_worker_use_almost_no_cpu() {
    let _one = one_at_a_time();
    let mut c = Cluster::builder().workers(1).nthreads(2).start();
    // Work first: whatever it left behind (a spin, a timer that never stops) must rest too.
    c.run_graph("work.toml", &chains(20, 50)).assert_success();
    let nanny = c.sb.pid(c.workers[0]);
    let worker = *children(nanny).first().expect("the nanny runs a worker");
    let scheduler = c.sb.pid(c.scheduler);
    let procs = [("scheduler", scheduler), ("nanny", nanny), ("worker", worker)];
    // Let what the run started settle (released results, the last heartbeats).
    std::thread::sleep(Duration::from_secs(2));
    let before: Vec<u64> = procs.iter().map(|(_, p)| cpu_ns(*p)).collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let wall = start.elapsed().as_nanos() as f64;
    let mut over = Vec::new();
    for ((name, pid), b) in procs.iter().zip(before) {
        let share = (cpu_ns(*pid) - b) as f64 / wall;
        eprintln!("idle {name}: {:.4}% of a core", share * 100.0);
        if share >= IDLE_LIMIT {
            over.push(format!("{name} used {:.3}% of a core while idle", share * 100.0));
        }
    }
    assert!(over.is_empty(), "{over:?}");
    c.sb.check_no_crashes();
}

/// Waits until `pid` is visibly busy (0.2 s of CPU more than now).
fn wait_busy(c: &mut Cluster, pid: i32) {
    let start = cpu_ns(pid);
    let busy =
        c.sb.poll_until(DEADLINE, |_| (cpu_ns(pid) > start + 200_000_000).then_some(()));
    assert!(busy.is_some(), "process {pid} never got busy with the graph");
}

/// Starts a graph of 20,000 tasks (a new one each call) in the background and waits until
/// `pid` is busy with it.
fn under_load(c: &mut Cluster, pid: i32) -> harness::ProcId {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let graph = chains(200, 100).replace("\"c", &format!("\"r{n}c"));
    let run = c.spawn_graph(&format!("load-{n}.toml"), &graph);
    wait_busy(c, pid);
    run
}

/// Sends SIGTERM to `id` and expects it to end by itself, with status 0, within seconds.
fn stops_within(c: &mut Cluster, id: harness::ProcId, what: &str) {
    let sent = Instant::now();
    c.sb.signal(id, libc::SIGTERM);
    let out = c.sb.wait_exit(id, Duration::from_secs(8));
    out.assert_success();
    eprintln!("{what} stopped {:.2} s after SIGTERM", sent.elapsed().as_secs_f64());
}

#[test]
fn a_scheduler_under_load_stops_on_the_first_sigterm() {
    let _one = one_at_a_time();
    for round in 0..2 {
        let mut c = Cluster::builder().workers(2).nthreads(2).start();
        let scheduler = c.sb.pid(c.scheduler);
        let run = under_load(&mut c, scheduler);
        c.sb.allow_exit_code(run, 1);
        let sched = c.scheduler;
        stops_within(&mut c, sched, &format!("scheduler (round {round})"));
        // The client is told, and ends with an error, not a hang.
        c.sb.wait_exit(run, DEADLINE).assert_failure();
    }
}

#[test]
fn a_nanny_under_load_stops_on_the_first_sigterm() {
    let _one = one_at_a_time();
    let mut c = Cluster::builder().workers(2).nthreads(2).start();
    let nanny = c.sb.pid(c.workers[0]);
    let worker = *children(nanny).first().expect("the nanny runs a worker");
    let _run = under_load(&mut c, worker);
    let id = c.workers[0];
    stops_within(&mut c, id, "nanny");
}

#[test]
fn a_worker_without_a_nanny_under_load_stops_on_the_first_sigterm() {
    let _one = one_at_a_time();
    let mut c = Cluster::builder().workers(2).nthreads(2).no_nanny().start();
    let first = c.sb.pid(c.workers[0]);
    let _run = under_load(&mut c, first);
    let id = c.workers[0];
    stops_within(&mut c, id, "worker 0");
    // The other now has the work, and more.
    let second = c.sb.pid(c.workers[1]);
    let _more = under_load(&mut c, second);
    let id = c.workers[1];
    stops_within(&mut c, id, "worker 1");
}
