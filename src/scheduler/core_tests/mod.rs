//! Tier-1 tests of the scheduler core: no sockets, no threads, no sleeps. This file is the
//! harness; the tests are in one file per lifecycle, as the core is.
//!
//! Each test builds a [`Core`] inside a [`Cluster`] harness, plays what workers and clients
//! do as events, and checks what the scheduler sent. The harness runs
//! [`Core::sanity_check`] after every event, so any step that breaks an invariant fails
//! the test at that step.

use super::core::{Core, CoreConfig, Outgoing, StopReason, TaskState};
use crate::protocol::{
    codec, AttemptId, ClientId, ComputeTask, FetchFailure, FromClient, FromNanny, FromWorker, NannyId, RequestId,
    TaskDesc, TaskError, TaskId, ToClient, ToNanny, ToWorker, WorkerId, WorkerInfo,
};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

mod clients;
mod failures;
mod loss;
mod nanny;
mod placement;
mod queue_behind;
mod retire;
mod runs;
mod scatter;
mod shapes;
mod submit;
mod timers;
mod unrunnable;

// ----- the harness -----

/// A scheduler core with pretend workers and clients around it.
///
/// Messages the core sends are kept in `sent` until a test takes them with one of the
/// `*_sent_to` / `*_to_client` helpers, which remove what they return.
struct Cluster {
    core: Core,
    /// The pretend clock, moved only by [`Cluster::advance`].
    now: Instant,
    sent: Vec<Outgoing>,
    workers: BTreeMap<String, WorkerId>,
    /// The latest id the scheduler used for each key, learned from `Compute` and `PutData`.
    ids: HashMap<String, TaskId>,
    /// Every id seen, back to its key, so messages that carry ids read as keys.
    keys: HashMap<TaskId, String>,
    /// The latest assignment of each task, learned from `Compute`: the pretend workers'
    /// answers name it, as real workers' do.
    attempts: HashMap<TaskId, AttemptId>,
    /// Messages sent to each worker: the pretend workers read each as it is sent.
    seen: HashMap<WorkerId, u64>,
    next_worker: u64,
    next_client: u64,
    next_nanny: u64,
    next_req: u64,
}

impl Cluster {
    /// A core that drops results as soon as nothing needs them (the tests pin that down;
    /// `keeping_idle` for the cache of idle results).
    fn new() -> Cluster {
        Cluster::with_config(CoreConfig {
            keep_idle_results: false,
            ..CoreConfig::default()
        })
    }

    /// A core with its defaults: idle results are kept within the budget.
    fn keeping_idle() -> Cluster {
        Cluster::with_config(CoreConfig::default())
    }

    /// A core that places only ready tasks (no queueing behind inputs), for the tests that
    /// pin down each placement step by step.
    fn ready_only() -> Cluster {
        Cluster::with_config(CoreConfig {
            queue_behind_inputs: false,
            keep_idle_results: false,
            ..CoreConfig::default()
        })
    }

    fn with_config(config: CoreConfig) -> Cluster {
        let now = Instant::now();
        let core = Core::new(config, now);
        core.sanity_check();
        Cluster {
            core,
            now,
            sent: Vec::new(),
            workers: BTreeMap::new(),
            ids: HashMap::new(),
            keys: HashMap::new(),
            attempts: HashMap::new(),
            seen: HashMap::new(),
            next_worker: 1,
            next_client: 1,
            next_nanny: 1,
            next_req: 1,
        }
    }

    /// The cluster with these workers (name, threads) joined, and one client connected.
    fn with_workers(mut self, workers: &[(&str, u32)]) -> (Cluster, ClientId) {
        for (name, nthreads) in workers {
            self.add_worker(name, *nthreads);
        }
        let client = self.add_client();
        (self, client)
    }

    /// Records what the core sent and checks every invariant: called after each event.
    fn step(&mut self) {
        for out in self.core.take_outbox() {
            let out = over_the_wire(out);
            if let Outgoing::Worker(w, _) = &out {
                *self.seen.entry(*w).or_default() += 1;
            }
            match &out {
                Outgoing::Worker(_, ToWorker::Compute(c)) => {
                    self.learn(c.id, &c.key);
                    self.attempts.insert(c.id, c.attempt);
                }
                Outgoing::Worker(_, ToWorker::PutData { task, key, .. }) => self.learn(*task, key),
                _ => {}
            }
            self.sent.push(out);
        }
        self.core.sanity_check();
    }

    fn learn(&mut self, id: TaskId, key: &str) {
        self.ids.insert(key.to_string(), id);
        self.keys.insert(id, key.to_string());
    }

