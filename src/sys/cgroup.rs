//! Task cgroups (cgroup v2), where the machine lets this process make them: every task
//! command runs in a group of its own, so everything it starts (in the background, under
//! `setsid`, through a double fork) can be found and killed at once with `cgroup.kill`,
//! which the kernel applies to every member and every process forked meanwhile.
//!
//! The layout, under this process's own cgroup in the cgroup2 mount:
//! ```text
//! distd-PID/                    this process's (the owner): guarded, swept once PID is dead
//!   slot-N-I/                   a nanny's slot I (one per worker child), killed when it dies
//!     wPID-K/tJ                 a worker's task groups, pooled (see TaskGroups)
//!   wPID-K/tJ                   an in-process or bare worker's task groups
//! ```
//! A worker under a nanny makes its groups in the directory named by [`CGROUP_ENV`], the
//! nanny's slot. The owner's directory is watched by a **guardian**: a small process, forked
//! once, that waits for the owner's end (the pipe it holds reaches end of file, however the
//! owner died, SIGKILL included) and then kills and removes the whole directory. It is
//! double-forked (not the owner's child), in its own session and at `/`, so it outlives the
//! owner by the moment its cleanup takes and no signal to the owner's group reaches it.
//!
//! Without a writable cgroup2 hierarchy with `cgroup.kill` (kernel 5.14), or with
//! [`NO_CGROUPS_ENV`] set, everything here answers "none" and callers fall back to process
//! groups and the subreaper sweep. It decides nothing: callers say what to make and kill.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Set by a nanny for its worker child: the cgroup directory to make task groups in.
pub const CGROUP_ENV: &str = "DISTD_CGROUP";

/// Set (to anything) to make no cgroup at all: the fallback, for machines where cgroups
/// misbehave and for its tests.
pub const NO_CGROUPS_ENV: &str = "DISTD_NO_CGROUPS";

/// How long a removal waits for the killed processes of a group to be gone.
const EMPTY_PATIENCE: Duration = Duration::from_secs(2);

/// This process's own cgroup directory, `distd-PID` under its cgroup, made and guarded on
/// first use; None where cgroups cannot be used.
pub fn owner_dir() -> Option<&'static Path> {
    static OWNER: OnceLock<Option<PathBuf>> = OnceLock::new();
    OWNER
        .get_or_init(|| {
            let base = base()?;
            sweep_stale(&base);
            let dir = base.join(format!("distd-{}", std::process::id()));
            if let Err(e) = std::fs::create_dir(&dir) {
                if e.kind() != io::ErrorKind::AlreadyExists {
                    log::debug!("no task cgroups: cannot create {}: {e}", dir.display());
                    return None;
                }
            }
            if !dir.join("cgroup.kill").exists() {
                log::debug!(
                    "no task cgroups: {} has no cgroup.kill (kernel before 5.14)",
                    dir.display()
                );
                let _ = std::fs::remove_dir(&dir);
                return None;
            }
            if let Err(e) = start_guardian(&dir) {
                log::warn!(
                    "task cgroups are not guarded ({e}): a SIGKILL of this process leaves its tasks' processes running"
                );
            }
            Some(dir)
        })
        .as_deref()
}

/// The cgroup2 directory of this process, if cgroups are to be used.
fn base() -> Option<PathBuf> {
    if std::env::var_os(NO_CGROUPS_ENV).is_some() {
        return None;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    base_from(&mountinfo, &cgroups)
}

/// The cgroup2 mount point joined with this process's v2 path (`0::PATH`), as
/// `/proc/self/mountinfo` and `/proc/self/cgroup` say.
fn base_from(mountinfo: &str, cgroups: &str) -> Option<PathBuf> {
    let (root, mount) = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut f = left.split_whitespace().skip(3);
        Some((f.next()?.to_string(), f.next()?.to_string()))
    })?;
    let own = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    // A mount of a subtree (a container's view) shows paths below its root.
    let rel = own.strip_prefix(root.trim_end_matches('/')).unwrap_or(own);
    Some(Path::new(&mount).join(rel.trim_start_matches('/')))
}

/// Kills and removes the directories of owners that are gone: their guardian did not run (it
/// was killed too), or this machine was not cleaned after a crash.
fn sweep_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("distd-"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            log::info!("removing the task cgroups of distd process {pid}, which is gone");
            remove_tree(&entry.path());
        }
    }
}

