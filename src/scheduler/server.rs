//! The scheduler's async shell: accepts connections, runs their handshakes, turns frames
//! into events for the one loop that owns the [`Core`], and delivers the core's outbox.
//!
//! A connection that sends garbage, a truncated or oversized frame, or speaks another
//! version is closed with a logged reason; the others are not disturbed.

use super::core::{Core, CoreConfig, Outgoing, CONNECTION_CLOSED};
use crate::protocol::{
    accept_handshake, serve, spawn_writer, ClientId, FrameError, FrameReader, FromClient, FromNanny, FromWorker,
    NannyId, Role, ToClient, ToNanny, ToWorker, WorkerId, WorkerInfo,
};
use smol::net::{TcpListener, TcpStream};
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
    /// Stop after this long with no client and no task.
    pub idle_timeout: Option<Duration>,
}

/// How often the core's clock ticks.
const TICK: Duration = Duration::from_millis(200);

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
    Tick,
    Stop(String),
}

/// Why the scheduler stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    Requested,
    IdleTimeout(Duration),
}

/// A running scheduler.
pub struct Scheduler {
    pub address: SocketAddr,
    events: async_channel::Sender<Event>,
    main: Task<StopReason>,
}

impl Scheduler {
    pub async fn start(config: SchedulerConfig) -> std::io::Result<Scheduler> {
        let listener = TcpListener::bind(config.listen).await?;
        let address = listener.local_addr()?;
        let (tx, rx) = async_channel::unbounded();
        let accept = crate::rt::spawn(accept_loop(listener, tx.clone()));
        let ticker = crate::ticker::ticker(TICK, tx.clone(), || Event::Tick);
        let main = crate::rt::spawn(core_loop(config, rx, accept, ticker));
        log::info!("scheduler listening at tcp://{address}");
        Ok(Scheduler {
            address,
            events: tx,
            main,
        })
    }

    /// Waits until the scheduler stops by itself (idle timeout).
    pub async fn join(self) -> StopReason {
        self.main.await
    }

    /// Tells every worker and client, closes all connections and returns.
    pub async fn stop(self) -> StopReason {
        let _ = self.events.send(Event::Stop("scheduler shut down".into())).await;
        self.main.await
    }

    /// A handle that can stop the scheduler from elsewhere.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.events.clone())
    }
}

/// Stops a scheduler from another task.
#[derive(Clone)]
pub struct Stopper(async_channel::Sender<Event>);

impl Stopper {
    pub async fn stop(&self, reason: &str) {
        let _ = self.0.send(Event::Stop(reason.to_string())).await;
    }
}

