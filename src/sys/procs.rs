//! Process trees as `/proc` shows them: the children and descendants of a process, the
//! memory of a whole tree, and the sweep of orphans a subreaper inherited.
//!
//! It decides nothing: callers say whose tree to read and what to kill. A process that is
//! gone while it is read is skipped, never an error.

use std::collections::HashSet;
use std::path::Path;

/// Resident memory of process `pid` and everything it started: its own RSS, plus the private
/// memory (RSS less shared pages) of every descendant and of every process in `cgroup` (its
/// task groups, which hold processes that left the tree with a double fork). Shared pages of
/// the descendants are left out because every `sh` a task starts maps the same libraries: a
/// sum of their full RSS would count those pages once per process. None when `pid` is gone.
///
/// A descendant that has not exec'd since it was cloned (a command between its `vfork` and
/// its exec, a fork of the worker) maps the worker's own pages: it is left out too, or a
/// sample taken during a spawn would count the worker twice.
pub fn tree_rss(pid: u32, cgroup: Option<&Path>) -> Option<u64> {
    let own = super::rss(Some(pid))?;
    let layout = code_and_stack(pid);
    let mut seen: HashSet<u32> = HashSet::from([pid]);
    let mut others: Vec<u32> = descendants(pid);
    if let Some(dir) = cgroup {
        others.extend(super::cgroup::members(dir));
    }
    let page = page_size();
    let private: u64 = others
        .into_iter()
        .filter(|p| seen.insert(*p))
        .filter(|p| layout.is_none() || code_and_stack(*p) != layout)
        .filter_map(|p| {
            let statm = std::fs::read_to_string(format!("/proc/{p}/statm")).ok()?;
            let mut f = statm.split_whitespace().skip(1);
            let resident: u64 = f.next()?.parse().ok()?;
            let shared: u64 = f.next()?.parse().ok()?;
            Some(resident.saturating_sub(shared) * page)
        })
        .sum();
    Some(own + private)
}

/// Where `pid`'s code and stack start (`/proc/PID/stat`): the same in a process and in its
/// clones until they exec, different after (address space randomisation, another program).
/// None when the kernel hides them (zeros) or the process is gone.
fn code_and_stack(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let code: u64 = f.get(23)?.parse().ok()?;
    let stack: u64 = f.get(25)?.parse().ok()?;
    (code != 0 || stack != 0).then_some((code, stack))
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    page.max(0) as u64
}

/// The descendants of `root` (not `root` itself), parents before their children. Reads the
/// kernel's per-thread `children` lists; where the kernel has none, one pass over `/proc`.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut found = vec![root];
    let mut i = 0;
    let by_lists = has_children_lists();
    let table = (!by_lists).then(parent_table);
    while i < found.len() {
        let parent = found[i];
        match &table {
            None => found.extend(children_from_lists(parent)),
            Some(t) => found.extend(t.iter().filter(|(_, pp, _)| *pp == parent).map(|(p, _, _)| *p)),
        }
        i += 1;
    }
    found.remove(0);
    found
}

/// Whether the kernel keeps `/proc/PID/task/TID/children` (CONFIG_PROC_CHILDREN).
fn has_children_lists() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        Path::new("/proc/self/task")
            .join(std::process::id().to_string())
            .join("children")
            .exists()
    })
}

/// The children of `parent`, from the `children` list of each of its threads.
fn children_from_lists(parent: u32) -> Vec<u32> {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
        return Vec::new();
    };
    threads
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// (pid, parent, process group) of every process, from one pass over `/proc`.
fn parent_table() -> Vec<(u32, u32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (ppid, pgrp) = parent_and_group(pid)?;
            Some((pid, ppid, pgrp))
        })
        .collect()
}

