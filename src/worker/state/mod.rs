//! The worker's logic: which assigned tasks wait for inputs, which are ready, which run, and
//! which results it holds, as a synchronous state machine with one owner. Its decisions in
//! time (heartbeats, memory, lifetime, stop requests) are in `lifecycle.rs`, a second `impl`
//! block of the same core.
//!
//! The state-machine contract: events are method calls named after what happened
//! (`on_compute`, `on_fetched`, `on_executed`, `on_timer` ...), with `now` passed in where time
//! matters; decisions go out through [`WorkerCore::take_outbox`] as [`Effect`]s that the worker
//! shell carries out: messages to the scheduler, fetches from peers, executions, kills,
//! results to drop, memory to read, results to spill, the end of the worker. Its next timer
//! is [`WorkerCore::next_deadline`]. It never awaits, opens a socket, reads a clock or
//! `/proc`, spawns a process or holds result bytes.

#[cfg(test)]
mod sanity;

use super::lifecycle::Life;
use crate::idmap::{IdMap, IdSet};
use crate::memory::MemoryPolicy;
use crate::protocol::{AttemptId, ComputeTask, DepLocation, FetchFailure, FromWorker, TaskError, TaskId, TaskSpec};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Function tasks queued to the function threads ahead of their slots, per thread. Deep
/// enough that a thread running tasks of microseconds finds its next one queued instead of
/// sleeping until the worker's loop wakes; queued tasks can still be retracted (stolen or
/// cancelled) until a thread claims them.
pub(crate) const FUNCTION_PREFETCH_PER_THREAD: usize = 64;

/// Something the shell must do.
#[derive(Debug, PartialEq)]
pub enum Effect {
    Send(FromWorker),
    /// Fetch the result `task` from the peer at `from`.
    Fetch {
        task: TaskId,
        from: String,
        /// `from` is the only holder listed: the shell tries a refused or broken connection
        /// again for a little while before it reports the fetch failed.
        only_holder: bool,
    },
    /// Run a task; its inputs are in the store under these ids, in this order. Its outcome
    /// comes back to [`WorkerCore::on_executed`] with the same `attempt`.
    Execute {
        task: TaskId,
        attempt: AttemptId,
        /// Higher runs first among tasks queued to the function threads.
        priority: i32,
        key: String,
        spec: TaskSpec,
        inputs: Vec<(TaskId, String)>,
    },
    /// Stop the execution of `task` (this assignment of it) and discard its outcome.
    Kill(TaskId, AttemptId),
    /// Remove these results from the store.
    Drop(Vec<TaskId>),
    /// Read this process's resident memory and the store's in-memory bytes, and hand them to
    /// [`WorkerCore::on_memory`]: a heartbeat or a memory check is due.
    SampleMemory,
    /// Spill results to disk until at most `keep` bytes stay in memory, then call
    /// [`WorkerCore::on_spilled`].
    Spill {
        keep: u64,
    },
    /// The worker ends: flush what was sent and exit.
    Leave(WorkerExit),
}

/// How a worker ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerExit {
    /// Stopped on request, or the scheduler shut down.
    Stopped,
    /// Retired (lifetime or drain): its work was handed over.
    Retired,
}

/// Why an input could not be fetched from a peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The connection to the peer failed: the peer client's reason, shared by every input of
    /// the batch it was fetching.
    #[error("{0}")]
    Transfer(String),
    /// The peer answered that it does not hold the result.
    #[error("{holder} does not hold it")]
    NotHeld { holder: String },
}

/// What the core is told once, when the worker starts.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub nthreads: usize,
    /// Retire this long after the start.
    pub lifetime: Option<Duration>,
    /// A stop request drains (retires) instead of leaving at once; a second one leaves.
    pub drain: bool,
    pub memory: MemoryPolicy,
}

