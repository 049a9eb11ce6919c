//! How a worker joins its scheduler: the dial, `Register` and its answer, tried again within
//! the death timeout. One [`Retry`] covers a whole registration (every dial, handshake and
//! `Register`), so it gives up when `--death-timeout` ends however the time went, and says
//! one line at first and a few more while it waits, not one per attempt.
//!
//! It decides nothing about tasks; once registered, it only forwards what the scheduler
//! says into the worker's loop ([`Event`]).

use super::server::{Event, WorkerConfig, WorkerError};
use crate::protocol::{
    dial_with, spawn_writer, Credential, FrameReader, FromWorker, Link, Retry, Role, ToWorker, WorkerInfo,
};
use async_io::Timer;
use smol::Task;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why one registration attempt failed: worth another until the death timeout.
#[derive(Debug, thiserror::Error)]
enum RegisterError {
    #[error("connection closed during registration")]
    Closed,
    #[error("expected Registered, got {0}")]
    Unexpected(String),
    #[error("{0}")]
    Frame(#[from] crate::protocol::FrameError),
    #[error("the scheduler did not answer the registration within {:.1} s", after.as_secs_f64())]
    NoAnswer { after: Duration },
}

/// A registered connection to the scheduler.
pub(super) struct Session {
    pub(super) tx: async_channel::Sender<FromWorker>,
    /// Forwards scheduler messages into the loop; dropped with the session.
    _reader: Task<()>,
    pub(super) _writer: Task<()>,
    pub(super) heartbeat: Duration,
    /// The credential the scheduler accepted: the worker's peer port serves with it.
    pub(super) credential: Option<Arc<Credential>>,
}

/// Connects to the scheduler and runs the handshake within what is left of `retry` (see
/// [`crate::protocol::dial_with`]). Returns the connection and the address it reached.
pub(super) async fn connect_scheduler(addr: &str, retry: &mut Retry) -> Result<(Link, SocketAddr), WorkerError> {
    let d = dial_with(addr, Role::Worker, Role::Scheduler, retry, None).await?;
    Ok((d.link, d.addr))
}

/// Connects (unless `stream` is already connected) and registers, trying again within
/// `retry`'s patience (the death timeout) while the failure may pass (a scheduler
/// restarting resets connections); `retry` also says what is said meanwhile, for the dials
/// and the registrations together. A refusal, or a peer that is no scheduler, is final at
/// once; so is a scheduler that does not answer `Register` before the patience ends.
pub(super) async fn register_patiently(
    mut stream: Option<Link>,
    retry: &mut Retry,
    config: &WorkerConfig,
    info: &WorkerInfo,
    events: async_channel::Sender<Event>,
) -> Result<Session, WorkerError> {
    loop {
        let s = match stream.take() {
            Some(s) => s,
            None => connect_scheduler(&config.scheduler, retry).await?.0,
        };
        let bound = retry.left(Instant::now()).max(LEAST_REGISTRATION);
        let answered = crate::rt::within(bound, register(s, info, events.clone())).await;
        let last = match answered.unwrap_or(Err(RegisterError::NoAnswer { after: bound })) {
            Ok(session) => return Ok(session),
            Err(why) => why.to_string(),
        };
        let now = Instant::now();
        match retry.failed(&last, now) {
            Some(wait) => {
                Timer::after(wait).await;
            }
            None => {
                return Err(WorkerError::Unreachable {
                    addr: config.scheduler.clone(),
                    waited: retry.waited(now).as_secs_f64(),
                    last,
                })
            }
        }
    }
}

/// The least time a `Register` gets for its answer, when the connection came as the death
/// timeout ends.
const LEAST_REGISTRATION: Duration = Duration::from_millis(500);

/// `Register` on a connection past its handshake, and the answer; then starts forwarding
/// scheduler messages.
async fn register(
    link: Link,
    info: &WorkerInfo,
    events: async_channel::Sender<Event>,
) -> Result<Session, RegisterError> {
    let (tx, rx) = async_channel::unbounded();
    let closer = link.closer();
    let credential = link.credential.clone();
    let writer = spawn_writer(rx, link.writer, closer);
    tx.send(FromWorker::Register(info.clone()))
        .await
        .map_err(|_| RegisterError::Closed)?;
    let mut reader = FrameReader::new(link.reader);
    let heartbeat = match reader.next::<ToWorker>().await {
        Ok(Some(ToWorker::Registered { heartbeat_ms, .. })) => Duration::from_millis(heartbeat_ms.max(10)),
        Ok(Some(other)) => return Err(RegisterError::Unexpected(format!("{other:?}"))),
        Ok(None) => return Err(RegisterError::Closed),
        Err(e) => return Err(RegisterError::Frame(e)),
    };
    let reader = crate::rt::spawn(async move {
        loop {
            match reader.next::<ToWorker>().await {
                Ok(Some(msg)) => {
                    if events.send(Event::FromScheduler(msg)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    let _ = events.send(Event::SchedulerLost("connection closed".into())).await;
                    return;
                }
                Err(e) => {
                    let _ = events.send(Event::SchedulerLost(e.to_string())).await;
                    return;
                }
            }
        }
    });
    Ok(Session {
        tx,
        _reader: reader,
        _writer: writer,
        heartbeat,
        credential,
    })
}
