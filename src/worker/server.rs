//! The worker process's async shell: the scheduler connection, the peer port, fetchers and
//! executions, all feeding one loop that owns the [`WorkerCore`] and carries out its effects.
//!
//! Heartbeats, memory pauses and spills, the lifetime and stop requests are the core's
//! decisions. The loop waits for an event or the core's next deadline ([`DeadlineWait`]),
//! passes the clock in with every event, reads `/proc` when the core asks, and never keeps a
//! periodic ticker of its own. One policy is still the shell's: how registration is retried
//! (with the dial's backoff and its few lines, within `--death-timeout` for every dial,
//! handshake and `Register` together; a refusal final at once), in `register_patiently`;
//! and one duty: a worker its nanny started ends when the nanny dies, removing its scratch
//! folder first, and then dies of the nanny's death signal.

use super::exec::{call_function, execute, Claim, ExecContext, FunctionThreads, Output};
use super::fetcher::{Fetchers, Report};
use super::peer::serve_peers;
use super::registration::{connect_scheduler, register_patiently, Session};
use super::registry::Registry;
use super::state::{Effect, FetchError, WorkerCore, WorkerSettings};
use super::store::Store;
use super::tether::{parent_died, stop_when_parent_dies};
use crate::idmap::IdMap;
use crate::memory::MemoryPolicy;
use crate::protocol::{
    AttemptId, Data, DialError, PeerTimeouts, Retry, Role, Served, TaskError, TaskId, TaskSpec, ToWorker, WorkerInfo,
};
use crate::rt::{DeadlineWait, Inbox, Woke};
use async_io::Timer;
use futures_lite::FutureExt;
use smol::net::TcpListener;
use smol::Task;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::state::WorkerExit;

/// Everything a worker needs to know before it opens a socket.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// `host:port` of the scheduler, resolved anew on every connection attempt.
    pub scheduler: String,
    pub nthreads: usize,
    /// Defaults to `HOST-PID`.
    pub name: Option<String>,
    pub resources: Vec<(String, f64)>,
    /// Scratch space for command inputs.
    pub local_dir: PathBuf,
    /// Where the peer port binds; by default the interface that reaches the scheduler.
    pub listen: Option<SocketAddr>,
    /// The address peers are told to use, when it differs from the bound one (NAT, proxies).
    pub contact_address: Option<String>,
    /// How long the scheduler may stay unreachable before the worker gives up.
    pub death_timeout: Duration,
    pub memory_limit: u64,
    /// Retire after this long (results copied to other workers first).
    pub lifetime: Option<Duration>,
    /// On a stop request, finish running tasks and hand over results instead of leaving at
    /// once; a second request stops at once.
    pub drain: bool,
}

/// Why a worker stopped other than by request.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The scheduler could not be reached, or refused this worker.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// It was reached, but registering failed until the death timeout.
    #[error("scheduler at {addr} unreachable for {waited:.1} s: {last}")]
    Unreachable { addr: String, waited: f64, last: String },
    #[error("cannot listen for peers on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("cannot create local directory {path}: {source}")]
    LocalDir { path: String, source: std::io::Error },
}

/// What the loop reacts to.
pub(super) enum Event {
    FromScheduler(ToWorker),
    SchedulerLost(String),
    Fetched(TaskId, Result<Data, FetchError>),
    /// An execution of this assignment of a task ended.
    Executed(TaskId, AttemptId, Result<Output, TaskError>),
    /// An execution found this input of the task missing from the store.
    InputMissing(TaskId, AttemptId, TaskId),
    /// A function thread started this assignment of a task.
    FunctionStarted(TaskId, AttemptId),
    /// The spill the core asked for is over.
    Spilled,
    /// Someone asks the worker to stop (a signal, [`Worker::stop`]).
    Stop,
    /// The worker's nanny died (`tether`): the worker ends as when the nanny's death killed
    /// it outright, its executions killed, no goodbye (the scheduler counts it lost, as
    /// before), but its scratch folder removed.
    NannyDied,
}

/// A running worker.
pub struct Worker {
    /// Where peers and clients fetch results from this worker.
    pub peer_address: String,
    pub name: String,
    pub scheduler: String,
    stop: async_channel::Sender<Event>,
    main: Task<Result<WorkerExit, WorkerError>>,
    /// Set when the worker stops because its nanny died: it then ends by that signal.
    parent_died: Arc<AtomicBool>,
    /// Its scratch folder, for the last resort of a stop that does not end in time.
    scratch_path: PathBuf,
    /// Stops the worker when its nanny dies (a worker a nanny started).
    _parent_watch: Option<Task<()>>,
}

