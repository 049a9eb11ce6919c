//! Tier-1 tests of the scheduler core: no sockets, no threads, no sleeps.
//!
//! Each test builds a [`Core`] inside a [`Cluster`] harness, plays what workers and clients
//! do as events, and checks what the scheduler sent. The harness runs
//! [`Core::sanity_check`] after every event, so any step that breaks an invariant fails
//! the test at that step.

use super::core::{Core, CoreConfig, Outgoing, TaskState};
use crate::protocol::{
    ClientId, ComputeTask, FromClient, FromWorker, RequestId, TaskDesc, TaskError, TaskId, ToClient, ToWorker,
    WorkerId, WorkerInfo,
};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

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
    next_worker: u64,
    next_client: u64,
    next_req: u64,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::with_config(CoreConfig::default())
    }

    /// A core that places only ready tasks (no queueing behind inputs), for the tests that
    /// pin down each placement step by step.
    fn ready_only() -> Cluster {
        Cluster::with_config(CoreConfig {
            queue_behind_inputs: false,
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
            next_worker: 1,
            next_client: 1,
            next_req: 1,
        }
    }

    /// Records what the core sent and checks every invariant: called after each event.
    fn step(&mut self) {
        for out in self.core.take_outbox() {
            match &out {
                Outgoing::Worker(_, ToWorker::Compute(c)) => self.learn(c.id, &c.key),
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
        let task = self.id(key);
        self.worker_says(worker, FromWorker::Started { task });
    }

    fn finish(&mut self, worker: &str, key: &str, nbytes: u64) {
        self.finish_fetched(worker, key, nbytes, &[]);
    }

    /// `worker` finished `key`, having fetched the inputs `fetched` from peers.
    fn finish_fetched(&mut self, worker: &str, key: &str, nbytes: u64, fetched: &[&str]) {
        let task = self.id(key);
        let fetched = fetched.iter().map(|k| self.id(k)).collect();
        self.worker_says(worker, FromWorker::Finished { task, nbytes, fetched });
    }

    fn fail(&mut self, worker: &str, key: &str, error: TaskError) {
        let task = self.id(key);
        self.worker_says(worker, FromWorker::Failed { task, error });
    }

    fn fetch_failed(&mut self, worker: &str, key: &str, dep: &str, holder: &str) {
        let (task, dep) = (self.id(key), self.id(dep));
        self.worker_says(
            worker,
            FromWorker::FetchFailed {
                task,
                dep,
                holder: address(holder),
                reason: "connection refused".into(),
            },
        );
    }

    fn stolen(&mut self, worker: &str, keys: &[&str]) {
        let tasks = keys.iter().map(|k| self.id(k)).collect();
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
    fn to_client(&mut self, client: ClientId) -> Vec<ToClient> {
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

    /// Fails the test if anything sent is still untaken: every message must be expected.
    fn assert_nothing_else_sent(&self) {
        assert!(self.sent.is_empty(), "unexpected messages: {:#?}", self.sent);
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

// ----- graphs run to completion -----

#[test]
fn chain_runs_to_completion_and_releases_intermediates() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"]), task_on("c", &["b"])], &["c"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    assert_eq!(cl.state("b"), TaskState::Waiting);

    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w1"), ["b"]);
    assert!(cl.releases_sent_to("w1").is_empty(), "b still needs a");

    cl.finish("w1", "b", 20);
    assert_eq!(cl.releases_sent_to("w1"), ["a"], "nothing needs a once b is done");
    assert_eq!(cl.computes_sent_to("w1"), ["c"]);

    cl.finish("w1", "c", 30);
    assert_eq!(cl.releases_sent_to("w1"), ["b"]);
    assert_eq!(
        cl.to_client(c),
        [ToClient::KeyFinished {
            key: "c".into(),
            nbytes: 30
        }],
        "the client hears about the wanted key only"
    );
    assert_eq!(cl.state("c"), TaskState::Memory);
    assert_eq!(cl.core.holders_of("c"), ["w1"]);
    cl.assert_nothing_else_sent();

    cl.release(c, &["c"]);
    assert_eq!(cl.releases_sent_to("w1"), ["c"]);
    assert_eq!(cl.core.task_count(), 0, "released tasks are forgotten");
    assert!(!cl.core.is_idle(), "the client is still connected");
    cl.assert_nothing_else_sent();
}

#[test]
fn diamond_runs_to_completion_and_releases_the_root_after_both_branches() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 2);
    cl.add_worker("w2", 2);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![
            task("a"),
            task_on("b", &["a"]),
            task_on("c", &["a"]),
            task_on("d", &["b", "c"]),
        ],
        &["d"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 100);
    // Both branches go where their input is.
    assert_eq!(cl.computes_sent_to("w1"), ["b", "c"]);
    cl.finish("w1", "b", 5);
    assert!(cl.releases_sent_to("w1").is_empty(), "c still needs a");
    assert_eq!(cl.state("d"), TaskState::Waiting);
    cl.finish("w1", "c", 5);
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["d"]);
    cl.finish("w1", "d", 7);
    let mut released = cl.releases_sent_to("w1");
    released.sort();
    assert_eq!(released, ["b", "c"]);
    assert_eq!(cl.finished_to_client(c), ["d"]);
    cl.assert_nothing_else_sent();
    assert_eq!(cl.core.task_count(), 4);

    cl.release(c, &["d"]);
    assert_eq!(cl.releases_sent_to("w1"), ["d"]);
    assert_eq!(cl.core.task_count(), 0);
}

#[test]
fn every_wanted_key_is_reported_once_and_kept_until_released() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["a", "b"]);
    cl.computes_sent_to("w1");
    cl.finish("w1", "a", 1);
    cl.finish("w1", "b", 2);
    assert_eq!(cl.finished_to_client(c), ["a", "b"]);
    assert!(cl.releases_sent_to("w1").is_empty(), "a is wanted");
    cl.computes_sent_to("w1");
    cl.assert_nothing_else_sent();

    cl.release(c, &["b"]);
    assert_eq!(cl.releases_sent_to("w1"), ["b"]);
    assert_eq!(cl.state("a"), TaskState::Memory);
    assert_eq!(cl.core.task_count(), 1);
    cl.release(c, &["a"]);
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    assert_eq!(cl.core.task_count(), 0);
}

#[test]
fn released_key_can_be_submitted_and_run_again() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    cl.finish("w1", "a", 1);
    cl.release(c, &["a"]);
    assert_eq!(cl.core.task_count(), 0);
    cl.take(|_| true);

    cl.submit(c, vec![task("a")], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
}

// ----- placement -----

#[test]
fn task_goes_to_the_worker_holding_most_of_its_input_bytes() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![task("small"), task("big"), task_on("c", &["small", "big"])],
        &["c"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["small"]);
    assert_eq!(cl.computes_sent_to("w2"), ["big"]);
    cl.finish("w1", "small", 10);
    cl.finish("w2", "big", 1000);
    assert!(cl.computes_sent_to("w1").is_empty());
    let sent = cl.compute_msgs_to("w2");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].key, "c");
    // The worker is told where to fetch the other input, in the task's input order.
    let inputs: Vec<(&str, u64, &[String])> = sent[0]
        .deps
        .iter()
        .map(|d| (d.key.as_str(), d.nbytes, d.holders.as_slice()))
        .collect();
    assert_eq!(
        inputs,
        [("small", 10, &[address("w1")][..]), ("big", 1000, &[address("w2")][..])]
    );
}

