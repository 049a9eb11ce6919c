//! The placement pass: which ready task goes to which worker, which waiting tasks are queued
//! behind their inputs on the worker computing them, and which queued tasks move from busy
//! workers to idle ones.
//!
//! Transitions never call the pass: they set [`PlacementDue`], and the pass runs once when
//! the batch of events ends ([`Core::take_outbox`]), so one batch places each task once.
//! The two exceptions are decisions about one task that its event already made: a stolen
//! task handed to its thief, and a waiting task queued behind inputs that are computing on
//! one worker.

use super::task::{Task, TaskState};
use super::workers::change_load;
use super::Core;
use crate::idmap::{IdMap, IdSet};
use crate::protocol::{AttemptId, ComputeTask, DepLocation, TaskId, ToWorker, WorkerId};

/// A waiting task with more inputs than this is not queued behind them on their worker:
/// checking its inputs on every assignment of one of them would cost too much, and such a
/// task gathers from many workers anyway.
const MAX_QUEUED_BEHIND_DEPS: usize = 16;

/// A waiting task is queued behind inputs computing on a worker only if the inputs it would
/// fetch from other workers total at most this: past it, waiting to place it where most of
/// its input bytes are is worth the round trip.
const QUEUE_BEHIND_MAX_FETCH: u64 = 64 * 1024;

/// How many of the most loaded workers one `balance` looks at for tasks to steal.
const VICTIMS_PER_BALANCE: usize = 8;

/// What the placement pass has to do when the batch ends.
#[derive(Debug, Default)]
pub(super) struct PlacementDue {
    /// Ready tasks may have a worker with room: place them.
    pub(super) place: bool,
    /// Workers may have become idle while others have queues: move queued tasks as well.
    pub(super) balance: bool,
}

/// Why a ready task could not be placed right now.
enum Placement {
    On(WorkerId),
    /// Every worker is full: stop placing until one has room.
    NoRoom,
    /// Workers have room, but none this task may run on.
    NoneFits,
}

impl Core {
    /// Asks for ready tasks to be placed when the batch ends.
    pub(super) fn want_placement(&mut self) {
        self.placement_due.place = true;
    }

    /// Asks for ready tasks to be placed and queues to be balanced when the batch ends.
    pub(super) fn want_balance(&mut self) {
        self.placement_due.balance = true;
    }

    /// The placement pass: what the batch asked for, once.
    pub(super) fn run_placement(&mut self) {
        let due = std::mem::take(&mut self.placement_due);
        if due.place || due.balance {
            self.schedule();
        }
        if due.balance {
            self.balance();
        }
    }

    /// Places ready tasks on workers while any has room.
    fn schedule(&mut self) {
        let mut blocked = Vec::new();
        while let Some(entry) = self.ready.pop() {
            let t = entry.2;
            if !matches!(self.tasks.get(&t), Some(task) if task.state == TaskState::Ready) {
                continue;
            }
            match self.choose_worker(t) {
                Placement::On(w) => self.place(t, w),
                Placement::NoneFits => {
                    self.check_runnable(t);
                    blocked.push(entry);
                }
                Placement::NoRoom => {
                    blocked.push(entry);
                    break;
                }
            }
        }
        self.ready.extend(blocked);
    }

    /// Among the workers with room that may run `t`: the one holding most of its input
    /// bytes, then the least loaded.
    fn choose_worker(&self, t: TaskId) -> Placement {
        let task = &self.tasks[&t];
        let q = self.config.queue_per_thread;
        let Some(&(_, least)) = self.by_load.first() else {
            return Placement::NoRoom;
        };
        if !self.workers[&least].has_room(q) {
            // The least loaded worker is full, so every worker is.
            return Placement::NoRoom;
        }
        // What each holder of its inputs holds of them, from one pass over the inputs' holders
        // (a look at every input for each holder would cost inputs times holders).
        let held = self.held_bytes(task);
        if task.options().workers.is_empty() && task.options().resources.is_empty() {
            // Any worker may run it: the holders of its inputs compete on bytes held, and
            // the rest on load alone, where the least loaded one wins.
            let mut best: Option<(WorkerId, u64, f64)> = None;
            for (id, held) in held {
                let ws = &self.workers[&id];
                if ws.leaving || !ws.has_room(q) {
                    continue;
                }
                let load = ws.load();
                if best.is_none_or(|(_, bh, bl)| held > bh || (held == bh && load < bl)) {
                    best = Some((id, held, load));
                }
            }
            return Placement::On(best.map_or(least, |(w, _, _)| w));
        }
        let held: IdMap<WorkerId, u64> = held.into_iter().collect();
        let mut any_room = false;
        let mut best: Option<(WorkerId, u64, f64)> = None;
        for (id, ws) in &self.workers {
            if ws.leaving || !ws.has_room(self.config.queue_per_thread) {
                continue;
            }
            any_room = true;
            if !ws.fits(task.options()) {
                continue;
            }
            let held = held.get(id).copied().unwrap_or(0);
            let load = ws.load();
            let better = match best {
                None => true,
                Some((_, bh, bl)) => held > bh || (held == bh && load < bl),
            };
            if better {
                best = Some((*id, held, load));
            }
        }
        match best {
            Some((w, _, _)) => Placement::On(w),
            None if any_room => Placement::NoneFits,
            None => Placement::NoRoom,
        }
    }

