//! What a new user of `distd submit` ran into (issue 12, cases 5 to 8), each as the user
//! lives it: the command's stdout and stderr printed once each, in their streams, whether it
//! failed or not; its stdin forwarded; a working directory that is not there named as such.

mod harness;

use harness::{distd_exe, start_scheduler, Cluster, Outcome, Sandbox, DEADLINE};

/// `sh -c LINE` run in the cluster's sandbox (for pipelines into and out of `distd`), with
/// `$DISTD` the binary under test and `$ADDR` the scheduler's address.
fn shell(cluster: &mut Cluster, line: &str) -> Outcome {
    let line = format!("DISTD='{}' ADDR='{}'; {line}", distd_exe(), cluster.address);
    cluster.run_program("sh", "sh", &["-c", &line])
}

/// The failure line `distd submit` ends with.
fn failed(key: &str, how: &str) -> String {
    format!("distd: task {key:?} failed: {how}\n")
}

/// Case 5. Regression: stdout was lost and stderr printed twice (once raw, once in the
/// failure line).
#[test]
fn a_failed_submit_prints_the_commands_stdout_and_stderr_once_each_and_exits_with_its_status() {
    let mut cluster = Cluster::start(1);

    let out = cluster.submit(
        &["--key", "exit-3"],
        &["sh", "-c", "echo out; echo err >&2; echo more out; exit 3"],
    );
    out.assert_code(3);
    assert_eq!(out.stdout, "out\nmore out\n", "{}", out.describe());
    assert_eq!(
        out.stderr,
        format!("err\n{}", failed("exit-3", "command exited with status 3")),
        "{}",
        out.describe()
    );

    let out = cluster.submit(
        &["--key", "killed"],
        &["sh", "-c", "echo out; echo err >&2; kill -9 $$"],
    );
    out.assert_code(137);
    assert_eq!(out.stdout, "out\n", "{}", out.describe());
    assert_eq!(
        out.stderr,
        format!("err\n{}", failed("killed", "command killed by signal 9")),
        "{}",
        out.describe()
    );
    cluster.check_no_crashes();
}

/// Case 6. Regression: a command that succeeded had its stderr dropped.
#[test]
fn a_successful_submit_prints_the_commands_stderr_too() {
    let mut cluster = Cluster::start(1);
    let out = cluster.submit(&[], &["sh", "-c", "echo out; echo warning: careful >&2"]);
    out.assert_success();
    assert_eq!(out.stdout, "out\n", "{}", out.describe());
    assert_eq!(out.stderr, "warning: careful\n", "{}", out.describe());

    // A stdout larger than a worker keeps in memory (64 MiB, then a file) arrives whole,
    // with the stderr after it.
    let big = 70_000_000;
    let expected = shell(&mut cluster, &format!("yes 0123456789 | head -c {big} | cksum"));
    expected.assert_success();
    let out = shell(
        &mut cluster,
        &format!("\"$DISTD\" submit \"$ADDR\" -- sh -c 'yes 0123456789 | head -c {big}; echo done >&2' | cksum"),
    );
    out.assert_success();
    assert_eq!(out.stdout, expected.stdout, "{}", out.describe());
    assert_eq!(out.stderr, "done\n", "{}", out.describe());
    cluster.check_no_crashes();
}

