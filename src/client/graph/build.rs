//! Turning raw `[[task]]` tables into [`TaskDesc`]s, one table at a time, and the checks that
//! need every task: keys, dependencies, cycles, outputs.
//!
//! Tables arrive piece by piece (see `pieces`), and `[defaults]` may come after the tasks it
//! applies to, so a task is built from its own fields first and the defaults are applied once
//! the whole file is read. Its mistakes are reported in the order a reader meets them: the
//! defaults' first, then an empty or repeated key anywhere, then, task by task in file order,
//! an unknown dependency before the task's own mistakes; then a cycle, then two tasks writing
//! one file. It never reads files or parses TOML.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;

use hashbrown::HashTable;
use toml::Spanned;

use super::edges::{abbreviate_path, find_cycle, Edges};
use super::{DurationText, Graph, GraphError, Output, OutputChoice, OutputTarget, RawDefaults, RawTask, Report};
use crate::protocol::{ArgsForm, CommandSpec, TaskDesc, TaskOptions, TaskSpec};
use crate::units::parse_duration;

/// `[defaults]` after its own checks; empty when the file has none.
#[derive(Default)]
pub(super) struct Defaults {
    /// Extra environment of every command task, under the task's own.
    env: BTreeMap<String, String>,
    /// Working directory of command tasks that name none.
    cwd: Option<String>,
    /// Timeout of command tasks that set none.
    timeout_ms: Option<u64>,
    /// Arguments of function tasks that give none, as JSON text.
    args: Option<Vec<u8>>,
    /// Priority of tasks that set none.
    priority: i32,
    /// Retries of tasks that set none.
    retries: u32,
    /// Replicas of tasks that set none.
    replicas: u32,
    /// Resources of every task, under the task's own.
    resources: BTreeMap<String, f64>,
    /// Allowed workers of tasks that name none.
    workers: Vec<String>,
    /// Whether tasks that say nothing are printed (`Some(true)`) or not (`Some(false)`).
    output: Option<bool>,
}

impl Defaults {
    pub(super) fn check(raw: RawDefaults, report: &Report) -> Result<Defaults, GraphError> {
        let timeout_ms = match &raw.timeout {
            Some(text) => Some(timeout_ms(text, report, "[defaults]")?),
            None => None,
        };
        let output = match raw.output {
            None => None,
            Some(choice) => match choice.get_ref() {
                OutputChoice::Print(print) => Some(*print),
                OutputChoice::File(_) => {
                    let message = "[defaults] output must be true or false: tasks cannot all \
                                   write to one file";
                    return Err(report.at(&choice, message.to_owned()));
                }
            },
        };
        Ok(Defaults {
            env: raw.env.unwrap_or_default(),
            cwd: raw.cwd,
            timeout_ms,
            args: raw.args.as_ref().map(json_of),
            priority: raw.priority.unwrap_or(0),
            retries: raw.retries.unwrap_or(0),
            replicas: raw.replicas.unwrap_or(0),
            resources: check_resources(raw.resources.unwrap_or_default(), report, "[defaults]")?,
            workers: raw.workers.unwrap_or_default(),
            output,
        })
    }

    /// Fills in what `task` left out and merges `env` and `resources` under its own.
    fn apply(&self, task: &mut TaskDesc, left_out: LeftOut, choice: &mut Choice) {
        match &mut task.spec {
            TaskSpec::Command(spec) => {
                if !self.env.is_empty() {
                    let mut env = self.env.clone();
                    env.extend(std::mem::take(&mut spec.env));
                    spec.env = env.into_iter().collect();
                }
                if spec.cwd.is_none() {
                    spec.cwd.clone_from(&self.cwd);
                }
                if spec.timeout_ms.is_none() {
                    spec.timeout_ms = self.timeout_ms;
                }
            }
            TaskSpec::Function { args, args_form, .. } => {
                if let (true, Some(default)) = (left_out.args, &self.args) {
                    args.clone_from(default);
                    *args_form = ArgsForm::Json;
                }
            }
        }
        let options = &mut task.options;
        if left_out.priority {
            options.priority = self.priority;
        }
        if left_out.retries {
            options.retries = self.retries;
        }
        if left_out.replicas {
            options.replicas = self.replicas;
        }
        if left_out.workers {
            options.workers.clone_from(&self.workers);
        }
        if !self.resources.is_empty() {
            let mut resources = self.resources.clone();
            resources.extend(std::mem::take(&mut options.resources));
            options.resources = resources.into_iter().collect();
        }
        if *choice == Choice::Unsaid {
            *choice = match self.output {
                Some(true) => Choice::Print,
                Some(false) => Choice::Never,
                None => Choice::Unsaid,
            };
        }
    }
}