    /// How many of `task`'s input bytes each worker holding any of them holds (an empty input
    /// counts as one byte), by worker id, from one pass over the inputs and their holders.
    fn held_bytes(&self, task: &Task) -> Vec<(WorkerId, u64)> {
        self.visited(task.deps.len());
        let mut copies: Vec<(WorkerId, u64)> = task
            .deps
            .iter()
            .flat_map(|d| {
                let dt = &self.tasks[d];
                dt.who_has.iter().map(|w| (*w, dt.nbytes.max(1)))
            })
            .collect();
        copies.sort_unstable_by_key(|(w, _)| *w);
        let mut held: Vec<(WorkerId, u64)> = Vec::new();
        for (w, bytes) in copies {
            match held.last_mut() {
                Some((last, sum)) if *last == w => *sum += bytes,
                _ => held.push((w, bytes)),
            }
        }
        held
    }

    /// Assigns `t` to `w` and queues behind it there the dependents that may wait for it.
    pub(super) fn place(&mut self, t: TaskId, w: WorkerId) {
        self.assign(t, w);
        self.queue_dependents(t, w);
    }

    /// Assigns `t` to `w`: `w` is sent its `Compute`.
    fn assign(&mut self, t: TaskId, w: WorkerId) {
        let attempt = self.new_attempt();
        self.set_state(
            t,
            TaskState::Processing {
                worker: w,
                started: false,
                attempt,
            },
        );
        let task = &self.tasks[&t];
        let ws = self.workers.get_mut(&w).expect("assign to a known worker");
        change_load(&mut self.by_load, w, ws, |ws| {
            ws.processing.insert(t);
            ws.take_resources(task.options(), 1.0);
        });
        let task = &self.tasks[&t];
        let deps = task
            .deps
            .iter()
            .map(|d| {
                let dt = &self.tasks[d];
                DepLocation {
                    id: *d,
                    key: dt.key.to_string(),
                    nbytes: dt.nbytes,
                    holders: dt
                        .who_has
                        .iter()
                        .map(|h| self.workers[h].info.peer_address.clone())
                        .collect(),
                }
            })
            .collect();
        self.send(
            w,
            ToWorker::Compute(Box::new(ComputeTask {
                id: t,
                attempt,
                key: task.key.to_string(),
                spec: task.spec.to_wire(),
                deps,
                priority: task.priority,
            })),
        );
    }

    /// Queues on `w`, behind `t`, the dependents of `t` whose inputs are all in memory or
    /// processing on `w`: `w` starts each as soon as its inputs are done there, without a
    /// round trip to the scheduler. A chain of such tasks is queued as deep as `w` has room;
    /// the rest follow as its tasks finish (`queue_later`).
    fn queue_dependents(&mut self, t: TaskId, w: WorkerId) {
        self.queue_dependents_from(t, 0, w);
    }

    /// [`Core::queue_dependents`], starting at `t`'s dependent number `from`: where an
    /// earlier call stopped for want of room. Each dependent of `t` is looked at once while
    /// `t` is processing on `w`, however many tasks finish there meanwhile (a task with
    /// 100,000 dependents would otherwise have them all looked at again on each). A
    /// dependent moved below `from` (the list reorders when one is forgotten) is not queued
    /// here; it is placed as usual once its inputs are done.
    fn queue_dependents_from(&mut self, t: TaskId, from: usize, w: WorkerId) {
        let mut stack = vec![(t, from)];
        while let Some((t, from)) = stack.pop() {
            // By index, without copying the list: a task may have many dependents.
            let mut i = from;
            while let Some(&d) = self.tasks[&t].dependents.get(i) {
                self.visited(1);
                if !self.may_queue_behind(d, w) {
                    i += 1;
                    continue;
                }
                if !self.workers[&w].has_room(self.config.queue_per_thread) {
                    let ws = self.workers.get_mut(&w).expect("checked");
                    for (t, from) in stack.into_iter().chain([(t, i)]) {
                        match ws.queue_later.iter_mut().find(|(x, _)| *x == t) {
                            Some((_, at)) => *at = (*at).min(from),
                            None => ws.queue_later.push((t, from)),
                        }
                    }
                    return;
                }
                self.assign(d, w);
                stack.push((d, 0));
                i += 1;
            }
        }
    }