#[test]
fn independent_tasks_spread_by_load() {
    let mut cl = Cluster::new();
    for w in ["w1", "w2", "w3"] {
        cl.add_worker(w, 1);
    }
    let c = cl.add_client();
    let keys = ["t0", "t1", "t2", "t3", "t4", "t5"];
    cl.submit(c, keys.iter().map(|k| task(k)).collect(), &keys);
    assert_eq!(cl.computes_sent_to("w1"), ["t0", "t3"]);
    assert_eq!(cl.computes_sent_to("w2"), ["t1", "t4"]);
    assert_eq!(cl.computes_sent_to("w3"), ["t2", "t5"]);
}

#[test]
fn load_counts_threads_not_tasks() {
    let mut cl = Cluster::new();
    cl.add_worker("big", 4);
    cl.add_worker("small", 1);
    let c = cl.add_client();
    let keys = ["t0", "t1", "t2", "t3", "t4"];
    cl.submit(c, keys.iter().map(|k| task(k)).collect(), &keys);
    assert_eq!(cl.computes_sent_to("big"), ["t0", "t2", "t3", "t4"]);
    assert_eq!(cl.computes_sent_to("small"), ["t1"]);
}

#[test]
fn worker_queue_depth_is_respected_and_the_rest_waits_for_a_slot() {
    let mut cl = Cluster::with_config(config(|c| c.queue_per_thread = 1));
    cl.add_worker("w1", 2);
    let c = cl.add_client();
    let keys: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    cl.submit(c, keys.iter().map(|k| task(k)).collect(), &keys);
    // 2 threads and 1 queued task per thread.
    assert_eq!(cl.computes_sent_to("w1"), ["t0", "t1", "t2", "t3"]);
    for k in &keys[4..] {
        assert_eq!(cl.state(k), TaskState::Ready, "{k} waits on the scheduler");
    }
    cl.finish("w1", "t1", 1);
    assert_eq!(cl.computes_sent_to("w1"), ["t4"], "one slot freed, one task sent");
    cl.fail("w1", "t0", boom());
    assert_eq!(cl.computes_sent_to("w1"), ["t5"], "a failure frees a slot too");
}

#[test]
fn ready_tasks_wait_for_a_worker_to_join() {
    let mut cl = Cluster::new();
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task("b")], &["a", "b"]);
    assert_eq!(cl.state("a"), TaskState::Ready);
    cl.add_worker("w1", 1);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b"]);
}

// ----- resources and restrictions -----

#[test]
fn gpu_worker_gets_one_gpu_task_at_a_time() {
    let mut cl = Cluster::new();
    cl.add_worker_with("gpu", 4, &[("GPU", 1.0)]);
    cl.add_worker("cpu", 4);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![
            task("g1").needs("GPU", 1.0),
            task("g2").needs("GPU", 1.0),
            task("g3").needs("GPU", 1.0),
            task("plain"),
        ],
        &["g1", "g2", "g3", "plain"],
    );
    assert_eq!(cl.computes_sent_to("gpu"), ["g1"]);
    assert_eq!(cl.computes_sent_to("cpu"), ["plain"]);
    assert_eq!(cl.state("g2"), TaskState::Ready);
    assert_eq!(cl.state("g3"), TaskState::Ready);

    cl.finish("gpu", "g1", 1);
    assert_eq!(cl.computes_sent_to("gpu"), ["g2"]);
    cl.fail("gpu", "g2", boom());
    assert_eq!(cl.computes_sent_to("gpu"), ["g3"], "a failed task gives back its GPU");
    assert!(cl.computes_sent_to("cpu").is_empty());
}

#[test]
fn task_needing_a_resource_no_worker_has_stays_ready() {
    let mut cl = Cluster::new();
    cl.add_worker_with("w1", 2, &[("GPU", 1.0)]);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![
            task("fpga").needs("FPGA", 1.0),
            task("two-gpus").needs("GPU", 2.0),
            task("x"),
        ],
        &["fpga", "two-gpus", "x"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["x"], "others still run");
    assert_eq!(cl.state("fpga"), TaskState::Ready);
    assert_eq!(cl.state("two-gpus"), TaskState::Ready);

    cl.add_worker_with("w2", 1, &[("FPGA", 1.0), ("GPU", 2.0)]);
    let mut sent = cl.computes_sent_to("w2");
    sent.sort();
    assert_eq!(sent, ["fpga", "two-gpus"]);
}

#[test]
fn restricted_task_runs_only_on_the_named_worker() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![task("here").only_on(&["w2"]), task("later").only_on(&["w9"])],
        &["here", "later"],
    );
    assert_eq!(cl.computes_sent_to("w2"), ["here"]);
    assert!(cl.computes_sent_to("w1").is_empty());
    assert_eq!(cl.state("later"), TaskState::Ready);

    cl.add_worker("w9", 1);
    assert_eq!(cl.computes_sent_to("w9"), ["later"]);
}

#[test]
fn restriction_by_peer_address_works_too() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a").only_on(&[&address("w2")])], &["a"]);
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
}

// ----- priorities -----

#[test]
fn higher_priority_ready_tasks_are_assigned_first() {
    let mut cl = Cluster::with_config(config(|c| c.queue_per_thread = 0));
    let c = cl.add_client();
    cl.submit(
        c,
        vec![
            task("low").priority(-1),
            task("first-default"),
            task("high").priority(10),
            task("mid").priority(5),
            task("second-default"),
        ],
        &["low", "first-default", "high", "mid", "second-default"],
    );
    cl.add_worker("w1", 1);
    let mut order = Vec::new();
    for _ in 0..5 {
        let sent = cl.computes_sent_to("w1");
        assert_eq!(sent.len(), 1, "one slot, one task at a time");
        cl.finish("w1", &sent[0], 1);
        order.extend(sent);
    }
    assert_eq!(
        order,
        ["high", "mid", "first-default", "second-default", "low"],
        "by priority, then first come first served"
    );
}

#[test]
fn priority_is_passed_to_the_worker() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a").priority(7)], &["a"]);
    assert_eq!(cl.compute_msgs_to("w1")[0].priority, 7);
}

// ----- retries and errors -----

#[test]
fn failed_task_with_retries_runs_again_then_succeeds() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a").retries(2)], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.fail("w1", "a", boom());
    assert_eq!(cl.computes_sent_to("w1"), ["a"], "first retry");
    assert!(cl.erred_to_client(c).is_empty());
    cl.fail("w1", "a", boom());
    assert_eq!(cl.computes_sent_to("w1"), ["a"], "second retry");
    cl.finish("w1", "a", 3);
    assert_eq!(cl.finished_to_client(c), ["a"]);
    assert!(cl.erred_to_client(c).is_empty());
    assert_eq!(cl.state("a"), TaskState::Memory);
}

#[test]
fn exhausted_retries_err_the_task_and_every_dependent() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![
            task("a").retries(1),
            task_on("b", &["a"]),
            task_on("c", &["b"]),
            task_on("d", &["a"]),
            task("other"),
        ],
        &["c", "d", "other"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["a", "other"]);
    cl.fail("w1", "a", boom());
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.fail("w1", "a", boom());
    assert!(cl.computes_sent_to("w1").is_empty());

    assert_eq!(cl.state("a"), TaskState::Erred(Box::new(boom())));
    assert_eq!(cl.state("b"), TaskState::Erred(Box::new(dependency("a", boom()))));
    let mut told = cl.erred_to_client(c);
    told.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        told,
        [
            ("c".to_string(), dependency("a", boom())),
            ("d".to_string(), dependency("a", boom())),
        ],
        "dependents name the task that failed first, not their direct input"
    );
    assert_eq!(
        cl.state("other"),
        TaskState::Processing {
            worker: cl.worker("w1"),
            started: false,
        }
    );

    // Submitting a dependent of an erred key errs it at once.
    cl.submit(c, vec![task_on("e", &["a"])], &["e"]);
    assert_eq!(cl.erred_to_client(c), [("e".to_string(), dependency("a", boom()))]);
    assert!(cl.computes_sent_to("w1").is_empty());

    cl.release(c, &["c", "d", "e"]);
    assert_eq!(cl.core.task_count(), 1, "only `other` is left");
}