/// Case 7. Regression: `echo x | distd submit ADDR -- cat` printed nothing.
#[test]
fn a_submit_forwards_its_stdin_to_the_command_unless_told_not_to() {
    let mut cluster = Cluster::start(2);

    let out = shell(&mut cluster, "echo x | \"$DISTD\" submit \"$ADDR\" -- cat");
    out.assert_success();
    assert_eq!(out.stdout, "x\n", "{}", out.describe());
    assert_eq!(out.stderr, "", "{}", out.describe());

    // -n (as `ssh -n`): stdin is not read, and the command's is /dev/null.
    for flag in ["-n", "--no-stdin"] {
        let out = shell(
            &mut cluster,
            &format!("echo x | \"$DISTD\" submit {flag} \"$ADDR\" -- sh -c 'cat; readlink /proc/self/fd/0'"),
        );
        out.assert_success();
        assert_eq!(out.stdout, "/dev/null\n", "{flag}: {}", out.describe());
    }

    // An empty stdin is /dev/null too (the harness's own stdin is /dev/null).
    let out = cluster.submit(&[], &["readlink", "/proc/self/fd/0"]);
    out.assert_success();
    assert_eq!(out.stdout, "/dev/null\n", "{}", out.describe());

    // Stdin goes to the cluster in parts of 4 MiB as it is read, whole and in order, over
    // both workers: its size is bounded by no frame. (20 MiB here: in a debug build the
    // scheduler copies scattered bytes at ~20 MB/s.)
    let big = 20 << 20;
    let expected = shell(&mut cluster, &format!("yes 0123456789 | head -c {big} | cksum"));
    expected.assert_success();
    let out = shell(
        &mut cluster,
        &format!("yes 0123456789 | head -c {big} | \"$DISTD\" submit \"$ADDR\" -- cksum"),
    );
    out.assert_success();
    assert_eq!(out.stdout, expected.stdout, "{}", out.describe());
    assert_eq!(out.stderr, "", "{}", out.describe());

    // A command that reads only part of its stdin is not an error.
    let out = shell(
        &mut cluster,
        &format!("yes | head -c {} | \"$DISTD\" submit \"$ADDR\" -- head -c 2", 5 << 20),
    );
    out.assert_success();
    assert_eq!(out.stdout, "y\n", "{}", out.describe());
    cluster.check_no_crashes();
}

/// A submit with stdin to send, started before any worker joined, waits for one.
#[test]
fn a_submit_with_stdin_waits_for_a_worker_to_hold_it() {
    let mut sb = Sandbox::new();
    let (_scheduler, address) = start_scheduler(&mut sb, &[]);
    let line = format!("echo waited | '{}' submit '{address}' -- cat", distd_exe());
    let submit = sb.spawn_program_daemon("submit", "sh", &["-c", &line]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(sb.is_running(submit), "the submit waits for a worker");
    sb.worker(&address).name("late").start();
    let out = sb.wait_exit(submit, DEADLINE);
    out.assert_success();
    assert_eq!(out.stdout, "waited\n", "{}", out.describe());
    sb.check_no_crashes();
}

/// Case 8. Regression: `--cwd /nonexistent -- ls` said "cannot start command "ls": No such
/// file or directory", blaming the program.
#[test]
fn a_submit_in_a_missing_directory_is_told_the_directory_is_missing() {
    let mut cluster = Cluster::start(1);
    let out = cluster.submit(&["--key", "nowhere", "--cwd", "/nonexistent"], &["ls"]);
    out.assert_code(127);
    assert_eq!(out.stdout, "", "{}", out.describe());
    assert_eq!(
        out.stderr,
        failed(
            "nowhere",
            "cannot start command \"ls\": working directory /nonexistent: No such file or directory"
        ),
        "{}",
        out.describe()
    );

    let file = cluster.write("a-file", "");
    let file = file.to_str().expect("UTF-8 path").to_string();
    let out = cluster.submit(&["--key", "in-a-file", "--cwd", &file], &["ls"]);
    out.assert_code(127);
    assert_eq!(
        out.stderr,
        failed(
            "in-a-file",
            &format!("cannot start command \"ls\": working directory {file}: Not a directory")
        ),
        "{}",
        out.describe()
    );

    // A missing program is still blamed on the program.
    let out = cluster.submit(&["--key", "no-program"], &["distd-test-no-such-program"]);
    out.assert_code(127);
    assert_eq!(
        out.stderr,
        failed(
            "no-program",
            "cannot start command \"distd-test-no-such-program\": No such file or directory (os error 2)"
        ),
        "{}",
        out.describe()
    );
    cluster.check_no_crashes();
}

/// Case 8 in a graph file: the same answer for a task's `cwd`.
#[test]
fn a_graph_task_in_a_missing_directory_is_told_the_directory_is_missing() {
    let mut cluster = Cluster::start(1);
    let out = cluster.run_graph(
        "nowhere.toml",
        "[[task]]\nkey = \"listing\"\ncommand = [\"ls\"]\ncwd = \"/nonexistent\"\noutput = true\n",
    );
    out.assert_code(1);
    assert_eq!(out.stdout, "", "{}", out.describe());
    assert_eq!(
        out.stderr,
        failed(
            "listing",
            "cannot start command \"ls\": working directory /nonexistent: No such file or directory"
        ),
        "{}",
        out.describe()
    );
    cluster.check_no_crashes();
}
