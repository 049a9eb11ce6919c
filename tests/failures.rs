//! Workers dying under a running graph: the graph still finishes when it can, and a task that
//! keeps killing its workers is stopped with "killed worker".

mod harness;

use harness::{worker_entry, Cluster, DEADLINE};
use std::time::Duration;

/// Layers of sleeping tasks, so that the graph is still running when a worker is killed:
/// 18 commands printing 1..=18, 18 commands doubling them, 3 commands gathering six each,
/// and a final sum: 40 tasks, result 2 * (1 + ... + 18) = 342.
fn layered_graph() -> String {
    let mut g = String::new();
    for i in 1..=18 {
        g.push_str(&format!(
            "[[task]]\nkey = \"l0-{i}\"\nshell = \"sleep 0.2; echo {i}\"\n\n"
        ));
        g.push_str(&format!(
            "[[task]]\nkey = \"l1-{i}\"\nshell = \"sleep 0.2; echo $(( $(cat {{dep:l0-{i}}}) * 2 ))\"\n\
             deps = [\"l0-{i}\"]\n\n"
        ));
    }
    for j in 0..3 {
        let deps: Vec<String> = (1..=6).map(|k| format!("\"l1-{}\"", j * 6 + k)).collect();
        g.push_str(&format!(
            "[[task]]\nkey = \"l2-{j}\"\ncommand = [\"sh\", \"-c\", \"sleep 0.2; cat \\\"$@\\\"\", \"sh\", \"{{deps}}\"]\n\
             deps = [{}]\n\n",
            deps.join(", ")
        ));
    }
    g.push_str("[[task]]\nkey = \"total\"\nfunction = \"sum\"\ndeps = [\"l2-0\", \"l2-1\", \"l2-2\"]\n");
    g
}

#[test]
fn the_layered_graph_is_right_without_failures() {
    let mut cluster = Cluster::builder().workers(2).nthreads(2).start();
    let out = cluster.run_graph("layers.toml", &layered_graph());
    out.assert_success();
    assert_eq!(out.stdout, "342\n", "{}", out.describe());
    cluster.check_no_crashes();
}

/// SIGKILL a worker that holds results and runs tasks: its work is redone elsewhere and the
/// run still succeeds with the right answer.
#[test]
fn a_graph_survives_a_worker_killed_in_the_middle() {
    let mut cluster = Cluster::builder().workers(3).nthreads(2).start();
    let run = cluster.spawn_graph("layers.toml", &layered_graph());
    let victim = cluster.workers[0];
    let address = cluster.address.clone();

    // Wait until the victim holds results and is busy: killing it now loses both.
    let seen = cluster.wait_until("the victim to hold results while busy", DEADLINE, |sb| {
        let info = harness::info(sb, &address);
        let w = worker_entry(&info, "w0")?;
        let busy = w["stored"].as_u64()? > 0 && w["processing"].as_u64()? > 0;
        busy.then(|| w.clone())
    });
    assert!(cluster.is_running(run), "the run ended before the victim was killed");
    cluster.kill_group(victim);

    let out = cluster.wait_exit(run, DEADLINE);
    out.assert_success();
    assert_eq!(
        out.stdout,
        "342\n",
        "{}\nvictim before the kill: {seen}",
        out.describe()
    );

    let scheduler = cluster.scheduler;
    cluster.wait_until("the scheduler to log the loss of w0", DEADLINE, |sb| {
        let log = sb.stderr(scheduler);
        log.lines()
            .any(|l| l.contains("w0") && l.contains("lost"))
            .then_some(())
    });
    let info = cluster.wait_for_workers(2);
    assert!(worker_entry(&info, "w0").is_none(), "{info}");

    // The survivors run the next graph as usual.
    let out = cluster.run_graph("layers-again.toml", &layered_graph());
    out.assert_success();
    assert_eq!(out.stdout, "342\n");
    cluster.check_no_crashes();
}

