//! Starting a task's command: a `vfork`-style clone that sets `PR_SET_PDEATHSIG`, joins the
//! task's cgroup (when there is one) and its own process group in the child, then execs.
//!
//! The standard library spawns with `posix_spawn` (a `vfork`, cheap) unless the command has
//! a `pre_exec` hook, and then it forks, which copies the worker's page tables for every
//! command: a third of the spawn rate on a worker of a few dozen MiB. The death signal needs
//! code in the child, so this module does what `posix_spawn` does, plus that one call. The
//! child shares the worker's memory until it execs and runs only async-signal-safe calls on
//! data prepared before the clone.
//!
//! A failure in the child is told apart by its step ([`ChildStep`]): the child writes the
//! step and its errno into memory it shares with the parent (which is still waiting,
//! `CLONE_VFORK`), so "cannot enter the working directory" is not reported as "no such
//! program".

use async_io::Async;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

/// The stack of the child between the clone and its exec: it only makes system calls.
const CHILD_STACK: usize = 64 * 1024;

/// A started command: its pipes and its exit.
pub struct Spawned {
    pub pid: i32,
    /// The write end of its stdin, when asked for.
    pub stdin: Option<Async<File>>,
    /// The read ends of its stdout and stderr (taken by the caller).
    pub stdout: Option<Async<File>>,
    pub stderr: Option<Async<File>>,
    /// Becomes readable when the command exits (a pidfd); None on kernels without pidfds.
    exited: Option<Async<OwnedFd>>,
    /// Set once waited for, so drop does not wait again.
    reaped: bool,
}

impl Spawned {
    /// Waits for the command to exit and reaps it.
    pub async fn status(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(status);
            }
            match &self.exited {
                Some(fd) => fd.readable().await?,
                None => {
                    async_io::Timer::after(std::time::Duration::from_millis(5)).await;
                }
            }
        }
    }

    /// Waits until the command has exited, without reaping it: its pid, and so the id of its
    /// process group, stays taken until [`status`](Self::status), so the group can be killed
    /// meanwhile with no risk of hitting a newer process that got the same id.
    pub async fn exited(&mut self) -> io::Result<()> {
        while !self.has_exited()? {
            match &self.exited {
                Some(fd) => fd.readable().await?,
                None => {
                    async_io::Timer::after(std::time::Duration::from_millis(5)).await;
                }
            }
        }
        Ok(())
    }

    /// Whether the command has exited (it is not reaped).
    fn has_exited(&self) -> io::Result<bool> {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter; waitid only writes it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with WNOWAIT only looks; the pointer is valid.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: si_pid is set by waitid (0 while the child runs).
        Ok(unsafe { info.si_pid() } != 0)
    }

    fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        let mut status = 0;
        // SAFETY: waitpid only writes the status through the valid pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        match r {
            0 => Ok(None),
            r if r == self.pid => {
                self.reaped = true;
                Ok(Some(ExitStatus::from_raw(status)))
            }
            _ => Err(io::Error::last_os_error()),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // Whoever dropped it killed its group or lets it run out; reap it off this thread so
        // it does not stay a zombie.
        let pid = self.pid;
        blocking::unblock(move || {
            let mut status = 0;
            // SAFETY: as in try_reap.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        })
        .detach();
    }
}

/// Why a command did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Before the clone: the program is not on PATH, an argument holds a NUL, no pipes.
    #[error("{0}")]
    Prepare(#[from] io::Error),
    /// The working directory does not exist, is not a directory or cannot be entered.
    #[error("working directory {dir}: {}", describe(*errno))]
    Directory { dir: String, errno: i32 },
    /// The program was found but the kernel would not run it.
    #[error("{}", io::Error::from_raw_os_error(*errno))]
    Exec { errno: i32 },
    /// Another step of the child's setup failed.
    #[error("{step}: {}", io::Error::from_raw_os_error(*errno))]
    Setup { step: ChildStep, errno: i32 },
}

