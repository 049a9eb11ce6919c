//! A task's life between its events: computed (with the released inputs it needs), made
//! ready, computed again, erred with everything downstream, cancelled, and released then
//! forgotten when nothing needs it.

use super::task::{dependency_error, TaskState, WIDE_DEPENDENTS};
use super::{Core, Outgoing};
use crate::protocol::{TaskError, TaskId, ToClient, ToWorker, WorkerId};
use std::cmp::Reverse;

impl Core {
    /// Whether anything still needs `t`'s result: a client, or a dependent being computed.
    /// A read for a task with many dependents (their count is kept), a look at each for one
    /// with few.
    pub(super) fn needed(&self, t: TaskId) -> bool {
        let task = &self.tasks[&t];
        if !task.wanted_by.is_empty() {
            return true;
        }
        if task.dependents.len() > WIDE_DEPENDENTS {
            return task.extras().active_dependents > 0;
        }
        self.visited(task.dependents.len());
        task.dependents.iter().any(|d| self.tasks[d].state.is_active())
    }

    /// Sets `t`'s state. When `t` starts or stops being computed, the inputs with many
    /// dependents count it (see [`Core::needed`]): every change of state goes through here.
    pub(super) fn set_state(&mut self, t: TaskId, state: TaskState) {
        self.unrunnable_on_state(t, &state);
        let task = self.tasks.get_mut(&t).expect("set_state of a known task");
        let (was, is) = (task.state.is_active(), state.is_active());
        task.state = state;
        if was == is {
            return;
        }
        let n = task.deps.len();
        self.visited(n);
        for i in 0..n {
            let d = self.tasks[&t].deps[i];
            let dt = self.tasks.get_mut(&d).expect("inputs outlive their dependents");
            if dt.dependents.len() > WIDE_DEPENDENTS {
                let count = &mut dt.extras_mut().active_dependents;
                if is {
                    *count += 1;
                } else {
                    *count -= 1;
                }
            }
        }
    }

    /// `dependent` was just added to `t`'s dependents: a list that became wide counts its
    /// dependents being computed from now on.
    pub(super) fn dependent_added(&mut self, t: TaskId) {
        let n = self.tasks[&t].dependents.len();
        if n != WIDE_DEPENDENTS + 1 {
            return;
        }
        self.visited(n);
        let task = &self.tasks[&t];
        let active = task
            .dependents
            .iter()
            .filter(|d| self.tasks[d].state.is_active())
            .count() as u32;
        self.tasks.get_mut(&t).expect("known").extras_mut().active_dependents = active;
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
            self.visited(task.deps.len());
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
                self.set_state(t, TaskState::Waiting);
                self.tasks.get_mut(&t).expect("popped from known").waiting_on = missing;
            }
        }
    }

    pub(super) fn make_ready(&mut self, t: TaskId) {
        self.set_state(t, TaskState::Ready);
        let task = self.tasks.get_mut(&t).expect("make_ready of a known task");
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
        self.set_state(t, TaskState::Released);
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
            self.set_state(t, TaskState::Erred(Box::new(error.clone())));
            let task = &self.tasks[&t];
            log::debug!("task {} erred: {}", task.key, error);
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
            self.visited(task.dependents.len());
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
            let state = self.tasks[&t].state.clone();
            match state {
                TaskState::Memory => self.result_idle(t),
                TaskState::Processing { worker, .. } => {
                    self.unassign(worker, t);
                    self.send(worker, ToWorker::Cancel { tasks: vec![t] });
                    self.set_state(t, TaskState::Released);
                    self.visited(self.tasks[&t].deps.len());
                    stack.extend(self.tasks[&t].deps.iter().copied());
                }
                TaskState::Waiting | TaskState::Ready => {
                    self.set_state(t, TaskState::Released);
                    self.visited(self.tasks[&t].deps.len());
                    stack.extend(self.tasks[&t].deps.iter().copied());
                }
                TaskState::Released | TaskState::Erred(_) => {}
            }
            let task = &self.tasks[&t];
            if task.wanted_by.is_empty() && task.dependents.is_empty() {
                let task = self.tasks.remove(&t).expect("checked");
                self.visited(task.deps.len());
                for d in task.deps {
                    let dt = self.tasks.get_mut(&d).expect("inputs outlive their dependents");
                    dt.dependents.remove_item(t);
                    stack.push(d);
                }
            }
        }
    }
}
