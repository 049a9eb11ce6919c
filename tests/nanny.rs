//! The nanny as a user meets it: real `distd` processes on loopback. A worker killed under a
//! running graph comes back and the graph finishes; a task that outgrows the memory limit is
//! charged with it; results spill to disk and the files go away; a worker that cannot start
//! stops its nanny at once; SIGTERM leaves no process behind; `distd restart` brings the
//! same workers back; `distd local --processes` runs a graph and cleans up.
//!
//! Processes the nanny starts (workers, and the commands they run) are not the sandbox's
//! children, so these tests find them through `/proc`: as the nanny's descendants, recorded
//! while they run. Every process recorded that way is killed when the test ends, whatever
//! happened, so a failing test leaves nothing behind either.

mod harness;

use harness::procfs::{alive, children, cmdline, descendants, processes_in, Recorded};
use harness::{host_port, info, start_scheduler, worker_entry, Cluster, ProcId, Sandbox, DEADLINE};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Clusters of nanny-supervised workers
// ---------------------------------------------------------------------------------------------

/// A scheduler (with `scheduler_args`) and one nanny, `distd worker ADDR --name NAME
/// --local-directory DIR --death-timeout 5s WORKER_ARGS`, whose `expect_workers` workers have
/// registered. The nanny is `cluster.workers[0]`.
fn nanny_cluster(scheduler_args: &[&str], name: &str, worker_args: &[&str], expect_workers: usize) -> Cluster {
    let mut sb = Sandbox::new();
    let (scheduler, address) = start_scheduler(&mut sb, scheduler_args);
    let dir = local_dir(&sb);
    let nanny = sb
        .worker(&address)
        .name(name)
        .label(&format!("nanny {name}"))
        .local_directory(&dir)
        .args(worker_args)
        .spawn();
    let mut cluster = Cluster {
        sb,
        scheduler,
        address,
        workers: vec![nanny],
        worker_names: Vec::new(),
    };
    let info = cluster.wait_for_workers(expect_workers);
    cluster.worker_names = worker_pids(&info).into_iter().map(|(n, _)| n).collect();
    cluster
}

/// The workers' shared scratch folder in the sandbox.
fn local_dir(sb: &Sandbox) -> String {
    sb.path("work").to_str().expect("the sandbox path is UTF-8").to_string()
}

/// (name, pid) of every worker in `distd info --json` output, sorted by name.
fn worker_pids(info: &serde_json::Value) -> Vec<(String, i32)> {
    let mut out: Vec<(String, i32)> = info["workers"]
        .as_array()
        .expect("`distd info --json` has a workers array")
        .iter()
        .map(|w| {
            (
                w["name"].as_str().expect("a worker has a name").to_string(),
                w["pid"].as_i64().expect("a worker has a pid") as i32,
            )
        })
        .collect();
    out.sort();
    out
}

