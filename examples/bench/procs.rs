//! The bench's own process plumbing: spawning distd processes in their own process groups,
//! reading their stdout with a deadline, killing and reaping them (and their orphans), and
//! what `/proc` says about a process (RSS, CPU time).
//!
//! Every child is spawned from the main thread with `PR_SET_PDEATHSIG`, so nothing outlives
//! the bench even when the bench itself is killed; the bench is a child subreaper, so workers
//! orphaned by a killed nanny come back to it to be reaped.

use crate::report::{fail, Context, Outcome};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One distd process the bench started; killed (with its process group) and reaped on drop.
pub struct Proc {
    /// What it is, for messages ("scheduler", "worker bench-0").
    pub label: String,
    child: Child,
    /// Where its stderr goes, for messages about it.
    log: PathBuf,
    /// Its stdout lines, when it was spawned with `Output::Lines`.
    lines: Option<mpsc::Receiver<String>>,
}

/// Where a child's stdout goes.
pub enum Output {
    Discard,
    /// Read line by line on a helper thread, for `Proc::expect_line`.
    Lines,
}

impl Proc {
    /// Starts `program args` in its own process group, stderr appended to `log`.
    pub fn spawn(label: &str, program: &Path, args: &[String], log: &Path, output: Output) -> Outcome<Proc> {
        let stderr = File::create(log).context(format!("cannot create the log file {}", log.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args);
        // The insecure pass of the suite: every distd it starts runs with --no-security.
        if insecure() && program.file_name().is_some_and(|n| n == "distd") {
            cmd.arg("--no-security");
        }
        // Access files go to the suite's folder, not the user's: a cluster the suite kills
        // leaves its file there, removed with the folder.
        if let Some(home) = DATA_HOME.get() {
            cmd.env("XDG_DATA_HOME", home);
        }
        cmd.stdin(Stdio::null())
            .stderr(stderr)
            .stdout(match output {
                Output::Discard => Stdio::null(),
                Output::Lines => Stdio::piped(),
            })
            .process_group(0);
        // SAFETY: the closure only calls prctl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().context(format!(
            "cannot start the {label} ({} {})",
            program.display(),
            args.join(" ")
        ))?;
        let lines = child.stdout.take().map(|stdout| {
            let (tx, rx) = mpsc::channel();
            // Reads until the process closes its stdout; never blocks the bench.
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
            rx
        });
        Ok(Proc {
            label: label.to_string(),
            child,
            log: log.to_path_buf(),
            lines,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first stdout line that `wanted` accepts, within `limit`.
    pub fn expect_line(&mut self, limit: Duration, wanted: impl Fn(&str) -> bool) -> Outcome<String> {
        let label = &self.label;
        let Some(lines) = &self.lines else {
            return fail(format!("the {label}'s stdout is not read"));
        };
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return fail(format!(
                        "the {label} printed no expected line within {limit:?} (its log: {})",
                        self.log.display()
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // It closed its stdout, most likely by exiting: give it a moment to be reaped.
                    std::thread::sleep(Duration::from_millis(50));
                    let how = match self.child.try_wait() {
                        Ok(Some(status)) => format!("exited ({status})"),
                        _ => "closed its stdout".to_string(),
                    };
                    return fail(format!(
                        "the {label} {how} before printing the expected line (its log: {})",
                        self.log.display()
                    ));
                }
            }
        }
    }

    /// Waits for the process to exit, within `limit`: its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> Outcome<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    return fail(format!(
                        "the {} did not exit within {limit:?} (its log: {})",
                        self.label,
                        self.log.display()
                    ))
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => return fail(format!("cannot wait for the {}: {e}", self.label)),
            }
        }
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Outcome<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => fail(format!(
                "the {} exited ({status}); its log: {}",
                self.label,
                self.log.display()
            )),
            Err(e) => fail(format!("cannot check the {}: {e}", self.label)),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: killpg has no memory-safety preconditions; the child leads its own group.
        unsafe {
            libc::killpg(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes the bench a child subreaper: processes orphaned by its children (workers of a killed
/// nanny) are re-parented to it, so it can reap them.
pub fn become_subreaper() -> Outcome<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return fail(format!(
            "cannot become a child subreaper: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Processes whose parent is the bench, other than `except`.
pub fn children_except(except: &[u32]) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| !except.contains(pid))
        .filter(|&pid| stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok())) == Some(me))
        .collect()
}

/// Kills and reaps every child of the bench other than `except` (orphans re-parented to it),
/// trying for up to `limit`. Returns the ones still there after that.
pub fn reap_orphans(except: &[u32], limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    loop {
        let left = children_except(except);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        for &pid in &left {
            // SAFETY: plain signal and wait calls on a process that is the bench's own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
                libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The fields of `/proc/PID/stat` after the command name: [state, ppid, pgrp, ...].
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Resident memory of `pid` in bytes, from `/proc/PID/statm`.
pub fn rss_bytes(pid: u32) -> Outcome<u64> {
    let statm =
        std::fs::read_to_string(format!("/proc/{pid}/statm")).context(format!("cannot read /proc/{pid}/statm"))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .context(format!("/proc/{pid}/statm has no resident size: {statm:?}"))?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages * page.max(1) as u64)
}

/// A size field of `/proc/PID/status` (`VmHWM`, the peak resident size; `VmRSS`, the
/// current one), in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Outcome<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).context(format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context(format!("/proc/{pid}/status has no {field}"))
}

/// User plus system CPU time of `pid` so far, in seconds, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Outcome<f64> {
    let f = stat_fields(pid).context(format!("cannot read /proc/{pid}/stat"))?;
    // utime and stime are fields 14 and 15 of stat; `f` starts at field 3.
    let ticks = |i: usize| f.get(i).and_then(|t| t.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) else {
        return fail(format!("/proc/{pid}/stat has no utime/stime"));
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((utime + stime) as f64 / hz)
}

/// CPU used by a process over an interval, as a share of one core.
pub struct CpuMeter {
    pid: u32,
    cpu: f64,
    at: Instant,
}

impl CpuMeter {
    pub fn start(pid: u32) -> Outcome<CpuMeter> {
        Ok(CpuMeter {
            pid,
            cpu: cpu_seconds(pid)?,
            at: Instant::now(),
        })
    }

    /// CPU seconds per wall second since `start` (1.0 = one core busy all the time).
    pub fn share(&self) -> Outcome<f64> {
        let cpu = cpu_seconds(self.pid)? - self.cpu;
        Ok(cpu / self.at.elapsed().as_secs_f64().max(1e-9))
    }
}

/// Raises the soft limit on open files to the hard limit (children inherit it). Returns the
/// soft limit in force afterwards and the hard limit.
pub fn raise_open_files_limit() -> Outcome<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return fail(format!("getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error()));
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return fail(format!(
                "setrlimit(RLIMIT_NOFILE, {}): {}",
                lim.rlim_max,
                std::io::Error::last_os_error()
            ));
        }
        lim = raised;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    Ok((lim.rlim_cur as u64, lim.rlim_max as u64))
}

/// Whether the suite is in an insecure pass (each workload runs secured, insecure, insecure, secured).
static INSECURE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts or ends the insecure pass: distd processes get `--no-security`, and so does this
/// process's own dialing (its clients and simulated workers).
pub fn set_insecure(on: bool) {
    INSECURE.store(on, std::sync::atomic::Ordering::Relaxed);
    distd::protocol::security::keyring::set_insecure(on);
}

pub fn insecure() -> bool {
    INSECURE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Where the suite's processes keep their access files (`XDG_DATA_HOME`).
static DATA_HOME: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Gives every distd the suite starts `dir` as its data folder, and this process's own
/// clients its access folder to find their clusters' credentials in.
pub fn set_data_home(dir: std::path::PathBuf) {
    distd::protocol::security::keyring::look_also_in(dir.join("distd").join("access"));
    let _ = DATA_HOME.set(dir);
}
