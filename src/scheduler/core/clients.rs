//! Clients: joining, leaving (what they wanted is released), their messages, and the
//! answers to their questions (where results are, what the cluster looks like).

use super::task::Task;
use super::task::TaskState;
use super::{Core, Outgoing};
use crate::idmap::IdSet;
use crate::protocol::{
    ClientId, ClusterInfo, FromClient, KeyLocation, LocationProblem, TaskId, ToClient, WorkerSummary,
};
use crate::scheduler::table::TaskTable;
use std::collections::BTreeMap;
use std::time::Instant;

/// A client's bookkeeping.
#[derive(Debug, Default)]
pub(super) struct ClientState {
    /// Tasks this client asked for, so they are released when it disconnects. The tasks'
    /// `wanted_by` is the truth: this is a log that may name tasks the client released or
    /// that are forgotten (their ids then find nothing), compacted when it reaches twice
    /// `wants`. A log of ids costs 8 bytes per task where a hash set costs 20 or more.
    pub(super) wanted: Vec<TaskId>,
    /// How many tasks name this client in their `wanted_by`.
    pub(super) wants: usize,
    /// The parts of a submission that came in several messages, until its last.
    pub(super) partial_submission: Option<Box<super::submit::PartialSubmission>>,
}

impl ClientState {
    /// Notes that task `t` now names `client` in its `wanted_by`.
    pub(super) fn log_wanted(&mut self, client: ClientId, t: TaskId, tasks: &TaskTable<Task>) {
        self.wants += 1;
        if self.wanted.len() >= 2 * self.wants + 16 {
            self.wanted
                .retain(|t| tasks.get(t).is_some_and(|task| task.wanted_by.contains(&client)));
            self.wanted.sort_unstable();
            self.wanted.dedup();
        }
        self.wanted.push(t);
    }
}

impl Core {
    pub fn on_client_joined(&mut self, id: ClientId, now: Instant) {
        self.at(now);
        self.clients.insert(id, ClientState::default());
        self.outbox.push(Outgoing::Client(id, ToClient::Welcome { client: id }));
    }

    pub fn on_client_lost(&mut self, id: ClientId, now: Instant) {
        self.at(now);
        let Some(cs) = self.clients.remove(&id) else {
            return;
        };
        self.scatters.retain(|s| s.client != id);
        for t in cs.wanted {
            if let Some(task) = self.tasks.get_mut(&t) {
                if task.wanted_by.remove_item(id) {
                    self.maybe_release(t);
                }
            }
        }
        self.want_placement();
    }

    pub fn on_client_message(&mut self, id: ClientId, msg: FromClient, now: Instant) {
        self.at(now);
        if !self.clients.contains_key(&id) {
            return;
        }
        match msg {
            FromClient::Submit { tasks, wanted } => self.on_submit(id, tasks, wanted),
            FromClient::SubmitPart { tasks, wanted } => self.on_submit_part(id, tasks, wanted),
            FromClient::Release { keys } => {
                for k in keys {
                    if let Some(t) = self.tasks.id_of(&k) {
                        let task = self.tasks.get_mut(&t).expect("keys are known");
                        if task.wanted_by.remove_item(id) {
                            self.clients.get_mut(&id).expect("checked").wants -= 1;
                        }
                        self.maybe_release(t);
                    }
                }
            }
            FromClient::Cancel { keys } => {
                // Tasks found wanted by no other client downstream, for the whole message:
                // cancelling many keys that share what is downstream of them looks at it once.
                let mut clean = IdSet::default();
                for k in keys {
                    if let Some(t) = self.tasks.id_of(&k) {
                        self.on_cancel(id, t, &mut clean);
                    }
                }
            }
            FromClient::WhoHas { req, keys } => {
                let locations = keys.into_iter().map(|k| self.locate(k)).collect();
                self.outbox
                    .push(Outgoing::Client(id, ToClient::WhoHas { req, locations }));
            }
            FromClient::Info { req } => {
                let info = self.info(id);
                self.outbox.push(Outgoing::Client(id, ToClient::Info { req, info }));
            }
            FromClient::Scatter { req, items } => self.on_scatter(id, req, items),
            FromClient::Restart { req } => self.on_restart(id, req),
            FromClient::Replicate { keys, replicas } => {
                for k in keys {
                    if let Some(t) = self.tasks.id_of(&k) {
                        self.tasks.get_mut(&t).expect("known").extras_mut().options.replicas = replicas;
                        self.replicate(t);
                    }
                }
            }
        }
        self.want_placement();
    }