impl Worker {
    /// Connects (retrying up to the death timeout), opens the peer port and registers.
    ///
    /// A worker its nanny started ends when the nanny dies (however it dies: the kernel
    /// sends [`crate::sys::PARENT_DEATH_SIGNAL`]): at once, as that death always ended it,
    /// but with its scratch folder removed (`tether`).
    pub async fn start(config: WorkerConfig, registry: Registry) -> Result<Worker, WorkerError> {
        // Caught before the scratch folder exists: until then the signal's default action
        // ends a worker whose nanny died, with nothing to clean up.
        let mut parent_death = crate::sys::watch_parent_death().unwrap_or_else(|e| {
            log::warn!("cannot watch for the nanny's death: {e}");
            None
        });
        // Each worker gets its own folder under the local directory, removed when it ends
        // (or by its nanny, or by the next worker to start there, if it was killed).
        let scratch = super::scratch::Scratch::create(&config.local_dir).map_err(|source| WorkerError::LocalDir {
            path: config.local_dir.display().to_string(),
            source,
        })?;
        // The nanny, by its pid: once this process has another parent, the nanny is gone,
        // whether or not its death signal has been handled yet.
        let nanny = parent_death.as_ref().map(|_| crate::sys::parent_pid());
        let starting = async { Some(Worker::start_in(config, registry, scratch, nanny).await) };
        let Some(started) = starting.or(parent_died(parent_death.as_mut())).await else {
            // The start (and the scratch folder with it) was dropped when the race ended.
            crate::sys::die_of_parent_death()
        };
        let mut worker = started?;
        if let Some(signals) = parent_death {
            worker._parent_watch = Some(crate::rt::spawn(stop_when_parent_dies(
                signals,
                worker.stop.clone(),
                worker.parent_died.clone(),
                worker.scratch_path.clone(),
            )));
        }
        Ok(worker)
    }

    /// [`Worker::start`] once its scratch folder is made.
    async fn start_in(
        config: WorkerConfig,
        registry: Registry,
        scratch: super::scratch::Scratch,
        nanny: Option<u32>,
    ) -> Result<Worker, WorkerError> {
        let work_dir = scratch.path().to_path_buf();
        // One patience for the whole registration: every dial, handshake and `Register`.
        let mut retry = Retry::new(Role::Scheduler, &config.scheduler, config.death_timeout, Instant::now());
        let (stream, scheduler_addr) = connect_scheduler(&config.scheduler, &mut retry).await?;
        let bind = config
            .listen
            .unwrap_or_else(|| SocketAddr::new(stream.local_addr().map(|a| a.ip()).unwrap_or([0, 0, 0, 0].into()), 0));
        let listener = TcpListener::bind(bind).await.map_err(|source| WorkerError::Listen {
            addr: bind.to_string(),
            source,
        })?;
        let bound = listener.local_addr().map_err(|source| WorkerError::Listen {
            addr: bind.to_string(),
            source,
        })?;
        let peer_address = config.contact_address.clone().unwrap_or_else(|| {
            let ip = if bound.ip().is_unspecified() {
                stream.local_addr().map(|a| a.ip()).unwrap_or(bound.ip())
            } else {
                bound.ip()
            };
            SocketAddr::new(ip, bound.port()).to_string()
        });
        let host = crate::sys::hostname();
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", host, std::process::id()));
        let info = WorkerInfo {
            name: name.clone(),
            peer_address: peer_address.clone(),
            nthreads: config.nthreads as u32,
            resources: config.resources.clone(),
            memory_limit: config.memory_limit,
            pid: std::process::id(),
            host,
        };
        let (senders, events_rx) = crate::rt::inbox();
        let events_tx = senders.events;
        let session = register_patiently(Some(stream), &mut retry, &config, &info, events_tx.clone()).await?;
        let memory = MemoryPolicy::new(config.memory_limit);
        let store: Arc<Store> = Arc::new(
            Store::new(work_dir.join("spill"), memory.spill_above())
                .with_largest_in_memory(memory.largest_held_result()),
        );
        // The peer port proves itself with the credential the scheduler accepted, and
        // follows it when the worker registers again (a restarted scheduler may be another
        // cluster's).
        let served = Served::new(session.credential.clone());
        let peers = crate::rt::spawn(serve_peers(listener, store.clone(), served.clone()));
        let ctx = ExecContext {
            registry: Arc::new(registry),
            local_dir: work_dir.clone(),
            stdout_in_memory_at_most: super::capture::stdout_in_memory_at_most(&memory),
            groups: crate::sys::cgroup::TaskGroups::new(),
        };
        let functions = FunctionThreads::new(config.nthreads);
        let settings = WorkerSettings {
            nthreads: config.nthreads,
            lifetime: config.lifetime,
            drain: config.drain,
            memory,
        };
        let shell = Shell {
            nanny,
            core: WorkerCore::new(settings, Instant::now()),
            config,
            info,
            store,
            ctx,
            events_tx: events_tx.clone(),
            executions: IdMap::default(),
            spilling: None,
            functions,
            claims: IdMap::default(),
            fetchers: Fetchers::new(
                Report {
                    events: events_tx.clone(),
                    event: Event::Fetched,
                },
                PeerTimeouts::default(),
            ),
            _peers: peers,
            served,
        };
        let parent_died = Arc::new(AtomicBool::new(false));
        let died = parent_died.clone();
        let main = crate::rt::spawn(async move {
            let ended = shell.run(session, events_rx).await;
            drop(scratch);
            if died.load(Ordering::SeqCst) {
                // Stopped for its nanny's death, folder removed: now end as the signal would.
                crate::sys::die_of_parent_death();
            }
            ended
        });
        Ok(Worker {
            peer_address,
            name,
            scheduler: scheduler_addr.to_string(),
            stop: senders.urgent,
            main,
            parent_died,
            scratch_path: work_dir,
            _parent_watch: None,
        })
    }

