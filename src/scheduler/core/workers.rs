//! Workers: what the scheduler keeps about each, the load index placement reads, and what
//! their messages do (a task started, finished, failed; a fetch failed; a worker leaving).

use super::task::{Task, TaskState};
use super::{Core, Outgoing};
use crate::idmap::{IdMap, IdSet};
use crate::protocol::{
    AttemptId, FetchFailure, FromWorker, TaskError, TaskId, TaskOptions, ToClient, ToWorker, WorkerId, WorkerInfo,
};
use std::collections::BTreeSet;
use std::time::Instant;

/// Everything the scheduler keeps about one worker.
#[derive(Debug)]
pub(super) struct WorkerState {
    pub(super) info: WorkerInfo,
    /// Tasks assigned to it (queued or running).
    pub(super) processing: IdSet<TaskId>,
    /// How many of `processing` it said it started.
    pub(super) running: usize,
    /// Results it holds.
    pub(super) has_data: IdSet<TaskId>,
    pub(super) stored_bytes: u64,
    /// Resources not held by its assigned tasks.
    pub(super) resources_free: Vec<(String, f64)>,
    pub(super) last_seen: Instant,
    pub(super) memory: u64,
    /// It said it is leaving on purpose: it gets no new tasks, and its death is no crash.
    pub(super) leaving: bool,
    /// Tasks processing here whose dependents could have been queued behind them but for
    /// the worker's room, each with the first dependent not looked at yet: tried again from
    /// there when a task here finishes.
    pub(super) queue_later: Vec<(TaskId, usize)>,
    /// How many messages were sent to it: each message's number in its stream.
    pub(super) sent: u64,
    /// The number of the latest `ReleaseData` of each task sent to it that it may not have
    /// seen yet (pruned as its reports say how far it read).
    pub(super) releasing: IdMap<TaskId, u64>,
    /// When `releasing` reaches this size it is pruned; then twice what is left, so a
    /// burst of releases in flight costs each report nothing (pruning is amortized).
    pub(super) releasing_prune_at: usize,
}

/// Whether `resources` hold every amount the options need.
fn has_resources(resources: &[(String, f64)], options: &TaskOptions) -> bool {
    options
        .resources
        .iter()
        .all(|(name, amount)| resources.iter().any(|(n, have)| n == name && *have + 1e-9 >= *amount))
}

impl WorkerState {
    pub(super) fn capacity(&self, queue_per_thread: u32) -> usize {
        let n = self.info.nthreads.max(1) as usize;
        n + n * queue_per_thread as usize
    }

    /// Whether it may be assigned one more task.
    pub(super) fn has_room(&self, queue_per_thread: u32) -> bool {
        self.processing.len() < self.capacity(queue_per_thread)
    }

    pub(super) fn load(&self) -> f64 {
        self.processing.len() as f64 / self.info.nthreads.max(1) as f64
    }

    /// Whether a task with these options may run here now: it may run on this worker, and
    /// the resources it needs are free.
    pub(super) fn fits(&self, options: &TaskOptions) -> bool {
        self.may_run(options) && has_resources(&self.resources_free, options)
    }

    /// Whether a task with these options could ever run here: it may run on this worker,
    /// and the worker has the resources it needs, free or not.
    pub(super) fn could_run(&self, options: &TaskOptions) -> bool {
        self.may_run(options) && has_resources(&self.info.resources, options)
    }

    /// Whether this worker is among those the options allow (all when they name none).
    pub(super) fn may_run(&self, options: &TaskOptions) -> bool {
        options.workers.is_empty()
            || options
                .workers
                .iter()
                .any(|w| *w == self.info.name || *w == self.info.peer_address || *w == self.info.host)
    }

    pub(super) fn take_resources(&mut self, options: &TaskOptions, sign: f64) {
        for (name, amount) in &options.resources {
            if let Some((_, free)) = self.resources_free.iter_mut().find(|(n, _)| n == name) {
                *free -= sign * amount;
            }
        }
    }
}

