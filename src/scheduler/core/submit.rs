//! Submissions: a batch is checked whole before any of it is stored (keys unique, inputs
//! known, no cycle), then its tasks are linked and what the client wants is computed. A
//! submission too big for one frame comes in parts (`SubmitPart`s, then the `Submit` that
//! ends it): the parts are held, unchecked, and the batch is the parts and the `Submit`
//! together, so it is checked, stored and answered exactly as one message would be.

use super::task::{Task, TaskExtras, TaskState};
use super::{Core, Outgoing};
use crate::protocol::{ClientId, TaskDesc, TaskError, TaskId, ToClient};
use crate::scheduler::id_list::IdList;
use std::collections::HashMap;

/// Why a submission was refused whole.
#[derive(Debug, thiserror::Error)]
pub(super) enum Rejected {
    #[error("a task has an empty key")]
    EmptyKey,
    #[error("duplicate key {0:?} in one submission")]
    DuplicateKey(String),
    #[error("task {0:?} depends on itself")]
    SelfDependency(String),
    #[error("task {task:?} depends on unknown key {dep:?}")]
    UnknownDependency { task: String, dep: String },
    /// A few of the keys in the cycle.
    #[error("dependency cycle among {}", .0.join(", "))]
    Cycle(Vec<String>),
}

/// The parts of a submission received so far from one client, in order.
#[derive(Debug, Default)]
pub(super) struct PartialSubmission {
    tasks: Vec<TaskDesc>,
    wanted: Vec<String>,
}

impl Core {
    /// Checks a batch before anything of it is stored: keys unique, inputs known, no cycle.
    fn check_batch(&self, tasks: &[TaskDesc]) -> Result<(), Rejected> {
        let mut batch: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
        for (i, t) in tasks.iter().enumerate() {
            if t.key.is_empty() {
                return Err(Rejected::EmptyKey);
            }
            if batch.insert(&t.key, i).is_some() {
                return Err(Rejected::DuplicateKey(t.key.clone()));
            }
        }
        // Kahn's algorithm over the new tasks only; known keys are already acyclic.
        let mut indegree = vec![0usize; tasks.len()];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
        for (i, t) in tasks.iter().enumerate() {
            if self.tasks.contains_key_str(&t.key) {
                continue;
            }
            for d in &t.deps {
                if *d == t.key {
                    return Err(Rejected::SelfDependency(t.key.clone()));
                }
                match batch.get(d.as_str()) {
                    Some(&j) if !self.tasks.contains_key_str(d) => {
                        indegree[i] += 1;
                        users[j].push(i);
                    }
                    Some(_) => {}
                    None if self.tasks.contains_key_str(d) => {}
                    None => {
                        return Err(Rejected::UnknownDependency {
                            task: t.key.clone(),
                            dep: d.clone(),
                        })
                    }
                }
            }
        }
        let mut stack: Vec<usize> = (0..tasks.len()).filter(|&i| indegree[i] == 0).collect();
        let mut seen = 0;
        while let Some(i) = stack.pop() {
            seen += 1;
            for &u in &users[i] {
                indegree[u] -= 1;
                if indegree[u] == 0 {
                    stack.push(u);
                }
            }
        }
        if seen < tasks.len() {
            let stuck = (0..tasks.len())
                .filter(|&i| indegree[i] > 0)
                .take(5)
                .map(|i| tasks[i].key.clone())
                .collect();
            return Err(Rejected::Cycle(stuck));
        }
        Ok(())
    }

    /// A part of a submission: held until the `Submit` that ends it.
    pub(super) fn on_submit_part(&mut self, client: ClientId, tasks: Vec<TaskDesc>, wanted: Vec<String>) {
        let cs = self.clients.get_mut(&client).expect("checked by caller");
        let held = cs.partial_submission.get_or_insert_with(Box::default);
        held.tasks.extend(tasks);
        held.wanted.extend(wanted);
    }