    /// Waits until the worker ends: told to by the scheduler (Ok), or lost it for good.
    pub async fn join(self) -> Result<WorkerExit, WorkerError> {
        self.main.await
    }

    /// Stops the worker: running tasks are killed, and the scheduler sees it leave.
    pub async fn stop(self) -> Result<WorkerExit, WorkerError> {
        let _ = self.stop.send(Event::Stop).await;
        self.main.await
    }

    /// A handle that stops the worker from another task (a signal handler).
    pub fn stopper(&self) -> WorkerStopper {
        WorkerStopper(self.stop.clone())
    }
}

/// Stops a worker from another task.
#[derive(Clone)]
pub struct WorkerStopper(async_channel::Sender<Event>);

impl WorkerStopper {
    pub async fn stop(&self) {
        let _ = self.0.send(Event::Stop).await;
    }
}

/// The loop's owned state.
struct Shell {
    /// The pid of the nanny that started this worker, if one did.
    nanny: Option<u32>,
    config: WorkerConfig,
    info: WorkerInfo,
    core: WorkerCore,
    store: Arc<Store>,
    ctx: ExecContext,
    events_tx: async_channel::Sender<Event>,
    /// Running executions; dropping one kills it.
    executions: IdMap<TaskId, (AttemptId, Task<()>)>,
    /// Where function tasks run.
    functions: FunctionThreads,
    /// Function tasks queued to `functions` that no thread has started: a steal or a cancel
    /// retracts them through their claim.
    claims: IdMap<TaskId, (AttemptId, Arc<Claim>)>,
    /// A forced spill running on a blocking thread, when the core asked for one.
    spilling: Option<Task<()>>,
    /// One fetcher per peer address.
    fetchers: Fetchers<Event>,
    _peers: Task<()>,
    /// What the peer port serves with: the credential of the current registration.
    served: Served,
}