/// The fields a task left out whose default cannot be told from the value it was built with
/// (a task may say `priority = 0` over a default of 5). Left-out `cwd` and `timeout` are
/// `None` in the task, and `env`, `resources` and `output` are merged whatever the task says.
#[derive(Clone, Copy, Default)]
struct LeftOut {
    args: bool,
    priority: bool,
    retries: bool,
    replicas: bool,
    workers: bool,
}

/// What a task's `output` field decided, before sinks are considered.
#[derive(Clone, Debug, PartialEq)]
enum Choice {
    /// Nothing said: an output only if no task is one and this is a sink.
    Unsaid,
    /// `output = false`: never an output.
    Never,
    /// `output = true`.
    Print,
    /// `output = "path"`.
    File {
        /// The file to write, as written.
        path: String,
        /// Where it was said (in the whole file), for a message about two tasks writing one file.
        offset: usize,
    },
}

/// The tasks of a file as they are read, and what is needed to check them once all are.
#[derive(Default)]
pub(super) struct Builder {
    /// Every task read, in file order, built from its own fields. After a task's own mistake,
    /// the tasks from it on hold only their key and deps: nothing else of them is reported.
    tasks: Vec<TaskDesc>,
    /// Where each task's key is in the file, for messages about the task.
    key_offsets: Vec<usize>,
    /// What each task left to `[defaults]`.
    left_out: Vec<LeftOut>,
    /// What each task's `output` said.
    choices: Vec<Choice>,
    /// Where each dependency of each task is in the file, all tasks' one after the other.
    dep_offsets: Vec<usize>,
    /// Task indices by the hash of their key; the keys themselves live in `tasks`, so the
    /// index costs a few bytes per task rather than a second copy of every key.
    by_key: HashTable<usize>,
    /// Keys come from files anyone may write: a seeded hasher keeps them from choosing collisions.
    hasher: RandomState,
    /// The first empty or repeated key. Nothing more is built after it: it is reported
    /// before any mistake of a task.
    key_error: Option<GraphError>,
    /// The first task that failed its own checks, and why. Reported after the dependency
    /// mistakes of the tasks before it, so it waits for every key to be known.
    task_error: Option<(usize, GraphError)>,
}

impl Builder {
    /// A builder with room for `tasks` tasks of one dependency each, so that nothing is
    /// copied as it grows (more is fine).
    pub(super) fn with_capacity(tasks: usize) -> Builder {
        Builder {
            tasks: Vec::with_capacity(tasks),
            key_offsets: Vec::with_capacity(tasks),
            left_out: Vec::with_capacity(tasks),
            choices: Vec::with_capacity(tasks),
            dep_offsets: Vec::with_capacity(tasks),
            by_key: HashTable::with_capacity(tasks),
            ..Builder::default()
        }
    }

