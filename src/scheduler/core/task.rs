//! What the scheduler keeps about one task: its state, its spec as stored (function names
//! shared), the rare fields out of line, and the error of a task whose input failed.

use crate::protocol::{ArgsForm, AttemptId, ClientId, CommandSpec, TaskError, TaskId, TaskOptions, TaskSpec, WorkerId};
use crate::scheduler::id_list::IdList;
use crate::scheduler::table::Keyed;
use std::collections::HashSet;
use std::sync::Arc;

/// Where a task is in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskState {
    /// Known, with its spec, but not being computed and holding no result.
    Released,
    /// Some inputs are not in memory yet.
    Waiting,
    /// All inputs are in memory; queued on the scheduler until a worker has room.
    Ready,
    /// Assigned to a worker, queued there or running.
    Processing {
        worker: WorkerId,
        /// The worker said it started running it (so its death makes the task suspicious).
        started: bool,
        /// This assignment: the worker's answers about the task name it, and answers to an
        /// earlier one are told apart (see `workers.rs`).
        attempt: AttemptId,
    },
    /// The result is held by the workers in `who_has`.
    Memory,
    /// Boxed: an error is rare, and its size would be paid by every task's state.
    Erred(Box<TaskError>),
}

impl TaskState {
    /// Whether a task in this state is being computed: it needs its inputs.
    pub(super) fn is_active(&self) -> bool {
        matches!(
            self,
            TaskState::Waiting | TaskState::Ready | TaskState::Processing { .. }
        )
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            TaskState::Released => "released",
            TaskState::Waiting => "waiting",
            TaskState::Ready => "ready",
            TaskState::Processing { .. } => "processing",
            TaskState::Memory => "memory",
            TaskState::Erred(_) => "erred",
        }
    }
}

/// Everything the scheduler keeps about one task.
#[derive(Debug)]
pub(super) struct Task {
    /// The only copy of the key: the table's key index borrows it from here.
    pub(super) key: Box<str>,
    /// Kept until the task is forgotten, so a lost result can be computed again.
    pub(super) spec: StoredSpec,
    /// From the options: read by every placement, so kept inline.
    pub(super) priority: i32,
    pub(super) deps: IdList<TaskId>,
    /// Tasks that take this one as input; while any is known, this one is kept.
    pub(super) dependents: IdList<TaskId>,
    pub(super) state: TaskState,
    /// In `Waiting`: how many inputs are not in memory.
    pub(super) waiting_on: u32,
    /// In `Memory`: the workers holding the result.
    pub(super) who_has: IdList<WorkerId>,
    pub(super) nbytes: u64,
    /// Clients that asked to be told about this key and keep its result.
    pub(super) wanted_by: IdList<ClientId>,
    /// Submission order, so equal priorities run first come, first served.
    pub(super) seq: u64,
    /// What few tasks have; `None` for a task with default options that nothing went wrong
    /// with, which is most of them.
    pub(super) extras: Option<Box<TaskExtras>>,
}

/// The part of a task that most tasks do not need, kept out of line so they do not pay
/// for it: options beyond the priority, retry and failure bookkeeping, the scattered mark.
#[derive(Debug, Default)]
pub(super) struct TaskExtras {
    /// Its options as submitted (resources, worker restrictions, retries).
    pub(super) options: TaskOptions,
    pub(super) retries_left: u32,
    /// Names of the workers that died while running it.
    pub(super) suspicious: Vec<String>,
    /// Data a client scattered: there is no spec to compute it again.
    pub(super) scattered: bool,
    /// While the task has more than [`WIDE_DEPENDENTS`] dependents: how many of them are
    /// being computed (waiting, ready or processing), so whether it is still needed is a
    /// read, not a scan of every dependent on every one that finishes.
    pub(super) active_dependents: u32,
}

/// A task with more dependents than this keeps a count of those being computed
/// (`TaskExtras::active_dependents`); with fewer, they are looked at.
pub(super) const WIDE_DEPENDENTS: usize = 16;

