//! The serving side of result transfer: a worker's peer port, where other workers fetch task
//! inputs and clients gather results. The fetching side is [`crate::protocol::PeerClient`].
//!
//! A fetch is one `ToPeer::Fetch` frame; each result comes back as a `FromPeer::Data` header
//! followed by the raw bytes, written straight from the store without copying. Connections
//! are accepted by [`crate::protocol::serve`]; this file never dials and never decides what
//! a worker holds.

use super::store::Store;
use crate::protocol::{encode_frame, serve, FrameError, FrameReader, FromPeer, Role, ToPeer};
use futures_lite::AsyncWriteExt;
use smol::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// Results smaller than this are copied into the reply buffer; larger ones are written
/// straight from the store.
const INLINE_RESULT: usize = 64 * 1024;

/// The reply buffer is written out once it holds this much.
const FLUSH_AT: usize = 1024 * 1024;

/// Why a peer connection ended abnormally.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Serves `Fetch` requests from peers and clients until dropped.
pub async fn serve_peers(listener: TcpListener, store: Arc<Store>) {
    serve(
        listener,
        "peer port",
        Role::Worker,
        &[Role::Peer, Role::Client],
        move |stream, _, from| {
            let store = store.clone();
            async move {
                if let Err(e) = serve_one(stream, store).await {
                    log::warn!("peer connection from {from} closed: {e}");
                }
            }
        },
    )
    .await
}

/// Answers one peer's fetches (its handshake passed) until it closes.
async fn serve_one(stream: TcpStream, store: Arc<Store>) -> Result<(), ServeError> {
    let mut writer = stream.clone();
    let mut reader = FrameReader::new(stream);
    let mut buf = Vec::with_capacity(INLINE_RESULT);
    while let Some(req) = reader.next::<ToPeer>().await? {
        let ToPeer::Fetch { tasks } = req;
        // One result at a time: a spilled result is read back only when its turn comes, and
        // large ones go straight from the store to the socket.
        for t in tasks {
            let data = store.get_async(t).await.unwrap_or_else(|e| {
                log::warn!("cannot serve {t}: {e}");
                None
            });
            match data {
                None => encode_frame(&mut buf, &FromPeer::Missing { task: t })?,
                Some(d) => {
                    let header = FromPeer::Data {
                        task: t,
                        len: d.len() as u64,
                    };
                    encode_frame(&mut buf, &header)?;
                    if d.len() < INLINE_RESULT {
                        buf.extend_from_slice(&d);
                    } else {
                        writer.write_all(&buf).await?;
                        buf.clear();
                        writer.write_all(&d).await?;
                    }
                }
            }
            if buf.len() >= FLUSH_AT {
                writer.write_all(&buf).await?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            writer.write_all(&buf).await?;
            buf.clear();
        }
    }
    Ok(())
}