/// How many of the scheduler's tasks are in `state` (e.g. "memory").
fn tasks_in(info: &serde_json::Value, state: &str) -> u64 {
    info["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t[0].as_str() == Some(state))
        .map(|t| t[1].as_u64().unwrap_or(0))
        .sum()
}

/// Waits until the nanny `nanny` has exactly `n` child processes; returns them.
fn wait_for_children(sb: &mut Sandbox, nanny: i32, n: usize) -> Vec<i32> {
    sb.wait_until(
        &format!("the nanny (pid {nanny}) to have {n} children"),
        DEADLINE,
        |_| {
            let c = children(nanny);
            (c.len() == n).then_some(c)
        },
    )
}

/// Fails the test, listing them, if any process started in the sandbox still runs, other
/// than `expected` (processes the sandbox started that are meant to be running).
fn assert_nothing_left_in(sb: &mut Sandbox, expected: &[ProcId], what: &str) {
    let dir = sb.dir().to_path_buf();
    let expected: Vec<i32> = expected.iter().map(|&id| sb.pid(id)).collect();
    let left = |dir: &Path| -> Vec<(i32, String)> {
        processes_in(dir)
            .into_iter()
            .filter(|(p, _)| !expected.contains(p))
            .collect()
    };
    let clean = sb.poll_until(Duration::from_secs(5), |_| left(&dir).is_empty().then_some(()));
    if clean.is_none() {
        panic!("{what}: processes left behind: {:#?}\n{}", left(&dir), sb.report());
    }
}

/// `n` shell tasks that sleep 0.3 s and print 1..=n, and `total`, their sum.
fn sleeps_and_sum(n: usize) -> String {
    let mut g = String::new();
    for i in 1..=n {
        g.push_str(&format!(
            "[[task]]\nkey = \"s{i}\"\nshell = \"sleep 0.3; echo {i}\"\n\n"
        ));
    }
    let deps: Vec<String> = (1..=n).map(|i| format!("\"s{i}\"")).collect();
    g.push_str(&format!(
        "[[task]]\nkey = \"total\"\nfunction = \"sum\"\ndeps = [{}]\noutput = true\n",
        deps.join(", ")
    ));
    g
}

fn triangle(n: usize) -> String {
    format!("{}\n", n * (n + 1) / 2)
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// SIGKILL to the worker child in the middle of a graph: the nanny starts a new one, it
/// registers under the same name, the graph completes with the right result, and one nanny
/// with one worker is what remains.
#[test]
fn a_worker_killed_mid_graph_is_replaced_and_the_graph_completes() {
    let mut cluster = nanny_cluster(&[], "w", &["--nthreads", "2"], 1);
    let nanny_id = cluster.workers[0];
    let nanny = cluster.pid(nanny_id);
    let mut recorded = Recorded::default();
    let first = wait_for_children(&mut cluster, nanny, 1)[0];
    recorded.add(first);
    let info0 = cluster.info();
    assert_eq!(
        worker_pids(&info0),
        [("w".to_string(), first)],
        "the registered worker is the nanny's child"
    );

    let run = cluster.spawn_graph("sleeps.toml", &sleeps_and_sum(30));
    let address = cluster.address.clone();
    cluster.wait_until("a few tasks to finish", DEADLINE, |sb| {
        (tasks_in(&info(sb, &address), "memory") >= 4).then_some(())
    });
    // The running tasks' `sleep` processes die with their worker's group or are reaped by
    // the nanny; recorded, so the end of the test can check.
    recorded.add_descendants(nanny);
    // SAFETY: kill has no memory-safety preconditions; `first` is our nanny's child.
    assert_eq!(unsafe { libc::kill(first, libc::SIGKILL) }, 0, "kill the worker child");

    let second = cluster.wait_until("a new worker to register", DEADLINE, |sb| {
        let info = info(sb, &address);
        let pid = worker_entry(&info, "w")?["pid"].as_i64()? as i32;
        (pid != first).then_some(pid)
    });
    assert!(alive(second), "the new worker (pid {second}) runs");

    let out = cluster.wait_exit(run, DEADLINE);
    out.assert_success();
    assert_eq!(out.stdout, triangle(30), "{}", out.describe());

    assert!(cluster.is_running(nanny_id), "the nanny still runs");
    let left = wait_for_children(&mut cluster, nanny, 1);
    assert_eq!(left, [second], "the nanny's one child is the new worker");
    assert_eq!(
        cluster.poll_until(Duration::from_secs(5), |_| (descendants(nanny) == [second])
            .then_some(())),
        Some(()),
        "besides the new worker, the nanny has no descendant left: {:?}",
        descendants(nanny)
    );
    let stray: Vec<_> = recorded.survivors().into_iter().filter(|(p, _)| *p != second).collect();
    assert!(stray.is_empty(), "processes of the killed worker survive: {stray:?}");
    assert_eq!(worker_pids(&cluster.info()), [("w".to_string(), second)]);
    cluster.check_no_crashes();
}

/// A task that allocates far past the worker's memory limit: the nanny kills the worker
/// each time, the task errs naming memory once `--allowed-failures` is used up, the other
/// tasks of the graph are right, and the worker is back at the end.
#[test]
fn a_task_past_the_memory_limit_errs_naming_memory_and_the_worker_comes_back() {
    let mut cluster = nanny_cluster(
        &["--allowed-failures", "1"],
        "w",
        &["--memory-limit", "200MiB", "--nthreads", "1"],
        1,
    );
    let nanny_id = cluster.workers[0];
    let nanny = cluster.pid(nanny_id);
    let first = wait_for_children(&mut cluster, nanny, 1)[0];
    let graph = r#"
[[task]]
key = "six"
function = "sum"
args = "1 2 3"
output = true

[[task]]
key = "greeting"
shell = "echo hello"
output = true

[[task]]
key = "big"
function = "blob"
args = "400MiB"

[[task]]
key = "ten"
function = "sum"
args = "4"
deps = ["six"]
output = true
"#;
    let out = cluster.run_graph("big.toml", graph);
    out.assert_code(1);
    let failed: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("distd: task ")).collect();
    assert_eq!(failed.len(), 1, "one task failed:\n{}", out.describe());
    assert!(
        failed[0].starts_with("distd: task \"big\" failed: killed worker")
            && failed[0].contains("(memory: the worker used"),
        "the error names the task, the killed worker and memory:\n{}",
        out.describe()
    );
    assert_eq!(
        out.stdout,
        "6\nhello\n10\n",
        "the other tasks' outputs:\n{}",
        out.describe()
    );

    let info = cluster.wait_for_workers(1);
    let workers = worker_pids(&info);
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].0, "w");
    assert_ne!(workers[0].1, first, "the worker was restarted (a new process)");
    assert!(cluster.is_running(nanny_id), "the nanny still runs");
    assert_eq!(wait_for_children(&mut cluster, nanny, 1), [workers[0].1]);
    let log = cluster.stderr(nanny_id);
    assert!(
        log.contains("memory: the worker used"),
        "the nanny logged why it killed the worker:\n{}",
        cluster.report()
    );
    cluster.check_no_crashes();
}