/// A worker's load (assigned tasks per thread), ordered for the placement index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Load(pub(super) f64);

impl Eq for Load {}
impl PartialOrd for Load {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Load {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Changes `ws` (worker `w`) through `change`, keeping its place in the placement index in
/// step with its load.
pub(super) fn change_load<R>(
    by_load: &mut BTreeSet<(Load, WorkerId)>,
    w: WorkerId,
    ws: &mut WorkerState,
    change: impl FnOnce(&mut WorkerState) -> R,
) -> R {
    let before = Load(ws.load());
    let r = change(ws);
    let after = Load(ws.load());
    if !ws.leaving && after != before {
        by_load.remove(&(before, w));
        by_load.insert((after, w));
    }
    r
}

impl Core {
    /// Sends `msg` to worker `w`, numbering it in `w`'s stream (see
    /// [`Core::release_on_its_way`]).
    pub(super) fn send(&mut self, w: WorkerId, msg: ToWorker) {
        if let Some(ws) = self.workers.get_mut(&w) {
            ws.sent += 1;
            if let ToWorker::ReleaseData { tasks } = &msg {
                for t in tasks {
                    ws.releasing.insert(*t, ws.sent);
                }
            }
        }
        self.outbox.push(Outgoing::Worker(w, msg));
    }

    /// Whether a `ReleaseData` of `t` sent to `w` is still on its way to it, given that `w`
    /// had read `seen` messages when it reported holding `t`: that release will drop the copy
    /// the report is about, so the report must not make `w` a holder. Releases `w` has read
    /// are forgotten here, a batch at a time.
    pub(super) fn release_on_its_way(&mut self, w: WorkerId, t: TaskId, seen: u64) -> bool {
        let Some(ws) = self.workers.get_mut(&w) else {
            return false;
        };
        if ws.releasing.len() >= ws.releasing_prune_at {
            ws.releasing.retain(|_, sent| *sent > seen);
            ws.releasing_prune_at = (ws.releasing.len() * 2).max(64);
        }
        ws.releasing.get(&t).is_some_and(|sent| *sent > seen)
    }

    pub fn on_worker_joined(&mut self, id: WorkerId, info: WorkerInfo, now: Instant) {
        self.at(now);
        log::info!(
            "worker {} ({}) joined at {} with {}",
            info.name,
            id,
            info.peer_address,
            crate::units::plural(u64::from(info.nthreads), "thread")
        );
        let name = info.name.clone();
        let ws = WorkerState {
            resources_free: info.resources.clone(),
            info,
            processing: IdSet::default(),
            running: 0,
            has_data: IdSet::default(),
            stored_bytes: 0,
            last_seen: now,
            memory: 0,
            leaving: false,
            queue_later: Vec::new(),
            sent: 0,
            releasing: IdMap::default(),
            releasing_prune_at: 64,
        };
        self.by_load.insert((Load(ws.load()), id));
        self.workers.insert(id, ws);
        self.send(
            id,
            ToWorker::Registered {
                worker: id,
                heartbeat_ms: self.config.heartbeat_interval.as_millis() as u64,
            },
        );
        self.restart_on_worker_joined(&name);
        self.stall_on_worker_joined();
        self.unrunnable_on_worker_joined(id);
        self.replicas_on_worker_joined();
        self.want_balance();
    }

