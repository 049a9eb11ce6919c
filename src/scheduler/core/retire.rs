//! Retirement (`--lifetime`, `--drain`): a retiring worker gets no new task, gives back what
//! it has not started, and once nothing runs there its only-here results that are still
//! needed are copied to other workers before it is told to shut down.

use super::task::TaskState;
use super::Core;
use crate::protocol::{TaskId, ToWorker, WorkerId};

impl Core {
    /// The worker wants to retire: no new tasks; its unstarted ones are taken back.
    pub(super) fn on_retire(&mut self, w: WorkerId, reason: &str) {
        let Some(ws) = self.workers.get(&w) else { return };
        log::info!("worker {} ({w}) retires: {reason}", ws.info.name);
        self.set_leaving(w);
        let ws = &self.workers[&w];
        self.retiring.entry(w).or_default();
        let unstarted: Vec<TaskId> = ws
            .processing
            .iter()
            .copied()
            .filter(|t| matches!(self.tasks[t].state, TaskState::Processing { started: false, .. }))
            .collect();
        if !unstarted.is_empty() {
            self.send(w, ToWorker::Steal { tasks: unstarted });
        }
    }

    /// A copy for a retiring worker or for a task's replicas arrived at `target` (or
    /// failed).
    pub(super) fn on_replicated(&mut self, target: WorkerId, t: TaskId, nbytes: Option<u64>, seen: u64) {
        for pending in self.retiring.values_mut() {
            if pending.get(&t) == Some(&target) {
                pending.remove(&t);
            }
        }
        self.replica_arrived(target, t, nbytes.is_some());
        match nbytes {
            // A copy held, like any reported result: kept where the task lacks one.
            Some(n) if !self.release_on_its_way(target, t, seen) => self.on_result_held(target, t, None, Some(n)),
            Some(_) => {}
            None => log::warn!("copying {t} to {target} failed; it may be computed again"),
        }
    }

    /// Once a retiring worker runs nothing, copies its only-here results that are still
    /// needed to other workers; once those are copied, tells it to shut down.
    pub(super) fn retire_step(&mut self, w: WorkerId) {
        let Some(ws) = self.workers.get(&w) else {
            self.retiring.remove(&w);
            return;
        };
        if !ws.processing.is_empty() {
            return;
        }
        let from = ws.info.peer_address.clone();
        let mut sends = Vec::new();
        let pending = self.retiring.get(&w).expect("called for retiring workers");
        for &t in &ws.has_data {
            let task = &self.tasks[&t];
            if *task.who_has == [w] && !pending.contains_key(&t) && self.needed(t) {
                let target = self
                    .workers
                    .iter()
                    .filter(|(id, other)| **id != w && !other.leaving)
                    .min_by_key(|(_, other)| other.stored_bytes)
                    .map(|(id, _)| *id);
                if let Some(target) = target {
                    sends.push((t, target));
                }
            }
        }
        for (t, target) in sends {
            let pending = self.retiring.get_mut(&w).expect("called for retiring workers");
            pending.insert(t, target);
            self.send(
                target,
                ToWorker::Replicate {
                    task: t,
                    from: from.clone(),
                },
            );
        }
        if self.retiring.get(&w).is_some_and(|pending| pending.is_empty()) {
            self.retiring.remove(&w);
            self.send(
                w,
                ToWorker::Shutdown {
                    reason: "retired".into(),
                },
            );
        }
    }
}
