//! Processes as `/proc` shows them, for the tests that must find processes the sandbox did
//! not start itself: a nanny's workers, the commands they run, what `distd ssh` started
//! through sshd. Linux only; every function answers "nothing" for a process that is gone.

use std::path::Path;

/// What `/proc/PID/stat` says about a process that the tests need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z` (zombie), ...
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// Clock ticks after boot at which it started: with the pid, names one process for good.
    pub start: u64,
    /// CPU time used so far (user and system), in clock ticks.
    pub cpu_ticks: u64,
}

impl Stat {
    /// Neither a zombie nor dead: it still runs (or sleeps).
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// `/proc/PID/stat` of `pid`, if it exists.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = text[text.rfind(')')? + 2..].split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
    })
}

/// A size field of `/proc/PID/status` (`VmHWM`, the peak resident size; `VmRSS`, the
/// current one), in bytes; None if the process is gone.
pub fn status_bytes(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kb * 1024)
}

/// Whether `pid` is a running (not zombie) process.
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.is_live())
}

/// The arguments of `pid` (the first is the program as started).
pub fn argv(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The command line of `pid`, arguments joined by spaces.
pub fn cmdline(pid: i32) -> String {
    argv(pid).join(" ")
}

/// Every pid in /proc.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The live children of `pid`, sorted.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out: Vec<i32> = all_pids()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|s| s.ppid == pid && s.is_live()))
        .collect();
    out.sort_unstable();
    out
}

/// The live descendants of `root` (not `root` itself), sorted.
pub fn descendants(root: i32) -> Vec<i32> {
    let table: Vec<(i32, Stat)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, stat(p)?)))
        .filter(|(_, s)| s.is_live())
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(table.iter().filter(|(_, s)| s.ppid == parent).map(|(p, _)| *p));
        i += 1;
    }
    found.remove(0);
    found.sort_unstable();
    found.dedup();
    found
}

/// Live processes (other than this one) whose command line or working directory lies in
/// `dir`: everything a test started there, and everything those started, whoever their
/// parent is now.
pub fn processes_in(dir: &Path) -> Vec<(i32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&p| p != me && alive(p))
        .filter(|&p| {
            let cwd = std::fs::read_link(format!("/proc/{p}/cwd")).unwrap_or_default();
            cmdline(p).contains(&needle) || cwd.starts_with(dir)
        })
        .map(|p| (p, cmdline(p)))
        .collect()
}

/// Live processes whose program (as started) lies in `dir`: a copy of distd that only one
/// test runs marks all of its processes, wherever they were started from.
pub fn running_programs_in(dir: &Path) -> Vec<i32> {
    let prefix = dir.to_string_lossy().into_owned();
    all_pids()
        .into_iter()
        .filter(|&p| alive(p) && argv(p).first().is_some_and(|a| a.starts_with(&prefix)))
        .collect()
}

/// Processes a test caused to exist (a nanny's workers, a task's leftovers), recorded while
/// they ran; whatever of them is still alive
/// when this is dropped is SIGKILLed, so a failing test leaves nothing running.
#[derive(Default)]
pub struct Recorded {
    /// (pid, start time, command line) of each.
    pub procs: Vec<(i32, u64, String)>,
}

impl Recorded {
    /// Records `pid` (if it is alive) as one of the test's processes.
    pub fn add(&mut self, pid: i32) {
        if let Some(s) = stat(pid) {
            if !self.procs.iter().any(|&(p, start, _)| p == pid && start == s.start) {
                self.procs.push((pid, s.start, cmdline(pid)));
            }
        }
    }

    /// Records `root`'s descendants as they are now.
    pub fn add_descendants(&mut self, root: i32) {
        for p in descendants(root) {
            self.add(p);
        }
    }

    /// The recorded processes that still run: same pid, same start time, not a zombie.
    pub fn survivors(&self) -> Vec<(i32, String)> {
        self.procs
            .iter()
            .filter(|&&(p, start, _)| stat(p).is_some_and(|s| s.start == start && s.is_live()))
            .map(|(p, _, cmd)| (*p, cmd.clone()))
            .collect()
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        for (pid, _) in self.survivors() {
            // SAFETY: kill has no memory-safety preconditions; the pid is a process this test
            // caused to exist, checked by its start time just above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}
