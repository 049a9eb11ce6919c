//! Reading a running command's output: stdout becomes the task's result, kept in memory up to
//! a threshold and moved to a file past it; of stderr only the last bytes are kept, for the
//! error (or for the transcript that `distd submit` asks for, which [`append`] puts after
//! stdout). Either costs the worker bounded memory, whatever the command writes.
//!
//! It owns the reading of the two pipes and the writing of the stdout file (a [`ResultFile`],
//! which deletes itself if the read is abandoned). It must never hold a whole stderr, hold more
//! than the threshold of stdout, zero a byte of a buffer twice (`read_to_end` re-zeroes the
//! spare capacity after every read: 99% of the time of a 1 GB stdout went to `memset`), or
//! write to a file on the executor's thread: past the threshold one blocking thread moves the
//! pipe's pages into the file with `splice(2)` (no copy through user space; a plain read and
//! write where the file system cannot splice), and gives up within [`ABANDON_CHECK`] once the
//! execution is dropped.

use super::store::ResultFile;
use crate::memory::MemoryPolicy;
use async_io::Async;
use futures_lite::{AsyncRead, AsyncReadExt};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How much of a failed command's stderr is kept in its error.
pub const STDERR_TAIL: usize = 2000;

/// The most of a command's stdout held in memory: up to this it is the result in memory, past
/// it the whole of it goes to a file. The smaller of 64 MiB and the largest result the worker
/// holds in memory at all ([`MemoryPolicy::largest_held_result`], 35% of `--memory-limit`):
/// a result above that would be written to disk by the store anyway, and past 64 MiB a file
/// costs little next to making the bytes (the page cache serves it back), while a worker
/// running several such commands at once keeps its memory bounded by its slots.
pub const STDOUT_IN_MEMORY_CAP: u64 = 64 << 20;

/// [`STDOUT_IN_MEMORY_CAP`] or less, under `policy` (see there).
pub fn stdout_in_memory_at_most(policy: &MemoryPolicy) -> u64 {
    policy
        .largest_held_result()
        .map_or(STDOUT_IN_MEMORY_CAP, |largest| largest.min(STDOUT_IN_MEMORY_CAP))
}

/// The first buffer of stdout; it doubles from there up to the threshold.
const FIRST_BUFFER: usize = 64 << 10;

/// The most moved into the stdout file per `splice(2)`: the pipe buffer asked for.
const SPLICE_CHUNK: usize = 1 << 20;

/// Each read and write where `splice(2)` is refused: small enough that the bytes are still in
/// the CPU's cache when written (1 MiB writes were slower than `cat`'s 128 KiB here).
const COPY_CHUNK: usize = 128 << 10;

/// How often the blocking thread writing a stdout file looks whether its execution was
/// dropped while the pipe is quiet (a killed command's descendants may hold it open).
pub const ABANDON_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// The pipe buffer asked for each output pipe: a fast writer then fills 1 MiB per wake of the
/// reader instead of 64 KiB (Linux's default; 1 MiB is the unprivileged maximum).
const PIPE_BUFFER: libc::c_int = SPLICE_CHUNK as libc::c_int;

/// Reads from the stderr pipe.
const STDERR_READ: usize = 64 << 10;

/// What a command's stdout became.
#[derive(Debug)]
pub enum Captured {
    Memory(Vec<u8>),
    /// Larger than the threshold: all of it in this file, to be handed to the store.
    File(ResultFile),
}

/// Asks for a larger pipe buffer; the default stays if the kernel refuses.
pub fn enlarge_pipe(pipe: &Async<File>) {
    // SAFETY: F_SETPIPE_SZ on a descriptor we own has no memory-safety preconditions; on a
    // descriptor that is not a pipe it fails with EBADF/EINVAL, which is ignored.
    unsafe {
        libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BUFFER);
    }
}