#[test]
fn erred_wanted_key_is_reported_to_a_client_that_asks_later() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c1 = cl.add_client();
    let c2 = cl.add_client();
    cl.submit(c1, vec![task("a")], &["a"]);
    cl.fail("w1", "a", boom());
    assert_eq!(cl.erred_to_client(c1), [("a".to_string(), boom())]);
    cl.submit(c2, vec![task("a")], &["a"]);
    assert_eq!(cl.erred_to_client(c2), [("a".to_string(), boom())]);
}

// ----- cancellation -----

#[test]
fn cancelling_a_waiting_task_leaves_wanted_inputs_running() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["a", "b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.cancel(c, &["b"]);
    assert_eq!(cl.erred_to_client(c), [("b".to_string(), TaskError::Cancelled)]);
    assert_eq!(cl.state("b"), TaskState::Erred(Box::new(TaskError::Cancelled)));
    cl.assert_nothing_else_sent();
    assert_eq!(cl.processing_on("a"), "w1");

    cl.finish("w1", "a", 1);
    assert_eq!(cl.finished_to_client(c), ["a"]);
    assert!(cl.computes_sent_to("w1").is_empty(), "the cancelled task never runs");
}

#[test]
fn cancelling_a_waiting_task_stops_inputs_nobody_needs() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.cancel(c, &["b"]);
    assert_eq!(cl.erred_to_client(c), [("b".to_string(), TaskError::Cancelled)]);
    assert_eq!(cl.cancels_sent_to("w1"), ["a"]);
    assert_eq!(cl.state("a"), TaskState::Released);
    cl.assert_nothing_else_sent();

    cl.release(c, &["b"]);
    assert_eq!(cl.core.task_count(), 0);
}

#[test]
fn cancelling_a_processing_task_tells_its_worker_and_errs_dependents() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![task("a"), task_on("b", &["a"]), task_on("c", &["b"])],
        &["a", "c"],
    );
    cl.computes_sent_to("w1");
    cl.start("w1", "a");
    cl.cancel(c, &["a"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["a"]);
    let mut told = cl.erred_to_client(c);
    told.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        told,
        [
            ("a".to_string(), TaskError::Cancelled),
            ("c".to_string(), dependency("a", TaskError::Cancelled)),
        ]
    );
    assert_eq!(
        cl.state("b"),
        TaskState::Erred(Box::new(dependency("a", TaskError::Cancelled)))
    );
    cl.assert_nothing_else_sent();

    // The slot is free again.
    cl.submit(c, vec![task("next")], &["next"]);
    assert_eq!(cl.computes_sent_to("w1"), ["next"]);
}

#[test]
fn cancelling_a_finished_or_unknown_key_changes_nothing() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    cl.finish("w1", "a", 1);
    cl.take(|_| true);
    cl.cancel(c, &["a", "nope"]);
    assert_eq!(cl.state("a"), TaskState::Memory);
    cl.assert_nothing_else_sent();
}

// ----- worker loss -----

#[test]
fn tasks_of_a_lost_worker_are_reassigned() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task("b"), task("c")], &["a", "b", "c"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "c"]);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
    cl.start("w1", "a");
    cl.lose_worker("w1");
    let mut sent = cl.computes_sent_to("w2");
    sent.sort();
    assert_eq!(sent, ["a", "c"]);
    assert_eq!(cl.core.worker_count(), 1);
    cl.finish("w2", "a", 1);
    cl.finish("w2", "b", 1);
    cl.finish("w2", "c", 1);
    let mut done = cl.finished_to_client(c);
    done.sort();
    assert_eq!(done, ["a", "b", "c"]);
}

#[test]
fn tasks_of_the_only_worker_wait_for_a_new_one() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    cl.lose_worker("w1");
    assert_eq!(cl.state("a"), TaskState::Ready);
    cl.add_worker("w2", 1);
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
}

#[test]
fn result_only_the_lost_worker_held_is_recomputed_for_a_waiting_dependent() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task("x"), task_on("b", &["a", "x"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    assert_eq!(cl.computes_sent_to("w2"), ["x"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.state("b"), TaskState::Waiting);

    cl.lose_worker("w1");
    assert_eq!(cl.computes_sent_to("w2"), ["a"], "a is computed again");
    assert_eq!(cl.state("b"), TaskState::Waiting);
    cl.finish("w2", "x", 10);
    assert_eq!(cl.state("b"), TaskState::Waiting, "b still waits for a");
    assert!(cl.computes_sent_to("w2").is_empty());
    cl.finish("w2", "a", 10);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
}

#[test]
fn running_dependent_whose_input_was_lost_is_stopped_until_the_input_is_recomputed() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"]).only_on(&["w2"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);

    cl.lose_worker("w1");
    assert_eq!(cl.cancels_sent_to("w2"), ["b"], "b cannot fetch a any more");
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
    assert_eq!(cl.state("b"), TaskState::Waiting);
    cl.finish("w2", "a", 10);
    let sent = cl.compute_msgs_to("w2");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].key, "b");
    assert_eq!(sent[0].deps[0].holders, [address("w2")]);
}

#[test]
fn lost_wanted_result_is_recomputed_with_its_released_inputs() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    cl.finish("w1", "a", 1);
    cl.finish("w1", "b", 1);
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    assert_eq!(cl.finished_to_client(c), ["b"]);

    cl.lose_worker("w1");
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
    assert_eq!(cl.state("b"), TaskState::Waiting);
    cl.finish("w2", "a", 1);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
    cl.finish("w2", "b", 1);
    assert_eq!(cl.core.holders_of("b"), ["w2"]);
}

#[test]
fn consumed_input_is_not_recomputed_when_its_worker_dies() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"]).only_on(&["w2"])], &["b"]);
    cl.finish("w1", "a", 1);
    cl.finish_fetched("w2", "b", 1, &["a"]);
    let mut released = cl.releases_sent_to("w1");
    released.extend(cl.releases_sent_to("w2"));
    assert_eq!(released, ["a", "a"], "both copies of a are dropped");
    cl.take(|_| true);
    cl.lose_worker("w1");
    assert_eq!(cl.state("a"), TaskState::Released);
    cl.assert_nothing_else_sent();
}

#[test]
fn result_held_by_another_worker_too_is_not_recomputed() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![task("a"), task_on("b", &["a"]).only_on(&["w2"]), task_on("c", &["a"])],
        &["a", "b", "c"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 5);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["c"]);
    cl.finish_fetched("w2", "b", 1, &["a"]);
    assert_eq!(cl.core.holders_of("a"), ["w1", "w2"]);
    cl.lose_worker("w1");
    assert_eq!(cl.core.holders_of("a"), ["w2"]);
    assert_eq!(cl.state("a"), TaskState::Memory);
    assert_eq!(cl.computes_sent_to("w2"), ["c"], "only the running task moves");
}

