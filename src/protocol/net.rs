//! The one place that dials and the one place that accepts, for every role: workers, nannies
//! and clients reaching the scheduler, workers and clients reaching a worker's peer port, and
//! the scheduler and the peer port taking their connections.
//!
//! [`dial`] resolves the address anew on every attempt, connects with backoff up to a
//! patience, sets `TCP_NODELAY` and runs the handshake for the dialing role. The patience
//! covers everything: resolving, connecting and the handshake of every attempt, so a peer
//! that accepts and never answers (a stopped process, another service) ends the dial when
//! the patience does, as "tcp://X accepted but never answered within N s"; with no patience
//! (one attempt, a client's) the attempt has [`ANSWER_TIMEOUT`]. [`dial_bounded`] gives each
//! attempt a bound of its own instead, for peers that may stop answering. A peer whose
//! hello names another role than the one the caller came for ("tcp://X is a distd worker's
//! port, not a scheduler's") ends the dial at once. How a dial waits between attempts and
//! what it says meanwhile is a [`Retry`], which a caller with a retry loop of its own (the
//! worker's registration) shares with its dials, so the two never both speak.
//!
//! [`serve`] accepts, backs off on errors and runs one task per connection. Encryption and
//! authentication belong here: every connection is TLS 1.3 with mutual authentication
//! ([`super::secure`]) unless the process runs with `--no-security`, so nothing else in
//! distd may call `TcpStream::connect` or `TcpListener::accept` (`tests/architecture.rs`
//! checks it). It never decides anything about tasks or workers, and never reads a message
//! after the handshake.
//!
//! Before a peer has proved itself it costs little and briefly: the whole handshake, TLS
//! included, has [`HANDSHAKE_TIMEOUT`]; at most [`MAX_HANDSHAKES_PER_HOST`] connections from
//! one address are in their handshake at once (more are closed at once), and at most
//! [`MAX_HANDSHAKES`] in all (past it the oldest is closed): connections that say nothing
//! hold little, never for long, and never lock out a peer that handshakes at once; nothing
//! is buffered by a length the peer declares. An accept that fails (out of file descriptors) backs off and is
//! logged once per episode, while the connections already open go on.

use super::handshake::{
    accept_handshake, connect_handshake, Guard, HandshakeError, Hello, Role, ANSWER_TIMEOUT, HANDSHAKE_TIMEOUT,
};
use super::secure::{accept_tls, dial_tls, dialing_guard, Link};
use super::security::{Credential, Served};
use smol::net::{TcpListener, TcpStream};
use smol::Task;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The scheduler's port unless told otherwise, as dask's.
pub const DEFAULT_PORT: u16 = 8786;

/// The wait before the second attempt of a dial; it doubles on each failure.
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// The longest wait between two attempts of a dial.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// The least time an attempt within a patience gets, so the attempt that comes as the
/// patience ends is one (a patience may be overrun by this much).
const LEAST_ATTEMPT: Duration = Duration::from_millis(100);

/// A dial that keeps failing for the same reason says so again once it has waited this
/// long, then at twice that, and so on: a minute of waiting is five lines, not fifty.
const FIRST_REMINDER: Duration = Duration::from_secs(5);

/// How long the accept loop waits after a failed accept (out of file descriptors, say), so
/// that the failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The most connections one port holds in their handshake at once; past it, the oldest is
/// closed to make room.
pub const MAX_HANDSHAKES: usize = 512;

/// The most of them from one address.
pub const MAX_HANDSHAKES_PER_HOST: usize = 64;