async fn core_loop(
    config: SchedulerConfig,
    events: async_channel::Receiver<Event>,
    accept: Task<()>,
    ticker: Task<()>,
) -> StopReason {
    let mut core = Core::new(config.core.clone());
    let mut workers: HashMap<WorkerId, async_channel::Sender<ToWorker>> = HashMap::new();
    let mut clients: HashMap<ClientId, async_channel::Sender<ToClient>> = HashMap::new();
    let mut nannies: HashMap<NannyId, async_channel::Sender<ToNanny>> = HashMap::new();
    let mut idle_since = Instant::now();
    let stop = loop {
        let Ok(first) = events.recv().await else {
            break (StopReason::Requested, "scheduler shut down".to_string());
        };
        let mut next = Some(first);
        let mut stop = None;
        while let Some(ev) = next.take() {
            let now = Instant::now();
            match ev {
                Event::WorkerJoined(id, info, tx) => {
                    workers.insert(id, tx);
                    core.on_worker_joined(id, info, now);
                }
                Event::Worker(id, msg) => core.on_worker_message(id, msg, now),
                Event::WorkerLost(id, reason) => {
                    if workers.remove(&id).is_some() {
                        core.on_worker_lost(id, &reason);
                    }
                }
                Event::ClientJoined(id, tx) => {
                    clients.insert(id, tx);
                    core.on_client_joined(id);
                }
                Event::Client(id, msg, handled) => {
                    core.on_client_message(id, msg);
                    let _ = handled.try_send(());
                }
                Event::ClientLost(id) => {
                    clients.remove(&id);
                    core.on_client_lost(id);
                }
                Event::NannyJoined(id, name, workers, tx) => {
                    nannies.insert(id, tx);
                    core.on_nanny_joined(id, name, workers);
                }
                Event::Nanny(id, msg) => core.on_nanny_message(id, msg),
                Event::NannyLost(id) => {
                    nannies.remove(&id);
                    core.on_nanny_lost(id);
                }
                Event::Tick => {
                    core.on_tick(now);
                    if !core.is_idle() {
                        idle_since = now;
                    } else if let Some(limit) = config.idle_timeout {
                        if now.duration_since(idle_since) >= limit {
                            log::info!("idle for {:.1} s; stopping", limit.as_secs_f64());
                            stop = Some((StopReason::IdleTimeout(limit), "scheduler idle timeout".to_string()));
                        }
                    }
                }
                Event::Stop(reason) => stop = Some((StopReason::Requested, reason)),
            }
            if !core.is_idle() {
                idle_since = now;
            }
            if stop.is_some() {
                break;
            }
            next = events.try_recv().ok();
        }
        for out in core.take_outbox() {
            match out {
                Outgoing::Worker(id, msg) => {
                    if let Some(tx) = workers.get(&id) {
                        let _ = tx.try_send(msg);
                    }
                }
                Outgoing::Client(id, msg) => {
                    if let Some(tx) = clients.get(&id) {
                        let _ = tx.try_send(msg);
                    }
                }
                Outgoing::Nanny(id, msg) => {
                    if let Some(tx) = nannies.get(&id) {
                        let _ = tx.try_send(msg);
                    }
                }
                Outgoing::CloseWorker(id, reason) => {
                    log::warn!("closing the connection of worker {id}: {reason}");
                    workers.remove(&id);
                }
            }
        }
        if let Some(s) = stop {
            break s;
        }
    };
    drop(ticker);
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

async fn accept_loop(listener: TcpListener, events: async_channel::Sender<Event>) {
    let ids = Arc::new(AtomicU64::new(0));
    serve(listener, "scheduler", move |stream, from| {
        let (events, ids) = (events.clone(), ids.clone());
        async move {
            if let Err(reason) = serve_connection(stream, events, ids).await {
                log::warn!("connection from {from} closed: {reason}");
            }
        }
    })
    .await
}

/// Runs one connection from hello to close. An `Err` is the reason it closed abnormally.
async fn serve_connection(
    mut stream: TcpStream,
    events: async_channel::Sender<Event>,
    ids: Arc<AtomicU64>,
) -> Result<(), String> {
    stream.set_nodelay(true).ok();
    let hello = accept_handshake(&mut stream, Role::Scheduler, &[Role::Worker, Role::Client, Role::Nanny])
        .await
        .map_err(|e| format!("handshake refused: {e}"))?;
    let id = ids.fetch_add(1, Ordering::Relaxed);
    let mut reader = FrameReader::new(stream.clone());
    match hello.role {
        Role::Worker => {
            let info = match reader.next::<FromWorker>().await {
                Ok(Some(FromWorker::Register(info))) => info,
                Ok(Some(other)) => return Err(format!("worker's first message is {other:?}, not Register")),
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            };
            let id = WorkerId(id);
            let (tx, rx) = async_channel::unbounded();
            let writer = spawn_writer(rx, stream);
            let _ = events.send(Event::WorkerJoined(id, info, tx)).await;
            let ended = pump(&mut reader, |m| Event::Worker(id, m), &events, None).await;
            let _ = events
                .send(Event::WorkerLost(
                    id,
                    ended.clone().err().unwrap_or_else(|| CONNECTION_CLOSED.into()),
                ))
                .await;
            drop(writer);
            ended
        }
        Role::Client => {
            let id = ClientId(id);
            let (tx, rx) = async_channel::unbounded();
            let writer = spawn_writer(rx, stream);
            let _ = events.send(Event::ClientJoined(id, tx)).await;
            let (handled_tx, handled) = async_channel::bounded(1);
            let ended = pump(
                &mut reader,
                |m| Event::Client(id, m, handled_tx.clone()),
                &events,
                Some(&handled),
            )
            .await;
            let _ = events.send(Event::ClientLost(id)).await;
            drop(writer);
            ended
        }
        Role::Nanny => {
            let (name, workers) = match reader.next::<FromNanny>().await {
                Ok(Some(FromNanny::Register { name, workers, .. })) => (name, workers),
                Ok(Some(other)) => return Err(format!("nanny's first message is {other:?}, not Register")),
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            };
            let id = NannyId(id);
            let (tx, rx) = async_channel::unbounded();
            let writer = spawn_writer(rx, stream);
            let _ = events.send(Event::NannyJoined(id, name, workers, tx)).await;
            let ended = pump(&mut reader, |m| Event::Nanny(id, m), &events, None).await;
            let _ = events.send(Event::NannyLost(id)).await;
            drop(writer);
            ended
        }
        other => Err(format!("a {other} may not connect to the scheduler")),
    }
}

/// Forwards every frame as an event until the connection ends; with `handled`, waits for
/// the core to handle each before reading the next.
async fn pump<M: serde::de::DeserializeOwned>(
    reader: &mut FrameReader<TcpStream>,
    wrap: impl Fn(M) -> Event,
    events: &async_channel::Sender<Event>,
    handled: Option<&async_channel::Receiver<()>>,
) -> Result<(), String> {
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
            Err(e) => return Err(e.to_string()),
        }
    }
}
