//! The scheduler's async shell: takes the connections that passed their handshake in
//! [`crate::protocol::serve`], turns their frames into events for the one loop that owns the
//! [`Core`], wakes the core at its [`Core::next_deadline`], and delivers the core's outbox.
//! It decides nothing.
//!
//! A connection that sends garbage, a truncated or oversized frame, or speaks another
//! version is closed with a logged reason; the others are not disturbed.

use super::core::{Core, CoreConfig, Outgoing, StopReason, CONNECTION_CLOSED};
use crate::protocol::{
    serve, spawn_writer, ClientId, Credential, FrameError, FrameReader, FromClient, FromNanny, FromWorker, Hello, Link,
    LinkReader, NannyId, Role, ToClient, ToNanny, ToWorker, WorkerId, WorkerInfo,
};
use crate::rt::{DeadlineWait, Inbox, Woke};
use smol::net::TcpListener;
use smol::Task;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything the scheduler needs to know before it opens a socket.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub listen: SocketAddr,
    pub core: CoreConfig,
    /// The cluster's credential, which every connection must prove; `None` only with
    /// `--no-security`.
    pub credential: Option<Arc<Credential>>,
}

/// What the loop reacts to.
enum Event {
    WorkerJoined(WorkerId, WorkerInfo, async_channel::Sender<ToWorker>),
    Worker(WorkerId, FromWorker),
    WorkerLost(WorkerId, String),
    ClientJoined(ClientId, async_channel::Sender<ToClient>),
    /// A client's message, and where to say it was handled: a client's reader decodes its
    /// next message only then, so a client that submits faster than the core places keeps
    /// one decoded submission in the scheduler's memory, not all of them.
    Client(ClientId, FromClient, async_channel::Sender<()>),
    ClientLost(ClientId),
    NannyJoined(NannyId, String, Vec<String>, async_channel::Sender<ToNanny>),
    Nanny(NannyId, FromNanny),
    NannyLost(NannyId),
    Stop(String),
}

/// A running scheduler.
pub struct Scheduler {
    pub address: SocketAddr,
    /// Keeps the loop's inbox open while this handle lives, whatever the connections do.
    _events: async_channel::Sender<Event>,
    /// The urgent lane: a stop overtakes every message already queued.
    urgent: async_channel::Sender<Event>,
    main: Task<StopReason>,
}

impl Scheduler {
    pub async fn start(config: SchedulerConfig) -> std::io::Result<Scheduler> {
        let listener = TcpListener::bind(config.listen).await?;
        let address = listener.local_addr()?;
        let (tx, rx) = crate::rt::inbox();
        let credential = config.credential.clone();
        let accept = crate::rt::spawn(accept_loop(listener, tx.events.clone(), credential));
        log::info!("scheduler listening at tcp://{address}");
        match &config.credential {
            Some(c) => log::info!("scheduler secured: TLS with the credential of cluster {}", c.id()),
            None => log::warn!(
                "running with --no-security: anyone who can reach tcp://{address} can run commands as this user"
            ),
        }
        let main = crate::rt::spawn(core_loop(config, rx, accept));
        Ok(Scheduler {
            address,
            _events: tx.events,
            urgent: tx.urgent,
            main,
        })
    }

    /// Waits until the scheduler stops by itself (idle timeout).
    pub async fn join(self) -> StopReason {
        self.main.await
    }

    /// Tells every worker and client, closes all connections and returns.
    pub async fn stop(self) -> StopReason {
        let _ = self.urgent.send(Event::Stop("scheduler shut down".into())).await;
        self.main.await
    }

    /// A handle that can stop the scheduler from elsewhere.
    pub fn stopper(&self) -> SchedulerStopper {
        SchedulerStopper(self.urgent.clone())
    }
}

/// Stops a scheduler from another task.
#[derive(Clone)]
pub struct SchedulerStopper(async_channel::Sender<Event>);

impl SchedulerStopper {
    pub async fn stop(&self, reason: &str) {
        let _ = self.0.send(Event::Stop(reason.to_string())).await;
    }
}

