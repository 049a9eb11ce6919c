//! Telling clients at once when a task asks for what no connected worker has: a resource
//! (`GPU = 1` on a cluster without GPUs) or a worker by name (`workers = ["nobody"]`). Such a
//! task would wait for ever; its clients are told which task waits for what, and told again
//! when a worker that can run it joins.
//!
//! The rule: a task with restrictions is checked when it is submitted and whenever placement
//! finds no worker with room for it, against the connected workers that are not leaving; with
//! no worker at all, the no-worker notice ([`super::stall`]) speaks instead. A task found
//! unrunnable is reported once; a worker joining checks the reported ones again. Within
//! [`GRACE`] of a worker leaving (or starting to leave), a task found unrunnable is only
//! reported if it still is when the grace ends: a worker that a nanny restarts, or that
//! retires to be replaced, is back by then, and its tasks go on unremarked. The clients
//! told are those that want the task or anything downstream of it, found by one walk over
//! the dependents of everything reported in a batch of events.

use super::task::TaskState;
use super::{Core, Outgoing};
use crate::idmap::{IdMap, IdSet};
use crate::protocol::{ClientId, TaskId, TaskOptions, ToClient, WorkerId};
use std::time::{Duration, Instant};

/// How long after a worker left a task it could have run may wait before it is reported: as
/// long as the no-worker notice waits, for the same reason.
pub(super) const GRACE: Duration = super::stall::NO_WORKER_NOTICE_AFTER;

/// The most tasks one report names; the rest are counted.
pub(super) const REPORTED_TASKS: usize = 20;

/// Tasks no connected worker can run, and what the batch must still tell.
#[derive(Debug, Default)]
pub(super) struct Unrunnable {
    /// Reported tasks (waiting or ready), each with why no worker can run it.
    pub(super) tasks: IdMap<TaskId, String>,
    /// Found unrunnable in this batch, not reported yet.
    found: Vec<TaskId>,
    /// Runnable again in this batch (a worker joined), with the worker, not reported yet.
    runnable: Vec<(TaskId, WorkerId)>,
    /// When a worker last left or started to leave.
    worker_left_at: Option<Instant>,
    /// Found unrunnable within the grace after a worker left: checked again when it ends.
    pending: IdSet<TaskId>,
}

impl Core {
    /// Why no connected worker (that is not leaving) can run a task with these options;
    /// `None` when one can, or when no worker is connected at all.
    fn why_unrunnable(&self, options: &TaskOptions) -> Option<String> {
        let mut workers = self.workers.values().filter(|ws| !ws.leaving).peekable();
        workers.peek()?;
        let allowed: Vec<_> = workers.filter(|ws| ws.may_run(options)).collect();
        if allowed.is_empty() {
            return Some(format!(
                "it may run only on workers {:?}, and no connected worker has that name, address or host",
                options.workers
            ));
        }
        let (name, amount) = options.resources.iter().find(|(name, amount)| {
            !allowed.iter().any(|ws| {
                ws.info
                    .resources
                    .iter()
                    .any(|(n, total)| n == name && *total + 1e-9 >= *amount)
            })
        })?;
        let most = allowed
            .iter()
            .flat_map(|ws| ws.info.resources.iter())
            .filter(|(n, _)| n == name)
            .map(|(_, total)| *total)
            .fold(None, |most: Option<f64>, t| Some(most.map_or(t, |m| m.max(t))));
        Some(match most {
            None => format!("it needs {name}={amount}, and no connected worker has {name}"),
            Some(most) => format!("it needs {name}={amount}, and the most any connected worker has is {name}={most}"),
        })
    }

    /// Checks task `t` (waiting or ready, with restrictions) against the connected workers;
    /// one that none can run is reported when the batch ends.
    pub(super) fn check_runnable(&mut self, t: TaskId) {
        if self.unrunnable.tasks.contains_key(&t) {
            return;
        }
        let task = &self.tasks[&t];
        let options = task.options();
        if options.resources.is_empty() && options.workers.is_empty() {
            return;
        }
        let Some(why) = self.why_unrunnable(options) else {
            return;
        };
        if self.unrunnable.worker_left_at.is_some_and(|at| self.clock < at + GRACE) {
            self.unrunnable.pending.insert(t);
            return;
        }
        self.unrunnable.tasks.insert(t, why);
        self.unrunnable.found.push(t);
    }

    /// A worker left, or started to leave, at `now`: tasks only it could run wait out the
    /// grace before they are reported.
    pub(super) fn unrunnable_on_worker_left(&mut self, now: Instant) {
        self.unrunnable.worker_left_at = Some(now);
    }

    /// When the tasks found in a grace are checked again.
    pub(super) fn unrunnable_deadline(&self) -> Option<Instant> {
        let left = self.unrunnable.worker_left_at?;
        (!self.unrunnable.pending.is_empty()).then_some(left + GRACE)
    }

