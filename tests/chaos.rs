//! Chaos: layered graphs of checksummed command tasks, every task an output file of
//! `distd run`, checked byte for byte against the same checksums computed here.
//!
//! - In `make test` (bounded): 3 nannies, a random worker child SIGKILLed every few
//!   seconds while the graph runs; it finishes exactly, and once the cluster stops no
//!   process and no spill file is left.
//! - Behind `make chaos` (`--ignored`): the fault-free 2,000-task graph 20 times in a row,
//!   each exact and no command run twice; and a long run of 2,000 tasks with a kill every
//!   second, whose figures (time against fault-free, runs per task, scheduler CPU) it prints.
//!
//! Kills go only to the worker children of the nannies this test started, found through
//! /proc as the nannies' children.

mod harness;

use harness::procfs::{children, processes_in, stat};
use harness::{Cluster, Sandbox, DEADLINE};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// A small, seeded generator, so a failing layout can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A layered graph: `layers` of `width` tasks, each of the first layer `echo KEY |
/// sha256sum`, each later one the checksum of its key and 3 random tasks of the layer
/// before, each after `nap` (a shell command and `; `, or nothing). Every command also
/// appends its key to `runs.log`, so runs can be counted.
struct Layered {
    toml: String,
    /// Each key with its inputs, in order.
    tasks: Vec<(String, Vec<String>)>,
    out: std::path::PathBuf,
}

fn key(layer: usize, i: usize) -> String {
    format!("L{layer:02}-{i:03}")
}

fn layered(layers: usize, width: usize, nap: &str, seed: u64, dir: &Path) -> Layered {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("create the output folder");
    let runs = dir.join("runs.log");
    let runs = runs.display();
    let mut rng = Rng(seed | 1);
    let mut toml = String::new();
    let mut tasks = Vec::new();
    for l in 0..layers {
        for i in 0..width {
            let k = key(l, i);
            let deps: Vec<String> = if l == 0 {
                Vec::new()
            } else {
                (0..3).map(|_| key(l - 1, rng.below(width))).collect()
            };
            let cats: Vec<String> = deps.iter().map(|d| format!("{{dep:{d}}}")).collect();
            let line = if deps.is_empty() {
                format!("echo {k} >> {runs}; {nap}echo {k} | sha256sum")
            } else {
                format!(
                    "echo {k} >> {runs}; {nap}{{ echo {k}; cat {}; }} | sha256sum",
                    cats.join(" ")
                )
            };
            let deps_toml: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
            toml.push_str(&format!(
                "[[task]]\nkey = \"{k}\"\nshell = \"{line}\"\ndeps = [{}]\noutput = \"{}\"\n\n",
                deps_toml.join(", "),
                out.join(&k).display()
            ));
            tasks.push((k, deps));
        }
    }
    Layered { toml, tasks, out }
}

impl Layered {
    /// The same graph with a `[defaults]` table (e.g. `replicas = 2`).
    fn with_defaults(mut self, defaults: &str) -> Layered {
        self.toml = format!("[defaults]\n{defaults}\n\n{}", self.toml);
        self
    }

    /// What each task's output must be: `sha256sum`'s line for its key and inputs.
    fn expected(&self) -> BTreeMap<String, Vec<u8>> {
        let mut exp: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (k, deps) in &self.tasks {
            let mut h = Sha256::new();
            h.update(format!("{k}\n"));
            for d in deps {
                h.update(&exp[d]);
            }
            let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            exp.insert(k.clone(), format!("{hex}  -\n").into_bytes());
        }
        exp
    }

    /// Every output file is there with the right bytes; the number of wrong or missing ones
    /// is the failure, with the first few named.
    fn check_outputs(&self, exp: &BTreeMap<String, Vec<u8>>) {
        let mut wrong = Vec::new();
        for (k, want) in exp {
            match std::fs::read(self.out.join(k)) {
                Ok(got) if got == *want => {}
                Ok(got) => wrong.push(format!("{k}: {:?}", String::from_utf8_lossy(&got))),
                Err(e) => wrong.push(format!("{k}: {e}")),
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} outputs wrong or missing, e.g. {:?}",
            wrong.len(),
            exp.len(),
            &wrong[..wrong.len().min(5)]
        );
    }

    /// How many times each key's command ran, from the runs log; the log is then emptied.
    fn take_runs(&self, dir: &Path) -> BTreeMap<String, usize> {
        let path = dir.join("runs.log");
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        let mut runs = BTreeMap::new();
        for k in log.lines() {
            *runs.entry(k.to_string()).or_default() += 1;
        }
        runs
    }