    pub fn on_worker_message(&mut self, id: WorkerId, msg: FromWorker, now: Instant) {
        self.at(now);
        let Some(ws) = self.workers.get_mut(&id) else {
            return;
        };
        ws.last_seen = now;
        match msg {
            FromWorker::Register(_) => log::warn!("worker {id} registered twice; ignored"),
            FromWorker::Started { task, attempt } => self.on_task_started(id, task, attempt),
            FromWorker::Finished {
                task,
                attempt,
                nbytes,
                fetched,
                seen,
            } => self.on_task_finished(id, (task, attempt), nbytes, fetched, seen),
            FromWorker::Failed { task, attempt, error } => self.on_task_failed(id, task, attempt, error),
            FromWorker::FetchFailed {
                task,
                attempt,
                dep,
                holder,
                failure,
            } => self.on_fetch_failed(id, (task, attempt), dep, &holder, failure),
            FromWorker::Stolen { tasks } => self.on_stolen(id, tasks),
            FromWorker::DataStored { task, nbytes } => self.on_data_stored(id, task, nbytes),
            FromWorker::Heartbeat { memory } => {
                if let Some(ws) = self.workers.get_mut(&id) {
                    ws.memory = memory;
                }
            }
            FromWorker::Leaving { reason } => {
                log::info!("worker {id} is leaving: {reason}");
                self.set_leaving(id);
            }
            FromWorker::Retire { reason } => self.on_retire(id, &reason),
            FromWorker::Replicated { task, nbytes, seen } => self.on_replicated(id, task, nbytes, seen),
        }
        self.want_placement();
        let retiring: Vec<WorkerId> = self.retiring.keys().copied().collect();
        for w in retiring {
            self.retire_step(w);
        }
    }

    pub(super) fn on_task_started(&mut self, w: WorkerId, t: TaskId, attempt: AttemptId) {
        if !self.is_assignment(t, w, attempt) {
            return;
        }
        if let Some(TaskState::Processing { started, .. }) = self.tasks.get_mut(&t).map(|task| &mut task.state) {
            if !*started {
                *started = true;
                self.workers.get_mut(&w).expect("sender is known").running += 1;
            }
        }
    }

    pub(super) fn on_task_finished(
        &mut self,
        w: WorkerId,
        (t, attempt): (TaskId, AttemptId),
        nbytes: u64,
        fetched: Vec<TaskId>,
        seen: u64,
    ) {
        for f in fetched {
            if !self.release_on_its_way(w, f, seen) {
                self.on_result_held(w, f, None, None);
            }
        }
        // An answer to the current assignment was made after the worker read its `Compute`,
        // so after any release sent before it (and while the task is assigned there, no
        // release of it is sent there).
        if self.is_assignment(t, w, attempt) || !self.release_on_its_way(w, t, seen) {
            self.on_result_held(w, t, Some(attempt), Some(nbytes));
        }
    }

    /// `w` holds a result of `t`: it computed it (answering assignment `answers`), or fetched
    /// a copy (`answers` is `None`). Whatever the scheduler decided since, the result is
    /// valid, so it is kept wherever `t` still lacks one: a task being computed elsewhere or
    /// again is stopped there, a waiting or ready one is done. Only a result nothing needs
    /// any more is dropped, and a worker is never told to drop a result while `t` is
    /// assigned to it (a `ReleaseData` crossing its new `Finished` would drop the new one).
    /// `nbytes` is `None` for a copy: the size the scheduler knew then.
    pub(super) fn on_result_held(&mut self, w: WorkerId, t: TaskId, answers: Option<AttemptId>, nbytes: Option<u64>) {
        let Some(task) = self.tasks.get(&t) else {
            self.send(w, ToWorker::ReleaseData { tasks: vec![t] });
            return;
        };
        let nbytes = nbytes.unwrap_or(task.nbytes);
        match task.state {
            TaskState::Memory => {
                self.add_holder(t, w);
                self.maybe_release(t);
            }
            TaskState::Processing { worker, attempt, .. } if !task.scattered() => {
                let mut queued = Vec::new();
                if worker != w || answers != Some(attempt) {
                    // Computing elsewhere, or again here: stop that. What was queued behind
                    // it there waits for nothing now and is placed anew.
                    queued = self.unqueue_dependents(t, worker);
                    self.send(worker, ToWorker::Cancel { tasks: vec![t] });
                }
                self.unassign(worker, t);
                self.result_arrived(w, t, nbytes, queued);
                self.queue_dependents_later(worker);
                if self.workers.get(&worker).is_some_and(|ws| ws.processing.is_empty()) {
                    self.want_balance();
                }
            }
            TaskState::Waiting | TaskState::Ready if !task.scattered() => self.result_arrived(w, t, nbytes, Vec::new()),
            _ => self.send(w, ToWorker::ReleaseData { tasks: vec![t] }),
        }
    }

