//! `distd submit`: one command run as a task, as if it ran here. Its stdin is this process's
//! stdin (unless a terminal, or `--no-stdin`), its stdout and stderr are printed to ours,
//! and we exit with its status.
//!
//! How: stdin is scattered to the cluster in parts of at most [`STDIN_PART`] bytes as it is
//! read (so its size is bounded by no frame), and the command task takes the parts as its
//! inputs and its stdin, in order. The task asks for a transcript
//! ([`CommandOutput::Transcript`]): its result is the command's whole stdout, the tail of its
//! stderr and how it ended, whether it failed or not, which this module prints and turns into
//! the exit status. It never prints the command's stderr twice: the failure line says only
//! how the command ended.

use super::args::SubmitArgs;
use super::commands::CliError;
use super::config;
use crate::client::{AsyncClient, ClientError, KeyStatus};
use crate::exit;
use crate::protocol::{CommandOutput, TaskDesc, TaskError, TaskSpec, Transcript, TranscriptError, TRANSCRIPT_STDERR};
use futures_lite::AsyncReadExt;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// The most bytes of stdin scattered at once: like a submission's parts, well under the
/// frame cap, so that other clients' messages pass between them.
const STDIN_PART: usize = 4 << 20;

/// How long it waits for a worker before it says so (once): as long as the scheduler's own
/// notice, long enough for a worker that restarts to come back unnoticed.
use crate::scheduler::core::NO_WORKER_NOTICE_AFTER;

/// What only `distd submit` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("cannot read stdin: {0}")]
    Stdin(#[source] std::io::Error),
    #[error("task {key:?} did not return the command's transcript: {source}")]
    Transcript { key: String, source: TranscriptError },
}

pub fn submit(args: SubmitArgs) -> Result<u8, CliError> {
    let setup = config::submit(&args)?;
    let forward_stdin = !args.no_stdin && !std::io::stdin().is_terminal();
    crate::rt::block_on(async {
        let client = AsyncClient::connect(&setup.address).await?;
        let key = setup.key.clone().unwrap_or_else(|| client.unique_key("submit"));
        let stdin_keys = if forward_stdin {
            send_stdin(&client).await?
        } else {
            Vec::new()
        };
        let mut command = setup.command;
        command.stdin = stdin_keys.clone();
        command.output = CommandOutput::Transcript;
        let task = TaskDesc {
            key: key.clone(),
            spec: TaskSpec::Command(command),
            deps: stdin_keys.clone(),
            options: Default::default(),
        };
        client.submit(vec![task]).await?;
        if !stdin_keys.is_empty() {
            // The parts are the task's inputs now: they go once it has run.
            client.release(&stdin_keys)?;
        }
        client.wait(std::slice::from_ref(&key)).await?;
        if let Some(KeyStatus::Erred(e)) = client.status(&key) {
            eprintln!("distd: task {key:?} failed: {e}");
            return Ok(exit_status(&e));
        }
        let out = client.gather(std::slice::from_ref(&key)).await?;
        client.release(std::slice::from_ref(&key))?;
        let transcript = Transcript::parse(&out[0]).map_err(|source| SubmitError::Transcript {
            key: key.clone(),
            source,
        })?;
        show(&transcript);
        Ok(match transcript.ending.error() {
            None => 0,
            Some(e) => {
                eprintln!("distd: task {key:?} failed: {e}");
                exit_status(&e)
            }
        })
    })
}

/// The exit status of a `distd submit` whose task failed with `e`.
fn exit_status(e: &TaskError) -> u8 {
    match e {
        TaskError::Exit { status, .. } => (*status).clamp(1, 255) as u8,
        TaskError::Signal { signal, .. } => (i32::from(exit::SIGNAL_BASE) + signal).clamp(1, 255) as u8,
        TaskError::Timeout { .. } => exit::TIMEOUT,
        TaskError::Spawn { .. } => exit::CANNOT_START,
        _ => exit::FAILURE,
    }
}

/// Prints the command's stdout to stdout and its stderr to stderr. Printing stops quietly
/// when a stream is closed (`distd submit ... | head`), as the command's own would.
fn show(t: &Transcript<'_>) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(t.stdout).and_then(|()| stdout.flush());
    let mut stderr = std::io::stderr().lock();
    let mut kept = t.stderr;
    if t.stderr_dropped > 0 {
        let _ = writeln!(
            stderr,
            "distd: the command wrote {} more bytes to stderr before these (only the last {} are kept)",
            t.stderr_dropped,
            crate::units::format_bytes(TRANSCRIPT_STDERR as u64)
        );
        // The cut may have gone through a character: start at a whole one.
        let partial = kept.iter().take(3).take_while(|&&b| b & 0xC0 == 0x80).count();
        kept = &kept[partial..];
    }
    let _ = stderr.write_all(kept).and_then(|()| stderr.flush());
}

/// Reads this process's stdin to its end, scattering it to the cluster in parts as it comes;
/// returns the parts' keys in order (none for an empty stdin, which the command then reads as
/// /dev/null).
async fn send_stdin(client: &AsyncClient) -> Result<Vec<String>, CliError> {
    let mut stdin = blocking::Unblock::new(std::io::stdin());
    let mut keys = Vec::new();
    loop {
        let mut part = Vec::new();
        (&mut stdin)
            .take(STDIN_PART as u64)
            .read_to_end(&mut part)
            .await
            .map_err(SubmitError::Stdin)?;
        if part.is_empty() {
            return Ok(keys);
        }
        let last = part.len() < STDIN_PART;
        if keys.is_empty() {
            wait_for_a_worker(client).await?;
        }
        let key = client.unique_key("submit-stdin");
        client.scatter(vec![(key.clone(), part)]).await?;
        keys.push(key);
        if last {
            return Ok(keys);
        }
    }
}

/// Waits until the cluster has a worker to hold scattered data (the task itself would wait
/// for one; a scatter would fail), saying so once if that takes long.
async fn wait_for_a_worker(client: &AsyncClient) -> Result<(), ClientError> {
    if client.wait_for_workers(1, NO_WORKER_NOTICE_AFTER).await? == 0 {
        log::warn!(
            "no worker has been connected for {} s; the command's stdin waits for one",
            NO_WORKER_NOTICE_AFTER.as_secs()
        );
        client.wait_for_workers(1, Duration::MAX).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_way_a_command_fails_has_its_exit_status() {
        let exit = |status| TaskError::Exit {
            status,
            stderr: String::new(),
        };
        assert_eq!(exit_status(&exit(3)), 3);
        assert_eq!(exit_status(&exit(255)), 255);
        // Out of a byte's range, still a failure.
        assert_eq!(exit_status(&exit(-1)), 1);
        let signal = TaskError::Signal {
            signal: 9,
            stderr: String::new(),
        };
        assert_eq!(exit_status(&signal), 137);
        let timeout = TaskError::Timeout {
            after_ms: 300,
            stderr: String::new(),
        };
        assert_eq!(exit_status(&timeout), exit::TIMEOUT);
        let spawn = TaskError::Spawn {
            program: "ls".into(),
            reason: "working directory /x: No such file or directory".into(),
        };
        assert_eq!(exit_status(&spawn), exit::CANNOT_START);
        assert_eq!(exit_status(&TaskError::Cancelled), exit::FAILURE);
    }
}
