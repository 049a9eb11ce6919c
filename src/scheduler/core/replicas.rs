//! Replicas: the result of a task that asks for more than one copy (`replicas = N`, or a
//! client's `replicate`) is copied to other workers when it is computed, and again when a
//! holder is lost or drops it, for as long as something needs it. Losing a worker then
//! loses no such result, so nothing has to be computed again: what makes a run converge
//! when workers die faster than a lost result's lineage can be redone.

use super::task::TaskState;
use super::Core;
use crate::protocol::{TaskId, ToWorker, WorkerId};

impl Core {
    /// Copies `t`'s result to other workers until it has as many holders (counting copies
    /// under way) as its task wants, if it is in memory and needed. Targets are the workers
    /// that store least; when there are too few, it has fewer copies until one joins.
    pub(super) fn replicate(&mut self, t: TaskId) {
        let Some(task) = self.tasks.get(&t) else { return };
        let want = task.options().replicas.max(1) as usize;
        if want <= 1 && self.replicas_short.is_empty() {
            // Most results: one copy wanted, nothing to do (this runs for every result).
            return;
        }
        if want <= 1 || task.state != TaskState::Memory || !self.needed(t) {
            self.replicas_short.remove(&t);
            return;
        }
        let Some(&from) = task.who_has.first() else { return };
        let under_way: Vec<WorkerId> = self.copying.get(&t).cloned().unwrap_or_default();
        let missing = want.saturating_sub(task.who_has.len() + under_way.len());
        if missing == 0 {
            self.replicas_short.remove(&t);
            return;
        }
        let mut targets: Vec<(u64, WorkerId)> = self
            .workers
            .iter()
            .filter(|(id, ws)| !ws.leaving && !task.who_has.contains(id) && !under_way.contains(id))
            .map(|(id, ws)| (ws.stored_bytes, *id))
            .collect();
        targets.sort_unstable();
        if targets.len() < missing {
            self.replicas_short.insert(t);
        } else {
            self.replicas_short.remove(&t);
        }
        let from = self.workers[&from].info.peer_address.clone();
        for (_, target) in targets.into_iter().take(missing) {
            self.copying.entry(t).or_default().push(target);
            self.send(
                target,
                ToWorker::Replicate {
                    task: t,
                    from: from.clone(),
                },
            );
        }
    }

    /// A copy of `t` for its replicas reached `target`, or failed (tried again when a worker
    /// joins).
    pub(super) fn replica_arrived(&mut self, target: WorkerId, t: TaskId, ok: bool) {
        if let Some(under_way) = self.copying.get_mut(&t) {
            under_way.retain(|w| *w != target);
            if under_way.is_empty() {
                self.copying.remove(&t);
            }
        }
        if !ok {
            self.replicas_short.insert(t);
        }
    }

    /// `w` is gone: copies it was to receive will not come, and what it held may need new
    /// copies (the caller asks for them once its tables are settled).
    pub(super) fn replicas_on_worker_lost(&mut self, w: WorkerId) {
        self.copying.retain(|_, under_way| {
            under_way.retain(|x| *x != w);
            !under_way.is_empty()
        });
    }

    /// A worker joined: results short of copies get them now.
    pub(super) fn replicas_on_worker_joined(&mut self) {
        let short: Vec<TaskId> = self.replicas_short.iter().copied().collect();
        for t in short {
            self.replicate(t);
        }
    }
}
