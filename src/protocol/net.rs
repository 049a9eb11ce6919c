//! The one place that dials and the one place that accepts, for every role: workers, nannies
//! and clients reaching the scheduler, workers and clients reaching a worker's peer port, and
//! the scheduler and the peer port taking their connections.
//!
//! [`dial`] resolves the address anew on every attempt, connects with backoff up to a
//! patience, sets `TCP_NODELAY` and runs the handshake for the dialing role ([`dial_bounded`]
//! also bounds each attempt, for peers that may stop answering); [`serve`]
//! accepts, backs off on errors and runs one task per connection. Encryption and
//! authentication belong here, so nothing else in distd may call `TcpStream::connect` or
//! `TcpListener::accept` (`tests/architecture.rs` checks it). It never decides anything
//! about tasks or workers, and never reads a message after the handshake.

use super::handshake::{accept_handshake, connect_handshake, HandshakeError, Hello, Role};
use futures_lite::FutureExt;
use smol::net::{TcpListener, TcpStream};
use smol::Task;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The scheduler's port unless told otherwise, as dask's.
pub const DEFAULT_PORT: u16 = 8786;

/// The wait before the second attempt of a dial; it doubles on each failure.
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// The longest wait between two attempts of a dial.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// How long the accept loop waits after a failed accept (out of file descriptors, say), so
/// that the failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
    /// Connecting and the handshake took longer than the attempt may: something accepts
    /// (the kernel does for a stopped process) but nothing answers. Not tried again: another
    /// attempt would wait as long.
    #[error("{addr}: no answer within {:.1} s", after.as_secs_f64())]
    TimedOut { addr: String, after: Duration },
}

impl AttemptError {
    /// What went wrong, without the address: for messages that name the address already.
    pub fn cause(&self) -> &dyn fmt::Display {
        match self {
            AttemptError::Resolve { source, .. } | AttemptError::Connect { source, .. } => source,
            AttemptError::NoAddress { .. } => &"it resolved to no address",
            AttemptError::Handshake { source, .. } => source,
            AttemptError::TimedOut { .. } => &"no answer in time",
        }
    }

