//! The task model as it crosses the wire: what a client submits and what a worker runs.
//!
//! These are plain data types. They say nothing about scheduling state; the scheduler keeps
//! that in its own tables. Only `src/protocol` encodes them.

use serde::{Deserialize, Serialize};

/// One task as a client describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskDesc {
    /// The name the client chose; unique in the cluster while the task is known.
    pub key: String,
    /// What to run.
    pub spec: TaskSpec,
    /// Keys whose results this task takes as input, in this order.
    pub deps: Vec<String>,
    /// How to schedule it.
    pub options: TaskOptions,
}

/// What a worker runs for a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TaskSpec {
    /// A program run as a child process; its stdout is the result.
    Command(CommandSpec),
    /// A function from the worker's registry, given `args` and the inputs' bytes.
    Function {
        name: String,
        args: Vec<u8>,
        /// How `args` are written.
        args_form: ArgsForm,
    },
}

/// How a function task's `args` are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ArgsForm {
    /// The function's own bytes, as the Rust API gives them (postcard for a typed function).
    #[default]
    Bytes,
    /// The JSON text of one value, as a graph file gives them (`args = 10`, `args = { n = 1 }`):
    /// a typed function decodes its own argument type from it, and a function on bytes gets a
    /// string's text or any other value's JSON text.
    Json,
}

/// A command task: a program, its environment and how its inputs reach it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// Program and arguments. `{dep:KEY}` in an argument becomes the path of the file that
    /// holds KEY's result; an argument that is exactly `{deps}` becomes every input's path.
    pub argv: Vec<String>,
    /// Extra environment variables, on top of the worker's own environment.
    pub env: Vec<(String, String)>,
    /// Working directory; the worker's own when `None`.
    pub cwd: Option<String>,
    /// Kill the command (and its process group) after this many milliseconds.
    pub timeout_ms: Option<u64>,
    /// The keys of inputs whose results are piped to the command's stdin, one after the
    /// other (a graph file names one; `distd submit` sends its stdin in several parts).
    /// None: stdin is /dev/null.
    pub stdin: Vec<String>,
    /// What the task's result is: its stdout, or its whole transcript.
    pub output: CommandOutput,
}

/// What a command task makes of its command's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutput {
    /// The result is stdout; a command that fails is a task error with the tail of stderr.
    #[default]
    Stdout,
    /// The result is a [`Transcript`](super::transcript::Transcript): all of stdout, the last
    /// [`TRANSCRIPT_STDERR`](super::transcript::TRANSCRIPT_STDERR) bytes of stderr and how the
    /// command ended, whether it failed or not, so that `distd submit` can show both streams
    /// and exit as the command did. Only a command that cannot start or times out errs.
    Transcript,
}

/// Scheduling options of a task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskOptions {
    /// Higher runs first among ready tasks.
    pub priority: i32,
    /// How many times a failed run is tried again before the task errs.
    pub retries: u32,
    /// Abstract resources the task holds while it runs, e.g. `("GPU", 1.0)`.
    pub resources: Vec<(String, f64)>,
    /// When not empty, only workers with one of these names or addresses may run it.
    pub workers: Vec<String>,
    /// How many workers keep a copy of the result while it is needed (0 and 1: the one
    /// that computed it), so that losing a worker does not lose it: for results that are
    /// expensive to compute again.
    pub replicas: u32,
}

impl TaskDesc {
    /// A function task with default options.
    pub fn function(key: impl Into<String>, name: impl Into<String>, args: Vec<u8>) -> Self {
        TaskDesc {
            key: key.into(),
            spec: TaskSpec::Function {
                name: name.into(),
                args,
                args_form: ArgsForm::Bytes,
            },
            deps: Vec::new(),
            options: TaskOptions::default(),
        }
    }

    /// A command task with default options.
    pub fn command<S: Into<String>>(key: impl Into<String>, argv: impl IntoIterator<Item = S>) -> Self {
        TaskDesc {
            key: key.into(),
            spec: TaskSpec::Command(CommandSpec {
                argv: argv.into_iter().map(Into::into).collect(),
                ..CommandSpec::default()
            }),
            deps: Vec::new(),
            options: TaskOptions::default(),
        }
    }

    /// The same task, depending on `deps`.
    pub fn with_deps<S: Into<String>>(mut self, deps: impl IntoIterator<Item = S>) -> Self {
        self.deps = deps.into_iter().map(Into::into).collect();
        self
    }
}
