//! One writer per connection: it drains every queued message into one buffer and writes it
//! with one call, so bursts are batched without any fixed delay.

use super::frame::{encode_frame, FrameError};
use futures_lite::{AsyncWrite, AsyncWriteExt};
use serde::Serialize;
use std::sync::Arc;

/// Shared, immutable result bytes: stored once, served to any number of peers without copies.
pub type Data = Arc<Vec<u8>>;

/// Spawns the connection's one writer ([`write_loop`]); when `rx` closes it flushes and shuts
/// the socket, which also ends the connection's reader.
pub fn spawn_writer<M: Serialize + Send + 'static>(
    rx: async_channel::Receiver<M>,
    stream: smol::net::TcpStream,
) -> smol::Task<()> {
    crate::rt::spawn(async move {
        if let Err(e) = write_loop(rx, stream.clone()).await {
            log::debug!("write failed: {e}");
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
    })
}

/// Writes everything that arrives on `rx` to `w` until the channel closes (Ok) or the socket
/// fails (Err). Messages already queued when the writer wakes go out in one write.
pub async fn write_loop<M: Serialize, W: AsyncWrite + Unpin>(
    rx: async_channel::Receiver<M>,
    mut w: W,
) -> Result<(), FrameError> {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Ok(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            encode_frame(&mut buf, &item)?;
            if buf.len() >= 1024 * 1024 {
                w.write_all(&buf).await?;
                buf.clear();
            }
            next = rx.try_recv().ok();
        }
        if !buf.is_empty() {
            w.write_all(&buf).await?;
            buf.clear();
        }
        w.flush().await?;
        if buf.capacity() > 4 * 1024 * 1024 {
            buf = Vec::with_capacity(64 * 1024);
        }
    }
    let _ = w.flush().await;
    Ok(())
}
