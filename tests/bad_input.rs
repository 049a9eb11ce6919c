//! Mistakes a user makes on the command line or in a graph file: each gets one line saying
//! what was wrong and where, a non-zero exit status, and no panic.

mod harness;

use harness::{Outcome, Sandbox};
use std::time::{Duration, Instant};

/// An address where nothing listens (port 1 on loopback is never a distd).
const NOTHING: &str = "127.0.0.1:1";

/// Runs `distd ARGS` and checks the common shape of a refusal: see [`assert_refused`].
fn refused(sb: &mut Sandbox, args: &[&str], wanted: &[&str]) -> Outcome {
    let out = sb.run(&format!("distd {}", args[0]), args);
    assert_refused(out, wanted)
}

/// Checks the common shape of a refusal: a non-zero exit status (not a panic), exactly one
/// `distd: error:` line, containing every one of `wanted`, and nothing on stdout.
fn assert_refused(out: Outcome, wanted: &[&str]) -> Outcome {
    out.assert_failure();
    let line = out.the_error();
    for w in wanted {
        assert!(line.contains(w), "{line:?} does not mention {w:?}");
    }
    assert!(out.stdout.is_empty(), "{}", out.describe());
    out
}

/// Writes a graph file and returns its path as text.
fn graph(sb: &Sandbox, name: &str, text: &str) -> String {
    sb.write(name, text).to_str().expect("UTF-8 path").to_string()
}

#[test]
fn bad_graph_files_are_refused_with_file_line_and_key() {
    let mut sb = Sandbox::new();

    let cycle = graph(
        &sb,
        "cycle.toml",
        r#"# three tasks in a ring
[[task]]
key = "first"
function = "noop"
deps = ["third"]

[[task]]
key = "second"
function = "noop"
deps = ["first"]

[[task]]
key = "third"
function = "noop"
deps = ["second"]
"#,
    );
    let out = refused(
        &mut sb,
        &["run", &cycle, "--scheduler", NOTHING, "--no-progress"],
        &["cycle.toml:3:", "cycle", "first", "second", "third"],
    );
    // The graph is refused before any connection is tried.
    assert!(!out.stderr.contains("connect"), "{}", out.describe());

    let unknown = graph(
        &sb,
        "unknown.toml",
        r#"[[task]]
key = "known"
command = ["true"]

[[task]]
key = "needy"
function = "concat"
deps = ["known", "missing-one"]
"#,
    );
    refused(
        &mut sb,
        &["run", &unknown, "--scheduler", NOTHING],
        &["unknown.toml:8:", "\"needy\"", "\"missing-one\""],
    );

    let duplicate = graph(
        &sb,
        "duplicate.toml",
        r#"[[task]]
key = "twice"
command = ["true"]

[[task]]
key = "twice"
command = ["false"]
"#,
    );
    refused(
        &mut sb,
        &["run", &duplicate, "--scheduler", NOTHING],
        &["duplicate.toml:6:", "\"twice\"", "line 2"],
    );

    let broken = graph(
        &sb,
        "broken.toml",
        "[[task]]\nkey = \"a\"\ncommand = [\"echo\", \"unclosed]\n",
    );
    refused(&mut sb, &["run", &broken, "--scheduler", NOTHING], &["broken.toml:3:"]);

    let unknown_field = graph(
        &sb,
        "field.toml",
        "[[task]]\nkey = \"a\"\ncommand = [\"true\"]\ncolour = \"red\"\n",
    );
    refused(
        &mut sb,
        &["run", &unknown_field, "--scheduler", NOTHING],
        &["field.toml:4:", "colour"],
    );

    let missing = sb.path("no-such-graph.toml");
    refused(
        &mut sb,
        &["run", missing.to_str().expect("UTF-8 path"), "--scheduler", NOTHING],
        &["no-such-graph.toml"],
    );

    // The same checks guard `distd local --run`, before any cluster starts.
    refused(&mut sb, &["local", "-n", "1", "--run", &cycle], &["cycle.toml:3:"]);
    sb.check_no_crashes();
}

