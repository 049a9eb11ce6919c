//! The scheduler's brain: task states, worker bookkeeping and placement, as a synchronous
//! state machine with one owner (the contract every distd state machine follows is in
//! ARCHITECTURE.md, "State machines").
//!
//! - Events come in as `on_<event>(..., now)` methods named after what happened
//!   (`on_worker_joined`, `on_worker_message`, `on_client_message`, `on_timer` ...).
//! - Transitions never place tasks themselves: they ask for the placement pass
//!   ([`placement`]), which runs once per batch of events, when the shell takes the outbox.
//! - Decisions go out as [`Outgoing`] values through [`Core::take_outbox`].
//! - The next timer is [`Core::next_deadline`]; the shell calls [`Core::on_timer`] then.
//!
//! The core is spread over one file per lifecycle, each an `impl Core` block over the same
//! tables: [`task`] (what a task is), [`workers`] (a worker's messages), [`clients`],
//! [`submit`], [`scatter`], [`lifecycle`] (compute, err, release), [`loss`], [`retire`],
//! [`nanny`], [`placement`], [`replicas`], [`idle`] (results kept after use), [`stall`] (telling clients nothing can go on), and the
//! invariants in [`sanity`].
//!
//! This module and its children must never await, touch a socket or a file, or read a clock:
//! that is what lets them be tested event by event without a network.

mod clients;
mod idle;
mod lifecycle;
mod loss;
mod nanny;
mod placement;
mod replicas;
mod retire;
#[cfg(test)]
mod sanity;
mod scatter;
mod stall;
mod submit;
mod task;
mod unrunnable;
mod workers;

use self::clients::ClientState;
use self::nanny::{NannyState, PendingRestart};
use self::placement::PlacementDue;
use self::scatter::PendingScatter;
use self::stall::Stall;
pub(crate) use self::stall::NO_WORKER_NOTICE_AFTER;
#[cfg(test)]
pub(crate) use self::task::TaskState;
use self::task::{NameInterner, Task};
use self::workers::{Load, WorkerState};
use super::table::TaskTable;
use crate::idmap::{IdMap, IdSet};
use crate::protocol::{AttemptId, ClientId, NannyId, TaskId, ToClient, ToNanny, ToWorker, WorkerId};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

/// How often the core looks for workers that missed their heartbeats and rebalances
/// queues, while any worker is connected and any task is known.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(200);

/// The same with no task known: nothing to rebalance, only heartbeats to watch (a silent
/// worker is then dropped up to this much later than its heartbeat timeout).
const HOUSEKEEPING_IDLE: Duration = Duration::from_secs(2);

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
    /// round trip (see [`placement`]). Off only in tests that pin down how ready tasks are
    /// placed.
    pub queue_behind_inputs: bool,
    /// Stop after this long with no client and no task.
    pub idle_timeout: Option<Duration>,
    /// Keep results nothing needs any more on their workers, within a budget, while tasks
    /// that take them are still known (see `idle.rs`): a dependent computed again after a
    /// loss then finds its inputs instead of redoing their lineage. Off only in tests that
    /// pin down when results are released.
    pub keep_idle_results: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            allowed_failures: 3,
            queue_per_thread: 64,
            heartbeat_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_millis(1000),
            queue_behind_inputs: true,
            idle_timeout: None,
            keep_idle_results: true,
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
    /// Stop the scheduler (its idle timeout ran out).
    Stop(StopReason),
}

/// Why the scheduler stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    Requested,
    IdleTimeout(Duration),
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
    nannies: IdMap<NannyId, NannyState>,
    restart: Option<PendingRestart>,
    /// Steals under way: a task processing on its victim -> the worker it moves to if the
    /// victim gives it back. Out of the tasks, since few are being stolen at any time.
    stealing: IdMap<TaskId, WorkerId>,
    /// Retiring workers, with the copies of their results under way: task -> target worker.
    retiring: IdMap<WorkerId, IdMap<TaskId, WorkerId>>,
    /// Copies under way for tasks that want replicas: task -> target workers.
    copying: IdMap<TaskId, Vec<WorkerId>>,
    /// Results kept though nothing needs them, oldest first, and their bytes.
    idle: self::idle::IdleResults,
    /// Results with fewer copies than their task wants, for want of workers or after a
    /// failed copy: tried again when a worker joins.
    replicas_short: IdSet<TaskId>,
    next_seq: u64,
    /// The number of the next assignment of a task to a worker (wrapping).
    next_attempt: u32,
    /// What the placement pass must do when this batch of events ends.
    placement_due: PlacementDue,
    /// Whether waiting clients were told that no worker is connected.
    stall: Stall,
    /// Tasks that no connected worker can run, reported to their clients.
    unrunnable: self::unrunnable::Unrunnable,
    /// The latest `now` an event brought.
    clock: Instant,
    /// When the heartbeat check and rebalancing last ran.
    last_housekeeping: Instant,
    /// Since when no client is connected and no task is known.
    idle_since: Instant,
    outbox: Vec<Outgoing>,
    /// Entries of task lists (inputs, dependents) visited by the loops that must cost in
    /// proportion to what an event touches: what the shape tests count.
    #[cfg(test)]
    work: std::cell::Cell<u64>,
}