    // ----- events -----

    fn add_worker(&mut self, name: &str, nthreads: u32) -> WorkerId {
        self.add_worker_with(name, nthreads, &[])
    }

    fn add_worker_with(&mut self, name: &str, nthreads: u32, resources: &[(&str, f64)]) -> WorkerId {
        let id = WorkerId(self.next_worker);
        self.next_worker += 1;
        self.workers.insert(name.to_string(), id);
        let info = WorkerInfo {
            name: name.to_string(),
            peer_address: address(name),
            nthreads,
            resources: resources.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            memory_limit: 0,
            pid: 1000 + id.0 as u32,
            host: format!("{name}.host"),
        };
        self.core.on_worker_joined(id, info, self.now);
        self.step();
        let registered = self.take(
            |o| matches!(o, Outgoing::Worker(w, ToWorker::Registered { worker, .. }) if *w == id && *worker == id),
        );
        assert_eq!(registered.len(), 1, "{name} is told its id once");
        id
    }

    fn add_client(&mut self) -> ClientId {
        let id = ClientId(self.next_client);
        self.next_client += 1;
        self.core.on_client_joined(id, self.now);
        self.step();
        let welcome =
            self.take(|o| matches!(o, Outgoing::Client(c, ToClient::Welcome { client }) if *c == id && *client == id));
        assert_eq!(welcome.len(), 1, "the client is welcomed once");
        id
    }

    fn client_says(&mut self, client: ClientId, msg: FromClient) {
        self.core.on_client_message(client, msg, self.now);
        self.step();
    }

    fn submit(&mut self, client: ClientId, tasks: Vec<TaskDesc>, wanted: &[&str]) {
        self.client_says(
            client,
            FromClient::Submit {
                tasks,
                wanted: strings(wanted),
            },
        );
    }

    fn release(&mut self, client: ClientId, keys: &[&str]) {
        self.client_says(client, FromClient::Release { keys: strings(keys) });
    }

    fn cancel(&mut self, client: ClientId, keys: &[&str]) {
        self.client_says(client, FromClient::Cancel { keys: strings(keys) });
    }

    fn scatter(&mut self, client: ClientId, items: &[(&str, &[u8])]) -> RequestId {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        let items = items.iter().map(|(k, d)| (k.to_string(), d.to_vec())).collect();
        self.client_says(client, FromClient::Scatter { req, items });
        req
    }

    fn disconnect(&mut self, client: ClientId) {
        self.core.on_client_lost(client, self.now);
        self.step();
    }

    fn worker_says(&mut self, worker: &str, msg: FromWorker) {
        let id = self.worker(worker);
        self.core.on_worker_message(id, msg, self.now);
        self.step();
    }

    fn start(&mut self, worker: &str, key: &str) {
        let (task, attempt) = (self.id(key), self.attempt(key));
        self.worker_says(worker, FromWorker::Started { task, attempt });
    }

    fn finish(&mut self, worker: &str, key: &str, nbytes: u64) {
        self.finish_fetched(worker, key, nbytes, &[]);
    }

    /// `worker` finished `key`, having fetched the inputs `fetched` from peers.
    fn finish_fetched(&mut self, worker: &str, key: &str, nbytes: u64, fetched: &[&str]) {
        let attempt = self.attempt(key);
        self.finish_as(worker, key, attempt, nbytes, fetched);
    }

    /// `worker` finished assignment `attempt` of `key` (maybe not the latest one).
    fn finish_as(&mut self, worker: &str, key: &str, attempt: AttemptId, nbytes: u64, fetched: &[&str]) {
        let task = self.id(key);
        let fetched = fetched.iter().map(|k| self.id(k)).collect();
        let seen = self.seen.get(&self.worker(worker)).copied().unwrap_or(0);
        self.worker_says(
            worker,
            FromWorker::Finished {
                task,
                attempt,
                nbytes,
                fetched,
                seen,
            },
        );
    }

    fn fail(&mut self, worker: &str, key: &str, error: TaskError) {
        let (task, attempt) = (self.id(key), self.attempt(key));
        self.worker_says(worker, FromWorker::Failed { task, attempt, error });
    }

    fn fetch_failed(&mut self, worker: &str, key: &str, dep: &str, holder: &str) {
        let attempt = self.attempt(key);
        self.fetch_failed_as(
            worker,
            key,
            attempt,
            dep,
            holder,
            FetchFailure::Transfer("connection refused".into()),
        );
    }