    fn clear_outputs(&self) {
        let _ = std::fs::remove_dir_all(&self.out);
        std::fs::create_dir_all(&self.out).expect("recreate the output folder");
    }
}

/// The CPU time (user + system) a process used so far.
fn cpu_time(pid: i32) -> Duration {
    let ticks = stat(pid).map_or(0, |s| s.cpu_ticks);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// SIGKILLs the worker child of a random nanny of `cluster`; its pid, if it had one.
fn kill_a_worker(cluster: &mut Cluster, rng: &mut Rng) -> Option<i32> {
    let nanny = cluster.workers[rng.below(cluster.workers.len())];
    let nanny_pid = cluster.pid(nanny);
    let child = *children(nanny_pid).first()?;
    // Only a live child of the nanny we started: not a zombie the nanny has yet to reap.
    if !stat(child).is_some_and(|s| s.is_live()) {
        return None;
    }
    // SAFETY: kill has no memory-safety preconditions; the pid is a live child of our nanny.
    unsafe { libc::kill(child, libc::SIGKILL) };
    Some(child)
}

/// What one run under faults came to.
struct ChaosRun {
    elapsed: Duration,
    kills: usize,
    runs: BTreeMap<String, usize>,
    scheduler_cpu: Duration,
}

/// Runs `graph` on `cluster`, killing a random worker child now and then (each pause drawn
/// between the two of `every`, up to `max_kills`; never without `every`), until `distd run`
/// ends; asserts it succeeded and that every output is exact.
fn run_with_kills(
    cluster: &mut Cluster,
    graph: &Layered,
    every: Option<(Duration, Duration)>,
    max_kills: usize,
    within: Duration,
    seed: u64,
) -> ChaosRun {
    let exp = graph.expected();
    let dir = cluster.dir().to_path_buf();
    let mut rng = Rng(seed | 1);
    let cpu_before = cpu_time(cluster.pid(cluster.scheduler));
    let start = Instant::now();
    let run = cluster.spawn_graph("graph.toml", &graph.toml);
    let mut kills = 0;
    let pause = |rng: &mut Rng, (low, high): (Duration, Duration)| {
        low + Duration::from_millis(rng.below((high - low).as_millis().max(1) as usize) as u64)
    };
    let mut next_kill = every.map(|e| start + pause(&mut rng, e));
    while cluster.is_running(run) {
        assert!(
            start.elapsed() < within,
            "the run did not finish in {within:?}\n{}",
            cluster.report()
        );
        if let (Some(at), Some(e)) = (next_kill, every) {
            if kills < max_kills && Instant::now() >= at {
                if kill_a_worker(cluster, &mut rng).is_some() {
                    kills += 1;
                }
                next_kill = Some(Instant::now() + pause(&mut rng, e));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed();
    cluster.wait_exit(run, DEADLINE).assert_success();
    graph.check_outputs(&exp);
    ChaosRun {
        elapsed,
        kills,
        runs: graph.take_runs(&dir),
        scheduler_cpu: cpu_time(cluster.pid(cluster.scheduler)).saturating_sub(cpu_before),
    }
}

/// Stops the cluster (SIGTERM to the nannies, then the scheduler) and checks that no
/// process the test started is left and no file is left in the workers' folders.
fn stop_and_check_clean(mut cluster: Cluster, work: &Path) {
    for i in 0..cluster.workers.len() {
        let w = cluster.workers[i];
        cluster.signal(w, libc::SIGTERM);
    }
    for i in 0..cluster.workers.len() {
        let w = cluster.workers[i];
        cluster.wait_exit(w, DEADLINE);
    }
    let s = cluster.scheduler;
    cluster.signal(s, libc::SIGTERM);
    cluster.wait_exit(s, DEADLINE);
    let dir = cluster.dir().to_path_buf();
    let left = cluster.poll_until(Duration::from_secs(5), |_| processes_in(&dir).is_empty().then_some(()));
    assert!(
        left.is_some(),
        "processes left behind: {:?}\n{}",
        processes_in(&dir),
        cluster.report()
    );
    let files: Vec<String> = walk(work);
    assert!(files.is_empty(), "files left in the workers' folders: {files:?}");
    cluster.check_no_crashes();
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// A scheduler and 3 nannies of 2 threads each, their workers' files under `work/`.
fn three_nannies(scheduler_args: &[&str]) -> (Cluster, std::path::PathBuf) {
    let mut sb = Sandbox::new();
    let (scheduler, address) = harness::start_scheduler(&mut sb, scheduler_args);
    let work = sb.path("work");
    let mut workers = Vec::new();
    let mut names = Vec::new();
    for i in 0..3 {
        let name = format!("w{i}");
        let dir = work.join(&name);
        let w = sb
            .worker(&address)
            .name(&name)
            .nthreads(2)
            .local_directory(dir.to_str().expect("UTF-8 path"))
            .spawn();
        workers.push(w);
        names.push(name);
    }
    let mut cluster = Cluster {
        sb,
        scheduler,
        address,
        workers,
        worker_names: names,
    };
    cluster.wait_for_workers(3);
    (cluster, work)
}

#[test]
fn a_layered_graph_finishes_exactly_while_workers_are_killed() {
    let (mut cluster, work) = three_nannies(&[]);
    let dir = cluster.dir().to_path_buf();
    let graph = layered(10, 30, "sleep 0.1; ", 7, &dir);
    let run = run_with_kills(
        &mut cluster,
        &graph,
        Some((Duration::from_millis(500), Duration::from_millis(2000))),
        6,
        Duration::from_secs(120),
        11,
    );
    assert!(run.kills > 0, "the run ended before any worker was killed");
    for (k, _) in &graph.tasks {
        assert!(run.runs.contains_key(k), "{k} never ran");
    }
    // Every worker comes back, and the cluster leaves nothing behind.
    cluster.wait_for_workers(3);
    stop_and_check_clean(cluster, &work);
}

#[test]
#[ignore = "long: make chaos"]
fn chaos_the_fault_free_2000_task_graph_20_times_in_a_row() {
    let mut cluster = Cluster::builder().workers(3).nthreads(2).start();
    let dir = cluster.dir().to_path_buf();
    let graph = layered(20, 100, "", 2026, &dir);
    let mut times = Vec::new();
    for round in 0..20 {
        graph.clear_outputs();
        let run = run_with_kills(&mut cluster, &graph, None, 0, Duration::from_secs(300), round);
        let twice: Vec<_> = run.runs.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            twice.is_empty(),
            "round {round}: commands not run exactly once: {twice:?}"
        );
        assert_eq!(run.runs.len(), graph.tasks.len(), "round {round}: every command ran");
        times.push(run.elapsed.as_secs_f64());
        eprintln!("round {round}: {:.1} s, exact", run.elapsed.as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    eprintln!(
        "fault-free 2,000 tasks x20: all exact; {:.1}-{:.1} s, median {:.1} s",
        times[0], times[19], times[10]
    );
}

/// Prints one chaos run's figures against the fault-free run.
fn report(what: &str, graph: &Layered, calm: &ChaosRun, chaos: &ChaosRun) {
    // `what` names the graph's defaults and the kill rate.
    let total: usize = chaos.runs.values().sum();
    let max = chaos.runs.values().max().copied().unwrap_or(0);
    eprintln!(
        "{what}: fault-free {:.1} s (scheduler CPU {:.1} s); under kills: {:.1} s, {} kills, {} runs of {} tasks ({:.2} per task, at most {}), scheduler CPU {:.1} s",
        calm.elapsed.as_secs_f64(),
        calm.scheduler_cpu.as_secs_f64(),
        chaos.elapsed.as_secs_f64(),
        chaos.kills,
        total,
        graph.tasks.len(),
        total as f64 / graph.tasks.len() as f64,
        max,
        chaos.scheduler_cpu.as_secs_f64()
    );
}

/// 2,000 tasks on 3 nannies with worker children killed for minutes: a kill about every
/// second with every result kept twice (`replicas = 2`), which one loss never loses; then
/// with the defaults, where a lost result still needed is computed again from its lineage,
/// at the rate the issue measured (a kill every 0.5-3 s; `--allowed-failures` raised, as a
/// user would at such a rate).
#[test]
#[ignore = "long: make chaos"]
fn chaos_a_kill_every_second_for_minutes() {
    let (mut cluster, work) = three_nannies(&["--allowed-failures", "100"]);
    let dir = cluster.dir().to_path_buf();
    let phases = [
        ("replicas = 2, a kill every 0.7-1.3 s", "replicas = 2", (700, 1300)),
        ("defaults, a kill every 0.5-3 s", "", (500, 3000)),
    ];
    for (what, defaults, (low, high)) in phases {
        let graph = layered(20, 100, "sleep 0.02; ", 2027, &dir).with_defaults(defaults);
        let calm = run_with_kills(&mut cluster, &graph, None, 0, Duration::from_secs(300), 1);
        graph.clear_outputs();
        let kills = Some((Duration::from_millis(low), Duration::from_millis(high)));
        let chaos = run_with_kills(&mut cluster, &graph, kills, usize::MAX, Duration::from_secs(900), 2);
        report(what, &graph, &calm, &chaos);
        graph.clear_outputs();
        cluster.wait_for_workers(3);
    }
    stop_and_check_clean(cluster, &work);
}