/// The steps of the child between the clone and the exec, in order: the one that failed is
/// reported with its errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChildStep {
    #[error("cannot set its death signal")]
    DeathSignal,
    #[error("cannot join its cgroup")]
    Cgroup,
    #[error("cannot make its process group")]
    ProcessGroup,
    #[error("cannot set up its stdin, stdout and stderr")]
    Stdio,
    #[error("cannot enter its working directory")]
    Directory,
    #[error("cannot run the program")]
    Exec,
}

/// An errno's description without the "(os error N)" that `io::Error` adds: for a message
/// that names the thing it happened to.
fn describe(errno: i32) -> String {
    let full = io::Error::from_raw_os_error(errno).to_string();
    match full.strip_suffix(&format!(" (os error {errno})")) {
        Some(text) => text.to_string(),
        None => full,
    }
}

/// What the child needs, all prepared before the clone.
struct ChildArgs {
    path: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    /// Become fds 0, 1 and 2.
    stdio: [RawFd; 3],
    /// The signal mask to exec with (the parent's, before it blocked everything).
    mask: libc::sigset_t,
    /// The worker's pid: if the child finds another parent, the worker is already gone.
    parent: libc::pid_t,
    /// `cgroup.procs` of the task's cgroup, or -1: the child joins it before its exec, so
    /// everything the command starts is in the group from its first instruction.
    cgroup_procs: RawFd,
    /// Set by the child when a step before the exec (or the exec) fails: which, and why.
    failed: Option<(ChildStep, libc::c_int)>,
}

/// Starts `argv` with the worker's environment plus `env`, in `cwd`, in a process group of
/// its own, killed when the worker dies, in the cgroup whose `cgroup.procs` is open as
/// `cgroup` if given. Stdin is a pipe when `piped_stdin`, else /dev/null.
pub fn spawn(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&Path>,
    piped_stdin: bool,
    cgroup: Option<RawFd>,
) -> Result<Spawned, SpawnError> {
    let program = argv
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| OsString::from(v))
        .or_else(|| std::env::var_os("PATH"));
    let path = resolve(program, path_var.as_deref())?;
    let argv_c: Vec<CString> = argv.iter().map(|a| cstring(a.as_bytes())).collect::<io::Result<_>>()?;
    // The nanny's word to its worker about cgroups is not for the commands.
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != crate::sys::cgroup::CGROUP_ENV)
        .collect();
    for (k, v) in env {
        vars.retain(|(name, _)| name != OsStr::new(k));
        vars.push((k.into(), v.into()));
    }
    let envp_c: Vec<CString> = vars
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect::<io::Result<_>>()?;
    let cwd_c = cwd.map(|d| cstring(d.as_os_str().as_bytes())).transpose()?;

    let (stdin_child, stdin_parent) = if piped_stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (File::open("/dev/null")?.into(), None)
    };
    let (stdout_parent, stdout_child) = pipe()?;
    let (stderr_parent, stderr_child) = pipe()?;

    let mut args = ChildArgs {
        path,
        argv: argv_c.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect(),
        envp: envp_c.iter().map(|e| e.as_ptr()).chain([std::ptr::null()]).collect(),
        cwd: cwd_c,
        stdio: [
            stdin_child.as_raw_fd(),
            stdout_child.as_raw_fd(),
            stderr_child.as_raw_fd(),
        ],
        // SAFETY: a zeroed sigset_t is a valid value to be overwritten below.
        mask: unsafe { std::mem::zeroed() },
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        cgroup_procs: cgroup.unwrap_or(-1),
        failed: None,
    };
    let pid = clone_child(&mut args, cwd)?;
    drop((stdin_child, stdout_child, stderr_child));
    // SAFETY: pidfd_open has no memory-safety preconditions; a failure leaves -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
    let exited = if pidfd >= 0 {
        // SAFETY: the fd was just opened and is owned by nothing else.
        Async::new(unsafe { OwnedFd::from_raw_fd(pidfd) }).ok()
    } else {
        None
    };
    Ok(Spawned {
        pid,
        stdin: stdin_parent.map(|w| Async::new(File::from(w))).transpose()?,
        stdout: Some(Async::new(File::from(stdout_parent))?),
        stderr: Some(Async::new(File::from(stderr_parent))?),
        exited,
        reaped: false,
    })
}

