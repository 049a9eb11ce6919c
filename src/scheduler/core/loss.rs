//! Losing workers and results: a worker gone with its tasks and results, and results that
//! are held nowhere any more, computed again where still needed.

use super::task::TaskState;
use super::workers::Load;
use super::{Core, Outgoing, CONNECTION_CLOSED};
use crate::protocol::{TaskError, TaskId, ToClient, ToWorker, WorkerId};
use std::time::Instant;

impl Core {
    /// The worker's connection dropped.
    pub fn on_worker_lost(&mut self, id: WorkerId, reason: &str, now: Instant) {
        self.at(now);
        self.lose_worker(id, reason);
    }

    /// The worker is gone (its connection dropped, it missed its heartbeats, or its nanny saw
    /// it die): what it ran is computed again, what only it held is lost.
    pub(super) fn lose_worker(&mut self, id: WorkerId, reason: &str) {
        let Some(ws) = self.workers.remove(&id) else {
            return;
        };
        self.by_load.remove(&(Load(ws.load()), id));
        if ws.leaving {
            log::info!("worker {} ({}) left", ws.info.name, id);
        } else {
            log::warn!("worker {} ({}) lost: {}", ws.info.name, id, reason);
        }
        // Copies it was to receive will not come; retiring workers pick other targets.
        self.retiring.remove(&id);
        for pending in self.retiring.values_mut() {
            pending.retain(|_, target| *target != id);
        }
        // The worker leaves every table before any transition runs: erring a task releases
        // its inputs and may stop its siblings, and none of that may meet a task processing
        // on, or a result held by, a worker that is gone.
        let allowed = self.config.allowed_failures as usize;
        let mut again = Vec::new();
        let mut erred = Vec::new();
        for t in ws.processing {
            self.stealing.remove(&t);
            let task = &self.tasks[&t];
            let TaskState::Processing { started, .. } = task.state else {
                panic!("task {t} in a worker's processing set is {:?}", task.state)
            };
            self.set_state(t, TaskState::Released);
            let task = self.tasks.get_mut(&t).expect("processing tasks are known");
            if task.scattered() {
                let worker = ws.info.name.clone();
                erred.push((t, TaskError::LostData { worker }));
                continue;
            }
            if started && !ws.leaving {
                // A reason beyond the connection dropping (a nanny's report, such as memory)
                // is worth carrying into the eventual "killed worker" error.
                let suspicious = &mut task.extras_mut().suspicious;
                suspicious.push(if reason == CONNECTION_CLOSED {
                    ws.info.name.clone()
                } else {
                    format!("{} ({})", ws.info.name, reason)
                });
                if suspicious.len() > allowed {
                    let workers = suspicious.clone();
                    erred.push((t, TaskError::KilledWorker { workers }));
                    continue;
                }
            }
            again.push(t);
        }
        // Thieves that were to receive stolen tasks are forgotten with their worker.
        self.stealing.retain(|_, thief| *thief != id);
        self.replicas_on_worker_lost(id);
        let mut lost = Vec::new();
        let mut fewer = Vec::new();
        for t in ws.has_data {
            let task = self.tasks.get_mut(&t).expect("held results are of known tasks");
            task.who_has.retain(|w| *w != id);
            if task.state == TaskState::Memory && task.who_has.is_empty() {
                lost.push(t);
            } else if task.state == TaskState::Memory && task.extras().options.replicas > 1 {
                fewer.push(t);
            }
        }
        self.on_data_lost(lost, &ws.info.name);
        for (t, error) in erred {
            self.set_erred(t, error);
        }
        for t in again {
            self.compute(t);
        }
        for t in fewer {
            self.replicate(t);
        }
        self.stall_on_no_worker(self.clock);
        self.unrunnable_on_worker_left(self.clock);
        self.want_balance();
    }

    /// Results in `lost` are no longer held anywhere: compute them again where still needed,
    /// and send back to waiting the dependents that were about to use them.
    pub(super) fn on_data_lost(&mut self, lost: Vec<TaskId>, worker_name: &str) {
        let mut reset = Vec::new();
        for &t in &lost {
            self.set_state(t, TaskState::Released);
            let task = &self.tasks[&t];
            for c in &task.wanted_by {
                self.outbox.push(Outgoing::Client(
                    *c,
                    ToClient::KeyLost {
                        key: task.key.to_string(),
                    },
                ));
            }
            if task.scattered() {
                self.set_erred(
                    t,
                    TaskError::LostData {
                        worker: worker_name.to_string(),
                    },
                );
                continue;
            }
            self.visited(task.dependents.len());
            for d in task.dependents.clone() {
                let dt = self.tasks.get_mut(&d).expect("dependents are known");
                match dt.state {
                    TaskState::Waiting => dt.waiting_on += 1,
                    TaskState::Ready => {
                        self.set_state(d, TaskState::Released);
                        reset.push(d);
                    }
                    TaskState::Processing { worker, .. } => {
                        self.unassign(worker, d);
                        self.send(worker, ToWorker::Cancel { tasks: vec![d] });
                        self.set_state(d, TaskState::Released);
                        reset.push(d);
                        reset.extend(self.unqueue_dependents(d, worker));
                    }
                    _ => {}
                }
            }
        }
        for &t in &lost {
            if self.tasks.get(&t).is_some_and(|task| task.state == TaskState::Released) && self.needed(t) {
                log::info!("recomputing {} (its result was lost)", self.tasks[&t].key);
                self.compute(t);
            }
        }
        for d in reset {
            self.compute(d);
        }
        for t in lost {
            self.maybe_release(t);
        }
    }
}