/// SIGKILLs every process in `dir` and in the groups below it.
pub fn kill(dir: &Path) {
    if let Err(e) = std::fs::write(dir.join("cgroup.kill"), b"1") {
        if e.kind() != io::ErrorKind::NotFound {
            log::warn!("cannot kill the processes of cgroup {}: {e}", dir.display());
        }
    }
}

/// The pids of every process in `dir` and the groups below it.
pub fn members(dir: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default();
    for sub in subgroups(dir) {
        out.extend(members(&sub));
    }
    out
}

fn subgroups(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Whether `dir` or a group below it still holds a process, from `cgroup.events`.
fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// Kills everything in `dir` and waits (up to [`EMPTY_PATIENCE`]) until it is gone; true
/// when it is.
fn kill_and_wait(dir: &Path) -> bool {
    kill(dir);
    let start = Instant::now();
    while populated(dir) {
        if start.elapsed() > EMPTY_PATIENCE {
            log::warn!("cgroup {} still has processes after SIGKILL", dir.display());
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// Kills everything in `dir` and removes it with the groups below it.
pub fn remove_tree(dir: &Path) {
    if kill_and_wait(dir) {
        remove_empty_tree(dir);
    }
}

fn remove_empty_tree(dir: &Path) {
    for sub in subgroups(dir) {
        remove_empty_tree(&sub);
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        if e.kind() != io::ErrorKind::NotFound {
            log::debug!("cannot remove cgroup {}: {e}", dir.display());
        }
    }
}

/// Makes the group `name` under `parent` (or finds it there).
pub fn make(parent: &Path, name: &str) -> io::Result<PathBuf> {
    let dir = parent.join(name);
    match std::fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(dir),
        Err(e) => Err(e),
    }
}

/// One worker's task groups: `wPID-K` with one group `tJ` per running command. Groups are
/// pooled: a command's group is killed when the command ends and then serves the next one,
/// so a task costs two writes (the child joins; the end kills), not a `mkdir` and a `rmdir`.
#[derive(Debug)]
pub struct TaskGroups {
    dir: PathBuf,
    pool: Mutex<Vec<TaskGroup>>,
    next: AtomicU64,
}

/// One task's cgroup, with the files a spawn and a kill write, opened once.
#[derive(Debug)]
pub struct TaskGroup {
    /// The child writes its pid here between its clone and its exec.
    procs: File,
    /// Writing "1" kills every member.
    kill: File,
}

impl TaskGroup {
    /// The descriptor of `cgroup.procs`, for the spawned child to join the group.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// SIGKILLs every process in the group.
    pub fn kill(&self) {
        let _ = (&self.kill).write(b"1");
    }
}

impl TaskGroups {
    /// Task groups for one worker: in the nanny's slot ([`CGROUP_ENV`]) when there is one,
    /// else in this process's own directory. None without cgroups.
    pub fn new() -> Option<Arc<TaskGroups>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = match std::env::var_os(CGROUP_ENV) {
            Some(dir) if std::env::var_os(NO_CGROUPS_ENV).is_none() && Path::new(&dir).is_dir() => PathBuf::from(dir),
            _ => owner_dir()?.to_path_buf(),
        };
        let name = format!("w{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        match make(&parent, &name) {
            Ok(dir) => Some(Arc::new(TaskGroups {
                dir,
                pool: Mutex::new(Vec::new()),
                next: AtomicU64::new(0),
            })),
            Err(e) => {
                log::warn!("no task cgroups: cannot create {}: {e}", parent.join(name).display());
                None
            }
        }
    }

    /// The worker's directory: its task groups are below it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A group for the next command: a pooled one, or a new one.
    pub fn take(&self) -> io::Result<TaskGroup> {
        if let Some(g) = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(g);
        }
        let dir = make(&self.dir, &format!("t{}", self.next.fetch_add(1, Ordering::Relaxed)))?;
        let open = |file: &str| std::fs::OpenOptions::new().write(true).open(dir.join(file));
        Ok(TaskGroup {
            procs: open("cgroup.procs")?,
            kill: open("cgroup.kill")?,
        })
    }

    /// Kills what is left in `group` (its command ended) and keeps it for the next one.
    pub fn put_back(&self, group: TaskGroup) {
        group.kill();
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(group);
    }
}

impl Drop for TaskGroups {
    fn drop(&mut self) {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
        remove_tree(&self.dir);
    }
}

/// The guardian's pid, once started: a subreaper above it may inherit it, and must not
/// sweep it away as an orphan.
static GUARDIAN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The guardian of this process's directory, if one runs.
pub fn guardian_pid() -> Option<u32> {
    Some(GUARDIAN.load(Ordering::Relaxed)).filter(|p| *p != 0)
}

/// Forks the guardian of `dir`: it waits for this process to end, then kills and removes
/// `dir`. The write end of its pipe stays open (close-on-exec) until this process ends.
fn start_guardian(dir: &Path) -> io::Result<()> {
    let (read, write) = pipe()?;
    let (report_read, report_write) = pipe()?;
    let dir = dir.to_path_buf();
    // SAFETY: the first child only forks again, reports the second's pid and exits; the
    // second (the guardian) makes system calls until its pipe ends, which is after this
    // process is gone, and only then uses the allocator (glibc's and musl's fork leave malloc
    // usable in the child).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above; every call here is async-signal-safe.
        unsafe {
            libc::setsid();
            let guardian_pid = libc::fork();
            if guardian_pid != 0 {
                let bytes = guardian_pid.to_ne_bytes();
                libc::write(report_write.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
                libc::_exit(0);
            }
            guardian(read.as_raw_fd(), &dir)
        }
    }
    drop(report_write);
    let mut bytes = [0u8; 4];
    // SAFETY: read into a 4-byte buffer; the first child writes 4 bytes, then exits.
    let n = unsafe { libc::read(report_read.as_raw_fd(), bytes.as_mut_ptr().cast(), bytes.len()) };
    // SAFETY: waitpid on the first child, which exits at once.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    let guardian = i32::from_ne_bytes(bytes);
    if n != 4 || guardian <= 0 {
        return Err(io::Error::other("the guardian did not start"));
    }
    GUARDIAN.store(guardian as u32, Ordering::Relaxed);
    drop(read);
    // The write end lives as long as this process: its end is the guardian's signal.
    std::mem::forget(write);
    Ok(())
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The guardian's life: wait for end of file on `pipe`, then kill and remove `dir`.
///
/// # Safety
/// Only in the forked guardian process.
unsafe fn guardian(pipe: RawFd, dir: &Path) -> ! {
    // A lock the logger held in another thread at the fork would never be released here.
    log::set_max_level(log::LevelFilter::Off);
    // Its command line is its owner's (it never execs): its name in `ps -o comm` says what it is.
    libc::prctl(libc::PR_SET_NAME, c"distd-guardian".as_ptr());
    libc::chdir(c"/".as_ptr());
    for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE, libc::SIGQUIT] {
        libc::signal(sig, libc::SIG_IGN);
    }
    // Nothing of the owner's stays open here but the pipe: no socket, no terminal.
    for fd in 0..pipe {
        libc::close(fd);
    }
    libc::syscall(libc::SYS_close_range, pipe as u32 + 1, u32::MAX, 0u32);
    let mut byte = 0u8;
    loop {
        let n = libc::read(pipe, (&mut byte as *mut u8).cast(), 1);
        if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
            break;
        }
    }
    remove_tree(dir);
    libc::_exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_the_cgroup2_mount_joined_with_our_v2_path() {
        let mountinfo = "25 30 0:22 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                         31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let cgroups = "4:memory:/x\n0::/user.slice/a.scope\n";
        assert_eq!(
            base_from(mountinfo, cgroups),
            Some(PathBuf::from("/sys/fs/cgroup/unified/user.slice/a.scope"))
        );
        assert_eq!(
            base_from(mountinfo, "0::/\n"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        // A container's mount of its own subtree.
        let sub = "40 30 0:27 /kube/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            base_from(sub, "0::/kube/pod1/app\n"),
            Some(PathBuf::from("/sys/fs/cgroup/app"))
        );
        assert_eq!(base_from("31 30 0:27 / /x rw - tmpfs tmpfs rw\n", cgroups), None);
        assert_eq!(base_from(mountinfo, "4:memory:/x\n"), None);
    }
}