    /// Queues waiting `d` on the worker computing its remaining inputs, if one worker computes
    /// them all and has room. Runs each time one of `d`'s inputs is done, so a task over more
    /// inputs than may queue behind them is turned away before any of them is looked at.
    pub(super) fn queue_behind_remaining_inputs(&mut self, d: TaskId) {
        if !self.may_have_inputs_queued(d) {
            return;
        }
        let deps = &self.tasks[&d].deps;
        self.visited(deps.len());
        let computing_on = deps.iter().find_map(|x| match self.tasks[x].state {
            TaskState::Processing { worker, .. } => Some(worker),
            _ => None,
        });
        let Some(w) = computing_on else { return };
        if self.workers[&w].has_room(self.config.queue_per_thread) && self.may_queue_behind(d, w) {
            self.place(d, w);
        }
    }

    /// What may be known of whether `d` may be queued behind its inputs without looking at
    /// them: it must be waiting, with few enough inputs.
    fn may_have_inputs_queued(&self, d: TaskId) -> bool {
        let task = &self.tasks[&d];
        self.config.queue_behind_inputs && task.state == TaskState::Waiting && task.deps.len() <= MAX_QUEUED_BEHIND_DEPS
    }

    /// Whether waiting `d` may be queued on `w` behind inputs processing there. Its inputs
    /// are looked at last, and only for a task with at most `MAX_QUEUED_BEHIND_DEPS` of them.
    fn may_queue_behind(&self, d: TaskId, w: WorkerId) -> bool {
        if !self.may_have_inputs_queued(d) {
            return false;
        }
        let task = &self.tasks[&d];
        let ws = &self.workers[&w];
        if ws.leaving || !ws.fits(task.options()) {
            return false;
        }
        self.visited(2 * task.deps.len());
        task.deps.iter().all(|x| match self.tasks[x].state {
            TaskState::Memory => true,
            // Not behind an input being stolen: it may leave, and the task queued behind
            // it would find its input gone.
            TaskState::Processing { worker, .. } => worker == w && !self.stealing.contains_key(x),
            _ => false,
        }) && task
            .deps
            .iter()
            .filter(|x| self.tasks[x].state == TaskState::Memory && !ws.has_data.contains(x))
            .map(|x| self.tasks[x].nbytes)
            .sum::<u64>()
            <= QUEUE_BEHIND_MAX_FETCH
    }

    /// Whether `d` is on `w` queued behind inputs still computing there.
    pub(super) fn queued_behind_on(&self, d: TaskId, w: WorkerId) -> bool {
        self.processing_on(d, w) && self.tasks[&d].waiting_on > 0
    }

    /// The tasks queued on `w` behind `t`: looked for among `t`'s dependents, or among the
    /// tasks on `w` when those are fewer (an input with 100,000 dependents stopping on a
    /// worker with a queue of 64 looks at 64 tasks), in submission order then.
    fn queued_behind(&self, t: TaskId, w: WorkerId) -> Vec<TaskId> {
        let dependents = &self.tasks[&t].dependents;
        let Some(ws) = self.workers.get(&w) else {
            return Vec::new();
        };
        if dependents.len() <= ws.processing.len() {
            self.visited(dependents.len());
            return dependents
                .iter()
                .copied()
                .filter(|d| self.queued_behind_on(*d, w))
                .collect();
        }
        self.visited(ws.processing.len());
        let mut queued: Vec<TaskId> = ws
            .processing
            .iter()
            .copied()
            .filter(|d| self.tasks[d].waiting_on > 0 && self.tasks[d].deps.contains(&t))
            .collect();
        queued.sort_by_key(|d| self.tasks[d].seq);
        queued
    }

    /// The inputs that tasks queued on `w` wait for there: an input among them has
    /// dependents queued behind it. From the tasks on `w` (a bounded queue, each such task
    /// with few inputs), not from each input's dependents.
    fn waited_on_at(&self, w: WorkerId) -> IdSet<TaskId> {
        let ws = &self.workers[&w];
        self.visited(ws.processing.len());
        ws.processing
            .iter()
            .filter(|p| self.tasks[p].waiting_on > 0)
            .flat_map(|p| self.tasks[p].deps.iter().copied())
            .collect()
    }

    /// A task finished on `w`: dependents that found no room behind their inputs there may
    /// find it now.
    pub(super) fn queue_dependents_later(&mut self, w: WorkerId) {
        let Some(ws) = self.workers.get_mut(&w) else { return };
        for (t, from) in std::mem::take(&mut ws.queue_later) {
            if self.processing_on(t, w) {
                self.queue_dependents_from(t, from, w);
            }
        }
    }

