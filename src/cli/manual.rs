//! The words of the manual that clap's definitions do not hold: each command's examples, the
//! environment distd reads, what the memory thresholds are, and `distd-graph(5)`, the
//! graph-file format. `generate` lays them out as man pages; `--help` shows some of them.
//!
//! Text only: nothing here reads, writes or decides anything.

use crate::memory::MemoryPolicy;
use clap_mangen::roff::{bold, italic, roman, Roff};

/// What the memory limit does, for `--memory-limit`'s help and the man pages.
pub fn memory_limit_thresholds() -> String {
    format!(
        "Results spill to disk above {}% of it, new tasks wait above {}%, and the nanny restarts \
         the worker above {}% (counting its task commands' memory too).",
        MemoryPolicy::SPILL_PERCENT,
        MemoryPolicy::PAUSE_PERCENT,
        MemoryPolicy::KILL_PERCENT
    )
}

/// Before the table of [`crate::exit::TABLE`] on every page.
pub const EXIT_STATUS_INTRO: &str =
    "Every distd command exits with one of these (distd submit also with its command's own status):";

/// The environment distd reads (`grep -rn env::var src`), and what it sets for task commands.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "DISTD_ACCESS_FILE",
        "The access file to use, as --access-file, when no flag says which credential to use \
         (--access-file, --no-security, --tls-ca-file, or a --scheduler-file that carries one).",
    ),
    (
        "XDG_DATA_HOME",
        "Where the access folder is: $XDG_DATA_HOME/distd/access (default ~/.local/share/distd/access). \
         A scheduler leaves its credential there (mode 0600, folder 0700) and this user's clients and \
         workers find it there by the cluster's id.",
    ),
    (
        "RUST_LOG",
        "What is logged to stderr, as env_logger reads it (error, warn, info, debug, or per module: \
         distd::nanny=debug). Default: info for the services (scheduler, worker, nanny, local without \
         --run, ssh), warn for the other commands.",
    ),
    (
        "DISTD_SPIN_US",
        "How many microseconds a thread keeps looking for work after its last before it sleeps \
         (default 100; 0 sleeps at once).",
    ),
    (
        "DISTD_NO_CGROUPS",
        "Set to anything: run task commands without a cgroup of their own, even where cgroup v2 is \
         writable.",
    ),
    (
        "XDG_CACHE_HOME",
        "The default --local-directory is $XDG_CACHE_HOME/distd, else ~/.cache/distd.",
    ),
    (
        "DISTD_CGROUP, DISTD_WATCH_STDIN",
        "Set by distd for the processes it starts (a nanny for its worker, distd ssh on the hosts); \
         not for users.",
    ),
    (
        "DISTD_TASK_KEY, DISTD_NDEPS, DISTD_DEP_0, DISTD_DEP_1, ...",
        "Set by a worker for each task command: its key, and the paths of its inputs' results (see \
         distd-graph(5)).",
    ),
];

/// A command's EXAMPLES: (command line, what it does).
pub fn examples(page: &str) -> &'static [(&'static str, &'static str)] {
    EXAMPLES
        .iter()
        .find(|(name, _)| *name == page)
        .map_or(&[], |(_, examples)| examples)
}

