//! Graph files: the TOML that `distd run GRAPH.toml` reads, parsed and validated into the
//! [`TaskDesc`]s a client submits, plus which results the user wants to see.
//!
//! This module owns the file format and everything a user can get wrong in it. Each mistake is
//! reported as one line, `FILE:LINE: message`, naming the task. A [`Graph`] it returns is
//! closed (every dependency is a task of the graph) and acyclic, so nothing downstream needs to
//! check that again. It never talks to a scheduler and never runs anything.
//!
//! Graphs may hold a million tasks: every pass here is linear (the cycle search is an iterative
//! depth-first search, never recursion), and line numbers are computed only for the error that
//! is reported.
//!
//! # Format
//!
//! ```toml
//! [defaults]                     # optional; see below
//! retries = 1
//! timeout = "30s"
//!
//! [[task]]
//! key = "numbers"                # required, non-empty, unique
//! command = ["seq", "1", "100"]  # exactly one of command (argv), shell (a line for sh -c)
//! # shell = "seq 1 100 | sort"   # or function (a registry name)
//! env = { FOO = "bar" }          # command and shell tasks only
//! cwd = "/tmp"                   # command and shell tasks only
//! timeout = "30s"                # command and shell tasks only; a number alone is seconds
//! stdin = "other-key"            # command and shell tasks only; one of this task's deps
//!
//! [[task]]
//! key = "total"
//! function = "sum"
//! args = "text"                  # function tasks only; any TOML value (see below)
//! deps = ["numbers"]             # inputs, in order
//! priority = 0
//! retries = 0
//! resources = { GPU = 1 }        # name -> non-negative number
//! workers = ["w1"]               # names or addresses of workers allowed to run it
//! replicas = 2                   # workers keeping a copy of the result while it is needed
//! output = true                  # true: print the result; "path": write it there
//! ```
//!
//! `[defaults]` may set `env`, `cwd`, `timeout`, `args`, `priority`, `retries`, `resources`,
//! `workers`, `replicas` and `output` (true or false only). A task's own value wins; `env` and
//! `resources` are merged name by name. Defaults that only apply to one kind of task (`env`,
//! `cwd`, `timeout` to commands, `args` to functions) are not applied to the other kind.
//!
//! `args` may be any TOML value (`args = 10`, `args = [1, 2]`, `args = { n = 10 }`). It reaches
//! the worker as JSON: a typed function (`Registry::register_typed`) decodes it as its own
//! argument type, so `args = 10` is a `u64` and a table a struct, and a mismatch (`args =
//! "10"` for a `u64`) is the task's error in words; a function on bytes gets a string's text,
//! or another value's JSON text.
//!
//! A command's `{dep:KEY}` must name one of the task's deps; it is checked when the file loads.
//!
//! When no task is an output (`output = true` or a path), the outputs are the sinks, the tasks
//! nothing depends on, printed in file order, except those that say `output = false`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::protocol::TaskDesc;

mod build;
mod edges;
mod pieces;
use build::Builder;
use pieces::{pieces, Piece};
// The tests build what a graph should become, and search for cycles directly.
#[cfg(test)]
use crate::protocol::{CommandSpec, TaskOptions, TaskSpec};
#[cfg(test)]
use edges::{find_cycle, Edges};
#[cfg(test)]
mod piece_tests;

/// A validated graph file.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    /// Every task of the file, in file order, ready to submit.
    pub tasks: Vec<TaskDesc>,
    /// The results the user wants to see and where, in file order.
    pub outputs: Vec<Output>,
}

/// A result the user asked to see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The task whose result it is.
    pub key: String,
    /// Where the result goes once the task finishes.
    pub target: OutputTarget,
}

/// Where an output's result goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputTarget {
    /// Printed on the client's standard output.
    Stdout,
    /// Written to this file; the path is as the graph file wrote it.
    File(PathBuf),
}

/// Why a graph file was refused. Its message is one line.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The file could not be read at all.
    #[error("cannot read graph file {}: {source}", path.display())]
    Read {
        /// The file, so the message says which one.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file was read but is not a valid graph.
    #[error("{origin}:{}{message}", line_label(*line))]
    Invalid {
        /// The file name as the caller gave it.
        origin: String,
        /// The 1-based line of the mistake, when it has one.
        line: Option<usize>,
        /// What is wrong, naming the task.
        message: String,
    },
}

/// `LINE: ` after the file name, or just the space when the mistake has no line.
fn line_label(line: Option<usize>) -> String {
    line.map_or_else(|| " ".to_owned(), |line| format!("{line}: "))
}