    /// Whether another attempt may pass: the connection was refused or broke (a peer
    /// restarting, a full backlog), not a peer that accepts and then says nothing.
    pub fn is_transient(&self) -> bool {
        !matches!(self, AttemptError::TimedOut { .. })
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
}

impl DialError {
    /// For a caller of one attempt that reports the two cases apart: `Ok` with the handshake
    /// error when a distd answered and refused, or broke off the handshake; `Err` with why
    /// nothing answered.
    pub fn into_refusal(self) -> Result<HandshakeError, AttemptError> {
        match self {
            DialError::Refused { source, .. }
            | DialError::Unreachable {
                last: AttemptError::Handshake { source, .. },
                ..
            } => Ok(source),
            DialError::Unreachable { last, .. } => Err(last),
        }
    }
}

/// A connection past its handshake.
pub struct Dialed {
    pub stream: TcpStream,
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
}

/// Connects to the distd at `addr` (`host:port`) as `ours`, trying again with backoff until
/// `patience` has passed (zero: one attempt), and runs the handshake. `theirs`, the role
/// expected at `addr`, is for messages only: the accepting side decides whom it admits.
pub async fn dial(addr: &str, ours: Role, theirs: Role, patience: Duration) -> Result<Dialed, DialError> {
    dial_bounded(addr, ours, theirs, patience, None).await
}

/// [`dial`], with each attempt (resolving, connecting, the handshake) given at most
/// `attempt_timeout`. An attempt that runs out of time ends the dial at once, patience or
/// not ([`AttemptError::TimedOut`]).
pub async fn dial_bounded(
    addr: &str,
    ours: Role,
    theirs: Role,
    patience: Duration,
    attempt_timeout: Option<Duration>,
) -> Result<Dialed, DialError> {
    let start = Instant::now();
    let mut delay = FIRST_RETRY;
    loop {
        let tried = match attempt_timeout {
            None => attempt(addr, ours).await,
            Some(after) => {
                let out_of_time = async {
                    async_io::Timer::after(after).await;
                    Err(Failure::Transient(AttemptError::TimedOut {
                        addr: addr.to_string(),
                        after,
                    }))
                };
                attempt(addr, ours).or(out_of_time).await
            }
        };
        let last = match tried {
            Ok(dialed) => return Ok(dialed),
            Err(Failure::Refused(source)) => {
                return Err(DialError::Refused {
                    addr: addr.to_string(),
                    ours,
                    theirs,
                    source,
                })
            }
            Err(Failure::Transient(last)) => last,
        };
        let waited = start.elapsed();
        if waited >= patience || !last.is_transient() {
            return Err(DialError::Unreachable {
                addr: addr.to_string(),
                theirs,
                waited,
                last,
            });
        }
        log::info!("{theirs} at {addr} not reachable yet ({last}); retrying");
        async_io::Timer::after(delay.min(patience - waited)).await;
        delay = (delay * 2).min(MAX_RETRY);
    }
}

/// One attempt: resolve, connect to each address in turn, handshake on the first that answers.
async fn attempt(addr: &str, ours: Role) -> Result<Dialed, Failure> {
    let addrs: Vec<SocketAddr> = match addr.parse::<SocketAddr>() {
        // An address of digits needs no resolver (and no hop to a blocking thread).
        Ok(a) => vec![a],
        Err(_) => {
            let owned = addr.to_string();
            blocking::unblock(move || owned.to_socket_addrs().map(Iterator::collect))
                .await
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
        let mut stream = match TcpStream::connect(to).await {
            Ok(s) => s,
            Err(source) => {
                last = AttemptError::Connect { to, source };
                continue;
            }
        };
        // Small frames go out at once: the writers batch by themselves.
        stream.set_nodelay(true).ok();
        return match connect_handshake(&mut stream, ours).await {
            Ok(hello) => Ok(Dialed {
                stream,
                addr: to,
                hello,
            }),
            Err(source @ HandshakeError::Io(_)) => Err(Failure::Transient(AttemptError::Handshake { to, source })),
            Err(refusal) => Err(Failure::Refused(refusal)),
        };
    }
    Err(Failure::Transient(last))
}

/// Accepts connections on `listener` for as long as the returned future runs, runs the
/// handshake of each as `ours` (admitting the roles in `admits`), and runs
/// `handle(stream, hello, from)` for each peer that passed, in a task of its own; dropping the
/// future cancels them all. A failed accept is logged (prefixed with `what`) and retried after
/// a pause; a refused handshake is logged and its connection closed.
pub async fn serve<F, Fut>(listener: TcpListener, what: &'static str, ours: Role, admits: &'static [Role], handle: F)
where
    F: Fn(TcpStream, Hello, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = std::sync::Arc::new(handle);
    // Kept, since dropping a task cancels it; finished ones are pruned on each accept.
    let mut conns: Vec<Task<()>> = Vec::new();
    loop {
        let (mut stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("{what}: accept failed: {e}");
                async_io::Timer::after(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        stream.set_nodelay(true).ok();
        conns.retain(|t| !t.is_finished());
        let handle = handle.clone();
        conns.push(crate::rt::spawn(async move {
            match accept_handshake(&mut stream, ours, admits).await {
                Ok(hello) => handle(stream, hello, from).await,
                Err(e) => log::warn!("{what}: connection from {from} closed: handshake refused: {e}"),
            }
        }));
    }
}

/// For tests: a peer port on a free loopback port whose connections, once the handshake is
/// done, go to `conn`; its address, and the task serving it (dropping it stops the port).
#[cfg(test)]
pub(crate) fn fake_peer_port<F, Fut>(conn: F) -> (String, Task<()>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = smol::block_on(TcpListener::bind("127.0.0.1:0")).expect("bind loopback");
    let addr = listener.local_addr().expect("local address").to_string();
    let task = crate::rt::spawn(serve(
        listener,
        "fake peer",
        Role::Worker,
        &[Role::Peer],
        move |stream, _, _| conn(stream),
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
        let task = crate::rt::spawn(serve(listener, "test", role, allowed, |_, _, _| async {}));
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