    /// `t` stopped processing on `w` without a result: the dependents queued behind it there
    /// (and behind those, and so on) are taken back, released, and returned so the caller
    /// computes them again once `t` is settled.
    pub(super) fn unqueue_dependents(&mut self, t: TaskId, w: WorkerId) -> Vec<TaskId> {
        let mut unqueued = Vec::new();
        let mut stack = vec![t];
        while let Some(t) = stack.pop() {
            for d in self.queued_behind(t, w) {
                if !self.queued_behind_on(d, w) {
                    // Listed twice (a task naming `t` twice): taken back already.
                    continue;
                }
                self.unassign(w, d);
                self.send(w, ToWorker::Cancel { tasks: vec![d] });
                self.set_state(d, TaskState::Released);
                unqueued.push(d);
                stack.push(d);
            }
        }
        unqueued
    }

    /// Moves queued, unstarted tasks from busy workers to workers with free threads.
    fn balance(&mut self) {
        // The pass ran `schedule` first: an idle worker that may take a ready task got it
        // rather than stealing, and what stays ready fits no worker with room, so no thief.
        let q = self.config.queue_per_thread;
        // Workers with fewer tasks than threads (load under 1), least loaded first; leaving
        // workers are not in the index, so they neither steal nor are stolen from.
        let mut thieves: Vec<(WorkerId, usize)> = self
            .by_load
            .iter()
            .take_while(|(load, _)| load.0 < 1.0)
            .map(|&(_, id)| {
                let ws = &self.workers[&id];
                (id, ws.capacity(q) - ws.processing.len())
            })
            .collect();
        if thieves.is_empty() {
            return;
        }
        // Workers with tasks queued beyond their threads, most loaded first, a few per call:
        // with a thousand workers draining their queues, looking at every one on every idle
        // moment would cost more than the moves save.
        let victims: Vec<WorkerId> = self
            .by_load
            .iter()
            .rev()
            .take_while(|(load, _)| load.0 > 1.0)
            .take(VICTIMS_PER_BALANCE)
            .map(|&(_, id)| id)
            .collect();
        let mut thief = 0;
        for v in victims {
            if thief == thieves.len() {
                break;
            }
            let waited_on = self.waited_on_at(v);
            let ws = &self.workers[&v];
            let mut candidates: Vec<TaskId> = ws
                .processing
                .iter()
                .copied()
                .filter(|t| {
                    matches!(self.tasks[t].state, TaskState::Processing { started: false, .. })
                        && !self.stealing.contains_key(t)
                        && self.tasks[t].waiting_on == 0
                        && !waited_on.contains(t)
                })
                .collect();
            candidates.sort_by_key(|t| self.tasks[t].seq);
            let spare = ws.processing.len() - ws.info.nthreads as usize;
            let mut take = candidates.len().min(spare.div_ceil(2));
            let mut chosen: Vec<TaskId> = Vec::new();
            while take > 0 && thief < thieves.len() {
                let Some(t) = candidates.pop() else { break };
                let (to, room) = &mut thieves[thief];
                if !self.workers[to].fits(self.tasks[&t].options()) {
                    continue;
                }
                *room -= 1;
                take -= 1;
                let to = *to;
                if *room == 0 {
                    thief += 1;
                }
                self.stealing.insert(t, to);
                chosen.push(t);
            }
            if !chosen.is_empty() {
                self.send(v, ToWorker::Steal { tasks: chosen });
            }
        }
    }

    pub(super) fn on_stolen(&mut self, w: WorkerId, tasks: Vec<(TaskId, AttemptId)>) {
        for (t, attempt) in tasks {
            if !self.is_assignment(t, w, attempt) {
                continue;
            }
            let stealing_to = self.stealing.get(&t).copied();
            self.unassign(w, t);
            let queued = self.unqueue_dependents(t, w);
            if self.tasks[&t].waiting_on > 0 || !queued.is_empty() {
                // It was queued behind inputs still computing there (or had dependents
                // queued behind it): back to waiting for them, like its dependents.
                self.compute_again_with(t, queued);
                continue;
            }
            self.set_state(t, TaskState::Ready);
            match stealing_to {
                Some(thief)
                    if self.workers.get(&thief).is_some_and(|ws| {
                        !ws.leaving && ws.has_room(self.config.queue_per_thread) && ws.fits(self.tasks[&t].options())
                    }) =>
                {
                    self.place(t, thief)
                }
                _ => self.make_ready(t),
            }
        }
        // Tasks that had started stay; clear their marks so they may be stolen later.
        if let Some(ws) = self.workers.get(&w) {
            for t in &ws.processing {
                self.stealing.remove(t);
            }
        }
    }
}
