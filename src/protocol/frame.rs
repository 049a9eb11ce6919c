//! Length-prefixed frames: a `u32` little-endian length, then that many bytes of postcard.
//!
//! A frame longer than [`MAX_FRAME_LEN`] is refused before any byte of it is buffered. Raw
//! payloads (result bytes) may follow a frame; they are read straight into their own buffer
//! and never framed, so a large result is neither capped nor copied through the frame buffer.
//!
//! Memory for undecoded input is bounded by what arrived, never by what a length promises:
//! a reader's buffer starts at [`READ_CHUNK`] and grows only when it is full and the frame
//! needs more, at most doubling and never past the frame, so one connection holds at most
//! `4 + MAX_FRAME_LEN` bytes, and a peer that declares 64 MiB and sends one byte costs
//! 64 KiB. Growth beyond the first chunk is charged to one budget for the whole process
//! ([`UNDECODED_LIMIT`], counted in [`READ_CHUNK`] permits) and given back when the frame is
//! decoded (the buffer shrinks back) or the reader is dropped. A reader that would exceed the
//! budget waits for room: it stops reading, so its peer is held back by TCP, and an honest
//! big frame goes through once others are decoded. Only a budget held for
//! [`BUDGET_PATIENCE`] by frames that do not complete (peers that stopped halfway) fails the
//! waiting frame, with [`FrameError::OverBudget`] naming the limit. This module never
//! decides anything about the messages themselves.

use futures_lite::{AsyncRead, AsyncReadExt, FutureExt};
use serde::{de::DeserializeOwned, Serialize};
use smol::lock::Semaphore;
use std::io;
use std::time::{Duration, Instant};

/// The largest frame accepted or sent. Result bytes travel as raw payloads, not in frames.
pub const MAX_FRAME_LEN: usize = 64 * 1024 * 1024;

/// The most a raw payload's buffer takes before its bytes arrive: a frame's worth, so that
/// every payload up to that size is read into one allocation, and the length a peer declares
/// beyond it is only believed as far as its bytes come.
const PAYLOAD_RESERVE: usize = MAX_FRAME_LEN;

/// How much is read from the socket at once, and each reader's buffer at rest: the part of
/// it that is never charged to the budget.
const READ_CHUNK: usize = 64 * 1024;

/// The most bytes the frame buffers of all the connections of one process may hold together
/// beyond their first [`READ_CHUNK`] each, before their frames are decoded: four frames of
/// the largest size at once.
pub const UNDECODED_LIMIT: usize = 4 * MAX_FRAME_LEN;

/// How long a reader waits for room under [`UNDECODED_LIMIT`] before it gives up its frame.
/// Frames from peers that keep sending finish in well under a second on any network a
/// cluster runs on; only peers that stopped in the middle of big frames hold room this long.
pub const BUDGET_PATIENCE: Duration = Duration::from_secs(30);

/// A budget of bytes for undecoded frames, shared by readers, in permits of [`READ_CHUNK`].
pub(crate) struct Budget {
    permits: Semaphore,
    limit: usize,
    patience: Duration,
}

impl Budget {
    pub(crate) const fn new(limit: usize, patience: Duration) -> Budget {
        Budget {
            permits: Semaphore::new(limit / READ_CHUNK),
            limit,
            patience,
        }
    }

    /// Bytes charged to this budget now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.limit - self.permits.available_permits() * READ_CHUNK
    }
}