    /// Client `c` cancels `t`. If another client still waits for `t` or for something
    /// downstream of it, only `c` lets go: it is told `t` is cancelled and no longer wants it.
    /// Otherwise `t` stops and errs as cancelled, with everything downstream.
    fn on_cancel(&mut self, c: ClientId, t: TaskId, clean: &mut IdSet<TaskId>) {
        if !self.wanted_by_others(t, c, clean) {
            self.cancel(t);
            return;
        }
        let task = self.tasks.get_mut(&t).expect("known");
        if matches!(task.state, TaskState::Memory | TaskState::Erred(_)) {
            return;
        }
        if task.wanted_by.remove_item(c) {
            self.clients.get_mut(&c).expect("checked by the caller").wants -= 1;
            let key = task.key.to_string();
            let error = crate::protocol::TaskError::Cancelled;
            self.outbox.push(Outgoing::Client(c, ToClient::KeyErred { key, error }));
        }
        log::info!(
            "{} is cancelled for {c} only: other clients wait for it",
            self.tasks[&t].key
        );
    }

    /// Whether a client other than `c` wants `t` or a task downstream of it. `clean` holds
    /// tasks already found wanted by none but `c` with all that is downstream of them: they
    /// are not looked at again, and what this search finds clean joins them. (What `c`
    /// cancels changes neither: other clients' wants stay, and edges only go.)
    fn wanted_by_others(&self, t: TaskId, c: ClientId, clean: &mut IdSet<TaskId>) -> bool {
        let mut seen = IdSet::default();
        let mut stack = vec![t];
        while let Some(t) = stack.pop() {
            if clean.contains(&t) || !seen.insert(t) {
                continue;
            }
            let task = &self.tasks[&t];
            if task.wanted_by.iter().any(|w| *w != c) {
                return true;
            }
            self.visited(task.dependents.len());
            stack.extend(task.dependents.iter().copied());
        }
        clean.extend(seen);
        false
    }

    pub(super) fn locate(&self, key: String) -> KeyLocation {
        let mut loc = KeyLocation {
            key,
            id: TaskId(u64::MAX),
            nbytes: 0,
            holders: Vec::new(),
            problem: None,
        };
        match self.tasks.id_of(&loc.key) {
            None => loc.problem = Some(LocationProblem::Unknown),
            Some(t) => {
                let task = &self.tasks[&t];
                loc.id = t;
                loc.nbytes = task.nbytes;
                match &task.state {
                    TaskState::Memory => {
                        loc.holders = task
                            .who_has
                            .iter()
                            .map(|w| self.workers[w].info.peer_address.clone())
                            .collect()
                    }
                    TaskState::Erred(e) => loc.problem = Some(LocationProblem::Erred((**e).clone())),
                    s => loc.problem = Some(LocationProblem::NotFinished(s.name().to_string())),
                }
            }
        }
        loc
    }

    /// What `distd info` shows to client `asker`, who is not among the clients it counts.
    pub(super) fn info(&self, asker: ClientId) -> ClusterInfo {
        let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        for t in self.tasks.values() {
            *counts.entry(t.state.name()).or_default() += 1;
        }
        ClusterInfo {
            scheduler_version: crate::protocol::DISTD_VERSION.to_string(),
            workers: self
                .workers
                .iter()
                .map(|(id, ws)| WorkerSummary {
                    id: *id,
                    name: ws.info.name.clone(),
                    address: ws.info.peer_address.clone(),
                    host: ws.info.host.clone(),
                    pid: ws.info.pid,
                    nthreads: ws.info.nthreads,
                    resources: ws.info.resources.clone(),
                    memory: ws.memory,
                    memory_limit: ws.info.memory_limit,
                    processing: ws.processing.len() as u64,
                    stored: ws.has_data.len() as u64,
                    stored_bytes: ws.stored_bytes,
                })
                .collect(),
            tasks: counts.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            clients: (self.clients.len() - usize::from(self.clients.contains_key(&asker))) as u64,
        }
    }
}
