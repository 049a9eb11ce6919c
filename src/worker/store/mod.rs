//! The worker's result store: every task result this worker holds, in memory or spilled to
//! disk, with the least recently used results spilled first when memory runs high.
//!
//! It owns the result bytes the worker holds and the files it writes in its spill directory:
//! one file per spilled result, `t{id}-{serial}.bin` (and `t{id}-{serial}.tmp` while being
//! written). Spilling is invisible to callers: [`Store::get`] reads a spilled result back, so
//! executions and the peer server see the same results whatever their place.
//!
//! A result too large to hold next to the worker's memory limit (see
//! [`Store::with_largest_in_memory`]) is written straight to disk when it is put, without
//! pushing the others out: held, it would leave the next task no room to run. A result its
//! maker already wrote to a file (a command's large stdout, a [`ResultFile`]) is moved into
//! the spill directory by [`Store::put_file`], never copied nor read: it costs the worker no
//! memory, and it is served from its file like any spilled result.
//!
//! It must never:
//! - lose a result because a spill write failed (disk full): the result stays in memory, the
//!   failure is logged, and [`Store::spill_until`] reports it;
//! - let a reader see a half-written file: files are written under a temporary name and
//!   renamed;
//! - resurrect a result removed or replaced while it was being spilled, or leave its file
//!   behind;
//! - delete a file it did not write or was not handed (a [`ResultFile`] is handed over);
//! - hold its lock during file I/O.
//!
//! # Locking
//!
//! One mutex guards the bookkeeping (`Ledger`): which results exist, where each one lives,
//! the LRU order and the byte counts. Every transition of that state machine is a `Ledger`
//! method named after its event, and none of them touches the disk. File I/O happens outside
//! the lock: a spill picks its victims and marks them `Spilling` under the lock (they stay
//! readable from memory), writes their files without it, then commits each one under the lock
//! only if the entry is still that same spill; if it was removed or replaced meanwhile, the
//! spiller deletes the file it just wrote. Reading a spilled result back and deleting files are
//! unlocked too.
//!
//! This is safe because a file name is never reused: every spill takes a fresh serial, so a slow
//! thread can only ever write, read or delete its own file, never a newer spill of the same
//! result. A reader whose file vanished (removed, replaced or read back meanwhile) looks again.

mod ledger;

use crate::protocol::{Data, TaskId};
use ledger::{Ledger, Lookup, Place, Victim};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Results held by one worker: in memory, or spilled to files in `dir`.
///
/// Shared as `Arc<Store>` between the worker loop, the executions and the peer server.
pub struct Store {
    /// Where spill files go. Created on the first spill, so a worker that never spills leaves
    /// nothing on disk.
    dir: PathBuf,
    /// Whether this store created `dir`: only then does `Drop` remove it (and only if empty),
    /// so a directory the user handed over survives.
    created_dir: AtomicBool,
    /// All bookkeeping. Never held during file I/O (see the module doc).
    ledger: Mutex<Ledger>,
}

/// What [`Store::stats`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Results held in memory, including those whose spill is under way.
    pub in_memory: usize,
    /// Their bytes.
    pub in_memory_bytes: u64,
    /// Results held only on disk.
    pub spilled: usize,
    /// Their bytes.
    pub spilled_bytes: u64,
}

/// A failed spill-file operation. The message names the file and the OS reason.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create spill directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot write spill file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read spill file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// Spill files are immutable once renamed into place, so this means someone else touched it.
    #[error("spill file {} holds {found} bytes, expected {expected}", path.display())]
    WrongSize { path: PathBuf, expected: u64, found: u64 },
    #[error("cannot move the result file {} to {}: {source}", from.display(), to.display())]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
}

/// A result its maker wrote to a file (a command's stdout too large to hold), on its way to
/// the store through [`Store::put_file`]. It owns the file: dropped before the store takes
/// it (the task was killed, a write failed, the worker stops), it deletes the file.
///
/// The file must be on the file system of the store's directory (the worker's scratch
/// folder), so that handing it over is a rename.
#[derive(Debug)]
pub struct ResultFile {
    /// Empty once the store took the file.
    path: PathBuf,
    /// Bytes written to it so far, counted by the maker.
    len: u64,
}

impl ResultFile {
    /// Takes charge of the file at `path`, which the caller is about to create and fill.
    pub fn new(path: PathBuf) -> ResultFile {
        ResultFile { path, len: 0 }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts `n` more bytes written to the file.
    pub fn wrote(&mut self, n: u64) {
        self.len += n;
    }
}

impl Drop for ResultFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            remove_file_logged(&self.path);
        }
    }
}

