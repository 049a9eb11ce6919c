//! The Rust client: submit tasks, wait for them, gather their results straight from the
//! workers, scatter data, cancel, release, and ask the cluster what it holds.
//!
//! [`AsyncClient`] is the async API (for smol and any executor); [`Client`](super::Client)
//! (`blocking.rs`) wraps it for sync code. Both keep one connection to the scheduler and one
//! per worker they gather from.

use crate::protocol::codec;
use crate::protocol::LocationProblem;
use crate::protocol::ANSWER_TIMEOUT;
use crate::protocol::{
    dial, spawn_writer_then, AttemptError, ClusterInfo, DialError, FrameReader, FromClient, HandshakeError,
    KeyLocation, PeerClient, PeerError, RequestId, Role, SubmitTooLarge, TaskDesc, TaskError, ToClient,
};
use serde::{de::DeserializeOwned, Serialize};
use smol::Task;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What can go wrong for a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the scheduler at {addr}: {}", .source.cause())]
    Connect { addr: String, source: AttemptError },
    #[error("the scheduler at {addr} refused this client: {source}")]
    Refused { addr: String, source: HandshakeError },
    /// No credential for the scheduler's cluster, another cluster's, or a failed TLS
    /// handshake: the dial's own words.
    #[error("{0}")]
    Untrusted(String),
    #[error("lost the scheduler: {0}")]
    Disconnected(String),
    #[error("task {key:?} failed: {error}")]
    Task { key: String, error: TaskError },
    #[error("cannot gather {key:?}: {reason}")]
    Gather { key: String, reason: GatherProblem },
    #[error("scatter failed: {0}")]
    Scatter(String),
    #[error("restart failed: {0}")]
    Restart(String),
    #[error("cannot submit: {0}")]
    SubmitTooLarge(#[from] SubmitTooLarge),
    #[error("{0}")]
    Codec(#[from] codec::CodecError),
    /// A task this client waits for (or one it needs) asks for what no connected worker has,
    /// and the client does not wait for workers ([`AsyncClient::set_wait_for_workers`]).
    #[error("{}", unrunnable_text(key, reason, *more))]
    Unrunnable { key: String, reason: String, more: u64 },
}

/// How a task that cannot run is told: `task "K" cannot run: WHY` and how many more.
fn unrunnable_text(key: &str, reason: &str, more: u64) -> String {
    let others = match more {
        0 => String::new(),
        n => format!(" (and {} more)", crate::units::plural(n, "task")),
    };
    format!("task {key:?} cannot run: {reason}{others}")
}

/// Why a result could not be gathered (yet).
#[derive(Clone, Debug, thiserror::Error)]
pub enum GatherProblem {
    #[error("this client never submitted it")]
    NotSubmitted,
    #[error("{0}")]
    Location(LocationProblem),
    #[error("no worker holds it")]
    NoHolder,
    #[error("{holder} no longer holds it")]
    NoLongerHeld { holder: String },
    /// Shared by every key asked of the same holder.
    #[error("{0}")]
    Peer(Arc<PeerError>),
}

/// How long a gather may go on failing to fetch anything (a holder died or stalled and the
/// scheduler has not noticed yet) before it gives up. Counted over rounds of fetches that
/// fetched nothing, whatever the number of keys in them, and never while the gather waits
/// for a key to be computed (again).
const GATHER_LIMBO: Duration = Duration::from_secs(20);

/// The pause before fetching again the keys a round could not fetch.
const GATHER_RETRY: Duration = Duration::from_millis(50);

/// What the client knows of a key it submitted or asked about.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyStatus {
    Pending,
    Finished { nbytes: u64 },
    Erred(TaskError),
}

/// Wakes one `wait` call when all of its keys have ended.
struct WaitGroup {
    remaining: AtomicUsize,
    done: async_channel::Sender<()>,
}

impl WaitGroup {
    fn one_done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.done.try_send(());
        }
    }
}