async fn core_loop(config: SchedulerConfig, events: Inbox<Event>, accept: Task<()>) -> StopReason {
    let mut core = Core::new(config.core.clone(), Instant::now());
    let mut links = Links::default();
    let mut wait = DeadlineWait::default();
    let stop = loop {
        let mut stop = None;
        let mut cut = false;
        match wait.next(&events, core.next_deadline()).await {
            Woke::Closed => break (StopReason::Requested, "scheduler shut down".to_string()),
            Woke::Deadline => {}
            Woke::Event(first) => {
                let mut batch = events.batch(first);
                for ev in &mut batch {
                    if let Some(reason) = links.handle(&mut core, ev, Instant::now()) {
                        stop = Some((StopReason::Requested, reason));
                        break;
                    }
                }
                cut = batch.is_full();
            }
        }
        // Checked after every batch too, so a loop that is never idle still keeps its timers.
        let now = Instant::now();
        if core.next_deadline().is_some_and(|d| d <= now) {
            core.on_timer(now);
        }
        for out in core.take_outbox() {
            if let Some(reason) = links.deliver(out) {
                let text = match reason {
                    StopReason::IdleTimeout(_) => "scheduler idle timeout",
                    StopReason::Requested => "scheduler shut down",
                };
                stop = stop.or(Some((reason, text.to_string())));
            }
        }
        if let Some(s) = stop {
            break s;
        }
        if cut {
            // More is queued: let the readers, writers and the signal handler run first.
            crate::rt::yield_now().await;
        }
    };
    let Links {
        workers,
        clients,
        nannies,
        ..
    } = links;
    let (reason, text) = stop;
    for tx in workers.values() {
        let _ = tx.try_send(ToWorker::Shutdown { reason: text.clone() });
    }
    for tx in clients.values() {
        let _ = tx.try_send(ToClient::Shutdown { reason: text.clone() });
    }
    // Closing the channels ends each writer after it flushed the goodbye; it then shuts its
    // socket, which ends the reader. Give them a moment before the connections are dropped.
    drop(workers);
    drop(clients);
    drop(nannies);
    async_io::Timer::after(Duration::from_millis(100)).await;
    drop(accept);
    reason
}

async fn accept_loop(listener: TcpListener, events: async_channel::Sender<Event>, credential: Option<Arc<Credential>>) {
    let ids = Arc::new(AtomicU64::new(0));
    let admits = &[Role::Worker, Role::Client, Role::Nanny];
    serve(
        listener,
        "scheduler",
        Role::Scheduler,
        admits,
        credential,
        move |link, hello, from| {
            let (events, ids) = (events.clone(), ids.clone());
            async move {
                if let Err(reason) = serve_connection(link, hello, events, ids).await {
                    log::warn!("connection from {from} closed: {reason}");
                }
            }
        },
    )
    .await
}

/// The loop's connections, by id: where the core's messages go.
#[derive(Default)]
struct Links {
    workers: HashMap<WorkerId, async_channel::Sender<ToWorker>>,
    clients: HashMap<ClientId, async_channel::Sender<ToClient>>,
    nannies: HashMap<NannyId, async_channel::Sender<ToNanny>>,
    /// Submission parts received since the allocator last gave memory back.
    parts_since_trim: usize,
}

/// After a submission of this many parts (16 MiB of frames or more) is taken, the memory
/// its decoded parts held is given back to the system, so the scheduler's RSS shows the
/// graph it keeps, not the peak of taking it in.
const TRIM_AFTER_PARTS: usize = 4;

impl Links {
    /// Hands one event to the core; `Some` is a stop request with its reason.
    fn handle(&mut self, core: &mut Core, ev: Event, now: Instant) -> Option<String> {
        match ev {
            Event::WorkerJoined(id, info, tx) => {
                self.workers.insert(id, tx);
                core.on_worker_joined(id, info, now);
            }
            Event::Worker(id, msg) => core.on_worker_message(id, msg, now),
            Event::WorkerLost(id, reason) => {
                if self.workers.remove(&id).is_some() {
                    core.on_worker_lost(id, &reason, now);
                }
            }
            Event::ClientJoined(id, tx) => {
                self.clients.insert(id, tx);
                core.on_client_joined(id, now);
            }
            Event::Client(id, msg, handled) => {
                let (part, done) = match &msg {
                    FromClient::SubmitPart { .. } => (true, false),
                    FromClient::Submit { .. } => (false, true),
                    _ => (false, false),
                };
                core.on_client_message(id, msg, now);
                let _ = handled.try_send(());
                self.parts_since_trim += usize::from(part);
                if done && self.parts_since_trim >= TRIM_AFTER_PARTS {
                    self.parts_since_trim = 0;
                    crate::sys::release_free_memory();
                }
            }
            Event::ClientLost(id) => {
                self.clients.remove(&id);
                core.on_client_lost(id, now);
            }
            Event::NannyJoined(id, name, workers, tx) => {
                self.nannies.insert(id, tx);
                core.on_nanny_joined(id, name, workers, now);
            }
            Event::Nanny(id, msg) => core.on_nanny_message(id, msg, now),
            Event::NannyLost(id) => {
                self.nannies.remove(&id);
                core.on_nanny_lost(id, now);
            }
            Event::Stop(reason) => return Some(reason),
        }
        None
    }