    /// Reads one `[[task]]` table; `report` places the offsets of the piece it came from.
    pub(super) fn add(&mut self, mut raw: RawTask, report: &Report) {
        if self.key_error.is_some() {
            return;
        }
        let key_offset = report.absolute(raw.key.span().start);
        if raw.key.get_ref().is_empty() {
            self.key_error = Some(report.at(&raw.key, "a task has an empty key".to_owned()));
            return;
        }
        let index = self.tasks.len();
        let hash = self.hasher.hash_one(raw.key.get_ref());
        let tasks = &self.tasks;
        if let Some(&first) = self.by_key.find(hash, |&i| tasks[i].key == *raw.key.get_ref()) {
            let first_line = report.line_of_absolute(self.key_offsets[first]);
            let message = format!(
                "duplicate task key {:?} (first defined on line {first_line})",
                raw.key.get_ref()
            );
            self.key_error = Some(report.at(&raw.key, message));
            return;
        }
        let hasher = &self.hasher;
        self.by_key
            .insert_unique(hash, index, |&i| hasher.hash_one(&tasks[i].key));

        let key = std::mem::take(raw.key.get_mut());
        let deps: Vec<String> = std::mem::take(&mut raw.deps)
            .into_iter()
            .map(|dep| {
                self.dep_offsets.push(report.absolute(dep.span().start));
                dep.into_inner()
            })
            .collect();
        let built = match self.task_error {
            Some(_) => None,
            None => match build_task(raw, &key, &deps, report) {
                Ok(built) => Some(built),
                Err(e) => {
                    self.task_error = Some((index, e));
                    None
                }
            },
        };
        let (spec, options, choice, left_out) = built.unwrap_or_else(|| {
            let nothing = TaskSpec::Function {
                name: String::new(),
                args: Vec::new(),
                args_form: ArgsForm::Bytes,
            };
            (nothing, TaskOptions::default(), Choice::Never, LeftOut::default())
        });
        self.tasks.push(TaskDesc {
            key,
            spec,
            deps,
            options,
        });
        self.key_offsets.push(key_offset);
        self.left_out.push(left_out);
        self.choices.push(choice);
    }

    /// Checks what needs every task, applies `defaults` and returns the graph; `report` places
    /// offsets in the whole file.
    pub(super) fn finish(
        mut self,
        defaults: Option<(RawDefaults, Report)>,
        report: &Report,
    ) -> Result<Graph, GraphError> {
        let defaults = match defaults {
            Some((raw, piece)) => Defaults::check(raw, &piece)?,
            None => Defaults::default(),
        };
        if let Some(error) = self.key_error {
            return Err(error);
        }
        if self.tasks.is_empty() {
            return Err(report.nowhere("the graph has no tasks; add at least one [[task]] table"));
        }
        let edges = self.resolve_deps(report)?;
        // Neither is needed again: give their memory back before the outputs are chosen.
        self.dep_offsets = Vec::new();
        self.by_key = HashTable::new();
        for ((task, &left_out), choice) in self.tasks.iter_mut().zip(&self.left_out).zip(&mut self.choices) {
            defaults.apply(task, left_out, choice);
        }

        if let Some(cycle) = find_cycle(&edges) {
            let first = cycle[0];
            let mut names: Vec<&str> = cycle.iter().map(|&i| self.tasks[i].key.as_str()).collect();
            names.push(&self.tasks[first].key);
            let message = format!("dependency cycle: {}", abbreviate_path(&names));
            return Err(report.at_offset(self.key_offsets[first], message));
        }

        let outputs = choose_outputs(&self.tasks, &self.choices, &edges, report)?;
        Ok(Graph {
            tasks: self.tasks,
            outputs,
        })
    }

