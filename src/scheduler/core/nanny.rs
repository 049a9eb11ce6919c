//! The scheduler core's part for nannies: who supervises which workers, deaths reported
//! before a connection times out, and the cluster-wide restart. A child module of `core`, so
//! it works on the same tables, under the same rules: no I/O, `now` passed in.

use super::task::TaskState;
use super::workers::Load;
use super::{Core, Outgoing};
use crate::protocol::{ClientId, FromNanny, NannyId, RequestId, TaskError, ToClient, ToNanny, WorkerId};
use std::time::{Duration, Instant};

/// How long the workers have to come back after a restart.
const RESTART_PATIENCE: Duration = Duration::from_secs(60);

/// What the scheduler keeps about a nanny.
#[derive(Debug)]
pub(super) struct NannyState {
    name: String,
    /// Names of the workers it supervises.
    workers: Vec<String>,
}

impl Core {
    pub fn on_nanny_joined(&mut self, id: NannyId, name: String, workers: Vec<String>, now: Instant) {
        self.at(now);
        log::info!("nanny {name} ({id}) joined, supervising {}", workers.join(", "));
        self.nannies.insert(id, NannyState { name, workers });
        self.outbox.push(Outgoing::Nanny(id, ToNanny::Registered));
    }

    pub fn on_nanny_message(&mut self, id: NannyId, msg: FromNanny, now: Instant) {
        self.at(now);
        match msg {
            FromNanny::Register { .. } => log::warn!("nanny {id} registered twice; ignored"),
            FromNanny::WorkerDied { worker, reason } => {
                let found: Vec<WorkerId> = self
                    .workers
                    .iter()
                    .filter(|(_, ws)| ws.info.name == worker)
                    .map(|(w, _)| *w)
                    .collect();
                for w in found {
                    self.outbox.push(Outgoing::CloseWorker(w, reason.clone()));
                    self.lose_worker(w, &reason);
                }
            }
        }
        self.want_placement();
    }

    pub fn on_nanny_lost(&mut self, id: NannyId, now: Instant) {
        self.at(now);
        if let Some(n) = self.nannies.remove(&id) {
            log::info!("nanny {} ({id}) left", n.name);
        }
    }

    /// Drops every task and result, asks every nanny to restart its workers, and answers the
    /// client once the same workers are back.
    pub(super) fn on_restart(&mut self, client: ClientId, req: RequestId) {
        let reply = |result| Outgoing::Client(client, ToClient::Restarted { req, result });
        if self.nannies.is_empty() {
            self.outbox
                .push(reply(Err("no nanny-supervised workers to restart".to_string())));
            return;
        }
        if self.restart.is_some() {
            self.outbox
                .push(reply(Err("a restart is already under way".to_string())));
            return;
        }
        log::info!("restarting every nanny-supervised worker; all tasks are dropped");
        let lost = TaskError::Lost("the cluster restarted".into());
        for task in self.tasks.values() {
            if !matches!(task.state, TaskState::Memory | TaskState::Erred(_)) {
                for c in &task.wanted_by {
                    self.outbox.push(Outgoing::Client(
                        *c,
                        ToClient::KeyErred {
                            key: task.key.to_string(),
                            error: lost.clone(),
                        },
                    ));
                }
            }
        }
        for s in self.scatters.drain(..) {
            self.outbox.push(Outgoing::Client(
                s.client,
                ToClient::Scattered {
                    req: s.req,
                    result: Err("the cluster restarted".into()),
                },
            ));
        }
        self.tasks.clear();
        self.ready.clear();
        self.stealing.clear();
        for c in self.clients.values_mut() {
            c.wanted.clear();
            c.wants = 0;
        }
        self.by_load.clear();
        for (id, ws) in self.workers.iter_mut() {
            ws.processing.clear();
            ws.running = 0;
            ws.has_data.clear();
            ws.stored_bytes = 0;
            ws.resources_free = ws.info.resources.clone();
            if !ws.leaving {
                self.by_load.insert((Load(ws.load()), *id));
            }
        }
        let mut expect = Vec::new();
        for (id, n) in &self.nannies {
            expect.extend(n.workers.iter().cloned());
            self.outbox.push(Outgoing::Nanny(*id, ToNanny::Restart));
        }
        self.restart = Some(PendingRestart {
            client,
            req,
            total: expect.len() as u64,
            expect,
            deadline: self.clock + RESTART_PATIENCE,
        });
    }

    /// A worker registered: part of a restart under way?
    pub(super) fn restart_on_worker_joined(&mut self, name: &str) {
        let Some(r) = &mut self.restart else { return };
        r.expect.retain(|n| n != name);
        if r.expect.is_empty() {
            let r = self.restart.take().expect("checked above");
            log::info!("restart complete: {} back", crate::units::plural(r.total, "worker"));
            self.outbox.push(Outgoing::Client(
                r.client,
                ToClient::Restarted {
                    req: r.req,
                    result: Ok(r.total),
                },
            ));
        }
    }

    /// Gives up on a restart whose workers did not all come back in time.
    pub(super) fn restart_on_timer(&mut self, now: Instant) {
        let Some(r) = &self.restart else { return };
        if now < r.deadline {
            return;
        }
        let r = self.restart.take().expect("checked above");
        self.outbox.push(Outgoing::Client(
            r.client,
            ToClient::Restarted {
                req: r.req,
                result: Err(format!(
                    "{} of {} did not come back within {} s: {}",
                    r.expect.len(),
                    crate::units::plural(r.total, "worker"),
                    RESTART_PATIENCE.as_secs(),
                    r.expect.join(", ")
                )),
            },
        ));
    }
}

/// A restart waiting for its workers to come back.
#[derive(Debug)]
pub(super) struct PendingRestart {
    client: ClientId,
    req: RequestId,
    /// Names of the workers not back yet.
    expect: Vec<String>,
    total: u64,
    /// When the restart is given up.
    pub(super) deadline: Instant,
}
