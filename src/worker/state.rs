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

use super::lifecycle::Life;
use crate::idmap::{IdMap, IdSet};
use crate::memory::MemoryPolicy;
use crate::protocol::{ComputeTask, DepLocation, FromWorker, TaskError, TaskId, TaskSpec};
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
    /// Run a task; its inputs are in the store under these ids, in this order.
    Execute {
        task: TaskId,
        /// Higher runs first among tasks queued to the function threads.
        priority: i32,
        key: String,
        spec: TaskSpec,
        inputs: Vec<(TaskId, String)>,
    },
    /// Stop the execution of `task` and discard its outcome.
    Kill(TaskId),
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
            life,
        }
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

    pub fn on_compute(&mut self, ct: ComputeTask) {
        if self.tasks.contains_key(&ct.id) {
            return;
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
                dep: dep.id,
                holder: String::new(),
                reason: "no worker holds it".into(),
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
        self.tasks.insert(
            ct.id,
            Assigned {
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
            }));
        }
        let Some(mut f) = self.fetching.remove(&dep) else {
            if outcome.is_ok() {
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
                for w in f.waiters {
                    if self.tasks.contains_key(&w) {
                        self.outbox.push(Effect::Send(FromWorker::FetchFailed {
                            task: w,
                            dep,
                            holder: holder.clone(),
                            reason: reason.to_string(),
                        }));
                        self.forget(w);
                    }
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

    /// A task's execution ended; on success the shell stored its result.
    pub fn on_executed(&mut self, task: TaskId, outcome: Result<u64, TaskError>) {
        self.unreported_starts.remove(&task);
        match self.tasks.get(&task) {
            Some(t) if matches!(t.phase, Phase::Running | Phase::Handed) => {}
            _ => {
                if outcome.is_ok() {
                    self.outbox.push(Effect::Drop(vec![task]));
                }
                return;
            }
        }
        let t = self.tasks.remove(&task).expect("checked above");
        self.free_slot(t.function);
        match outcome {
            Ok(nbytes) => {
                self.held.insert(task, Held { nbytes, reported: true });
                let mut fetched = Vec::new();
                for d in &t.deps {
                    if let Some(h) = self.held.get_mut(&d.id) {
                        if !h.reported {
                            h.reported = true;
                            fetched.push(d.id);
                        }
                    }
                }
                self.outbox
                    .push(Effect::Send(FromWorker::Finished { task, nbytes, fetched }));
                for w in self.behind.remove(&task).unwrap_or_default() {
                    self.input_arrived(w);
                }
            }
            Err(error) => {
                self.outbox.push(Effect::Send(FromWorker::Failed { task, error }));
                self.drop_unused_inputs(&t.deps);
            }
        }
        self.start_ready();
    }

    pub fn on_release_data(&mut self, tasks: Vec<TaskId>) {
        let dropped: Vec<TaskId> = tasks.into_iter().filter(|t| self.held.remove(t).is_some()).collect();
        if !dropped.is_empty() {
            self.outbox.push(Effect::Drop(dropped));
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
            self.forget(t);
            stolen.push(t);
        }
        self.outbox.push(Effect::Send(FromWorker::Stolen { tasks: stolen }));
    }

    /// A client's scattered bytes were stored under `task`.
    pub fn on_put_data(&mut self, task: TaskId, nbytes: u64) {
        self.held.insert(task, Held { nbytes, reported: true });
        self.outbox.push(Effect::Send(FromWorker::DataStored { task, nbytes }));
    }

    /// Drops an assigned task wherever it is; a running one is killed.
    fn forget(&mut self, task: TaskId) {
        let Some(t) = self.tasks.remove(&task) else {
            return;
        };
        self.unreported_starts.remove(&task);
        if matches!(t.phase, Phase::Running | Phase::Handed) {
            self.free_slot(t.function);
            self.outbox.push(Effect::Kill(task));
        }
        for d in &t.deps {
            if let Some(f) = self.fetching.get_mut(&d.id) {
                f.waiters.retain(|w| *w != task);
            }
            if let Some(waiters) = self.behind.get_mut(&d.id) {
                waiters.retain(|w| *w != task);
                if waiters.is_empty() {
                    self.behind.remove(&d.id);
                }
            }
        }
        self.drop_unused_inputs(&t.deps);
    }

    /// Drops fetched copies the scheduler does not know of and no local task needs.
    fn drop_unused_inputs(&mut self, deps: &[DepLocation]) {
        let mut dropped = Vec::new();
        for d in deps {
            if matches!(self.held.get(&d.id), Some(h) if !h.reported)
                && !self.tasks.values().any(|t| t.deps.iter().any(|x| x.id == d.id))
            {
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

    #[cfg(test)]
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
                self.outbox.push(Effect::Send(FromWorker::Started { task: id }));
            }
            self.outbox.push(Effect::Execute {
                task: id,
                priority: t.priority,
                key: std::mem::take(&mut t.key),
                spec: std::mem::replace(
                    &mut t.spec,
                    TaskSpec::Function {
                        name: String::new(),
                        args: Vec::new(),
                    },
                ),
                inputs: t.deps.iter_mut().map(|d| (d.id, std::mem::take(&mut d.key))).collect(),
            });
        }
    }

    /// A function thread started running `task`. The scheduler hears of it from
    /// [`WorkerCore::report_starts`], or from the task's `Finished` if that comes first.
    pub fn on_function_started(&mut self, task: TaskId) {
        if let Some(t) = self.tasks.get_mut(&task) {
            if matches!(t.phase, Phase::Handed | Phase::Running) {
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
            if matches!(self.tasks.get(&task), Some(t) if t.phase == Phase::Running) {
                self.outbox.push(Effect::Send(FromWorker::Started { task }));
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

    /// Asserts the invariants between the tables: slots, queues, fetches in flight, held
    /// results, the paused state and the lifecycle. The tests call it after every step.
    #[cfg(test)]
    pub fn sanity_check(&self) {
        let started: Vec<&Assigned> = self
            .tasks
            .values()
            .filter(|t| matches!(t.phase, Phase::Handed | Phase::Running))
            .collect();
        assert_eq!(self.running, started.len(), "running counts the started tasks");
        let commands = started.iter().filter(|t| !t.function).count();
        assert_eq!(
            self.running_commands, commands,
            "running_commands counts started commands"
        );
        assert!(self.running_commands <= self.nthreads, "at most one command per slot");
        assert!(
            self.running <= self.nthreads * (1 + FUNCTION_PREFETCH_PER_THREAD),
            "at most the slots and the prefetch are started"
        );
        if self.running_commands > 0 {
            assert!(
                self.running <= self.nthreads,
                "no prefetch while a command holds a slot"
            );
        }
        for (id, t) in self.tasks.iter() {
            match t.phase {
                Phase::Fetching { missing } => {
                    assert!(missing > 0, "{id} fetching nothing");
                    // Each missing input is awaited once per listing: from a fetch in flight,
                    // or behind a task computing it here.
                    let awaited: usize = self
                        .fetching
                        .values()
                        .map(|f| f.waiters.iter().filter(|w| *w == id).count())
                        .chain(self.behind.values().map(|b| b.iter().filter(|w| *w == id).count()))
                        .sum();
                    assert_eq!(missing, awaited, "{id} waits for as many inputs as are awaited");
                }
                Phase::Ready => assert!(
                    self.ready.iter().any(|(_, _, r)| r == id),
                    "ready task {id} is in the ready queue"
                ),
                Phase::Handed | Phase::Running => {}
            }
        }
        for (dep, f) in self.fetching.iter() {
            assert!(!self.held.contains_key(dep), "{dep} is fetched and held at once");
            assert!(f.trying < f.holders.len(), "fetch of {dep} asks a listed holder");
            assert!((1..=f.holders.len()).contains(&f.attempts), "fetch of {dep} attempts");
            for w in &f.waiters {
                assert!(
                    matches!(self.tasks.get(w), Some(t) if matches!(t.phase, Phase::Fetching { .. })),
                    "fetch of {dep} waited for by {w}, which is not fetching"
                );
            }
        }
        for r in self.replicating.iter() {
            assert!(self.fetching.contains_key(r), "replication of {r} is a fetch in flight");
        }
        for (dep, h) in self.held.iter() {
            if !h.reported {
                assert!(
                    self.tasks.values().any(|t| t.deps.iter().any(|d| d.id == *dep)),
                    "unreported copy of {dep} is needed by a local task"
                );
            }
        }
        for t in self.unreported_starts.iter() {
            assert!(
                matches!(self.tasks.get(t), Some(a) if a.phase == Phase::Running),
                "unreported start of {t}, which is not running"
            );
        }
        self.life.sanity_check(self.paused);
    }
}