/// Reads and validates the graph file at `path`.
pub fn load_graph(path: &Path) -> Result<Graph, GraphError> {
    let text = std::fs::read_to_string(path).map_err(|source| GraphError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_graph(&text, &path.display().to_string())
}

/// Tasks in each piece of the file parsed on its own: a piece's document tree (about 3 KB a
/// task) then stays in the processor's cache whatever the file's size. Measured on a
/// 1,000,000-task file: 128 to 256 tasks a piece parse it in 4.4 s of CPU, 2,048 in 7 s,
/// the whole file at once in 4.3 s and 2.8 GB.
const TASKS_PER_PIECE: usize = 128;

/// Parses and validates a graph file's `text`; `origin` names the file in error messages.
pub fn parse_graph(text: &str, origin: &str) -> Result<Graph, GraphError> {
    parse_in_pieces(text, origin, TASKS_PER_PIECE)
}

/// [`parse_graph`] with pieces of `tasks_per_piece` tasks. Memory is the text plus the tasks
/// built: toml's document tree for the whole file would cost several times that (a million
/// tasks took 2.9 GB).
fn parse_in_pieces(text: &str, origin: &str, tasks_per_piece: usize) -> Result<Graph, GraphError> {
    let lines = LineIndex::new(text);
    let report = Report::new(origin, &lines);
    match read_pieces(text, tasks_per_piece, &report) {
        Some((builder, defaults)) => builder.finish(defaults.map(|(raw, base)| (raw, report.piece(base))), &report),
        None => parse_whole(text, &report),
    }
}

/// Reads the tasks piece by piece, each piece's tables built before the next is parsed.
/// `None` when a piece does not parse, or when two pieces hold `[defaults]`: then the whole
/// text must be parsed as one, for toml's mistakes to be reported in toml's words at their
/// line, and for a file cut in a wrong place (see `pieces`) to be read right.
fn read_pieces(text: &str, tasks_per_piece: usize, report: &Report) -> Option<(Builder, Option<(RawDefaults, usize)>)> {
    let pieces: Vec<Piece> = pieces(text, tasks_per_piece).collect();
    let mut builder = Builder::with_capacity(pieces.iter().map(|piece| piece.headers).sum());
    let mut defaults = None;
    for piece in pieces {
        let raw: RawPiece = toml::from_str(piece.text).ok()?;
        if let Some(found) = raw.defaults {
            if defaults.is_some() {
                return None;
            }
            defaults = Some((found, piece.base));
        }
        let piece_report = report.piece(piece.base);
        for task in raw.task {
            builder.add(task, &piece_report);
        }
    }
    Some((builder, defaults))
}

/// The whole text parsed as one document, as toml reads it.
fn parse_whole(text: &str, report: &Report) -> Result<Graph, GraphError> {
    let raw: RawGraph = toml::from_str(text).map_err(|e| report.toml(&e))?;
    let mut builder = Builder::with_capacity(raw.task.len());
    for task in raw.task {
        builder.add(task, report);
    }
    builder.finish(Some((raw.defaults, *report)), report)
}

// ---------------------------------------------------------------------------------------------
// The file as TOML sees it: one field per key of the format in the module docs, `Option` when
// the key may be left out, `Spanned` when a message may have to point at it.

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGraph {
    /// `[defaults]`: values for every task that leaves them out.
    #[serde(default)]
    defaults: RawDefaults,
    /// The `[[task]]` tables, in file order.
    #[serde(default)]
    task: Vec<RawTask>,
}

/// A piece of the file (see `pieces`): like [`RawGraph`], but saying whether it holds
/// `[defaults]`, which only one piece may.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPiece {
    /// `[defaults]`, when it is in this piece.
    defaults: Option<RawDefaults>,
    /// The piece's `[[task]]` tables, in file order.
    #[serde(default)]
    task: Vec<RawTask>,
}

/// `[defaults]`. No `key`, `deps` or `stdin`: those name tasks, and no value suits every task.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    /// Environment of every command task.
    env: Option<BTreeMap<String, String>>,
    /// Working directory of command tasks that set none.
    cwd: Option<String>,
    /// Timeout of command tasks that set none; spanned for a bad duration.
    timeout: Option<Spanned<DurationText>>,
    /// Arguments of function tasks that set none.
    args: Option<toml::Value>,
    /// Priority of tasks that set none.
    priority: Option<i32>,
    /// Retries of tasks that set none.
    retries: Option<u32>,
    /// Replicas of tasks that set none.
    replicas: Option<u32>,
    /// Resources of every task; spanned for a bad amount.
    resources: Option<BTreeMap<String, Spanned<f64>>>,
    /// Allowed workers of tasks that set none.
    workers: Option<Vec<String>>,
    /// Whether tasks that say nothing are outputs; spanned to refuse a path.
    output: Option<Spanned<OutputChoice>>,
}