    /// Every task's dependencies as task indices; refuses unknown keys and a task's own, and
    /// reports the first task that failed its own checks once the tasks before it passed.
    fn resolve_deps(&mut self, report: &Report) -> Result<Edges, GraphError> {
        let mut edges = Edges::with_capacity(self.tasks.len());
        let mut offsets = self.dep_offsets.iter();
        for (index, task) in self.tasks.iter().enumerate() {
            let key = &task.key;
            for (dep, &offset) in task.deps.iter().zip(&mut offsets) {
                if dep == key {
                    return Err(report.at_offset(offset, format!("task {key:?} depends on itself")));
                }
                let hash = self.hasher.hash_one(dep);
                match self.by_key.find(hash, |&i| self.tasks[i].key == *dep) {
                    Some(&dep_index) => edges.push(dep_index),
                    None => {
                        let message = format!("task {key:?} depends on unknown key {dep:?}");
                        return Err(report.at_offset(offset, message));
                    }
                }
            }
            edges.finish_task();
            if self.task_error.as_ref().is_some_and(|(failed, _)| *failed == index) {
                let (_, error) = self.task_error.take().expect("checked just above");
                return Err(error);
            }
        }
        Ok(edges)
    }
}

/// A task built from its own fields, before the defaults: what it runs, how it is scheduled,
/// what its `output` said and what it left out.
type Built = (TaskSpec, TaskOptions, Choice, LeftOut);

/// Checks one task on its own; `key` and `deps` are already taken out of `raw`.
fn build_task(raw: RawTask, key: &str, deps: &[String], report: &Report) -> Result<Built, GraphError> {
    let task = format!("task {key:?}");
    let key_offset = raw.key.span().start;
    let left_out = LeftOut {
        args: raw.args.is_none(),
        priority: raw.priority.is_none(),
        retries: raw.retries.is_none(),
        replicas: raw.replicas.is_none(),
        workers: raw.workers.is_none(),
    };
    let fields = SpecFields {
        args: raw.args,
        env: raw.env,
        cwd: raw.cwd,
        timeout: raw.timeout,
        stdin: raw.stdin,
    };
    let spec = match (raw.command, raw.shell, raw.function) {
        (Some(command), None, None) => {
            let problem = match command.get_ref().first() {
                None => Some("an empty command; give at least a program"),
                Some(program) if program.is_empty() => Some("an empty program name in its command"),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                return Err(report.at(&command, format!("{task} has {problem}")));
            }
            let at = command.span().start;
            command_spec(&task, command.into_inner(), at, fields, deps, report)?
        }
        (None, Some(shell), None) => {
            if shell.get_ref().trim().is_empty() {
                return Err(report.at(&shell, format!("{task} has an empty shell line")));
            }
            let at = shell.span().start;
            let argv = vec!["sh".to_owned(), "-c".to_owned(), shell.into_inner()];
            command_spec(&task, argv, at, fields, deps, report)?
        }
        (None, None, Some(function)) => function_spec(&task, function, fields, report)?,
        (command, shell, function) => {
            let given: Vec<(&str, usize)> = [
                ("command", command.map(|c| c.span().start)),
                ("shell", shell.map(|s| s.span().start)),
                ("function", function.map(|f| f.span().start)),
            ]
            .into_iter()
            .filter_map(|(name, offset)| Some((name, offset?)))
            .collect();
            let problem = match given.as_slice() {
                [] => format!("{task} has no command, shell or function"),
                [(a, _), (b, _)] => format!("{task} has both {a} and {b}"),
                _ => format!("{task} has command, shell and function"),
            };
            // Point at the one given last, or at the key when none is.
            let offset = given.iter().map(|&(_, offset)| offset).max();
            let message = format!("{problem}; give exactly one of them");
            return Err(report.at_offset(offset.unwrap_or(key_offset), message));
        }
    };

    let resources = check_resources(raw.resources.unwrap_or_default(), report, &task)?;
    let options = TaskOptions {
        priority: raw.priority.unwrap_or_default(),
        retries: raw.retries.unwrap_or_default(),
        resources: resources.into_iter().collect(),
        workers: raw.workers.unwrap_or_default(),
        replicas: raw.replicas.unwrap_or_default(),
    };

    let choice = match raw.output.map(|o| (o.span().start, o.into_inner())) {
        Some((_, OutputChoice::Print(true))) => Choice::Print,
        Some((_, OutputChoice::Print(false))) => Choice::Never,
        Some((offset, OutputChoice::File(path))) => {
            if path.is_empty() {
                return Err(report.at_offset(offset, format!("{task} has an empty output path")));
            }
            Choice::File {
                path,
                offset: report.absolute(offset),
            }
        }
        None => Choice::Unsaid,
    };
    Ok((spec, options, choice, left_out))
}

