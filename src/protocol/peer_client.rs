//! The fetching side of result transfer: one connection to one worker's peer port, used by
//! workers (for task inputs) and by clients (for gather).
//!
//! A fetch is one `ToPeer::Fetch` frame; each result comes back as a `FromPeer::Data` header
//! followed by the raw bytes (or `FromPeer::Missing`), in the order asked. It dials through
//! [`super::net::dial_bounded`] and never decides what to fetch or from whom.
//!
//! A peer may stop answering without closing anything (a stopped process: the kernel still
//! accepts its connections and buffers what is sent to it), so both halves are bounded
//! ([`PeerTimeouts`]): connecting with its handshake, and progress while an answer is owed:
//! no byte for that long fails the fetch, however large the result and however long it has
//! been flowing. An idle connection between fetches is never timed out.

use super::conn::Data;
use super::frame::{encode_frame, FrameError, FrameReader};
use super::handshake::{HandshakeError, Role};
use super::ids::TaskId;
use super::messages::{FromPeer, ToPeer};
use super::net::{dial_bounded, AttemptError};
use super::secure::{LinkReader, LinkWriter};
use super::watched::{is_silence, Silence, Watched};
use async_io::Timer;
use futures_lite::{AsyncWriteExt, FutureExt};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// How long a peer may keep a fetch waiting: the one home of these defaults, for workers'
/// fetches and clients' gathers alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerTimeouts {
    /// Connecting and the handshake, per attempt.
    pub connect: Duration,
    /// The longest wait for the next byte while an answer is owed: a bound on silence, not
    /// on a transfer's length.
    pub progress: Duration,
    /// How long a worker keeps trying again, with backoff, when the connection to the only
    /// holder of an input is refused or breaks (a peer restarting its listener, a full
    /// backlog). A holder that is gone is reported within about this long.
    pub reconnect: Duration,
}

/// Connect and progress stay below the scheduler's default heartbeat timeout (10 s), so that
/// a fetch from a stopped peer fails, and its task can go elsewhere, before or about when the
/// scheduler gives the peer up; and far above anything a live peer takes to answer (its peer
/// port answers from memory, or from one file read at a time).
impl PeerTimeouts {
    /// Connecting and the handshake, per attempt.
    pub const CONNECT: Duration = Duration::from_secs(5);
    /// Silence while bytes are owed.
    pub const PROGRESS: Duration = Duration::from_secs(8);
    /// Retrying a refused or broken connection to an input's only holder.
    pub const RECONNECT: Duration = Duration::from_secs(3);
}

impl Default for PeerTimeouts {
    fn default() -> Self {
        PeerTimeouts {
            connect: Self::CONNECT,
            progress: Self::PROGRESS,
            reconnect: Self::RECONNECT,
        }
    }
}

/// Why a fetch from a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot connect to {addr}: {}", .source.cause())]
    Connect { addr: String, source: AttemptError },
    #[error("{addr}: {source}")]
    Refused { addr: String, source: HandshakeError },
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("peer closed the connection")]
    Closed,
    /// Connected, but the peer sent nothing for `after` while it owed an answer.
    #[error("the peer sent nothing for {:.1} s while it owed a result", after.as_secs_f64())]
    Stalled { after: Duration },
    #[error("result of {len} bytes is too large")]
    TooLarge { len: u64 },
    #[error("peer answered out of order: {got:?} for {want}")]
    OutOfOrder { got: FromPeer, want: TaskId },
}

impl PeerError {
    /// Whether trying again soon, over a new connection, may pass: the connection was
    /// refused or broke. Not when the peer stalled (it would stall again), refused this
    /// distd, or answered nonsense.
    pub fn is_transient(&self) -> bool {
        match self {
            PeerError::Connect { source, .. } => source.is_transient(),
            PeerError::Refused { source, .. } => matches!(source, HandshakeError::Io(_)),
            PeerError::Frame(FrameError::Io(_) | FrameError::Truncated { .. }) => true,
            PeerError::Io(_) | PeerError::Closed => true,
            PeerError::Frame(_) | PeerError::Stalled { .. } | PeerError::TooLarge { .. } => false,
            PeerError::OutOfOrder { .. } => false,
        }
    }
}