/// The spill files of the workers under `dir`: `dir/*/spill/*`.
fn spill_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_dir(e.path().join("spill")).ok())
        .flat_map(|d| d.flatten().map(|f| f.path()))
        .collect()
}

/// A nanny whose one single-threaded worker has an 80 MiB memory limit, for spilling.
struct Spilling {
    cluster: Cluster,
    nanny_id: ProcId,
    nanny: i32,
    /// The worker process; it must never be replaced: spilling keeps it under its limit.
    worker: i32,
    /// The workers' local directory; spill files go to `*/spill/` in it.
    local: PathBuf,
}

/// The worker's memory limit: it spills above 48 MiB held, is killed above 76 MiB of RSS.
const SPILL_LIMIT: &str = "80MiB";
/// 60 results of 4 MiB: three times the limit. Each is small next to the limit, so that the
/// results held below the spill threshold, the one being made and the worker's own ~11 MiB
/// stay under the kill threshold. (With 16 MiB results and a 64 MiB limit, that sum reaches
/// the kill threshold: 11 + 38.4 + 16 > 60.8 MiB, and the nanny kills the worker.)
const SPILL_BLOBS: usize = 60;
const SPILL_BLOB: usize = 4 << 20;
const SPILL_BLOB_ARG: &str = "4MiB";

impl Spilling {
    /// Fails the test unless the spill files are gone within a few seconds.
    fn assert_spill_files_go(&mut self) {
        let local = self.local.clone();
        let gone = self.cluster.poll_until(Duration::from_secs(10), |_| {
            spill_files(&local).is_empty().then_some(())
        });
        assert!(
            gone.is_some(),
            "spill files left after the run: {:?}",
            spill_files(&local)
        );
    }

    fn start() -> Spilling {
        let mut cluster = nanny_cluster(&[], "w", &["--memory-limit", SPILL_LIMIT, "--nthreads", "1"], 1);
        let nanny_id = cluster.workers[0];
        let nanny = cluster.pid(nanny_id);
        let worker = wait_for_children(&mut cluster, nanny, 1)[0];
        let local = PathBuf::from(local_dir(&cluster));
        Spilling {
            cluster,
            nanny_id,
            nanny,
            worker,
            local,
        }
    }

    /// Runs `graph`, watching for spill files while it runs; its outcome, and how many
    /// spill files were seen at once (0: none).
    fn run(&mut self, file: &str, graph: &str) -> (harness::Outcome, usize) {
        let run = self.cluster.spawn_graph(file, graph);
        let local = self.local.clone();
        let mut most = 0;
        while self.cluster.is_running(run) {
            most = most.max(spill_files(&local).len());
            std::thread::sleep(Duration::from_millis(10));
        }
        (self.cluster.wait_exit(run, DEADLINE), most)
    }

