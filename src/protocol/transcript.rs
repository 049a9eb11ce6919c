//! The layout of a command's transcript: the result of a command task run with
//! [`CommandOutput::Transcript`](super::CommandOutput::Transcript) (what `distd submit` runs).
//!
//! A transcript is the command's whole stdout, then the kept tail of its stderr, then a
//! fixed [`TRAILER_LEN`]-byte trailer: the stderr length, how many earlier stderr bytes were
//! dropped, how the command ended, and a magic. Stdout comes first and whole, so a worker
//! whose stdout already streamed into a file (past its in-memory threshold) only appends the
//! rest to that file; the trailer is last, so a reader finds it without a scan.
//!
//! This module owns the layout: the worker builds the bytes that follow stdout with
//! [`transcript_tail`] and the client reads them with [`Transcript::parse`]; nothing else
//! knows it. It must never copy stdout: parsing borrows from the result.

use super::TaskError;

/// The most of a command's stderr a transcript keeps: its last 1 MiB. `distd submit --help`
/// says so. Bounded because the worker holds it in memory while the command runs.
pub const TRANSCRIPT_STDERR: usize = 1 << 20;

/// The trailer's length: stderr length, dropped bytes, ending kind, ending value, magic.
pub const TRAILER_LEN: usize = 8 + 8 + 4 + 4 + MAGIC.len();

/// Ends every transcript, so that a result that is not one is told apart.
const MAGIC: [u8; 8] = *b"distdTX1";

/// How a command ended: the part of its transcript that decides an exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this status (0: success).
    Exited(i32),
    /// It was killed by this signal.
    Signalled(i32),
}

impl Ending {
    /// The task error this ending is when it is a failure, without any stderr (the
    /// transcript carries that whole): `None` for an exit with status 0.
    pub fn error(self) -> Option<TaskError> {
        self.error_with(String::new())
    }

    /// The task error this ending is when it is a failure, carrying `stderr`.
    pub fn error_with(self, stderr: String) -> Option<TaskError> {
        match self {
            Ending::Exited(0) => None,
            Ending::Exited(status) => Some(TaskError::Exit { status, stderr }),
            Ending::Signalled(signal) => Some(TaskError::Signal { signal, stderr }),
        }
    }

    fn encode(self) -> (u32, i32) {
        match self {
            Ending::Exited(status) => (0, status),
            Ending::Signalled(signal) => (1, signal),
        }
    }

    fn decode(kind: u32, value: i32) -> Option<Ending> {
        match kind {
            0 => Some(Ending::Exited(value)),
            1 => Some(Ending::Signalled(value)),
            _ => None,
        }
    }
}

/// A transcript read back from a task's result; every slice borrows from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript<'a> {
    /// All of the command's stdout.
    pub stdout: &'a [u8],
    /// The last (at most [`TRANSCRIPT_STDERR`]) bytes of its stderr.
    pub stderr: &'a [u8],
    /// How many bytes of stderr came before those and were not kept.
    pub stderr_dropped: u64,
    pub ending: Ending,
}

/// Why a result is not a transcript.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranscriptError {
    #[error("the result ({len} bytes) does not end with a command transcript's trailer")]
    NoTrailer { len: usize },
    #[error("the transcript's trailer is damaged: {what}")]
    Damaged { what: &'static str },
}

/// The bytes that follow a command's stdout in its transcript: `stderr` (its kept tail), then
/// the trailer.
pub fn transcript_tail(stderr: &[u8], stderr_dropped: u64, ending: Ending) -> Vec<u8> {
    let (kind, value) = ending.encode();
    let mut tail = Vec::with_capacity(stderr.len() + TRAILER_LEN);
    tail.extend_from_slice(stderr);
    tail.extend_from_slice(&(stderr.len() as u64).to_le_bytes());
    tail.extend_from_slice(&stderr_dropped.to_le_bytes());
    tail.extend_from_slice(&kind.to_le_bytes());
    tail.extend_from_slice(&value.to_le_bytes());
    tail.extend_from_slice(&MAGIC);
    tail
}