/// The fields of a task that belong to one kind of task only.
struct SpecFields {
    /// `args`: function tasks only.
    args: Option<Spanned<toml::Value>>,
    /// `env`: command tasks only.
    env: Option<Spanned<BTreeMap<String, String>>>,
    /// `cwd`: command tasks only.
    cwd: Option<Spanned<String>>,
    /// `timeout`: command tasks only.
    timeout: Option<Spanned<DurationText>>,
    /// `stdin`: command tasks only.
    stdin: Option<Spanned<String>>,
}

/// A command (or shell) task's spec from its argv (written at `at`) and fields, before the
/// defaults.
fn command_spec(
    task: &str,
    argv: Vec<String>,
    at: usize,
    fields: SpecFields,
    deps: &[String],
    report: &Report,
) -> Result<TaskSpec, GraphError> {
    if let Some(unknown) = argv.iter().find_map(|arg| placeholder_not_in(arg, deps)) {
        let message = if deps.is_empty() {
            format!("{task} uses {{dep:{unknown}}}, but it has no deps; add {unknown:?} to its deps")
        } else {
            format!("{task} uses {{dep:{unknown}}}, but {unknown:?} is not one of its deps {deps:?}")
        };
        return Err(report.at_offset(at, message));
    }
    if let Some(args) = &fields.args {
        let message = format!("{task} is not a function task; args is only for function tasks");
        return Err(report.at(args, message));
    }
    if let Some(stdin) = &fields.stdin {
        if !deps.contains(stdin.get_ref()) {
            let message = format!(
                "{task} reads stdin from {:?}, which is not one of its deps",
                stdin.get_ref()
            );
            return Err(report.at(stdin, message));
        }
    }
    let timeout_ms = match &fields.timeout {
        Some(text) => Some(timeout_ms(text, report, task)?),
        None => None,
    };
    let env = fields.env.map(Spanned::into_inner).unwrap_or_default();
    Ok(TaskSpec::Command(CommandSpec {
        argv,
        env: env.into_iter().collect(),
        cwd: fields.cwd.map(Spanned::into_inner),
        timeout_ms,
        stdin: fields.stdin.map(Spanned::into_inner).into_iter().collect(),
        ..CommandSpec::default()
    }))
}

/// The key of the first `{dep:KEY}` in `arg` whose KEY is not among `deps`: the worker would
/// leave it as it is, so the command would get the placeholder's text instead of a path.
fn placeholder_not_in<'a>(arg: &'a str, deps: &[String]) -> Option<&'a str> {
    let mut rest = arg;
    while let Some(start) = rest.find("{dep:") {
        let after = &rest[start + "{dep:".len()..];
        let end = after.find('}')?;
        let key = &after[..end];
        if !deps.iter().any(|d| d == key) {
            return Some(key);
        }
        rest = &after[end..];
    }
    None
}

/// A function task's spec, before the defaults; refuses the fields only commands have.
fn function_spec(
    task: &str,
    function: Spanned<String>,
    fields: SpecFields,
    report: &Report,
) -> Result<TaskSpec, GraphError> {
    let command_only = [
        ("env", fields.env.as_ref().map(|v| v.span().start)),
        ("cwd", fields.cwd.as_ref().map(|v| v.span().start)),
        ("timeout", fields.timeout.as_ref().map(|v| v.span().start)),
        ("stdin", fields.stdin.as_ref().map(|v| v.span().start)),
    ];
    if let Some((field, Some(offset))) = command_only.into_iter().find(|f| f.1.is_some()) {
        let message = format!("{task} is a function task; {field} is only for command and shell tasks");
        return Err(report.at_offset(offset, message));
    }
    if function.get_ref().trim().is_empty() {
        return Err(report.at(&function, format!("{task} has an empty function name")));
    }
    // Arguments go as JSON, which the worker decodes by the function's own type; none given
    // are no bytes, as a function of `()` takes.
    let (args, args_form) = match fields.args {
        Some(value) => (json_of(value.get_ref()), ArgsForm::Json),
        None => (Vec::new(), ArgsForm::Bytes),
    };
    Ok(TaskSpec::Function {
        name: function.into_inner(),
        args,
        args_form,
    })
}