/// Why one attempt of a dial reached no distd that would talk.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("cannot resolve {addr}: {source}")]
    Resolve { addr: String, source: io::Error },
    #[error("{addr} resolved to no address")]
    NoAddress { addr: String },
    #[error("{to}: {source}")]
    Connect { to: SocketAddr, source: io::Error },
    /// Connected, but the connection broke during the handshake, as when it reaches a peer
    /// that is restarting: worth another attempt, unlike a refusal.
    #[error("{to}: {source}")]
    Handshake { to: SocketAddr, source: HandshakeError },
    /// Resolving or connecting took all the time the attempt had (a host that drops
    /// packets). Not tried again: another attempt would wait as long.
    #[error("tcp://{addr} did not take the connection within {:.1} s", after.as_secs_f64())]
    TimedOut { addr: String, after: Duration },
    /// Connected, but no hello came back within the attempt's time: something accepts (the
    /// kernel does for a stopped process) but nothing answers. Not tried again either.
    #[error("tcp://{to} accepted but never answered within {:.1} s", after.as_secs_f64())]
    Silent { to: SocketAddr, after: Duration },
    /// A distd answered, as another role than the caller came for: the address is wrong.
    #[error("tcp://{to} is a distd {found}'s port, not a {expected}'s")]
    WrongPeer {
        to: SocketAddr,
        found: Role,
        expected: Role,
    },
}

impl AttemptError {
    /// What went wrong, for messages that name the address already. The answers of something
    /// that was reached say what was there, and name it.
    pub fn cause(&self) -> String {
        match self {
            AttemptError::Resolve { source, .. } | AttemptError::Connect { source, .. } => source.to_string(),
            AttemptError::NoAddress { .. } => "it resolved to no address".to_string(),
            AttemptError::Handshake { source, .. } => source.to_string(),
            AttemptError::TimedOut { .. } | AttemptError::Silent { .. } | AttemptError::WrongPeer { .. } => {
                self.to_string()
            }
        }
    }

    /// Whether another attempt may pass: the connection was refused or broke (a peer
    /// restarting, a full backlog), not a peer that accepts and then says nothing, nor one
    /// of another role.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            AttemptError::TimedOut { .. } | AttemptError::Silent { .. } | AttemptError::WrongPeer { .. }
        )
    }
}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// No attempt got through within the patience; `last` says why the last one did not.
    #[error("{theirs} at {addr} unreachable for {:.1} s: {last}", waited.as_secs_f64())]
    Unreachable {
        addr: String,
        theirs: Role,
        waited: Duration,
        last: AttemptError,
    },
    /// The peer answered and refused (another version, a role it does not admit), or does
    /// not speak distd: final, trying again would not change its mind.
    #[error("{theirs} at {addr} refused this {ours}: {source}")]
    Refused {
        addr: String,
        ours: Role,
        theirs: Role,
        source: HandshakeError,
    },
    /// A distd of another role answered ([`AttemptError::WrongPeer`]): final at once.
    #[error("{0}")]
    WrongPeer(AttemptError),
    /// A secured peer, and no credential for its cluster here: final.
    #[error("the {theirs} at {addr} needs a credential; {source}")]
    NoCredential {
        addr: String,
        theirs: Role,
        source: HandshakeError,
    },
    /// Our credential is another cluster's, or TLS failed: final.
    #[error("refused by tcp://{to}: {source}")]
    Untrusted { to: SocketAddr, source: HandshakeError },
}

impl DialError {
    /// For a caller of one attempt that reports the two cases apart: `Ok` with the handshake
    /// error when a distd answered and refused, or broke off the handshake; `Err` with why
    /// nothing that would talk was reached (nothing answered, or a distd of another role).
    pub fn into_refusal(self) -> Result<HandshakeError, AttemptError> {
        match self {
            DialError::Refused { source, .. }
            | DialError::NoCredential { source, .. }
            | DialError::Untrusted { source, .. }
            | DialError::Unreachable {
                last: AttemptError::Handshake { source, .. },
                ..
            } => Ok(source),
            DialError::Unreachable { last, .. } | DialError::WrongPeer(last) => Err(last),
        }
    }
}

/// A connection past its handshake.
pub struct Dialed {
    pub link: Link,
    /// The address it reached (one of those `addr` resolved to).
    pub addr: SocketAddr,
    /// What the peer said about itself.
    pub hello: Hello,
}