/// Runs [`child_main`] in a `vfork`-style clone and returns its pid once it has exec'd, or
/// why it could not (the failed child reaped).
fn clone_child(args: &mut ChildArgs, cwd: Option<&Path>) -> Result<i32, SpawnError> {
    let mut stack = vec![0u8; CHILD_STACK];
    // SAFETY: the stack grows down from its end, 16-byte aligned; `args`, the strings it
    // points into and the stack outlive the child's use of them, since CLONE_VFORK resumes
    // this thread only once the child has exec'd or exited. All signals are blocked around
    // the clone so no handler of the worker runs on the child's stack.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK) as usize & !15;
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut args.mask);
        let pid = libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            args as *mut ChildArgs as *mut libc::c_void,
        );
        libc::pthread_sigmask(libc::SIG_SETMASK, &args.mask, std::ptr::null_mut());
        pid
    };
    drop(stack);
    if pid < 0 {
        return Err(io::Error::last_os_error().into());
    }
    if let Some((step, errno)) = args.failed {
        // The child failed before its exec and exited: reap it and say why.
        let mut status = 0;
        // SAFETY: waitpid only writes the status.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(match step {
            ChildStep::Directory => SpawnError::Directory {
                dir: cwd.map(|d| d.display().to_string()).unwrap_or_default(),
                errno,
            },
            ChildStep::Exec => SpawnError::Exec { errno },
            step => SpawnError::Setup { step, errno },
        });
    }
    Ok(pid)
}

/// The child between the clone and the exec. Only async-signal-safe calls; returns (exits)
/// with 127 after recording the errno of a failed step.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive and untouched while the parent waits
    // (CLONE_VFORK). Every call below is async-signal-safe and uses prepared data only.
    unsafe {
        let args = &mut *(arg as *mut ChildArgs);
        let fail = |args: &mut ChildArgs, step: ChildStep| -> libc::c_int {
            let errno = match *libc::__errno_location() {
                0 => libc::EINVAL,
                e => e,
            };
            args.failed = Some((step, errno));
            libc::_exit(127)
        };
        // Default dispositions, as a fresh process has: no handler of the worker may run here,
        // and ignored signals (SIGPIPE) must not stay ignored in the command.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        if crate::sys::set_death_signal().is_err() {
            return fail(args, ChildStep::DeathSignal);
        }
        if libc::getppid() != args.parent {
            // The worker died before the death signal was armed.
            libc::_exit(127);
        }
        if args.cgroup_procs >= 0 && libc::write(args.cgroup_procs, b"0".as_ptr().cast(), 1) != 1 {
            return fail(args, ChildStep::Cgroup);
        }
        if libc::setpgid(0, 0) != 0 {
            return fail(args, ChildStep::ProcessGroup);
        }
        for (target, fd) in args.stdio.iter().enumerate() {
            if libc::dup2(*fd, target as RawFd) < 0 {
                return fail(args, ChildStep::Stdio);
            }
        }
        if let Some(dir) = &args.cwd {
            if libc::chdir(dir.as_ptr()) != 0 {
                return fail(args, ChildStep::Directory);
            }
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &args.mask, std::ptr::null_mut());
        libc::execve(args.path.as_ptr(), args.argv.as_ptr(), args.envp.as_ptr());
        fail(args, ChildStep::Exec)
    }
}