impl Store {
    /// `dir` is created lazily on the first spill. When the bytes held in memory exceed
    /// `spill_above`, least recently used results are written to disk until in-memory bytes
    /// are at most 80% of it (hysteresis). `None` = never spill on its own.
    pub fn new(dir: PathBuf, spill_above: Option<u64>) -> Store {
        Store {
            dir,
            created_dir: AtomicBool::new(false),
            ledger: Mutex::new(Ledger::new(spill_above)),
        }
    }

    /// Results larger than `bytes` are written straight to disk when they are put, and never
    /// kept in memory when read back (`None`: no such limit). The worker passes
    /// [`crate::memory::MemoryPolicy::largest_held_result`].
    pub fn with_largest_in_memory(mut self, bytes: Option<u64>) -> Store {
        self.ledger
            .get_mut()
            .expect("a store being built has no other user")
            .largest_in_memory = bytes;
        self
    }

    /// Holds `data` as the result of `id`, replacing (and deleting the file of) any earlier
    /// one. A result larger than the largest held in memory is written to disk before this
    /// returns (served from memory meanwhile); otherwise this may spill other results, and
    /// the new one is spilled only if it alone exceeds the target.
    ///
    /// A failed spill is logged and the results stay in memory, so this does not fail today;
    /// the `Result` keeps callers ready for a store that can.
    pub fn put(&self, id: TaskId, data: Data) -> Result<(), StoreError> {
        let len = data.len() as u64;
        let (stale, next) = {
            let mut ledger = self.lock();
            if ledger.too_large_to_hold(len) {
                let (stale, serial) = ledger.on_put_to_disk(id, data.clone());
                (stale, AfterPut::Write { serial, data })
            } else {
                let stale = ledger.on_put(id, data);
                (
                    stale,
                    ledger.spill_target().map_or(AfterPut::Nothing, AfterPut::SpillDownTo),
                )
            }
        };
        if let Some(serial) = stale {
            remove_file_logged(&spill_path(&self.dir, id, serial));
        }
        match next {
            AfterPut::Nothing => {}
            AfterPut::SpillDownTo(target) => {
                // Already logged where it failed; the data stays in memory. What was spilled
                // is given back to the system at once: the allocator keeps freed blocks of
                // this size for reuse, and the resident size the nanny watches would not
                // fall until the next memory check spills again, too late under load.
                if let Ok(spilled) = self.spill_down_to(target) {
                    if spilled > 0 {
                        crate::sys::release_free_memory();
                    }
                }
            }
            AfterPut::Write { serial, data } => self.write_through(id, serial, data),
        }
        Ok(())
    }

    /// Holds the result of `id` that its maker wrote to `file`, as a spilled result: the file
    /// is renamed into the spill directory (no copy, nothing read into memory), replacing
    /// (and deleting the file of) any earlier result. Returns the result's size. On an error
    /// the result is not held and the file is deleted.
    pub fn put_file(&self, id: TaskId, mut file: ResultFile) -> Result<u64, StoreError> {
        let len = file.len;
        let serial = self.lock().reserve_serial();
        self.ensure_dir()?;
        let path = spill_path(&self.dir, id, serial);
        if let Err(source) = fs::rename(&file.path, &path) {
            return Err(StoreError::Move {
                from: file.path.clone(),
                to: path,
                source,
            });
        }
        // The store's own file now: `file` must not delete it.
        file.path = PathBuf::new();
        let stale = self.lock().on_put_file(id, serial, len);
        if let Some(serial) = stale {
            remove_file_logged(&spill_path(&self.dir, id, serial));
        }
        Ok(len)
    }

    /// Writes the file `serial` of a result put straight to disk, and commits it, or keeps
    /// the result in memory if the write fails.
    fn write_through(&self, id: TaskId, serial: u64, data: Data) {
        let path = spill_path(&self.dir, id, serial);
        let len = data.len();
        let written = self.ensure_dir().and_then(|()| write_atomically(&path, &data));
        // Our reference must not outlive the write: the entry's own copy goes at commit.
        drop(data);
        match written {
            Ok(()) => {
                if !self.lock().on_spill_written(id, serial) {
                    // Removed or replaced while we wrote: the file belongs to nobody.
                    remove_file_logged(&path);
                }
            }
            Err(e) => {
                self.lock().on_spill_failed(id, serial);
                log::warn!("{e}; keeping the result {id} ({len} bytes) in memory");
            }
        }
    }