    /// `t`, assigned nowhere, has its result on `w`: it is in memory, clients that want it
    /// are told, its dependents wake (and `queued`, taken back from behind it, are computed
    /// again), and inputs nothing needs any more are released.
    fn result_arrived(&mut self, w: WorkerId, t: TaskId, nbytes: u64, queued: Vec<TaskId>) {
        self.store_result(w, t, nbytes);
        self.replicate(t);
        let deps = self.tasks[&t].deps.clone();
        self.wake_dependents(t);
        for d in queued {
            self.compute(d);
        }
        for d in deps {
            self.maybe_release(d);
        }
        self.maybe_release(t);
    }

    /// `t`'s result is now in memory: its waiting dependents have one input less to wait for.
    pub(super) fn wake_dependents(&mut self, t: TaskId) {
        self.visited(self.tasks[&t].dependents.len());
        for d in self.tasks[&t].dependents.clone() {
            let dt = self.tasks.get_mut(&d).expect("dependents are known");
            match dt.state {
                TaskState::Waiting => {
                    dt.waiting_on -= 1;
                    if dt.waiting_on == 0 {
                        self.make_ready(d);
                    } else {
                        self.queue_behind_remaining_inputs(d);
                    }
                }
                // Queued behind its inputs on their worker: it runs there once they are done.
                TaskState::Processing { .. } if dt.waiting_on > 0 => dt.waiting_on -= 1,
                _ => {}
            }
        }
    }

    pub(super) fn on_task_failed(&mut self, w: WorkerId, t: TaskId, attempt: AttemptId, error: TaskError) {
        if !self.is_assignment(t, w, attempt) {
            return;
        }
        self.unassign(w, t);
        let task = self.tasks.get_mut(&t).expect("checked above");
        if task.extras().retries_left > 0 {
            task.extras_mut().retries_left -= 1;
            log::info!(
                "task {} failed ({}); retrying, {} left",
                task.key,
                error,
                crate::units::plural(u64::from(task.extras().retries_left), "retry")
            );
            self.compute_again(t, w);
        } else {
            // Its worker reported it: no need to tell it to stop.
            self.set_state(t, TaskState::Released);
            self.set_erred(t, error);
        }
    }

    /// `w` could not have input `dep` of `task` from `holder`. What that says of the holder
    /// holds whichever assignment it answers: one that said it does not hold `dep` is no
    /// holder, and one that could not be reached is not listed for it any more (and told to
    /// drop its copy), unless it holds the only copy of scattered data, which cannot be
    /// computed again: that waits for the holder to answer or to be declared lost. The task
    /// is placed again if this answers its current assignment.
    pub(super) fn on_fetch_failed(
        &mut self,
        w: WorkerId,
        (t, attempt): (TaskId, AttemptId),
        dep: TaskId,
        holder: &str,
        failure: FetchFailure,
    ) {
        // Expected, and not worth a warning, when the answer is to an old assignment or the
        // input erred (its dependent, queued behind it, could not have it).
        let expected = !self.is_assignment(t, w, attempt)
            || self
                .tasks
                .get(&dep)
                .is_none_or(|dt| matches!(dt.state, TaskState::Erred(_)));
        if expected {
            log::debug!("worker {w} could not have {dep} from {holder:?} for {t}: {failure}");
        } else {
            log::warn!("worker {w} could not have {dep} from {holder:?} for {t}: {failure}");
        }
        // An empty holder is the sender itself (its store lost the input) or nobody.
        let holder_id = if holder.is_empty() {
            Some(w)
        } else {
            self.workers
                .iter()
                .find(|(_, ws)| ws.info.peer_address == holder)
                .map(|(id, _)| *id)
        };
        if let (Some(h), Some(dt)) = (holder_id, self.tasks.get(&dep)) {
            let only_copy = *dt.who_has == [h];
            let keep = only_copy && dt.scattered() && matches!(failure, FetchFailure::Transfer(_));
            if dt.who_has.contains(&h) && !keep {
                self.drop_holder(dep, h);
                if matches!(failure, FetchFailure::Transfer(_)) {
                    self.send(h, ToWorker::ReleaseData { tasks: vec![dep] });
                }
                let dt = &self.tasks[&dep];
                if dt.who_has.is_empty() && dt.state == TaskState::Memory {
                    let name = self.workers[&h].info.name.clone();
                    self.on_data_lost(vec![dep], &name);
                } else {
                    self.replicate(dep);
                }
            }
        }
        if self.is_assignment(t, w, attempt) {
            self.unassign(w, t);
            self.compute_again(t, w);
        }
    }