#[test]
fn task_started_on_too_many_workers_that_died_errs_as_killed_worker() {
    let mut cl = Cluster::with_config(config(|c| {
        c.allowed_failures = 1;
        c.queue_behind_inputs = false;
    }));
    for w in ["w1", "w2", "w3"] {
        cl.add_worker(w, 1);
    }
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.start("w1", "a");
    cl.lose_worker("w1");
    assert_eq!(cl.computes_sent_to("w2"), ["a"], "one death is allowed");
    cl.start("w2", "a");
    cl.lose_worker("w2");

    let killed = TaskError::KilledWorker {
        workers: vec!["w1".into(), "w2".into()],
    };
    assert_eq!(cl.state("a"), TaskState::Erred(Box::new(killed.clone())));
    assert_eq!(cl.erred_to_client(c), [("b".to_string(), dependency("a", killed))]);
    assert!(cl.computes_sent_to("w3").is_empty());
}

#[test]
fn killed_worker_is_counted_with_the_default_allowance() {
    let mut cl = Cluster::new();
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    let names = ["w1", "w2", "w3", "w4"];
    for (i, w) in names.iter().enumerate() {
        cl.add_worker(w, 1);
        assert_eq!(cl.computes_sent_to(w), ["a"]);
        cl.start(w, "a");
        cl.lose_worker(w);
        if i < 3 {
            assert!(matches!(cl.state("a"), TaskState::Ready));
        }
    }
    assert_eq!(
        cl.erred_to_client(c),
        [(
            "a".to_string(),
            TaskError::KilledWorker {
                workers: strings(&names)
            }
        )]
    );
}

#[test]
fn task_assigned_but_not_started_on_a_dead_worker_is_not_suspicious() {
    let mut cl = Cluster::with_config(config(|c| c.allowed_failures = 0));
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    cl.add_worker("w3", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.lose_worker("w1");
    assert_eq!(
        cl.computes_sent_to("w2"),
        ["a"],
        "never started, so not held against it"
    );
    cl.start("w2", "a");
    cl.lose_worker("w2");
    assert_eq!(
        cl.erred_to_client(c),
        [(
            "a".to_string(),
            TaskError::KilledWorker {
                workers: vec!["w2".into()]
            }
        )],
        "only the worker it started on is named"
    );
}

#[test]
fn started_from_another_worker_does_not_make_a_task_suspicious() {
    let mut cl = Cluster::with_config(config(|c| c.allowed_failures = 0));
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.start("w2", "a");
    cl.lose_worker("w1");
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
}

/// Regression: the dead worker was still named as a holder while the killed task's
/// inputs were released, and releasing them looked the dead worker up.
#[test]
fn killed_task_whose_input_was_on_the_dead_worker_releases_the_input() {
    let mut cl = Cluster::with_config(config(|c| c.allowed_failures = 0));
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b"]);
    cl.start("w1", "b");
    cl.lose_worker("w1");
    let killed = TaskError::KilledWorker {
        workers: vec!["w1".into()],
    };
    assert_eq!(cl.erred_to_client(c), [("b".to_string(), killed)]);
    assert_eq!(cl.state("a"), TaskState::Released);
    assert!(cl.computes_sent_to("w2").is_empty(), "a is not needed any more");
    cl.release(c, &["b"]);
    assert_eq!(cl.core.task_count(), 0);
}

/// Regression: erring one task of the dead worker released a sibling input that was also
/// processing there, which the loop then met in an unexpected state.
#[test]
fn two_killed_inputs_of_one_dependent_on_the_same_dead_worker() {
    let mut cl = Cluster::with_config(config(|c| c.allowed_failures = 0));
    cl.add_worker("w1", 2);
    let c = cl.add_client();
    cl.submit(c, vec![task("t"), task("u"), task_on("d", &["t", "u"])], &["d"]);
    cl.start("w1", "t");
    cl.start("w1", "u");
    cl.lose_worker("w1");
    let told = cl.erred_to_client(c);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].0, "d");
    assert!(matches!(
        &told[0].1,
        TaskError::Dependency { error, .. } if matches!(**error, TaskError::KilledWorker { .. })
    ));
}

#[test]
fn messages_from_a_lost_worker_are_ignored() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.lose_worker("w1");
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
    cl.finish("w1", "a", 1);
    cl.fail("w1", "a", boom());
    cl.lose_worker("w1");
    assert_eq!(cl.processing_on("a"), "w2");
    cl.assert_nothing_else_sent();
}

// ----- heartbeats -----

#[test]
fn silent_worker_is_dropped_on_tick_and_its_tasks_reassigned() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task("b")], &["a", "b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);

    cl.advance(Duration::from_secs(6));
    cl.heartbeat("w2");
    cl.tick();
    assert!(cl.closed_workers().is_empty(), "6 s of silence is within the timeout");

    cl.advance(Duration::from_secs(5));
    cl.tick();
    assert_eq!(cl.closed_workers(), ["w1"]);
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
    assert_eq!(cl.core.worker_count(), 1);

    // Any message counts as a sign of life.
    cl.advance(Duration::from_secs(9));
    cl.finish("w2", "b", 1);
    cl.advance(Duration::from_secs(9));
    cl.tick();
    assert!(cl.closed_workers().is_empty());
}

// ----- stealing -----

/// Five tasks queued on a one-thread worker, the first of them started.
fn busy_worker() -> (Cluster, ClientId) {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    let keys = ["t0", "t1", "t2", "t3", "t4"];
    cl.submit(c, keys.iter().map(|k| task(k)).collect(), &keys);
    assert_eq!(cl.computes_sent_to("w1"), keys);
    cl.start("w1", "t0");
    (cl, c)
}

#[test]
fn idle_worker_steals_queued_unstarted_tasks() {
    let (mut cl, _) = busy_worker();
    cl.add_worker("w2", 1);
    assert_eq!(cl.steals_sent_to("w1"), ["t4", "t3"], "half the queue, newest first");
    cl.stolen("w1", &["t4", "t3"]);
    assert_eq!(cl.computes_sent_to("w2"), ["t4", "t3"]);
    assert_eq!(cl.processing_on("t3"), "w2");
    assert_eq!(cl.processing_on("t1"), "w1");
    cl.assert_nothing_else_sent();
}

#[test]
fn tasks_that_started_before_the_steal_stay_put() {
    let (mut cl, _) = busy_worker();
    cl.add_worker("w2", 1);
    assert_eq!(cl.steals_sent_to("w1"), ["t4", "t3"]);
    cl.start("w1", "t3");
    cl.stolen("w1", &["t4"]);
    assert_eq!(cl.computes_sent_to("w2"), ["t4"]);
    assert_eq!(cl.processing_on("t3"), "w1");
    assert_eq!(
        cl.state("t3"),
        TaskState::Processing {
            worker: cl.worker("w1"),
            started: true,
        }
    );
}

#[test]
fn finishing_worker_steals_queued_tasks() {
    let mut cl = Cluster::with_config(config(|c| c.queue_per_thread = 5));
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    let keys: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    cl.submit(c, keys.iter().map(|k| task(k)).collect(), &keys);
    let on_w1 = cl.computes_sent_to("w1");
    let on_w2 = cl.computes_sent_to("w2");
    assert_eq!((on_w1.len(), on_w2.len()), (6, 6));
    // w2 races through its queue while w1 is stuck on its first task.
    cl.start("w1", &on_w1[0]);
    for k in &on_w2 {
        cl.finish("w2", k, 1);
    }
    let stolen = cl.steals_sent_to("w1");
    assert!(!stolen.is_empty(), "w2 went idle while w1 has a queue");
    assert!(!stolen.contains(&on_w1[0]), "the started task is not stolen");
    let refs: Vec<&str> = stolen.iter().map(String::as_str).collect();
    cl.stolen("w1", &refs);
    assert_eq!(cl.computes_sent_to("w2"), stolen);
}