/// A task whose command kills the worker running it (its parent: the workers run without a
/// nanny here): with `--allowed-failures 1` it errs as "killed worker" after two deaths,
/// naming the two workers; its dependent is not run.
///
/// The graph holds no other output on purpose: a finished output held by a victim hits the
/// bug pinned by `an_output_lost_with_its_worker_is_recomputed_and_delivered`.
#[test]
fn a_task_that_kills_its_workers_errs_as_killed_worker() {
    let mut cluster = Cluster::builder()
        .workers(4)
        .no_nanny()
        .scheduler_args(&["--allowed-failures", "1"])
        .start();
    for w in cluster.workers.clone() {
        // The task's own `kill -9 $PPID` is the expected cause of death.
        cluster.allow_signal(w, libc::SIGKILL);
    }
    let out = cluster.run_graph(
        "assassin.toml",
        r#"
[[task]]
key = "assassin"
shell = "kill -9 $PPID"

[[task]]
key = "after-it"
function = "identity"
deps = ["assassin"]
"#,
    );
    out.assert_code(1);
    assert_eq!(out.stdout, "", "{}", out.describe());
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("\"assassin\""))
        .unwrap_or_else(|| panic!("no line names the task:\n{}", out.describe()));
    assert!(line.contains("killed worker"), "{line}");
    assert!(line.contains("1 dependent task not run"), "{line}");

    // The workers named are exactly the ones that died.
    let names = cluster.worker_names.clone();
    let named: Vec<&String> = names.iter().filter(|n| line.contains(n.as_str())).collect();
    assert_eq!(named.len(), 2, "two workers named in {line:?}");
    for (w, name) in cluster.workers.clone().into_iter().zip(&names) {
        let died = !cluster.is_running(w);
        assert_eq!(
            died,
            named.contains(&name),
            "worker {name}: died={died}, named in {line:?}"
        );
    }
    cluster.wait_for_workers(2);

    // The survivors still work.
    let out = cluster.run_graph(
        "after.toml",
        "[[task]]\nkey = \"n\"\ncommand = [\"seq\", \"4\"]\n\n[[task]]\nkey = \"s\"\nfunction = \"sum\"\ndeps = [\"n\"]\n",
    );
    out.assert_success();
    assert_eq!(out.stdout, "10\n");
    cluster.check_no_crashes();
}

/// The same under nannies: each killed worker is replaced, the task still errs as "killed
/// worker" after two deaths, and the cluster is back to full strength afterwards.
#[test]
fn a_task_that_kills_its_workers_errs_as_killed_worker_under_nannies() {
    let mut cluster = Cluster::builder()
        .workers(3)
        .scheduler_args(&["--allowed-failures", "1"])
        .start();
    let out = cluster.run_graph(
        "assassin.toml",
        "[[task]]\nkey = \"assassin\"\nshell = \"kill -9 $PPID\"\n",
    );
    out.assert_code(1);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("\"assassin\""))
        .unwrap_or_else(|| panic!("no line names the task:\n{}", out.describe()));
    assert!(line.contains("killed worker") && line.contains("2 workers"), "{line}");
    let names = cluster.worker_names.clone();
    assert!(names.iter().any(|n| line.contains(n.as_str())), "{line}");
    for w in cluster.workers.clone() {
        assert!(cluster.is_running(w), "a nanny died with its worker");
    }
    let info = cluster.wait_for_workers(3);
    for name in &names {
        assert!(worker_entry(&info, name).is_some(), "{name} did not come back: {info}");
    }
    cluster.check_no_crashes();
}

/// Regression test for a bug: when the only worker holding a finished output dies right
/// before `distd run` gathers it, the scheduler recomputes the output ("recomputing fine (its
/// result was lost)"), but the run gathers at once and aborts with `distd: error: cannot
/// gather "fine": not finished (processing)`: the output is never printed and the failed
/// task is never reported. Here the killer depends on `fine`, so it is placed on the worker
/// that holds `fine`, and with `--allowed-failures 0` its error ends the client's wait at the
/// moment `fine`'s only copy is lost.
#[test]
fn an_output_lost_with_its_worker_is_recomputed_and_delivered() {
    let mut cluster = Cluster::builder()
        .workers(2)
        .scheduler_args(&["--allowed-failures", "0"])
        .start();
    for w in cluster.workers.clone() {
        cluster.allow_signal(w, libc::SIGKILL);
    }
    let out = cluster.run_graph(
        "lost-output.toml",
        r#"
[[task]]
key = "fine"
shell = "sleep 0.3; echo fine"
output = true

[[task]]
key = "killer"
shell = "kill -9 $PPID"
deps = ["fine"]
"#,
    );
    out.assert_code(1);
    assert_eq!(out.stdout, "fine\n", "{}", out.describe());
    assert!(out.error_lines().is_empty(), "{}", out.describe());
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("\"killer\""))
        .unwrap_or_else(|| panic!("the killer is not reported:\n{}", out.describe()));
    assert!(line.contains("killed worker"), "{line}");
    cluster.check_no_crashes();
}