    /// `worker` could not have `dep` from `holder` (empty: nobody, or itself) for assignment
    /// `attempt` of `key`.
    fn fetch_failed_as(
        &mut self,
        worker: &str,
        key: &str,
        attempt: AttemptId,
        dep: &str,
        holder: &str,
        failure: FetchFailure,
    ) {
        let (task, dep) = (self.id(key), self.id(dep));
        let holder = if holder.is_empty() {
            String::new()
        } else {
            address(holder)
        };
        self.worker_says(
            worker,
            FromWorker::FetchFailed {
                task,
                attempt,
                dep,
                holder,
                failure,
            },
        );
    }

    fn stolen(&mut self, worker: &str, keys: &[&str]) {
        let tasks = keys.iter().map(|k| (self.id(k), self.attempt(k))).collect();
        self.worker_says(worker, FromWorker::Stolen { tasks });
    }

    fn stored(&mut self, worker: &str, key: &str, nbytes: u64) {
        let task = self.id(key);
        self.worker_says(worker, FromWorker::DataStored { task, nbytes });
    }

    fn heartbeat(&mut self, worker: &str) {
        self.worker_says(worker, FromWorker::Heartbeat { memory: 1 << 20 });
    }

    /// The worker's connection dropped.
    fn lose_worker(&mut self, worker: &str) {
        let id = self.worker(worker);
        self.core
            .on_worker_lost(id, crate::scheduler::core::CONNECTION_CLOSED, self.now);
        self.step();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// The core's next timer fires (the clock moves to it if it is still ahead).
    fn tick(&mut self) {
        if let Some(deadline) = self.core.next_deadline() {
            self.now = self.now.max(deadline);
        }
        self.core.on_timer(self.now);
        self.step();
    }

    /// A nanny supervising `workers` (by name) connects.
    fn add_nanny(&mut self, name: &str, workers: &[&str]) -> NannyId {
        let id = NannyId(self.next_nanny);
        self.next_nanny += 1;
        self.core
            .on_nanny_joined(id, name.to_string(), strings(workers), self.now);
        self.step();
        let registered = self.take(|o| matches!(o, Outgoing::Nanny(n, ToNanny::Registered) if *n == id));
        assert_eq!(registered.len(), 1, "nanny {name} is told it is registered");
        id
    }

    /// The nanny saw `worker` die.
    fn nanny_reports_death(&mut self, nanny: NannyId, worker: &str, reason: &str) {
        let msg = FromNanny::WorkerDied {
            worker: worker.to_string(),
            reason: reason.to_string(),
        };
        self.core.on_nanny_message(nanny, msg, self.now);
        self.step();
    }

    /// A client asks for every nanny-supervised worker to restart.
    fn restart(&mut self, client: ClientId) -> RequestId {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        self.client_says(client, FromClient::Restart { req });
        req
    }

    /// The core's timer fires now, whether or not a deadline is due.
    fn timer_now(&mut self) {
        self.core.on_timer(self.now);
        self.step();
    }

    // ----- lookups -----

    fn worker(&self, name: &str) -> WorkerId {
        *self
            .workers
            .get(name)
            .unwrap_or_else(|| panic!("no worker named {name}"))
    }

    fn worker_name(&self, id: WorkerId) -> String {
        self.workers
            .iter()
            .find(|(_, w)| **w == id)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| format!("{id}"))
    }

    /// The id the scheduler last gave `key` in a message to a worker.
    fn id(&self, key: &str) -> TaskId {
        *self
            .ids
            .get(key)
            .unwrap_or_else(|| panic!("{key} was never sent to a worker"))
    }

    /// The latest assignment of `key` sent to a worker.
    fn attempt(&self, key: &str) -> AttemptId {
        let id = self.id(key);
        *self
            .attempts
            .get(&id)
            .unwrap_or_else(|| panic!("{key} was never assigned to a worker"))
    }

    fn key(&self, id: TaskId) -> String {
        self.keys.get(&id).cloned().unwrap_or_else(|| format!("{id}"))
    }

    fn keys_of(&self, ids: &[TaskId]) -> Vec<String> {
        ids.iter().map(|t| self.key(*t)).collect()
    }

    fn state(&self, key: &str) -> TaskState {
        self.core
            .state_of(key)
            .unwrap_or_else(|| panic!("{key} is not known"))
            .clone()
    }

    /// Which worker `key` is processing on, by name.
    fn processing_on(&self, key: &str) -> String {
        match self.state(key) {
            TaskState::Processing { worker, .. } => self.worker_name(worker),
            s => panic!("{key} is not processing but {s:?}"),
        }
    }