/// The process's one budget, shared by every [`FrameReader::new`].
static UNDECODED: Budget = Budget::new(UNDECODED_LIMIT, BUDGET_PATIENCE);

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("connection closed in the middle of a frame ({got} of {expected} bytes)")]
    Truncated { got: usize, expected: usize },
    #[error("frame of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// Frames still arriving on other connections held the whole budget for too long.
    #[error(
        "frame of {len} bytes not read: frames still arriving on other connections held the \
         limit of {limit} bytes for undecoded input for {} s", waited.as_secs()
    )]
    OverBudget { len: usize, limit: usize, waited: Duration },
    #[error("malformed frame: {0}")]
    Malformed(#[source] postcard::Error),
    #[error("malformed frame: {0} unexpected bytes after the message")]
    TrailingBytes(usize),
    #[error("malformed frame: cannot allocate a payload of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("message could not be encoded: {0}")]
    Encode(#[source] postcard::Error),
}

/// Appends one frame holding `msg` to `buf`, reusing its capacity.
pub fn encode_frame<T: Serialize>(buf: &mut Vec<u8>, msg: &T) -> Result<(), FrameError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(msg, taken).map_err(FrameError::Encode)?;
    let len = buf.len() - start - 4;
    if len > MAX_FRAME_LEN {
        buf.truncate(start);
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Reads frames (and raw payloads) from one connection, through one reused buffer that
/// grows with the bytes that arrived (see the module doc).
pub struct FrameReader<R> {
    /// The socket's read half.
    inner: R,
    /// Bytes read from the socket; `buf[pos..end]` is not consumed yet.
    buf: Vec<u8>,
    /// Where the unread bytes in `buf` start.
    pos: usize,
    /// Where they end; `buf[end..]` is free space for the next read.
    end: usize,
    /// Where `buf`'s growth beyond [`READ_CHUNK`] is charged.
    budget: &'static Budget,
    /// Permits of `budget` this reader holds: `buf.len() <= READ_CHUNK * (1 + charged)`.
    charged: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader::with_budget(inner, &UNDECODED)
    }

    fn with_budget(inner: R, budget: &'static Budget) -> Self {
        FrameReader {
            inner,
            buf: vec![0; READ_CHUNK],
            pos: 0,
            end: 0,
            budget,
            charged: 0,
        }
    }

    /// The read half underneath, for the settings of a wrapper around the socket (the peer
    /// client's progress timeout).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn unread(&self) -> usize {
        self.end - self.pos
    }

    /// Reads from the socket until at least `want` bytes are unread. Returns false on a clean
    /// end of stream with nothing unread.
    async fn fill(&mut self, want: usize) -> Result<bool, FrameError> {
        if self.pos + want > self.buf.len() {
            // Move the unread bytes to the front.
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        while self.unread() < want {
            if self.end == self.buf.len() {
                // Full and the frame needs more: double, but never past the frame, so the
                // buffer is at most twice what arrived.
                self.grow_to((self.buf.len() * 2).min(self.pos + want)).await?;
            }
            let n = self.inner.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                if self.unread() == 0 {
                    return Ok(false);
                }
                return Err(FrameError::Truncated {
                    got: self.unread(),
                    expected: want,
                });
            }
            self.end += n;
        }
        Ok(true)
    }

    /// Grows the buffer to `len` bytes once the budget has room for it.
    async fn grow_to(&mut self, len: usize) -> Result<(), FrameError> {
        let needed = (len - READ_CHUNK).div_ceil(READ_CHUNK);
        let mut deadline = None;
        while self.charged < needed {
            // A permit that is free is taken at once: the timer is never polled, so never
            // registered, unless the reader has to wait.
            let budget = self.budget;
            let at = *deadline.get_or_insert_with(|| Instant::now() + budget.patience);
            let acquired = async { Some(budget.permits.acquire().await) }
                .or(async {
                    async_io::Timer::at(at).await;
                    None
                })
                .await;
            match acquired {
                Some(permit) => {
                    permit.forget();
                    self.charged += 1;
                }
                None => {
                    return Err(FrameError::OverBudget {
                        len: len.saturating_sub(4),
                        limit: budget.limit,
                        waited: budget.patience,
                    })
                }
            }
        }
        self.buf.resize(len, 0);
        Ok(())
    }

    /// Once a frame is decoded: a buffer that grew for it goes back to its size at rest, and
    /// its charge back to the budget, unless more than that is already unread.
    fn shrink(&mut self) {
        if self.charged == 0 || self.unread() > READ_CHUNK {
            return;
        }
        let mut rest = vec![0; READ_CHUNK];
        rest[..self.unread()].copy_from_slice(&self.buf[self.pos..self.end]);
        self.end -= self.pos;
        self.pos = 0;
        self.buf = rest;
        self.budget.permits.add_permits(self.charged);
        self.charged = 0;
    }

    /// The next message, or `None` when the peer closed the connection between frames.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        if !self.fill(4).await? {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.buf[self.pos..self.pos + 4]);
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        match self.fill(4 + len).await {
            Ok(true) => {}
            Ok(false) => unreachable!("fill(4 + len) after fill(4) has unread bytes"),
            Err(FrameError::Truncated { got, .. }) => {
                return Err(FrameError::Truncated {
                    got: got.saturating_sub(4),
                    expected: len,
                })
            }
            Err(e) => return Err(e),
        }
        let body = &self.buf[self.pos + 4..self.pos + 4 + len];
        let decoded = postcard::take_from_bytes::<T>(body);
        self.pos += 4 + len;
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        let decoded = match decoded {
            Ok((msg, [])) => Ok(Some(msg)),
            Ok((_, rest)) => Err(FrameError::TrailingBytes(rest.len())),
            Err(e) => Err(FrameError::Malformed(e)),
        };
        self.shrink();
        decoded
    }

    /// Reads a raw payload of exactly `len` bytes that followed a frame. Its buffer is
    /// reserved whole up to [`PAYLOAD_RESERVE`]; beyond that it doubles as the bytes arrive,
    /// so a peer that declares a terabyte and sends nothing costs no more than that.
    pub async fn read_payload(&mut self, len: usize) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        out.try_reserve_exact(len.min(PAYLOAD_RESERVE))
            .map_err(|_| FrameError::PayloadTooLarge(len))?;
        let take = self.unread().min(len);
        out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
        self.pos += take;
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        self.shrink();
        // Grown (and zeroed) a chunk at a time just ahead of the reads, so a large payload is
        // written once by the zeroing and once by the socket while still in cache.
        const STEP: usize = 1 << 20;
        while out.len() < len {
            let filled = out.len();
            let next = (filled + STEP).min(len);
            if next > out.capacity() {
                // A large block is moved by remapping, not copied, when it grows.
                let room = (out.capacity() * 2).clamp(next, len);
                out.try_reserve_exact(room - filled)
                    .map_err(|_| FrameError::PayloadTooLarge(len))?;
            }
            out.resize(next, 0);
            let mut at = filled;
            while at < out.len() {
                let n = self.inner.read(&mut out[at..]).await?;
                if n == 0 {
                    return Err(FrameError::Truncated { got: at, expected: len });
                }
                at += n;
            }
        }
        Ok(out)
    }
}

