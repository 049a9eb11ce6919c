//! A worker's scratch folder, `LOCAL_DIR/worker-PID-N`: command inputs and spill files live
//! in it, and it goes with its worker however the worker ends.
//!
//! A worker that stops removes its folder (dropping [`Scratch`]), and so does a worker whose
//! nanny died (it catches its death signal, `worker::tether`). One that cannot (SIGKILL, a
//! memory kill, a power cut) leaves it behind: under a nanny, the nanny removes it as soon as
//! it reaps the worker ([`remove_scratch_of`]); and every worker starting sweeps the folders
//! of dead workers in the same local directory first, the only cleanup left after a bare
//! (`--no-nanny`) worker's SIGKILL. Liveness is a lock, not a pid: each worker holds an exclusive
//! `flock` on `.lock` in its folder for its whole life, and the kernel drops it however the
//! process dies, so a folder whose lock can be taken is a dead worker's, whichever host it
//! ran on (a local directory may be shared between hosts).
//!
//! It never touches a folder whose lock it cannot take, nor one without a lock (a worker of
//! an older version, or one that is just being made).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The lock file in each scratch folder.
const LOCK: &str = ".lock";

/// A live worker's scratch folder, removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    /// Holds the folder's lock while the worker lives.
    _lock: File,
}

impl Scratch {
    /// Sweeps the folders of dead workers under `local_dir`, then makes this worker's.
    pub fn create(local_dir: &Path) -> io::Result<Scratch> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(local_dir)?;
        sweep_dead(local_dir);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = local_dir.join(format!("worker-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // Locked under another name first: a sweep never sees `.lock` unlocked.
        let pending = dir.join(".lock.pending");
        let lock = File::create(&pending)?;
        if !try_lock(&lock) {
            return Err(io::Error::other(format!("cannot lock {}", pending.display())));
        }
        std::fs::rename(&pending, dir.join(LOCK))?;
        Ok(Scratch { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("cannot remove the scratch folder {}: {e}", self.dir.display());
            }
        }
    }
}

/// Takes an exclusive lock on `file` without waiting; false when someone holds it.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on an open descriptor has no memory-safety preconditions.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Removes the scratch folders under `local_dir` whose lock nobody holds: their workers are
/// gone. Errors are logged, never fatal: a worker starts even if an old folder stays.
pub fn sweep_dead(local_dir: &Path) {
    for dir in scratch_folders(local_dir, "worker-") {
        remove_if_dead(&dir);
    }
}

/// Removes the scratch folders of the worker that was process `pid` under `local_dir` (a
/// nanny's child it just reaped), each only if its lock is free: the same pid may be a new
/// worker's by now, whose folder is locked.
pub fn remove_scratch_of(local_dir: &Path, pid: u32) {
    for dir in scratch_folders(local_dir, &format!("worker-{pid}-")) {
        remove_if_dead(&dir);
    }
}

/// The folders under `local_dir` whose name starts with `prefix`.
fn scratch_folders(local_dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(local_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(prefix)))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Removes `dir` if its lock can be taken, holding the lock until it is gone, so that two
/// sweepers (a nanny and a worker starting, two workers) never remove it together; a folder
/// another sweeper removed first is no error.
fn remove_if_dead(dir: &Path) {
    let Ok(lock) = File::open(dir.join(LOCK)) else {
        return;
    };
    if !try_lock(&lock) {
        return;
    }
    log::info!(
        "removing {}, the scratch folder of a worker that is gone",
        dir.display()
    );
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => log::warn!("cannot remove {}: {e}", dir.display()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("distd-scratch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_live_workers_folder_is_kept_and_a_dead_ones_is_swept() {
        let local = temp_dir("sweep");
        let live = Scratch::create(&local).expect("a scratch folder");
        std::fs::write(live.path().join("spill-1"), b"x").expect("a file in it");
        // A dead worker's folder: its lock file is there, nobody holds it.
        let dead = local.join("worker-999999-0");
        std::fs::create_dir_all(dead.join("spill")).expect("a dead folder");
        std::fs::write(dead.join(LOCK), b"").expect("its lock file");
        std::fs::write(dead.join("spill").join("spill-7"), vec![0u8; 4096]).expect("a spill file");
        // One without a lock: not ours to judge.
        let unknown = local.join("worker-999998-0");
        std::fs::create_dir_all(&unknown).expect("an unknown folder");
        let other = Scratch::create(&local).expect("another scratch folder");
        assert!(!dead.exists(), "the dead worker's folder is swept");
        assert!(unknown.exists(), "a folder without a lock is left alone");
        assert!(live.path().join("spill-1").exists(), "a live worker's folder is kept");
        let path = other.path().to_path_buf();
        drop(other);
        assert!(!path.exists(), "a worker's folder goes when it stops");
        drop(live);
        let _ = std::fs::remove_dir_all(&local);
    }

    /// A nanny that reaped worker `pid` removes that worker's folders, and only those whose
    /// lock is free: not a live worker's (the pid may have been reused), not another's.
    #[test]
    fn a_reaped_workers_folders_go_and_no_others() {
        let local = temp_dir("reaped");
        // Made first: a worker starting sweeps every dead folder.
        let live = Scratch::create(&local).expect("a scratch folder");
        let dead = |name: &str| {
            let dir = local.join(name);
            std::fs::create_dir_all(dir.join("spill")).expect("a dead folder");
            std::fs::write(dir.join(LOCK), b"").expect("its lock file");
            dir
        };
        let reaped = [dead("worker-4242-0"), dead("worker-4242-3")];
        let other = dead("worker-42420-0");
        let pid = std::process::id();
        remove_scratch_of(&local, 4242);
        assert!(reaped.iter().all(|d| !d.exists()), "the reaped worker's folders go");
        assert!(other.exists(), "another worker's folder is not the nanny's to judge");
        remove_scratch_of(&local, pid);
        assert!(live.path().exists(), "a live worker's folder is kept, whatever its pid");
        drop(live);
        let _ = std::fs::remove_dir_all(&local);
    }
}