/// Each page's examples, by page name.
const EXAMPLES: &[(&str, &[(&str, &str)])] = &[
    (
        "distd",
        &[
            (
                "distd local -n 4 --run graph.toml",
                "Run a graph file on a local cluster of 4 workers.",
            ),
            ("distd scheduler", "Start a scheduler on port 8786 of every interface."),
            (
                "distd worker 192.168.0.1:8786",
                "Start a worker (under a nanny) for that scheduler.",
            ),
            ("distd help worker", "Describe distd worker."),
        ],
    ),
    (
        "distd-scheduler",
        &[
            ("distd scheduler", "Listen on port 8786 of every interface."),
            (
                "distd scheduler --access-file cluster.toml",
                "Use a credential made by distd access generate; give its workers the same file.",
            ),
            (
                "distd scheduler --port 0 --scheduler-file sched.json",
                "Listen on a free port and write the address to sched.json for the workers.",
            ),
            (
                "distd scheduler --idle-timeout 10m",
                "Exit after ten minutes with no client and no task.",
            ),
        ],
    ),
    (
        "distd-worker",
        &[
            (
                "distd worker 192.168.0.1:8786",
                "One worker with a thread per core, under a nanny.",
            ),
            (
                "distd worker --scheduler-file sched.json --nworkers 4 --nthreads 2",
                "Four workers of two threads each.",
            ),
            (
                "distd worker ADDR --nworkers auto",
                "As many workers and threads as dask would start here.",
            ),
            (
                "distd worker ADDR --memory-limit 80% --resources GPU=1",
                "Limit memory; offer one GPU.",
            ),
            (
                "distd worker ADDR --no-nanny",
                "A worker in this very process, nothing to restart it.",
            ),
        ],
    ),
    (
        "distd-nanny",
        &[("distd nanny 192.168.0.1:8786 --nworkers 2", "A nanny with two workers.")],
    ),
    (
        "distd-local",
        &[
            (
                "distd local -n 4",
                "A scheduler and 4 workers in this process, until Ctrl-C.",
            ),
            (
                "distd local -n 2 --run graph.toml",
                "Run a graph file on it, then exit.",
            ),
            ("distd local -n 2 --processes", "Workers as processes under a nanny."),
        ],
    ),
    (
        "distd-ssh",
        &[
            ("distd ssh node{1..4}", "Scheduler on node1, a worker on every node."),
            (
                "distd ssh --hostfile hosts --upload --nworkers 2",
                "Copy this distd to the hosts; two workers on each.",
            ),
        ],
    ),
    (
        "distd-submit",
        &[
            (
                "distd submit 192.168.0.1:8786 -- hostname",
                "Run hostname on some worker; print its output.",
            ),
            (
                "distd submit ADDR --timeout 1m --env N=3 -- ./step.sh",
                "Kill it after a minute (exit status 124).",
            ),
        ],
    ),
    (
        "distd-run",
        &[
            (
                "distd run graph.toml",
                "Run a graph file on a local cluster started for it.",
            ),
            (
                "distd run graph.toml --scheduler 192.168.0.1:8786",
                "Run it on a running cluster.",
            ),
        ],
    ),
    (
        "distd-info",
        &[
            (
                "distd info 192.168.0.1:8786",
                "Workers, threads, memory and tasks by state.",
            ),
            ("distd info ADDR --json", "The same as JSON."),
        ],
    ),
    (
        "distd-restart",
        &[(
            "distd restart 192.168.0.1:8786",
            "Restart every nanny-supervised worker.",
        )],
    ),
    (
        "distd-access",
        &[
            (
                "distd access generate cluster.toml",
                "Make a credential ahead of time, for hosts without a shared home.",
            ),
            (
                "distd access generate --client-only submit.toml",
                "A credential that may submit but never join as a worker.",
            ),
            (
                "distd access client-file cluster.toml submit-only.toml",
                "A copy that may submit but not join as a worker.",
            ),
        ],
    ),
];

/// A page's SEE ALSO.
pub fn see_also(page: &str) -> Vec<&'static str> {
    let mut pages = vec!["distd(1)"];
    match page {
        "distd" => {
            pages = vec!["distd-graph(5)"];
        }
        "distd-run" | "distd-local" => pages.push("distd-graph(5)"),
        "distd-worker" | "distd-nanny" => pages.push("distd-scheduler(1)"),
        _ => {}
    }
    pages
}