/// The extras of a task that has none.
static NO_EXTRAS: TaskExtras = TaskExtras {
    options: TaskOptions {
        priority: 0,
        retries: 0,
        resources: Vec::new(),
        workers: Vec::new(),
        replicas: 0,
    },
    retries_left: 0,
    suspicious: Vec::new(),
    scattered: false,
    active_dependents: 0,
};

impl Task {
    pub(super) fn extras(&self) -> &TaskExtras {
        self.extras.as_deref().unwrap_or(&NO_EXTRAS)
    }

    pub(super) fn extras_mut(&mut self) -> &mut TaskExtras {
        self.extras.get_or_insert_with(Box::default)
    }

    pub(super) fn options(&self) -> &TaskOptions {
        &self.extras().options
    }

    pub(super) fn scattered(&self) -> bool {
        self.extras().scattered
    }
}

/// A task's spec as the scheduler keeps it: a function's name (with how its arguments are
/// written) is shared by every task that calls that function, and its arguments take no
/// spare capacity.
#[derive(Debug)]
pub(super) enum StoredSpec {
    Function {
        /// An `Arc` rather than an inline name: a thin pointer, which makes the spec 24 bytes
        /// instead of 32.
        callee: Arc<Callee>,
        args: Box<[u8]>,
    },
    /// Boxed: commands are the rarer kind and their spec is large.
    Command(Box<CommandSpec>),
}

/// What a function task calls: the function's name and how its arguments are written.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct Callee {
    pub(super) name: String,
    pub(super) args_form: ArgsForm,
}

impl StoredSpec {
    /// The spec as a worker is sent it.
    pub(super) fn to_wire(&self) -> TaskSpec {
        match self {
            StoredSpec::Function { callee, args } => TaskSpec::Function {
                name: callee.name.clone(),
                args: args.to_vec(),
                args_form: callee.args_form,
            },
            StoredSpec::Command(c) => TaskSpec::Command((**c).clone()),
        }
    }
}

/// One shared copy of each function name (and argument form) in use.
#[derive(Debug)]
pub(super) struct NameInterner {
    pub(super) names: HashSet<Arc<Callee>>,
    /// When the set reaches this size, names no task uses any more are dropped first, so
    /// the set stays within twice the names in use.
    pub(super) purge_at: usize,
}

impl Default for NameInterner {
    fn default() -> Self {
        NameInterner {
            names: HashSet::new(),
            purge_at: 64,
        }
    }
}

impl NameInterner {
    pub(super) fn intern(&mut self, callee: Callee) -> Arc<Callee> {
        if let Some(n) = self.names.get(&callee) {
            return n.clone();
        }
        if self.names.len() >= self.purge_at {
            self.names.retain(|n| Arc::strong_count(n) > 1);
            self.purge_at = (self.names.len() * 2).max(64);
        }
        let n = Arc::new(callee);
        self.names.insert(n.clone());
        n
    }

    pub(super) fn store(&mut self, spec: TaskSpec) -> StoredSpec {
        match spec {
            TaskSpec::Function { name, args, args_form } => StoredSpec::Function {
                callee: self.intern(Callee { name, args_form }),
                args: args.into_boxed_slice(),
            },
            TaskSpec::Command(c) => StoredSpec::Command(Box::new(c)),
        }
    }
}

impl Keyed for Task {
    fn key(&self) -> &str {
        &self.key
    }
}

pub(super) fn dependency_error(key: &str, error: TaskError) -> TaskError {
    match error {
        e @ TaskError::Dependency { .. } => e,
        e => TaskError::Dependency {
            key: key.to_string(),
            error: Box::new(e),
        },
    }
}

#[cfg(test)]
mod size_tests {
    /// Every byte of `Task` is paid by each of a million pending tasks (the `memory`
    /// benchmark): growing it should be a decision, not an accident.
    #[test]
    fn a_task_stays_small() {
        assert!(std::mem::size_of::<Option<super::Task>>() <= 152);
        assert_eq!(std::mem::size_of::<super::TaskState>(), 16);
        assert_eq!(std::mem::size_of::<super::StoredSpec>(), 24);
    }
}