/// Reads all of `pipe`: into memory while it fits in `in_memory_at_most` bytes, else into a
/// file at `spill_path` (made only then).
pub async fn read_stdout(
    mut pipe: Async<File>,
    in_memory_at_most: u64,
    spill_path: impl FnOnce() -> PathBuf,
) -> io::Result<Captured> {
    let at_most = usize::try_from(in_memory_at_most).unwrap_or(usize::MAX).max(1);
    // `buf[..filled]` is output; the rest was zeroed once, when the buffer grew, and is read
    // into directly.
    let mut buf: Vec<u8> = Vec::new();
    let mut filled = 0;
    while filled < at_most {
        if filled == buf.len() {
            let grown = buf.len().saturating_mul(2).clamp(FIRST_BUFFER.min(at_most), at_most);
            // Exact: the threshold is a bound on memory, not a hint to round up.
            buf.reserve_exact(grown - buf.len());
            buf.resize(grown, 0);
        }
        let n = pipe.read(&mut buf[filled..]).await?;
        if n == 0 {
            buf.truncate(filled);
            // Gives back the unused tail: the store counts only the bytes.
            buf.shrink_to_fit();
            return Ok(Captured::Memory(buf));
        }
        filled += n;
    }
    // At the threshold: one more byte, and the result is a file.
    let mut more = vec![0u8; FIRST_BUFFER];
    let n = pipe.read(&mut more).await?;
    if n == 0 {
        return Ok(Captured::Memory(buf));
    }
    more.truncate(n);
    let pipe = pipe.into_inner()?;
    let out = ResultFile::new(spill_path());
    let abandoned = Abandoned::default();
    let flag = abandoned.0.clone();
    let out = blocking::unblock(move || spill(pipe, out, [buf, more], &flag)).await?;
    drop(abandoned);
    Ok(Captured::File(out))
}