    /// The result of `id`, marked most recently used. A spilled result is read back from its
    /// file, and held in memory again only if that keeps memory under the spill target.
    pub fn get(&self, id: TaskId) -> Result<Option<Data>, StoreError> {
        loop {
            let lookup = self.lock().on_get(id);
            let (serial, len) = match lookup {
                Lookup::Absent => return Ok(None),
                Lookup::InMemory(data) => return Ok(Some(data)),
                Lookup::Spilled { serial, len } => (serial, len),
            };
            let path = spill_path(&self.dir, id, serial);
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let still_there = self.lock().is_spilled_as(id, serial);
                    if still_there {
                        return Err(StoreError::Read { path, source: e });
                    }
                    // Removed, replaced or read back since we looked: look again.
                    continue;
                }
                Err(source) => return Err(StoreError::Read { path, source }),
            };
            if bytes.len() as u64 != len {
                return Err(StoreError::WrongSize {
                    path,
                    expected: len,
                    found: bytes.len() as u64,
                });
            }
            let data = Arc::new(bytes);
            let kept = self.lock().on_read_back(id, serial, &data);
            if kept {
                remove_file_logged(&path);
            }
            return Ok(Some(data));
        }
    }

    /// The result of `id` to be sent somewhere: in memory, or an open spill file to read a
    /// piece at a time (never read back whole: serving a spilled result costs the worker no
    /// memory). The file stays readable when the store removes it meanwhile.
    pub fn open(&self, id: TaskId) -> Result<Option<Source>, StoreError> {
        loop {
            let lookup = self.lock().on_get(id);
            let (serial, len) = match lookup {
                Lookup::Absent => return Ok(None),
                Lookup::InMemory(data) => return Ok(Some(Source::Memory(data))),
                Lookup::Spilled { serial, len } => (serial, len),
            };
            let path = spill_path(&self.dir, id, serial);
            match fs::File::open(&path) {
                Ok(file) => return Ok(Some(Source::File { file, len })),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if self.lock().is_spilled_as(id, serial) {
                        return Err(StoreError::Read { path, source: e });
                    }
                    // Removed, replaced or read back since we looked: look again.
                }
                Err(source) => return Err(StoreError::Read { path, source }),
            }
        }
    }

    /// Whether a result for `id` is held, in memory or on disk.
    #[cfg(test)]
    pub fn contains(&self, id: TaskId) -> bool {
        self.lock().entries.contains_key(&id)
    }

    /// Drops the result of `id` and deletes its file if spilled. Unknown ids are fine.
    pub fn remove(&self, id: TaskId) {
        let stale = self.lock().on_remove(id);
        if let Some(serial) = stale {
            remove_file_logged(&spill_path(&self.dir, id, serial));
        }
    }

    /// Drops every result, files included.
    pub fn clear(&self) {
        let stale = self.lock().on_clear();
        for (id, serial) in stale {
            remove_file_logged(&spill_path(&self.dir, id, serial));
        }
    }

    #[cfg(test)]
    /// Changes the spill threshold (see [`Store::new`]); spills at once if memory is above it.
    pub fn set_spill_above(&self, bytes: Option<u64>) {
        let target = {
            let mut ledger = self.lock();
            ledger.spill_above = bytes;
            ledger.spill_target()
        };
        if let Some(target) = target {
            // Already logged where it failed; the data stays in memory.
            let _ = self.spill_down_to(target);
        }
    }

    /// Spills least recently used results until at most `in_memory_at_most` bytes stay in
    /// memory (e.g. when the process RSS is high); returns the bytes spilled. Results another
    /// thread is already spilling count as gone. On a failed write, the results not yet
    /// written stay in memory and the error is returned.
    pub fn spill_until(&self, in_memory_at_most: u64) -> Result<u64, StoreError> {
        self.spill_down_to(in_memory_at_most)
    }

    /// Whether every result is in memory, so that `get` cannot block on a file.
    pub fn all_in_memory(&self) -> bool {
        self.stats().spilled == 0
    }

    /// `get` for async code: answered at once while nothing is spilled, read on a blocking
    /// thread otherwise.
    pub async fn get_async(self: &std::sync::Arc<Self>, id: TaskId) -> Result<Option<Data>, StoreError> {
        if self.all_in_memory() {
            return self.get(id);
        }
        let store = self.clone();
        blocking::unblock(move || store.get(id)).await
    }

    /// Counts and bytes of what is held, by place.
    pub fn stats(&self) -> StoreStats {
        self.lock().stats()
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .expect("store lock is never poisoned: nothing that can panic runs under it")
    }

    /// Picks victims under the lock, writes their files without it, commits each under it.
    /// Stops at the first failed write (likely disk full), returning the rest to memory.
    fn spill_down_to(&self, target: u64) -> Result<u64, StoreError> {
        let victims = self.lock().pick_victims(target);
        if victims.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.ensure_dir() {
            let mut ledger = self.lock();
            for victim in &victims {
                ledger.on_spill_failed(victim.id, victim.serial);
            }
            drop(ledger);
            log::warn!(
                "{e}; keeping {} in memory",
                crate::units::plural(victims.len() as u64, "result")
            );
            return Err(e);
        }
        let mut spilled = 0;
        let mut written_files = 0;
        let mut victims = victims.into_iter();
        while let Some(Victim { id, serial, len, data }) = victims.next() {
            let path = spill_path(&self.dir, id, serial);
            let written = write_atomically(&path, &data);
            // Our reference must not outlive the spill: the entry's own copy goes at commit.
            drop(data);
            match written {
                Ok(()) => {
                    let committed = self.lock().on_spill_written(id, serial);
                    if committed {
                        spilled += len;
                        written_files += 1;
                    } else {
                        // Removed or replaced while we wrote: the file belongs to nobody.
                        remove_file_logged(&path);
                    }
                }
                Err(e) => {
                    let mut ledger = self.lock();
                    ledger.on_spill_failed(id, serial);
                    let mut kept = 1;
                    for rest in victims {
                        ledger.on_spill_failed(rest.id, rest.serial);
                        kept += 1;
                    }
                    drop(ledger);
                    log::warn!("{e}; keeping {} in memory", crate::units::plural(kept, "result"));
                    return Err(e);
                }
            }
        }
        log::debug!(
            "spilled {} ({spilled} bytes) to {}",
            crate::units::plural(written_files, "result"),
            self.dir.display()
        );
        Ok(spilled)
    }

    /// Creates the spill directory if missing. Checked on every spill batch (one syscall) so a
    /// directory deleted behind our back is recreated instead of failing every later spill.
    fn ensure_dir(&self) -> Result<(), StoreError> {
        let created = match fs::create_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(&self.dir),
            Err(e) => Err(e),
        };
        match created {
            Ok(()) => {
                self.created_dir.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(source) => Err(StoreError::CreateDir {
                path: self.dir.clone(),
                source,
            }),
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for Store {
    /// Removes every spill file this store wrote, and `dir` if it created it and it is empty.
    fn drop(&mut self) {
        // No other thread can hold a reference now, so nothing is mid-I/O: unless a spiller
        // panicked, every entry is in memory or spilled.
        let ledger = self.ledger.get_mut().unwrap_or_else(PoisonError::into_inner);
        for (id, entry) in ledger.entries.drain() {
            match entry.place {
                Place::Memory(_) => {}
                Place::Spilled { serial } => remove_file_logged(&spill_path(&self.dir, id, serial)),
                Place::Spilling { serial, .. } => {
                    let path = spill_path(&self.dir, id, serial);
                    remove_file_logged(&path.with_extension("tmp"));
                    remove_file_logged(&path);
                }
            }
        }
        if self.created_dir.load(Ordering::Relaxed) {
            // Fails when something else put files there; then it is not ours to delete.
            if let Err(e) = fs::remove_dir(&self.dir) {
                log::debug!("keeping spill directory {}: {e}", self.dir.display());
            }
        }
    }
}

/// What [`Store::put`] does once the ledger has the new result.
enum AfterPut {
    Nothing,
    SpillDownTo(u64),
    /// Write the new result to its file `serial`.
    Write {
        serial: u64,
        data: Data,
    },
}

fn spill_path(dir: &Path, id: TaskId, serial: u64) -> PathBuf {
    dir.join(format!("{id}-{serial}.bin"))
}

/// Writes `data` to a temporary name, then renames it to `path`, so `path` is never partial.
/// No fsync: spill files never outlive the process, and readers in it see the page cache.
fn write_atomically(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    if let Err(source) = fs::write(&tmp, data) {
        remove_file_logged(&tmp);
        return Err(StoreError::Write { path: tmp, source });
    }
    if let Err(source) = fs::rename(&tmp, path) {
        remove_file_logged(&tmp);
        return Err(StoreError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// Deleting is best effort: a leftover file wastes disk but breaks nothing.
fn remove_file_logged(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove spill file {}: {e}", path.display()),
    }
}

/// A result to be sent: its bytes in memory, or its spill file and length.
pub enum Source {
    Memory(Data),
    File { file: fs::File, len: u64 },
}

#[cfg(test)]
mod tests;
