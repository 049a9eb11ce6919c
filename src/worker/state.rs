//! The worker's logic: which assigned tasks wait for inputs, which are ready, which run, and
//! which results it holds, as a synchronous state machine with one owner.
//!
//! Events are method calls named after what happened (`on_compute`, `on_fetched`,
//! `on_executed` ...). Decisions go out as [`Effect`]s that the worker shell carries out:
//! messages to the scheduler, fetches from peers, executions, kills, and results to drop.
//! It never awaits, opens a socket, spawns a process or holds result bytes.

use crate::idmap::{IdMap, IdSet};
use crate::protocol::{ComputeTask, DepLocation, FromWorker, TaskError, TaskId, TaskSpec};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Function tasks queued to the function threads ahead of their slots, per thread. Deep
/// enough that a thread running tasks of microseconds finds its next one queued instead of
/// sleeping until the worker's loop wakes; queued tasks can still be retracted (stolen or
/// cancelled) until a thread claims them.
const FUNCTION_PREFETCH_PER_THREAD: usize = 64;

/// Something the shell must do.
#[derive(Debug, PartialEq)]
pub enum Effect {
    Send(FromWorker),
    /// Fetch the result `task` from the peer at `from`.
    Fetch {
        task: TaskId,
        from: String,
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
    effects: Vec<Effect>,
    /// Memory is near the limit: no new task starts until it falls.
    paused: bool,
    /// How many of `running` are commands (the rest are functions on function threads).
    running_commands: usize,
    /// Results being copied here from a retiring worker.
    replicating: IdSet<TaskId>,
    /// Tasks queued behind inputs this worker is computing: input -> the tasks waiting for it.
    behind: IdMap<TaskId, Vec<TaskId>>,
    /// Function tasks that started but whose `Started` is not sent yet: sent by
    /// [`WorkerCore::report_starts`] unless their `Finished` goes first and says it all.
    unreported_starts: IdSet<TaskId>,
}

impl WorkerCore {
    pub fn new(nthreads: usize) -> WorkerCore {
        WorkerCore {
            nthreads: nthreads.max(1),
            tasks: IdMap::default(),
            ready: BinaryHeap::new(),
            running: 0,
            held: IdMap::default(),
            fetching: IdMap::default(),
            next_seq: 0,
            effects: Vec::new(),
            paused: false,
            running_commands: 0,
            replicating: Default::default(),
            unreported_starts: Default::default(),
            behind: Default::default(),
        }
    }