/// One `[[task]]` table, unchecked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    /// The task's key; its line is where most messages about the task point.
    key: Spanned<String>,
    /// A command task's argv.
    command: Option<Spanned<Vec<String>>>,
    /// A command task's shell line.
    shell: Option<Spanned<String>>,
    /// A function task's registry name.
    function: Option<Spanned<String>>,
    /// A function task's arguments: any TOML value.
    args: Option<Spanned<toml::Value>>,
    /// A command task's extra environment.
    env: Option<Spanned<BTreeMap<String, String>>>,
    /// A command task's working directory.
    cwd: Option<Spanned<String>>,
    /// A command task's timeout, as written.
    timeout: Option<Spanned<DurationText>>,
    /// The dependency whose result a command task reads on stdin.
    stdin: Option<Spanned<String>>,
    /// Keys of the task's inputs, in order; each spanned for an unknown key.
    #[serde(default)]
    deps: Vec<Spanned<String>>,
    /// Scheduling priority.
    priority: Option<i32>,
    /// Retries after a failed run.
    retries: Option<u32>,
    /// Workers keeping a copy of the result.
    replicas: Option<u32>,
    /// Resources held while running; spanned for a bad amount.
    resources: Option<BTreeMap<String, Spanned<f64>>>,
    /// Workers allowed to run the task.
    workers: Option<Vec<String>>,
    /// Whether and where the result is shown.
    output: Option<Spanned<OutputChoice>>,
}