/// The file `program` names: itself when it has a slash, else the first executable file of
/// that name in `path`.
fn resolve(program: &str, path: Option<&OsStr>) -> io::Result<CString> {
    if program.contains('/') {
        return cstring(program.as_bytes());
    }
    let mut denied = false;
    for dir in std::env::split_paths(path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"))) {
        let candidate = dir.join(program);
        let c = cstring(candidate.as_os_str().as_bytes())?;
        // SAFETY: access only reads the NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            if candidate.is_file() {
                return Ok(c);
            }
        } else if candidate.exists() {
            denied = true;
        }
    }
    Err(io::Error::from_raw_os_error(if denied {
        libc::EACCES
    } else {
        libc::ENOENT
    }))
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an argument"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::AsyncReadExt;

    fn run(argv: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Result<(ExitStatus, String), SpawnError> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut child = spawn(&argv, &env, cwd, false, None)?;
        let ran: io::Result<_> = smol::block_on(async {
            let mut out = String::new();
            child.stdout.take().expect("piped").read_to_string(&mut out).await?;
            Ok((child.status().await?, out))
        });
        Ok(ran?)
    }

    #[test]
    fn runs_with_the_extra_environment_in_its_own_directory_and_process_group() {
        let dir = std::env::temp_dir();
        let (status, out) = run(
            &["sh", "-c", "echo $X; pwd; [ $(ps -o pgid= $$) = $$ ] && echo leader"],
            &[("X", "forty-two")],
            Some(&dir),
        )
        .expect("spawns");
        assert!(status.success());
        let canonical = dir.canonicalize().expect("temp dir exists");
        assert_eq!(out, format!("forty-two\n{}\nleader\n", canonical.display()));
    }

    #[test]
    fn exit_status_and_signal_are_reported() {
        let (status, _) = run(&["sh", "-c", "exit 3"], &[], None).expect("spawns");
        assert_eq!(status.code(), Some(3));
        let (status, _) = run(&["sh", "-c", "kill -TERM $$"], &[], None).expect("spawns");
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn a_missing_program_or_directory_is_an_error_not_a_child() {
        match run(&["no-such-program-distd-test"], &[], None) {
            Err(SpawnError::Prepare(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("a missing program starts nothing: {other:?}"),
        }
        match run(&["true"], &[], Some(Path::new("/no/such/dir"))) {
            Err(SpawnError::Directory {
                errno: libc::ENOENT, ..
            }) => {}
            other => panic!("a missing directory starts nothing: {other:?}"),
        }
        match run(&["true"], &[("PATH", "/nonexistent")], None) {
            Err(SpawnError::Prepare(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("a program not on PATH starts nothing: {other:?}"),
        }
    }

    /// Regression (issue 12): `--cwd /nonexistent -- ls` said "No such file or directory"
    /// as if `ls` were missing. The step that failed is the one reported.
    #[test]
    fn a_bad_working_directory_is_named_and_not_blamed_on_the_program() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let Err(e) = run(&["ls"], &[], Some(Path::new("/no/such/dir"))) else {
            panic!("a missing directory starts nothing")
        };
        assert_eq!(
            e.to_string(),
            "working directory /no/such/dir: No such file or directory"
        );
        let file = tmp.path().join("plain-file");
        std::fs::write(&file, "").expect("write a file");
        let Err(e) = run(&["ls"], &[], Some(&file)) else {
            panic!("a file is no working directory")
        };
        assert_eq!(
            e.to_string(),
            format!("working directory {}: Not a directory", file.display())
        );
        // A program given by path that is missing, or that the kernel cannot run, fails at
        // the exec: the directory was fine.
        match run(&["./no-such-program"], &[], Some(tmp.path())) {
            Err(SpawnError::Exec { errno: libc::ENOENT }) => {}
            other => panic!("a missing ./program fails its exec: {other:?}"),
        }
        let garbage = tmp.path().join("garbage");
        std::fs::write(&garbage, b"\x7fnot a program").expect("write a file");
        std::fs::set_permissions(&garbage, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        match run(&["./garbage"], &[], Some(tmp.path())) {
            Err(e @ SpawnError::Exec { errno: libc::ENOEXEC }) => {
                assert_eq!(e.to_string(), "Exec format error (os error 8)")
            }
            other => panic!("a file the kernel cannot run fails its exec: {other:?}"),
        }
    }
}
