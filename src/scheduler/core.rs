//! The scheduler's brain: task states, worker bookkeeping and placement, as a synchronous
//! state machine with one owner.
//!
//! Events come in as method calls named after what happened (`on_worker_joined`,
//! `on_worker_message`, `on_client_message`, `on_tick` ...), each given `now` where time
//! matters. Decisions go out as [`Outgoing`] messages in an outbox that the caller drains.
//! This module must never await, touch a socket or read a clock: that is what lets it be
//! tested event by event without a network.

use crate::protocol::{
    ClientId, ClusterInfo, CommandSpec, ComputeTask, DepLocation, FromClient, FromWorker, KeyLocation, LocationProblem,
    NannyId, RequestId, TaskDesc, TaskError, TaskId, TaskOptions, TaskSpec, ToClient, ToNanny, ToWorker, WorkerId,
    WorkerInfo, WorkerSummary,
};

#[path = "core_nanny.rs"]
mod nanny;
use super::id_list::IdList;
use super::table::{Keyed, TaskTable};
use crate::idmap::{IdMap, IdSet};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tunables of the scheduling policy.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// How many workers may die while running a task before it errs as "killed worker".
    pub allowed_failures: u32,
    /// Tasks queued on a worker beyond its threads, per thread, so no slot waits for a
    /// round trip to the scheduler.
    pub queue_per_thread: u32,
    /// A worker silent for this long is considered gone.
    pub heartbeat_timeout: Duration,
    /// How often workers are asked to send a heartbeat.
    pub heartbeat_interval: Duration,
    /// Queue a waiting task on the worker computing its inputs, so it starts there without a
    /// round trip (see [`Core::queue_dependents`]). Off only in tests that pin down how ready
    /// tasks are placed.
    pub queue_behind_inputs: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            allowed_failures: 3,
            queue_per_thread: 64,
            heartbeat_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_millis(1000),
            queue_behind_inputs: true,
        }
    }
}

/// The loss reason the shell gives when a worker's connection simply ended.
pub const CONNECTION_CLOSED: &str = "connection closed";

/// A message the scheduler decided to send; the server shell delivers it.
#[derive(Debug, PartialEq)]
pub enum Outgoing {
    Worker(WorkerId, ToWorker),
    Client(ClientId, ToClient),
    Nanny(NannyId, ToNanny),
    /// Drop the connection to this worker (it missed its heartbeats, or its nanny saw it die).
    CloseWorker(WorkerId, String),
}

/// A restart waiting for its workers to come back.
#[derive(Debug)]
pub(crate) struct PendingRestart {
    client: ClientId,
    req: RequestId,
    /// Names of the workers not back yet.
    expect: Vec<String>,
    total: u64,
    /// Set at the first tick after the restart began.
    deadline: Option<Instant>,
}

/// Where a task is in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskState {
    /// Known, with its spec, but not being computed and holding no result.
    Released,
    /// Some inputs are not in memory yet.
    Waiting,
    /// All inputs are in memory; queued on the scheduler until a worker has room.
    Ready,
    /// Assigned to a worker, queued there or running.
    Processing {
        worker: WorkerId,
        /// The worker said it started running it (so its death makes the task suspicious).
        started: bool,
    },
    /// The result is held by the workers in `who_has`.
    Memory,
    /// Boxed: an error is rare, and its size would be paid by every task's state.
    Erred(Box<TaskError>),
}

impl TaskState {
    fn name(&self) -> &'static str {
        match self {
            TaskState::Released => "released",
            TaskState::Waiting => "waiting",
            TaskState::Ready => "ready",
            TaskState::Processing { .. } => "processing",
            TaskState::Memory => "memory",
            TaskState::Erred(_) => "erred",
        }
    }
}

/// Everything the scheduler keeps about one task.
#[derive(Debug)]
struct Task {
    /// The only copy of the key: the table's key index borrows it from here.
    key: Box<str>,
    /// Kept until the task is forgotten, so a lost result can be computed again.
    spec: StoredSpec,
    /// From the options: read by every placement, so kept inline.
    priority: i32,
    deps: IdList<TaskId>,
    /// Tasks that take this one as input; while any is known, this one is kept.
    dependents: IdList<TaskId>,
    state: TaskState,
    /// In `Waiting`: how many inputs are not in memory.
    waiting_on: u32,
    /// In `Memory`: the workers holding the result.
    who_has: IdList<WorkerId>,
    nbytes: u64,
    /// Clients that asked to be told about this key and keep its result.
    wanted_by: IdList<ClientId>,
    /// Submission order, so equal priorities run first come, first served.
    seq: u64,
    /// What few tasks have; `None` for a task with default options that nothing went wrong
    /// with, which is most of them.
    extras: Option<Box<TaskExtras>>,
}

/// The part of a task that most tasks do not need, kept out of line so they do not pay
/// for it: options beyond the priority, retry and failure bookkeeping, the scattered mark.
#[derive(Debug, Default)]
struct TaskExtras {
    /// Its options as submitted (resources, worker restrictions, retries).
    options: TaskOptions,
    retries_left: u32,
    /// Names of the workers that died while running it.
    suspicious: Vec<String>,
    /// Data a client scattered: there is no spec to compute it again.
    scattered: bool,
}

/// The extras of a task that has none.
static NO_EXTRAS: TaskExtras = TaskExtras {
    options: TaskOptions {
        priority: 0,
        retries: 0,
        resources: Vec::new(),
        workers: Vec::new(),
    },
    retries_left: 0,
    suspicious: Vec::new(),
    scattered: false,
};

impl Task {
    fn extras(&self) -> &TaskExtras {
        self.extras.as_deref().unwrap_or(&NO_EXTRAS)
    }

    fn extras_mut(&mut self) -> &mut TaskExtras {
        self.extras.get_or_insert_with(Box::default)
    }

    fn options(&self) -> &TaskOptions {
        &self.extras().options
    }

    fn scattered(&self) -> bool {
        self.extras().scattered
    }
}

/// A task's spec as the scheduler keeps it: a function's name is shared by every task that
/// calls that function, and its arguments take no spare capacity.
#[derive(Debug)]
enum StoredSpec {
    Function {
        /// An `Arc<String>` rather than an `Arc<str>`: a thin pointer, which makes the spec
        /// 24 bytes instead of 32.
        name: Arc<String>,
        args: Box<[u8]>,
    },
    /// Boxed: commands are the rarer kind and their spec is large.
    Command(Box<CommandSpec>),
}

impl StoredSpec {
    /// The spec as a worker is sent it.
    fn to_wire(&self) -> TaskSpec {
        match self {
            StoredSpec::Function { name, args } => TaskSpec::Function {
                name: String::clone(name),
                args: args.to_vec(),
            },
            StoredSpec::Command(c) => TaskSpec::Command((**c).clone()),
        }
    }
}

/// One shared copy of each function name in use.
#[derive(Debug)]
struct NameInterner {
    names: HashSet<Arc<String>>,
    /// When the set reaches this size, names no task uses any more are dropped first, so
    /// the set stays within twice the names in use.
    purge_at: usize,
}

