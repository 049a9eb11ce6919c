//! Length-prefixed frames: a `u32` little-endian length, then that many bytes of postcard.
//!
//! A frame longer than [`MAX_FRAME_LEN`] is refused before any byte of it is buffered. Raw
//! payloads (result bytes) may follow a frame; they are read straight into their own buffer
//! and never framed, so a large result is neither capped nor copied through the frame buffer.

use futures_lite::{AsyncRead, AsyncReadExt};
use serde::{de::DeserializeOwned, Serialize};
use std::io;

/// The largest frame accepted or sent. Result bytes travel as raw payloads, not in frames.
pub const MAX_FRAME_LEN: usize = 64 * 1024 * 1024;

/// How much is read from the socket at once when no large frame is pending.
const READ_CHUNK: usize = 64 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("connection closed in the middle of a frame ({got} of {expected} bytes)")]
    Truncated { got: usize, expected: usize },
    #[error("frame of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
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

/// Reads frames (and raw payloads) from one connection, through one reused buffer.
pub struct FrameReader<R> {
    /// The socket's read half.
    inner: R,
    /// Bytes read from the socket; `buf[pos..end]` is not consumed yet.
    buf: Vec<u8>,
    /// Where the unread bytes in `buf` start.
    pos: usize,
    /// Where they end; `buf[end..]` is free space for the next read.
    end: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: vec![0; READ_CHUNK],
            pos: 0,
            end: 0,
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
            // Move the unread bytes to the front, and grow (zeroing once) if still short.
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            if want > self.buf.len() {
                self.buf.resize(want.max(READ_CHUNK), 0);
            }
        }
        while self.unread() < want {
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
        match decoded {
            Ok((msg, [])) => Ok(Some(msg)),
            Ok((_, rest)) => Err(FrameError::TrailingBytes(rest.len())),
            Err(e) => Err(FrameError::Malformed(e)),
        }
    }

    /// Reads a raw payload of exactly `len` bytes that followed a frame.
    pub async fn read_payload(&mut self, len: usize) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        out.try_reserve_exact(len)
            .map_err(|_| FrameError::PayloadTooLarge(len))?;
        let take = self.unread().min(len);
        out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
        self.pos += take;
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        // Grown (and zeroed) a chunk at a time just ahead of the reads, so a large payload is
        // written once by the zeroing and once by the socket while still in cache.
        const STEP: usize = 1 << 20;
        while out.len() < len {
            let filled = out.len();
            out.resize((filled + STEP).min(len), 0);
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
}