    /// After a successful run: the spill files go, the worker was never replaced, and its
    /// scratch folder goes with it when the nanny stops.
    fn check_cleanup(mut self, spilled: usize) {
        assert!(
            spilled > 0,
            "no spill file appeared under {}/*/spill while the graph ran\n{}",
            self.local.display(),
            self.cluster.report()
        );
        self.assert_spill_files_go();
        assert_eq!(
            children(self.nanny),
            [self.worker],
            "the worker was not replaced (spilling kept it under its kill threshold)\n{}",
            self.cluster.report()
        );
        self.cluster.signal(self.nanny_id, libc::SIGTERM);
        self.cluster.wait_exit(self.nanny_id, DEADLINE).assert_success();
        let left: Vec<PathBuf> = std::fs::read_dir(&self.local)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "the worker's scratch folders outlive it: {left:?}");
        self.cluster.check_no_crashes();
    }
}

/// The output of [`blobs_counted`]: every byte of every blob counted.
fn assert_blobs_counted(out: &harness::Outcome) {
    assert_eq!(
        out.stdout,
        format!("{}\n", SPILL_BLOBS * SPILL_BLOB),
        "{}",
        out.describe()
    );
}

/// [`SPILL_BLOBS`] blobs, each counted by a command, and the sum of the counts as output.
fn blobs_counted() -> String {
    let mut graph = String::new();
    for i in 0..SPILL_BLOBS {
        graph.push_str(&format!(
            "[[task]]\nkey = \"b{i}\"\nfunction = \"blob\"\nargs = \"{SPILL_BLOB_ARG}\"\npriority = 1\n\n\
             [[task]]\nkey = \"n{i}\"\nshell = \"wc -c < {{dep:b{i}}}\"\ndeps = [\"b{i}\"]\n\n"
        ));
    }
    let deps: Vec<String> = (0..SPILL_BLOBS).map(|i| format!("\"n{i}\"")).collect();
    graph.push_str(&format!(
        "[[task]]\nkey = \"total\"\nfunction = \"sum\"\ndeps = [{}]\noutput = true\n",
        deps.join(", ")
    ));
    graph
}

/// Regression test for issue 10: a SIGKILLed worker left its spill files behind (279 MB
/// after one memory kill). Its successor sweeps the dead worker's folder as it starts, and
/// the graph still finishes right.
#[test]
fn a_sigkilled_workers_spill_files_are_removed() {
    let mut s = Spilling::start();
    let run = s.cluster.spawn_graph("blobs.toml", &blobs_counted());
    let local = s.local.clone();
    s.cluster.wait_until("spill files to appear", DEADLINE, |_| {
        (!spill_files(&local).is_empty()).then_some(())
    });
    let dead = s.worker;
    // SAFETY: kill has no memory-safety preconditions; `dead` is our nanny's child.
    assert_eq!(unsafe { libc::kill(dead, libc::SIGKILL) }, 0, "kill the worker");
    let prefix = format!("worker-{dead}-");
    let of_dead = |local: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(local)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let gone = s
        .cluster
        .poll_until(DEADLINE, |_| of_dead(&local).is_empty().then_some(()));
    assert!(
        gone.is_some(),
        "the killed worker's folder stays: {:?}",
        of_dead(&local)
    );
    let out = s.cluster.wait_exit(run, DEADLINE);
    out.assert_success();
    assert_blobs_counted(&out);
    s.assert_spill_files_go();
    s.cluster.check_no_crashes();
}

/// Results three times the memory limit, each consumed by its own command: they spill to the
/// local directory while the graph runs, are read back right, and the files are gone after
/// the run and after the worker. The blobs go first (higher priority), so they pile up.
#[test]
fn results_beyond_the_memory_limit_spill_to_disk_and_the_files_are_removed() {
    let mut s = Spilling::start();
    let (out, spilled) = s.run("blobs.toml", &blobs_counted());
    out.assert_success();
    assert_blobs_counted(&out);
    s.check_cleanup(spilled);
}

