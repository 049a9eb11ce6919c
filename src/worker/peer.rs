//! The serving side of result transfer: a worker's peer port, where other workers fetch task
//! inputs and clients gather results. The fetching side is [`crate::protocol::PeerClient`].
//!
//! A fetch is one `ToPeer::Fetch` frame; each result comes back as a `FromPeer::Data` header
//! followed by the raw bytes, written straight from the store without copying. Connections
//! are accepted by [`crate::protocol::serve`]; this file never dials and never decides what
//! a worker holds. A peer that stops reading an answer for [`PeerTimeouts::progress`] (a
//! stopped process) loses its connection, so it holds neither a task nor result bytes here.
//! An idle connection, between requests, is kept.

use super::store::{Source, Store, StoreError};
use crate::protocol::{
    encode_frame, serve, FrameError, FrameReader, FromPeer, Link, LinkWriter, PeerTimeouts, Role, Served, TaskId,
    ToPeer, Watched,
};
use futures_lite::AsyncWriteExt;
use smol::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// Results smaller than this are copied into the reply buffer; larger ones are written
/// straight from the store.
const INLINE_RESULT: usize = 64 * 1024;

/// A spilled result is sent in pieces of this size, read from its file one at a time.
const SEND_FILE_CHUNK: usize = 1024 * 1024;

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
pub async fn serve_peers(listener: TcpListener, store: Arc<Store>, credential: Served) {
    serve_peers_with(listener, store, PeerTimeouts::default().progress, credential).await
}

/// [`serve_peers`], dropping a peer that reads nothing of an answer for `patience`.
async fn serve_peers_with(listener: TcpListener, store: Arc<Store>, patience: Duration, credential: Served) {
    serve(
        listener,
        "peer port",
        Role::Worker,
        &[Role::Peer, Role::Client],
        credential,
        move |link, _, from| {
            let store = store.clone();
            async move {
                if let Err(e) = serve_one(link, store, patience).await {
                    log::warn!("peer connection from {from} closed: {e}");
                }
            }
        },
    )
    .await
}

/// Opens `t` in the store, on a blocking thread when results are spilled.
async fn open(store: &Arc<Store>, t: TaskId) -> Result<Option<Source>, StoreError> {
    if store.all_in_memory() {
        return store.open(t);
    }
    let store = store.clone();
    blocking::unblock(move || store.open(t)).await
}

/// Writes a spilled result's `len` bytes from its file, a piece at a time (read on a
/// blocking thread), so serving it never holds it whole in memory. A file shorter than
/// its length (which the store never writes) ends the connection: the peer would read a
/// wrong result.
async fn send_file(writer: &mut Watched<LinkWriter>, file: std::fs::File, len: u64) -> Result<(), ServeError> {
    let mut file = Some(file);
    let mut left = len;
    while left > 0 {
        let want = left.min(SEND_FILE_CHUNK as u64) as usize;
        let mut f = file.take().expect("put back after each read");
        let (f, chunk) = blocking::unblock(move || {
            let mut chunk = vec![0u8; want];
            let got = std::io::Read::read_exact(&mut f, &mut chunk).map(|()| chunk);
            (f, got)
        })
        .await;
        file = Some(f);
        let chunk = chunk?;
        writer.write_all(&chunk).await?;
        left -= want as u64;
    }
    Ok(())
}

/// Answers one peer's fetches (its handshake passed) until it closes.
async fn serve_one(link: Link, store: Arc<Store>, patience: Duration) -> Result<(), ServeError> {
    let mut writer = Watched::new(link.writer, patience);
    let mut reader = FrameReader::new(link.reader);
    let mut buf = Vec::with_capacity(INLINE_RESULT);
    while let Some(req) = reader.next::<ToPeer>().await? {
        let ToPeer::Fetch { tasks } = req;
        writer.restart();
        // One result at a time: a spilled result is read back only when its turn comes, and
        // large ones go straight from the store to the socket.
        for t in tasks {
            let source = open(&store, t).await.unwrap_or_else(|e| {
                log::warn!("cannot serve {t}: {e}");
                None
            });
            match source {
                None => encode_frame(&mut buf, &FromPeer::Missing { task: t })?,
                Some(Source::Memory(d)) => {
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
                Some(Source::File { file, len }) => {
                    encode_frame(&mut buf, &FromPeer::Data { task: t, len })?;
                    writer.write_all(&buf).await?;
                    buf.clear();
                    send_file(&mut writer, file, len).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{dial, TaskId};
    use futures_lite::AsyncReadExt;

    /// A fetcher that asks for a large result and then reads nothing (a stopped process) is
    /// dropped once it has read nothing for the patience: it holds no task and no bytes here.
    #[test]
    fn a_peer_that_stops_reading_an_answer_loses_its_connection() {
        let len = 64 << 20;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::new(dir.path().join("spill"), None));
        store.put(TaskId(1), Arc::new(vec![7u8; len])).expect("put");
        let listener = smol::block_on(TcpListener::bind("127.0.0.1:0")).expect("bind loopback");
        let addr = listener.local_addr().expect("address").to_string();
        let _server = crate::rt::spawn(serve_peers_with(
            listener,
            store,
            Duration::from_millis(300),
            Some(crate::protocol::security::test_credential()).into(),
        ));
        let read = smol::block_on(async {
            let mut conn = dial(&addr, Role::Peer, Role::Worker, Duration::ZERO)
                .await
                .expect("dial");
            let mut buf = Vec::new();
            encode_frame(&mut buf, &ToPeer::Fetch { tasks: vec![TaskId(1)] }).expect("encode");
            conn.link.writer.write_all(&buf).await.expect("ask");
            // Stopped: far longer than the patience.
            async_io::Timer::after(Duration::from_secs(3)).await;
            // Then all of the answer, or up to where the server closed the connection.
            let mut header = Vec::new();
            encode_frame(
                &mut header,
                &FromPeer::Data {
                    task: TaskId(1),
                    len: len as u64,
                },
            )
            .expect("encode");
            let whole = header.len() + len;
            let mut got = 0;
            let mut chunk = vec![0u8; 1 << 20];
            while got < whole {
                match conn.link.reader.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got - header.len().min(got)
        });
        // What the kernel buffers held when the server gave up, not the whole result.
        assert!(read < len, "read {read} of {len} bytes: the server waited for ever");
    }
}