/// The JSON text of a TOML value (a date or time becomes its text).
fn json_of(value: &toml::Value) -> Vec<u8> {
    fn convert(value: &toml::Value) -> serde_json::Value {
        match value {
            toml::Value::String(s) => serde_json::Value::String(s.clone()),
            toml::Value::Integer(i) => (*i).into(),
            toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
            toml::Value::Boolean(b) => (*b).into(),
            toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
            toml::Value::Array(items) => items.iter().map(convert).collect(),
            toml::Value::Table(table) => table.iter().map(|(k, v)| (k.clone(), convert(v))).collect(),
        }
    }
    serde_json::to_vec(&convert(value)).expect("a JSON value always encodes")
}

/// A timeout in whole milliseconds, rounded up; `owner` names who set it in messages.
fn timeout_ms(text: &Spanned<DurationText>, report: &Report, owner: &str) -> Result<u64, GraphError> {
    let duration = parse_duration(&text.get_ref().0).map_err(|e| report.at(text, format!("{owner} timeout: {e}")))?;
    if duration.is_zero() {
        return Err(report.at(text, format!("{owner} timeout must be more than zero")));
    }
    // Round up: a 500us timeout must not become "no time at all".
    u64::try_from(duration.as_nanos().div_ceil(1_000_000))
        .map_err(|_| report.at(text, format!("{owner} timeout is too long")))
}

/// Refuses negative and non-finite resource amounts; `owner` names who set them in messages.
fn check_resources(
    raw: BTreeMap<String, Spanned<f64>>,
    report: &Report,
    owner: &str,
) -> Result<BTreeMap<String, f64>, GraphError> {
    raw.into_iter()
        .map(|(name, amount)| {
            let value = *amount.get_ref();
            if value.is_finite() && value >= 0.0 {
                Ok((name, value))
            } else {
                let message =
                    format!("{owner} needs {value} of resource {name:?}; amounts must be non-negative numbers");
                Err(report.at(&amount, message))
            }
        })
        .collect()
}

/// Picks the outputs: those the file names, or else the sinks not marked `output = false`.
/// Refuses two tasks writing one file.
fn choose_outputs(
    tasks: &[TaskDesc],
    choices: &[Choice],
    edges: &Edges,
    report: &Report,
) -> Result<Vec<Output>, GraphError> {
    let named = choices.iter().any(|c| matches!(c, Choice::Print | Choice::File { .. }));
    let mut depended_on = vec![false; tasks.len()];
    if !named {
        for &dep in edges.all() {
            depended_on[dep] = true;
        }
    }
    let mut writers: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut outputs = Vec::new();
    for (i, (task, choice)) in tasks.iter().zip(choices).enumerate() {
        let target = match *choice {
            Choice::Print => OutputTarget::Stdout,
            Choice::File { offset, ref path } => {
                if let Some(first) = writers.insert(path, &task.key) {
                    let message = format!(
                        "task {:?} writes its output to {path:?}, as task {first:?} already does",
                        task.key
                    );
                    return Err(report.at_offset(offset, message));
                }
                OutputTarget::File(PathBuf::from(path))
            }
            Choice::Unsaid if !named && !depended_on[i] => OutputTarget::Stdout,
            Choice::Unsaid | Choice::Never => continue,
        };
        outputs.push(Output {
            key: task.key.clone(),
            target,
        });
    }
    Ok(outputs)
}