/// A duration as written: a string for `parse_duration`, or a bare number of seconds.
struct DurationText(String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// What `output =` says: printed or not (`true`/`false`), or a file to write.
#[derive(Clone, Debug, PartialEq)]
enum OutputChoice {
    Print(bool),
    File(String),
}

impl<'de> Deserialize<'de> for OutputChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OutputVisitor;
        impl Visitor<'_> for OutputVisitor {
            type Value = OutputChoice;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or a file path")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<OutputChoice, E> {
                Ok(OutputChoice::Print(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OutputChoice, E> {
                Ok(OutputChoice::File(v.to_owned()))
            }
        }
        deserializer.deserialize_any(OutputVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting.

/// Turns byte offsets into `ORIGIN:LINE: message` errors. Offsets are those of one piece of
/// the file (toml's spans start at 0 in each piece it parses), which starts at `base`.
#[derive(Clone, Copy)]
struct Report<'a> {
    /// The file name to put before every message.
    origin: &'a str,
    /// The whole file's lines.
    lines: &'a LineIndex<'a>,
    /// Where the piece whose offsets this report is given starts in the file.
    base: usize,
}

impl<'a> Report<'a> {
    fn new(origin: &'a str, lines: &'a LineIndex<'a>) -> Report<'a> {
        Report { origin, lines, base: 0 }
    }

    /// The report for offsets in the piece of the file that starts at `base`.
    fn piece(self, base: usize) -> Report<'a> {
        Report { base, ..self }
    }

    /// Where `offset` in this report's piece is in the whole file.
    fn absolute(&self, offset: usize) -> usize {
        self.base + offset
    }

    /// The line of an offset in the whole file, whatever the piece.
    fn line_of_absolute(&self, offset: usize) -> usize {
        self.lines.line_of(offset)
    }

    fn at<T>(&self, value: &Spanned<T>, message: String) -> GraphError {
        self.at_offset(value.span().start, message)
    }

    fn at_offset(&self, offset: usize, message: String) -> GraphError {
        GraphError::Invalid {
            origin: self.origin.to_owned(),
            line: Some(self.lines.line_of(self.absolute(offset))),
            message,
        }
    }

    fn nowhere(&self, message: &str) -> GraphError {
        GraphError::Invalid {
            origin: self.origin.to_owned(),
            line: None,
            message: message.to_owned(),
        }
    }

    /// toml's own message, first line only, at toml's own span.
    fn toml(&self, error: &toml::de::Error) -> GraphError {
        let message = error.message().lines().next().unwrap_or("invalid TOML").to_owned();
        GraphError::Invalid {
            origin: self.origin.to_owned(),
            line: error.span().map(|span| self.lines.line_of(self.absolute(span.start))),
            message,
        }
    }
}

/// Offset-to-line lookups in a text. Lines are counted only for the error that is reported:
/// an index of every line start would cost more per task than the task itself.
struct LineIndex<'t> {
    text: &'t str,
}

impl<'t> LineIndex<'t> {
    fn new(text: &'t str) -> LineIndex<'t> {
        LineIndex { text }
    }

    /// The 1-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        let before = &self.text.as_bytes()[..offset.min(self.text.len())];
        1 + before.iter().filter(|&&b| b == b'\n').count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph file from its lines, so a test can name line numbers by counting the array.
    fn file(lines: &[&str]) -> String {
        lines.join("\n") + "\n"
    }

    fn parse(lines: &[&str]) -> Graph {
        match parse_graph(&file(lines), "graph.toml") {
            Ok(graph) => graph,
            Err(e) => panic!("valid graph refused: {e}"),
        }
    }

    /// The refusal of a graph: its line and its message, after checking it is one line that
    /// starts with the origin and the line.
    fn refusal(lines: &[&str]) -> (usize, String) {
        let error = match parse_graph(&file(lines), "graph.toml") {
            Ok(graph) => panic!("invalid graph accepted: {graph:?}"),
            Err(e) => e,
        };
        let shown = error.to_string();
        assert!(!shown.contains('\n'), "not one line: {shown}");
        match error {
            GraphError::Invalid {
                origin,
                line: Some(line),
                message,
            } => {
                assert_eq!(origin, "graph.toml");
                assert_eq!(shown, format!("graph.toml:{line}: {message}"));
                (line, message)
            }
            other => panic!("refused without a line: {other}"),
        }
    }

    fn command(argv: &[&str]) -> CommandSpec {
        CommandSpec {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            ..CommandSpec::default()
        }
    }

    #[test]
    fn every_field_becomes_the_task_description_it_says() {
        let graph = parse(&[
            "[defaults]",
            "retries = 1",
            "timeout = \"30s\"",
            "env = { LEVEL = \"info\", FOO = \"default\" }",
            "resources = { CPU = 1 }",
            "",
            "[[task]]",
            "key = \"numbers\"",
            "command = [\"seq\", \"1\", \"100\"]",
            "env = { FOO = \"bar\" }",
            "cwd = \"/tmp\"",
            "timeout = \"1.5s\"",
            "priority = -3",
            "workers = [\"w1\", \"10.0.0.2:7000\"]",
            "",
            "[[task]]",
            "key = \"sorted\"",
            "shell = \"sort -n | uniq\"",
            "deps = [\"numbers\"]",
            "stdin = \"numbers\"",
            "output = \"sorted.txt\"",
            "",
            "[[task]]",
            "key = \"total\"",
            "function = \"sum\"",
            "args = \"text\"",
            "deps = [\"numbers\", \"sorted\"]",
            "priority = 5",
            "retries = 0",
            "resources = { GPU = 1, Mem = 0.5 }",
            "output = true",
        ]);
        let default_env = |foo: &str| {
            vec![
                ("FOO".to_owned(), foo.to_owned()),
                ("LEVEL".to_owned(), "info".to_owned()),
            ]
        };
        let numbers = TaskDesc {
            key: "numbers".into(),
            spec: TaskSpec::Command(CommandSpec {
                env: default_env("bar"),
                cwd: Some("/tmp".into()),
                timeout_ms: Some(1500),
                ..command(&["seq", "1", "100"])
            }),
            deps: vec![],
            options: TaskOptions {
                priority: -3,
                retries: 1,
                resources: vec![("CPU".into(), 1.0)],
                workers: vec!["w1".into(), "10.0.0.2:7000".into()],
                replicas: 0,
            },
        };
        let sorted = TaskDesc {
            key: "sorted".into(),
            spec: TaskSpec::Command(CommandSpec {
                env: default_env("default"),
                timeout_ms: Some(30_000),
                stdin: vec!["numbers".into()],
                ..command(&["sh", "-c", "sort -n | uniq"])
            }),
            deps: vec!["numbers".into()],
            options: TaskOptions {
                retries: 1,
                resources: vec![("CPU".into(), 1.0)],
                ..TaskOptions::default()
            },
        };
        let total = TaskDesc {
            key: "total".into(),
            spec: TaskSpec::Function {
                name: "sum".into(),
                args: br#""text""#.to_vec(),
                args_form: crate::protocol::ArgsForm::Json,
            },
            deps: vec!["numbers".into(), "sorted".into()],
            options: TaskOptions {
                priority: 5,
                retries: 0,
                resources: vec![("CPU".into(), 1.0), ("GPU".into(), 1.0), ("Mem".into(), 0.5)],
                workers: vec![],
                replicas: 0,
            },
        };
        assert_eq!(graph.tasks, vec![numbers, sorted, total]);
        assert_eq!(
            graph.outputs,
            vec![
                Output {
                    key: "sorted".into(),
                    target: OutputTarget::File("sorted.txt".into()),
                },
                Output {
                    key: "total".into(),
                    target: OutputTarget::Stdout,
                },
            ]
        );
    }

    #[test]
    fn a_minimal_task_gets_empty_defaults() {
        let graph = parse(&["[[task]]", "key = \"a\"", "command = [\"true\"]"]);
        assert_eq!(graph.tasks, vec![TaskDesc::command("a", ["true"])]);
        let graph = parse(&["[[task]]", "key = \"f\"", "function = \"noop\""]);
        assert_eq!(graph.tasks, vec![TaskDesc::function("f", "noop", vec![])]);
    }

    #[test]
    fn command_only_defaults_skip_function_tasks_and_args_skip_commands() {
        let graph = parse(&[
            "[defaults]",
            "timeout = 10",
            "cwd = \"/work\"",
            "env = { A = \"1\" }",
            "args = \"default args\"",
            "",
            "[[task]]",
            "key = \"f\"",
            "function = \"echo\"",
            "",
            "[[task]]",
            "key = \"c\"",
            "command = [\"cat\"]",
            "deps = [\"f\"]",
        ]);
        assert_eq!(
            graph.tasks[0].spec,
            TaskSpec::Function {
                name: "echo".into(),
                args: br#""default args""#.to_vec(),
                args_form: crate::protocol::ArgsForm::Json,
            }
        );
        assert_eq!(
            graph.tasks[1].spec,
            TaskSpec::Command(CommandSpec {
                env: vec![("A".into(), "1".into())],
                cwd: Some("/work".into()),
                timeout_ms: Some(10_000),
                ..command(&["cat"])
            })
        );
    }

    #[test]
    fn without_named_outputs_the_sinks_are_printed_in_file_order() {
        let graph = parse(&[
            "[[task]]",
            "key = \"source\"",
            "command = [\"seq\", \"3\"]",
            "[[task]]",
            "key = \"left\"",
            "command = [\"cat\", \"{deps}\"]",
            "deps = [\"source\"]",
            "[[task]]",
            "key = \"lonely\"",
            "function = \"noop\"",
            "[[task]]",
            "key = \"right\"",
            "function = \"sum\"",
            "deps = [\"source\"]",
            "[[task]]",
            "key = \"quiet\"",
            "function = \"sum\"",
            "deps = [\"source\"]",
            "output = false",
        ]);
        let keys: Vec<(&str, &OutputTarget)> = graph.outputs.iter().map(|o| (o.key.as_str(), &o.target)).collect();
        assert_eq!(
            keys,
            vec![
                ("left", &OutputTarget::Stdout),
                ("lonely", &OutputTarget::Stdout),
                ("right", &OutputTarget::Stdout),
            ]
        );
    }

    #[test]
    fn named_outputs_replace_the_sinks() {
        let graph = parse(&[
            "[[task]]",
            "key = \"middle\"",
            "command = [\"seq\", \"3\"]",
            "output = true",
            "[[task]]",
            "key = \"sink\"",
            "function = \"sum\"",
            "deps = [\"middle\"]",
        ]);
        assert_eq!(
            graph.outputs,
            vec![Output {
                key: "middle".into(),
                target: OutputTarget::Stdout,
            }]
        );
    }

    #[test]
    fn bad_toml_is_reported_at_its_line_in_tomls_words() {
        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "retries = 3 4", "function = \"f\""]);
        assert_eq!(line, 3, "{message}");

        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "function = \"f\"", "priority = \"high\""]);
        assert_eq!(
            (line, message.as_str()),
            (4, "invalid type: string \"high\", expected i32")
        );

        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "function = \"f\"", "", "colour = \"red\""]);
        assert_eq!(line, 5);
        assert!(message.starts_with("unknown field `colour`"), "{message}");

        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "function = \"f\"", "output = 3"]);
        assert_eq!(line, 4);
        assert!(message.contains("expected true, false or a file path"), "{message}");

        let (line, message) = refusal(&[
            "[defaults]",
            "deps = [\"a\"]",
            "[[task]]",
            "key = \"a\"",
            "function = \"f\"",
        ]);
        assert_eq!(line, 2);
        assert!(message.starts_with("unknown field `deps`"), "{message}");
    }

    #[test]
    fn a_repeated_key_names_both_lines() {
        let (line, message) = refusal(&[
            "[[task]]",
            "command = [\"true\"]",
            "",
            "key = \"b\"",
            "[[task]]",
            "key = \"a\"",
            "command = [\"true\"]",
            "",
            "[[task]]",
            "command = [\"false\"]",
            "",
            "key = \"b\"",
        ]);
        assert_eq!(line, 12);
        assert_eq!(message, "duplicate task key \"b\" (first defined on line 4)");
    }

    #[test]
    fn an_unknown_dependency_is_reported_at_the_dependency() {
        let (line, message) = refusal(&[
            "[[task]]",
            "key = \"a\"",
            "command = [\"true\"]",
            "[[task]]",
            "key = \"b\"",
            "command = [\"true\"]",
            "deps = [",
            "  \"a\",",
            "  \"x\",",
            "]",
        ]);
        assert_eq!(line, 9);
        assert_eq!(message, "task \"b\" depends on unknown key \"x\"");
    }

    #[test]
    fn a_cycle_is_reported_from_its_first_task_in_the_file() {
        let (line, message) = refusal(&[
            "[[task]]",
            "function = \"f\"",
            "key = \"a\"",
            "deps = [\"b\"]",
            "[[task]]",
            "key = \"b\"",
            "function = \"f\"",
            "deps = [\"c\"]",
            "[[task]]",
            "key = \"c\"",
            "function = \"f\"",
            "deps = [\"a\"]",
        ]);
        assert_eq!((line, message.as_str()), (3, "dependency cycle: a -> b -> c -> a"));

        // Entered from outside and in the middle, the cycle still starts at its first task.
        let (line, message) = refusal(&[
            "[[task]]",
            "key = \"entry\"",
            "function = \"f\"",
            "deps = [\"z\"]",
            "[[task]]",
            "key = \"y\"",
            "function = \"f\"",
            "deps = [\"z\"]",
            "[[task]]",
            "key = \"z\"",
            "function = \"f\"",
            "deps = [\"y\"]",
        ]);
        assert_eq!((line, message.as_str()), (6, "dependency cycle: y -> z -> y"));
    }

    #[test]
    fn a_long_cycle_stays_one_readable_line() {
        let mut lines = Vec::new();
        for i in 0..1000 {
            lines.push("[[task]]".to_owned());
            lines.push(format!("key = \"t{i}\""));
            lines.push("function = \"f\"".to_owned());
            lines.push(format!("deps = [\"t{}\"]", (i + 1) % 1000));
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (line, message) = refusal(&lines);
        assert_eq!(line, 2);
        assert_eq!(
            message,
            "dependency cycle: t0 -> t1 -> t2 -> t3 -> t4 -> ... (991 more) ... -> t996 -> t997 \
             -> t998 -> t999 -> t0"
        );
    }

    #[test]
    fn a_task_needs_exactly_one_of_command_shell_and_function() {
        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "deps = []"]);
        assert_eq!(line, 2);
        assert_eq!(
            message,
            "task \"a\" has no command, shell or function; give exactly one of them"
        );

        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "shell = \"ls\"", "command = [\"ls\"]"]);
        assert_eq!(line, 4);
        assert_eq!(
            message,
            "task \"a\" has both command and shell; give exactly one of them"
        );

        let (line, message) = refusal(&[
            "[[task]]",
            "key = \"a\"",
            "function = \"f\"",
            "shell = \"ls\"",
            "command = [\"ls\"]",
        ]);
        assert_eq!(line, 5);
        assert!(
            message.starts_with("task \"a\" has command, shell and function"),
            "{message}"
        );
    }

    #[test]
    fn empty_keys_commands_and_names_are_refused() {
        let (line, message) = refusal(&["[[task]]", "function = \"f\"", "key = \"\""]);
        assert_eq!((line, message.as_str()), (3, "a task has an empty key"));

        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "command = []"]);
        assert_eq!(line, 3);
        assert!(message.starts_with("task \"a\" has an empty command"), "{message}");

        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "command = [\"\", \"x\"]"]);
        assert_eq!(line, 3);
        assert!(message.contains("\"a\""), "{message}");

        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "shell = \"  \""]);
        assert_eq!((line, message.as_str()), (3, "task \"a\" has an empty shell line"));

        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "function = \"\""]);
        assert_eq!((line, message.as_str()), (3, "task \"a\" has an empty function name"));
    }

    #[test]
    fn a_dep_placeholder_must_name_one_of_the_deps() {
        let (line, message) = refusal(&[
            "[[task]]",
            "key = \"a\"",
            "shell = \"echo hi\"",
            "[[task]]",
            "key = \"b\"",
            "deps = [\"a\"]",
            "shell = \"cat {dep:a} {dep:zz}\"",
        ]);
        assert_eq!(line, 7);
        assert_eq!(
            message,
            "task \"b\" uses {dep:zz}, but \"zz\" is not one of its deps [\"a\"]"
        );
        let (line, message) = refusal(&["[[task]]", "key = \"c\"", "command = [\"cat\", \"x{dep:a}\"]"]);
        assert_eq!(line, 3);
        assert_eq!(
            message,
            "task \"c\" uses {dep:a}, but it has no deps; add \"a\" to its deps"
        );
        // Every placeholder of a known dep passes, and text that only looks like one is left.
        parse(&[
            "[[task]]",
            "key = \"a\"",
            "shell = \"echo hi\"",
            "[[task]]",
            "key = \"b\"",
            "deps = [\"a\"]",
            "command = [\"cat\", \"{dep:a}\", \"{dep:\", \"}\", \"{deps}\"]",
        ]);
    }

    #[test]
    fn stdin_must_come_from_a_dependency() {
        let (line, message) = refusal(&[
            "[[task]]",
            "key = \"a\"",
            "command = [\"seq\", \"3\"]",
            "[[task]]",
            "key = \"b\"",
            "command = [\"sort\"]",
            "stdin = \"a\"",
        ]);
        assert_eq!(line, 7);
        assert_eq!(
            message,
            "task \"b\" reads stdin from \"a\", which is not one of its deps"
        );
    }

    #[test]
    fn a_task_cannot_depend_on_itself() {
        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "function = \"f\"", "deps = [\"a\"]"]);
        assert_eq!((line, message.as_str()), (4, "task \"a\" depends on itself"));
    }

    #[test]
    fn bad_timeouts_name_the_task_and_what_is_accepted() {
        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "command = [\"true\"]", "timeout = \"3x\""]);
        assert_eq!(line, 4);
        assert_eq!(
            message,
            "task \"a\" timeout: invalid duration \"3x\": expected a number with a unit such as \
             250ms, 30s, 2m or 1h"
        );

        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "command = [\"true\"]", "timeout = -5"]);
        assert_eq!(line, 4);
        assert!(message.contains("negative"), "{message}");

        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "command = [\"true\"]", "timeout = \"0s\""]);
        assert_eq!(
            (line, message.as_str()),
            (4, "task \"a\" timeout must be more than zero")
        );

        let (line, message) = refusal(&[
            "[defaults]",
            "timeout = \"soon\"",
            "[[task]]",
            "key = \"a\"",
            "function = \"f\"",
        ]);
        assert_eq!(line, 2);
        assert!(
            message.starts_with("[defaults] timeout: invalid duration \"soon\""),
            "{message}"
        );
    }

    #[test]
    fn sub_millisecond_timeouts_round_up() {
        let graph = parse(&["[[task]]", "key = \"a\"", "command = [\"true\"]", "timeout = \"500us\""]);
        let TaskSpec::Command(spec) = &graph.tasks[0].spec else {
            panic!("not a command: {:?}", graph.tasks[0]);
        };
        assert_eq!(spec.timeout_ms, Some(1));
    }

    #[test]
    fn command_fields_on_a_function_task_are_refused() {
        for (field, value) in [
            ("env", "{ A = \"1\" }"),
            ("cwd", "\"/tmp\""),
            ("timeout", "\"1s\""),
            ("stdin", "\"a\""),
        ] {
            let setting = format!("{field} = {value}");
            let (line, message) = refusal(&[
                "[[task]]",
                "key = \"a\"",
                "function = \"f\"",
                "[[task]]",
                "key = \"b\"",
                "function = \"g\"",
                "deps = [\"a\"]",
                &setting,
            ]);
            assert_eq!(line, 8, "{message}");
            assert_eq!(
                message,
                format!("task \"b\" is a function task; {field} is only for command and shell tasks")
            );
        }
    }

    #[test]
    fn args_on_a_command_task_are_refused() {
        let (line, message) = refusal(&["[[task]]", "key = \"a\"", "command = [\"ls\"]", "args = \"-l\""]);
        assert_eq!(line, 4);
        assert_eq!(
            message,
            "task \"a\" is not a function task; args is only for function tasks"
        );
    }

    #[test]
    fn negative_resources_are_refused() {
        let (line, message) = refusal(&[
            "[[task]]",
            "key = \"a\"",
            "function = \"f\"",
            "resources = { GPU = -1 }",
        ]);
        assert_eq!(line, 4);
        assert!(
            message.starts_with("task \"a\" needs -1 of resource \"GPU\""),
            "{message}"
        );
    }

    #[test]
    fn two_tasks_cannot_write_one_output_file() {
        let (line, message) = refusal(&[
            "[[task]]",
            "key = \"a\"",
            "function = \"f\"",
            "output = \"out.txt\"",
            "[[task]]",
            "key = \"b\"",
            "function = \"f\"",
            "output = \"out.txt\"",
        ]);
        assert_eq!(line, 8);
        assert_eq!(
            message,
            "task \"b\" writes its output to \"out.txt\", as task \"a\" already does"
        );

        let (line, message) = refusal(&[
            "[defaults]",
            "output = \"all.txt\"",
            "[[task]]",
            "key = \"a\"",
            "function = \"f\"",
        ]);
        assert_eq!(line, 2);
        assert!(
            message.starts_with("[defaults] output must be true or false"),
            "{message}"
        );
    }

    #[test]
    fn a_graph_without_tasks_is_refused() {
        let error = parse_graph("# nothing yet\n", "empty.toml").unwrap_err();
        assert_eq!(
            error.to_string(),
            "empty.toml: the graph has no tasks; add at least one [[task]] table"
        );
    }

    #[test]
    fn an_unreadable_file_names_the_path_and_the_reason() {
        let path = Path::new("/nonexistent/distd-graph-test/graph.toml");
        let message = load_graph(path).unwrap_err().to_string();
        assert!(
            message.contains("/nonexistent/distd-graph-test/graph.toml"),
            "{message}"
        );
        assert!(message.contains("No such file or directory"), "{message}");
        assert!(!message.contains('\n'));
    }

    #[test]
    fn a_file_on_disk_is_named_by_its_path_in_errors() {
        let path = std::env::temp_dir().join(format!("distd-graph-test-{}.toml", std::process::id()));
        std::fs::write(&path, "[[task]]\nkey = \"a\"\n").expect("the temp dir is writable");
        let message = load_graph(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).expect("the test file was just written");
        assert_eq!(
            message,
            format!(
                "{}:2: task \"a\" has no command, shell or function; give exactly one of them",
                path.display()
            )
        );
    }

    #[test]
    fn a_chain_of_100_000_tasks_parses_without_recursion() {
        const TASKS: usize = 100_000;
        let mut text = String::with_capacity(TASKS * 64);
        text.push_str("[[task]]\nkey = \"t0\"\ncommand = [\"seq\", \"10\"]\n");
        for i in 1..TASKS {
            let previous = i - 1;
            text.push_str(&format!(
                "[[task]]\nkey = \"t{i}\"\nfunction = \"sum\"\ndeps = [\"t{previous}\"]\n"
            ));
        }
        let graph = parse_graph(&text, "chain.toml").expect("a chain is a valid graph");
        assert_eq!(graph.tasks.len(), TASKS);
        assert_eq!(graph.tasks[TASKS - 1].deps, vec![format!("t{}", TASKS - 2)]);
        assert_eq!(
            graph.outputs,
            vec![Output {
                key: format!("t{}", TASKS - 1),
                target: OutputTarget::Stdout,
            }]
        );
    }

    #[test]
    fn a_cycle_through_a_million_tasks_is_found_without_recursion() {
        const TASKS: usize = 1_000_000;
        let mut edges = Edges::with_capacity(TASKS);
        for task in 0..TASKS {
            edges.push((task + 1) % TASKS);
            edges.finish_task();
        }
        let cycle = find_cycle(&edges).expect("a ring is a cycle");
        assert_eq!(cycle.len(), TASKS);
        assert!(cycle.iter().enumerate().all(|(i, &task)| task == i));

        let mut edges = Edges::with_capacity(TASKS);
        for task in 0..TASKS {
            edges.push(task.saturating_sub(1));
            if task > 1 {
                edges.push(task - 2);
            }
            edges.finish_task();
        }
        // Task 0 depends on itself here; `find_cycle` sees it like any other cycle.
        assert_eq!(find_cycle(&edges), Some(vec![0]));
    }

    #[test]
    fn line_numbers_come_from_byte_offsets() {
        let lines = LineIndex::new("ab\ncd\n\nef");
        let found: Vec<usize> = (0..9).map(|offset| lines.line_of(offset)).collect();
        assert_eq!(found, vec![1, 1, 1, 2, 2, 2, 3, 4, 4]);
    }
}