impl Default for NameInterner {
    fn default() -> Self {
        NameInterner {
            names: HashSet::new(),
            purge_at: 64,
        }
    }
}

impl NameInterner {
    fn intern(&mut self, name: String) -> Arc<String> {
        if let Some(n) = self.names.get(&name) {
            return n.clone();
        }
        if self.names.len() >= self.purge_at {
            self.names.retain(|n| Arc::strong_count(n) > 1);
            self.purge_at = (self.names.len() * 2).max(64);
        }
        let n = Arc::new(name);
        self.names.insert(n.clone());
        n
    }

    fn store(&mut self, spec: TaskSpec) -> StoredSpec {
        match spec {
            TaskSpec::Function { name, args } => StoredSpec::Function {
                name: self.intern(name),
                args: args.into_boxed_slice(),
            },
            TaskSpec::Command(c) => StoredSpec::Command(Box::new(c)),
        }
    }
}

impl Keyed for Task {
    fn key(&self) -> &str {
        &self.key
    }
}

/// Everything the scheduler keeps about one worker.
#[derive(Debug)]
struct WorkerState {
    info: WorkerInfo,
    /// Tasks assigned to it (queued or running).
    processing: IdSet<TaskId>,
    /// How many of `processing` it said it started.
    running: usize,
    /// Results it holds.
    has_data: IdSet<TaskId>,
    stored_bytes: u64,
    /// Resources not held by its assigned tasks.
    resources_free: Vec<(String, f64)>,
    last_seen: Instant,
    memory: u64,
    /// It said it is leaving on purpose: it gets no new tasks, and its death is no crash.
    leaving: bool,
    /// Tasks processing here whose dependents could have been queued behind them but for
    /// the worker's room: tried again when a task here finishes.
    queue_later: Vec<TaskId>,
}

impl WorkerState {
    fn capacity(&self, queue_per_thread: u32) -> usize {
        let n = self.info.nthreads.max(1) as usize;
        n + n * queue_per_thread as usize
    }

    /// Whether it may be assigned one more task.
    fn has_room(&self, queue_per_thread: u32) -> bool {
        self.processing.len() < self.capacity(queue_per_thread)
    }

    fn load(&self) -> f64 {
        self.processing.len() as f64 / self.info.nthreads.max(1) as f64
    }

    fn fits(&self, options: &TaskOptions) -> bool {
        let allowed = options.workers.is_empty()
            || options
                .workers
                .iter()
                .any(|w| *w == self.info.name || *w == self.info.peer_address || *w == self.info.host);
        allowed
            && options.resources.iter().all(|(name, amount)| {
                self.resources_free
                    .iter()
                    .any(|(n, free)| n == name && *free + 1e-9 >= *amount)
            })
    }

    fn take_resources(&mut self, options: &TaskOptions, sign: f64) {
        for (name, amount) in &options.resources {
            if let Some((_, free)) = self.resources_free.iter_mut().find(|(n, _)| n == name) {
                *free -= sign * amount;
            }
        }
    }
}

/// A worker's load (assigned tasks per thread), ordered for the placement index.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Load(f64);

impl Eq for Load {}
impl PartialOrd for Load {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Load {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Changes `ws` (worker `w`) through `change`, keeping its place in the placement index in
/// step with its load.
fn change_load<R>(
    by_load: &mut BTreeSet<(Load, WorkerId)>,
    w: WorkerId,
    ws: &mut WorkerState,
    change: impl FnOnce(&mut WorkerState) -> R,
) -> R {
    let before = Load(ws.load());
    let r = change(ws);
    let after = Load(ws.load());
    if !ws.leaving && after != before {
        by_load.remove(&(before, w));
        by_load.insert((after, w));
    }
    r
}

/// A client's bookkeeping.
#[derive(Debug, Default)]
struct ClientState {
    /// Tasks this client asked for, so they are released when it disconnects. The tasks'
    /// `wanted_by` is the truth: this is a log that may name tasks the client released or
    /// that are forgotten (their ids then find nothing), compacted when it reaches twice
    /// `wants`. A log of ids costs 8 bytes per task where a hash set costs 20 or more.
    wanted: Vec<TaskId>,
    /// How many tasks name this client in their `wanted_by`.
    wants: usize,
}

impl ClientState {
    /// Notes that task `t` now names `client` in its `wanted_by`.
    fn log_wanted(&mut self, client: ClientId, t: TaskId, tasks: &TaskTable<Task>) {
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

/// A scatter waiting for its workers to confirm they stored the data.
#[derive(Debug)]
struct PendingScatter {
    client: ClientId,
    req: RequestId,
    remaining: IdSet<TaskId>,
}

/// A waiting task with more inputs than this is not queued behind them on their worker:
/// checking its inputs on every assignment of one of them would cost too much, and such a
/// task gathers from many workers anyway.
const MAX_QUEUED_BEHIND_DEPS: usize = 16;

/// A waiting task is queued behind inputs computing on a worker only if the inputs it would
/// fetch from other workers total at most this: past it, waiting to place it where most of
/// its input bytes are is worth the round trip.
const QUEUE_BEHIND_MAX_FETCH: u64 = 64 * 1024;

/// How many of the most loaded workers one `balance` looks at for tasks to steal.
const VICTIMS_PER_BALANCE: usize = 8;

/// Why a ready task could not be placed right now.
enum Placement {
    On(WorkerId),
    /// Every worker is full: stop placing until one has room.
    NoRoom,
    /// Workers have room, but none this task may run on.
    NoneFits,
}

/// The scheduler's state. One owner; see the module doc.
pub struct Core {
    config: CoreConfig,
    /// Tasks by id and by key.
    tasks: TaskTable<Task>,
    /// The function names the tasks' specs share.
    function_names: NameInterner,
    /// Ordered so placement ties are broken the same way every run.
    workers: BTreeMap<WorkerId, WorkerState>,
    /// Workers that take new tasks (not leaving), least loaded first, ties by id: placement
    /// finds the least loaded worker with room without looking at every worker. Kept by
    /// [`change_load`] and the few places that add, remove or retire a worker.
    by_load: BTreeSet<(Load, WorkerId)>,
    clients: IdMap<ClientId, ClientState>,
    /// Tasks in `Ready`, best first. Entries whose task left `Ready` are skipped when popped.
    ready: BinaryHeap<(i32, Reverse<u64>, TaskId)>,
    scatters: Vec<PendingScatter>,
    nannies: IdMap<NannyId, nanny::NannyState>,
    restart: Option<PendingRestart>,
    /// Steals under way: a task processing on its victim -> the worker it moves to if the
    /// victim gives it back. Out of the tasks, since few are being stolen at any time.
    stealing: IdMap<TaskId, WorkerId>,
    /// Retiring workers, with the copies of their results under way: task -> target worker.
    retiring: IdMap<WorkerId, IdMap<TaskId, WorkerId>>,
    next_seq: u64,
    outbox: Vec<Outgoing>,
}

impl Core {
    pub fn new(config: CoreConfig) -> Core {
        Core {
            config,
            tasks: TaskTable::default(),
            function_names: NameInterner::default(),
            workers: BTreeMap::new(),
            by_load: BTreeSet::new(),
            clients: IdMap::default(),
            ready: BinaryHeap::new(),
            scatters: Vec::new(),
            next_seq: 0,
            outbox: Vec::new(),
            nannies: IdMap::default(),
            restart: None,
            retiring: IdMap::default(),
            stealing: IdMap::default(),
        }
    }

    /// Everything decided since the last call, in order.
    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outbox)
    }