impl WorkerSettings {
    #[cfg(test)]
    /// `nthreads` slots, no lifetime, no drain, no memory limit.
    pub fn new(nthreads: usize) -> WorkerSettings {
        WorkerSettings {
            nthreads,
            lifetime: None,
            drain: false,
            memory: MemoryPolicy::unlimited(),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Phase {
    /// Waiting for `missing` inputs: from peers, or being computed on this worker.
    Fetching {
        missing: usize,
    },
    Ready,
    /// A function task queued to the function threads, which have not started it yet.
    Handed,
    Running,
}

/// An assigned task.
#[derive(Debug)]
struct Assigned {
    /// The assignment the scheduler numbered; every answer about the task names it.
    attempt: AttemptId,
    /// The key, spec and input keys move into the `Execute` effect when the task starts:
    /// a started task is never executed again here.
    key: String,
    spec: TaskSpec,
    /// A function task (on the function threads), not a command (holding a slot).
    function: bool,
    deps: Vec<DepLocation>,
    priority: i32,
    phase: Phase,
    /// Arrival order, so equal priorities start first come, first served.
    seq: u64,
}

/// A result in the store.
#[derive(Debug)]
struct Held {
    nbytes: u64,
    /// The scheduler knows this worker holds it (computed here, scattered here, or reported
    /// as fetched). Unreported copies are dropped once no local task needs them.
    reported: bool,
}

/// A fetch in flight.
#[derive(Debug)]
struct Fetching {
    holders: Vec<String>,
    /// Index in `holders` of the peer being asked now.
    trying: usize,
    /// How many holders were asked so far.
    attempts: usize,
    /// Local tasks waiting for it.
    waiters: Vec<TaskId>,
}

/// The worker's state. One owner; see the module doc.
pub struct WorkerCore {
    nthreads: usize,
    tasks: IdMap<TaskId, Assigned>,
    ready: BinaryHeap<(i32, Reverse<u64>, TaskId)>,
    running: usize,
    held: IdMap<TaskId, Held>,
    fetching: IdMap<TaskId, Fetching>,
    next_seq: u64,
    /// What was decided and not yet taken by the shell, in order.
    pub(super) outbox: Vec<Effect>,
    /// Memory is near the limit: no new task starts until it falls.
    pub(super) paused: bool,
    /// How many of `running` are commands (the rest are functions on function threads).
    running_commands: usize,
    /// Results being copied here from a retiring worker.
    replicating: IdSet<TaskId>,
    /// Tasks queued behind inputs this worker is computing: input -> the tasks waiting for it.
    behind: IdMap<TaskId, Vec<TaskId>>,
    /// Function tasks that started but whose `Started` is not sent yet: sent by
    /// [`WorkerCore::report_starts`] unless their `Finished` goes first and says it all.
    unreported_starts: IdSet<TaskId>,
    /// For each input of an assigned task, how many assigned tasks take it (counted once per
    /// listing): whether a result is needed here, without a scan of every task.
    input_refs: IdMap<TaskId, u32>,
    /// How many scheduler messages of this session were read: reports of results held
    /// carry it, so the scheduler can tell a `ReleaseData` that crossed them.
    pub(super) seen: u64,
    /// Heartbeats, memory, lifetime and stopping: what outlives a scheduler session.
    pub(super) life: Life,
}

impl WorkerCore {
    /// A worker starting at `now`; its lifetime, if any, counts from here.
    pub fn new(settings: WorkerSettings, now: Instant) -> WorkerCore {
        let life = Life::new(&settings, now);
        WorkerCore::with_life(settings.nthreads, life)
    }

    /// A core holding no task and no result.
    pub(super) fn with_life(nthreads: usize, life: Life) -> WorkerCore {
        WorkerCore {
            nthreads: nthreads.max(1),
            tasks: IdMap::default(),
            ready: BinaryHeap::new(),
            running: 0,
            held: IdMap::default(),
            fetching: IdMap::default(),
            next_seq: 0,
            outbox: Vec::new(),
            paused: false,
            running_commands: 0,
            replicating: Default::default(),
            unreported_starts: Default::default(),
            behind: Default::default(),
            input_refs: Default::default(),
            seen: 0,
            life,
        }
    }

    /// Whether anything under way can make this worker's memory grow: a task running or
    /// ready, a result on its way here, a spill, or a pause that waits for memory to fall.
    pub(crate) fn is_busy(&self) -> bool {
        self.running > 0
            || !self.ready.is_empty()
            || !self.fetching.is_empty()
            || !self.replicating.is_empty()
            || self.paused
            || self.life.is_spilling()
    }

    /// Everything decided since the last call, in order.
    pub fn take_outbox(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.outbox)
    }

    /// Forgets every task and result of a scheduler session (the shell drops their
    /// executions, fetches and bytes); what outlives the session stays.
    pub(super) fn forget_session(&mut self) {
        let life = std::mem::take(&mut self.life);
        let paused = self.paused;
        *self = WorkerCore::with_life(self.nthreads, life);
        self.paused = paused;
    }

    #[cfg(test)]
    pub fn assigned(&self) -> usize {
        self.tasks.len()
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// A scheduler message arrived; the shell calls this before the event it carries.
    pub fn on_message(&mut self) {
        self.seen += 1;
    }

    pub fn on_compute(&mut self, ct: ComputeTask) {
        match self.tasks.get(&ct.id) {
            Some(a) if a.attempt == ct.attempt => return,
            // The scheduler ends an assignment (a `Cancel`, or this worker's answer) before it
            // makes another here, so this is not expected; the newer one wins.
            Some(_) => self.forget(ct.id),
            None => {}
        }
        // An input nobody holds fails the task before any fetch starts for it, so no fetch
        // waits for a task that is not here.
        let unobtainable = ct.deps.iter().find(|d| {
            d.holders.is_empty()
                && !self.held.contains_key(&d.id)
                && !self.fetching.contains_key(&d.id)
                && !self.tasks.contains_key(&d.id)
        });
        if let Some(dep) = unobtainable {
            self.outbox.push(Effect::Send(FromWorker::FetchFailed {
                task: ct.id,
                attempt: ct.attempt,
                dep: dep.id,
                holder: String::new(),
                failure: FetchFailure::NoHolder,
            }));
            return;
        }
        let mut missing = 0;
        for dep in &ct.deps {
            if self.held.contains_key(&dep.id) {
                continue;
            }
            missing += 1;
            if let Some(f) = self.fetching.get_mut(&dep.id) {
                f.waiters.push(ct.id);
                continue;
            }
            if dep.holders.is_empty() {
                // Queued behind an input this worker is computing (checked above): it starts
                // once that is done.
                self.behind.entry(dep.id).or_default().push(ct.id);
                continue;
            }
            // Spread the load of popular inputs over their holders.
            let trying = ct.id.0 as usize % dep.holders.len();
            self.start_fetch(
                dep.id,
                Fetching {
                    holders: dep.holders.clone(),
                    trying,
                    attempts: 1,
                    waiters: vec![ct.id],
                },
            );
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let phase = if missing == 0 {
            self.ready.push((ct.priority, Reverse(seq), ct.id));
            Phase::Ready
        } else {
            Phase::Fetching { missing }
        };
        for d in &ct.deps {
            *self.input_refs.entry(d.id).or_insert(0) += 1;
        }
        self.tasks.insert(
            ct.id,
            Assigned {
                attempt: ct.attempt,
                key: ct.key,
                function: matches!(ct.spec, TaskSpec::Function { .. }),
                spec: ct.spec,
                deps: ct.deps,
                priority: ct.priority,
                phase,
                seq,
            },
        );
        self.start_ready();
    }

    /// Copy a retiring worker's result here.
    pub fn on_replicate(&mut self, task: TaskId, from: String) {
        if let Some(h) = self.held.get_mut(&task) {
            h.reported = true;
            let nbytes = h.nbytes;
            self.outbox.push(Effect::Send(FromWorker::Replicated {
                task,
                nbytes: Some(nbytes),
                seen: self.seen,
            }));
            return;
        }
        self.replicating.insert(task);
        if !self.fetching.contains_key(&task) {
            self.start_fetch(
                task,
                Fetching {
                    holders: vec![from],
                    trying: 0,
                    attempts: 1,
                    waiters: Vec::new(),
                },
            );
        }
    }

    /// Asks the holder `f` is trying for `task`'s result, and notes the fetch under way.
    fn start_fetch(&mut self, task: TaskId, f: Fetching) {
        self.outbox.push(Effect::Fetch {
            task,
            from: f.holders[f.trying].clone(),
            only_holder: f.holders.len() == 1,
        });
        self.fetching.insert(task, f);
    }

    /// An input arrived (the shell stored it) or could not be fetched.
    pub fn on_fetched(&mut self, dep: TaskId, outcome: Result<u64, FetchError>) {
        // A copy for a retiring worker is kept and reported, whatever local tasks do with it.
        let replicated = self.replicating.remove(&dep);
        if replicated {
            self.outbox.push(Effect::Send(FromWorker::Replicated {
                task: dep,
                nbytes: outcome.as_ref().ok().copied(),
                seen: self.seen,
            }));
        }
        let Some(mut f) = self.fetching.remove(&dep) else {
            // A fetch nobody waits for; a copy the core holds meanwhile stays.
            if outcome.is_ok() && !self.held.contains_key(&dep) {
                self.outbox.push(Effect::Drop(vec![dep]));
            }
            return;
        };
        match outcome {
            Ok(nbytes) => {
                self.held.insert(
                    dep,
                    Held {
                        nbytes,
                        reported: replicated,
                    },
                );
                self.note_growth(nbytes);
                let mut alive = replicated;
                for w in f.waiters {
                    alive |= self.input_arrived(w);
                }
                if !alive {
                    self.held.remove(&dep);
                    self.outbox.push(Effect::Drop(vec![dep]));
                }
                self.start_ready();
            }
            Err(reason) => {
                let holder = f.holders[f.trying].clone();
                if f.attempts < f.holders.len() {
                    f.attempts += 1;
                    f.trying = (f.trying + 1) % f.holders.len();
                    // Ask the next holder before giving up.
                    log::debug!(
                        "fetch of {dep} from {holder} failed ({reason}); trying {}",
                        f.holders[f.trying]
                    );
                    self.start_fetch(dep, f);
                    return;
                }
                let failure = match reason {
                    FetchError::NotHeld { .. } => FetchFailure::NotHeld,
                    FetchError::Transfer(reason) => FetchFailure::Transfer(reason),
                };
                for w in f.waiters {
                    self.drop_for_input(w, dep, &holder, failure.clone());
                }
            }
        }
    }

    /// One of the inputs `task` waits for is here: it is ready once it has them all. False if
    /// `task` no longer waits for inputs.
    fn input_arrived(&mut self, task: TaskId) -> bool {
        let Some(t) = self.tasks.get_mut(&task) else {
            return false;
        };
        let Phase::Fetching { missing } = &mut t.phase else {
            return false;
        };
        *missing -= 1;
        if *missing == 0 {
            t.phase = Phase::Ready;
            self.ready.push((t.priority, Reverse(t.seq), task));
        }
        true
    }

    /// A task's execution ended; on success the shell stored its result. An outcome of an
    /// assignment that is over (the task was cancelled or stolen, or assigned again) is not
    /// the current one's: its bytes are dropped, unless this worker holds the result anyway.
    pub fn on_executed(&mut self, task: TaskId, attempt: AttemptId, outcome: Result<u64, TaskError>) {
        match self.tasks.get(&task) {
            Some(t) if t.attempt == attempt && matches!(t.phase, Phase::Running | Phase::Handed) => {}
            _ => {
                if outcome.is_ok() && !self.held.contains_key(&task) {
                    self.outbox.push(Effect::Drop(vec![task]));
                }
                return;
            }
        }
        self.unreported_starts.remove(&task);
        let t = self.tasks.remove(&task).expect("checked above");
        self.unref_inputs(&t.deps);
        self.free_slot(t.function);
        match outcome {
            Ok(nbytes) => {
                self.held.insert(task, Held { nbytes, reported: true });
                self.note_growth(nbytes);
                let mut fetched = Vec::new();
                for d in &t.deps {
                    if let Some(h) = self.held.get_mut(&d.id) {
                        if !h.reported {
                            h.reported = true;
                            fetched.push(d.id);
                        }
                    }
                }
                self.outbox.push(Effect::Send(FromWorker::Finished {
                    task,
                    attempt,
                    nbytes,
                    fetched,
                    seen: self.seen,
                }));
                self.fetch_made_moot(task, nbytes);
                for w in self.behind.remove(&task).unwrap_or_default() {
                    self.input_arrived(w);
                }
            }
            Err(error) => {
                self.outbox
                    .push(Effect::Send(FromWorker::Failed { task, attempt, error }));
                self.drop_unused_inputs(&t.deps);
                self.drop_behind(task);
            }
        }
        self.start_ready();
    }

    /// `task`'s result is held here now, computed: a fetch of it still under way (a copy for
    /// replicas, an input of a local task) is over, as if it had arrived.
    fn fetch_made_moot(&mut self, task: TaskId, nbytes: u64) {
        let Some(f) = self.fetching.remove(&task) else { return };
        if self.replicating.remove(&task) {
            self.outbox.push(Effect::Send(FromWorker::Replicated {
                task,
                nbytes: Some(nbytes),
                seen: self.seen,
            }));
        }
        for w in f.waiters {
            self.input_arrived(w);
        }
    }

    /// The execution of `task` found its input `dep` gone from the store (a spill file that
    /// could not be read back): the input is not held here any more, and the task is given
    /// back as one whose input could not be had, never failed for it.
    pub fn on_input_missing(&mut self, task: TaskId, attempt: AttemptId, dep: TaskId) {
        if !matches!(self.tasks.get(&task), Some(t) if t.attempt == attempt) {
            return;
        }
        self.held.remove(&dep);
        self.drop_for_input(task, dep, "", FetchFailure::NotHeld);
        self.start_ready();
    }

    /// `task` cannot have its input `dep` from `holder` (empty: this worker): the scheduler
    /// is told, and the task is dropped here, with what waits behind it.
    fn drop_for_input(&mut self, task: TaskId, dep: TaskId, holder: &str, failure: FetchFailure) {
        let Some(a) = self.tasks.get(&task) else { return };
        self.outbox.push(Effect::Send(FromWorker::FetchFailed {
            task,
            attempt: a.attempt,
            dep,
            holder: holder.to_string(),
            failure,
        }));
        self.forget(task);
    }

    /// `task` ends here without a result: the tasks queued behind it, waiting for it to
    /// finish here, cannot start; each is given back like a task whose input nobody holds.
    fn drop_behind(&mut self, task: TaskId) {
        for w in self.behind.remove(&task).unwrap_or_default() {
            self.drop_for_input(w, task, "", FetchFailure::NoHolder);
        }
    }

    /// The scheduler no longer lists this worker as a holder of these results. One a local
    /// task still needs stays, as a copy the scheduler does not know of, until that task ends:
    /// dropping it would make the task fail for an input it had.
    pub fn on_release_data(&mut self, tasks: Vec<TaskId>) {
        let mut dropped = Vec::new();
        for t in tasks {
            if !self.held.contains_key(&t) {
                continue;
            }
            if self.needed_here(t) {
                self.held.get_mut(&t).expect("checked").reported = false;
            } else {
                self.held.remove(&t);
                dropped.push(t);
            }
        }
        if !dropped.is_empty() {
            self.outbox.push(Effect::Drop(dropped));
        }
    }

    /// Whether a task assigned here takes `t` as input.
    fn needed_here(&self, t: TaskId) -> bool {
        self.input_refs.contains_key(&t)
    }

    /// A task with these inputs is no longer assigned here.
    fn unref_inputs(&mut self, deps: &[DepLocation]) {
        for d in deps {
            if let Some(n) = self.input_refs.get_mut(&d.id) {
                *n -= 1;
                if *n == 0 {
                    self.input_refs.remove(&d.id);
                }
            }
        }
    }

    pub fn on_cancel(&mut self, tasks: Vec<TaskId>) {
        for t in tasks {
            if self.tasks.contains_key(&t) {
                self.forget(t);
            }
        }
        self.start_ready();
    }

    /// The scheduler wants these tasks back, if they have not started. `retract` takes a
    /// task queued to the function threads back, or says a thread claimed it first.
    pub fn on_steal(&mut self, tasks: Vec<TaskId>, mut retract: impl FnMut(TaskId) -> bool) {
        let mut stolen = Vec::new();
        for t in tasks {
            let Some(a) = self.tasks.get_mut(&t) else {
                continue;
            };
            match a.phase {
                Phase::Running => continue,
                Phase::Handed if !retract(t) => {
                    // A thread has it: its start is on the way.
                    a.phase = Phase::Running;
                    continue;
                }
                _ => {}
            }
            let attempt = a.attempt;
            self.forget(t);
            stolen.push((t, attempt));
        }
        self.outbox.push(Effect::Send(FromWorker::Stolen { tasks: stolen }));
        // A function taken back from the threads gave back its slot: a ready task may start.
        self.start_ready();
    }

    /// A client's scattered bytes were stored under `task`.
    pub fn on_put_data(&mut self, task: TaskId, nbytes: u64) {
        self.held.insert(task, Held { nbytes, reported: true });
        self.note_growth(nbytes);
        self.outbox.push(Effect::Send(FromWorker::DataStored { task, nbytes }));
    }

    /// Drops an assigned task wherever it is; a running one is killed.
    fn forget(&mut self, task: TaskId) {
        let Some(t) = self.tasks.remove(&task) else {
            return;
        };
        self.unref_inputs(&t.deps);
        self.unreported_starts.remove(&task);
        if matches!(t.phase, Phase::Running | Phase::Handed) {
            self.free_slot(t.function);
            self.outbox.push(Effect::Kill(task, t.attempt));
        }
        for d in &t.deps {
            if let Some(f) = self.fetching.get_mut(&d.id) {
                f.waiters.retain(|w| *w != task);
                // A fetch nobody waits for is forgotten: its bytes, if they still come, are
                // dropped, and the input may be computed here meanwhile.
                if f.waiters.is_empty() && !self.replicating.contains(&d.id) {
                    self.fetching.remove(&d.id);
                }
            }
            if let Some(waiters) = self.behind.get_mut(&d.id) {
                waiters.retain(|w| *w != task);
                if waiters.is_empty() {
                    self.behind.remove(&d.id);
                }
            }
        }
        self.drop_unused_inputs(&t.deps);
        self.drop_behind(task);
    }

    /// Drops fetched copies the scheduler does not know of and no local task needs.
    fn drop_unused_inputs(&mut self, deps: &[DepLocation]) {
        let mut dropped = Vec::new();
        for d in deps {
            if matches!(self.held.get(&d.id), Some(h) if !h.reported) && !self.needed_here(d.id) {
                self.held.remove(&d.id);
                dropped.push(d.id);
            }
        }
        if !dropped.is_empty() {
            self.outbox.push(Effect::Drop(dropped));
        }
    }

    /// Memory crossed the pause threshold (or fell back below it).
    pub(super) fn set_paused(&mut self, paused: bool) {
        if self.paused != paused {
            self.paused = paused;
            self.start_ready();
        }
    }

    /// Paused for memory: no new task starts (the shell holds queued functions too).
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    fn start_ready(&mut self) {
        while !self.paused {
            let Some(&(_, _, id)) = self.ready.peek() else {
                break;
            };
            let Some(t) = self.tasks.get_mut(&id) else {
                self.ready.pop();
                continue;
            };
            if t.phase != Phase::Ready {
                self.ready.pop();
                continue;
            }
            // Function tasks may be handed to the function threads a little ahead of a free
            // slot, so a thread finds its next task queued instead of sleeping between tasks;
            // the threads still run at most `nthreads` at once. Not while a command runs: the
            // slots are shared.
            let function = t.function;
            let room = self.running < self.nthreads
                || (function
                    && self.running_commands == 0
                    && self.running < self.nthreads * (1 + FUNCTION_PREFETCH_PER_THREAD));
            if !room {
                break;
            }
            self.ready.pop();
            t.phase = if function { Phase::Handed } else { Phase::Running };
            self.running += 1;
            if !function {
                // A function reports its start when a thread really starts it.
                self.running_commands += 1;
                self.outbox.push(Effect::Send(FromWorker::Started {
                    task: id,
                    attempt: t.attempt,
                }));
            }
            self.outbox.push(Effect::Execute {
                task: id,
                attempt: t.attempt,
                priority: t.priority,
                key: std::mem::take(&mut t.key),
                spec: std::mem::replace(
                    &mut t.spec,
                    TaskSpec::Function {
                        name: String::new(),
                        args: Vec::new(),
                        args_form: crate::protocol::ArgsForm::Bytes,
                    },
                ),
                inputs: t.deps.iter_mut().map(|d| (d.id, std::mem::take(&mut d.key))).collect(),
            });
        }
    }

    /// A function thread started running `task`. The scheduler hears of it from
    /// [`WorkerCore::report_starts`], or from the task's `Finished` if that comes first.
    pub fn on_function_started(&mut self, task: TaskId, attempt: AttemptId) {
        if let Some(t) = self.tasks.get_mut(&task) {
            if t.attempt == attempt && matches!(t.phase, Phase::Handed | Phase::Running) {
                t.phase = Phase::Running;
                self.unreported_starts.insert(task);
            }
        }
    }

    /// Sends `Started` for function tasks that started and are still running. The shell calls
    /// it once it has handled every event that was waiting, so a task that started and
    /// finished in one batch of events costs the scheduler one message, not two.
    pub fn report_starts(&mut self) {
        if self.unreported_starts.is_empty() {
            return;
        }
        let mut started: Vec<TaskId> = self.unreported_starts.drain().collect();
        started.sort_unstable();
        for task in started {
            if let Some(t) = self.tasks.get(&task).filter(|t| t.phase == Phase::Running) {
                self.outbox.push(Effect::Send(FromWorker::Started {
                    task,
                    attempt: t.attempt,
                }));
            }
        }
    }

    /// Gives back the slot of a running task that ends or is dropped.
    fn free_slot(&mut self, function: bool) {
        self.running -= 1;
        if !function {
            self.running_commands -= 1;
        }
    }
}
