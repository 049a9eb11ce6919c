//! Mistakes a user makes in what tasks ask for, each answered (issue "Every mistake gets an
//! answer", cases 1, 9 and 10): a task no worker can run, a placeholder naming no input,
//! arguments of the wrong type for a typed function.

mod harness;

use harness::{Outcome, Sandbox};
use std::path::PathBuf;

/// The example binary with its own typed functions (`fib`, `add`, `fib_sum`, `show`); cargo
/// builds examples beside the binary for the tests.
fn custom_functions_exe() -> PathBuf {
    let distd = PathBuf::from(harness::distd_exe());
    let exe = distd
        .parent()
        .expect("target dir")
        .join("examples")
        .join("custom_functions");
    let built = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    assert!(
        built(&exe) >= built(&distd),
        "{} is missing or older than distd: run the whole `cargo test` (it builds the examples) or `cargo build --examples`",
        exe.display()
    );
    exe
}

/// Runs the example binary as the distd CLI: `custom_functions ARGS`.
fn custom(sb: &mut Sandbox, name: &str, args: &[&str]) -> Outcome {
    let exe = custom_functions_exe();
    sb.run_program(name, exe.to_str().expect("UTF-8 path"), args)
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
    assert_eq!(out.stdout.trim(), "55 88 143", "{}", out.describe());

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
    assert!(out.stdout.is_empty(), "no garbage result printed: {}", out.describe());
}