/// How one attempt ended, if not with a connection.
enum Failure {
    /// Nothing that would talk was reached: try again while there is patience, unless the
    /// attempt ran out of time ([`AttemptError::is_transient`]).
    Transient(AttemptError),
    /// Will not pass.
    Refused(HandshakeError),
    /// A distd of another role: will not pass either.
    WrongPeer(AttemptError),
    /// No credential for the peer's cluster.
    NoCredential(HandshakeError),
    /// Another cluster, or TLS failed.
    Untrusted(SocketAddr, HandshakeError),
}

/// The patience of a dial, or of a caller's retry loop around dials: when to give up, how
/// long to wait between attempts (50 ms doubling to 2 s), and what to say while waiting.
///
/// It says at most one line per failed attempt, and fewer: the first failure, then only when
/// the reason changes or the wait passes 5 s, 10 s, 20 s ...; nothing at all when quiet (a
/// nanny, whose worker dials the same scheduler and speaks for both). Giving up is the
/// caller's line to say, with the last reason.
#[derive(Debug)]
pub struct Retry {
    /// Who is waited for, for the lines: "scheduler at ADDR".
    what: String,
    start: Instant,
    patience: Duration,
    /// The wait after the next failure.
    delay: Duration,
    quiet: bool,
    /// The reason of the last line said, if any was.
    said: Option<String>,
    /// The wait past which the same reason is said again.
    next_reminder: Duration,
}

impl Retry {
    /// Waiting up to `patience` from `now` for the `theirs` at `addr`.
    pub fn new(theirs: Role, addr: &str, patience: Duration, now: Instant) -> Retry {
        Retry {
            what: format!("{theirs} at {addr}"),
            start: now,
            patience,
            delay: FIRST_RETRY,
            quiet: false,
            said: None,
            next_reminder: FIRST_REMINDER,
        }
    }

    /// The same, saying nothing while it waits.
    pub fn quiet(mut self) -> Retry {
        self.quiet = true;
        self
    }

    /// How long it has waited by `now`.
    pub fn waited(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }

    /// What is left of the patience at `now`.
    pub fn left(&self, now: Instant) -> Duration {
        self.patience.saturating_sub(self.waited(now))
    }

    /// An attempt failed at `now` for `reason`: the wait before the next one (and the line
    /// about it, if one is due), or `None` when the patience is spent and the caller gives up.
    pub fn failed(&mut self, reason: &dyn fmt::Display, now: Instant) -> Option<Duration> {
        let left = self.left(now);
        if left.is_zero() {
            return None;
        }
        if let Some(line) = self.line(&reason.to_string(), now) {
            log::info!("{line}");
        }
        let wait = self.delay.min(left);
        self.delay = (self.delay * 2).min(MAX_RETRY);
        Some(wait)
    }

    /// The line due for a failure at `now` for `reason`, if any.
    fn line(&mut self, reason: &str, now: Instant) -> Option<String> {
        if self.quiet {
            return None;
        }
        let waited = self.waited(now);
        let left = self.left(now).as_secs_f64();
        let line = match &self.said {
            None => format!(
                "{} not reachable yet ({reason}); retrying for up to {:.1} s",
                self.what,
                self.patience.as_secs_f64()
            ),
            Some(said) if said != reason => {
                format!(
                    "{} still not reachable ({reason}); retrying for {left:.1} s more",
                    self.what
                )
            }
            Some(_) if waited >= self.next_reminder => format!(
                "{} still not reachable after {:.0} s ({reason}); retrying for {left:.1} s more",
                self.what,
                waited.as_secs_f64()
            ),
            Some(_) => return None,
        };
        while self.next_reminder <= waited {
            self.next_reminder *= 2;
        }
        self.said = Some(reason.to_string());
        Some(line)
    }
}

