//! Mistakes a user makes in what tasks ask for, each answered (issue "Every mistake gets an
//! answer", cases 1, 9 and 10): a task no worker can run, a placeholder naming no input,
//! arguments of the wrong type for a typed function.

mod harness;

use harness::{start_scheduler, Outcome, Sandbox};
use std::time::{Duration, Instant};

/// The file that, in the current folder, makes this test binary a distd CLI: the command line
/// as a JSON array of strings (see [`as_distd_with_typed_functions`]).
const AS_CLI: &str = "as-distd-cli.json";

/// distd's built-ins plus typed functions, as a Rust user's own binary would register them.
fn typed_registry() -> distd::Registry {
    #[derive(serde::Deserialize)]
    struct Range {
        from: u64,
        to: u64,
    }
    fn fib(n: u64) -> u64 {
        (0..n).fold((0u64, 1u64), |(a, b), _| (b, a.wrapping_add(b))).0
    }
    distd::Registry::builtin()
        .register_typed("fib", |n: u64, _: Vec<u64>| Ok(fib(n)))
        .register_typed("fib_sum", |r: Range, _: Vec<u64>| {
            Ok((r.from..r.to).map(fib).sum::<u64>())
        })
        .register_typed("add", |(): (), xs: Vec<u64>| Ok(xs.iter().sum::<u64>()))
        .register("show", |_, inputs| {
            let numbers = inputs
                .iter()
                .map(|d| distd::protocol::codec::from_bytes::<u64>(d).map(|n| n.to_string()))
                .collect::<Result<Vec<String>, _>>()
                .map_err(|e| e.to_string())?;
            Ok(numbers.join(" ").into_bytes())
        })
}

/// Not a test of its own: when this test binary is started in a folder holding [`AS_CLI`]
/// (only [`custom`] does that), it runs as the distd CLI with [`typed_registry`], the way a
/// Rust user's own binary runs `distd::cli::main_with_registry`, and exits with its status.
#[test]
#[ignore = "not a test: the distd CLI this binary becomes when `custom` starts it"]
fn as_distd_with_typed_functions() {
    let Ok(text) = std::fs::read_to_string(AS_CLI) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&text).expect("a JSON array of arguments");
    let code = distd::cli::main_with_args(typed_registry(), std::iter::once("distd".to_string()).chain(args));
    std::process::exit(i32::from(code));
}

/// Runs `distd ARGS` with typed functions registered: this test binary, started again in the
/// sandbox as the CLI (see [`as_distd_with_typed_functions`]). Its stdout starts with the test
/// harness's own line; [`distd_stdout`] is what the CLI printed.
fn custom(sb: &mut Sandbox, name: &str, args: &[&str]) -> Outcome {
    sb.write(AS_CLI, &serde_json::to_string(args).expect("JSON"));
    let me = std::env::current_exe().expect("this test binary");
    let harness_args = [
        "as_distd_with_typed_functions",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ];
    let out = sb.run_program(name, me.to_str().expect("UTF-8 path"), &harness_args);
    std::fs::remove_file(sb.path(AS_CLI)).expect("remove the command line");
    out
}

/// What the CLI printed, without what the test harness printed before it (`running 1 test`,
/// then `test NAME ... ` on the line the CLI's output starts on).
fn distd_stdout(out: &Outcome) -> String {
    let after = out.stdout.trim_start_matches(['\n']);
    let after = after.strip_prefix("running 1 test\n").unwrap_or(after);
    let after = after
        .strip_prefix("test as_distd_with_typed_functions ... ")
        .unwrap_or(after);
    after.to_string()
}

/// Case 9: a `{dep:KEY}` whose KEY is not among the task's deps is refused when the file
/// loads, at its line, before anything runs (it used to reach the command as literal text).
#[test]
fn a_placeholder_naming_no_dep_is_refused_when_the_file_loads() {
    let mut sb = Sandbox::new();
    let graph = sb.write(
        "graph.toml",
        "[[task]]\nkey = \"a\"\nshell = \"echo hi\"\n\n[[task]]\nkey = \"b\"\ndeps = [\"a\"]\nshell = \"cat {dep:zz} > made-it\"\n",
    );
    let out = sb.run(
        "distd run",
        &["run", graph.to_str().unwrap(), "-n", "1", "--no-progress"],
    );
    out.assert_failure();
    let path = graph.display();
    assert_eq!(
        out.the_error(),
        format!("distd: error: {path}:8: task \"b\" uses {{dep:zz}}, but \"zz\" is not one of its deps [\"a\"]")
    );
    assert!(out.stdout.is_empty(), "{}", out.describe());
    assert!(!sb.path("made-it").exists(), "nothing ran");
}

