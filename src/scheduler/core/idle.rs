//! Idle results: a result nothing needs any more, whose task is still known because tasks
//! that take it are (the rest of the graph is pending), stays on its workers within a
//! budget, oldest dropped first. When a worker dies and a dependent must be computed again,
//! its inputs are then mostly still there, so recovery redoes one step of lineage instead
//! of everything back to the graph's first tasks: what lets a deep graph finish while
//! workers keep dying. A result whose task is forgotten (no dependent left, no client) is
//! dropped at once, as before.

use super::task::TaskState;
use super::Core;
use crate::protocol::TaskId;
use std::collections::VecDeque;

/// The budget for idle results on a worker with no memory limit.
const IDLE_BYTES_UNLIMITED_WORKER: u64 = 64 << 20;

/// The share of a worker's memory limit idle results may take (well under the 60% where it
/// starts to spill), as a divisor.
const IDLE_SHARE_OF_LIMIT: u64 = 20;

/// An idle result larger than this share of its holder's memory limit (as a divisor) is
/// dropped at once: keeping it would push the worker toward spilling, the cache is for the
/// many small results a deep graph's lineage is made of.
const IDLE_RESULT_SHARE_OF_LIMIT: u64 = 100;

/// Idle results in the order they became idle. Entries whose result was needed again,
/// lost or dropped are skipped (and their bytes given back) when they reach the front.
#[derive(Debug)]
pub(super) struct IdleResults {
    pub(super) queue: VecDeque<(TaskId, u64)>,
    /// Bytes of the entries in `queue`.
    pub(super) bytes: u64,
    /// When the queue reaches this length, entries of results no longer idle (forgotten
    /// with their task, needed again, lost) are dropped, so it stays within twice the idle
    /// results (a run's forgotten tasks never come to its front when the budget is large).
    pub(super) prune_at: usize,
}

impl Default for IdleResults {
    fn default() -> Self {
        IdleResults {
            queue: VecDeque::new(),
            bytes: 0,
            prune_at: 1024,
        }
    }
}

impl Core {
    /// `t`'s result is in memory and nothing needs it. Kept while the budget allows (and its
    /// task stays known), else dropped now.
    pub(super) fn result_idle(&mut self, t: TaskId) {
        let task = &self.tasks[&t];
        let forgotten_next = task.wanted_by.is_empty() && task.dependents.is_empty();
        let too_big = task.who_has.iter().any(|w| {
            let limit = self.workers[w].info.memory_limit;
            limit > 0 && task.nbytes > limit / IDLE_RESULT_SHARE_OF_LIMIT
        });
        if !self.config.keep_idle_results || forgotten_next || too_big || task.scattered() {
            self.drop_result(t);
            return;
        }
        let nbytes = task.nbytes.max(1);
        self.idle.queue.push_back((t, nbytes));
        self.idle.bytes += nbytes;
        if self.idle.queue.len() >= self.idle.prune_at {
            self.prune_idle();
        }
        let budget = self.idle_budget();
        while self.idle.bytes > budget {
            let Some((old, n)) = self.idle.queue.pop_front() else {
                break;
            };
            self.idle.bytes -= n;
            let still_idle =
                self.tasks.get(&old).is_some_and(|task| task.state == TaskState::Memory) && !self.needed(old);
            if still_idle {
                self.drop_result(old);
            }
        }
    }

    /// Drops the queue's entries whose result is no longer idle.
    fn prune_idle(&mut self) {
        let mut queue = std::mem::take(&mut self.idle.queue);
        queue
            .retain(|(t, _)| self.tasks.get(t).is_some_and(|task| task.state == TaskState::Memory) && !self.needed(*t));
        self.idle.bytes = queue.iter().map(|(_, n)| n).sum();
        self.idle.prune_at = (queue.len() * 2).max(1024);
        self.idle.queue = queue;
    }

    /// What idle results may take in all: a share of each worker's memory limit.
    fn idle_budget(&self) -> u64 {
        self.workers
            .values()
            .map(|ws| match ws.info.memory_limit {
                0 => IDLE_BYTES_UNLIMITED_WORKER,
                limit => limit / IDLE_SHARE_OF_LIMIT,
            })
            .sum()
    }

    /// Drops `t`'s result from every worker holding it.
    pub(super) fn drop_result(&mut self, t: TaskId) {
        let holders = self.tasks[&t].who_has.clone();
        for w in holders {
            self.drop_holder(t, w);
            self.send(w, crate::protocol::ToWorker::ReleaseData { tasks: vec![t] });
        }
        self.set_state(t, TaskState::Released);
    }
}