    /// `h` no longer holds `t`'s result, as far as the scheduler knows.
    pub(super) fn drop_holder(&mut self, t: TaskId, h: WorkerId) {
        let task = self.tasks.get_mut(&t).expect("drop_holder of a known task");
        if task.who_has.remove_item(h) {
            let ws = self.workers.get_mut(&h).expect("holders are known workers");
            ws.has_data.remove(&t);
            ws.stored_bytes -= task.nbytes;
        }
    }

    /// `t`, assigned nowhere, now has its result on `w` alone: clients that want it are told.
    pub(super) fn store_result(&mut self, w: WorkerId, t: TaskId, nbytes: u64) {
        self.set_state(t, TaskState::Memory);
        let task = self.tasks.get_mut(&t).expect("store_result of a known task");
        task.nbytes = nbytes;
        task.who_has.clear();
        self.add_holder(t, w);
        let task = &self.tasks[&t];
        for c in &task.wanted_by {
            self.outbox.push(Outgoing::Client(
                *c,
                ToClient::KeyFinished {
                    key: task.key.to_string(),
                    nbytes,
                },
            ));
        }
    }

    /// Takes `t` off `w`'s list and gives back what it held there.
    pub(super) fn unassign(&mut self, w: WorkerId, t: TaskId) {
        self.stealing.remove(&t);
        let task = &self.tasks[&t];
        let started = matches!(task.state, TaskState::Processing { started: true, .. });
        let Some(ws) = self.workers.get_mut(&w) else { return };
        change_load(&mut self.by_load, w, ws, |ws| {
            if ws.processing.remove(&t) {
                ws.take_resources(task.options(), -1.0);
                if started {
                    ws.running -= 1;
                }
            }
        });
    }

    /// Whether `attempt` is `t`'s current assignment, on `w`.
    pub(super) fn is_assignment(&self, t: TaskId, w: WorkerId, attempt: AttemptId) -> bool {
        matches!(
            self.tasks.get(&t),
            Some(Task { state: TaskState::Processing { worker, attempt: a, .. }, .. }) if *worker == w && *a == attempt
        )
    }

    pub(super) fn processing_on(&self, t: TaskId, w: WorkerId) -> bool {
        matches!(self.tasks.get(&t), Some(Task { state: TaskState::Processing { worker, .. }, .. }) if *worker == w)
    }

    pub(super) fn add_holder(&mut self, t: TaskId, w: WorkerId) {
        let task = self.tasks.get_mut(&t).expect("add_holder of a known task");
        if !task.who_has.contains(&w) {
            task.who_has.push(w);
            let ws = self.workers.get_mut(&w).expect("add_holder of a known worker");
            ws.has_data.insert(t);
            ws.stored_bytes += task.nbytes;
        }
    }

    /// `w` takes no new tasks: it leaves the placement index.
    pub(super) fn set_leaving(&mut self, w: WorkerId) {
        if let Some(ws) = self.workers.get_mut(&w) {
            if !ws.leaving {
                ws.leaving = true;
                self.by_load.remove(&(Load(ws.load()), w));
                self.unrunnable_on_worker_left(self.clock);
            }
        }
    }
}