/// Tasks failing in every way a task can: each failure is one line naming the task and
/// why, dependents are counted, and the results that could be computed are still printed.
#[test]
fn each_failed_task_is_named_and_the_rest_still_prints() {
    let mut cluster = Cluster::builder().workers(2).nthreads(2).start();
    let out = cluster.run_graph(
        "failing.toml",
        r#"
[[task]]
key = "ok"
command = ["echo", "fine"]
output = true

[[task]]
key = "exits"
shell = "echo broken pipe dream >&2; exit 3"

[[task]]
key = "needs-exits"
function = "concat"
deps = ["ok", "exits"]
output = true

[[task]]
key = "fails"
function = "fail"
args = "on purpose"
output = true

[[task]]
key = "no-function"
function = "distd-test-no-such-function"
output = true

[[task]]
key = "slow"
command = ["sleep", "30"]
timeout = "300ms"
output = true

[[task]]
key = "no-program"
command = ["distd-test-no-such-program"]
output = true
"#,
    );
    out.assert_code(1);
    assert_eq!(out.stdout, "fine\n", "{}", out.describe());
    let line_of = |key: &str| -> String {
        let needle = format!("task \"{key}\" failed");
        let lines: Vec<&str> = out.stderr.lines().filter(|l| l.contains(&needle)).collect();
        assert_eq!(lines.len(), 1, "one line for {key}:\n{}", out.describe());
        lines[0].to_string()
    };
    let exits = line_of("exits");
    assert!(
        exits.contains("status 3") && exits.contains("broken pipe dream"),
        "{exits}"
    );
    assert!(exits.contains("1 dependent"), "{exits}");
    assert!(line_of("fails").contains("on purpose"));
    assert!(line_of("no-function").contains("distd-test-no-such-function"));
    assert!(line_of("slow").contains("timed out"));
    assert!(line_of("no-program").contains("distd-test-no-such-program"));
    assert!(
        !out.stderr.contains("task \"needs-exits\" failed"),
        "a dependent is counted under its cause, not reported on its own:\n{}",
        out.describe()
    );
    assert!(out.error_lines().is_empty(), "{}", out.describe());
    cluster.wait_for_workers(2);
    cluster.check_no_crashes();
}

/// `retries` runs a failed task again; without retries the same flaky task fails.
#[test]
fn a_flaky_task_succeeds_with_retries() {
    let mut cluster = Cluster::start(2);
    let flaky = "if [ -e tried ]; then echo second-time; else touch tried; exit 1; fi";
    for name in ["with", "without"] {
        std::fs::create_dir_all(cluster.path(name)).expect("create a folder");
    }
    let graph = format!(
        r#"
[[task]]
key = "with-retries"
shell = "{flaky}"
cwd = "{with}"
retries = 1

[[task]]
key = "without-retries"
shell = "{flaky}"
cwd = "{without}"
"#,
        with = cluster.path("with").display(),
        without = cluster.path("without").display(),
    );
    let out = cluster.run_graph("flaky.toml", &graph);
    out.assert_code(1);
    assert_eq!(out.stdout, "second-time\n", "{}", out.describe());
    assert!(
        out.stderr.contains("task \"without-retries\" failed"),
        "{}",
        out.describe()
    );
    assert!(!out.stderr.contains("\"with-retries\""), "{}", out.describe());
    cluster.check_no_crashes();
}

/// The scheduler dies under a running graph: the run fails at once with a message instead of
/// hanging, and the worker's command is stopped rather than left running.
#[test]
fn a_run_fails_promptly_when_the_scheduler_dies() {
    let mut cluster = Cluster::builder().workers(1).no_nanny().start();
    let marker = cluster.path("started");
    let graph = format!(
        "[[task]]\nkey = \"long\"\nshell = \"echo $$ > '{}'; exec sleep 30\"\n",
        marker.display()
    );
    let run = cluster.spawn_graph("long.toml", &graph);
    let command = wait_for_pid_file(&mut cluster, &marker);
    let scheduler = cluster.scheduler;
    let worker = cluster.workers[0];
    // Paused so that it cannot reach the dying scheduler's socket (see
    // `a_worker_retries_after_a_connection_reset_during_the_handshake`).
    cluster.pause(worker);
    cluster.kill_group(scheduler);
    cluster.resume(worker);

    let out = cluster.wait_exit(run, std::time::Duration::from_secs(10));
    out.assert_code(1);
    assert!(out.the_error().contains("scheduler"), "{}", out.describe());
    cluster.wait_for_stderr(worker, "lost the scheduler", DEADLINE);
    cluster.wait_until("the command to be stopped", DEADLINE, |_| {
        (!is_alive(command)).then_some(())
    });
    // A reconnecting worker ignores SIGTERM (see
    // `a_worker_waiting_for_its_scheduler_stops_promptly_on_sigterm`); do not wait for it.
    cluster.kill_group(worker);
}