#[test]
fn restricted_tasks_are_not_stolen() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    let keys = ["t0", "t1", "t2", "t3", "t4"];
    cl.submit(c, keys.iter().map(|k| task(k).only_on(&["w1"])).collect(), &keys);
    assert_eq!(cl.computes_sent_to("w1"), keys);
    cl.add_worker("w2", 1);
    assert!(cl.steals_sent_to("w1").is_empty());
}

#[test]
fn stolen_task_goes_back_to_ready_when_the_thief_is_gone() {
    let (mut cl, _) = busy_worker();
    cl.add_worker("w2", 1);
    assert_eq!(cl.steals_sent_to("w1"), ["t4", "t3"]);
    cl.lose_worker("w2");
    cl.stolen("w1", &["t4", "t3"]);
    // Nobody else has room for them but w1 itself.
    let mut back = cl.computes_sent_to("w1");
    back.sort();
    assert_eq!(back, ["t3", "t4"]);
}

/// Regression: a ready task that no worker can run kept the scheduler from ever stealing.
#[test]
fn stealing_is_not_blocked_by_a_ready_task_no_worker_can_run() {
    let (mut cl, c) = busy_worker();
    cl.submit(c, vec![task("fpga").needs("FPGA", 1.0)], &["fpga"]);
    assert_eq!(cl.state("fpga"), TaskState::Ready);
    cl.add_worker("w2", 1);
    assert_eq!(cl.steals_sent_to("w1"), ["t4", "t3"]);
}

// ----- fetch failures -----

#[test]
fn fetch_failure_drops_the_holder_and_places_the_task_again() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    cl.add_worker("w3", 1);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![
            task("a"),
            task_on("b", &["a"]).only_on(&["w2"]),
            task_on("c", &["a"]).only_on(&["w3"]),
        ],
        &["b", "c"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
    assert_eq!(cl.computes_sent_to("w3"), ["c"]);
    cl.finish_fetched("w2", "b", 1, &["a"]);
    assert_eq!(cl.core.holders_of("a"), ["w1", "w2"]);

    cl.fetch_failed("w3", "c", "a", "w1");
    assert_eq!(cl.core.holders_of("a"), ["w2"]);
    let sent = cl.compute_msgs_to("w3");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].key, "c");
    assert_eq!(sent[0].deps[0].holders, [address("w2")]);
    assert!(cl.computes_sent_to("w1").is_empty(), "a is not recomputed");
}

#[test]
fn fetch_failure_from_the_last_holder_recomputes_the_input() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"]).only_on(&["w2"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);

    cl.fetch_failed("w2", "b", "a", "w1");
    assert!(cl.core.holders_of("a").is_empty());
    assert_eq!(cl.state("b"), TaskState::Waiting);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
}

#[test]
fn fetch_failure_naming_an_unknown_holder_places_the_task_again() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b"]);
    cl.fetch_failed("w1", "b", "a", "ghost");
    assert_eq!(cl.core.holders_of("a"), ["w1"]);
    assert_eq!(cl.computes_sent_to("w1"), ["b"]);
}

// ----- submission -----

fn assert_rejected(cl: &mut Cluster, c: ClientId, batch: &[&str], naming: &str) {
    let told = cl.erred_to_client(c);
    let keys: Vec<&str> = told.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, batch, "every key of the batch is rejected");
    for (_, e) in &told {
        let reason = rejected_reason(e);
        assert!(reason.contains(naming), "{reason:?} names {naming:?}");
    }
    assert_eq!(cl.core.task_count(), 0, "nothing of a rejected batch is kept");
}

#[test]
fn duplicate_key_in_a_batch_is_rejected() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task("x"), task("x")], &["a", "x"]);
    assert_rejected(&mut cl, c, &["a", "x", "x"], "\"x\"");
    // The wanted list of a rejected batch is not answered separately.
    cl.assert_nothing_else_sent();
}

#[test]
fn unknown_dependency_is_rejected() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["nope"])], &["b"]);
    assert_rejected(&mut cl, c, &["a", "b"], "\"nope\"");
    assert!(cl.computes_sent_to("w1").is_empty());
}

#[test]
fn dependency_cycle_is_rejected() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![
            task("root"),
            task_on("x", &["root", "z"]),
            task_on("y", &["x"]),
            task_on("z", &["y"]),
        ],
        &["z"],
    );
    assert_rejected(&mut cl, c, &["root", "x", "y", "z"], "cycle");
    let told = cl.to_client(c);
    assert!(told.is_empty());
    assert!(cl.computes_sent_to("w1").is_empty());
}

#[test]
fn cycle_reason_names_the_keys_in_it() {
    let mut cl = Cluster::new();
    let c = cl.add_client();
    cl.submit(c, vec![task_on("p", &["q"]), task_on("q", &["p"])], &["p"]);
    let told = cl.erred_to_client(c);
    let reason = rejected_reason(&told[0].1);
    assert!(reason.contains('p') && reason.contains('q'), "{reason}");
}

#[test]
fn self_dependency_is_rejected() {
    let mut cl = Cluster::new();
    let c = cl.add_client();
    cl.submit(c, vec![task_on("me", &["me"])], &["me"]);
    assert_rejected(&mut cl, c, &["me"], "\"me\"");
}

#[test]
fn empty_key_is_rejected() {
    let mut cl = Cluster::new();
    let c = cl.add_client();
    cl.submit(c, vec![task("")], &[""]);
    assert_rejected(&mut cl, c, &[""], "empty");
}

#[test]
fn wanting_an_unknown_key_is_rejected_for_that_key_only() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a", "ghost"]);
    let told = cl.erred_to_client(c);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].0, "ghost");
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
}

#[test]
fn resubmitting_a_known_key_does_not_run_it_twice() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c1 = cl.add_client();
    let c2 = cl.add_client();
    cl.submit(c1, vec![task("a")], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.submit(c1, vec![task("a")], &["a"]);
    cl.submit(c2, vec![task("a"), task_on("b", &["a"])], &["a", "b"]);
    assert!(cl.computes_sent_to("w1").is_empty(), "a is already processing");

    cl.finish("w1", "a", 4);
    assert_eq!(cl.finished_to_client(c1), ["a"], "told once, though asked twice");
    assert_eq!(cl.finished_to_client(c2), ["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["b"]);

    // Asking for a finished key answers at once.
    let c3 = cl.add_client();
    cl.submit(c3, vec![task("a")], &["a"]);
    assert_eq!(
        cl.to_client(c3),
        [ToClient::KeyFinished {
            key: "a".into(),
            nbytes: 4
        }]
    );
    assert!(cl.computes_sent_to("w1").is_empty());
}

#[test]
fn unwanted_submitted_tasks_are_dropped_at_once() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &[]);
    assert_eq!(cl.core.task_count(), 0);
    cl.assert_nothing_else_sent();
}

// ----- scatter -----

#[test]
fn scatter_puts_data_on_a_worker_and_answers_when_stored() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    let req = cl.scatter(c, &[("x", b"hello")]);
    assert_eq!(cl.puts_sent_to("w1"), ["x"]);
    assert!(cl.to_client(c).is_empty(), "not stored yet");
    cl.stored("w1", "x", 5);
    assert_eq!(
        cl.to_client(c),
        [
            ToClient::KeyFinished {
                key: "x".into(),
                nbytes: 5
            },
            ToClient::Scattered { req, result: Ok(()) }
        ]
    );
    assert_eq!(cl.core.holders_of("x"), ["w1"]);
}