    /// Everything decided since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub fn assigned(&self) -> usize {
        self.tasks.len()
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    pub fn on_compute(&mut self, ct: ComputeTask) {
        if self.tasks.contains_key(&ct.id) {
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
            if dep.holders.is_empty() && self.tasks.contains_key(&dep.id) {
                // Queued behind an input this worker is computing: it starts once that is done.
                self.behind.entry(dep.id).or_default().push(ct.id);
                continue;
            }
            if dep.holders.is_empty() {
                self.effects.push(Effect::Send(FromWorker::FetchFailed {
                    task: ct.id,
                    dep: dep.id,
                    holder: String::new(),
                    reason: "no worker holds it".into(),
                }));
                return;
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
            self.effects.push(Effect::Send(FromWorker::Replicated {
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
        self.effects.push(Effect::Fetch {
            task,
            from: f.holders[f.trying].clone(),
        });
        self.fetching.insert(task, f);
    }

    /// An input arrived (the shell stored it) or could not be fetched.
    pub fn on_fetched(&mut self, dep: TaskId, outcome: Result<u64, String>) {
        // A copy for a retiring worker is kept and reported, whatever local tasks do with it.
        let replicated = self.replicating.remove(&dep);
        if replicated {
            self.effects.push(Effect::Send(FromWorker::Replicated {
                task: dep,
                nbytes: outcome.as_ref().ok().copied(),
            }));
        }
        let Some(mut f) = self.fetching.remove(&dep) else {
            if outcome.is_ok() {
                self.effects.push(Effect::Drop(vec![dep]));
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
                    self.effects.push(Effect::Drop(vec![dep]));
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
                        self.effects.push(Effect::Send(FromWorker::FetchFailed {
                            task: w,
                            dep,
                            holder: holder.clone(),
                            reason: reason.clone(),
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
                    self.effects.push(Effect::Drop(vec![task]));
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
                self.effects
                    .push(Effect::Send(FromWorker::Finished { task, nbytes, fetched }));
                for w in self.behind.remove(&task).unwrap_or_default() {
                    self.input_arrived(w);
                }
            }
            Err(error) => {
                self.effects.push(Effect::Send(FromWorker::Failed { task, error }));
                self.drop_unused_inputs(&t.deps);
            }
        }
        self.start_ready();
    }

    pub fn on_release_data(&mut self, tasks: Vec<TaskId>) {
        let dropped: Vec<TaskId> = tasks.into_iter().filter(|t| self.held.remove(t).is_some()).collect();
        if !dropped.is_empty() {
            self.effects.push(Effect::Drop(dropped));
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
        self.effects.push(Effect::Send(FromWorker::Stolen { tasks: stolen }));
    }

    /// A client's scattered bytes were stored under `task`.
    pub fn on_put_data(&mut self, task: TaskId, nbytes: u64) {
        self.held.insert(task, Held { nbytes, reported: true });
        self.effects.push(Effect::Send(FromWorker::DataStored { task, nbytes }));
    }

    /// Drops an assigned task wherever it is; a running one is killed.
    fn forget(&mut self, task: TaskId) {
        let Some(t) = self.tasks.remove(&task) else {
            return;
        };
        self.unreported_starts.remove(&task);
        if matches!(t.phase, Phase::Running | Phase::Handed) {
            self.free_slot(t.function);
            self.effects.push(Effect::Kill(task));
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
            self.effects.push(Effect::Drop(dropped));
        }
    }

    /// Memory crossed the pause threshold (or fell back below it).
    pub fn set_paused(&mut self, paused: bool) {
        if self.paused != paused {
            self.paused = paused;
            self.start_ready();
        }
    }

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
                self.effects.push(Effect::Send(FromWorker::Started { task: id }));
            }
            self.effects.push(Effect::Execute {
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
                self.effects.push(Effect::Send(FromWorker::Started { task }));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TaskSpec;

    fn cmd(id: u64) -> ComputeTask {
        ComputeTask {
            spec: TaskSpec::Command(crate::protocol::CommandSpec {
                argv: vec!["true".into()],
                ..Default::default()
            }),
            ..ct(id, vec![])
        }
    }

    fn ct(id: u64, deps: Vec<(u64, &str)>) -> ComputeTask {
        ComputeTask {
            id: TaskId(id),
            key: format!("k{id}"),
            spec: TaskSpec::Function {
                name: "noop".into(),
                args: vec![],
            },
            deps: deps
                .into_iter()
                .map(|(d, h)| DepLocation {
                    id: TaskId(d),
                    key: format!("k{d}"),
                    nbytes: 1,
                    holders: if h.is_empty() { vec![] } else { vec![h.to_string()] },
                })
                .collect(),
            priority: 0,
        }
    }

    fn executes(effects: &[Effect]) -> Vec<TaskId> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Execute { task, .. } => Some(*task),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn runs_at_most_nthreads_commands_at_once_and_queues_the_rest() {
        let mut w = WorkerCore::new(2);
        for i in 0..5 {
            w.on_compute(cmd(i));
        }
        let e = w.take_effects();
        assert_eq!(executes(&e), vec![TaskId(0), TaskId(1)]);
        assert!(e.contains(&Effect::Send(FromWorker::Started { task: TaskId(0) })));
        w.on_executed(TaskId(0), Ok(3));
        let e = w.take_effects();
        assert!(e.contains(&Effect::Send(FromWorker::Finished {
            task: TaskId(0),
            nbytes: 3,
            fetched: vec![]
        })));
        assert_eq!(executes(&e), vec![TaskId(2)]);
    }

    #[test]
    fn functions_are_queued_to_their_threads_ahead_and_report_their_real_start() {
        let mut w = WorkerCore::new(1);
        let n = 1 + FUNCTION_PREFETCH_PER_THREAD as u64;
        for i in 0..n + 2 {
            w.on_compute(ct(i, vec![]));
        }
        let e = w.take_effects();
        // One slot and the prefetch queued ahead; nobody is told "started" before a thread
        // starts it.
        assert_eq!(executes(&e), (0..n).map(TaskId).collect::<Vec<_>>());
        assert!(!e.iter().any(|e| matches!(e, Effect::Send(FromWorker::Started { .. }))));
        w.on_function_started(TaskId(0));
        assert!(
            w.take_effects().is_empty(),
            "starts are reported once the events are handled"
        );
        w.report_starts();
        assert_eq!(
            w.take_effects(),
            vec![Effect::Send(FromWorker::Started { task: TaskId(0) })]
        );
        w.on_executed(TaskId(0), Ok(1));
        assert_eq!(executes(&w.take_effects()), vec![TaskId(n)]);
    }

    #[test]
    fn a_task_that_started_and_finished_in_one_batch_sends_only_finished() {
        let mut w = WorkerCore::new(1);
        w.on_compute(ct(1, vec![]));
        w.on_compute(ct(2, vec![]));
        w.take_effects();
        w.on_function_started(TaskId(1));
        w.on_executed(TaskId(1), Ok(0));
        w.on_function_started(TaskId(2));
        w.report_starts();
        let sent: Vec<Effect> = w
            .take_effects()
            .into_iter()
            .filter(|e| matches!(e, Effect::Send(_)))
            .collect();
        assert_eq!(
            sent,
            vec![
                Effect::Send(FromWorker::Finished {
                    task: TaskId(1),
                    nbytes: 0,
                    fetched: vec![]
                }),
                Effect::Send(FromWorker::Started { task: TaskId(2) }),
            ]
        );
    }

    #[test]
    fn steal_takes_back_queued_functions_unless_a_thread_claimed_them() {
        let mut w = WorkerCore::new(1);
        for i in 1..=3 {
            w.on_compute(ct(i, vec![]));
        }
        w.take_effects();
        // Task 1 is claimed by a thread (its start event not handled yet), 2 and 3 are queued.
        let mut asked = Vec::new();
        w.on_steal(vec![TaskId(1), TaskId(2), TaskId(3)], |t| {
            asked.push(t);
            t != TaskId(1)
        });
        assert_eq!(asked, vec![TaskId(1), TaskId(2), TaskId(3)]);
        let e = w.take_effects();
        assert!(e.contains(&Effect::Send(FromWorker::Stolen {
            tasks: vec![TaskId(2), TaskId(3)]
        })));
        assert_eq!(w.assigned(), 1);
        // The claimed one runs to the end and is reported.
        w.on_function_started(TaskId(1));
        w.on_executed(TaskId(1), Ok(2));
        assert!(w.take_effects().contains(&Effect::Send(FromWorker::Finished {
            task: TaskId(1),
            nbytes: 2,
            fetched: vec![]
        })));
    }

    #[test]
    fn no_function_is_queued_ahead_while_a_command_holds_a_slot() {
        let mut w = WorkerCore::new(1);
        w.on_compute(cmd(0));
        w.on_compute(ct(1, vec![]));
        assert_eq!(executes(&w.take_effects()), vec![TaskId(0)]);
        w.on_executed(TaskId(0), Ok(1));
        assert_eq!(executes(&w.take_effects()), vec![TaskId(1)]);
    }

    #[test]
    fn fetches_inputs_then_reports_them_with_the_result() {
        let mut w = WorkerCore::new(1);
        w.on_compute(ct(5, vec![(1, "peer:1"), (2, "peer:2")]));
        let e = w.take_effects();
        assert_eq!(e.iter().filter(|e| matches!(e, Effect::Fetch { .. })).count(), 2);
        w.on_fetched(TaskId(1), Ok(10));
        assert!(executes(&w.take_effects()).is_empty());
        w.on_fetched(TaskId(2), Ok(20));
        assert_eq!(executes(&w.take_effects()), vec![TaskId(5)]);
        w.on_executed(TaskId(5), Ok(1));
        assert!(w.take_effects().contains(&Effect::Send(FromWorker::Finished {
            task: TaskId(5),
            nbytes: 1,
            fetched: vec![TaskId(1), TaskId(2)]
        })));
    }

    #[test]
    fn failed_fetch_gives_the_task_back_and_drops_unreported_inputs() {
        let mut w = WorkerCore::new(1);
        w.on_compute(ct(5, vec![(1, "a"), (2, "b")]));
        w.take_effects();
        w.on_fetched(TaskId(1), Ok(10));
        w.on_fetched(TaskId(2), Err("connection refused".into()));
        let e = w.take_effects();
        assert!(e.iter().any(|e| matches!(
            e,
            Effect::Send(FromWorker::FetchFailed {
                task: TaskId(5),
                dep: TaskId(2),
                ..
            })
        )));
        assert!(e.contains(&Effect::Drop(vec![TaskId(1)])));
        assert_eq!(w.assigned(), 0);
        assert_eq!(w.held(), 0);
    }

    #[test]
    fn cancel_kills_running_and_frees_the_slot() {
        let mut w = WorkerCore::new(1);
        w.on_compute(cmd(1));
        w.on_compute(cmd(2));
        w.take_effects();
        w.on_cancel(vec![TaskId(1)]);
        let e = w.take_effects();
        assert!(e.contains(&Effect::Kill(TaskId(1))));
        assert_eq!(executes(&e), vec![TaskId(2)]);
        // A late result of the killed run is dropped, not reported.
        w.on_executed(TaskId(1), Ok(5));
        assert_eq!(w.take_effects(), vec![Effect::Drop(vec![TaskId(1)])]);
    }

    #[test]
    fn steal_gives_back_only_unstarted_tasks() {
        let mut w = WorkerCore::new(1);
        w.on_compute(cmd(1));
        w.on_compute(cmd(2));
        w.take_effects();
        w.on_steal(vec![TaskId(1), TaskId(2)], |_| {
            unreachable!("commands are never queued to threads")
        });
        assert_eq!(
            w.take_effects(),
            vec![Effect::Send(FromWorker::Stolen { tasks: vec![TaskId(2)] })]
        );
    }

    #[test]
    fn a_task_queued_behind_an_input_computing_here_starts_when_it_is_done() {
        let mut w = WorkerCore::new(1);
        w.on_compute(cmd(1));
        // Its input is being computed here: no holder to fetch from, no fetch.
        w.on_compute(ComputeTask {
            spec: cmd(2).spec,
            ..ct(2, vec![(1, "")])
        });
        let e = w.take_effects();
        assert_eq!(executes(&e), vec![TaskId(1)]);
        assert!(!e
            .iter()
            .any(|e| matches!(e, Effect::Fetch { .. } | Effect::Send(FromWorker::FetchFailed { .. }))));
        w.on_executed(TaskId(1), Ok(4));
        assert_eq!(executes(&w.take_effects()), vec![TaskId(2)]);
        w.on_executed(TaskId(2), Ok(1));
        assert!(w.take_effects().contains(&Effect::Send(FromWorker::Finished {
            task: TaskId(2),
            nbytes: 1,
            fetched: vec![]
        })));
    }

    #[test]
    fn a_cancelled_task_queued_behind_an_input_is_not_started_by_it() {
        let mut w = WorkerCore::new(1);
        w.on_compute(cmd(1));
        w.on_compute(ct(2, vec![(1, "")]));
        w.take_effects();
        w.on_cancel(vec![TaskId(2)]);
        w.on_executed(TaskId(1), Ok(4));
        assert!(executes(&w.take_effects()).is_empty());
        assert_eq!(w.assigned(), 0);
    }
}