impl Shell {
    async fn run(mut self, mut session: Session, events: Inbox<Event>) -> Result<WorkerExit, WorkerError> {
        loop {
            self.core.on_registered(session.heartbeat, Instant::now());
            let ended = match self.apply_outbox(&session) {
                Some(end) => end,
                None => self.serve(&session, &events).await,
            };
            // Whatever ended the session, nothing of it may keep running.
            self.executions.clear();
            for (_, (_, claim)) in self.claims.drain() {
                claim.retract();
            }
            self.fetchers.clear();
            self.store.clear();
            let reason = match ended {
                Ended::Leave(exit) => {
                    // Flush the goodbye before the connection closes.
                    let Session { tx, _writer, .. } = session;
                    drop(tx);
                    _writer
                        .or(async {
                            Timer::after(Duration::from_secs(2)).await;
                        })
                        .await;
                    return Ok(exit);
                }
                // The process ends next: the connection just drops.
                Ended::Abandoned => return Ok(WorkerExit::Stopped),
                Ended::Lost(reason) => reason,
            };
            self.core.on_scheduler_lost(Instant::now());
            drop(session);
            log::warn!(
                "lost the scheduler at {} ({reason}); reconnecting for up to {:.1} s",
                self.config.scheduler,
                self.config.death_timeout.as_secs_f64()
            );
            // A stop request while reconnecting is the core's to judge (without a scheduler
            // it ends the worker at once); whatever else arrives belongs to the lost session.
            let core = &mut self.core;
            let stopped = async {
                loop {
                    match events.next().await {
                        Some(Event::Stop) => core.on_stop_requested(Instant::now()),
                        Some(Event::NannyDied) => return WorkerExit::Stopped,
                        Some(Event::Spilled) => core.on_spilled(),
                        Some(_) => {}
                        None => return WorkerExit::Stopped,
                    }
                    for effect in core.take_outbox() {
                        if let Effect::Leave(exit) = effect {
                            return exit;
                        }
                    }
                }
            };
            let (config, info) = (&self.config, &self.info);
            let mut retry = Retry::new(Role::Scheduler, &config.scheduler, config.death_timeout, Instant::now());
            let again = async { Ok(register_patiently(None, &mut retry, config, info, self.events_tx.clone()).await) };
            match again.or(async { Err(stopped.await) }).await {
                Err(exit) => return Ok(exit),
                Ok(s) => session = s?,
            }
            self.served.set(session.credential.clone());
            log::info!("registered again with {}", self.config.scheduler);
        }
    }

    /// Handles events until the session ends, waking for the core's next deadline too.
    async fn serve(&mut self, session: &Session, events: &Inbox<Event>) -> Ended {
        let mut wait = DeadlineWait::default();
        loop {
            let mut cut = false;
            match wait.next(events, self.core.next_deadline()).await {
                Woke::Event(first) => {
                    let mut batch = events.batch(first);
                    for ev in &mut batch {
                        if let Some(end) = self.handle(ev, session) {
                            return end;
                        }
                    }
                    cut = batch.is_full();
                }
                Woke::Closed => return Ended::Leave(WorkerExit::Stopped),
                Woke::Deadline => {}
            }
            // Checked after every batch too, so a loop busy with events cannot starve it.
            let now = Instant::now();
            if self.core.next_deadline().is_some_and(|at| at <= now) {
                self.core.on_timer(now);
            }
            self.core.report_starts();
            if let Some(end) = self.apply_outbox(session) {
                return end;
            }
            self.functions.hold(self.core.is_paused());
            if cut {
                // More is queued (function threads may finish tasks as fast as this loop
                // takes them): let the connections and the signal handler run first.
                crate::rt::yield_now().await;
            }
        }
    }

    /// A scheduler message, to the core.
    fn handle_message(&mut self, msg: ToWorker) {
        match msg {
            ToWorker::Registered { .. } => {}
            ToWorker::Compute(ct) => self.core.on_compute(*ct),
            ToWorker::ReleaseData { tasks } => self.core.on_release_data(tasks),
            ToWorker::Cancel { tasks } => self.core.on_cancel(tasks),
            ToWorker::Steal { tasks } => {
                let claims = &mut self.claims;
                self.core
                    .on_steal(tasks, |t| claims.remove(&t).is_some_and(|(_, c)| c.retract()))
            }
            ToWorker::PutData { task, data, .. } => {
                let n = data.len() as u64;
                self.store_put(task, Arc::new(data));
                self.core.on_put_data(task, n);
            }
            ToWorker::Replicate { task, from } => self.core.on_replicate(task, from),
            ToWorker::Shutdown { reason } => {
                log::info!("scheduler asked this worker to stop: {reason}");
                self.core.on_shutdown(Instant::now());
            }
        }
    }