#[test]
fn scatter_spreads_items_and_is_answered_once_all_are_stored() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    let req = cl.scatter(c, &[("x", b"1"), ("y", b"2")]);
    assert_eq!(cl.puts_sent_to("w1"), ["x"]);
    assert_eq!(cl.puts_sent_to("w2"), ["y"]);
    cl.stored("w2", "y", 1);
    assert_eq!(cl.finished_to_client(c), ["y"]);
    cl.assert_nothing_else_sent();
    cl.stored("w1", "x", 1);
    assert_eq!(cl.finished_to_client(c), ["x"]);
    assert_eq!(cl.to_client(c), [ToClient::Scattered { req, result: Ok(()) }]);
}

#[test]
fn scatter_without_workers_or_over_a_known_key_is_refused() {
    let mut cl = Cluster::new();
    let c = cl.add_client();
    let req = cl.scatter(c, &[("x", b"1")]);
    assert!(matches!(&cl.to_client(c)[..], [ToClient::Scattered { req: r, result: Err(_) }] if *r == req));

    cl.add_worker("w1", 1);
    cl.submit(c, vec![task("a")], &["a"]);
    cl.take(|_| true);
    let req = cl.scatter(c, &[("new", b"1"), ("a", b"2")]);
    assert!(
        matches!(&cl.to_client(c)[..], [ToClient::Scattered { req: r, result: Err(e) }] if *r == req && e.contains("\"a\""))
    );
    assert!(cl.puts_sent_to("w1").is_empty());
    assert_eq!(cl.core.task_count(), 1);
}

/// Regression: the same key twice in one scatter made two tasks under one key.
#[test]
fn scatter_with_a_key_twice_is_refused() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    let req = cl.scatter(c, &[("x", b"1"), ("x", b"2")]);
    assert!(
        matches!(&cl.to_client(c)[..], [ToClient::Scattered { req: r, result: Err(e) }] if *r == req && e.contains("\"x\""))
    );
    assert!(cl.puts_sent_to("w1").is_empty());
    assert_eq!(cl.core.task_count(), 0);
}

#[test]
fn dependent_of_scattered_data_runs_where_the_data_is() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.scatter(c, &[("x", b"hello")]);
    assert_eq!(cl.puts_sent_to("w1"), ["x"]);
    cl.stored("w1", "x", 5);
    cl.to_client(c);
    cl.submit(c, vec![task_on("b", &["x"])], &["b"]);
    let sent = cl.compute_msgs_to("w1");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].deps[0].key, "x");
    assert_eq!(sent[0].deps[0].holders, [address("w1")]);
    cl.finish("w1", "b", 1);
    assert_eq!(cl.finished_to_client(c), ["b"]);
    assert!(cl.releases_sent_to("w1").is_empty(), "the client still wants x");
}

/// Regression: a dependent submitted before its scattered input was stored waited forever.
#[test]
fn dependent_submitted_before_the_scatter_is_stored_runs_after_it() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.scatter(c, &[("x", b"hello")]);
    cl.submit(c, vec![task_on("b", &["x"])], &["b"]);
    assert_eq!(cl.state("b"), TaskState::Waiting);
    cl.stored("w1", "x", 5);
    assert_eq!(cl.computes_sent_to("w1"), ["b"]);
}

#[test]
fn losing_the_holder_of_scattered_data_errs_its_dependents_with_lost_data() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.scatter(c, &[("x", b"hello")]);
    cl.stored("w1", "x", 5);
    cl.submit(c, vec![task("y").only_on(&["w2"]), task_on("b", &["x", "y"])], &["b"]);
    cl.to_client(c);
    assert_eq!(cl.computes_sent_to("w2"), ["y"]);
    assert_eq!(cl.state("b"), TaskState::Waiting);

    cl.lose_worker("w1");
    let lost = TaskError::LostData { worker: "w1".into() };
    let mut told = cl.erred_to_client(c);
    told.sort_by(|p, q| p.0.cmp(&q.0));
    assert_eq!(
        told,
        [
            ("b".to_string(), dependency("x", lost.clone())),
            ("x".to_string(), lost)
        ]
    );
    assert!(
        cl.computes_sent_to("w2").is_empty(),
        "scattered data has no spec to rerun"
    );
    assert_eq!(cl.cancels_sent_to("w2"), ["y"], "y was only needed by b");
}

/// Regression: a scatter whose worker died before storing the data was never answered.
#[test]
fn scatter_is_answered_when_its_worker_dies_before_storing() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    let req = cl.scatter(c, &[("x", b"hello")]);
    cl.lose_worker("w1");
    let told = cl.to_client(c);
    assert!(
        told.iter()
            .any(|m| matches!(m, ToClient::Scattered { req: r, result: Err(_) } if *r == req)),
        "{told:?}"
    );
    assert!(told.contains(&ToClient::KeyErred {
        key: "x".into(),
        error: TaskError::LostData { worker: "w1".into() }
    }));
}

// ----- clients leaving -----

#[test]
fn client_disconnect_releases_results_and_cancels_work_nobody_needs() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![task("done"), task("running"), task_on("waiting", &["running"])],
        &["done", "waiting"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["done", "running"]);
    cl.finish("w1", "done", 1);
    cl.to_client(c);
    cl.disconnect(c);
    assert_eq!(cl.releases_sent_to("w1"), ["done"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["running"]);
    assert_eq!(cl.core.task_count(), 0);
    assert!(cl.core.is_idle());
    cl.assert_nothing_else_sent();
}

#[test]
fn results_shared_by_two_clients_survive_one_leaving() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    let c1 = cl.add_client();
    let c2 = cl.add_client();
    cl.submit(c1, vec![task("a"), task_on("b", &["a"])], &["b"]);
    cl.submit(c2, vec![task("a"), task_on("c", &["a"])], &["c"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.disconnect(c1);
    cl.assert_nothing_else_sent();
    cl.finish("w1", "a", 1);
    assert_eq!(cl.computes_sent_to("w1"), ["c"]);
    cl.finish("w1", "c", 1);
    assert_eq!(cl.finished_to_client(c2), ["c"]);
    assert!(cl.to_client(c1).is_empty());
    assert_eq!(cl.core.task_count(), 2, "a is kept as the input of c; b is gone");
}

#[test]
fn messages_from_a_gone_client_are_ignored() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.disconnect(c);
    cl.submit(c, vec![task("a")], &["a"]);
    assert_eq!(cl.core.task_count(), 0);
    cl.assert_nothing_else_sent();
}

// ----- late and stale messages -----

#[test]
fn late_finished_for_a_cancelled_task_drops_the_result() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    cl.computes_sent_to("w1");
    cl.cancel(c, &["a"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["a"]);
    cl.erred_to_client(c);
    cl.finish("w1", "a", 1);
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    assert_eq!(cl.state("a"), TaskState::Erred(Box::new(TaskError::Cancelled)));
    cl.fail("w1", "a", boom());
    cl.start("w1", "a");
    cl.assert_nothing_else_sent();
}

#[test]
fn late_finished_for_a_forgotten_task_drops_the_result() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    cl.computes_sent_to("w1");
    cl.release(c, &["a"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["a"]);
    assert_eq!(cl.core.task_count(), 0);
    cl.finish("w1", "a", 1);
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    cl.stolen("w1", &["a"]);
    cl.stored("w1", "a", 1);
    assert_eq!(cl.releases_sent_to("w1"), ["a"], "bytes nobody asked for are dropped");
    cl.fetch_failed("w1", "a", "a", "w1");
    cl.assert_nothing_else_sent();
    assert_eq!(cl.core.task_count(), 0);
}