impl<'a> Transcript<'a> {
    /// Reads the transcript that `result` is.
    pub fn parse(result: &'a [u8]) -> Result<Transcript<'a>, TranscriptError> {
        let len = result.len();
        if len < TRAILER_LEN || result[len - MAGIC.len()..] != MAGIC {
            return Err(TranscriptError::NoTrailer { len });
        }
        let (body, trailer) = result.split_at(len - TRAILER_LEN);
        let field = |at: usize| -> [u8; 8] { trailer[at..at + 8].try_into().expect("8 bytes of the trailer") };
        let half = |at: usize| -> [u8; 4] { trailer[at..at + 4].try_into().expect("4 bytes of the trailer") };
        let stderr_len = u64::from_le_bytes(field(0));
        let stderr_dropped = u64::from_le_bytes(field(8));
        let ending = Ending::decode(u32::from_le_bytes(half(16)), i32::from_le_bytes(half(20))).ok_or(
            TranscriptError::Damaged {
                what: "an unknown kind of ending",
            },
        )?;
        let stderr_len =
            usize::try_from(stderr_len)
                .ok()
                .filter(|&n| n <= body.len())
                .ok_or(TranscriptError::Damaged {
                    what: "a stderr longer than the transcript",
                })?;
        let (stdout, stderr) = body.split_at(body.len() - stderr_len);
        Ok(Transcript {
            stdout,
            stderr,
            stderr_dropped,
            ending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(stdout: &[u8], stderr: &[u8], dropped: u64, ending: Ending) -> Vec<u8> {
        let mut bytes = stdout.to_vec();
        bytes.extend(transcript_tail(stderr, dropped, ending));
        bytes
    }

    #[test]
    fn both_streams_and_the_ending_come_back_as_written() {
        for (stdout, stderr, dropped, ending) in [
            (&b"out\n"[..], &b"err\n"[..], 0, Ending::Exited(3)),
            (b"", b"", 0, Ending::Exited(0)),
            (b"only stdout", b"", 0, Ending::Signalled(9)),
            (b"", b"only stderr", 12_345, Ending::Exited(-1)),
            // Bytes that look like a trailer inside stdout do not confuse the reader.
            (
                &transcript(b"x", b"y", 1, Ending::Exited(1))[..],
                b"z",
                0,
                Ending::Exited(0),
            ),
        ] {
            let bytes = transcript(stdout, stderr, dropped, ending);
            assert_eq!(
                Transcript::parse(&bytes),
                Ok(Transcript {
                    stdout,
                    stderr,
                    stderr_dropped: dropped,
                    ending
                })
            );
        }
    }

    #[test]
    fn a_result_that_is_not_a_transcript_is_refused() {
        assert_eq!(
            Transcript::parse(b"plain stdout"),
            Err(TranscriptError::NoTrailer { len: 12 })
        );
        assert_eq!(Transcript::parse(b""), Err(TranscriptError::NoTrailer { len: 0 }));
        let mut bytes = transcript(b"out", b"err", 0, Ending::Exited(0));
        let at = bytes.len() - TRAILER_LEN;
        bytes[at..at + 8].copy_from_slice(&100u64.to_le_bytes());
        assert!(matches!(
            Transcript::parse(&bytes),
            Err(TranscriptError::Damaged { .. })
        ));
        let mut bytes = transcript(b"out", b"err", 0, Ending::Exited(0));
        let at = bytes.len() - TRAILER_LEN + 16;
        bytes[at..at + 4].copy_from_slice(&7u32.to_le_bytes());
        assert!(matches!(
            Transcript::parse(&bytes),
            Err(TranscriptError::Damaged { .. })
        ));
    }

    #[test]
    fn only_failures_are_errors() {
        assert_eq!(Ending::Exited(0).error(), None);
        assert_eq!(
            Ending::Exited(3).error().map(|e| e.to_string()).as_deref(),
            Some("command exited with status 3")
        );
        assert_eq!(
            Ending::Signalled(9).error().map(|e| e.to_string()).as_deref(),
            Some("command killed by signal 9")
        );
    }
}