/// The same results, each the input of an output file's command (`cat`): the blobs go first
/// (higher priority) and pile up on disk, then each command gets its blob read back from its
/// spill file, and `distd run` writes each output as it finishes. (It gathers as tasks finish, so
/// it no longer fetches results that were spilled while it waited.)
#[test]
fn spilled_results_read_back_for_the_outputs_come_back_right() {
    let mut s = Spilling::start();
    let mut graph = String::new();
    for i in 0..SPILL_BLOBS {
        graph.push_str(&format!(
            "[[task]]\nkey = \"b{i}\"\nfunction = \"blob\"\nargs = \"{SPILL_BLOB_ARG}\"\npriority = 1\n\n\
             [[task]]\nkey = \"o{i}\"\nshell = \"cat {{dep:b{i}}}\"\ndeps = [\"b{i}\"]\noutput = \"out/b{i}.bin\"\n\n"
        ));
    }
    std::fs::create_dir_all(s.cluster.path("out")).expect("create the output folder");
    let (out, spilled) = s.run("blobs.toml", &graph);
    out.assert_success();
    let expected: Vec<u8> = (0..SPILL_BLOB).map(|i| (i % 251) as u8).collect();
    for i in 0..SPILL_BLOBS {
        let got = std::fs::read(s.cluster.path(&format!("out/b{i}.bin"))).expect("the output file was written");
        assert_eq!(got.len(), SPILL_BLOB, "size of b{i}");
        assert!(got == expected, "contents of b{i} differ from the blob pattern");
    }
    s.check_cleanup(spilled);
}

