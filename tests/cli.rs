//! What a user does from the command line with a healthy cluster: run graphs, submit
//! commands, look at the cluster, start and stop its processes.

mod harness;

use harness::{host_port, info, start_scheduler, Cluster, Sandbox, DEADLINE};
use std::time::Duration;

/// Commands and functions in one graph, each way of handing inputs to a command, printed
/// outputs in file order and an output written to a file.
#[test]
fn a_graph_of_commands_and_functions_runs_on_worker_processes() {
    let mut cluster = Cluster::builder().workers(2).nthreads(2).start();
    let report = cluster.path("report.txt");
    let graph = format!(
        r#"
[[task]]
key = "numbers"
command = ["seq", "1", "100"]

[[task]]
key = "total"
function = "sum"
deps = ["numbers"]
output = true

# {{dep:KEY}} inside a shell line is the path of KEY's result.
[[task]]
key = "evens"
shell = "grep -E '[02468]$' {{dep:numbers}}"
deps = ["numbers"]

[[task]]
key = "even-sum"
function = "sum"
deps = ["evens"]

# A dependency as stdin.
[[task]]
key = "top3"
shell = "sort -rn | head -n 3"
stdin = "evens"
deps = ["evens"]
output = true

# {{deps}} as a whole argument is every input's path, in order.
[[task]]
key = "both"
command = ["cat", "{{deps}}"]
deps = ["total", "even-sum"]
output = true

[[task]]
key = "joined"
function = "concat"
deps = ["top3", "total"]
output = true

[[task]]
key = "plus-1000"
function = "sum"
args = "1000"
deps = ["total"]
output = true

# Inputs as environment variables, output to a file.
[[task]]
key = "report"
shell = 'echo "total=$(cat "$DISTD_DEP_0") evens=$(cat "$DISTD_DEP_1") n=$DISTD_NDEPS"'
deps = ["total", "even-sum"]
output = "{report}"
"#,
        report = report.display()
    );
    let out = cluster.run_graph("mixed.toml", &graph);
    out.assert_success();
    assert_eq!(
        out.stdout,
        "5050\n100\n98\n96\n50502550\n100\n98\n96\n5050\n6050\n",
        "{}",
        out.describe()
    );
    let written = std::fs::read_to_string(&report).expect("the report output was written");
    assert_eq!(written, "total=5050 evens=2550 n=2\n");

    // Without any `output`, the sinks are printed; a relative output path is relative to
    // where `distd run` runs.
    let out = cluster.run_graph(
        "sinks.toml",
        r#"
[[task]]
key = "a"
command = ["echo", "alpha"]

[[task]]
key = "b"
function = "identity"
args = "beta"

[[task]]
key = "c"
function = "concat"
deps = ["a", "b"]

[[task]]
key = "d"
command = ["printf", "delta"]
"#,
    );
    out.assert_success();
    assert_eq!(out.stdout, "alpha\nbeta\ndelta\n", "{}", out.describe());

    let out = cluster.run_graph(
        "relative.toml",
        r#"
[[task]]
key = "x"
command = ["seq", "3"]
output = "relative-out.txt"
"#,
    );
    out.assert_success();
    assert_eq!(out.stdout, "");
    let written = std::fs::read_to_string(cluster.path("relative-out.txt"))
        .expect("the relative output landed in the run's working directory");
    assert_eq!(written, "1\n2\n3\n");
    cluster.check_no_crashes();
}