    /// Delivers one message of the core's outbox; `Some` when the core decided to stop.
    fn deliver(&mut self, out: Outgoing) -> Option<StopReason> {
        match out {
            Outgoing::Worker(id, msg) => {
                if let Some(tx) = self.workers.get(&id) {
                    let _ = tx.try_send(msg);
                }
            }
            Outgoing::Client(id, msg) => {
                if let Some(tx) = self.clients.get(&id) {
                    let _ = tx.try_send(msg);
                }
            }
            Outgoing::Nanny(id, msg) => {
                if let Some(tx) = self.nannies.get(&id) {
                    let _ = tx.try_send(msg);
                }
            }
            Outgoing::CloseWorker(id, reason) => {
                log::warn!("closing the connection of worker {id}: {reason}");
                self.workers.remove(&id);
            }
            Outgoing::Stop(reason) => return Some(reason),
        }
        None
    }
}

/// Why a connection to the scheduler closed abnormally.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("{role}'s first message is {got}, not Register")]
    NotRegister { role: Role, got: String },
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("a {0} may not connect to the scheduler")]
    RoleRefused(Role),
}

/// Runs one connection from its hello (the handshake passed) to its close.
async fn serve_connection(
    link: Link,
    hello: Hello,
    events: async_channel::Sender<Event>,
    ids: Arc<AtomicU64>,
) -> Result<(), ConnectionError> {
    let id = ids.fetch_add(1, Ordering::Relaxed);
    let closer = link.closer();
    let Link { reader, writer, .. } = link;
    let mut reader = FrameReader::new(reader);
    match hello.role {
        Role::Worker => {
            let info = match reader.next::<FromWorker>().await {
                Ok(Some(FromWorker::Register(info))) => info,
                Ok(Some(other)) => {
                    return Err(ConnectionError::NotRegister {
                        role: Role::Worker,
                        got: format!("{other:?}"),
                    })
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let id = WorkerId(id);
            let (tx, rx) = async_channel::unbounded();
            let writer = spawn_writer(rx, writer, closer);
            let _ = events.send(Event::WorkerJoined(id, info, tx)).await;
            let ended = pump(&mut reader, |m| Event::Worker(id, m), &events, None).await;
            let _ = events
                .send(Event::WorkerLost(
                    id,
                    ended
                        .as_ref()
                        .err()
                        .map_or_else(|| CONNECTION_CLOSED.to_string(), |e| e.to_string()),
                ))
                .await;
            drop(writer);
            ended
        }
        Role::Client => {
            let id = ClientId(id);
            let (tx, rx) = async_channel::unbounded();
            let writer = spawn_writer(rx, writer, closer);
            let _ = events.send(Event::ClientJoined(id, tx.clone())).await;
            let (handled_tx, handled) = async_channel::bounded(1);
            let ended = pump(
                &mut reader,
                |m| Event::Client(id, m, handled_tx.clone()),
                &events,
                Some(&handled),
            )
            .await;
            if let Err(e @ ConnectionError::Frame(_)) = &ended {
                // Told why, rather than left with a closed connection: the writer sends what
                // is queued, this last, and ends (bounded, for a client that stopped reading).
                let _ = tx.try_send(ToClient::Closing { reason: e.to_string() });
                tx.close();
                let grace = async {
                    async_io::Timer::after(Duration::from_secs(1)).await;
                };
                futures_lite::future::or(writer, grace).await;
            }
            let _ = events.send(Event::ClientLost(id)).await;
            ended
        }
        Role::Nanny => {
            let (name, workers) = match reader.next::<FromNanny>().await {
                Ok(Some(FromNanny::Register { name, workers, .. })) => (name, workers),
                Ok(Some(other)) => {
                    return Err(ConnectionError::NotRegister {
                        role: Role::Nanny,
                        got: format!("{other:?}"),
                    })
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let id = NannyId(id);
            let (tx, rx) = async_channel::unbounded();
            let writer = spawn_writer(rx, writer, closer);
            let _ = events.send(Event::NannyJoined(id, name, workers, tx)).await;
            let ended = pump(&mut reader, |m| Event::Nanny(id, m), &events, None).await;
            let _ = events.send(Event::NannyLost(id)).await;
            drop(writer);
            ended
        }
        other => Err(ConnectionError::RoleRefused(other)),
    }
}

/// Forwards every frame as an event until the connection ends; with `handled`, waits for
/// the core to handle each before reading the next.
async fn pump<M: serde::de::DeserializeOwned>(
    reader: &mut FrameReader<LinkReader>,
    wrap: impl Fn(M) -> Event,
    events: &async_channel::Sender<Event>,
    handled: Option<&async_channel::Receiver<()>>,
) -> Result<(), ConnectionError> {
    loop {
        match reader.next::<M>().await {
            Ok(Some(m)) => {
                if events.send(wrap(m)).await.is_err() {
                    return Ok(());
                }
                if let Some(h) = handled {
                    if h.recv().await.is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(None) => return Ok(()),
            // A peer that exits with replies unread resets the connection: an ordinary close.
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