/// A worker that cannot listen where it is told (192.0.2.1 is TEST-NET-1, an address this
/// host does not own) cannot start: the nanny does not restart it but exits non-zero at
/// once, naming the address, and leaves no process behind.
#[test]
fn a_worker_that_cannot_start_stops_its_nanny_at_once() {
    let mut sb = Sandbox::new();
    let (scheduler, address) = start_scheduler(&mut sb, &[]);
    let dir = local_dir(&sb);
    let started = Instant::now();
    let nanny = sb
        .worker(&address)
        .name("w")
        .label("nanny")
        .local_directory(&dir)
        .args(&["--listen-address", "192.0.2.1:45678"])
        .spawn_to_exit();
    let nanny_pid = sb.pid(nanny);
    let mut recorded = Recorded::default();
    while sb.is_running(nanny) && started.elapsed() < Duration::from_secs(10) {
        recorded.add_descendants(nanny_pid);
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = sb.wait_exit(nanny, DEADLINE);
    let took = started.elapsed();
    assert_ne!(out.code(), Some(0), "the nanny must fail:\n{}", out.describe());
    assert!(
        out.code().is_some(),
        "the nanny exits, it is not killed:\n{}",
        out.describe()
    );
    assert!(took < Duration::from_secs(5), "the nanny took {took:?} to give up");
    // The worker's own error is forwarded too; the nanny's is the last.
    let error = *out.error_lines().last().expect("the nanny printed an error");
    assert!(
        error.starts_with("distd: error: worker w: "),
        "the nanny's error names the worker: {error}"
    );
    assert!(
        error.contains("192.0.2.1"),
        "the error names the listen address: {error}"
    );
    assert!(
        !error.contains("crash loop"),
        "a worker that cannot start is not retried: {error}"
    );
    let starts = out.stderr.matches("nanny: started worker").count();
    assert_eq!(starts, 1, "the worker was started once:\n{}", out.describe());
    let survivors = recorded.survivors();
    assert!(survivors.is_empty(), "the nanny's children survive it: {survivors:?}");
    assert_nothing_left_in(&mut sb, &[scheduler], "after the nanny gave up");
    assert_eq!(worker_pids(&info(&mut sb, &address)), [], "no worker registered");
    sb.check_no_crashes();
}

/// `--listen-address HOST` (or `HOST:0`, "any port", which the error for `--nworkers` with a
/// fixed port recommends) works under the nanny: its worker registers and runs a graph.
#[test]
fn a_listen_address_without_a_port_works_under_the_nanny() {
    for listen in ["127.0.0.1", "127.0.0.1:0"] {
        let mut cluster = nanny_cluster(&[], "w", &["--listen-address", listen, "--nthreads", "1"], 1);
        let out = cluster.run_graph("g.toml", &sleeps_and_sum(2));
        out.assert_success();
        assert_eq!(out.stdout, triangle(2), "with --listen-address {listen}");
        cluster.check_no_crashes();
    }
}

/// SIGTERM to a nanny whose worker runs command tasks: the nanny, the worker and the tasks'
/// processes are all gone within the grace period.
#[test]
fn sigterm_to_the_nanny_stops_it_with_all_its_descendants() {
    let mut cluster = nanny_cluster(&[], "w", &["--nthreads", "2", "--shutdown-timeout", "2s"], 1);
    let nanny_id = cluster.workers[0];
    let nanny = cluster.pid(nanny_id);
    let address = cluster.address.clone();
    let submits: Vec<ProcId> = (0..2)
        .map(|i| cluster.spawn(&format!("submit {i}"), &["submit", &address, "--", "sleep", "30"]))
        .collect();
    let mut recorded = Recorded::default();
    cluster.wait_until("both `sleep 30` tasks to run", DEADLINE, |_| {
        let sleeps = descendants(nanny)
            .into_iter()
            .filter(|&p| cmdline(p) == "sleep 30")
            .count();
        (sleeps == 2).then_some(())
    });
    recorded.add(nanny);
    recorded.add_descendants(nanny);
    let before = recorded.procs.len();
    assert!(before >= 4, "nanny, worker and two sleeps: {:?}", recorded.procs);

    let signalled = Instant::now();
    cluster.signal(nanny_id, libc::SIGTERM);
    let grace = Duration::from_secs(2) + Duration::from_millis(1500);
    let gone = cluster.poll_until(grace, |_| recorded.survivors().is_empty().then_some(()));
    assert!(
        gone.is_some(),
        "{:.1} s after SIGTERM these still run: {:?}\n{}",
        signalled.elapsed().as_secs_f64(),
        recorded.survivors(),
        cluster.report()
    );
    let out = cluster.wait_exit(nanny_id, DEADLINE);
    assert_eq!(
        out.code(),
        Some(0),
        "a nanny stopped by SIGTERM exits 0:\n{}",
        out.describe()
    );
    let mut expected = submits;
    expected.push(cluster.scheduler);
    assert_nothing_left_in(&mut cluster, &expected, "after SIGTERM to the nanny");
    cluster.check_no_crashes();
}

/// `distd restart` and `Client::restart` with two workers under one nanny: the same names
/// come back as new processes, and graphs run afterwards.
#[test]
fn restart_brings_the_same_workers_back_as_new_processes() {
    let mut cluster = nanny_cluster(&[], "n", &["--nworkers", "2", "--nthreads", "1"], 2);
    let nanny = cluster.pid(cluster.workers[0]);
    let before = worker_pids(&cluster.info());
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["n-0", "n-1"]);
    let pids: BTreeSet<i32> = before.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        wait_for_children(&mut cluster, nanny, 2)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        pids,
        "the registered workers are the nanny's children"
    );

    let address = cluster.address.clone();
    let out = cluster.run("restart", &["restart", &address]);
    out.assert_success();
    assert_eq!(out.stdout, "restarted 2 workers\n", "{}", out.describe());
    let after = worker_pids(&cluster.wait_for_workers(2));
    assert_eq!(
        after.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        names,
        "the same names"
    );
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        assert_ne!(old, new, "worker {name} is a new process");
        assert!(!alive(*old), "the old process of {name} (pid {old}) is gone");
    }
    let kids: BTreeSet<i32> = wait_for_children(&mut cluster, nanny, 2).into_iter().collect();
    assert_eq!(
        kids,
        after.iter().map(|(_, p)| *p).collect(),
        "the new workers are the nanny's children"
    );
    let out = cluster.run_graph("after.toml", &sleeps_and_sum(6));
    out.assert_success();
    assert_eq!(out.stdout, triangle(6));

    // The same from Rust.
    let client = distd::Client::connect(host_port(&address)).expect("connect a Rust client");
    let n = client.restart().expect("Client::restart");
    assert_eq!(n, 2);
    drop(client);
    let again = worker_pids(&cluster.wait_for_workers(2));
    assert_eq!(
        again.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        names,
        "the same names"
    );
    for ((name, old), (_, new)) in after.iter().zip(&again) {
        assert_ne!(old, new, "worker {name} is a new process after Client::restart");
    }
    let out = cluster.run_graph("again.toml", &sleeps_and_sum(6));
    out.assert_success();
    assert_eq!(out.stdout, triangle(6));
    cluster.check_no_crashes();
}