/// Connects to the `theirs` at `addr` (`host:port`) as `ours`, trying again with backoff
/// until `patience` has passed (zero: one attempt, of at most [`ANSWER_TIMEOUT`]), and runs
/// the handshake; says a line now and then while it retries ([`Retry`]).
pub async fn dial(addr: &str, ours: Role, theirs: Role, patience: Duration) -> Result<Dialed, DialError> {
    let mut retry = Retry::new(theirs, addr, patience, Instant::now());
    dial_with(addr, ours, theirs, &mut retry, None).await
}

/// [`dial`], with each attempt (resolving, connecting, the handshake) given at most
/// `attempt_timeout`. An attempt that runs out of time ends the dial at once, patience or
/// not ([`AttemptError::TimedOut`], [`AttemptError::Silent`]).
pub async fn dial_bounded(
    addr: &str,
    ours: Role,
    theirs: Role,
    patience: Duration,
    attempt_timeout: Option<Duration>,
) -> Result<Dialed, DialError> {
    let mut retry = Retry::new(theirs, addr, patience, Instant::now());
    dial_with(addr, ours, theirs, &mut retry, attempt_timeout).await
}

/// The dial itself, within what is left of `retry`'s patience (which the caller may share
/// with a retry loop of its own): each attempt gets `attempt_timeout`, or else what is left
/// of the patience (at least 100 ms; and [`ANSWER_TIMEOUT`] when there is no patience at
/// all), so a patience covers every attempt whole.
pub async fn dial_with(
    addr: &str,
    ours: Role,
    theirs: Role,
    retry: &mut Retry,
    attempt_timeout: Option<Duration>,
) -> Result<Dialed, DialError> {
    loop {
        let now = Instant::now();
        let bound = match attempt_timeout {
            Some(bound) => bound,
            None if retry.patience.is_zero() => ANSWER_TIMEOUT,
            None => retry.left(now).max(LEAST_ATTEMPT),
        };
        let last = match attempt(addr, ours, theirs, bound).await {
            Ok(dialed) => return Ok(dialed),
            Err(Failure::Refused(source)) => {
                return Err(DialError::Refused {
                    addr: addr.to_string(),
                    ours,
                    theirs,
                    source,
                })
            }
            Err(Failure::WrongPeer(e)) => return Err(DialError::WrongPeer(e)),
            Err(Failure::NoCredential(source)) => {
                return Err(DialError::NoCredential {
                    addr: addr.to_string(),
                    theirs,
                    source,
                })
            }
            Err(Failure::Untrusted(to, source)) => return Err(DialError::Untrusted { to, source }),
            Err(Failure::Transient(last)) => last,
        };
        let now = Instant::now();
        let wait = match last.is_transient() {
            true => retry.failed(&last, now),
            false => None,
        };
        match wait {
            Some(wait) => async_io::Timer::after(wait).await,
            None => {
                return Err(DialError::Unreachable {
                    addr: addr.to_string(),
                    theirs,
                    waited: retry.waited(now),
                    last,
                })
            }
        };
    }
}