    /// No client is connected and no task is known: what `--idle-timeout` waits for.
    pub fn is_idle(&self) -> bool {
        self.clients.is_empty() && self.tasks.is_empty()
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// The state of a key, for tests and diagnostics.
    pub fn state_of(&self, key: &str) -> Option<&TaskState> {
        self.tasks.id_of(key).map(|id| &self.tasks[&id].state)
    }

    /// The workers holding a key's result, by name.
    pub fn holders_of(&self, key: &str) -> Vec<String> {
        let Some(id) = self.tasks.id_of(key) else {
            return Vec::new();
        };
        self.tasks[&id]
            .who_has
            .iter()
            .map(|w| self.workers[w].info.name.clone())
            .collect()
    }

    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    // ----- workers -----

    pub fn on_worker_joined(&mut self, id: WorkerId, info: WorkerInfo, now: Instant) {
        log::info!(
            "worker {} ({}) joined at {} with {} threads",
            info.name,
            id,
            info.peer_address,
            info.nthreads
        );
        let name = info.name.clone();
        let ws = WorkerState {
            resources_free: info.resources.clone(),
            info,
            processing: IdSet::default(),
            running: 0,
            has_data: IdSet::default(),
            stored_bytes: 0,
            last_seen: now,
            memory: 0,
            leaving: false,
            queue_later: Vec::new(),
        };
        self.by_load.insert((Load(ws.load()), id));
        self.workers.insert(id, ws);
        self.outbox.push(Outgoing::Worker(
            id,
            ToWorker::Registered {
                worker: id,
                heartbeat_ms: self.config.heartbeat_interval.as_millis() as u64,
            },
        ));
        self.restart_on_worker_joined(&name);
        self.schedule();
        self.balance();
    }

    pub fn on_worker_message(&mut self, id: WorkerId, msg: FromWorker, now: Instant) {
        let Some(ws) = self.workers.get_mut(&id) else {
            return;
        };
        ws.last_seen = now;
        match msg {
            FromWorker::Register(_) => log::warn!("worker {id} registered twice; ignored"),
            FromWorker::Started { task } => self.on_task_started(id, task),
            FromWorker::Finished { task, nbytes, fetched } => self.on_task_finished(id, task, nbytes, fetched),
            FromWorker::Failed { task, error } => self.on_task_failed(id, task, error),
            FromWorker::FetchFailed {
                task,
                dep,
                holder,
                reason,
            } => self.on_fetch_failed(id, task, dep, &holder, &reason),
            FromWorker::Stolen { tasks } => self.on_stolen(id, tasks),
            FromWorker::DataStored { task, nbytes } => self.on_data_stored(id, task, nbytes),
            FromWorker::Heartbeat { memory } => {
                if let Some(ws) = self.workers.get_mut(&id) {
                    ws.memory = memory;
                }
            }
            FromWorker::Leaving { reason } => {
                log::info!("worker {id} is leaving: {reason}");
                self.set_leaving(id);
            }
            FromWorker::Retire { reason } => self.on_retire(id, &reason),
            FromWorker::Replicated { task, nbytes } => self.on_replicated(id, task, nbytes),
        }
        self.schedule();
        let retiring: Vec<WorkerId> = self.retiring.keys().copied().collect();
        for w in retiring {
            self.retire_step(w);
        }
    }

    /// The worker wants to retire: no new tasks; its unstarted ones are taken back.
    fn on_retire(&mut self, w: WorkerId, reason: &str) {
        let Some(ws) = self.workers.get(&w) else { return };
        log::info!("worker {} ({w}) retires: {reason}", ws.info.name);
        self.set_leaving(w);
        let ws = &self.workers[&w];
        self.retiring.entry(w).or_default();
        let unstarted: Vec<TaskId> = ws
            .processing
            .iter()
            .copied()
            .filter(|t| matches!(self.tasks[t].state, TaskState::Processing { started: false, .. }))
            .collect();
        if !unstarted.is_empty() {
            self.outbox
                .push(Outgoing::Worker(w, ToWorker::Steal { tasks: unstarted }));
        }
    }

    /// A copy for a retiring worker arrived at `target` (or failed).
    fn on_replicated(&mut self, target: WorkerId, t: TaskId, nbytes: Option<u64>) {
        for pending in self.retiring.values_mut() {
            if pending.get(&t) == Some(&target) {
                pending.remove(&t);
            }
        }
        let in_memory = matches!(self.tasks.get(&t), Some(task) if task.state == TaskState::Memory);
        match nbytes {
            Some(_) if in_memory => self.add_holder(t, target),
            Some(_) => self
                .outbox
                .push(Outgoing::Worker(target, ToWorker::ReleaseData { tasks: vec![t] })),
            None => log::warn!("copying {t} to {target} failed; it may be computed again"),
        }
    }

    /// Once a retiring worker runs nothing, copies its only-here results that are still
    /// needed to other workers; once those are copied, tells it to shut down.
    fn retire_step(&mut self, w: WorkerId) {
        let Some(ws) = self.workers.get(&w) else {
            self.retiring.remove(&w);
            return;
        };
        if !ws.processing.is_empty() {
            return;
        }
        let from = ws.info.peer_address.clone();
        let mut sends = Vec::new();
        let pending = self.retiring.get(&w).expect("called for retiring workers");
        for &t in &ws.has_data {
            let task = &self.tasks[&t];
            if *task.who_has == [w] && !pending.contains_key(&t) && self.needed(t) {
                let target = self
                    .workers
                    .iter()
                    .filter(|(id, other)| **id != w && !other.leaving)
                    .min_by_key(|(_, other)| other.stored_bytes)
                    .map(|(id, _)| *id);
                if let Some(target) = target {
                    sends.push((t, target));
                }
            }
        }
        let pending = self.retiring.get_mut(&w).expect("called for retiring workers");
        for (t, target) in sends {
            pending.insert(t, target);
            self.outbox.push(Outgoing::Worker(
                target,
                ToWorker::Replicate {
                    task: t,
                    from: from.clone(),
                },
            ));
        }
        if pending.is_empty() {
            self.retiring.remove(&w);
            self.outbox.push(Outgoing::Worker(
                w,
                ToWorker::Shutdown {
                    reason: "retired".into(),
                },
            ));
        }
    }

    /// The worker's connection dropped, or it missed its heartbeats.
    pub fn on_worker_lost(&mut self, id: WorkerId, reason: &str) {
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
            let task = self.tasks.get_mut(&t).expect("processing tasks are known");
            let TaskState::Processing { started, .. } = task.state else {
                panic!("task {t} in a worker's processing set is {:?}", task.state)
            };
            task.state = TaskState::Released;
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
        let mut lost = Vec::new();
        for t in ws.has_data {
            let task = self.tasks.get_mut(&t).expect("held results are of known tasks");
            task.who_has.retain(|w| *w != id);
            if task.state == TaskState::Memory && task.who_has.is_empty() {
                lost.push(t);
            }
        }
        self.on_data_lost(lost, &ws.info.name);
        for (t, error) in erred {
            self.set_erred(t, error);
        }
        for t in again {
            self.compute(t);
        }
        self.schedule();
        self.balance();
    }

    fn on_task_started(&mut self, w: WorkerId, t: TaskId) {
        if let Some(task) = self.tasks.get_mut(&t) {
            if let TaskState::Processing { worker, started, .. } = &mut task.state {
                if *worker == w && !*started {
                    *started = true;
                    self.workers.get_mut(&w).expect("sender is known").running += 1;
                }
            }
        }
    }

    /// Takes `t` off `w`'s list and gives back what it held there.
    fn unassign(&mut self, w: WorkerId, t: TaskId) {
        self.stealing.remove(&t);
        let task = &self.tasks[&t];
        let started = matches!(task.state, TaskState::Processing { started: true, .. });
        let Some(ws) = self.workers.get_mut(&w) else { return };
        change_load(&mut self.by_load, w, ws, |ws| {
            if ws.processing.remove(&t) {
                ws.take_resources(task.options(), -1.0);
                if started {
                    ws.running -= 1;
                }
            }
        });
    }

    fn processing_on(&self, t: TaskId, w: WorkerId) -> bool {
        matches!(self.tasks.get(&t), Some(Task { state: TaskState::Processing { worker, .. }, .. }) if *worker == w)
    }

    fn add_holder(&mut self, t: TaskId, w: WorkerId) {
        let task = self.tasks.get_mut(&t).expect("add_holder of a known task");
        if !task.who_has.contains(&w) {
            task.who_has.push(w);
            let ws = self.workers.get_mut(&w).expect("add_holder of a known worker");
            ws.has_data.insert(t);
            ws.stored_bytes += task.nbytes;
        }
    }

    fn on_task_finished(&mut self, w: WorkerId, t: TaskId, nbytes: u64, fetched: Vec<TaskId>) {
        for f in fetched {
            if matches!(self.tasks.get(&f), Some(task) if task.state == TaskState::Memory) {
                self.add_holder(f, w);
                self.maybe_release(f);
            } else {
                self.outbox
                    .push(Outgoing::Worker(w, ToWorker::ReleaseData { tasks: vec![f] }));
            }
        }
        if !self.processing_on(t, w) {
            // A late answer: the task was cancelled, stolen or given to another worker.
            if matches!(self.tasks.get(&t), Some(task) if task.state == TaskState::Memory) {
                self.add_holder(t, w);
                self.maybe_release(t);
            } else {
                self.outbox
                    .push(Outgoing::Worker(w, ToWorker::ReleaseData { tasks: vec![t] }));
            }
            return;
        }
        self.to_memory(w, t, nbytes);
        let deps = self.tasks[&t].deps.clone();
        self.wake_dependents(t);
        self.queue_dependents_later(w);
        for d in deps {
            self.maybe_release(d);
        }
        self.maybe_release(t);
        if self.workers[&w].processing.is_empty() {
            self.balance();
        }
    }

    /// `t`'s result is now in memory: its waiting dependents have one input less to wait for.
    fn wake_dependents(&mut self, t: TaskId) {
        for d in self.tasks[&t].dependents.clone() {
            let dt = self.tasks.get_mut(&d).expect("dependents are known");
            match dt.state {
                TaskState::Waiting => {
                    dt.waiting_on -= 1;
                    if dt.waiting_on == 0 {
                        self.make_ready(d);
                    } else {
                        self.queue_behind_remaining_inputs(d);
                    }
                }
                // Queued behind its inputs on their worker: it runs there once they are done.
                TaskState::Processing { .. } if dt.waiting_on > 0 => dt.waiting_on -= 1,
                _ => {}
            }
        }
    }

    fn on_task_failed(&mut self, w: WorkerId, t: TaskId, error: TaskError) {
        if !self.processing_on(t, w) {
            return;
        }
        self.unassign(w, t);
        let task = self.tasks.get_mut(&t).expect("checked above");
        if task.extras().retries_left > 0 {
            task.extras_mut().retries_left -= 1;
            log::info!(
                "task {} failed ({}); retrying, {} retries left",
                task.key,
                error,
                task.extras().retries_left
            );
            self.compute_again(t, w);
        } else {
            // Its worker reported it: no need to tell it to stop.
            task.state = TaskState::Released;
            self.set_erred(t, error);
        }
    }

    fn on_fetch_failed(&mut self, w: WorkerId, t: TaskId, dep: TaskId, holder: &str, reason: &str) {
        log::warn!("worker {w} could not fetch {dep} from {holder}: {reason}");
        let holder_id = self
            .workers
            .iter()
            .find(|(_, ws)| ws.info.peer_address == holder)
            .map(|(id, _)| *id);
        if let (Some(h), Some(dt)) = (holder_id, self.tasks.get_mut(&dep)) {
            if dt.who_has.remove_item(h) {
                let nbytes = dt.nbytes;
                let ws = self.workers.get_mut(&h).expect("found above");
                ws.has_data.remove(&dep);
                ws.stored_bytes -= nbytes;
                if dt.who_has.is_empty() && dt.state == TaskState::Memory {
                    self.on_data_lost(vec![dep], holder);
                }
            }
        }
        if self.processing_on(t, w) {
            self.unassign(w, t);
            self.compute_again(t, w);
        }
    }

    fn on_stolen(&mut self, w: WorkerId, tasks: Vec<TaskId>) {
        for t in tasks {
            if !self.processing_on(t, w) {
                continue;
            }
            let stealing_to = self.stealing.get(&t).copied();
            self.unassign(w, t);
            let queued = self.unqueue_dependents(t, w);
            if self.tasks[&t].waiting_on > 0 || !queued.is_empty() {
                // It was queued behind inputs still computing there (or had dependents
                // queued behind it): back to waiting for them, like its dependents.
                self.compute_again_with(t, queued);
                continue;
            }
            self.tasks.get_mut(&t).expect("processing").state = TaskState::Ready;
            match stealing_to {
                Some(thief)
                    if self.workers.get(&thief).is_some_and(|ws| {
                        !ws.leaving && ws.has_room(self.config.queue_per_thread) && ws.fits(self.tasks[&t].options())
                    }) =>
                {
                    self.assign(t, thief)
                }
                _ => self.make_ready(t),
            }
        }
        // Tasks that had started stay; clear their marks so they may be stolen later.
        if let Some(ws) = self.workers.get(&w) {
            for t in &ws.processing {
                self.stealing.remove(t);
            }
        }
    }

    /// `t`, processing on `w`, now has its result there: clients that want it are told.
    fn to_memory(&mut self, w: WorkerId, t: TaskId, nbytes: u64) {
        self.unassign(w, t);
        let task = self.tasks.get_mut(&t).expect("to_memory of a processing task");
        task.state = TaskState::Memory;
        task.nbytes = nbytes;
        task.who_has.clear();
        self.add_holder(t, w);
        let task = &self.tasks[&t];
        for c in &task.wanted_by {
            self.outbox.push(Outgoing::Client(
                *c,
                ToClient::KeyFinished {
                    key: task.key.to_string(),
                    nbytes,
                },
            ));
        }
    }

    fn on_data_stored(&mut self, w: WorkerId, t: TaskId, nbytes: u64) {
        if !self.processing_on(t, w) {
            // The scatter was cancelled or its client left: nobody will ask for these bytes.
            if !matches!(self.tasks.get(&t), Some(task) if task.who_has.contains(&w)) {
                self.outbox
                    .push(Outgoing::Worker(w, ToWorker::ReleaseData { tasks: vec![t] }));
            }
            return;
        }
        self.to_memory(w, t, nbytes);
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

    /// Results in `lost` are no longer held anywhere: compute them again where still needed,
    /// and send back to waiting the dependents that were about to use them.
    fn on_data_lost(&mut self, lost: Vec<TaskId>, worker_name: &str) {
        let mut reset = Vec::new();
        for &t in &lost {
            let task = self.tasks.get_mut(&t).expect("lost tasks are known");
            task.state = TaskState::Released;
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
            for d in task.dependents.clone() {
                let dt = self.tasks.get_mut(&d).expect("dependents are known");
                match dt.state {
                    TaskState::Waiting => dt.waiting_on += 1,
                    TaskState::Ready => {
                        dt.state = TaskState::Released;
                        reset.push(d);
                    }
                    TaskState::Processing { worker, .. } => {
                        self.unassign(worker, d);
                        self.outbox
                            .push(Outgoing::Worker(worker, ToWorker::Cancel { tasks: vec![d] }));
                        self.tasks.get_mut(&d).expect("known").state = TaskState::Released;
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

    // ----- clients -----

    pub fn on_client_joined(&mut self, id: ClientId) {
        self.clients.insert(id, ClientState::default());
        self.outbox.push(Outgoing::Client(id, ToClient::Welcome { client: id }));
    }

    pub fn on_client_lost(&mut self, id: ClientId) {
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
        self.schedule();
    }

    pub fn on_client_message(&mut self, id: ClientId, msg: FromClient) {
        if !self.clients.contains_key(&id) {
            return;
        }
        match msg {
            FromClient::Submit { tasks, wanted } => self.on_submit(id, tasks, wanted),
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
                for k in keys {
                    if let Some(t) = self.tasks.id_of(&k) {
                        self.cancel(t);
                    }
                }
            }
            FromClient::WhoHas { req, keys } => {
                let locations = keys.into_iter().map(|k| self.locate(k)).collect();
                self.outbox
                    .push(Outgoing::Client(id, ToClient::WhoHas { req, locations }));
            }
            FromClient::Info { req } => {
                let info = self.info();
                self.outbox.push(Outgoing::Client(id, ToClient::Info { req, info }));
            }
            FromClient::Scatter { req, items } => self.on_scatter(id, req, items),
            FromClient::Restart { req } => self.on_restart(id, req),
        }
        self.schedule();
    }

    fn locate(&self, key: String) -> KeyLocation {
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

    /// Checks a batch before anything of it is stored: keys unique, inputs known, no cycle.
    fn check_batch(&self, tasks: &[TaskDesc]) -> Result<(), String> {
        let mut batch: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
        for (i, t) in tasks.iter().enumerate() {
            if t.key.is_empty() {
                return Err("a task has an empty key".into());
            }
            if batch.insert(&t.key, i).is_some() {
                return Err(format!("duplicate key {:?} in one submission", t.key));
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
                    return Err(format!("task {:?} depends on itself", t.key));
                }
                match batch.get(d.as_str()) {
                    Some(&j) if !self.tasks.contains_key_str(d) => {
                        indegree[i] += 1;
                        users[j].push(i);
                    }
                    Some(_) => {}
                    None if self.tasks.contains_key_str(d) => {}
                    None => return Err(format!("task {:?} depends on unknown key {:?}", t.key, d)),
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
            let stuck: Vec<&str> = (0..tasks.len())
                .filter(|&i| indegree[i] > 0)
                .take(5)
                .map(|i| tasks[i].key.as_str())
                .collect();
            return Err(format!("dependency cycle among {}", stuck.join(", ")));
        }
        Ok(())
    }

    fn on_submit(&mut self, client: ClientId, tasks: Vec<TaskDesc>, wanted: Vec<String>) {
        if let Err(reason) = self.check_batch(&tasks) {
            log::warn!("client {client}: submission rejected: {reason}");
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
        let mut new = Vec::new();
        for desc in tasks {
            if self.tasks.contains_key_str(&desc.key) {
                continue;
            }
            let id = self.tasks.insert(Task {
                key: desc.key.into_boxed_str(),
                spec: self.function_names.store(desc.spec),
                priority: desc.options.priority,
                deps: IdList::new(),
                dependents: IdList::new(),
                state: TaskState::Released,
                waiting_on: 0,
                who_has: IdList::new(),
                nbytes: 0,
                wanted_by: IdList::new(),
                seq: 0,
                extras: (desc.options.retries > 0
                    || !desc.options.resources.is_empty()
                    || !desc.options.workers.is_empty())
                .then(|| {
                    Box::new(TaskExtras {
                        retries_left: desc.options.retries,
                        options: desc.options,
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
            }
            let task = self.tasks.get_mut(id).expect("just inserted");
            task.deps = dep_ids.into_iter().collect();
            task.seq = self.next_seq;
            self.next_seq += 1;
        }
        for key in wanted {
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
                continue;
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
        // New tasks that nothing wants are dropped at once.
        for (id, _) in new {
            self.maybe_release(id);
        }
    }

    fn on_scatter(&mut self, client: ClientId, req: RequestId, items: Vec<(String, Vec<u8>)>) {
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
            let id = self.tasks.insert(Task {
                key: key.as_str().into(),
                spec: self.function_names.store(TaskSpec::Function {
                    name: "scattered".into(),
                    args: Vec::new(),
                }),
                priority: 0,
                deps: IdList::new(),
                dependents: IdList::new(),
                state: TaskState::Processing {
                    worker: w,
                    started: true,
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
            self.outbox
                .push(Outgoing::Worker(w, ToWorker::PutData { task: id, key, data }));
        }
        self.scatters.push(PendingScatter { client, req, remaining });
    }

    /// Scattered `t` erred before it was stored: the scatters waiting for it are answered
    /// now, since they will never complete.
    fn fail_scatters(&mut self, t: TaskId, error: &TaskError) {
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

    fn cancel(&mut self, t: TaskId) {
        let task = &self.tasks[&t];
        match task.state {
            TaskState::Memory | TaskState::Erred(_) => {}
            _ => self.set_erred(t, TaskError::Cancelled),
        }
    }

    // ----- time -----

    /// Periodic housekeeping: drops workers that missed their heartbeats, rebalances queues.
    pub fn on_tick(&mut self, now: Instant) {
        self.restart_on_tick(now);
        let timeout = self.config.heartbeat_timeout;
        let silent: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, ws)| now.saturating_duration_since(ws.last_seen) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for w in silent {
            let reason = format!("no heartbeat for {:.1} s", timeout.as_secs_f64());
            self.outbox.push(Outgoing::CloseWorker(w, reason.clone()));
            self.on_worker_lost(w, &reason);
        }
        self.schedule();
        self.balance();
    }

    // ----- transitions -----

    /// Whether anything still needs `t`'s result: a client, or a dependent being computed.
    fn needed(&self, t: TaskId) -> bool {
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
    fn compute(&mut self, root: TaskId) {
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

    fn make_ready(&mut self, t: TaskId) {
        let task = self.tasks.get_mut(&t).expect("make_ready of a known task");
        task.state = TaskState::Ready;
        task.waiting_on = 0;
        self.ready.push((task.priority, Reverse(task.seq), t));
    }

    /// Places ready tasks on workers while any has room.
    fn schedule(&mut self) {
        let mut blocked = Vec::new();
        while let Some(entry) = self.ready.pop() {
            let t = entry.2;
            if !matches!(self.tasks.get(&t), Some(task) if task.state == TaskState::Ready) {
                continue;
            }
            match self.choose_worker(t) {
                Placement::On(w) => self.assign(t, w),
                Placement::NoneFits => blocked.push(entry),
                Placement::NoRoom => {
                    blocked.push(entry);
                    break;
                }
            }
        }
        self.ready.extend(blocked);
    }

    /// Among the workers with room that may run `t`: the one holding most of its input
    /// bytes, then the least loaded.
    fn choose_worker(&self, t: TaskId) -> Placement {
        let task = &self.tasks[&t];
        let q = self.config.queue_per_thread;
        let Some(&(_, least)) = self.by_load.first() else {
            return Placement::NoRoom;
        };
        if !self.workers[&least].has_room(q) {
            // The least loaded worker is full, so every worker is.
            return Placement::NoRoom;
        }
        if task.options().workers.is_empty() && task.options().resources.is_empty() {
            // Any worker may run it: the holders of its inputs compete on bytes held, and
            // the rest on load alone, where the least loaded one wins.
            let mut holders: Vec<WorkerId> = task
                .deps
                .iter()
                .flat_map(|d| self.tasks[d].who_has.iter().copied())
                .collect();
            holders.sort_unstable();
            holders.dedup();
            let mut best: Option<(WorkerId, u64, f64)> = None;
            for id in holders {
                let ws = &self.workers[&id];
                if ws.leaving || !ws.has_room(q) {
                    continue;
                }
                let held = self.held_bytes(task, ws);
                let load = ws.load();
                if best.is_none_or(|(_, bh, bl)| held > bh || (held == bh && load < bl)) {
                    best = Some((id, held, load));
                }
            }
            return Placement::On(best.map_or(least, |(w, _, _)| w));
        }
        let mut any_room = false;
        let mut best: Option<(WorkerId, u64, f64)> = None;
        for (id, ws) in &self.workers {
            if ws.leaving || !ws.has_room(self.config.queue_per_thread) {
                continue;
            }
            any_room = true;
            if !ws.fits(task.options()) {
                continue;
            }
            let held = self.held_bytes(task, ws);
            let load = ws.load();
            let better = match best {
                None => true,
                Some((_, bh, bl)) => held > bh || (held == bh && load < bl),
            };
            if better {
                best = Some((*id, held, load));
            }
        }
        match best {
            Some((w, _, _)) => Placement::On(w),
            None if any_room => Placement::NoneFits,
            None => Placement::NoRoom,
        }
    }

    /// How many of `task`'s input bytes `ws` holds (an empty input counts as one byte).
    fn held_bytes(&self, task: &Task, ws: &WorkerState) -> u64 {
        task.deps
            .iter()
            .filter(|d| ws.has_data.contains(d))
            .map(|d| self.tasks[d].nbytes.max(1))
            .sum()
    }

    fn assign(&mut self, t: TaskId, w: WorkerId) {
        let task = self.tasks.get_mut(&t).expect("assign of a known task");
        task.state = TaskState::Processing {
            worker: w,
            started: false,
        };
        let ws = self.workers.get_mut(&w).expect("assign to a known worker");
        change_load(&mut self.by_load, w, ws, |ws| {
            ws.processing.insert(t);
            ws.take_resources(task.options(), 1.0);
        });
        let task = &self.tasks[&t];
        let deps = task
            .deps
            .iter()
            .map(|d| {
                let dt = &self.tasks[d];
                DepLocation {
                    id: *d,
                    key: dt.key.to_string(),
                    nbytes: dt.nbytes,
                    holders: dt
                        .who_has
                        .iter()
                        .map(|h| self.workers[h].info.peer_address.clone())
                        .collect(),
                }
            })
            .collect();
        self.outbox.push(Outgoing::Worker(
            w,
            ToWorker::Compute(Box::new(ComputeTask {
                id: t,
                key: task.key.to_string(),
                spec: task.spec.to_wire(),
                deps,
                priority: task.priority,
            })),
        ));
        self.queue_dependents(t, w);
    }

    /// Queues on `w`, behind `t`, the dependents of `t` whose inputs are all in memory or
    /// processing on `w`: `w` starts each as soon as its inputs are done there, without a
    /// round trip to the scheduler. A chain of such tasks is queued as deep as `w` has room;
    /// the rest follow as its tasks finish (`queue_later`).
    fn queue_dependents(&mut self, t: TaskId, w: WorkerId) {
        let mut stack = vec![t];
        while let Some(t) = stack.pop() {
            // By index, without copying the list: a task may have many dependents, and this
            // runs again (from `queue_later`) each time a task finishes on `w`.
            let mut i = 0;
            while let Some(&d) = self.tasks[&t].dependents.get(i) {
                i += 1;
                if !self.may_queue_behind(d, w) {
                    continue;
                }
                if !self.workers[&w].has_room(self.config.queue_per_thread) {
                    let ws = self.workers.get_mut(&w).expect("checked");
                    for t in stack.into_iter().chain([t]) {
                        if !ws.queue_later.contains(&t) {
                            ws.queue_later.push(t);
                        }
                    }
                    return;
                }
                self.assign_queued(d, w);
                stack.push(d);
            }
        }
    }

    /// Queues waiting `d` on the worker computing its remaining inputs, if one worker computes
    /// them all and has room.
    fn queue_behind_remaining_inputs(&mut self, d: TaskId) {
        let computing_on = self.tasks[&d].deps.iter().find_map(|x| match self.tasks[x].state {
            TaskState::Processing { worker, .. } => Some(worker),
            _ => None,
        });
        let Some(w) = computing_on else { return };
        if self.workers[&w].has_room(self.config.queue_per_thread) && self.may_queue_behind(d, w) {
            self.assign(d, w);
        }
    }

    /// Whether waiting `d` may be queued on `w` behind inputs processing there.
    fn may_queue_behind(&self, d: TaskId, w: WorkerId) -> bool {
        let task = &self.tasks[&d];
        let ws = &self.workers[&w];
        self.config.queue_behind_inputs
            && task.state == TaskState::Waiting
            && task.deps.len() <= MAX_QUEUED_BEHIND_DEPS
            && !ws.leaving
            && ws.fits(task.options())
            && task.deps.iter().all(|x| match self.tasks[x].state {
                TaskState::Memory => true,
                TaskState::Processing { worker, .. } => worker == w,
                _ => false,
            })
            && task
                .deps
                .iter()
                .filter(|x| self.tasks[x].state == TaskState::Memory && !ws.has_data.contains(x))
                .map(|x| self.tasks[x].nbytes)
                .sum::<u64>()
                <= QUEUE_BEHIND_MAX_FETCH
    }

    /// [`Core::assign`] without the dependents: the caller walks them.
    fn assign_queued(&mut self, t: TaskId, w: WorkerId) {
        let dependents_first = std::mem::take(&mut self.tasks.get_mut(&t).expect("known").dependents);
        self.assign(t, w);
        self.tasks.get_mut(&t).expect("known").dependents = dependents_first;
    }

    /// `w` takes no new tasks: it leaves the placement index.
    fn set_leaving(&mut self, w: WorkerId) {
        if let Some(ws) = self.workers.get_mut(&w) {
            if !ws.leaving {
                ws.leaving = true;
                self.by_load.remove(&(Load(ws.load()), w));
            }
        }
    }

    /// Whether `d` is on `w` queued behind inputs still computing there.
    fn queued_behind_on(&self, d: TaskId, w: WorkerId) -> bool {
        self.processing_on(d, w) && self.tasks[&d].waiting_on > 0
    }

    /// Whether dependents of `t` are queued on `w` behind it.
    fn has_queued_dependents(&self, t: TaskId, w: WorkerId) -> bool {
        self.tasks[&t].dependents.iter().any(|d| self.queued_behind_on(*d, w))
    }

    /// A task finished on `w`: dependents that found no room behind their inputs there may
    /// find it now.
    fn queue_dependents_later(&mut self, w: WorkerId) {
        let Some(ws) = self.workers.get_mut(&w) else { return };
        for t in std::mem::take(&mut ws.queue_later) {
            if self.processing_on(t, w) {
                self.queue_dependents(t, w);
            }
        }
    }

    /// `t`, taken off `w` without a result, is computed again, and so is what was queued
    /// behind it there.
    fn compute_again(&mut self, t: TaskId, w: WorkerId) {
        let queued = self.unqueue_dependents(t, w);
        self.compute_again_with(t, queued);
    }

    /// [`Core::compute_again`] once the dependents queued behind `t` are taken back.
    fn compute_again_with(&mut self, t: TaskId, queued: Vec<TaskId>) {
        self.tasks.get_mut(&t).expect("known").state = TaskState::Released;
        self.compute(t);
        for d in queued {
            self.compute(d);
        }
    }

    /// `t` stopped processing on `w` without a result: the dependents queued behind it there
    /// (and behind those, and so on) are taken back, released, and returned so the caller
    /// computes them again once `t` is settled.
    fn unqueue_dependents(&mut self, t: TaskId, w: WorkerId) -> Vec<TaskId> {
        let mut unqueued = Vec::new();
        let mut stack = vec![t];
        while let Some(t) = stack.pop() {
            for d in self.tasks[&t].dependents.clone() {
                if !self.queued_behind_on(d, w) {
                    continue;
                }
                self.unassign(w, d);
                self.outbox
                    .push(Outgoing::Worker(w, ToWorker::Cancel { tasks: vec![d] }));
                self.tasks.get_mut(&d).expect("known").state = TaskState::Released;
                unqueued.push(d);
                stack.push(d);
            }
        }
        unqueued
    }

    /// Moves queued, unstarted tasks from busy workers to workers with free threads.
    fn balance(&mut self) {
        // An idle worker that may take a ready task gets it from `schedule` rather than
        // stealing. What stays ready after it fits no worker with room, so no thief either.
        self.schedule();
        let q = self.config.queue_per_thread;
        // Workers with fewer tasks than threads (load under 1), least loaded first; leaving
        // workers are not in the index, so they neither steal nor are stolen from.
        let mut thieves: Vec<(WorkerId, usize)> = self
            .by_load
            .iter()
            .take_while(|(load, _)| load.0 < 1.0)
            .map(|&(_, id)| {
                let ws = &self.workers[&id];
                (id, ws.capacity(q) - ws.processing.len())
            })
            .collect();
        if thieves.is_empty() {
            return;
        }
        // Workers with tasks queued beyond their threads, most loaded first, a few per call:
        // with a thousand workers draining their queues, looking at every one on every idle
        // moment would cost more than the moves save.
        let victims: Vec<WorkerId> = self
            .by_load
            .iter()
            .rev()
            .take_while(|(load, _)| load.0 > 1.0)
            .take(VICTIMS_PER_BALANCE)
            .map(|&(_, id)| id)
            .collect();
        let mut thief = 0;
        for v in victims {
            if thief == thieves.len() {
                break;
            }
            let ws = &self.workers[&v];
            let mut candidates: Vec<TaskId> = ws
                .processing
                .iter()
                .copied()
                .filter(|t| {
                    matches!(self.tasks[t].state, TaskState::Processing { started: false, .. })
                        && !self.stealing.contains_key(t)
                        && self.tasks[t].waiting_on == 0
                        && !self.has_queued_dependents(*t, v)
                })
                .collect();
            candidates.sort_by_key(|t| self.tasks[t].seq);
            let spare = ws.processing.len() - ws.info.nthreads as usize;
            let mut take = candidates.len().min(spare.div_ceil(2));
            let mut chosen: Vec<TaskId> = Vec::new();
            while take > 0 && thief < thieves.len() {
                let Some(t) = candidates.pop() else { break };
                let (to, room) = &mut thieves[thief];
                if !self.workers[to].fits(self.tasks[&t].options()) {
                    continue;
                }
                *room -= 1;
                take -= 1;
                let to = *to;
                if *room == 0 {
                    thief += 1;
                }
                self.stealing.insert(t, to);
                chosen.push(t);
            }
            if !chosen.is_empty() {
                self.outbox.push(Outgoing::Worker(v, ToWorker::Steal { tasks: chosen }));
            }
        }
    }

    /// `t` failed for good: it and everything downstream of it err, and clients are told.
    fn set_erred(&mut self, t: TaskId, error: TaskError) {
        let mut stack = vec![(t, error)];
        let mut touched = Vec::new();
        while let Some((t, error)) = stack.pop() {
            let task = self.tasks.get_mut(&t).expect("set_erred of a known task");
            if matches!(task.state, TaskState::Erred(_) | TaskState::Memory) {
                continue;
            }
            if let TaskState::Processing { worker, .. } = task.state {
                self.unassign(worker, t);
                self.outbox
                    .push(Outgoing::Worker(worker, ToWorker::Cancel { tasks: vec![t] }));
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
    fn maybe_release(&mut self, t: TaskId) {
        let mut stack = vec![t];
        while let Some(t) = stack.pop() {
            if !self.tasks.contains_key(&t) || self.needed(t) {
                continue;
            }
            let task = self.tasks.get_mut(&t).expect("checked");
            match task.state.clone() {
                TaskState::Memory => {
                    let holders = std::mem::take(&mut task.who_has);
                    let nbytes = task.nbytes;
                    task.state = TaskState::Released;
                    for w in holders {
                        let ws = self.workers.get_mut(&w).expect("holders are known workers");
                        ws.has_data.remove(&t);
                        ws.stored_bytes -= nbytes;
                        self.outbox
                            .push(Outgoing::Worker(w, ToWorker::ReleaseData { tasks: vec![t] }));
                    }
                }
                TaskState::Processing { worker, .. } => {
                    self.unassign(worker, t);
                    self.outbox
                        .push(Outgoing::Worker(worker, ToWorker::Cancel { tasks: vec![t] }));
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

    // ----- reports -----

    pub fn info(&self) -> ClusterInfo {
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
            clients: self.clients.len() as u64,
        }
    }

    /// Checks every invariant that ties the tables together. Tests call it after each event.
    pub fn sanity_check(&self) {
        let indexed: BTreeSet<(Load, WorkerId)> = self
            .workers
            .iter()
            .filter(|(_, ws)| !ws.leaving)
            .map(|(id, ws)| (Load(ws.load()), *id))
            .collect();
        assert_eq!(indexed, self.by_load, "the placement index is stale");
        for (id, ws) in &self.workers {
            let mut running = 0;
            for t in &ws.processing {
                match &self.tasks[t].state {
                    TaskState::Processing { worker, started, .. } => {
                        assert_eq!(worker, id, "task {t} processing on the wrong worker");
                        running += *started as usize;
                    }
                    s => panic!("task {t} in {id}'s processing set is {s:?}"),
                }
            }
            assert_eq!(running, ws.running, "running count of {id}");
            let mut bytes = 0;
            for t in &ws.has_data {
                assert!(
                    self.tasks[t].who_has.contains(id),
                    "{id} holds {t} but who_has disagrees"
                );
                bytes += self.tasks[t].nbytes;
            }
            assert_eq!(bytes, ws.stored_bytes, "stored bytes of {id}");
        }
        let mut wants: IdMap<ClientId, usize> = IdMap::default();
        for (id, task) in self.tasks.iter() {
            let id = &id;
            for list in [&task.deps, &task.dependents] {
                assert!(list.is_canonical(), "id lists of {}", task.key);
            }
            assert!(
                task.who_has.is_canonical() && task.wanted_by.is_canonical(),
                "id lists of {}",
                task.key
            );
            for w in &task.who_has {
                assert!(
                    self.workers[w].has_data.contains(id),
                    "who_has of {} names {w}",
                    task.key
                );
            }
            if task.state != TaskState::Memory {
                assert!(
                    task.who_has.is_empty(),
                    "{} holds data in state {:?}",
                    task.key,
                    task.state
                );
            }
            match &task.state {
                TaskState::Memory => {
                    assert!(!task.who_has.is_empty(), "{} in memory nowhere", task.key)
                }
                TaskState::Waiting => {
                    let missing = task
                        .deps
                        .iter()
                        .filter(|d| self.tasks[d].state != TaskState::Memory)
                        .count();
                    assert_eq!(missing, task.waiting_on as usize, "waiting count of {}", task.key);
                    assert!(missing > 0, "{} waits on nothing", task.key);
                }
                TaskState::Processing { worker, .. } if task.waiting_on > 0 => {
                    // Queued behind inputs that are computing on the same worker.
                    let mut missing = 0;
                    for d in &task.deps {
                        match self.tasks[d].state {
                            TaskState::Memory => {}
                            TaskState::Processing { worker: w, .. } => {
                                assert_eq!(w, *worker, "{} is queued behind an input elsewhere", task.key);
                                missing += 1;
                            }
                            ref s => panic!("{} is queued behind an input that is {}", task.key, s.name()),
                        }
                    }
                    assert_eq!(missing, task.waiting_on, "queued count of {}", task.key);
                    assert!(self.workers[worker].processing.contains(id));
                }
                TaskState::Ready | TaskState::Processing { .. } => {
                    for d in &task.deps {
                        assert_eq!(
                            self.tasks[d].state,
                            TaskState::Memory,
                            "{} is {} but its input {} is not in memory",
                            task.key,
                            task.state.name(),
                            self.tasks[d].key
                        );
                    }
                    if let TaskState::Processing { worker, .. } = task.state {
                        assert!(self.workers[&worker].processing.contains(id));
                    }
                }
                _ => {}
            }
            for d in &task.deps {
                assert!(
                    self.tasks[d].dependents.contains(id),
                    "dependents of {}",
                    self.tasks[d].key
                );
            }
            for c in &task.wanted_by {
                assert!(self.clients[c].wanted.contains(id), "client {c} wants {}", task.key);
                *wants.entry(*c).or_insert(0) += 1;
            }
        }
        for (t, thief) in &self.stealing {
            match self.tasks.get(t).map(|task| &task.state) {
                Some(TaskState::Processing { worker, .. }) => {
                    assert_ne!(worker, thief, "{t} is stolen by the worker it is on")
                }
                s => panic!("{t} is being stolen while {s:?}"),
            }
            assert!(self.workers.contains_key(thief), "{t} is stolen by a lost worker");
        }
        for (c, cs) in &self.clients {
            assert_eq!(cs.wants, wants.get(c).copied().unwrap_or(0), "tasks client {c} wants");
        }
        self.tasks.sanity_check();
    }
}

/// The error of a task whose input `key` erred with `error`: names the task that failed first.
fn dependency_error(key: &str, error: TaskError) -> TaskError {
    match error {
        e @ TaskError::Dependency { .. } => e,
        e => TaskError::Dependency {
            key: key.to_string(),
            error: Box::new(e),
        },
    }
}

#[cfg(test)]
mod size_tests {
    /// Every byte of `Task` is paid by each of a million pending tasks (the `memory`
    /// benchmark): growing it should be a decision, not an accident.
    #[test]
    fn a_task_stays_small() {
        assert!(std::mem::size_of::<Option<super::Task>>() <= 152);
        assert_eq!(std::mem::size_of::<super::TaskState>(), 16);
        assert_eq!(std::mem::size_of::<super::StoredSpec>(), 24);
    }
}