/// Regression test for issue 10: after its scheduler restarted, the nanny never linked
/// again, and `distd restart` said "no nanny-supervised workers to restart". Now it dials the
/// new scheduler on the same port and registers again, and a restart works.
#[test]
fn a_nanny_links_again_to_a_restarted_scheduler_and_restart_works() {
    let mut cluster = nanny_cluster(&[], "r", &["--nthreads", "1", "--death-timeout", "30s"], 1);
    let nanny = cluster.pid(cluster.workers[0]);
    let port: u16 = host_port(&cluster.address)
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the scheduler's address ends in its port");
    let before = worker_pids(&cluster.info());
    let old = cluster.scheduler;
    cluster.kill_group(old);
    let (scheduler, address) = harness::start_scheduler_on(&mut cluster, port, &[]);
    cluster.scheduler = scheduler;
    cluster.address = address.clone();
    let back = worker_pids(&cluster.wait_for_workers(1));
    assert_eq!(back, before, "the same worker process registers with the new scheduler");
    // The nanny registers too (its dial backs off from a tenth of a second).
    let out = cluster.wait_until("the nanny to register with the new scheduler", DEADLINE, |sb| {
        let out = sb.run("restart", &["restart", &address]);
        out.status.success().then_some(out)
    });
    assert_eq!(out.stdout, "restarted 1 worker\n", "{}", out.describe());
    let after = worker_pids(&cluster.wait_for_workers(1));
    assert_eq!(after[0].0, "r");
    assert_ne!(after[0].1, before[0].1, "a new worker process");
    assert_eq!(wait_for_children(&mut cluster, nanny, 1), [after[0].1]);
    let out = cluster.run_graph("after.toml", &sleeps_and_sum(3));
    out.assert_success();
    assert_eq!(out.stdout, triangle(3));
    cluster.check_no_crashes();
}

/// `distd local -n 2 --processes --run GRAPH`: the graph's result, exit 0, and no process
/// left once it returns.
#[test]
fn local_processes_runs_a_graph_and_leaves_nothing_behind() {
    let mut sb = Sandbox::new();
    let graph = sb.write("graph.toml", &sleeps_and_sum(8));
    let graph = graph.to_str().expect("the sandbox path is UTF-8").to_string();
    let dir = local_dir(&sb);
    let local: ProcId = sb.spawn(
        "local",
        &[
            "local",
            "-n",
            "2",
            "--processes",
            "--run",
            &graph,
            "--no-progress",
            "--local-directory",
            &dir,
        ],
    );
    let pid = sb.pid(local);
    let mut recorded = Recorded::default();
    let mut most_workers = 0;
    let started = Instant::now();
    while sb.is_running(local) && started.elapsed() < DEADLINE {
        recorded.add_descendants(pid);
        let workers = children(pid)
            .into_iter()
            .filter(|&p| cmdline(p).contains("--no-nanny"))
            .count();
        most_workers = most_workers.max(workers);
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = sb.wait_exit(local, DEADLINE);
    out.assert_success();
    assert_eq!(out.stdout, triangle(8), "{}", out.describe());
    assert_eq!(most_workers, 2, "two worker processes ran under the nanny");
    let survivors = recorded.survivors();
    assert!(survivors.is_empty(), "processes outlive `distd local`: {survivors:?}");
    assert_nothing_left_in(&mut sb, &[], "after `distd local --processes --run`");
    sb.check_no_crashes();
}

/// `distd local --processes` without `--run` serves as a cluster of nanny-supervised worker
/// processes until SIGINT, and leaves nothing behind.
#[test]
fn local_processes_serves_a_cluster_until_interrupted() {
    let mut sb = Sandbox::new();
    let dir = local_dir(&sb);
    let local: ProcId = sb.spawn_daemon("local", &["local", "-n", "2", "--processes", "--local-directory", &dir]);
    let line = sb.wait_for_stdout(local, "scheduler at ", DEADLINE);
    let address = line.trim().trim_start_matches("scheduler at ").to_string();
    sb.wait_for_stdout(local, "2 workers ready", DEADLINE);
    let pid = sb.pid(local);
    let mut recorded = Recorded::default();
    recorded.add_descendants(pid);
    let workers = children(pid)
        .into_iter()
        .filter(|&p| cmdline(p).contains("--no-nanny"))
        .count();
    assert_eq!(workers, 2, "two worker processes run under the nanny");

    let out = sb.run("submit", &["submit", &address, "--", "echo", "via local --processes"]);
    out.assert_success();
    assert_eq!(out.stdout, "via local --processes\n");
    recorded.add_descendants(pid);

    sb.signal(local, libc::SIGINT);
    sb.wait_exit(local, DEADLINE).assert_success();
    let gone = sb.poll_until(DEADLINE, |_| recorded.survivors().is_empty().then_some(()));
    assert!(
        gone.is_some(),
        "processes outlive `distd local --processes`: {:?}",
        recorded.survivors()
    );
    assert_nothing_left_in(&mut sb, &[], "after `distd local --processes` is interrupted");
    sb.check_no_crashes();
}