#[derive(Default)]
struct Shared {
    status: HashMap<String, KeyStatus>,
    waiters: HashMap<String, Vec<Arc<WaitGroup>>>,
    replies: HashMap<RequestId, async_channel::Sender<ToClient>>,
    /// Told the key whenever one settles; see [`AsyncClient::settlements`].
    watchers: Vec<async_channel::Sender<String>>,
    /// Set once the scheduler connection is gone, with the reason.
    closed: Option<String>,
    /// Keep waiting when tasks cannot run for want of a worker that can, instead of failing.
    wait_for_workers: bool,
    /// The first task reported unrunnable while not waiting for workers (key, why, how many
    /// more): every wait ends with it.
    unrunnable: Option<(String, String, u64)>,
}

impl Shared {
    fn settle(&mut self, key: String, status: KeyStatus) {
        if let Some(ws) = self.waiters.remove(&key) {
            for w in ws {
                w.one_done();
            }
        }
        self.watchers.retain(|w| !w.is_closed());
        for w in &self.watchers {
            let _ = w.try_send(key.clone());
        }
        self.status.insert(key, status);
    }

    fn close(&mut self, reason: String) {
        self.closed.get_or_insert(reason);
        self.end_waits();
        self.replies.clear();
    }

    /// Ends every wait, and every watch of settlements: the client cannot go on.
    fn end_waits(&mut self) {
        for (_, ws) in self.waiters.drain() {
            for w in ws {
                let _ = w.done.try_send(());
            }
        }
        self.watchers.clear();
    }
}

struct Inner {
    tx: async_channel::Sender<FromClient>,
    shared: Mutex<Shared>,
    next_req: AtomicU64,
    /// Held while the parts of one submission are queued, so that two submissions from
    /// different threads never interleave their parts.
    submitting: Mutex<()>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("client state lock is never poisoned")
    }
}

/// An async connection to a distd cluster.
pub struct AsyncClient {
    inner: Arc<Inner>,
    /// The scheduler's address, for messages.
    scheduler: String,
    /// Connections to workers' peer ports, reused across gathers.
    peers: smol::lock::Mutex<HashMap<String, PeerClient>>,
    /// Unique per client, so generated keys never collide across clients.
    prefix: String,
    next_key: AtomicU64,
    _reader: Task<()>,
    _writer: Task<()>,
}

/// A prefix that is unique enough across processes and time.
fn unique_prefix() -> String {
    format!("{:012x}", crate::sys::random_u64() & 0xffff_ffff_ffff)
}

/// Strips `tcp://` from an address.
pub fn strip_scheme(addr: &str) -> &str {
    addr.strip_prefix("tcp://").unwrap_or(addr)
}

impl AsyncClient {
    /// Connects to the scheduler at `addr` (`tcp://host:port` or `host:port`).
    pub async fn connect(addr: &str) -> Result<AsyncClient, ClientError> {
        let addr = strip_scheme(addr).to_string();
        let link = match dial(&addr, Role::Client, Role::Scheduler, Duration::ZERO).await {
            Ok(d) => d.link,
            Err(e @ (DialError::NoCredential { .. } | DialError::Untrusted { .. })) => {
                return Err(ClientError::Untrusted(e.to_string()))
            }
            // A connection broken during the handshake is the scheduler's doing: a refusal.
            Err(e) => match e.into_refusal() {
                Ok(source) => return Err(ClientError::Refused { addr, source }),
                Err(source) => return Err(ClientError::Connect { addr, source }),
            },
        };
        let closer = link.closer();
        let writer_half = link.writer;
        let mut reader = FrameReader::new(link.reader);
        // A scheduler past its handshake welcomes at once; one that does not is stuck.
        match crate::rt::within(ANSWER_TIMEOUT, reader.next::<ToClient>()).await {
            Some(Ok(Some(ToClient::Welcome { .. }))) => {}
            Some(Ok(other)) => return Err(ClientError::Disconnected(format!("expected a welcome, got {other:?}"))),
            Some(Err(e)) => return Err(ClientError::Disconnected(e.to_string())),
            None => {
                let waited = ANSWER_TIMEOUT.as_secs();
                return Err(ClientError::Disconnected(format!("no welcome within {waited} s")));
            }
        }
        let (tx, rx) = async_channel::unbounded();
        let inner = Arc::new(Inner {
            tx,
            shared: Mutex::new(Shared::default()),
            next_req: AtomicU64::new(0),
            submitting: Mutex::new(()),
        });
        let writer_inner = inner.clone();
        // The connection's one writer; a message it cannot send (one over the frame limit)
        // ends the connection, and the client says why instead of "connection closed".
        let writer = spawn_writer_then(rx, writer_half, closer, move |e| {
            writer_inner.lock().close(format!("cannot send to the scheduler: {e}"))
        });
        let reader_inner = inner.clone();
        let reader = crate::rt::spawn(async move {
            let reason = loop {
                match reader.next::<ToClient>().await {
                    Ok(Some(msg)) => dispatch(&reader_inner, msg),
                    Ok(None) => break "connection closed".to_string(),
                    Err(e) => break e.to_string(),
                }
            };
            reader_inner.lock().close(reason);
        });
        Ok(AsyncClient {
            inner,
            scheduler: addr,
            peers: smol::lock::Mutex::new(HashMap::new()),
            prefix: unique_prefix(),
            next_key: AtomicU64::new(0),
            _reader: reader,
            _writer: writer,
        })
    }

