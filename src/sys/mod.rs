//! What distd asks the operating system directly: this host's name, a process's resident
//! memory, the machine's memory, a little randomness, the one way to start a child process
//! that dies with its parent (with a signal it may catch to clean up first), cleaning up
//! after children, and stopping when the launcher's pipe on stdin closes. Linux only (`/proc`,
//! `prctl`); the questions answer "unknown" (empty, 0, None) rather than failing.
//!
//! The one place that reads `/proc` and the cgroup tree. It decides nothing: callers say
//! what to spawn or kill. (Task commands start through `worker::spawn`'s vfork path, which
//! needs the same death signal inside its child; it calls [`set_death_signal`].)
//!
//! Process trees and orphan sweeps are in [`procs`]; task cgroups and the guardian that
//! kills them when this process dies are in [`cgroup`].

pub mod cgroup;
mod procs;

pub use procs::{kill_children_except, tree_rss};

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::process::CommandExt;

/// This machine's host name, or "localhost" when it has none.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Resident memory of process `pid` (this process when `None`), from `/proc/PID/statm`.
pub fn rss(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/statm"),
        None => "/proc/self/statm".to_string(),
    };
    let statm = std::fs::read_to_string(path).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(0) as u64)
}

/// Total memory of this machine, from `/proc/meminfo`.
pub fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// A random number, different in every process and call (not for cryptography).
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Writes `bytes` to `path` in one step (a temporary file beside it, synced, then renamed
/// over it), with permissions `mode` from the first byte on: a reader sees the old file or
/// the whole new one, and a private file is never readable by others, even briefly.
pub fn write_replacing(path: &std::path::Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Whether a process `pid` exists (of any user).
pub fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This process's parent's pid (it changes when the parent dies: the child is reparented).
pub fn parent_pid() -> u32 {
    std::os::unix::process::parent_id()
}

/// Gives memory the allocator holds but does not use back to the system, so a process's RSS
/// shows what it freed (after a spill, say). A no-op where the allocator cannot.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// In a freshly forked child: asks the kernel to SIGKILL this process when the thread that
/// forked it exits, so no child outlives its parent however the parent dies.
/// Async-signal-safe (one system call), as code between fork and exec must be.
pub fn set_death_signal() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The signal a tethered child ([`spawn_tethered`]) gets when its parent dies. Its default
/// action ends the child, as SIGKILL would; unlike SIGKILL a child may catch it
/// ([`watch_parent_death`]) to clean up first (a worker removes its scratch folder) and then
/// end as the signal would have ended it ([`die_of_parent_death`]).
pub const PARENT_DEATH_SIGNAL: i32 = libc::SIGHUP;

/// Starts `cmd` as a child tied to this process: it leads its own process group (so a
/// terminal's Ctrl-C reaches only us, and we can signal the group), and it gets
/// [`PARENT_DEATH_SIGNAL`] when the thread that spawned it exits, however this process dies.
/// Its stdin is `input` and then its end (empty without it); its stdout and stderr are
/// pipes. The input must fit a pipe's buffer (64 KiB): it is written before this returns.
///
/// The death signal fires when the spawning *thread* exits: spawn from a thread that lives as
/// long as the children should.
pub fn spawn_tethered(mut cmd: std::process::Command, input: Option<Vec<u8>>) -> io::Result<async_process::Child> {
    cmd.process_group(0);
    let parent = std::process::id();
    // SAFETY: the hook only makes system calls, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // Its default action, even when this process ignores it (started by nohup): until
            // the child catches it, the signal must end it.
            libc::signal(PARENT_DEATH_SIGNAL, libc::SIG_DFL);
            if libc::prctl(libc::PR_SET_PDEATHSIG, PARENT_DEATH_SIGNAL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                // The parent died before the death signal was armed.
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut cmd = async_process::Command::from(cmd);
    cmd.stdin(match input {
        Some(_) => std::process::Stdio::piped(),
        None => std::process::Stdio::null(),
    })
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        // Small, into an empty pipe: written at once (this never waits), then closed.
        futures_lite::future::block_on(futures_lite::AsyncWriteExt::write_all(&mut stdin, &bytes))?;
    }
    Ok(child)
}

/// In a child started by [`spawn_tethered`] (its death signal is [`PARENT_DEATH_SIGNAL`]):
/// catches that signal from now on and returns the stream that yields when it comes, so the
/// child can stop cleanly before it ends with [`die_of_parent_death`]. `None` in any other
/// process, whose handling of the signal is left alone. Until this is called the signal's
/// default action ends the child, so a parent that dies early still takes it along.
pub fn watch_parent_death() -> io::Result<Option<async_signal::Signals>> {
    let mut armed: libc::c_int = 0;
    // SAFETY: PR_GET_PDEATHSIG writes one int through the pointer, which points to one.
    let rc = unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut armed as *mut libc::c_int, 0, 0, 0) };
    if rc != 0 || armed != PARENT_DEATH_SIGNAL {
        return Ok(None);
    }
    async_signal::Signals::new([async_signal::Signal::Hup]).map(Some)
}

/// Ends this process as [`PARENT_DEATH_SIGNAL`]'s default action does (its parent sees it
/// killed by that signal), once a child that caught it has cleaned up.
pub fn die_of_parent_death() -> ! {
    // SAFETY: these calls take plain integers and a signal set on the stack.
    unsafe {
        libc::signal(PARENT_DEATH_SIGNAL, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, PARENT_DEATH_SIGNAL);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(PARENT_DEATH_SIGNAL);
    }
    // Not reached: the default action ends the process.
    std::process::exit(128 + PARENT_DEATH_SIGNAL)
}

/// Sends `signal` to the process group `pgid` (a tethered child's pid). A group that is gone
/// is no error.
pub fn signal_group(pgid: u32, signal: i32) {
    // SAFETY: killpg has no memory-safety preconditions; a stale id at worst fails (ESRCH).
    unsafe {
        libc::killpg(pgid as libc::pid_t, signal);
    }
}

/// Makes this process the reaper of its orphaned descendants: they are re-parented to it,
/// not to init, so [`kill_children_except`] can find them.
pub fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// The environment variable that makes a distd (started remotely by `distd ssh`) stop when
/// its stdin closes. Set by the launcher; removed before a nanny starts its workers.
pub const WATCH_STDIN_ENV: &str = "DISTD_WATCH_STDIN";

/// When stdin closes (the launcher is gone, or asked us to stop), stops this process as if
/// by SIGTERM, and exits with `exit_code` for good if that takes longer than 20 s.
pub fn stop_when_stdin_closes(exit_code: u8) {
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        loop {
            match std::io::Read::read(&mut std::io::stdin(), &mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        log::info!("stdin closed: the launching distd ssh is gone; stopping");
        // SAFETY: sending a signal to ourselves has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
        std::thread::sleep(std::time::Duration::from_secs(20));
        std::process::exit(exit_code as i32);
    });
}