    /// The grace ended: the tasks found in it that still wait and still cannot run are
    /// reported.
    pub(super) fn unrunnable_on_timer(&mut self, now: Instant) {
        if self.unrunnable_deadline().is_none_or(|due| now < due) {
            return;
        }
        for t in std::mem::take(&mut self.unrunnable.pending) {
            if self
                .tasks
                .get(&t)
                .is_some_and(|task| matches!(task.state, TaskState::Waiting | TaskState::Ready))
            {
                self.check_runnable(t);
            }
        }
    }

    /// Task `t` moved to `state`: one that is no longer waiting for a worker is forgotten.
    pub(super) fn unrunnable_on_state(&mut self, t: TaskId, state: &TaskState) {
        if !self.unrunnable.tasks.is_empty() && !matches!(state, TaskState::Waiting | TaskState::Ready) {
            self.unrunnable.tasks.remove(&t);
        }
    }

    /// Worker `w` joined: the reported tasks it can run are runnable again.
    pub(super) fn unrunnable_on_worker_joined(&mut self, w: WorkerId) {
        if self.unrunnable.tasks.is_empty() {
            return;
        }
        let ws = &self.workers[&w];
        let now_runnable: Vec<TaskId> = self
            .unrunnable
            .tasks
            .keys()
            .copied()
            .filter(|t| ws.could_run(self.tasks[t].options()))
            .collect();
        for t in now_runnable {
            self.unrunnable.tasks.remove(&t);
            self.unrunnable.runnable.push((t, w));
        }
    }

    /// At the end of a batch: tells the clients concerned what was found.
    pub(super) fn report_unrunnable(&mut self) {
        let found = std::mem::take(&mut self.unrunnable.found);
        if !found.is_empty() {
            for (client, tasks) in self.clients_downstream(&found) {
                let named: Vec<(String, String)> = tasks
                    .iter()
                    .take(REPORTED_TASKS)
                    .map(|t| (self.tasks[t].key.to_string(), self.unrunnable.tasks[t].clone()))
                    .collect();
                if let Some((key, why)) = named.first() {
                    log::info!(
                        "task {key:?} cannot run: {why}{} (client {client})",
                        if tasks.len() > 1 {
                            format!("; and {} more", crate::units::plural(tasks.len() as u64 - 1, "task"))
                        } else {
                            String::new()
                        }
                    );
                }
                let more = (tasks.len() - named.len()) as u64;
                self.outbox
                    .push(Outgoing::Client(client, ToClient::Unrunnable { tasks: named, more }));
            }
        }
        let runnable = std::mem::take(&mut self.unrunnable.runnable);
        if !runnable.is_empty() {
            let ids: Vec<TaskId> = runnable.iter().map(|(t, _)| *t).collect();
            let worker = &self.workers[&runnable[0].1].info.name;
            for (client, tasks) in self.clients_downstream(&ids) {
                let first = &self.tasks[&tasks[0]].key;
                let others = match tasks.len() {
                    1 => String::new(),
                    n => format!(" and {} more", crate::units::plural(n as u64 - 1, "task")),
                };
                let message = format!("worker {worker} joined; task {first:?}{others} can run now");
                self.outbox.push(Outgoing::Client(client, ToClient::Notice { message }));
            }
        }
    }

    /// The clients that want any of `tasks` or anything downstream of them, each with the
    /// tasks of `tasks` that concern it, in order: one walk over the dependents, each task
    /// visited once for all of them.
    fn clients_downstream(&self, tasks: &[TaskId]) -> Vec<(ClientId, Vec<TaskId>)> {
        let mut by_client: IdMap<ClientId, Vec<TaskId>> = IdMap::default();
        // Which start reached each task first; a task reached from two starts is walked once,
        // so a client wanting it hears of the first start only: enough to know why it waits.
        let mut seen: IdSet<TaskId> = IdSet::default();
        for &start in tasks {
            let mut stack = vec![start];
            let mut told: Vec<ClientId> = Vec::new();
            while let Some(t) = stack.pop() {
                if !seen.insert(t) {
                    continue;
                }
                let task = &self.tasks[&t];
                self.visited(task.dependents.len());
                for c in &task.wanted_by {
                    if !told.contains(c) {
                        told.push(*c);
                        by_client.entry(*c).or_default().push(start);
                    }
                }
                stack.extend(task.dependents.iter().copied());
            }
        }
        let mut out: Vec<(ClientId, Vec<TaskId>)> = by_client.into_iter().collect();
        out.sort_unstable_by_key(|(c, _)| *c);
        out
    }

    /// Test-only: every reported task is waiting or ready and no connected worker that is
    /// not leaving could run it.
    #[cfg(test)]
    pub(super) fn check_unrunnable(&self) {
        for t in self.unrunnable.tasks.keys() {
            let task = &self.tasks[t];
            assert!(
                matches!(task.state, TaskState::Waiting | TaskState::Ready),
                "reported unrunnable {} is {}",
                task.key,
                task.state.name()
            );
            assert!(
                !self
                    .workers
                    .values()
                    .any(|ws| !ws.leaving && ws.could_run(task.options())),
                "reported unrunnable {} can run",
                task.key
            );
        }
        assert!(
            self.unrunnable.found.is_empty() && self.unrunnable.runnable.is_empty(),
            "reported at the batch's end"
        );
    }
}