#[test]
fn late_finished_from_the_worker_a_task_was_stolen_from() {
    let (mut cl, c) = busy_worker();
    cl.add_worker("w2", 1);
    assert_eq!(cl.steals_sent_to("w1"), ["t4", "t3"]);
    cl.stolen("w1", &["t4", "t3"]);
    assert_eq!(cl.computes_sent_to("w2"), ["t4", "t3"]);
    // w1 ran t4 anyway, say from a stale queue.
    cl.finish("w1", "t4", 1);
    assert_eq!(cl.releases_sent_to("w1"), ["t4"]);
    assert_eq!(cl.processing_on("t4"), "w2");
    assert!(cl.finished_to_client(c).is_empty());
    cl.finish("w2", "t4", 1);
    assert_eq!(cl.finished_to_client(c), ["t4"]);
    // And once it is in memory, a second late copy is kept as another holder.
    cl.finish("w1", "t4", 1);
    assert_eq!(cl.core.holders_of("t4"), ["w2", "w1"]);
    assert!(cl.finished_to_client(c).is_empty(), "told once");
}

#[test]
fn stolen_reply_for_tasks_not_asked_for_is_ignored() {
    let (mut cl, _) = busy_worker();
    cl.stolen("w1", &["t1", "t0"]);
    assert_eq!(cl.processing_on("t1"), "w1");
    assert_eq!(cl.processing_on("t0"), "w1");
}

#[test]
fn info_and_who_has_describe_the_cluster() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 2);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task("b")], &["a", "b"]);
    cl.finish("w1", "a", 42);
    cl.take(|_| true);
    cl.client_says(
        c,
        FromClient::WhoHas {
            req: RequestId(7),
            keys: strings(&["a", "b", "zz"]),
        },
    );
    let told = cl.to_client(c);
    let [ToClient::WhoHas { req, locations }] = &told[..] else {
        panic!("{told:?}")
    };
    assert_eq!(*req, RequestId(7));
    assert_eq!(locations[0].holders, [address("w1")]);
    assert_eq!(locations[0].nbytes, 42);
    assert!(locations[0].problem.is_none());
    assert!(locations[1]
        .problem
        .as_ref()
        .unwrap()
        .to_string()
        .contains("processing"));
    assert!(locations[2].problem.as_ref().unwrap().to_string().contains("unknown"));

    cl.client_says(c, FromClient::Info { req: RequestId(8) });
    let told = cl.to_client(c);
    let [ToClient::Info { info, .. }] = &told[..] else {
        panic!("{told:?}")
    };
    assert_eq!(info.workers.len(), 1);
    assert_eq!(info.workers[0].processing, 1);
    assert_eq!(info.workers[0].stored_bytes, 42);
    assert_eq!(info.tasks, [("memory".to_string(), 1), ("processing".to_string(), 1)]);
    assert_eq!(info.clients, 1);
}

/// Regression: a released scattered input was "recomputed" by sending its placeholder spec
/// to a worker when a result made from it was lost.
#[test]
fn released_scattered_input_is_never_sent_to_a_worker_to_compute() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.scatter(c, &[("x", b"hello")]);
    assert_eq!(cl.puts_sent_to("w1"), ["x"]);
    cl.stored("w1", "x", 5);
    cl.submit(c, vec![task_on("b", &["x"]).only_on(&["w2"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
    cl.finish_fetched("w2", "b", 1, &["x"]);
    // The usual pattern: scatter, compute on it, drop the scattered input.
    cl.release(c, &["x"]);
    cl.to_client(c);
    cl.take(|_| true);

    cl.lose_worker("w2");
    assert!(cl.computes_sent_to("w1").is_empty(), "x has no spec to run");
    let told = cl.erred_to_client(c);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0, "b");
    assert!(
        matches!(&told[0].1, TaskError::Dependency { key, .. } if key == "x"),
        "{told:?}"
    );
}

#[test]
fn cancelling_a_scatter_before_it_is_stored_answers_the_scatter() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    let req = cl.scatter(c, &[("x", b"hello")]);
    cl.puts_sent_to("w1");
    cl.cancel(c, &["x"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["x"]);
    let told = cl.to_client(c);
    assert!(
        told.iter()
            .any(|m| matches!(m, ToClient::Scattered { req: r, result: Err(_) } if *r == req)),
        "{told:?}"
    );
}

/// Regression: bytes stored for a scatter nobody wanted any more stayed on the worker.
#[test]
fn data_stored_after_its_client_left_is_dropped() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.scatter(c, &[("x", b"hello")]);
    assert_eq!(cl.puts_sent_to("w1"), ["x"]);
    cl.disconnect(c);
    cl.take(|_| true);
    assert_eq!(cl.core.task_count(), 0);
    cl.stored("w1", "x", 5);
    assert_eq!(cl.releases_sent_to("w1"), ["x"]);
    cl.assert_nothing_else_sent();
}

// ----- retirement (--lifetime, --drain) -----

fn replicates_sent_to(cl: &mut Cluster, worker: &str) -> Vec<(String, String)> {
    let id = cl.worker(worker);
    let msgs = cl.take(|o| matches!(o, Outgoing::Worker(w, ToWorker::Replicate { .. }) if *w == id));
    msgs.into_iter()
        .map(|o| match o {
            Outgoing::Worker(_, ToWorker::Replicate { task, from }) => (cl.key(task), from),
            _ => unreachable!(),
        })
        .collect()
}

fn shutdowns_sent_to(cl: &mut Cluster, worker: &str) -> usize {
    let id = cl.worker(worker);
    cl.take(|o| matches!(o, Outgoing::Worker(w, ToWorker::Shutdown { .. }) if *w == id))
        .len()
}

#[test]
fn a_retiring_worker_gives_back_queued_tasks_finishes_running_ones_and_hands_over_results() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("kept"), task("a"), task("b")], &["kept", "a", "b"]);
    let on_w1 = cl.computes_sent_to("w1");
    assert_eq!(on_w1.len(), 3);
    cl.start("w1", "kept");
    cl.finish("w1", "kept", 10);
    cl.start("w1", "a");
    cl.worker_says(
        "w1",
        FromWorker::Retire {
            reason: "its lifetime is up".into(),
        },
    );
    // The unstarted one is asked back; the running one runs on.
    assert_eq!(cl.steals_sent_to("w1"), ["b"]);
    cl.add_worker("w2", 1);
    cl.stolen("w1", &["b"]);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
    cl.finish("w1", "a", 5);
    // Nothing runs on w1 any more: its results go to w2, then it may leave.
    let mut copies = replicates_sent_to(&mut cl, "w2");
    copies.sort();
    assert_eq!(
        copies,
        [("a".to_string(), address("w1")), ("kept".to_string(), address("w1"))]
    );
    assert_eq!(shutdowns_sent_to(&mut cl, "w1"), 0);
    for k in ["a", "kept"] {
        let task = cl.id(k);
        cl.worker_says("w2", FromWorker::Replicated { task, nbytes: Some(1) });
    }
    assert_eq!(shutdowns_sent_to(&mut cl, "w1"), 1);
    cl.lose_worker("w1");
    // Nothing was lost: no recompute, the results are on w2.
    assert!(cl.computes_sent_to("w2").is_empty());
    assert_eq!(cl.state("kept"), TaskState::Memory);
    assert_eq!(cl.core.holders_of("kept"), ["w2"]);
}

#[test]
fn a_retiring_worker_with_no_one_to_take_its_results_just_leaves() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("x")], &["x"]);
    cl.computes_sent_to("w1");
    cl.start("w1", "x");
    cl.finish("w1", "x", 1);
    cl.worker_says("w1", FromWorker::Retire { reason: "drain".into() });
    assert_eq!(shutdowns_sent_to(&mut cl, "w1"), 1);
}

// ----- dependents queued behind their inputs on the worker computing them -----

