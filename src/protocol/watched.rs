//! A progress timeout for one direction of a connection: a read or a write that waits
//! `patience` without moving a byte fails with `TimedOut`. It bounds silence, not length: a
//! large transfer that keeps moving is never cut off.
//!
//! Used where a peer may stop without closing anything (a stopped process: the kernel keeps
//! its connections open and accepts what fits in its buffers), by the fetching side of result
//! transfer ([`super::PeerClient`]) and by the serving side (the worker's peer port). It never
//! decides what a timeout means: the caller does.

use async_io::Timer;
use futures_lite::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The error inside the `TimedOut` of a [`Watched`] stream, so that a timeout of ours is told
/// from the kernel's own `ETIMEDOUT` ([`is_silence`]).
#[derive(Debug, thiserror::Error)]
#[error("no byte for {:.1} s", .0.as_secs_f64())]
pub struct Silence(pub Duration);

/// Whether `e` is the timeout of a [`Watched`] stream.
pub fn is_silence(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut && e.get_ref().is_some_and(|inner| inner.is::<Silence>())
}

/// A stream whose reads (or writes: one direction per `Watched`) fail once they have waited
/// `patience` without a byte. Its one timer is moved only when it fires: bytes that move just
/// note the time, so a large transfer costs no timer per read (each registration costs the
/// reactor a wake-up).
pub struct Watched<S> {
    inner: S,
    patience: Duration,
    /// Since when an operation has waited without a byte moving; `None` after progress.
    waiting_since: Option<Instant>,
    timer: Option<Timer>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, patience: Duration) -> Watched<S> {
        Watched {
            inner,
            patience,
            waiting_since: None,
            timer: None,
        }
    }

    /// Forgets any earlier wait, for an operation that starts now: a wait left by one that
    /// was dropped does not count against the next.
    pub fn restart(&mut self) {
        self.waiting_since = None;
    }

    /// The inner operation is ready (with bytes, an end or an error): that is progress.
    fn moved<T>(&mut self, ready: T) -> Poll<T> {
        self.waiting_since = None;
        Poll::Ready(ready)
    }

    /// The inner operation waits: `Pending` until it has waited `patience`, then the error.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = *self.waiting_since.get_or_insert_with(Instant::now) + self.patience;
        loop {
            let timer = self.timer.get_or_insert_with(|| Timer::at(deadline));
            if Pin::new(&mut *timer).poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                self.timer = None;
                self.waiting_since = None;
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, Silence(self.patience)));
            }
            // It was set for an earlier wait: bytes moved since.
            timer.set_at(deadline);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(read) => this.moved(read),
            Poll::Pending => this.wait(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(written) => this.moved(written),
            Poll::Pending => this.wait(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(flushed) => this.moved(flushed),
            Poll::Pending => this.wait(cx).map(Err),
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_close(cx) {
            Poll::Ready(closed) => this.moved(closed),
            Poll::Pending => this.wait(cx).map(Err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};

    fn pair() -> (smol::net::TcpStream, smol::net::TcpStream) {
        smol::block_on(async {
            let l = smol::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            let a = smol::net::TcpStream::connect(l.local_addr().expect("address"));
            let (a, b) = futures_lite::future::zip(a, l.accept()).await;
            (a.expect("connect"), b.expect("accept").0)
        })
    }

    #[test]
    fn a_read_that_waits_too_long_fails_and_one_that_moves_does_not() {
        let (a, mut b) = pair();
        let mut w = Watched::new(a, Duration::from_millis(200));
        smol::block_on(async {
            let mut buf = [0u8; 4];
            // Bytes every 50 ms for 600 ms: three times the patience, never silent for long.
            let feed = async {
                for i in 0..12u8 {
                    async_io::Timer::after(Duration::from_millis(50)).await;
                    b.write_all(&[i]).await.expect("write");
                }
                futures_lite::future::pending::<io::Result<()>>().await
            };
            let mut got = 0;
            let read = async {
                while got < 12 {
                    got += w.read(&mut buf[..1]).await?;
                }
                Ok(())
            };
            read.or(feed).await.expect("a moving read is not cut off");
            let err = w.read(&mut buf).await.expect_err("then silence");
            assert!(is_silence(&err), "{err}");
            // Held again later, it waits afresh.
            w.restart();
            b.write_all(b"more").await.expect("write");
            assert_eq!(w.read(&mut buf).await.expect("bytes waiting"), 4);
        });
    }

    #[test]
    fn a_write_the_peer_never_reads_fails() {
        let (a, _b) = pair();
        let mut w = Watched::new(a, Duration::from_millis(200));
        // Far more than the kernel buffers of both ends hold.
        let big = vec![0u8; 64 << 20];
        let err = smol::block_on(w.write_all(&big)).expect_err("nobody reads");
        assert!(is_silence(&err), "{err}");
    }
}