    pub fn scheduler_address(&self) -> &str {
        &self.scheduler
    }

    /// A key no other task in the cluster has, starting with `name`.
    pub fn unique_key(&self, name: &str) -> String {
        format!(
            "{name}-{}-{}",
            self.prefix,
            self.next_key.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn send(&self, msg: FromClient) -> Result<(), ClientError> {
        if let Some(reason) = &self.inner.lock().closed {
            return Err(ClientError::Disconnected(reason.clone()));
        }
        self.inner
            .tx
            .try_send(msg)
            .map_err(|_| ClientError::Disconnected("connection closed".into()))
    }

    async fn request(&self, make: impl FnOnce(RequestId) -> FromClient) -> Result<ToClient, ClientError> {
        let req = RequestId(self.inner.next_req.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = async_channel::bounded(1);
        {
            let mut s = self.inner.lock();
            if let Some(reason) = &s.closed {
                return Err(ClientError::Disconnected(reason.clone()));
            }
            s.replies.insert(req, tx);
        }
        self.send(make(req))?;
        rx.recv().await.map_err(|_| {
            ClientError::Disconnected(
                self.inner
                    .lock()
                    .closed
                    .clone()
                    .unwrap_or_else(|| "connection closed".into()),
            )
        })
    }

    /// Submits tasks as one submission, of any size (it is sent in parts that each fit a
    /// frame, and the scheduler takes them whole); the client keeps every one of their
    /// results until it releases them. Returns their keys.
    pub async fn submit(&self, tasks: Vec<TaskDesc>) -> Result<Vec<String>, ClientError> {
        let keys: Vec<String> = tasks.iter().map(|t| t.key.clone()).collect();
        self.submit_wanting(tasks, keys.clone()).await?;
        Ok(keys)
    }

    /// Submits tasks but keeps only the results of `wanted` (the others are dropped as soon
    /// as their dependents have them).
    ///
    /// Only a task (or key) that cannot fit a frame by itself is refused
    /// ([`ClientError::SubmitTooLarge`], naming it and the limit); nothing is sent then.
    pub async fn submit_wanting(&self, tasks: Vec<TaskDesc>, wanted: Vec<String>) -> Result<(), ClientError> {
        let parts = FromClient::split_submission(tasks, wanted)?;
        {
            let mut s = self.inner.lock();
            for part in &parts {
                if let FromClient::Submit { wanted, .. } | FromClient::SubmitPart { wanted, .. } = part {
                    for k in wanted {
                        s.status.insert(k.clone(), KeyStatus::Pending);
                    }
                }
            }
        }
        let _one_at_a_time = self.inner.submitting.lock().unwrap_or_else(|e| e.into_inner());
        for part in parts {
            self.send(part)?;
        }
        Ok(())
    }

    /// Submits one call of the registry function `name` with typed arguments.
    pub async fn submit_fn<A: Serialize>(&self, name: &str, args: &A, deps: &[String]) -> Result<String, ClientError> {
        let key = self.unique_key(name);
        let task = TaskDesc::function(key.clone(), name, codec::to_bytes(args)?).with_deps(deps.iter().cloned());
        self.submit(vec![task]).await?;
        Ok(key)
    }

    /// One call of `name` per argument, submitted as one batch.
    pub async fn map<A: Serialize>(
        &self,
        name: &str,
        args: impl IntoIterator<Item = A>,
    ) -> Result<Vec<String>, ClientError> {
        let mut tasks = Vec::new();
        for a in args {
            tasks.push(TaskDesc::function(self.unique_key(name), name, codec::to_bytes(&a)?));
        }
        self.submit(tasks).await
    }

    /// What the client knows of `key`.
    pub fn status(&self, key: &str) -> Option<KeyStatus> {
        self.inner.lock().status.get(key).cloned()
    }

    /// Whether to keep waiting when tasks ask for what no connected worker has (a resource,
    /// a worker by name), until a worker that can run them joins. Off by default: the
    /// scheduler reports such a task at once, and every wait of this client ends with
    /// [`ClientError::Unrunnable`] naming it (and `settlements` channels end). On, the report
    /// is logged as a warning and the client waits.
    pub fn set_wait_for_workers(&self, wait: bool) {
        self.inner.lock().wait_for_workers = wait;
    }

    /// The error a wait ends with: a task that cannot run, else a lost scheduler.
    fn wait_error(s: &Shared) -> Option<ClientError> {
        if let Some((key, reason, more)) = &s.unrunnable {
            return Some(ClientError::Unrunnable {
                key: key.clone(),
                reason: reason.clone(),
                more: *more,
            });
        }
        s.closed
            .as_ref()
            .map(|reason| ClientError::Disconnected(reason.clone()))
    }

    /// Waits until every key has finished or erred.
    pub async fn wait(&self, keys: &[String]) -> Result<(), ClientError> {
        let (tx, rx) = async_channel::bounded(1);
        let group = Arc::new(WaitGroup {
            remaining: AtomicUsize::new(1),
            done: tx,
        });
        {
            let mut s = self.inner.lock();
            for k in keys {
                match s.status.get(k) {
                    Some(KeyStatus::Finished { .. }) | Some(KeyStatus::Erred(_)) => {}
                    Some(KeyStatus::Pending) => {
                        group.remaining.fetch_add(1, Ordering::AcqRel);
                        s.waiters.entry(k.clone()).or_default().push(group.clone());
                    }
                    None => {
                        return Err(ClientError::Gather {
                            key: k.clone(),
                            reason: GatherProblem::NotSubmitted,
                        })
                    }
                }
            }
            if group.remaining.load(Ordering::Acquire) > 1 {
                if let Some(e) = Self::wait_error(&s) {
                    return Err(e);
                }
            }
        }
        group.one_done();
        let _ = rx.recv().await;
        let s = self.inner.lock();
        // Ended early: by a task that cannot run or a lost scheduler.
        if keys.iter().any(|k| matches!(s.status.get(k), Some(KeyStatus::Pending))) {
            if let Some(e) = Self::wait_error(&s) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Every key that settles (finishes or errs) from now on, as it does, so a loop that
    /// reacts to keys looks at those and nothing else; the channel ends once the scheduler
    /// connection is gone.
    pub fn settlements(&self) -> async_channel::Receiver<String> {
        let (tx, rx) = async_channel::unbounded();
        let mut s = self.inner.lock();
        if s.closed.is_none() && s.unrunnable.is_none() {
            s.watchers.push(tx);
        }
        rx
    }

    /// Waits for the keys and fetches their results from the workers that hold them.
    pub async fn gather(&self, keys: &[String]) -> Result<Vec<Vec<u8>>, ClientError> {
        let mut out: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        // A holder may die between "finished" and the fetch: the scheduler then says the key
        // is lost (and computes it again), so the missing ones are waited for and fetched
        // again. Only the time a dead holder goes unnoticed counts against the budget: the
        // rounds that fetched nothing, since the last that fetched something.
        let mut limbo = Duration::ZERO;
        loop {
            let todo: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
            if todo.is_empty() {
                break;
            }
            let want: Vec<String> = todo.iter().map(|&i| keys[i].clone()).collect();
            self.wait(&want).await?;
            {
                let s = self.inner.lock();
                for k in &want {
                    if let Some(KeyStatus::Erred(e)) = s.status.get(k) {
                        return Err(ClientError::Task {
                            key: k.clone(),
                            error: e.clone(),
                        });
                    }
                }
            }
            let round = Instant::now();
            let missing = self.fetch_round(&want).await?;
            let mut fetched_any = false;
            let mut first_failure = None;
            for (&i, got) in todo.iter().zip(missing) {
                match got {
                    Ok(d) => {
                        out[i] = Some(d);
                        fetched_any = true;
                    }
                    Err(reason) => {
                        first_failure.get_or_insert((i, reason));
                    }
                }
            }
            let Some((i, reason)) = first_failure else {
                break;
            };
            async_io::Timer::after(GATHER_RETRY).await;
            if fetched_any {
                limbo = Duration::ZERO;
                continue;
            }
            limbo += round.elapsed();
            if limbo > GATHER_LIMBO {
                return Err(ClientError::Gather {
                    key: keys[i].clone(),
                    reason,
                });
            }
        }
        Ok(out.into_iter().map(|d| d.expect("every key was fetched")).collect())
    }

    /// One attempt at fetching `keys` from their holders: each result, or why not (yet).
    async fn fetch_round(&self, keys: &[String]) -> Result<Vec<Result<Vec<u8>, GatherProblem>>, ClientError> {
        let locations = self.who_has(keys).await?;
        let mut out: Vec<Result<Vec<u8>, GatherProblem>> = Vec::with_capacity(keys.len());
        let mut by_holder: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, loc) in locations.iter().enumerate() {
            out.push(Err(GatherProblem::NoHolder));
            match (&loc.problem, loc.holders.first()) {
                (Some(p @ LocationProblem::Unknown), _) => {
                    return Err(ClientError::Gather {
                        key: loc.key.clone(),
                        reason: GatherProblem::Location(p.clone()),
                    })
                }
                (Some(p), _) => {
                    out[i] = Err(GatherProblem::Location(p.clone()));
                    // Lost and being computed again: wait for it as for a new key (an
                    // erred one is already known as such and ends the gather).
                    let mut sh = self.inner.lock();
                    if let Some(st @ KeyStatus::Finished { .. }) = sh.status.get_mut(&loc.key) {
                        *st = KeyStatus::Pending;
                    }
                }
                (None, None) => out[i] = Err(GatherProblem::NoHolder),
                (None, Some(h)) => by_holder.entry(h.clone()).or_default().push(i),
            }
        }
        let mut peers = self.peers.lock().await;
        for (holder, idx) in by_holder {
            if !peers.contains_key(&holder) {
                match PeerClient::connect(&holder, Role::Client).await {
                    Ok(c) => {
                        peers.insert(holder.clone(), c);
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        for &i in &idx {
                            out[i] = Err(GatherProblem::Peer(e.clone()));
                        }
                        continue;
                    }
                }
            }
            let conn = peers.get_mut(&holder).expect("inserted above");
            let ids: Vec<_> = idx.iter().map(|&i| locations[i].id).collect();
            match conn.fetch(&ids).await {
                Ok(got) => {
                    for (&i, d) in idx.iter().zip(got) {
                        out[i] = match d {
                            Some(d) => Ok(Arc::try_unwrap(d).unwrap_or_else(|d| d.to_vec())),
                            None => Err(GatherProblem::NoLongerHeld { holder: holder.clone() }),
                        };
                    }
                }
                Err(e) => {
                    peers.remove(&holder);
                    let e = Arc::new(e);
                    for &i in &idx {
                        out[i] = Err(GatherProblem::Peer(e.clone()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// [`gather`](Self::gather), decoding each result as a `T`.
    pub async fn gather_typed<T: DeserializeOwned>(&self, keys: &[String]) -> Result<Vec<T>, ClientError> {
        self.gather(keys)
            .await?
            .iter()
            .map(|b| codec::from_bytes(b).map_err(ClientError::from))
            .collect()
    }

    /// Stores these bytes on workers as results under these keys.
    pub async fn scatter(&self, items: Vec<(String, Vec<u8>)>) -> Result<(), ClientError> {
        {
            let mut s = self.inner.lock();
            for (k, _) in &items {
                s.status.insert(k.clone(), KeyStatus::Pending);
            }
        }
        match self.request(|req| FromClient::Scatter { req, items }).await? {
            ToClient::Scattered { result, .. } => result.map_err(ClientError::Scatter),
            other => Err(ClientError::Disconnected(format!("unexpected reply {other:?}"))),
        }
    }

    /// Restarts every nanny-supervised worker; every task and result of the cluster is
    /// dropped (pending keys err as lost). Returns when the workers are back, with how many.
    pub async fn restart(&self) -> Result<u64, ClientError> {
        match self.request(|req| FromClient::Restart { req }).await? {
            ToClient::Restarted { result, .. } => {
                let mut s = self.inner.lock();
                let keys: Vec<String> = s.status.keys().cloned().collect();
                for k in keys {
                    if s.status.get(&k) == Some(&KeyStatus::Pending) {
                        s.settle(k, KeyStatus::Erred(TaskError::Lost("the cluster restarted".into())));
                    }
                }
                s.status.clear();
                drop(s);
                result.map_err(ClientError::Restart)
            }
            other => Err(ClientError::Disconnected(format!("unexpected reply {other:?}"))),
        }
    }

    /// Stops these tasks; they err as cancelled.
    pub fn cancel(&self, keys: &[String]) -> Result<(), ClientError> {
        for part in key_parts(keys) {
            self.send(FromClient::Cancel { keys: part.to_vec() })?;
        }
        Ok(())
    }

    /// The client no longer needs these results.
    pub fn release(&self, keys: &[String]) -> Result<(), ClientError> {
        {
            let mut s = self.inner.lock();
            for k in keys {
                s.status.remove(k);
            }
        }
        for part in key_parts(keys) {
            self.send(FromClient::Release { keys: part.to_vec() })?;
        }
        Ok(())
    }

    /// Keeps `replicas` copies of each of these results on different workers while they are
    /// needed, so that losing a worker does not lose them (dask's `Client.replicate`).
    pub fn replicate(&self, keys: &[String], replicas: u32) -> Result<(), ClientError> {
        for part in key_parts(keys) {
            self.send(FromClient::Replicate {
                keys: part.to_vec(),
                replicas,
            })?;
        }
        Ok(())
    }

    /// Where each key's result is held.
    pub async fn who_has(&self, keys: &[String]) -> Result<Vec<KeyLocation>, ClientError> {
        let mut all = Vec::with_capacity(keys.len());
        for part in key_parts(keys) {
            match self
                .request(|req| FromClient::WhoHas {
                    req,
                    keys: part.to_vec(),
                })
                .await?
            {
                ToClient::WhoHas { locations, .. } => all.extend(locations),
                other => return Err(ClientError::Disconnected(format!("unexpected reply {other:?}"))),
            }
        }
        Ok(all)
    }

    /// The cluster's workers and task counts.
    pub async fn info(&self) -> Result<ClusterInfo, ClientError> {
        match self.request(|req| FromClient::Info { req }).await? {
            ToClient::Info { info, .. } => Ok(info),
            other => Err(ClientError::Disconnected(format!("unexpected reply {other:?}"))),
        }
    }

    /// Waits until the scheduler has `n` workers or `patience` runs out, and returns how many
    /// it has then (fewer than `n` if it ran out).
    pub async fn wait_for_workers(&self, n: usize, patience: std::time::Duration) -> Result<usize, ClientError> {
        let start = std::time::Instant::now();
        // Asked often at first (workers starting now register in milliseconds), then less
        // and less, so a long wait costs the scheduler a question every half second.
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            let have = self.info().await?.workers.len();
            if have >= n || start.elapsed() > patience {
                return Ok(have);
            }
            async_io::Timer::after(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(500));
        }
    }
}

fn dispatch(inner: &Inner, msg: ToClient) {
    let mut s = inner.lock();
    match msg {
        ToClient::KeyFinished { key, nbytes } => s.settle(key, KeyStatus::Finished { nbytes }),
        ToClient::KeyErred { key, error } => s.settle(key, KeyStatus::Erred(error)),
        ToClient::KeyLost { key } => {
            if let Some(st) = s.status.get_mut(&key) {
                *st = KeyStatus::Pending;
            }
        }
        ToClient::WhoHas { req, .. }
        | ToClient::Info { req, .. }
        | ToClient::Scattered { req, .. }
        | ToClient::Restarted { req, .. } => {
            if let Some(tx) = s.replies.remove(&req) {
                let _ = tx.try_send(msg);
            }
        }
        ToClient::Welcome { .. } => {}
        ToClient::Notice { message } => log::warn!("scheduler: {message}"),
        ToClient::Unrunnable { tasks, more } => {
            let Some((key, reason)) = tasks.first() else { return };
            let more = more + tasks.len() as u64 - 1;
            if s.wait_for_workers {
                log::warn!(
                    "{}; waiting for a worker that can run it",
                    unrunnable_text(key, reason, more)
                );
            } else if s.unrunnable.is_none() {
                s.unrunnable = Some((key.clone(), reason.clone(), more));
                s.end_waits();
            }
        }
        ToClient::Shutdown { reason } => s.close(format!("scheduler shut down: {reason}")),
        ToClient::Closing { reason } => s.close(format!("the scheduler closed the connection: {reason}")),
    }
}

/// `keys` cut into runs of at most [`crate::protocol::SUBMIT_PART_LEN`] bytes of keys each: a message naming
/// keys (and the scheduler's answer to it) then stays far below the frame cap however many
/// keys the caller passes. No keys, one empty run, so the message still goes.
fn key_parts(keys: &[String]) -> impl Iterator<Item = &[String]> {
    let mut rest = keys;
    let mut first = true;
    std::iter::from_fn(move || {
        if rest.is_empty() && !std::mem::take(&mut first) {
            return None;
        }
        first = false;
        let mut bytes = 0;
        let n = rest
            .iter()
            .position(|k| {
                bytes += k.len() + 8;
                bytes > crate::protocol::SUBMIT_PART_LEN
            })
            .unwrap_or(rest.len())
            .max(1)
            .min(rest.len());
        let (part, tail) = rest.split_at(n);
        rest = tail;
        Some(part)
    })
}

#[cfg(test)]
mod tests {
    use super::key_parts;
    use crate::protocol::SUBMIT_PART_LEN;

    #[test]
    fn key_lists_are_cut_into_parts_under_the_part_size_and_none_is_one_empty_part() {
        let none: Vec<String> = Vec::new();
        assert_eq!(key_parts(&none).count(), 1, "the message still goes");
        let few: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
        assert_eq!(key_parts(&few).collect::<Vec<_>>(), vec![&few[..]]);
        // 9 MiB of keys of 1 KiB each: three parts or more, each under the part size.
        let many: Vec<String> = (0..9 * 1024).map(|i| format!("{i:01024}")).collect();
        let parts: Vec<&[String]> = key_parts(&many).collect();
        assert!(parts.len() >= 3, "{} parts", parts.len());
        for p in &parts {
            assert!(p.iter().map(|k| k.len() + 8).sum::<usize>() <= SUBMIT_PART_LEN);
        }
        assert_eq!(parts.concat(), many, "every key once, in order");
    }
}