#[test]
fn bad_worker_flags_name_the_flag_and_the_value() {
    let mut sb = Sandbox::new();
    refused(&mut sb, &["worker", "tcp://h:99999"], &["ADDR", "99999"]);
    refused(&mut sb, &["worker", "tls://127.0.0.1:8786"], &["tcp://"]);
    refused(
        &mut sb,
        &["worker", NOTHING, "--death-timeout", "3x"],
        &["--death-timeout", "3x"],
    );
    refused(
        &mut sb,
        &["worker", NOTHING, "--resources", "GPU"],
        &["--resources", "GPU"],
    );
    refused(
        &mut sb,
        &["worker", NOTHING, "--resources", "GPU=-2"],
        &["--resources", "GPU=-2"],
    );
    refused(&mut sb, &["worker", NOTHING, "--nworkers", "0"], &["--nworkers"]);
    refused(
        &mut sb,
        &["worker", NOTHING, "--memory-limit", "lots"],
        &["--memory-limit", "lots"],
    );
    let missing = sb.path("missing-scheduler.json");
    let missing = missing.to_str().expect("UTF-8 path").to_string();
    refused(&mut sb, &["worker", "--scheduler-file", &missing], &[&missing]);
    let not_json = sb.write("not-json.json", "scheduler at tcp://127.0.0.1:8786\n");
    let not_json = not_json.to_str().expect("UTF-8 path").to_string();
    refused(&mut sb, &["worker", "--scheduler-file", &not_json], &[&not_json]);

    // Nobody there: the worker retries for its death timeout, then names the address.
    let start = Instant::now();
    assert_refused(
        sb.worker(NOTHING).death_timeout("1s").no_nanny().run(),
        &[NOTHING, "unreachable"],
    );
    // It tried for its death timeout before giving up (a lower bound: it cannot flake).
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "gave up after {took:?}");
    // Under a nanny (the default) it gives up as well: a_worker_under_its_nanny_reports_one_error_line.
    sb.check_no_crashes();
}

/// Regression test for a UX bug of the nanny (the default mode of `distd worker`): a worker
/// that cannot start prints its error, then the nanny prints a second `distd: error:` line
/// that repeats the worker's last log lines, timestamps and all, joined with " | " (about a
/// kilobyte for an unreachable scheduler). Expected: one line saying what was wrong.
#[test]
fn a_worker_under_its_nanny_reports_one_error_line() {
    let mut sb = Sandbox::new();
    assert_refused(sb.worker(NOTHING).death_timeout("1s").run(), &[NOTHING, "unreachable"]);
    sb.check_no_crashes();
}

#[test]
fn bad_scheduler_and_client_flags_are_refused() {
    let mut sb = Sandbox::new();
    refused(
        &mut sb,
        &["scheduler", "--idle-timeout", "nope"],
        &["--idle-timeout", "nope"],
    );
    refused(
        &mut sb,
        &["scheduler", "--heartbeat-timeout", "10ms"],
        &["--heartbeat-timeout"],
    );
    // (The scheduler has already announced its address when it finds out; only the error
    // line and the status matter here.)
    let out = sb.run(
        "distd scheduler",
        &[
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--pid-file",
            "/nonexistent/dir/pid",
        ],
    );
    out.assert_failure();
    assert!(out.the_error().contains("/nonexistent/dir/pid"), "{}", out.describe());

    // Clients with nothing to talk to say where they tried.
    refused(
        &mut sb,
        &["submit", NOTHING, "--", "echo", "hi"],
        &[NOTHING, "cannot connect"],
    );
    refused(&mut sb, &["info", NOTHING], &[NOTHING]);
    let ok = graph(&sb, "ok.toml", "[[task]]\nkey = \"a\"\ncommand = [\"true\"]\n");
    refused(&mut sb, &["run", &ok, "--scheduler", NOTHING], &[NOTHING]);

    refused(
        &mut sb,
        &["submit", NOTHING, "--env", "NO_EQUALS_SIGN", "--", "true"],
        &["--env", "NO_EQUALS_SIGN"],
    );
    refused(
        &mut sb,
        &["submit", NOTHING, "--timeout", "5 parsecs", "--", "true"],
        &["--timeout", "5 parsecs"],
    );

    // Usage mistakes are clap's: status 2 and its own message, no panic either.
    let out = sb.run("distd worker --bogus", &["worker", "--bogus"]);
    out.assert_code(2);
    assert!(out.stderr.contains("--bogus"), "{}", out.describe());
    let out = sb.run("distd submit no command", &["submit", NOTHING]);
    out.assert_code(2);
    sb.check_no_crashes();
}

/// The scheduler's port is taken: one line naming the address.
#[test]
fn a_taken_port_is_reported() {
    let mut sb = Sandbox::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = taken.local_addr().expect("a local address").port().to_string();
    refused(
        &mut sb,
        &["scheduler", "--host", "127.0.0.1", "--port", &port],
        &[&format!("127.0.0.1:{port}")],
    );
    sb.check_no_crashes();
}

/// Regression test for a bug of the nanny (the default mode of `distd worker`): with the
/// scheduler unreachable, the nanny first tries it itself for the whole `--death-timeout`
/// (printing nothing), then starts a worker that tries again for another `--death-timeout`:
/// `--death-timeout 3s` gives up after 6 s. Expected: after about the death timeout. The
/// bound sits well between the two (8 s for 5 s, against 10 s with the bug), so a busy
/// machine does not make it fail.
#[test]
fn a_worker_under_its_nanny_gives_up_after_its_death_timeout() {
    let mut sb = Sandbox::new();
    let start = Instant::now();
    let out = sb.worker(NOTHING).label("distd worker").death_timeout("5s").run();
    let took = start.elapsed();
    out.assert_failure();
    assert!(
        took < Duration::from_secs(8),
        "gave up after {took:?}:\n{}",
        out.describe()
    );
    sb.check_no_crashes();
}