/// `k0` <- `k1` <- ... <- `k{n-1}`, each task taking the previous one as input.
fn chain(n: usize) -> Vec<TaskDesc> {
    let mut tasks = vec![task("k0")];
    for i in 1..n {
        tasks.push(task_on(&format!("k{i}"), &[&format!("k{}", i - 1)]));
    }
    tasks
}

#[test]
fn a_chain_is_queued_on_the_worker_computing_its_head_and_finishes_without_new_placements() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"]), task_on("c", &["b"])], &["c"]);
    let sent = cl.compute_msgs_to("w1");
    assert_eq!(sent.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    // b's input is being computed there: no holder to fetch from.
    assert!(sent[1].deps[0].holders.is_empty());
    assert_eq!(cl.processing_on("b"), "w1");
    cl.finish("w1", "a", 10);
    cl.finish("w1", "b", 20);
    assert!(cl.computes_sent_to("w1").is_empty(), "everything was queued already");
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    cl.finish("w1", "c", 30);
    assert_eq!(cl.finished_to_client(c), ["c"]);
    assert_eq!(cl.releases_sent_to("w1"), ["b"]);
}

#[test]
fn a_dependent_with_inputs_on_two_workers_waits_until_one_is_done() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task("b"), task_on("s", &["a", "b"])], &["s"]);
    assert_eq!(cl.state("s"), TaskState::Waiting);
    let (on_a, on_b) = (cl.processing_on("a"), cl.processing_on("b"));
    assert_ne!(on_a, on_b);
    cl.finish(&on_a, "a", 1);
    // Its other input is computing on the other worker: it is queued there.
    assert_eq!(cl.processing_on("s"), on_b);
    assert_eq!(cl.computes_sent_to(&on_b).last().map(String::as_str), Some("s"));
    cl.finish(&on_b, "b", 1);
    cl.finish_fetched(&on_b, "s", 1, &["a"]);
    assert_eq!(cl.finished_to_client(c), ["s"]);
}

#[test]
fn a_failed_input_with_retries_takes_back_what_was_queued_behind_it() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![task("a").retries(1), task_on("b", &["a"]), task_on("c", &["b"])],
        &["c"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b", "c"]);
    cl.fail("w1", "a", TaskError::Other("flaky".into()));
    let mut cancelled = cl.cancels_sent_to("w1");
    cancelled.sort();
    assert_eq!(cancelled, ["b", "c"]);
    // Placed again, and the chain queued behind it again.
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b", "c"]);
    cl.finish("w1", "a", 1);
    cl.finish("w1", "b", 1);
    cl.finish("w1", "c", 1);
    assert_eq!(cl.finished_to_client(c), ["c"]);
}

#[test]
fn a_failed_input_errs_what_was_queued_behind_it() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b"]);
    cl.fail("w1", "a", TaskError::Other("boom".into()));
    assert_eq!(cl.cancels_sent_to("w1"), ["b"]);
    let erred = cl.erred_to_client(c);
    assert_eq!(erred.len(), 1);
    assert_eq!(erred[0].0, "b");
}

#[test]
fn losing_the_worker_sends_a_queued_chain_back_to_waiting_and_places_it_again() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"]), task_on("c", &["b"])], &["c"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b", "c"]);
    cl.start("w1", "a");
    cl.add_worker("w2", 1);
    cl.lose_worker("w1");
    assert_eq!(cl.computes_sent_to("w2"), ["a", "b", "c"]);
    cl.finish("w2", "a", 1);
    cl.finish("w2", "b", 1);
    cl.finish("w2", "c", 1);
    assert_eq!(cl.finished_to_client(c), ["c"]);
}

#[test]
fn an_idle_worker_never_steals_a_task_queued_behind_inputs_or_one_with_tasks_queued_behind_it() {
    let mut cl = Cluster::with_config(config(|c| c.queue_per_thread = 8));
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    // A long chain and nothing else: w1 has everything.
    cl.submit(c, chain(6), &["k5"]);
    assert_eq!(cl.computes_sent_to("w1").len(), 6);
    cl.start("w1", "k0");
    cl.add_worker("w2", 1);
    cl.tick();
    assert!(cl.steals_sent_to("w1").is_empty(), "nothing in the chain may move");
}

#[test]
fn a_stolen_task_with_tasks_queued_behind_it_takes_them_back_too() {
    // A retiring worker gives back its unstarted tasks, including queued ones.
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b"]);
    cl.add_worker("w2", 1);
    cl.worker_says(
        "w1",
        FromWorker::Retire {
            reason: "lifetime".into(),
        },
    );
    let mut asked = cl.steals_sent_to("w1");
    asked.sort();
    assert_eq!(asked, ["a", "b"]);
    cl.stolen("w1", &["a", "b"]);
    assert_eq!(cl.computes_sent_to("w2"), ["a", "b"]);
    cl.finish("w2", "a", 1);
    cl.finish("w2", "b", 1);
    assert_eq!(cl.finished_to_client(c), ["b"]);
}

#[test]
fn a_chain_longer_than_the_queue_follows_as_room_frees() {
    let mut cl = Cluster::with_config(config(|c| c.queue_per_thread = 2));
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, chain(6), &["k5"]);
    assert_eq!(cl.computes_sent_to("w1"), ["k0", "k1", "k2"]);
    cl.finish("w1", "k0", 1);
    assert_eq!(cl.computes_sent_to("w1"), ["k3"]);
    for i in 1..6 {
        cl.finish("w1", &format!("k{i}"), 1);
    }
    assert_eq!(cl.finished_to_client(c), ["k5"]);
}

#[test]
fn cancelling_a_queued_task_tells_its_worker_and_keeps_the_input_running_for_others() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["a", "b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b"]);
    cl.cancel(c, &["b"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["b"]);
    assert!(matches!(cl.state("a"), TaskState::Processing { .. }));
    cl.finish("w1", "a", 1);
    assert_eq!(cl.finished_to_client(c), ["a"]);
}

#[test]
fn a_dependent_is_not_queued_behind_a_small_input_when_a_big_one_is_held_elsewhere() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    cl.add_worker("w2", 1);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![task("big"), task("small"), task_on("c", &["big", "small"])],
        &["c"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["big"]);
    assert_eq!(cl.computes_sent_to("w2"), ["small"]);
    cl.finish("w1", "big", 10 << 20);
    // Moving 10 MiB to w2 to save a round trip is not worth it: c waits, then goes to w1.
    assert_eq!(cl.state("c"), TaskState::Waiting);
    cl.finish("w2", "small", 10);
    assert_eq!(cl.computes_sent_to("w1"), ["c"]);
}

#[test]
fn a_fan_out_is_queued_behind_its_root_only_as_far_as_the_worker_has_room() {
    let mut cl = Cluster::with_config(config(|c| c.queue_per_thread = 2));
    cl.add_worker("w1", 1);
    let c = cl.add_client();
    let mut tasks = vec![task("root")];
    let keys: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
    for k in &keys {
        tasks.push(task_on(k, &["root"]));
    }
    let wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
    cl.submit(c, tasks, &wanted);
    assert_eq!(cl.computes_sent_to("w1"), ["root", "d0", "d1"]);
    assert_eq!(cl.state("d2"), TaskState::Waiting);
    cl.finish("w1", "root", 1);
    // The rest are ready now and placed as room frees.
    cl.finish("w1", "d0", 1);
    cl.finish("w1", "d1", 1);
    let mut placed = cl.computes_sent_to("w1");
    while !placed.is_empty() {
        for k in &placed {
            cl.finish("w1", k, 1);
        }
        placed = cl.computes_sent_to("w1");
    }
    let mut done = cl.finished_to_client(c);
    done.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(done, expected);
}