/// `distd submit` exits with the command's status, the way a shell user expects.
#[test]
fn submit_exits_with_the_commands_status() {
    let mut cluster = Cluster::start(2);

    let out = cluster.submit(&[], &["echo", "hello", "world"]);
    out.assert_success();
    assert_eq!(out.stdout, "hello world\n");

    let out = cluster.submit(&[], &["sh", "-c", "echo partial; echo 'it went wrong' >&2; exit 3"]);
    out.assert_code(3);
    assert!(out.stderr.contains("it went wrong"), "{}", out.describe());
    assert!(out.stderr.contains("status 3"), "{}", out.describe());

    let out = cluster.submit(&[], &["distd-test-no-such-program", "x"]);
    out.assert_code(127);
    assert!(
        out.stderr.contains("distd-test-no-such-program"),
        "the error names the program:\n{}",
        out.describe()
    );

    let out = cluster.submit(&["--timeout", "300ms"], &["sleep", "30"]);
    out.assert_code(124);
    assert!(out.stderr.contains("timed out"), "{}", out.describe());

    let out = cluster.submit(&[], &["sh", "-c", "kill -9 $$"]);
    out.assert_code(137);
    assert!(out.stderr.contains("signal 9"), "{}", out.describe());

    let cwd = cluster.path("some folder");
    std::fs::create_dir_all(&cwd).expect("create the working folder");
    let cwd = cwd.to_str().expect("UTF-8 path").to_string();
    let out = cluster.submit(
        &["--env", "GREETING=hi there", "--env", "EMPTY=", "--cwd", &cwd],
        &["sh", "-c", "echo \"$GREETING|${EMPTY-unset}|$(pwd)\""],
    );
    out.assert_success();
    assert_eq!(out.stdout, format!("hi there||{cwd}\n"));

    let out = cluster.submit(&["--key", "my-key"], &["printf", "no newline"]);
    out.assert_success();
    assert_eq!(out.stdout, "no newline");

    // A failed command is no crash of the cluster: both workers are still there.
    let info = cluster.wait_for_workers(2);
    assert_eq!(info["workers"].as_array().map(Vec::len), Some(2));
    cluster.check_no_crashes();
}

/// `distd info` names the workers as `--name` named them.
#[test]
fn info_lists_the_workers_by_name() {
    let mut sb = Sandbox::new();
    let (_scheduler, address) = start_scheduler(&mut sb, &[]);
    sb.worker(&address).name("alpha").nthreads(3).start();
    sb.worker(&address)
        .name("beta")
        .nthreads(1)
        .args(&["--resources", "GPU=2"])
        .start();
    let info = sb.wait_for_workers(&address, 2);
    let mut workers: Vec<(String, u64)> = info["workers"]
        .as_array()
        .expect("workers is a list")
        .iter()
        .map(|w| {
            (
                w["name"].as_str().expect("a worker has a name").to_string(),
                w["nthreads"].as_u64().expect("a worker has nthreads"),
            )
        })
        .collect();
    workers.sort();
    assert_eq!(workers, vec![("alpha".into(), 3), ("beta".into(), 1)]);
    for w in info["workers"].as_array().expect("workers is a list") {
        let addr = w["address"].as_str().expect("a worker has an address");
        assert!(addr.starts_with("127.0.0.1:"), "peer address {addr}");
    }
    assert!(
        info["scheduler_version"].as_str().is_some_and(|v| !v.is_empty()),
        "{info}"
    );

    // The table says the same, for people.
    let out = sb.run("info table", &["info", host_port(&address)]);
    out.assert_success();
    assert!(out.stdout.contains("workers: 2"), "{}", out.describe());
    assert!(
        out.stdout.contains("alpha") && out.stdout.contains("beta"),
        "{}",
        out.describe()
    );
    sb.check_no_crashes();
}

const SMALL_GRAPH: &str = r#"
[[task]]
key = "numbers"
command = ["seq", "1", "10"]

[[task]]
key = "squares"
shell = "awk '{ print $1 * $1 }' {dep:numbers}"
deps = ["numbers"]

[[task]]
key = "total"
function = "sum"
deps = ["squares"]
"#;