/// Set when the execution reading a stdout is dropped, for its blocking thread to stop.
#[derive(Default)]
struct Abandoned(Arc<AtomicBool>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// On a blocking thread: writes `head` (what was read already) to `out`'s file, then moves
/// the rest of `pipe` (non-blocking) into it until the pipe ends. The file goes with `out`
/// on an error.
fn spill(pipe: File, mut out: ResultFile, head: [Vec<u8>; 2], abandoned: &AtomicBool) -> io::Result<ResultFile> {
    let named = |out: &ResultFile, e: io::Error| {
        io::Error::new(e.kind(), format!("writing its stdout to {}: {e}", out.path().display()))
    };
    let mut file = File::create(out.path()).map_err(|e| named(&out, e))?;
    for part in head {
        file.write_all(&part).map_err(|e| named(&out, e))?;
        out.wrote(part.len() as u64);
    }
    // Becomes a buffer for plain reads and writes if the file system cannot splice.
    let mut copy_buf: Option<Vec<u8>> = None;
    loop {
        let moved = match &mut copy_buf {
            None => splice(&pipe, &file),
            Some(buf) => copy(&pipe, &mut file, buf),
        };
        match moved {
            Ok(0) => return Ok(out),
            Ok(n) => out.wrote(n as u64),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if abandoned.load(Ordering::Relaxed) {
                    return Err(io::Error::other("abandoned"));
                }
                wait_readable(&pipe, ABANDON_CHECK)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if copy_buf.is_none() && e.raw_os_error() == Some(libc::EINVAL) => {
                copy_buf = Some(vec![0u8; COPY_CHUNK]);
            }
            Err(e) => return Err(named(&out, e)),
        }
    }
}

/// Moves up to [`SPLICE_CHUNK`] bytes from `pipe` to the end of `file` in the kernel.
fn splice(pipe: &File, file: &File) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (borrowed), and null
    // offsets make the kernel use (and advance) the file's own position.
    let n = unsafe {
        libc::splice(
            pipe.as_raw_fd(),
            std::ptr::null_mut(),
            file.as_raw_fd(),
            std::ptr::null_mut(),
            SPLICE_CHUNK,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One read from `pipe` and its write to `file`, where the file system cannot splice.
fn copy(mut pipe: &File, file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let n = pipe.read(buf)?;
    file.write_all(&buf[..n])?;
    Ok(n)
}

/// Waits until `pipe` has bytes or has ended, or `at_most` passed.
fn wait_readable(pipe: &File, at_most: std::time::Duration) -> io::Result<()> {
    let mut fd = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, borrowed for the call.
    let n = unsafe { libc::poll(&mut fd, 1, at_most.as_millis() as libc::c_int) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// The end of a stream of which only the last bytes were kept.
#[derive(Debug, PartialEq, Eq)]
pub struct Tail {
    /// The last bytes of the stream.
    pub bytes: Vec<u8>,
    /// How many bytes came before them and were not kept.
    pub dropped: u64,
}

/// Reads all of `pipe`, keeping only its last `keep` bytes, in a buffer of `keep` plus one
/// read.
pub async fn read_tail(pipe: &mut (impl AsyncRead + Unpin), keep: usize) -> io::Result<Tail> {
    let mut buf = vec![0u8; keep + STDERR_READ];
    let mut len = 0;
    let mut dropped = 0u64;
    loop {
        if len == buf.len() {
            buf.copy_within(len - keep..len, 0);
            dropped += (len - keep) as u64;
            len = keep;
        }
        let n = pipe.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    buf.truncate(len);
    let start = len.saturating_sub(keep);
    let bytes = buf.split_off(start);
    Ok(Tail {
        bytes,
        dropped: dropped + start as u64,
    })
}

/// `captured` with `more` after its bytes: in memory, or appended to its file (on a blocking
/// thread, as every write to a stdout file).
pub async fn append(captured: Captured, more: Vec<u8>) -> io::Result<Captured> {
    match captured {
        Captured::Memory(mut bytes) => {
            bytes.extend_from_slice(&more);
            Ok(Captured::Memory(bytes))
        }
        Captured::File(mut out) => blocking::unblock(move || {
            let mut file = std::fs::OpenOptions::new().append(true).open(out.path())?;
            file.write_all(&more)?;
            out.wrote(more.len() as u64);
            Ok(Captured::File(out))
        })
        .await
        .map_err(|e: io::Error| io::Error::new(e.kind(), format!("appending to its stdout file: {e}"))),
    }
}

/// The tail of stderr as text, from its first whole character: a cut through a character
/// would show as a replacement character.
pub fn tail_text(tail: &[u8]) -> String {
    let start = tail.iter().take(3).take_while(|&&b| b & 0xC0 == 0x80).count();
    String::from_utf8_lossy(&tail[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A pipe that hands out `data` at most `step` bytes per read.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// What `read_stdout` makes of `data` written into a real pipe `step` bytes at a time.
    fn capture(data: Vec<u8>, step: usize, at_most: u64, path: PathBuf) -> Captured {
        let (reader, mut writer) = std::io::pipe().expect("a pipe");
        let feeder = std::thread::spawn(move || {
            for part in data.chunks(step.max(1)) {
                writer.write_all(part).expect("the reader reads to the end");
            }
        });
        let pipe = Async::new(File::from(std::os::fd::OwnedFd::from(reader))).expect("a pollable pipe");
        let captured = futures_lite::future::block_on(read_stdout(pipe, at_most, || path)).expect("reads");
        feeder.join().expect("the feeder ends");
        captured
    }

    #[test]
    fn stdout_up_to_the_threshold_stays_in_memory_exactly() {
        let tmp = tempfile::tempdir().expect("temp dir");
        for (len, step) in [(0, 7), (1, 1), (100_000, 4096), (300_000, 300_000)] {
            let path = tmp.path().join(format!("out-{len}"));
            match capture(pattern(len), step, 300_000, path.clone()) {
                Captured::Memory(got) => {
                    assert!(got == pattern(len), "{len} bytes: wrong content");
                    assert_eq!(got.capacity(), got.len(), "no spare capacity held");
                }
                Captured::File(_) => panic!("{len} bytes went to a file"),
            }
            assert!(!path.exists(), "no file made for {len} bytes");
        }
    }

    #[test]
    fn stdout_past_the_threshold_is_all_in_its_file() {
        let tmp = tempfile::tempdir().expect("temp dir");
        // Over several splices, with writes that do not line up with them.
        let len = 3 * SPLICE_CHUNK + 12_345;
        let path = tmp.path().join("out");
        let Captured::File(file) = capture(pattern(len), 70_000, 100_000, path.clone()) else {
            panic!("{len} bytes stayed in memory past a threshold of 100,000");
        };
        assert_eq!(file.path(), path);
        let got = std::fs::read(&path).expect("the file");
        assert!(
            got == pattern(len),
            "{} bytes in the file, expected the {len} written",
            got.len()
        );
        drop(file);
        assert!(!path.exists(), "a file nobody took is deleted");
        // One byte over the threshold is a file too.
        let Captured::File(_) = capture(pattern(1001), 1001, 1000, tmp.path().join("one-over")) else {
            panic!("1001 bytes stayed in memory past a threshold of 1000");
        };
    }

    /// An execution dropped while its command still holds the pipe open (killed, timed
    /// out, its descendants alive): the thread writing the file stops and deletes it.
    #[test]
    fn an_abandoned_stdout_file_is_deleted_though_the_pipe_stays_open() {
        use futures_lite::FutureExt;
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("out");
        let (reader, mut writer) = std::io::pipe().expect("a pipe");
        writer.write_all(&pattern(5000)).expect("room in the pipe");
        let pipe = Async::new(File::from(std::os::fd::OwnedFd::from(reader))).expect("a pollable pipe");
        let read = read_stdout(pipe, 1000, || path.clone());
        let gave_up = async {
            async_io::Timer::after(std::time::Duration::from_millis(300)).await;
            Ok(path.exists())
        };
        let outcome = futures_lite::future::block_on(async { read.await.map(|_| false).map_err(|_| ()) }.or(gave_up));
        assert_eq!(
            outcome,
            Ok(true),
            "the pipe is open: the read is still writing its file"
        );
        let deadline = std::time::Instant::now() + 10 * ABANDON_CHECK;
        while path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(ABANDON_CHECK / 10);
        }
        assert!(!path.exists(), "the file of an abandoned read is deleted");
        drop(writer);
    }

    #[test]
    fn stderr_keeps_only_its_tail() {
        for (len, step, keep) in [
            (0, 10, 2000),
            (500, 10, 2000),
            (1_000_000, 65_536, 2000),
            (200_000, 333, 10),
        ] {
            let data = pattern(len);
            let mut pipe = Trickle {
                data: data.clone(),
                at: 0,
                step,
            };
            let tail = futures_lite::future::block_on(read_tail(&mut pipe, keep)).expect("reads");
            assert_eq!(
                tail.bytes,
                data[len.saturating_sub(keep)..],
                "{len} bytes, keeping {keep}"
            );
            assert_eq!(
                tail.dropped,
                len.saturating_sub(keep) as u64,
                "{len} bytes, keeping {keep}"
            );
        }
    }

    /// A transcript's tail goes after stdout whether stdout stayed in memory or is a file.
    #[test]
    fn appended_bytes_follow_stdout_in_memory_and_in_its_file() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let block_on = futures_lite::future::block_on;
        let Captured::Memory(got) =
            block_on(append(Captured::Memory(b"out".to_vec()), b"+tail".to_vec())).expect("appends")
        else {
            panic!("memory stays memory")
        };
        assert_eq!(got, b"out+tail");
        let len = 3 * 1000 + 17;
        let path = tmp.path().join("out");
        let file = capture(pattern(len), 500, 1000, path.clone());
        let Captured::File(_file) = block_on(append(file, b"+tail".to_vec())).expect("appends") else {
            panic!("a file stays a file")
        };
        let got = std::fs::read(&path).expect("the file");
        let mut want = pattern(len);
        want.extend_from_slice(b"+tail");
        assert!(got == want, "{} bytes in the file, expected {}", got.len(), want.len());
    }

    #[test]
    fn the_tail_text_starts_at_a_whole_character() {
        let text = "déjà vu\nlast line\n";
        let bytes = text.as_bytes();
        // Cut inside the two bytes of 'à'.
        let cut = text.find('à').expect("in the text") + 1;
        assert_eq!(tail_text(&bytes[cut..]), " vu\nlast line\n");
        assert_eq!(tail_text(bytes), text);
    }

    #[test]
    fn the_threshold_is_the_smaller_of_the_cap_and_the_largest_held_result() {
        assert_eq!(
            stdout_in_memory_at_most(&MemoryPolicy::unlimited()),
            STDOUT_IN_MEMORY_CAP
        );
        assert_eq!(stdout_in_memory_at_most(&MemoryPolicy::new(1000)), 350);
        assert_eq!(
            stdout_in_memory_at_most(&MemoryPolicy::new(64 << 30)),
            STDOUT_IN_MEMORY_CAP
        );
    }
}