/// The children of `parent` with their process groups.
pub fn children_of(parent: u32) -> Vec<(u32, i32)> {
    let pids = if has_children_lists() {
        children_from_lists(parent)
    } else {
        parent_table()
            .into_iter()
            .filter(|(_, pp, _)| *pp == parent)
            .map(|(p, _, _)| p)
            .collect()
    };
    pids.into_iter()
        .filter_map(|p| {
            let (ppid, pgrp) = parent_and_group(p)?;
            (ppid == parent).then_some((p, pgrp))
        })
        .collect()
}

/// How many rounds [`kill_children_except`] sweeps at most: each round kills the orphans
/// found, whose own children are re-parented to us when they die, for the next round.
const SWEEP_ROUNDS: usize = 20;

/// SIGKILLs every child of this process except `keep`, each with its process group (unless
/// that is ours), reaps it, and goes on while killing them brings new orphans (their own
/// children, re-parented to us): the orphans a subreaper inherits, down to the last one.
pub fn kill_children_except(keep: &[u32]) {
    let me = std::process::id();
    // Our cgroups' guardian may have been re-parented to us: it is no orphan.
    let guardian = super::cgroup::guardian_pid();
    for _ in 0..SWEEP_ROUNDS {
        let victims: Vec<(u32, i32)> = children_of(me)
            .into_iter()
            .filter(|(p, _)| !keep.contains(p) && Some(*p) != guardian)
            .collect();
        if victims.is_empty() {
            return;
        }
        for &(pid, pgrp) in &victims {
            // SAFETY: plain signal calls on a process that is our own child (and its group).
            unsafe {
                if pgrp as u32 != me && pgrp > 1 {
                    libc::killpg(pgrp, libc::SIGKILL);
                }
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        for &(pid, _) in &victims {
            // Reaped, so its own children are ours before the next round looks. A SIGKILLed
            // process dies at once unless it is stuck in the kernel: then wait no longer.
            for _ in 0..100 {
                // SAFETY: waitpid on our own child, with no status pointer.
                let r = unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
                if r != 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

/// Parent pid and process group of `pid`, from `/proc/PID/stat`.
pub fn parent_and_group(pid: u32) -> Option<(u32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_parent_and_group(&stat)
}

/// The parent pid and process group fields of a `/proc/PID/stat` line.
fn parse_parent_and_group(stat: &str) -> Option<(u32, i32)> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut f = rest.split_whitespace();
    let _state = f.next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((ppid, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_a_command_name_with_spaces_and_parentheses() {
        assert_eq!(parse_parent_and_group("42 (a (b) c) S 7 42 42 0 -1"), Some((7, 42)));
        assert_eq!(parse_parent_and_group("42 (x)"), None);
        assert_eq!(parse_parent_and_group("garbage"), None);
    }

    #[test]
    fn this_process_is_a_child_of_its_parent() {
        let me = std::process::id();
        let parent = parent_and_group(me).expect("own stat").0;
        assert!(children_of(parent).iter().any(|(pid, _)| *pid == me));
    }

    /// Issue 10: the nanny counted the worker's own RSS, not its task commands'. A grandchild
    /// holding 64 MiB of private memory shows in the tree.
    #[test]
    fn the_memory_of_a_tree_counts_every_descendants_private_memory() {
        use std::os::unix::process::CommandExt;
        let fill = "import time; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); \
                    print(1, flush=True); time.sleep(30)";
        let mut child = std::process::Command::new("sh")
            .args(["-c", &format!("python3 -c \"{fill}\" & wait")])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("sh starts");
        let mut line = String::new();
        let out = child.stdout.take().expect("piped");
        let ready = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
        let me = std::process::id();
        let own = super::super::rss(None).expect("own rss");
        let tree = tree_rss(me, None).expect("the tree");
        let below = descendants(me);
        // SAFETY: killpg of the group our own child leads; the child is reaped below.
        unsafe {
            libc::killpg(child.id() as i32, libc::SIGKILL);
        }
        let _ = child.wait();
        ready.expect("the grandchild says it holds its memory");
        assert!(below.contains(&child.id()), "{below:?}");
        assert!(tree >= own + (64 << 20), "tree {tree}, own {own}");
    }
}