/// One attempt of at most `bound`: resolve, connect to each address in turn, handshake on
/// the first that answers, expecting a `theirs`.
async fn attempt(addr: &str, ours: Role, theirs: Role, bound: Duration) -> Result<Dialed, Failure> {
    let deadline = Instant::now() + bound;
    let timed_out = || {
        Failure::Transient(AttemptError::TimedOut {
            addr: addr.to_string(),
            after: bound,
        })
    };
    let addrs: Vec<SocketAddr> = match addr.parse::<SocketAddr>() {
        // An address of digits needs no resolver (and no hop to a blocking thread).
        Ok(a) => vec![a],
        Err(_) => {
            let owned = addr.to_string();
            let resolved = blocking::unblock(move || owned.to_socket_addrs().map(Iterator::collect));
            crate::rt::until(deadline, resolved)
                .await
                .ok_or_else(timed_out)?
                .map_err(|source| {
                    Failure::Transient(AttemptError::Resolve {
                        addr: addr.to_string(),
                        source,
                    })
                })?
        }
    };
    let mut last = AttemptError::NoAddress { addr: addr.to_string() };
    for to in addrs {
        let mut stream = match crate::rt::until(deadline, TcpStream::connect(to))
            .await
            .ok_or_else(timed_out)?
        {
            Ok(s) => s,
            Err(source) => {
                last = AttemptError::Connect { to, source };
                continue;
            }
        };
        // Small frames go out at once: the writers batch by themselves.
        stream.set_nodelay(true).ok();
        let guard = dialing_guard();
        let host = host_of(addr);
        let handshake = async {
            let hello = connect_handshake(&mut stream, ours, theirs, guard).await?;
            let link = match guard {
                Guard::Secured => dial_tls(stream.clone(), host, ours, &hello).await?,
                Guard::Insecure => Link::plain(stream.clone()),
            };
            Ok::<_, HandshakeError>((link, hello))
        };
        let Some(answered) = crate::rt::until(deadline, handshake).await else {
            return Err(Failure::Transient(AttemptError::Silent { to, after: bound }));
        };
        return match answered {
            Ok((link, hello)) => Ok(Dialed { link, addr: to, hello }),
            Err(e @ HandshakeError::NoCredential { .. }) => Err(Failure::NoCredential(e)),
            Err(e @ (HandshakeError::OtherCluster(_) | HandshakeError::Tls(_) | HandshakeError::NotMember(_))) => {
                Err(Failure::Untrusted(to, e))
            }
            Err(HandshakeError::WrongPeer { found, expected }) => {
                Err(Failure::WrongPeer(AttemptError::WrongPeer { to, found, expected }))
            }
            Err(source @ HandshakeError::Io(_)) => Err(Failure::Transient(AttemptError::Handshake { to, source })),
            Err(refusal) => Err(Failure::Refused(refusal)),
        };
    }
    Err(Failure::Transient(last))
}

/// The host part of `host:port` (an IPv6 address without its brackets).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Connections in their handshake: by address, and in the order they came, each with the
/// sender whose drop tells it to give up its place.
#[derive(Default)]
struct Pending {
    next: u64,
    /// The most held at once since the queue was last empty.
    peak: usize,
    by_host: HashMap<IpAddr, usize>,
    queue: std::collections::VecDeque<(u64, async_channel::Sender<()>)>,
}

/// A place among the connections in their handshake, given back when dropped.
struct PendingSlot {
    pending: Arc<Mutex<Pending>>,
    host: IpAddr,
    id: u64,
    /// Closes when a newer connection needed the place.
    evicted: async_channel::Receiver<()>,
}

impl PendingSlot {
    /// A place for a connection from `host`; `None` when that host holds its share. When
    /// the port is full, the oldest connection still in its handshake gives up its place:
    /// an honest peer finishes in milliseconds, so it is never the oldest for long.
    fn take(pending: &Arc<Mutex<Pending>>, host: IpAddr) -> Option<PendingSlot> {
        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.by_host.get(&host).copied().unwrap_or(0) >= MAX_HANDSHAKES_PER_HOST {
            return None;
        }
        while p.queue.len() >= MAX_HANDSHAKES {
            // Dropping its sender wakes it; its own drop then gives back its count.
            p.queue.pop_front();
        }
        let (tx, evicted) = async_channel::bounded(1);
        let id = p.next;
        p.next += 1;
        p.queue.push_back((id, tx));
        p.peak = p.peak.max(p.queue.len());
        *p.by_host.entry(host).or_default() += 1;
        Some(PendingSlot {
            pending: pending.clone(),
            host,
            id,
            evicted,
        })
    }