    // ----- what was sent -----

    /// Removes and returns the recorded messages matching `pick`, in the order sent.
    fn take(&mut self, pick: impl Fn(&Outgoing) -> bool) -> Vec<Outgoing> {
        let (taken, kept) = std::mem::take(&mut self.sent).into_iter().partition(pick);
        self.sent = kept;
        taken
    }

    /// The `Compute` messages sent to `worker`, taken.
    fn compute_msgs_to(&mut self, worker: &str) -> Vec<ComputeTask> {
        let id = self.worker(worker);
        self.take(|o| matches!(o, Outgoing::Worker(w, ToWorker::Compute(_)) if *w == id))
            .into_iter()
            .map(|o| match o {
                Outgoing::Worker(_, ToWorker::Compute(c)) => *c,
                _ => unreachable!(),
            })
            .collect()
    }

    /// The keys `worker` was asked to compute, taken.
    fn computes_sent_to(&mut self, worker: &str) -> Vec<String> {
        self.compute_msgs_to(worker).into_iter().map(|c| c.key).collect()
    }

    /// Keys named by the messages of one kind sent to `worker`, taken.
    fn ids_sent_to(&mut self, worker: &str, kind: fn(&ToWorker) -> Option<&Vec<TaskId>>) -> Vec<String> {
        let id = self.worker(worker);
        let msgs = self.take(|o| matches!(o, Outgoing::Worker(w, m) if *w == id && kind(m).is_some()));
        let mut keys = Vec::new();
        for m in msgs {
            if let Outgoing::Worker(_, m) = m {
                keys.extend(self.keys_of(kind(&m).expect("picked by kind")));
            }
        }
        keys
    }

    fn releases_sent_to(&mut self, worker: &str) -> Vec<String> {
        self.ids_sent_to(worker, |m| match m {
            ToWorker::ReleaseData { tasks } => Some(tasks),
            _ => None,
        })
    }

    fn cancels_sent_to(&mut self, worker: &str) -> Vec<String> {
        self.ids_sent_to(worker, |m| match m {
            ToWorker::Cancel { tasks } => Some(tasks),
            _ => None,
        })
    }

    fn steals_sent_to(&mut self, worker: &str) -> Vec<String> {
        self.ids_sent_to(worker, |m| match m {
            ToWorker::Steal { tasks } => Some(tasks),
            _ => None,
        })
    }

    /// Keys of the scattered data put on `worker`, taken.
    fn puts_sent_to(&mut self, worker: &str) -> Vec<String> {
        let id = self.worker(worker);
        self.take(|o| matches!(o, Outgoing::Worker(w, ToWorker::PutData { .. }) if *w == id))
            .into_iter()
            .map(|o| match o {
                Outgoing::Worker(_, ToWorker::PutData { key, .. }) => key,
                _ => unreachable!(),
            })
            .collect()
    }

    /// Workers whose connection the scheduler asked to close, by name, taken.
    fn closed_workers(&mut self) -> Vec<String> {
        let ids: Vec<WorkerId> = self
            .take(|o| matches!(o, Outgoing::CloseWorker(..)))
            .into_iter()
            .map(|o| match o {
                Outgoing::CloseWorker(w, _) => w,
                _ => unreachable!(),
            })
            .collect();
        ids.into_iter().map(|w| self.worker_name(w)).collect()
    }

    /// Everything sent to `client`, taken.
    fn sent_to_client(&mut self, client: ClientId) -> Vec<ToClient> {
        self.take(|o| matches!(o, Outgoing::Client(c, _) if *c == client))
            .into_iter()
            .map(|o| match o {
                Outgoing::Client(_, m) => m,
                _ => unreachable!(),
            })
            .collect()
    }

    /// Keys the client was told finished, taken (other client messages are left).
    fn finished_to_client(&mut self, client: ClientId) -> Vec<String> {
        self.take(|o| matches!(o, Outgoing::Client(c, ToClient::KeyFinished { .. }) if *c == client))
            .into_iter()
            .map(|o| match o {
                Outgoing::Client(_, ToClient::KeyFinished { key, .. }) => key,
                _ => unreachable!(),
            })
            .collect()
    }

    /// Keys the client was told erred, with the error, taken.
    fn erred_to_client(&mut self, client: ClientId) -> Vec<(String, TaskError)> {
        self.take(|o| matches!(o, Outgoing::Client(c, ToClient::KeyErred { .. }) if *c == client))
            .into_iter()
            .map(|o| match o {
                Outgoing::Client(_, ToClient::KeyErred { key, error }) => (key, error),
                _ => unreachable!(),
            })
            .collect()
    }

