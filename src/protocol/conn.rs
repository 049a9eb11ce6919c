//! One writer per connection: it drains every queued message into one buffer and writes it
//! with one call, so bursts are batched without any fixed delay.

use super::frame::{encode_frame, FrameError};
use futures_lite::{AsyncWrite, AsyncWriteExt};
use serde::Serialize;
use std::sync::Arc;

/// Shared, immutable result bytes: stored once, sent to any number of peers without copies.
pub type Data = Arc<Vec<u8>>;

/// One item for a connection's writer.
#[derive(Debug)]
pub enum Outbound<M> {
    Msg(M),
    /// A message followed by raw payload bytes, written straight from the shared buffer.
    WithPayload(M, Data),
}

impl<M> From<M> for Outbound<M> {
    fn from(m: M) -> Self {
        Outbound::Msg(m)
    }
}

/// Writes everything that arrives on `rx` to `w` until the channel closes (Ok) or the socket
/// fails (Err). Messages already queued when the writer wakes go out in one write.
pub async fn write_loop<M: Serialize, W: AsyncWrite + Unpin>(
    rx: async_channel::Receiver<Outbound<M>>,
    mut w: W,
) -> Result<(), FrameError> {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Ok(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outbound::Msg(m) => encode_frame(&mut buf, &m)?,
                Outbound::WithPayload(m, data) => {
                    encode_frame(&mut buf, &m)?;
                    if data.len() < 64 * 1024 {
                        buf.extend_from_slice(&data);
                    } else {
                        w.write_all(&buf).await?;
                        buf.clear();
                        w.write_all(&data).await?;
                    }
                }
            }
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