    /// Resolves when this connection must give up its place.
    async fn evicted(&self) {
        let _ = self.evicted.recv().await;
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = p.queue.iter().position(|(id, _)| *id == self.id) {
            p.queue.remove(at);
        }
        if let Some(n) = p.by_host.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                p.by_host.remove(&self.host);
            }
        }
        // A burst of connections that never proved themselves is over: what they held goes
        // back to the system, not just to the allocator.
        if p.by_host.is_empty() && p.peak >= TRIM_AFTER_BURST {
            p.peak = 0;
            crate::sys::release_free_memory();
        }
    }
}

/// A burst this large of connections in their handshake gives its memory back when it ends.
const TRIM_AFTER_BURST: usize = 64;

/// Accepts connections on `listener` for as long as the returned future runs, runs the
/// handshake of each as `ours` (admitting the roles in `admits`) over TLS with `credential`
/// as it is when the connection comes (`None`: `--no-security`), and runs `handle(link, hello, from)` for each peer that passed,
/// in a task of its own; dropping the future cancels them all. A failed accept is logged
/// (prefixed with `what`) once per episode and retried after a pause; a refused handshake is
/// logged and its connection closed.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    ours: Role,
    admits: &'static [Role],
    credential: impl Into<Served>,
    handle: F,
) where
    F: Fn(Link, Hello, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    let pending = Arc::new(Mutex::new(Pending::default()));
    let served = credential.into();
    // Kept, since dropping a task cancels it; finished ones are pruned on each accept.
    let mut conns: Vec<Task<()>> = Vec::new();
    // Failed accepts since the last one that worked: an episode is logged once.
    let mut failing = 0u64;
    let mut turned_away = 0u64;
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                if failing == 0 {
                    log::warn!(
                        "{what}: accept failed: {e}; retrying every {} ms",
                        ACCEPT_BACKOFF.as_millis()
                    );
                }
                failing += 1;
                async_io::Timer::after(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if failing > 0 {
            log::info!(
                "{what}: accepting again after {}",
                crate::units::plural(failing, "failed accept")
            );
            failing = 0;
        }
        let Some(slot) = PendingSlot::take(&pending, from.ip()) else {
            // Closed at once: a host that opens connections and never speaks holds at most
            // its share of the handshakes, never everyone's.
            turned_away += 1;
            if turned_away.is_power_of_two() {
                log::warn!(
                    "{what}: too many connections in their handshake (from {}); closed {} at once",
                    from.ip(),
                    crate::units::plural(turned_away, "connection")
                );
            }
            continue;
        };
        stream.set_nodelay(true).ok();
        conns.retain(|t| !t.is_finished());
        let handle = handle.clone();
        // Read per connection: the owner may have changed it since the last one.
        let credential = served.get();
        let hello = Hello::ours(
            ours,
            match credential {
                Some(_) => Guard::Secured,
                None => Guard::Insecure,
            },
            credential.as_ref().map(|c| c.id().clone()),
        );
        conns.push(crate::rt::spawn(async move {
            // The hello has its own bound; this one covers TLS too.
            let handshake = async {
                Some(crate::rt::within(HANDSHAKE_TIMEOUT, accept_link(stream, hello, admits, credential)).await)
            };
            let done = futures_lite::future::or(handshake, async {
                slot.evicted().await;
                None
            })
            .await;
            drop(slot);
            match done {
                Some(Some(Ok((link, theirs)))) => handle(link, theirs, from).await,
                // A dialer that stopped after the hello (it found another role than it came
                // for, or no credential) says why on its side.
                Some(Some(Err(HandshakeError::Tls(e)))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    log::debug!("{what}: connection from {from} closed before TLS")
                }
                Some(Some(Err(e))) => log::warn!("{what}: connection from {from} closed: handshake refused: {e}"),
                Some(None) => log::warn!(
                    "{what}: connection from {from} closed: no handshake within {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                ),
                None => log::debug!("{what}: connection from {from} closed: newer ones needed its place"),
            }
        }));
    }
}

/// The accepting side's whole handshake on `stream`: the hello exchange as `ours`
/// (admitting `admits`), then TLS with `credential` (`None`: plain TCP).
pub(crate) async fn accept_link(
    mut stream: TcpStream,
    ours: Hello,
    admits: &[Role],
    credential: Option<Arc<Credential>>,
) -> Result<(Link, Hello), HandshakeError> {
    let theirs = accept_handshake(&mut stream, ours, admits).await?;
    let link = match &credential {
        Some(c) => accept_tls(stream.clone(), c, &theirs).await?,
        None => Link::plain(stream.clone()),
    };
    Ok((link, theirs))
}

/// For tests: [`accept_link`] as a `ours` of the test credential's cluster.
#[cfg(test)]
pub(crate) async fn test_accept(stream: TcpStream, ours: Role, admits: &[Role]) -> Result<Link, HandshakeError> {
    let credential = super::security::test_credential();
    let hello = Hello::ours(ours, Guard::Secured, Some(credential.id().clone()));
    accept_link(stream, hello, admits, Some(credential))
        .await
        .map(|(link, _)| link)
}

/// For tests: a peer port on a free loopback port whose connections, once the handshake is
/// done, go to `conn`; its address, and the task serving it (dropping it stops the port).
#[cfg(test)]
pub(crate) fn fake_peer_port<F, Fut>(conn: F) -> (String, Task<()>)
where
    F: Fn(Link) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = smol::block_on(TcpListener::bind("127.0.0.1:0")).expect("bind loopback");
    let addr = listener.local_addr().expect("local address").to_string();
    let task = crate::rt::spawn(serve(
        listener,
        "fake peer",
        Role::Worker,
        &[Role::Peer],
        Some(super::security::test_credential()),
        move |link, _, _| conn(link),
    ));
    (addr, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener on loopback that answers every hello as `role`, admitting `allowed`.
    fn fake_peer(role: Role, allowed: &'static [Role]) -> (SocketAddr, Task<()>) {
        let listener = smol::block_on(TcpListener::bind("127.0.0.1:0")).expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let task = crate::rt::spawn(serve(
            listener,
            "test",
            role,
            allowed,
            Some(crate::protocol::security::test_credential()),
            |_, _, _| async {},
        ));
        (addr, task)
    }

    #[test]
    fn dial_runs_the_handshake_and_names_the_peer() {
        let (addr, _server) = fake_peer(Role::Scheduler, &[Role::Client]);
        let dialed = smol::block_on(dial(&addr.to_string(), Role::Client, Role::Scheduler, Duration::ZERO))
            .expect("dial a fake scheduler");
        assert_eq!(dialed.hello.role, Role::Scheduler);
        assert_eq!(dialed.addr, addr);
    }

    #[test]
    fn a_refusal_is_final_and_names_both_roles() {
        let (addr, _server) = fake_peer(Role::Scheduler, &[Role::Client]);
        let start = Instant::now();
        let err = smol::block_on(dial(
            &addr.to_string(),
            Role::Peer,
            Role::Scheduler,
            Duration::from_secs(120),
        ))
        .err()
        .expect("a peer may not connect to a scheduler");
        // Retried, it would take the whole patience: a bound far from both is no race.
        assert!(start.elapsed() < Duration::from_secs(60), "a refusal is not retried");
        let text = err.to_string();
        assert!(matches!(err, DialError::Refused { .. }), "{text}");
        assert!(text.contains("refused this peer worker"), "{text}");
    }

    #[test]
    fn nothing_listening_is_retried_until_the_patience_runs_out() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = free.local_addr().expect("local address").to_string();
        drop(free);
        let start = Instant::now();
        let err = smol::block_on(dial(&addr, Role::Worker, Role::Scheduler, Duration::from_millis(300)))
            .err()
            .expect("nothing listens there");
        assert!(start.elapsed() >= Duration::from_millis(300), "{err}");
        match &err {
            DialError::Unreachable {
                last: AttemptError::Connect { .. },
                ..
            } => {}
            other => panic!("expected unreachable, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("scheduler at {addr} unreachable for ")),
            "{text}"
        );
    }

    /// A client (or a worker) that reached a worker's peer port is told so at once, though
    /// the peer port admits clients, and no patience makes it try again.
    #[test]
    fn a_peer_of_another_role_is_named_at_once() {
        let (addr, _server) = fake_peer(Role::Worker, &[Role::Peer, Role::Client]);
        for ours in [Role::Client, Role::Worker] {
            let start = Instant::now();
            let err = smol::block_on(dial(&addr.to_string(), ours, Role::Scheduler, Duration::from_secs(120)))
                .err()
                .expect("a peer port is no scheduler");
            assert!(start.elapsed() < Duration::from_secs(60), "not retried: {err}");
            assert!(matches!(err, DialError::WrongPeer(_)), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!("tcp://{addr} is a distd worker's port, not a scheduler's")
            );
            let Err(e) = err.into_refusal() else {
                panic!("a wrong peer is no refusal")
            };
            assert!(!e.is_transient());
        }
    }

    /// Something that accepts and never answers (the kernel does for a stopped process)
    /// ends the dial when its patience does: the patience covers the handshake too.
    #[test]
    fn a_peer_that_never_answers_ends_the_dial_with_the_patience() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = silent.local_addr().expect("local address");
        let start = Instant::now();
        let err = smol::block_on(dial(
            &addr.to_string(),
            Role::Worker,
            Role::Scheduler,
            Duration::from_millis(300),
        ))
        .err()
        .expect("nothing answers");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}: {err}");
        assert!(
            took < Duration::from_secs(3),
            "the patience bounds the handshake: {took:?}"
        );
        assert!(
            matches!(
                &err,
                DialError::Unreachable {
                    last: AttemptError::Silent { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "scheduler at {addr} unreachable for {:.1} s: tcp://{addr} accepted but never answered within 0.3 s",
                match &err {
                    DialError::Unreachable { waited, .. } => waited.as_secs_f64(),
                    _ => unreachable!(),
                }
            )
        );
        drop(silent);
    }

    /// A dial says the first failure, then only a new reason or a reminder at 5 s, 10 s,
    /// 20 s ...; and nothing at all when quiet.
    #[test]
    fn retry_lines_come_at_the_first_failure_a_new_reason_and_doubling_reminders() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut retry = Retry::new(Role::Scheduler, "h:1", Duration::from_secs(60), t0);
        let refused = "connection refused";
        let first = retry.line(refused, at(0)).expect("the first failure is said");
        assert_eq!(
            first,
            "scheduler at h:1 not reachable yet (connection refused); retrying for up to 60.0 s"
        );
        // A failure every 100 ms for 40 s, always the same.
        let said: Vec<u64> = (1..=40_000)
            .step_by(100)
            .filter(|&ms| retry.line(refused, at(ms)).is_some())
            .collect();
        assert_eq!(said, [5_001, 10_001, 20_001]);
        let changed = retry.line("reset", at(41_000)).expect("a new reason is said");
        assert!(
            changed.starts_with("scheduler at h:1 still not reachable (reset); retrying for 19.0 s more"),
            "{changed}"
        );
        assert!(retry.line("reset", at(41_100)).is_none());
        let mut quiet = Retry::new(Role::Scheduler, "h:1", Duration::from_secs(60), t0).quiet();
        assert!(quiet.line(refused, at(0)).is_none());
        assert!(quiet.line("reset", at(30_000)).is_none());
    }

    /// An address that cannot resolve says so. (Its port is out of range, so it fails before
    /// any name service is asked: tests send nothing beyond loopback.)
    #[test]
    fn an_address_that_does_not_resolve_says_so() {
        let err = smol::block_on(dial("localhost:99999", Role::Client, Role::Scheduler, Duration::ZERO))
            .err()
            .expect("the address does not resolve");
        assert!(err.to_string().contains("cannot resolve localhost:99999"), "{err}");
    }
}
