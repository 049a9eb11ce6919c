//! Result transfer between processes: the server side of a worker's peer port, and the
//! fetching side used by workers (for task inputs) and clients (for gather).
//!
//! A fetch is one `ToPeer::Fetch` frame; each result comes back as a `FromPeer::Data` header
//! followed by the raw bytes, written straight from the store without copying.

use super::store::Store;
use crate::protocol::{
    accept_handshake, connect_handshake, encode_frame, Data, FrameReader, FromPeer, Role, TaskId, ToPeer,
};
use futures_lite::AsyncWriteExt;
use smol::net::{TcpListener, TcpStream};
use smol::Task;
use std::sync::Arc;

/// Serves `Fetch` requests from peers and clients until dropped.
pub async fn serve_peers(listener: TcpListener, store: Arc<Store>) {
    let mut conns: Vec<Task<()>> = Vec::new();
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("peer port: accept failed: {e}");
                async_io::Timer::after(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        conns.retain(|t| !t.is_finished());
        let store = store.clone();
        conns.push(crate::rt::spawn(async move {
            if let Err(e) = serve_one(stream, store).await {
                log::warn!("peer connection from {from} closed: {e}");
            }
        }));
    }
}

async fn serve_one(mut stream: TcpStream, store: Arc<Store>) -> Result<(), String> {
    stream.set_nodelay(true).ok();
    accept_handshake(&mut stream, Role::Worker, &[Role::Peer, Role::Client])
        .await
        .map_err(|e| e.to_string())?;
    let mut writer = stream.clone();
    let mut reader = FrameReader::new(stream);
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(req) = reader.next::<ToPeer>().await.map_err(|e| e.to_string())? {
        let ToPeer::Fetch { tasks } = req;
        // One result at a time: a spilled result is read back only when its turn comes, and
        // large ones go straight from the store to the socket.
        for t in tasks {
            let data = store.get_async(t).await.unwrap_or_else(|e| {
                log::warn!("cannot serve {t}: {e}");
                None
            });
            let write = |e: std::io::Error| e.to_string();
            match data {
                None => encode_frame(&mut buf, &FromPeer::Missing { task: t }).map_err(|e| e.to_string())?,
                Some(d) => {
                    let header = FromPeer::Data {
                        task: t,
                        len: d.len() as u64,
                    };
                    encode_frame(&mut buf, &header).map_err(|e| e.to_string())?;
                    if d.len() < 64 * 1024 {
                        buf.extend_from_slice(&d);
                    } else {
                        writer.write_all(&buf).await.map_err(write)?;
                        buf.clear();
                        writer.write_all(&d).await.map_err(write)?;
                    }
                }
            }
            if buf.len() >= 1024 * 1024 {
                writer.write_all(&buf).await.map_err(write)?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            writer.write_all(&buf).await.map_err(|e| e.to_string())?;
            buf.clear();
        }
    }
    Ok(())
}

/// A connection to one worker's peer port.
pub struct PeerClient {
    reader: FrameReader<TcpStream>,
    writer: TcpStream,
    /// Reused for every request's encoding.
    buf: Vec<u8>,
}

impl PeerClient {
    pub async fn connect(addr: &str, role: Role) -> Result<PeerClient, String> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream.set_nodelay(true).ok();
        connect_handshake(&mut stream, role)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        Ok(PeerClient {
            reader: FrameReader::new(stream.clone()),
            writer: stream,
            buf: Vec::new(),
        })
    }

    /// Fetches results; `None` where the peer does not hold one.
    pub async fn fetch(&mut self, tasks: &[TaskId]) -> Result<Vec<Option<Data>>, String> {
        self.buf.clear();
        encode_frame(&mut self.buf, &ToPeer::Fetch { tasks: tasks.to_vec() }).map_err(|e| e.to_string())?;
        self.writer.write_all(&self.buf).await.map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(tasks.len());
        for &want in tasks {
            let reply = self
                .reader
                .next::<FromPeer>()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("peer closed the connection")?;
            match reply {
                FromPeer::Data { task, len } if task == want => {
                    let len = usize::try_from(len).map_err(|_| format!("result of {len} bytes is too large"))?;
                    out.push(Some(Arc::new(
                        self.reader.read_payload(len).await.map_err(|e| e.to_string())?,
                    )));
                }
                FromPeer::Missing { task } if task == want => out.push(None),
                other => return Err(format!("peer answered out of order: {other:?} for {want}")),
            }
        }
        Ok(out)
    }
}