/// Case 10: a typed function's arguments are written as TOML values and decoded by the
/// function's own type: a number, a table for a struct; text where a number is wanted is the
/// task's error in words, where it used to be decoded as postcard into a wrong number.
#[test]
fn typed_function_arguments_are_toml_values_decoded_by_the_functions_type() {
    let mut sb = Sandbox::new();
    let graph = sb.write(
        "typed.toml",
        r#"[[task]]
key = "ten"
function = "fib"
args = 10
output = false

[[task]]
key = "first-ten"
function = "fib_sum"
args = { from = 0, to = 10 }
output = false

[[task]]
key = "total"
function = "add"
deps = ["ten", "first-ten"]
output = false

[[task]]
key = "shown"
function = "show"
deps = ["ten", "first-ten", "total"]
"#,
    );
    let out = custom(
        &mut sb,
        "typed run",
        &["local", "-n", "1", "--run", graph.to_str().unwrap(), "--no-progress"],
    );
    out.assert_success();
    // fib(10) = 55, fib(0) + ... + fib(9) = 88.
    assert_eq!(distd_stdout(&out), "55 88 143\n", "{}", out.describe());

    let wrong = sb.write(
        "wrong.toml",
        "[[task]]\nkey = \"ten\"\nfunction = \"fib\"\nargs = \"10\"\n",
    );
    let out = custom(
        &mut sb,
        "wrong run",
        &["local", "-n", "1", "--run", wrong.to_str().unwrap(), "--no-progress"],
    );
    out.assert_failure();
    let failed: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("distd: task ")).collect();
    assert_eq!(
        failed,
        [
            "distd: task \"ten\" failed: function \"fib\" failed: arguments \"10\" do not fit the \
          function's argument type u64: invalid type: string \"10\", expected u64 at line 1 column 4"
        ],
        "{}",
        out.describe()
    );
    assert_eq!(distd_stdout(&out), "", "no garbage result printed: {}", out.describe());

    // distd's own byte functions take TOML values too: a number reaches `sum` as its text.
    let sum = sb.write(
        "sum.toml",
        "[[task]]\nkey = \"xs\"\nshell = \"echo 1 2\"\n\n[[task]]\nkey = \"total\"\nfunction = \"sum\"\nargs = 10\ndeps = [\"xs\"]\n",
    );
    let out = sb.run(
        "distd sum",
        &["local", "-n", "1", "--run", sum.to_str().unwrap(), "--no-progress"],
    );
    out.assert_success();
    assert_eq!(out.stdout, "13\n", "{}", out.describe());
}

/// The tasks the scheduler at `address` still knows, by state; none once every client that
/// wanted them is gone.
fn tasks_known(sb: &mut Sandbox, address: &str) -> Vec<(String, u64)> {
    let info = harness::info(sb, address);
    serde_json::from_value(info["tasks"].clone()).expect("tasks by state")
}

/// Case 1: a task asking for a resource no worker has, or for a worker by a name none has,
/// used to wait for ever in silence. `distd run` is told at once and exits 1 naming the task
/// and what it needs; the scheduler logs it and forgets the run's tasks.
#[test]
fn a_task_no_worker_can_run_fails_the_run_at_once_naming_what_it_needs() {
    let mut sb = Sandbox::new();
    let (scheduler, address) = start_scheduler(&mut sb, &[]);
    sb.worker(&address).nthreads(1).start();
    sb.wait_for_workers(&address, 1);
    let gpu = sb.write(
        "gpu.toml",
        "[[task]]\nkey = \"train\"\nshell = \"echo trained\"\nresources = { GPU = 1 }\n",
    );
    let started = Instant::now();
    let out = sb.run_graph("run gpu", &gpu, &address);
    out.assert_code(1);
    assert_eq!(
        out.the_error(),
        "distd: error: task \"train\" cannot run: it needs GPU=1, and no connected worker has GPU; start a \
         worker that can run it, or pass --wait-for-workers to wait for one"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "told at once");
    assert!(out.stdout.is_empty(), "{}", out.describe());

    let named = sb.write(
        "named.toml",
        "[[task]]\nkey = \"pinned\"\nshell = \"echo hi\"\nworkers = [\"nobody\"]\n",
    );
    let out = sb.run_graph("run named", &named, &address);
    out.assert_code(1);
    assert_eq!(
        out.the_error(),
        "distd: error: task \"pinned\" cannot run: it may run only on workers [\"nobody\"], and no connected \
         worker has that name, address or host; start a worker that can run it, or pass --wait-for-workers to \
         wait for one"
    );
    sb.wait_for_stderr(scheduler, "task \"pinned\" cannot run", Duration::from_secs(5));
    assert_eq!(
        tasks_known(&mut sb, &address),
        [],
        "the failed runs' tasks are forgotten"
    );

    // A local cluster has no GPU either.
    let out = sb.run(
        "local run gpu",
        &["local", "-n", "1", "--run", gpu.to_str().unwrap(), "--no-progress"],
    );
    out.assert_code(1);
    assert!(
        out.the_error().contains("task \"train\" cannot run: it needs GPU=1"),
        "{}",
        out.describe()
    );
    sb.check_no_crashes();
}

/// Case 1, waiting on purpose: with --wait-for-workers the run says what it waits for, and
/// finishes once a worker that has the resource joins.
#[test]
fn with_wait_for_workers_the_run_waits_for_a_worker_that_can() {
    let mut sb = Sandbox::new();
    let (_scheduler, address) = start_scheduler(&mut sb, &[]);
    sb.worker(&address).name("cpu").nthreads(1).start();
    sb.wait_for_workers(&address, 1);
    let gpu = sb.write(
        "gpu.toml",
        "[[task]]\nkey = \"train\"\nshell = \"echo trained\"\nresources = { GPU = 1 }\n",
    );
    let gpu = gpu.to_str().unwrap();
    let run = sb.spawn(
        "run waiting",
        &[
            "run",
            gpu,
            "--scheduler",
            &address,
            "--no-progress",
            "--wait-for-workers",
        ],
    );
    sb.wait_for_stderr(
        run,
        "task \"train\" cannot run: it needs GPU=1, and no connected worker has GPU; waiting for a worker that can run it",
        Duration::from_secs(5),
    );
    assert!(sb.is_running(run));
    sb.worker(&address)
        .name("gpu")
        .nthreads(1)
        .args(&["--resources", "GPU=1"])
        .start();
    let out = sb.wait_exit(run, Duration::from_secs(20));
    out.assert_success();
    assert_eq!(out.stdout, "trained\n");
    assert!(
        out.stderr.contains("worker gpu joined; task \"train\" can run now"),
        "{}",
        out.describe()
    );
    sb.check_no_crashes();
}