    fn handle(&mut self, ev: Event, session: &Session) -> Option<Ended> {
        match ev {
            Event::FromScheduler(msg) => {
                self.core.on_message();
                self.handle_message(msg)
            }
            Event::SchedulerLost(reason) => return Some(Ended::Lost(reason)),
            Event::Stop => self.core.on_stop_requested(Instant::now()),
            Event::NannyDied => return Some(Ended::Abandoned),
            Event::Spilled => self.core.on_spilled(),
            Event::Fetched(task, outcome) => match outcome {
                Ok(data) => {
                    let n = data.len() as u64;
                    self.store_put(task, data);
                    self.core.on_fetched(task, Ok(n));
                }
                Err(e) => self.core.on_fetched(task, Err(e)),
            },
            Event::FunctionStarted(task, attempt) => {
                self.forget_claim(task, attempt);
                self.core.on_function_started(task, attempt)
            }
            // A command that ended after the nanny died was killed with the nanny's tree
            // (its cgroup, the nanny's group): not the task's failure, and never reported as
            // one. The worker ends as abandoned, before its death signal is even handled.
            Event::Executed(..) if self.nanny.is_some_and(|p| crate::sys::parent_pid() != p) => {
                return Some(Ended::Abandoned)
            }
            Event::Executed(task, attempt, outcome) => {
                self.take_execution(task, attempt);
                let stored = outcome.and_then(|output| self.store_output(task, output));
                self.core.on_executed(task, attempt, stored);
            }
            Event::InputMissing(task, attempt, dep) => {
                self.take_execution(task, attempt);
                self.core.on_input_missing(task, attempt, dep);
            }
        }
        self.apply_outbox(session)
    }

    /// Carries out everything the core decided, including what it decides on the memory
    /// readings it asks for; `Some` when it decided the worker ends.
    fn apply_outbox(&mut self, session: &Session) -> Option<Ended> {
        loop {
            let outbox = self.core.take_outbox();
            if outbox.is_empty() {
                return None;
            }
            for effect in outbox {
                if let Some(end) = self.apply(effect, session) {
                    return Some(end);
                }
            }
        }
    }