impl Core {
    pub fn new(config: CoreConfig, now: Instant) -> Core {
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
            next_attempt: 0,
            outbox: Vec::new(),
            nannies: IdMap::default(),
            restart: None,
            retiring: IdMap::default(),
            stealing: IdMap::default(),
            copying: IdMap::default(),
            idle: Default::default(),
            replicas_short: IdSet::default(),
            placement_due: PlacementDue::default(),
            unrunnable: Default::default(),
            stall: Stall {
                no_worker_since: Some(now),
                told: false,
            },
            clock: now,
            last_housekeeping: now,
            idle_since: now,
            #[cfg(test)]
            work: std::cell::Cell::new(0),
        }
    }

    /// Counts `n` entries of task lists visited (tests only; nothing in a release build).
    #[inline]
    fn visited(&self, n: usize) {
        #[cfg(test)]
        self.work.set(self.work.get() + n as u64);
        #[cfg(not(test))]
        let _ = n;
    }

    /// Entries of task lists visited so far (see `Core::visited`).
    #[cfg(test)]
    pub(crate) fn work(&self) -> u64 {
        self.work.get()
    }

    /// Ends a batch of events: runs the placement pass the batch asked for, then hands over
    /// everything decided since the last call, in order.
    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        self.run_placement();
        self.report_unrunnable();
        std::mem::take(&mut self.outbox)
    }

    /// When [`Core::on_timer`] is due next: the housekeeping round while workers are
    /// connected, a restart's patience, the idle timeout. `None` when nothing is pending: an
    /// idle scheduler sleeps.
    pub fn next_deadline(&self) -> Option<Instant> {
        let housekeeping = (!self.workers.is_empty()).then(|| self.last_housekeeping + self.housekeeping_every());
        let restart = self.restart.as_ref().map(|r| r.deadline);
        let idle = self
            .config
            .idle_timeout
            .filter(|_| self.is_idle())
            .map(|limit| self.idle_since + limit);
        [
            housekeeping,
            restart,
            idle,
            self.stall_deadline(),
            self.unrunnable_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// How long from one housekeeping round to the next.
    fn housekeeping_every(&self) -> Duration {
        if self.tasks.is_empty() {
            HOUSEKEEPING_IDLE
        } else {
            HOUSEKEEPING_EVERY
        }
    }

    /// Notes the time an event brought. Called first by every event, so a core that was busy
    /// until this event is idle from now on at the earliest.
    fn at(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        if !self.is_idle() {
            self.idle_since = self.clock;
        }
    }

    /// A number for a new assignment of a task to a worker.
    fn new_attempt(&mut self) -> AttemptId {
        let a = AttemptId(self.next_attempt);
        self.next_attempt = self.next_attempt.wrapping_add(1);
        a
    }

    /// No client is connected and no task is known: what `--idle-timeout` waits for.
    pub fn is_idle(&self) -> bool {
        self.clients.is_empty() && self.tasks.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// The state of a key, for tests.
    #[cfg(test)]
    pub(crate) fn state_of(&self, key: &str) -> Option<&TaskState> {
        self.tasks.id_of(key).map(|id| &self.tasks[&id].state)
    }

    /// A key's task id, for tests.
    #[cfg(test)]
    pub(crate) fn id_of(&self, key: &str) -> Option<TaskId> {
        self.tasks.id_of(key)
    }

    /// The workers holding the result of task `id` (of this generation), by name.
    #[cfg(test)]
    pub(crate) fn holders_of_id(&self, id: TaskId) -> Vec<String> {
        self.tasks.get(&id).map_or_else(Vec::new, |t| {
            t.who_has.iter().map(|w| self.workers[w].info.name.clone()).collect()
        })
    }

    /// The workers holding a key's result, by name.
    #[cfg(test)]
    pub(crate) fn holders_of(&self, key: &str) -> Vec<String> {
        let Some(id) = self.tasks.id_of(key) else {
            return Vec::new();
        };
        self.tasks[&id]
            .who_has
            .iter()
            .map(|w| self.workers[w].info.name.clone())
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// A deadline of [`Core::next_deadline`] came: drops workers that missed their
    /// heartbeats and rebalances queues, gives up on a restart that took too long, and stops
    /// an idle scheduler past its idle timeout.
    pub fn on_timer(&mut self, now: Instant) {
        self.at(now);
        self.restart_on_timer(now);
        self.stall_on_timer(now);
        self.unrunnable_on_timer(now);
        if let Some(limit) = self.config.idle_timeout {
            if self.is_idle() && now.saturating_duration_since(self.idle_since) >= limit {
                log::info!("idle for {:.1} s; stopping", limit.as_secs_f64());
                self.outbox.push(Outgoing::Stop(StopReason::IdleTimeout(limit)));
            }
        }
        if now < self.last_housekeeping + self.housekeeping_every() {
            return;
        }
        self.last_housekeeping = now;
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
            self.lose_worker(w, &reason);
        }
        self.placement_due.balance = true;
    }
}