/// A connection to one worker's peer port.
pub struct PeerClient {
    reader: FrameReader<Watched<LinkReader>>,
    writer: LinkWriter,
    timeouts: PeerTimeouts,
    /// Reused for every request's encoding.
    buf: Vec<u8>,
}

impl PeerClient {
    /// Connects to the peer port at `addr` as `role` (a worker's `Peer`, or a `Client`),
    /// once, with the default timeouts: a peer that is not there is the caller's news, not
    /// something to wait for.
    pub async fn connect(addr: &str, role: Role) -> Result<PeerClient, PeerError> {
        PeerClient::connect_with(addr, role, PeerTimeouts::default(), Duration::ZERO).await
    }

    /// Connects as `role` with `timeouts`, trying again with backoff for `patience` while
    /// the connection is refused or breaks (zero: once). Each attempt may take
    /// `timeouts.connect`; one that runs out of time is not tried again.
    pub async fn connect_with(
        addr: &str,
        role: Role,
        timeouts: PeerTimeouts,
        patience: Duration,
    ) -> Result<PeerClient, PeerError> {
        let dialed = dial_bounded(addr, role, Role::Worker, patience, Some(timeouts.connect))
            .await
            .map_err(|e| match e.into_refusal() {
                Ok(source) => PeerError::Refused {
                    addr: addr.to_string(),
                    source,
                },
                Err(source) => PeerError::Connect {
                    addr: addr.to_string(),
                    source,
                },
            })?;
        Ok(PeerClient {
            reader: FrameReader::new(Watched::new(dialed.link.reader, timeouts.progress)),
            writer: dialed.link.writer,
            timeouts,
            buf: Vec::new(),
        })
    }

    /// Fetches results; `None` where the peer does not hold one. Fails with
    /// [`PeerError::Stalled`] when the peer goes silent for `timeouts.progress` before the
    /// last byte; the connection is then of no further use.
    pub async fn fetch(&mut self, tasks: &[TaskId]) -> Result<Vec<Option<Data>>, PeerError> {
        self.buf.clear();
        encode_frame(&mut self.buf, &ToPeer::Fetch { tasks: tasks.to_vec() })?;
        let after = self.timeouts.progress;
        // The request is small: a peer that cannot take it in that long does not read.
        let stalled = async {
            Timer::after(after).await;
            Err(io::Error::new(io::ErrorKind::TimedOut, Silence(after)))
        };
        self.writer
            .write_all(&self.buf)
            .or(stalled)
            .await
            .map_err(|e| stalled_or(e, after))?;
        self.reader.get_mut().restart();
        self.read_answers(tasks).await.map_err(|e| match e {
            PeerError::Frame(FrameError::Io(e)) | PeerError::Io(e) => stalled_or(e, after),
            other => other,
        })
    }

    async fn read_answers(&mut self, tasks: &[TaskId]) -> Result<Vec<Option<Data>>, PeerError> {
        let mut out = Vec::with_capacity(tasks.len());
        for &want in tasks {
            let reply = self.reader.next::<FromPeer>().await?.ok_or(PeerError::Closed)?;
            match reply {
                FromPeer::Data { task, len } if task == want => {
                    let len = usize::try_from(len).map_err(|_| PeerError::TooLarge { len })?;
                    out.push(Some(Arc::new(self.reader.read_payload(len).await?)));
                }
                FromPeer::Missing { task } if task == want => out.push(None),
                got => return Err(PeerError::OutOfOrder { got, want }),
            }
        }
        Ok(out)
    }
}

/// A timeout of ours as [`PeerError::Stalled`]; any other I/O error as it is.
fn stalled_or(e: io::Error, after: Duration) -> PeerError {
    if is_silence(&e) {
        PeerError::Stalled { after }
    } else {
        PeerError::Io(e)
    }
}

#[cfg(test)]
mod tests;
