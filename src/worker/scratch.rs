//! A worker's scratch folder, `LOCAL_DIR/worker-PID-N`: command inputs and spill files live
//! in it, and it goes with its worker however the worker ends.
//!
//! A worker that stops removes its folder (dropping [`Scratch`]). One that cannot (SIGKILL,
//! a memory kill, a power cut) leaves it behind, so every worker starting sweeps the folders
//! of dead workers in the same local directory first; under a nanny that is the dead worker's
//! successor, a moment later. Liveness is a lock, not a pid: each worker holds an exclusive
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
    let Ok(entries) = std::fs::read_dir(local_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_scratch = entry.file_name().to_str().is_some_and(|n| n.starts_with("worker-"));
        if !is_scratch || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        let Ok(lock) = File::open(dir.join(LOCK)) else {
            continue;
        };
        if !try_lock(&lock) {
            continue;
        }
        log::info!(
            "removing {}, the scratch folder of a worker that is gone",
            dir.display()
        );
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            log::warn!("cannot remove {}: {e}", dir.display());
        }
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
}
