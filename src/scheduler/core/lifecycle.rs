//! A task's life between its events: computed (with the released inputs it needs), made
//! ready, computed again, erred with everything downstream, cancelled, and released then
//! forgotten when nothing needs it.

use super::task::{dependency_error, TaskState};
use super::{Core, Outgoing};
use crate::protocol::{TaskError, TaskId, ToClient, ToWorker, WorkerId};
use std::cmp::Reverse;

impl Core {
    /// Whether anything still needs `t`'s result: a client, or a dependent being computed.
    pub(super) fn needed(&self, t: TaskId) -> bool {
        let task = &self.tasks[&t];
        !task.wanted_by.is_empty()
            || task.dependents.iter().any(|d| {
                matches!(
                    self.tasks[d].state,
                    TaskState::Waiting | TaskState::Ready | TaskState::Processing { .. }
                )
            })
    }

    /// Starts computing `root` (if released), and every released input it needs.
    pub(super) fn compute(&mut self, root: TaskId) {
        let mut stack = vec![root];
        while let Some(t) = stack.pop() {
            let task = &self.tasks[&t];
            if task.state != TaskState::Released {
                continue;
            }
            if task.scattered() {
                // Its spec is a placeholder: once released, scattered data cannot be made again.
                let reason = format!("scattered data {:?} was released; it cannot be computed", task.key);
                self.set_erred(t, TaskError::Other(reason));
                continue;
            }
            let mut missing = 0;
            let mut failed = None;
            for d in &task.deps {
                match &self.tasks[d].state {
                    TaskState::Memory => {}
                    TaskState::Erred(e) => failed = Some((*d, (**e).clone())),
                    TaskState::Released => {
                        missing += 1;
                        stack.push(*d);
                    }
                    _ => missing += 1,
                }
            }
            if let Some((d, e)) = failed {
                let error = dependency_error(&self.tasks[&d].key, e);
                self.set_erred(t, error);
            } else if missing == 0 {
                self.make_ready(t);
            } else {
                let task = self.tasks.get_mut(&t).expect("popped from known");
                task.state = TaskState::Waiting;
                task.waiting_on = missing;
            }
        }
    }

    pub(super) fn make_ready(&mut self, t: TaskId) {
        let task = self.tasks.get_mut(&t).expect("make_ready of a known task");
        task.state = TaskState::Ready;
        task.waiting_on = 0;
        self.ready.push((task.priority, Reverse(task.seq), t));
    }

    pub(super) fn cancel(&mut self, t: TaskId) {
        let task = &self.tasks[&t];
        match task.state {
            TaskState::Memory | TaskState::Erred(_) => {}
            _ => self.set_erred(t, TaskError::Cancelled),
        }
    }

    /// `t`, taken off `w` without a result, is computed again, and so is what was queued
    /// behind it there.
    pub(super) fn compute_again(&mut self, t: TaskId, w: WorkerId) {
        let queued = self.unqueue_dependents(t, w);
        self.compute_again_with(t, queued);
    }

    /// [`Core::compute_again`] once the dependents queued behind `t` are taken back.
    pub(super) fn compute_again_with(&mut self, t: TaskId, queued: Vec<TaskId>) {
        self.tasks.get_mut(&t).expect("known").state = TaskState::Released;
        self.compute(t);
        for d in queued {
            self.compute(d);
        }
    }

    /// `t` failed for good: it and everything downstream of it err, and clients are told.
    pub(super) fn set_erred(&mut self, t: TaskId, error: TaskError) {
        let mut stack = vec![(t, error)];
        let mut touched = Vec::new();
        while let Some((t, error)) = stack.pop() {
            let task = self.tasks.get_mut(&t).expect("set_erred of a known task");
            if matches!(task.state, TaskState::Erred(_) | TaskState::Memory) {
                continue;
            }
            if let TaskState::Processing { worker, .. } = task.state {
                self.unassign(worker, t);
                self.send(worker, ToWorker::Cancel { tasks: vec![t] });
            }
            if self.tasks[&t].scattered() {
                self.fail_scatters(t, &error);
            }
            let task = self.tasks.get_mut(&t).expect("known");
            log::debug!("task {} erred: {}", task.key, error);
            task.state = TaskState::Erred(Box::new(error.clone()));
            for c in &task.wanted_by {
                self.outbox.push(Outgoing::Client(
                    *c,
                    ToClient::KeyErred {
                        key: task.key.to_string(),
                        error: error.clone(),
                    },
                ));
            }
            let downstream = dependency_error(&task.key, error);
            for d in &task.dependents {
                stack.push((*d, downstream.clone()));
            }
            touched.push(t);
        }
        for t in touched {
            let deps = self.tasks[&t].deps.clone();
            for d in deps {
                self.maybe_release(d);
            }
            self.maybe_release(t);
        }
    }

    /// Drops `t`'s result (or stops computing it) when nothing needs it, and forgets it, then
    /// its inputs, when nothing refers to them any more.
    pub(super) fn maybe_release(&mut self, t: TaskId) {
        let mut stack = vec![t];
        while let Some(t) = stack.pop() {
            if !self.tasks.contains_key(&t) || self.needed(t) {
                continue;
            }
            let task = self.tasks.get_mut(&t).expect("checked");
            match task.state.clone() {
                TaskState::Memory => self.result_idle(t),
                TaskState::Processing { worker, .. } => {
                    self.unassign(worker, t);
                    self.send(worker, ToWorker::Cancel { tasks: vec![t] });
                    self.tasks.get_mut(&t).expect("known").state = TaskState::Released;
                    stack.extend(self.tasks[&t].deps.iter().copied());
                }
                TaskState::Waiting | TaskState::Ready => {
                    task.state = TaskState::Released;
                    stack.extend(task.deps.iter().copied());
                }
                TaskState::Released | TaskState::Erred(_) => {}
            }
            let task = &self.tasks[&t];
            if task.wanted_by.is_empty() && task.dependents.is_empty() {
                let task = self.tasks.remove(&t).expect("checked");
                for d in task.deps {
                    let dt = self.tasks.get_mut(&d).expect("inputs outlive their dependents");
                    dt.dependents.remove_item(t);
                    stack.push(d);
                }
            }
        }
    }
}
