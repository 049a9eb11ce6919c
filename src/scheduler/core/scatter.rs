//! Scatter: data a client hands to the cluster, placed on the least loaded workers, answered
//! once every item is stored. Its bytes pass through the scheduler once, as in dask.

use super::task::{Task, TaskExtras, TaskState};
use super::workers::change_load;
use super::{Core, Outgoing};
use crate::idmap::IdSet;
use crate::protocol::{ClientId, RequestId, TaskError, TaskId, TaskSpec, ToClient, ToWorker, WorkerId};
use crate::scheduler::id_list::IdList;
use std::collections::HashSet;

/// A scatter waiting for its workers to confirm they stored the data.
#[derive(Debug)]
pub(super) struct PendingScatter {
    pub(super) client: ClientId,
    pub(super) req: RequestId,
    pub(super) remaining: IdSet<TaskId>,
}

impl Core {
    pub(super) fn on_scatter(&mut self, client: ClientId, req: RequestId, items: Vec<(String, Vec<u8>)>) {
        let reply = |reason: String| {
            Outgoing::Client(
                client,
                ToClient::Scattered {
                    req,
                    result: Err(reason),
                },
            )
        };
        if self.workers.is_empty() {
            self.outbox.push(reply("no workers to hold the data".into()));
            return;
        }
        if let Some((k, _)) = items.iter().find(|(k, _)| self.tasks.contains_key_str(k)) {
            self.outbox.push(reply(format!("key {k:?} already exists")));
            return;
        }
        let mut seen = HashSet::with_capacity(items.len());
        if let Some((k, _)) = items.iter().find(|(k, _)| !seen.insert(k.as_str())) {
            self.outbox.push(reply(format!("key {k:?} given twice")));
            return;
        }
        let mut remaining = IdSet::default();
        for (key, data) in items {
            let w = *self
                .workers
                .iter()
                .min_by_key(|(_, ws)| ws.stored_bytes + ws.processing.len() as u64)
                .expect("checked not empty")
                .0;
            let attempt = self.new_attempt();
            let id = self.tasks.insert(Task {
                key: key.as_str().into(),
                spec: self.function_names.store(TaskSpec::Function {
                    name: "scattered".into(),
                    args: Vec::new(),
                    args_form: crate::protocol::ArgsForm::Bytes,
                }),
                priority: 0,
                deps: IdList::new(),
                dependents: IdList::new(),
                state: TaskState::Processing {
                    worker: w,
                    started: true,
                    attempt,
                },
                waiting_on: 0,
                who_has: IdList::new(),
                nbytes: data.len() as u64,
                wanted_by: IdList::from_iter([client]),
                seq: 0,
                extras: Some(Box::new(TaskExtras {
                    scattered: true,
                    ..TaskExtras::default()
                })),
            });
            self.clients
                .get_mut(&client)
                .expect("checked")
                .log_wanted(client, id, &self.tasks);
            let ws = self.workers.get_mut(&w).expect("chosen above");
            change_load(&mut self.by_load, w, ws, |ws| {
                ws.processing.insert(id);
                ws.running += 1;
            });
            remaining.insert(id);
            self.send(w, ToWorker::PutData { task: id, key, data });
        }
        self.scatters.push(PendingScatter { client, req, remaining });
    }

    /// Scattered `t` erred before it was stored: the scatters waiting for it are answered
    /// now, since they will never complete.
    pub(super) fn fail_scatters(&mut self, t: TaskId, error: &TaskError) {
        let key = &self.tasks[&t].key;
        let mut i = 0;
        while i < self.scatters.len() {
            if self.scatters[i].remaining.contains(&t) {
                let s = self.scatters.remove(i);
                self.outbox.push(Outgoing::Client(
                    s.client,
                    ToClient::Scattered {
                        req: s.req,
                        result: Err(format!("{key:?} was not stored: {error}")),
                    },
                ));
            } else {
                i += 1;
            }
        }
    }

    pub(super) fn on_data_stored(&mut self, w: WorkerId, t: TaskId, nbytes: u64) {
        if !self.processing_on(t, w) {
            // The scatter was cancelled or its client left: nobody will ask for these bytes.
            if !matches!(self.tasks.get(&t), Some(task) if task.who_has.contains(&w)) {
                self.send(w, ToWorker::ReleaseData { tasks: vec![t] });
            }
            return;
        }
        self.unassign(w, t);
        self.store_result(w, t, nbytes);
        // A client may have submitted tasks on this key before its data arrived.
        self.wake_dependents(t);
        let mut done = Vec::new();
        for (i, s) in self.scatters.iter_mut().enumerate() {
            if s.remaining.remove(&t) && s.remaining.is_empty() {
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            let s = self.scatters.remove(i);
            self.outbox.push(Outgoing::Client(
                s.client,
                ToClient::Scattered {
                    req: s.req,
                    result: Ok(()),
                },
            ));
        }
    }
}