/// `distd-graph(5)`: the graph-file format that `distd run` and `distd local --run` read.
pub fn graph_page() -> String {
    let mut r = Roff::default();
    let version = format!("distd {}", crate::protocol::DISTD_VERSION);
    r.control("TH", ["distd-graph", "5", "", version.as_str()]);
    r.control("SH", ["NAME"]);
    r.text([roman("distd-graph - the task graph files of distd run")]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([
        bold("distd run"),
        roman(" "),
        italic("GRAPH.toml"),
        roman(" [--scheduler ADDR]"),
    ]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(
        "A graph file is TOML: an optional [defaults] table and one [[task]] table per task. A task \
         runs a command (any program: its stdout is its result) or a function of the workers' \
         registry, after the tasks it depends on. The file is checked whole before anything runs: a \
         cycle, an unknown dependency, a duplicate key, an unknown field or bad TOML is one error \
         line, FILE:LINE: message, naming the task.",
    )]);
    r.control("SH", ["TASKS"]);
    for (field, meaning) in GRAPH_FIELDS {
        r.control("TP", []);
        r.text([bold(*field)]);
        r.text([roman(*meaning)]);
    }
    r.control("SH", ["INPUTS OF COMMANDS"]);
    r.text([roman(
        "A command task gets each input's result as a file. {dep:KEY} in an argument (or in a shell \
         line) becomes the path of KEY's result; KEY must be one of the task's deps, which is checked \
         when the file loads. An argument that is exactly {deps} becomes every input's path, in order. \
         DISTD_DEP_0, DISTD_DEP_1, ... hold the same paths, DISTD_NDEPS their number and \
         DISTD_TASK_KEY the task's key; stdin = \"KEY\" pipes that input to its standard input.",
    )]);
    r.control("SH", ["FUNCTIONS"]);
    r.text([roman(
        "args is the function's argument, any TOML value: a string, a number, an array or a table \
         such as args = 10 or args = { n = 3, name = \"x\" }. It reaches the worker as JSON. A typed \
         function (registered with Registry::register_typed) decodes it as its own argument type, so \
         args = 10 is a number and a table fills a struct; a value of the wrong type (args = \"10\" \
         for a number) is the task's error, naming the type. A function on bytes (the built-ins) \
         gets a string's text, or another value's JSON text (args = 10 gives 10).",
    )]);
    r.control("PP", []);
    r.text([roman(
        "Built-in functions: noop; identity (its first input, else its args); sleep (args \"100ms\"); \
         sum (adds the whitespace-separated numbers in args and inputs, in decimal text); concat; blob \
         (args \"1MiB\": that many bytes); fail (errs with args).",
    )]);
    r.control("SH", ["DEFAULTS"]);
    r.text([roman(
        "[defaults] may set env, cwd, timeout, args, priority, retries, resources, workers, replicas \
         and output (true or false only). A task's own value wins; env and resources are merged name \
         by name. Defaults that apply to one kind of task only (env, cwd and timeout to commands, \
         args to functions) are not applied to the other.",
    )]);
    r.control("SH", ["OUTPUTS"]);
    r.text([roman(
        "output = true prints the task's result on stdout, output = \"FILE\" writes it there (a \
         relative path is relative to where distd run runs), output = false never shows it. Without \
         any output, the sinks (tasks nothing depends on) are printed, in file order. Each output is \
         written as soon as its task finishes.",
    )]);
    r.control("SH", ["EXAMPLES"]);
    r.control("nf", []);
    r.text([roman(GRAPH_EXAMPLE)]);
    r.control("fi", []);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman("distd(1), distd-run(1), distd-local(1)")]);
    r.render()
}

/// The fields of a `[[task]]`, in the order a reader needs them.
const GRAPH_FIELDS: &[(&str, &str)] = &[
    (
        "key = \"NAME\"",
        "Required: the task's name, non-empty and unique in the file.",
    ),
    (
        "command = [\"PROGRAM\", \"ARG\", ...]",
        "Run this argv. Exactly one of command, shell and function.",
    ),
    ("shell = \"LINE\"", "Run this line with sh -c."),
    (
        "function = \"NAME\"",
        "Run this function of the workers' registry (see FUNCTIONS).",
    ),
    (
        "args = VALUE",
        "Function tasks: the function's argument (see FUNCTIONS).",
    ),
    (
        "deps = [\"KEY\", ...]",
        "The tasks whose results are this task's inputs, in order.",
    ),
    (
        "env = { NAME = \"VALUE\" }",
        "Command tasks: extra environment variables.",
    ),
    ("cwd = \"DIR\"", "Command tasks: the working directory on the worker."),
    (
        "timeout = \"30s\"",
        "Command tasks: kill the command after this long (a number alone is seconds).",
    ),
    (
        "stdin = \"KEY\"",
        "Command tasks: one of the deps, piped to the command's standard input.",
    ),
    (
        "priority = N",
        "Higher runs first among tasks that are ready (default 0).",
    ),
    ("retries = N", "Run a failed task again up to N times (default 0)."),
    (
        "resources = { GPU = 1 }",
        "Abstract resources the task holds while it runs, from those the workers offer (--resources).",
    ),
    (
        "workers = [\"NAME\", ...]",
        "Only these workers (names or addresses) may run the task.",
    ),
    (
        "replicas = N",
        "Keep N copies of the result on different workers while it is needed, so that losing a worker \
         does not lose it.",
    ),
    (
        "output = true | false | \"FILE\"",
        "Whether and where the result is shown (see OUTPUTS).",
    ),
];

const GRAPH_EXAMPLE: &str = r#"[defaults]
retries = 1

[[task]]
key = "numbers"
command = ["seq", "1", "100"]

[[task]]
key = "evens"
shell = "grep -E '[02468]$' {dep:numbers}"
deps = ["numbers"]

[[task]]
key = "total"
function = "sum"
deps = ["evens"]
output = true"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command's page has examples, and every example is of that command.
    #[test]
    fn every_page_has_examples_of_its_command() {
        for sub in super::super::args::SUBCOMMANDS.iter().filter(|s| **s != "help") {
            let page = format!("distd-{sub}");
            let examples = examples(&page);
            assert!(!examples.is_empty(), "{page} has no examples");
            for (line, _) in examples {
                assert!(line.starts_with(&format!("distd {sub}")), "{page}: {line}");
            }
        }
        assert!(!examples("distd").is_empty());
    }
}