/// `distd local --run` and `distd run` without a scheduler bring their own cluster.
#[test]
fn local_runs_a_graph_in_one_process() {
    let mut sb = Sandbox::new();
    let graph = sb.write("small.toml", SMALL_GRAPH);
    let graph = graph.to_str().expect("UTF-8 path");
    let scratch = sb.path("scratch");
    let scratch = scratch.to_str().expect("UTF-8 path");

    let out = sb.run(
        "local",
        &[
            "local",
            "-n",
            "2",
            "--run",
            graph,
            "--no-progress",
            "--local-directory",
            scratch,
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout, "385\n", "{}", out.describe());

    let out = sb.run("run local", &["run", graph, "-n", "2", "--no-progress"]);
    out.assert_success();
    assert_eq!(out.stdout, "385\n", "{}", out.describe());
    sb.check_no_crashes();
}

/// The scheduler file and pid file live exactly as long as the scheduler; SIGTERM stops
/// the scheduler with status 0, and its workers follow with status 0.
#[test]
fn scheduler_files_and_a_clean_stop_on_sigterm() {
    let mut sb = Sandbox::new();
    let scheduler_file = sb.path("scheduler.json");
    let pid_file = sb.path("scheduler.pid");
    let (scheduler, address) = start_scheduler(
        &mut sb,
        &[
            "--scheduler-file",
            scheduler_file.to_str().expect("UTF-8 path"),
            "--pid-file",
            pid_file.to_str().expect("UTF-8 path"),
        ],
    );
    // The stdout line comes first; the files follow it.
    let json: serde_json::Value = sb.wait_until("the scheduler file", DEADLINE, |_| {
        let text = std::fs::read_to_string(&scheduler_file).ok()?;
        serde_json::from_str(&text).ok()
    });
    assert_eq!(json["address"].as_str(), Some(address.as_str()), "{json}");
    let pid = sb.wait_until("the pid file", DEADLINE, |_| std::fs::read_to_string(&pid_file).ok());
    assert_eq!(pid.trim(), sb.pid(scheduler).to_string());

    // One worker finds the scheduler through the file, one through the address.
    let by_file = sb.worker_of_file(&scheduler_file).name("by-file").start();
    let by_address = sb.worker(&address).name("by-address").start();

    // SIGINT stops a worker cleanly too, and the scheduler sees it go.
    sb.signal(by_address, libc::SIGINT);
    sb.wait_exit(by_address, DEADLINE).assert_success();
    sb.wait_for_workers(&address, 1);

    sb.signal(scheduler, libc::SIGTERM);
    sb.wait_exit(scheduler, DEADLINE).assert_success();
    assert!(!scheduler_file.exists(), "the scheduler file outlived the scheduler");
    assert!(!pid_file.exists(), "the pid file outlived the scheduler");
    let out = sb.wait_exit(by_file, DEADLINE);
    out.assert_success();
    sb.check_no_crashes();
}

/// `--idle-timeout` stops a scheduler that has nothing to do, but not during a run.
#[test]
fn an_idle_scheduler_exits_by_itself() {
    let mut sb = Sandbox::new();
    let (scheduler, address) = start_scheduler(&mut sb, &["--idle-timeout", "1s"]);
    let worker = sb.worker(&address).name("w0").start();
    let graph = sb.write(
        "slow.toml",
        r#"
[[task]]
key = "slow"
shell = "sleep 1.6; echo done"

[[task]]
key = "slower"
function = "sleep"
args = "600ms"
deps = ["slow"]
"#,
    );
    // The graph's sleeps (1.6 s, then 0.6 s) outlast the 1 s idle timeout.
    let out = sb.run_graph("run slow", &graph, &address);
    out.assert_success();
    assert_eq!(out.stdout, "done\n");

    let out = sb.wait_exit(scheduler, Duration::from_secs(15));
    out.assert_success();
    assert!(out.stderr.contains("idle"), "{}", out.describe());
    sb.wait_exit(worker, DEADLINE).assert_success();
    sb.check_no_crashes();
}

/// Regression test for a bug: `distd info ADDR | head -1` (or any reader that goes away)
/// made `distd info` panic with "failed printing to stdout: Broken pipe (os error 32)" and
/// exit 101. Output to a closed pipe must end the command quietly, without a panic.
#[test]
fn info_into_a_closed_pipe_does_not_panic() {
    let mut cluster = Cluster::start(1);
    let address = cluster.address.clone();
    for args in [vec!["info", address.as_str()], vec!["info", address.as_str(), "--json"]] {
        let out = cluster.run_with_closed_stdout("info | closed", &args);
        assert!(!out.stderr.contains("panicked"), "{}", out.describe());
        assert_ne!(out.code(), Some(101), "{}", out.describe());
    }
    cluster.check_no_crashes();
}

/// The other printing commands already survive a closed stdout.
#[test]
fn run_and_submit_into_a_closed_pipe_do_not_panic() {
    let mut cluster = Cluster::start(1);
    let address = cluster.address.clone();
    let graph = cluster.write("small.toml", SMALL_GRAPH);
    let graph = graph.to_str().expect("UTF-8 path").to_string();
    let out = cluster.run_with_closed_stdout(
        "run | closed",
        &["run", &graph, "--scheduler", &address, "--no-progress"],
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    let out = cluster.run_with_closed_stdout("submit | closed", &["submit", &address, "--", "seq", "5"]);
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    cluster.check_no_crashes();
}

/// `distd local -n 2` without `--run` serves as a cluster for other clients until SIGINT.
#[test]
fn local_serves_a_cluster_until_interrupted() {
    let mut sb = Sandbox::new();
    let scratch = sb.path("scratch");
    let local = sb.spawn_daemon(
        "local",
        &[
            "local",
            "-n",
            "2",
            "--local-directory",
            scratch.to_str().expect("UTF-8 path"),
        ],
    );
    let line = sb.wait_for_stdout(local, "scheduler at ", DEADLINE);
    let address = line.trim().trim_start_matches("scheduler at ").to_string();
    sb.wait_for_stdout(local, "2 workers ready", DEADLINE);
    let info = info(&mut sb, &address);
    assert_eq!(info["workers"].as_array().map(Vec::len), Some(2), "{info}");

    let out = sb.run("submit", &["submit", &address, "--", "echo", "via local"]);
    out.assert_success();
    assert_eq!(out.stdout, "via local\n");

    sb.signal(local, libc::SIGINT);
    sb.wait_exit(local, DEADLINE).assert_success();
    sb.check_no_crashes();
}

/// Regression test for a bug: a worker that is (re)connecting to its scheduler ignores
/// SIGTERM and SIGINT until its `--death-timeout` runs out (60 s by default), then exits 1
/// with "unreachable". Both at start (scheduler not up yet) and after losing the scheduler.
/// Expected: a prompt, clean stop with status 0, as at any other time.
#[test]
fn a_worker_waiting_for_its_scheduler_stops_promptly_on_sigterm() {
    let mut sb = Sandbox::new();
    // Never connected: nothing listens there.
    let early = sb
        .worker("127.0.0.1:1")
        .label("worker early")
        .death_timeout("20s")
        .no_nanny()
        .spawn();
    sb.wait_for_stderr(early, "not reachable yet", DEADLINE);
    // Lost its scheduler.
    let (scheduler, address) = start_scheduler(&mut sb, &[]);
    let late = sb.worker(&address).name("late").death_timeout("20s").no_nanny().start();
    // Paused so that it cannot reach the dying scheduler's socket (see failures.rs).
    sb.pause(late);
    sb.kill_group(scheduler);
    sb.resume(late);
    sb.wait_for_stderr(late, "lost the scheduler", DEADLINE);

    for worker in [early, late] {
        sb.allow_exit_code(worker, 1);
        sb.signal(worker, libc::SIGTERM);
        // Not a speed check: the bound is well under the 20 s death timeout that the bug
        // made the worker wait for, so only that failure can miss it.
        let out = sb.wait_exit(worker, Duration::from_secs(15));
        out.assert_success();
    }
}

/// The same under a nanny (the default), which makes it worse. Before its first worker is
/// even started, the nanny tries the scheduler itself for the whole `--death-timeout`,
/// silently and deaf to SIGTERM (then starts a worker only to stop it). After the scheduler
/// was lost, SIGTERM reaches the nanny but its reconnecting worker ignores the nanny's stop,
/// so the nanny waits `--shutdown-timeout` (10 s) and SIGKILLs it.
/// Expected: a prompt, clean stop with status 0.
#[test]
fn a_nanny_waiting_for_its_scheduler_stops_promptly_on_sigterm() {
    let mut sb = Sandbox::new();
    let early = sb
        .worker("127.0.0.1:1")
        .label("nanny early")
        .death_timeout("20s")
        .spawn();
    let (scheduler, address) = start_scheduler(&mut sb, &[]);
    let late = sb.worker(&address).name("late").death_timeout("20s").start();
    sb.kill_group(scheduler);
    sb.wait_for_stderr(late, "lost the scheduler", DEADLINE);

    for nanny in [early, late] {
        sb.signal(nanny, libc::SIGTERM);
        // Not a speed check: the bound is under the nanny's 10 s shutdown timeout, which the
        // bug made it wait for before killing its worker.
        let out = sb.wait_exit(nanny, Duration::from_secs(8));
        out.assert_success();
    }
}