    /// The messages sent to `nanny`.
    fn sent_to_nanny(&mut self, nanny: NannyId) -> Vec<ToNanny> {
        self.take(|o| matches!(o, Outgoing::Nanny(n, _) if *n == nanny))
            .into_iter()
            .map(|o| match o {
                Outgoing::Nanny(_, msg) => msg,
                _ => unreachable!(),
            })
            .collect()
    }

    /// The answers to restart requests sent to `client`.
    fn restarted_to_client(&mut self, client: ClientId) -> Vec<(RequestId, Result<u64, String>)> {
        self.take(|o| matches!(o, Outgoing::Client(c, ToClient::Restarted { .. }) if *c == client))
            .into_iter()
            .map(|o| match o {
                Outgoing::Client(_, ToClient::Restarted { req, result }) => (req, result),
                _ => unreachable!(),
            })
            .collect()
    }

    /// The stops the core decided.
    fn stops(&mut self) -> Vec<StopReason> {
        self.take(|o| matches!(o, Outgoing::Stop(_)))
            .into_iter()
            .map(|o| match o {
                Outgoing::Stop(reason) => reason,
                _ => unreachable!(),
            })
            .collect()
    }

    /// Fails the test if anything sent is still untaken: every message must be expected.
    fn assert_nothing_else_sent(&self) {
        assert!(self.sent.is_empty(), "unexpected messages: {:#?}", self.sent);
    }
}

/// `out` as its receiver decodes it: every message the core sends goes through the codec,
/// so a message that cannot be encoded, or decodes as something else, fails the test.
fn over_the_wire(out: Outgoing) -> Outgoing {
    fn again<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(msg: T) -> T {
        let bytes = codec::to_bytes(&msg).expect("every message encodes");
        let decoded: T = codec::from_bytes(&bytes).expect("every message decodes");
        assert_eq!(decoded, msg, "the message changed on the wire");
        decoded
    }
    match out {
        Outgoing::Worker(w, msg) => Outgoing::Worker(w, again(msg)),
        Outgoing::Client(c, msg) => Outgoing::Client(c, again(msg)),
        Outgoing::Nanny(n, msg) => Outgoing::Nanny(n, again(msg)),
        other => other,
    }
}

fn address(worker: &str) -> String {
    format!("{worker}.host:7000")
}

fn strings(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

/// A function task with default options.
fn task(key: &str) -> TaskDesc {
    TaskDesc::function(key, "noop", Vec::new())
}

/// A function task that takes `deps` as inputs.
fn task_on(key: &str, deps: &[&str]) -> TaskDesc {
    task(key).with_deps(deps.iter().copied())
}

/// Option setters for test tasks.
trait Options {
    fn priority(self, priority: i32) -> Self;
    fn retries(self, retries: u32) -> Self;
    fn needs(self, resource: &str, amount: f64) -> Self;
    fn only_on(self, workers: &[&str]) -> Self;
}

impl Options for TaskDesc {
    fn priority(mut self, priority: i32) -> Self {
        self.options.priority = priority;
        self
    }
    fn retries(mut self, retries: u32) -> Self {
        self.options.retries = retries;
        self
    }
    fn needs(mut self, resource: &str, amount: f64) -> Self {
        self.options.resources.push((resource.to_string(), amount));
        self
    }
    fn only_on(mut self, workers: &[&str]) -> Self {
        self.options.workers = strings(workers);
        self
    }
}

fn boom() -> TaskError {
    TaskError::Function {
        name: "noop".into(),
        message: "boom".into(),
    }
}

fn config(f: impl FnOnce(&mut CoreConfig)) -> CoreConfig {
    let mut c = CoreConfig::default();
    f(&mut c);
    c
}

fn dependency(key: &str, error: TaskError) -> TaskError {
    TaskError::Dependency {
        key: key.into(),
        error: Box::new(error),
    }
}

fn rejected_reason(error: &TaskError) -> &str {
    match error {
        TaskError::Rejected { reason } => reason,
        e => panic!("expected a rejection, got {e:?}"),
    }
}

/// Five tasks queued on a one-thread worker, the first of them started.
fn busy_worker() -> (Cluster, ClientId) {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    let keys = ["t0", "t1", "t2", "t3", "t4"];
    cl.submit(c, keys.iter().map(|k| task(k)).collect(), &keys);
    assert_eq!(cl.computes_sent_to("w1"), keys);
    cl.start("w1", "t0");
    (cl, c)
}