impl<R> Drop for FrameReader<R> {
    fn drop(&mut self) {
        self.budget.permits.add_permits(self.charged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        A(u32),
        B { text: String },
    }

    fn read_all(bytes: Vec<u8>) -> Vec<Result<Option<Msg>, String>> {
        smol::block_on(async {
            let mut r = FrameReader::new(futures_lite::io::Cursor::new(bytes));
            let mut out = Vec::new();
            loop {
                let m = r.next::<Msg>().await.map_err(|e| e.to_string());
                let stop = !matches!(m, Ok(Some(_)));
                out.push(m);
                if stop {
                    return out;
                }
            }
        })
    }

    #[test]
    fn frames_round_trip_in_one_buffer() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &Msg::A(7)).unwrap();
        encode_frame(&mut buf, &Msg::B { text: "hi".into() }).unwrap();
        let got = read_all(buf);
        assert_eq!(
            got,
            vec![Ok(Some(Msg::A(7))), Ok(Some(Msg::B { text: "hi".into() })), Ok(None)]
        );
    }

    #[test]
    fn truncated_frame_is_an_error_not_eof() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &Msg::B { text: "hello".into() }).unwrap();
        buf.truncate(buf.len() - 2);
        let got = read_all(buf);
        assert!(got[0].as_ref().unwrap_err().contains("closed in the middle"), "{got:?}");
    }

    #[test]
    fn oversized_length_is_refused_before_reading_it() {
        let buf = (MAX_FRAME_LEN as u32 + 1).to_le_bytes().to_vec();
        let got = read_all(buf);
        assert!(
            got[0].as_ref().unwrap_err().contains("larger than the limit"),
            "{got:?}"
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let mut buf = 3u32.to_le_bytes().to_vec();
        buf.extend_from_slice(&[0xff, 0xff, 0xff]);
        let got = read_all(buf);
        assert!(got[0].as_ref().unwrap_err().contains("malformed"), "{got:?}");
    }

    #[test]
    fn payload_follows_frame() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &Msg::A(3)).unwrap();
        buf.extend_from_slice(b"abc");
        encode_frame(&mut buf, &Msg::A(4)).unwrap();
        smol::block_on(async {
            let mut r = FrameReader::new(futures_lite::io::Cursor::new(buf));
            assert_eq!(r.next::<Msg>().await.unwrap(), Some(Msg::A(3)));
            assert_eq!(r.read_payload(3).await.unwrap(), b"abc");
            assert_eq!(r.next::<Msg>().await.unwrap(), Some(Msg::A(4)));
        });
    }

    /// A payload's declared length was reserved whole before any of its bytes came, so a
    /// peer could make a reader ask the allocator for any size (seen while writing the fuzz
    /// targets).
    #[test]
    fn a_declared_payload_length_is_believed_only_as_far_as_its_bytes_come() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &Msg::A(1)).unwrap();
        buf.extend_from_slice(&[7; 10]);
        smol::block_on(async {
            let mut r = FrameReader::new(futures_lite::io::Cursor::new(buf));
            r.next::<Msg>().await.unwrap();
            let err = r.read_payload(1 << 50).await.unwrap_err();
            assert!(matches!(err, FrameError::Truncated { got: 10, .. }), "{err}");
        });
        // A payload bigger than the reservation arrives whole.
        let payload: Vec<u8> = (0..PAYLOAD_RESERVE + 3 * (1 << 20) + 5).map(|i| i as u8).collect();
        let mut buf = Vec::new();
        encode_frame(&mut buf, &Msg::A(2)).unwrap();
        buf.extend_from_slice(&payload);
        smol::block_on(async {
            let mut r = FrameReader::new(futures_lite::io::Cursor::new(buf));
            r.next::<Msg>().await.unwrap();
            assert!(r.read_payload(payload.len()).await.unwrap() == payload);
        });
    }

    /// A reader over bytes that arrive in pieces, each when the test sends it.
    struct Trickle {
        rx: std::pin::Pin<Box<async_channel::Receiver<Vec<u8>>>>,
        pending: Vec<u8>,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            out: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            use futures_lite::Stream;
            use std::task::Poll;
            let this = self.get_mut();
            while this.pending.is_empty() {
                match this.rx.as_mut().poll_next(cx) {
                    Poll::Ready(Some(bytes)) => this.pending = bytes,
                    Poll::Ready(None) => return Poll::Ready(Ok(0)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let n = out.len().min(this.pending.len());
            out[..n].copy_from_slice(&this.pending[..n]);
            this.pending.drain(..n);
            Poll::Ready(Ok(n))
        }
    }

    fn trickle() -> (async_channel::Sender<Vec<u8>>, Trickle) {
        let (tx, rx) = async_channel::unbounded();
        (
            tx,
            Trickle {
                rx: Box::pin(rx),
                pending: Vec::new(),
            },
        )
    }

    fn leaked_budget(limit: usize, patience: Duration) -> &'static Budget {
        Box::leak(Box::new(Budget::new(limit, patience)))
    }

    /// One frame of `len` bytes of body (a `Msg::B` with a text of the right length).
    fn frame_of(len: usize) -> Vec<u8> {
        // A tag byte and the text's length (a varint of 1 to 5 bytes) come before the text.
        for head in 2..=6 {
            let mut buf = Vec::new();
            let fits = encode_frame(
                &mut buf,
                &Msg::B {
                    text: "x".repeat(len - head),
                },
            )
            .is_ok();
            if fits && buf.len() == 4 + len {
                return buf;
            }
        }
        panic!("no text makes a frame of {len} bytes")
    }

    /// Runs `fut` until it finishes or `ticks` passes of the executor pass without it.
    fn poll_a_while<T>(fut: &mut std::pin::Pin<Box<impl std::future::Future<Output = T>>>) -> Option<T> {
        smol::block_on(async {
            async { Some(fut.as_mut().await) }
                .or(async {
                    async_io::Timer::after(Duration::from_millis(50)).await;
                    None
                })
                .await
        })
    }

    /// `r`'s next message, as a future the test polls a while at a time: whether one came, or
    /// the error's words. The reader lives (and holds its charge) as long as the future.
    fn next_message(
        mut r: FrameReader<Trickle>,
    ) -> std::pin::Pin<Box<impl std::future::Future<Output = Result<bool, String>>>> {
        Box::pin(async move { r.next::<Msg>().await.map(|m| m.is_some()).map_err(|e| e.to_string()) })
    }

    #[test]
    fn a_declared_length_takes_no_memory_until_its_bytes_arrive() {
        let budget = leaked_budget(UNDECODED_LIMIT, BUDGET_PATIENCE);
        let (tx, src) = trickle();
        let mut r = FrameReader::with_budget(src, budget);
        let frame = frame_of(MAX_FRAME_LEN);
        // A call of `next` cut short leaves what arrived in the buffer for the next call.
        let poll_next = |r: &mut FrameReader<Trickle>| poll_a_while(&mut Box::pin(r.next::<Msg>()));
        tx.try_send(frame[..5].to_vec()).unwrap();
        assert!(poll_next(&mut r).is_none(), "the frame is not complete");
        assert_eq!(r.buf.len(), READ_CHUNK, "64 MiB declared, 1 byte sent: no growth");
        assert_eq!(budget.used(), 0);
        // A megabyte arrives: the buffer grows with it, not to the declared length.
        tx.try_send(frame[5..5 + (1 << 20)].to_vec()).unwrap();
        assert!(poll_next(&mut r).is_none());
        assert!(
            r.buf.len() > 1 << 20 && r.buf.len() <= 2 << 20,
            "{} bytes held",
            r.buf.len()
        );
        assert!(budget.used() + READ_CHUNK >= r.buf.len(), "growth is charged");
        tx.try_send(frame[5 + (1 << 20)..].to_vec()).unwrap();
        let got = poll_next(&mut r).expect("the whole frame arrived");
        assert!(matches!(got, Ok(Some(Msg::B { .. }))));
        // Decoded: the buffer is back at rest and the budget whole.
        assert_eq!(r.buf.len(), READ_CHUNK);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_reader_over_the_budget_waits_for_room_then_reads() {
        // Room for one frame of 1 MiB beyond the first chunk, not two.
        let budget = leaked_budget(3 * (1 << 19), BUDGET_PATIENCE);
        let (tx_a, src_a) = trickle();
        let (tx_b, src_b) = trickle();
        let a = FrameReader::with_budget(src_a, budget);
        let b = FrameReader::with_budget(src_b, budget);
        let frame = frame_of(1 << 20);
        tx_a.try_send(frame[..frame.len() - 1].to_vec()).unwrap();
        tx_b.try_send(frame[..frame.len() - 1].to_vec()).unwrap();
        let mut next_a = next_message(a);
        let mut next_b = next_message(b);
        assert!(poll_a_while(&mut next_a).is_none());
        assert!(poll_a_while(&mut next_b).is_none(), "b waits for room");
        assert!(budget.used() <= budget.limit);
        // a's last byte: a is decoded and gives its room back, and b goes on.
        tx_a.try_send(frame[frame.len() - 1..].to_vec()).unwrap();
        assert_eq!(poll_a_while(&mut next_a), Some(Ok(true)));
        tx_b.try_send(frame[frame.len() - 1..].to_vec()).unwrap();
        assert_eq!(poll_a_while(&mut next_b), Some(Ok(true)));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_budget_held_too_long_fails_the_waiting_frame_naming_the_limit() {
        let budget = leaked_budget(1 << 20, Duration::from_millis(200));
        let (tx_a, src_a) = trickle();
        let (tx_b, src_b) = trickle();
        let a = FrameReader::with_budget(src_a, budget);
        let mut b = FrameReader::with_budget(src_b, budget);
        let frame = frame_of(1 << 20);
        // a stops halfway through, holding the whole budget.
        tx_a.try_send(frame[..frame.len() - 1].to_vec()).unwrap();
        tx_b.try_send(frame[..frame.len() - 1].to_vec()).unwrap();
        let mut next_a = next_message(a);
        assert!(poll_a_while(&mut next_a).is_none());
        let err = smol::block_on(b.next::<Msg>()).expect_err("no room within the patience");
        assert!(
            matches!(err, FrameError::OverBudget { limit, .. } if limit == 1 << 20),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("limit of {} bytes", 1 << 20)),
            "{err}"
        );
        drop(next_a);
        drop(b);
        assert_eq!(budget.used(), 0, "dropped readers give their room back");
        drop((tx_a, tx_b));
    }
}