/// The pid a task wrote to `path` once it started.
fn wait_for_pid_file(sb: &mut harness::Sandbox, path: &std::path::Path) -> i32 {
    sb.wait_until("a task to write its pid", DEADLINE, |_| {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Regression test: the commands of a worker killed with SIGKILL used to keep running,
/// orphaned (they run in process groups of their own, so not even a kill of the worker's
/// group reaches them). They must die with their worker.
#[test]
fn the_commands_of_a_killed_worker_do_not_outlive_it() {
    for nanny in [true, false] {
        let builder = Cluster::builder().workers(1);
        let cluster = if nanny {
            builder.start()
        } else {
            builder.no_nanny().start()
        };
        command_dies_with_its_worker(cluster);
    }
}

/// Starts a long command on the cluster's one worker, SIGKILLs the worker's process group
/// (with its nanny, if it has one), and checks the command is gone within 5 s.
fn command_dies_with_its_worker(mut cluster: Cluster) {
    let marker = cluster.path("started");
    let graph = format!(
        "[[task]]\nkey = \"long\"\nshell = \"echo $$ > '{}'; exec sleep 30\"\n",
        marker.display()
    );
    cluster.spawn_graph("long.toml", &graph);
    let command = wait_for_pid_file(&mut cluster, &marker);
    let worker = cluster.workers[0];
    cluster.kill_group(worker);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while is_alive(command) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let orphaned = is_alive(command);
    if orphaned {
        // The test started it (through its graph); do not leave it behind.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(command, libc::SIGKILL);
        }
    }
    assert!(!orphaned, "the command (pid {command}) outlived its worker by 5 s");
}

/// A worker that loses its scheduler reconnects when a scheduler comes back on the same
/// address within `--death-timeout`, and gives up with one line naming the address when none
/// does.
#[test]
fn a_worker_rejoins_a_restarted_scheduler_and_gives_up_on_a_dead_one() {
    let mut sb = harness::Sandbox::new();
    let (first, address) = harness::start_scheduler(&mut sb, &[]);
    let port: u16 = address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the address ends in a port");
    let worker = sb.worker(&address).name("loyal").death_timeout("3s").no_nanny().start();
    // The worker is paused while its scheduler dies: a reconnection that reaches the dying
    // scheduler's socket is reset, and the worker then gives up at once (the bug pinned by
    // `a_worker_retries_after_a_connection_reset_during_the_handshake`).
    sb.pause(worker);
    sb.kill_group(first);
    sb.resume(worker);
    sb.wait_for_stderr(worker, "lost the scheduler", DEADLINE);

    let (second, again) = harness::start_scheduler_on(&mut sb, port, &[]);
    assert_eq!(again, address);
    sb.wait_for_stderr(worker, "registered again", DEADLINE);
    let info = harness::info(&mut sb, &address);
    assert!(worker_entry(&info, "loyal").is_some(), "{info}");
    let graph = sb.write("after.toml", "[[task]]\nkey = \"x\"\ncommand = [\"echo\", \"back\"]\n");
    let out = sb.run_graph("run after restart", &graph, &address);
    out.assert_success();
    assert_eq!(out.stdout, "back\n");

    sb.pause(worker);
    sb.kill_group(second);
    let start = std::time::Instant::now();
    sb.resume(worker);
    let out = sb.wait_exit(worker, DEADLINE);
    out.assert_failure();
    sb.allow_exit_code(worker, out.code().expect("an exit status"));
    assert!(start.elapsed() >= std::time::Duration::from_secs(2), "gave up too soon");
    let line = out.the_error();
    assert!(line.contains(harness::host_port(&address)), "{line}");
    sb.check_no_crashes();
}

/// With no worker left, a waiting `distd run` is told so on stderr (not left in silence),
/// and it finishes once a worker joins.
#[test]
fn a_run_with_no_worker_is_told_and_finishes_when_one_joins() {
    let mut cluster = Cluster::builder().workers(0).start();
    let run = cluster.spawn_graph("one.toml", "[[task]]\nkey = \"a\"\nshell = \"echo 41\"\n");
    cluster.wait_for_stderr(run, "no worker has been connected", Duration::from_secs(30));
    let address = cluster.address.clone();
    cluster.worker(&address).name("late").spawn();
    let out = cluster.wait_exit(run, DEADLINE);
    out.assert_success();
    assert_eq!(out.stdout, "41\n", "{}", out.describe());
    assert!(out.stderr.contains("a worker joined"), "{}", out.describe());
}