    pub(super) fn on_submit(&mut self, client: ClientId, mut tasks: Vec<TaskDesc>, mut wanted: Vec<String>) {
        let cs = self.clients.get_mut(&client).expect("checked by caller");
        if let Some(mut held) = cs.partial_submission.take() {
            held.tasks.append(&mut tasks);
            held.wanted.append(&mut wanted);
            (tasks, wanted) = (held.tasks, held.wanted);
        }
        if let Err(rejected) = self.check_batch(&tasks) {
            log::warn!("client {client}: submission rejected: {rejected}");
            let reason = rejected.to_string();
            for t in &tasks {
                self.outbox.push(Outgoing::Client(
                    client,
                    ToClient::KeyErred {
                        key: t.key.clone(),
                        error: TaskError::Rejected { reason: reason.clone() },
                    },
                ));
            }
            return;
        }
        let new = self.store_new_tasks(tasks);
        for key in wanted {
            self.want(client, key);
        }
        // New tasks that nothing wants are dropped at once; those that stay and that no
        // worker can run are reported.
        for id in new {
            self.maybe_release(id);
            if self
                .tasks
                .get(&id)
                .is_some_and(|t| matches!(t.state, TaskState::Waiting | TaskState::Ready))
            {
                self.check_runnable(id);
            }
        }
    }

    /// Stores the tasks of a checked batch whose keys are new, linked to their inputs, in
    /// submission order; returns their ids.
    fn store_new_tasks(&mut self, tasks: Vec<TaskDesc>) -> Vec<TaskId> {
        let mut new = Vec::new();
        for desc in tasks {
            if self.tasks.contains_key_str(&desc.key) {
                continue;
            }
            let options = desc.options;
            let rare = options.retries > 0
                || options.replicas > 1
                || !options.resources.is_empty()
                || !options.workers.is_empty();
            let id = self.tasks.insert(Task {
                key: desc.key.into_boxed_str(),
                spec: self.function_names.store(desc.spec),
                priority: options.priority,
                deps: IdList::new(),
                dependents: IdList::new(),
                state: TaskState::Released,
                waiting_on: 0,
                who_has: IdList::new(),
                nbytes: 0,
                wanted_by: IdList::new(),
                seq: 0,
                extras: rare.then(|| {
                    Box::new(TaskExtras {
                        retries_left: options.retries,
                        options,
                        ..TaskExtras::default()
                    })
                }),
            });
            new.push((id, desc.deps));
        }
        // Link inputs once every new key has an id.
        for (id, deps) in &new {
            let dep_ids: Vec<TaskId> = deps.iter().map(|d| self.tasks.id_of(d).expect("checked")).collect();
            for d in &dep_ids {
                self.tasks.get_mut(d).expect("checked").dependents.push(*id);
                self.dependent_added(*d);
            }
            let task = self.tasks.get_mut(id).expect("just inserted");
            task.deps = dep_ids.into_iter().collect();
            task.seq = self.next_seq;
            self.next_seq += 1;
        }
        new.into_iter().map(|(id, _)| id).collect()
    }

    /// `client` wants `key`: told now if it is done, else it is computed.
    fn want(&mut self, client: ClientId, key: String) {
        let Some(t) = self.tasks.id_of(&key) else {
            self.outbox.push(Outgoing::Client(
                client,
                ToClient::KeyErred {
                    key: key.clone(),
                    error: TaskError::Rejected {
                        reason: format!("unknown key {key:?}"),
                    },
                },
            ));
            return;
        };
        let task = self.tasks.get_mut(&t).expect("keys are known");
        if !task.wanted_by.contains(&client) {
            task.wanted_by.push(client);
            self.clients
                .get_mut(&client)
                .expect("checked by caller")
                .log_wanted(client, t, &self.tasks);
        }
        let task = &self.tasks[&t];
        match &task.state {
            TaskState::Memory => self.outbox.push(Outgoing::Client(
                client,
                ToClient::KeyFinished {
                    key,
                    nbytes: task.nbytes,
                },
            )),
            TaskState::Erred(e) => self.outbox.push(Outgoing::Client(
                client,
                ToClient::KeyErred {
                    key,
                    error: (**e).clone(),
                },
            )),
            _ => self.compute(t),
        }
    }
}
