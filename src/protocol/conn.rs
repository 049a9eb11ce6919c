//! One writer per connection: it drains every queued message into one buffer and writes it
//! with one call, so bursts are batched without any fixed delay.

use super::frame::{encode_frame, FrameError};
use super::secure::{Closer, LinkWriter};
use futures_lite::{AsyncWrite, AsyncWriteExt};
use serde::Serialize;
use std::sync::Arc;

/// Shared, immutable result bytes: stored once, served to any number of peers without copies.
pub type Data = Arc<Vec<u8>>;

/// Spawns the connection's one writer ([`write_loop`]) on a link's `writer`; when `rx`
/// closes it flushes, closes the writer (TLS says close_notify) and shuts the socket, which
/// also ends the connection's reader.
pub fn spawn_writer<M: Serialize + Send + 'static>(
    rx: async_channel::Receiver<M>,
    writer: LinkWriter,
    closer: Closer,
) -> smol::Task<()> {
    spawn_writer_then(rx, writer, closer, |e| log::debug!("write failed: {e}"))
}

/// [`spawn_writer`], calling `failed` with the reason when a write fails (a message over the
/// frame limit, a broken socket) before the link is closed.
pub fn spawn_writer_then<M: Serialize + Send + 'static>(
    rx: async_channel::Receiver<M>,
    mut writer: LinkWriter,
    closer: Closer,
    failed: impl FnOnce(FrameError) + Send + 'static,
) -> smol::Task<()> {
    crate::rt::spawn(async move {
        match write_loop(rx, &mut writer).await {
            Ok(()) => {
                // Bounded: a peer that reads nothing must not keep this writer.
                let _ = crate::rt::within(CLOSE_PATIENCE, writer.close()).await;
            }
            Err(e) => failed(e),
        }
        closer.close();
    })
}

/// How long a writer that is done waits for its last bytes and the close to go out.
const CLOSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

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
