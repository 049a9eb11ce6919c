//! The fetching side of result transfer: one connection to one worker's peer port, used by
//! workers (for task inputs) and by clients (for gather).
//!
//! A fetch is one `ToPeer::Fetch` frame; each result comes back as a `FromPeer::Data` header
//! followed by the raw bytes (or `FromPeer::Missing`), in the order asked. It dials through
//! [`super::net::dial`] and never decides what to fetch or from whom.

use super::conn::Data;
use super::frame::{encode_frame, FrameError, FrameReader};
use super::handshake::{HandshakeError, Role};
use super::ids::TaskId;
use super::messages::{FromPeer, ToPeer};
use super::net::{dial, AttemptError};
use futures_lite::AsyncWriteExt;
use smol::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

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
    #[error("result of {len} bytes is too large")]
    TooLarge { len: u64 },
    #[error("peer answered out of order: {got:?} for {want}")]
    OutOfOrder { got: FromPeer, want: TaskId },
}

/// A connection to one worker's peer port.
pub struct PeerClient {
    reader: FrameReader<TcpStream>,
    writer: TcpStream,
    /// Reused for every request's encoding.
    buf: Vec<u8>,
}

impl PeerClient {
    /// Connects to the peer port at `addr` as `role` (a worker's `Peer`, or a `Client`),
    /// once: a peer that is not there is the caller's news, not something to wait for.
    pub async fn connect(addr: &str, role: Role) -> Result<PeerClient, PeerError> {
        let dialed = dial(addr, role, Role::Worker, Duration::ZERO)
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
            reader: FrameReader::new(dialed.stream.clone()),
            writer: dialed.stream,
            buf: Vec::new(),
        })
    }

    /// Fetches results; `None` where the peer does not hold one.
    pub async fn fetch(&mut self, tasks: &[TaskId]) -> Result<Vec<Option<Data>>, PeerError> {
        self.buf.clear();
        encode_frame(&mut self.buf, &ToPeer::Fetch { tasks: tasks.to_vec() })?;
        self.writer.write_all(&self.buf).await?;
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