    /// Spills on a blocking thread and tells the loop when it is over.
    fn spill(&mut self, keep: u64) {
        let store = self.store.clone();
        let events = self.events_tx.clone();
        // Started now, on a blocking thread: memory is high, and the loop may not yield to
        // the task below for a while.
        let job = blocking::unblock(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if let Err(e) = store.spill_until(keep) {
                    log::warn!("spilling to disk failed: {e}");
                }
                // Give freed heap back to the system, or RSS would not show the spill.
                crate::sys::release_free_memory();
            }))
        });
        self.spilling = Some(crate::rt::spawn(async move {
            let outcome = job.await;
            if outcome.is_err() {
                log::error!("spilling to disk panicked; the next memory check tries again");
            }
            // Whatever happened, the spill is over: the core may ask for the next one.
            let _ = events.send(Event::Spilled).await;
        }));
    }

    /// Forgets the function-thread claim of this assignment of `task` (not a newer one's).
    fn forget_claim(&mut self, task: TaskId, attempt: AttemptId) -> Option<Arc<Claim>> {
        if self.claims.get(&task).is_some_and(|(a, _)| *a == attempt) {
            return self.claims.remove(&task).map(|(_, c)| c);
        }
        None
    }

    /// Ends this assignment of `task`'s execution here (not a newer one's): its handle is
    /// dropped, which stops it, and its function-thread claim is returned to be retracted
    /// or let go.
    fn take_execution(&mut self, task: TaskId, attempt: AttemptId) -> Option<Arc<Claim>> {
        if self.executions.get(&task).is_some_and(|(a, _)| *a == attempt) {
            self.executions.remove(&task);
        }
        self.forget_claim(task, attempt)
    }

    /// Stores what an execution made; its size, or the task's error if the store cannot take
    /// it (a result file that cannot be moved in).
    fn store_output(&self, task: TaskId, output: Output) -> Result<u64, TaskError> {
        match output {
            Output::Memory(data) => {
                let n = data.len() as u64;
                self.store_put(task, data);
                Ok(n)
            }
            Output::File(file) => self
                .store
                .put_file(task, file)
                .map_err(|e| TaskError::Other(format!("cannot keep its result: {e}"))),
        }
    }

    fn store_put(&self, task: TaskId, data: Data) {
        if let Err(e) = self.store.put(task, data) {
            log::warn!("storing the result {task}: {e}");
        }
    }

    fn apply(&mut self, effect: Effect, session: &Session) -> Option<Ended> {
        match effect {
            Effect::Send(msg) => {
                let _ = session.tx.try_send(msg);
            }
            Effect::Fetch {
                task,
                from,
                only_holder,
            } => self.fetchers.fetch(task, from, only_holder),
            Effect::Execute {
                task,
                attempt,
                priority,
                key: _,
                spec: TaskSpec::Function { name, args, args_form },
                inputs,
            } if self.store.all_in_memory() => {
                // The fast path: inputs in memory, run on a function thread, answer directly.
                let inputs = match gather_inputs(&self.store, inputs) {
                    Ok(i) => i,
                    Err(dep) => {
                        let _ = self.events_tx.try_send(Event::InputMissing(task, attempt, dep));
                        return None;
                    }
                };
                let registry = self.ctx.registry.clone();
                let events = self.events_tx.clone();
                let claim = self.functions.submit(
                    priority,
                    Box::new(move || {
                        let _ = events.send_blocking(Event::FunctionStarted(task, attempt));
                        let outcome = call_function(&registry, &name, &args, args_form, inputs)
                            .map(|bytes| Output::Memory(Arc::new(bytes)));
                        let _ = events.send_blocking(Event::Executed(task, attempt, outcome));
                    }),
                );
                self.claims.insert(task, (attempt, claim));
            }
            Effect::Execute {
                task,
                attempt,
                priority: _,
                key,
                spec,
                inputs,
            } => {
                let ctx = self.ctx.clone();
                let events = self.events_tx.clone();
                let store = self.store.clone();
                let function = matches!(spec, TaskSpec::Function { .. });
                let handle = crate::rt::spawn(async move {
                    if function {
                        let _ = events.send(Event::FunctionStarted(task, attempt)).await;
                    }
                    let gathered = match gather_inputs_async(&store, inputs).await {
                        Ok(g) => g,
                        Err(dep) => {
                            let _ = events.send(Event::InputMissing(task, attempt, dep)).await;
                            return;
                        }
                    };
                    let outcome = std::panic::AssertUnwindSafe(execute(&ctx, task, &key, spec, gathered))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err(TaskError::Other("the worker panicked running this task".into())));
                    let _ = events.send(Event::Executed(task, attempt, outcome)).await;
                });
                self.executions.insert(task, (attempt, handle));
            }
            Effect::Kill(task, attempt) => {
                if let Some(claim) = self.take_execution(task, attempt) {
                    claim.retract();
                }
            }
            Effect::Drop(tasks) => {
                for t in tasks {
                    self.store.remove(t);
                }
            }
            Effect::SampleMemory => {
                let rss = crate::sys::rss(None).unwrap_or(0);
                let in_memory = self.store.stats().in_memory_bytes;
                self.core.on_memory(rss, in_memory, Instant::now());
            }
            Effect::Spill { keep } => self.spill(keep),
            Effect::Leave(exit) => return Some(Ended::Leave(exit)),
        }
        None
    }
}

/// The inputs of a task, in order, from the store (all in memory: nothing blocks); `Err`
/// names an input that is not there.
fn gather_inputs(store: &Store, inputs: Vec<(TaskId, String)>) -> Result<Vec<(String, Data)>, TaskId> {
    inputs
        .into_iter()
        .map(|(id, key)| input(id, key, store.get(id)))
        .collect()
}

/// [`gather_inputs`] for async code: spilled inputs are read on a blocking thread.
async fn gather_inputs_async(store: &Arc<Store>, inputs: Vec<(TaskId, String)>) -> Result<Vec<(String, Data)>, TaskId> {
    let mut out = Vec::with_capacity(inputs.len());
    for (id, key) in inputs {
        out.push(input(id, key, store.get_async(id).await)?);
    }
    Ok(out)
}

/// One input as the store answered for it; a store that cannot read it back (a spill file
/// lost) has lost it.
fn input(
    id: TaskId,
    key: String,
    got: Result<Option<Data>, super::store::StoreError>,
) -> Result<(String, Data), TaskId> {
    match got {
        Ok(Some(d)) => Ok((key, d)),
        Ok(None) => {
            log::warn!("input {key:?} ({id}) is not in the store");
            Err(id)
        }
        Err(e) => {
            log::warn!("input {key:?} ({id}) could not be read back: {e}");
            Err(id)
        }
    }
}

/// How a session with the scheduler ended.
enum Ended {
    /// The core decided the worker ends.
    Leave(WorkerExit),
    Lost(String),
    /// The nanny died ([`Event::NannyDied`]).
    Abandoned,
}
