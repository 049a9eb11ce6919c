//! The result store's bookkeeping: which results exist, where each lives (memory, being
//! spilled, a file), the LRU order and the byte counts, as a synchronous state machine behind
//! the store's lock. Each method is one event; the [`super::Store`] carries out the file I/O
//! it implies. It never touches the disk or the clock.

use super::StoreStats;
use crate::idmap::IdMap;
use crate::protocol::{Data, TaskId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The bookkeeping behind the lock: a synchronous state machine that never touches the disk.
/// Each method is one event; the `Store` carries out the file I/O it implies.
pub(super) struct Ledger {
    /// Every result held, wherever it lives.
    pub(super) entries: IdMap<TaskId, Entry>,
    /// Results in `Place::Memory` by last use, oldest first: spill victims in order. Keyed by
    /// each entry's unique tick so that touching and picking are O(log n), not a scan.
    lru: BTreeMap<u64, TaskId>,
    /// Source of ticks, bumped on every use, so ticks are unique and ordered by recency.
    next_tick: u64,
    /// Source of spill-file serials. Never reused: that is what makes unlocked file I/O safe.
    next_serial: u64,
    /// Memory level above which results are spilled; `None` = only on `spill_until`.
    pub(super) spill_above: Option<u64>,
    /// Results larger than this go straight to disk and are never read back into memory;
    /// `None` = no such limit.
    pub(super) largest_in_memory: Option<u64>,
    /// Count of `Memory` and `Spilling` results (the latter still hold their bytes), kept so
    /// stats and the threshold check are O(1).
    in_memory: usize,
    /// Their bytes.
    in_memory_bytes: u64,
    /// Bytes of `Spilling` results: already on their way out, so a concurrent spill does not
    /// pick more victims for the same excess.
    spilling_bytes: u64,
    /// Count of `Spilled` results.
    spilled: usize,
    /// Their bytes.
    spilled_bytes: u64,
}

/// One held result.
pub(super) struct Entry {
    /// Last use. For `Place::Memory` it is also the entry's key in `Ledger::lru`.
    tick: u64,
    /// Size of the result, kept for spilled ones whose bytes are not at hand.
    len: u64,
    pub(super) place: Place,
}

pub(super) enum Place {
    Memory(Data),
    /// Its file `serial` is being written outside the lock; still served from memory.
    Spilling {
        data: Data,
        serial: u64,
    },
    /// Only in the file `serial`.
    Spilled {
        serial: u64,
    },
}

/// What a reader must do to get a result.
pub(super) enum Lookup {
    Absent,
    InMemory(Data),
    /// Read the file `serial`, which should hold `len` bytes.
    Spilled {
        serial: u64,
        len: u64,
    },
}

/// A result picked for spilling, with the bytes to write.
pub(super) struct Victim {
    pub(super) id: TaskId,
    pub(super) serial: u64,
    pub(super) len: u64,
    pub(super) data: Data,
}

impl Ledger {
    pub(super) fn new(spill_above: Option<u64>) -> Ledger {
        Ledger {
            entries: IdMap::default(),
            lru: BTreeMap::new(),
            next_tick: 0,
            next_serial: 0,
            spill_above,
            largest_in_memory: None,
            in_memory: 0,
            in_memory_bytes: 0,
            spilling_bytes: 0,
            spilled: 0,
            spilled_bytes: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        let tick = self.next_tick;
        self.next_tick += 1;
        tick
    }

    /// Bytes that will stay in memory once the spills under way finish.
    fn staying_bytes(&self) -> u64 {
        self.in_memory_bytes - self.spilling_bytes
    }

    /// The level to spill down to, if memory is above the threshold.
    pub(super) fn spill_target(&self) -> Option<u64> {
        self.spill_above
            .filter(|&limit| self.staying_bytes() > limit)
            .map(low_water_mark)
    }

    /// Whether a result read back from disk may stay in memory: only under the spill target,
    /// so that reading never triggers another spill. Without a threshold, results spilled by
    /// `spill_until` (memory pressure) stay on disk.
    fn has_room_for(&self, len: u64) -> bool {
        !self.too_large_to_hold(len)
            && self
                .spill_above
                .is_some_and(|limit| self.in_memory_bytes.saturating_add(len) <= low_water_mark(limit))
    }

    /// Whether a result of `len` bytes is too large to keep in memory at all.
    pub(super) fn too_large_to_hold(&self, len: u64) -> bool {
        self.largest_in_memory.is_some_and(|max| len > max)
    }

    /// Returns the serial of a spill file the replaced result leaves behind.
    pub(super) fn on_put(&mut self, id: TaskId, data: Data) -> Option<u64> {
        let tick = self.tick();
        let len = data.len() as u64;
        let entry = Entry {
            tick,
            len,
            place: Place::Memory(data),
        };
        let stale = self.entries.insert(id, entry).and_then(|old| self.forget(id, old));
        self.lru.insert(tick, id);
        self.in_memory += 1;
        self.in_memory_bytes += len;
        stale
    }

    /// A result too large to hold is put: it is held as being spilled (served from memory
    /// until its file, `serial` returned here, is written), never in the LRU order. Also
    /// returns the serial of a spill file the replaced result leaves behind.
    pub(super) fn on_put_to_disk(&mut self, id: TaskId, data: Data) -> (Option<u64>, u64) {
        let tick = self.tick();
        let len = data.len() as u64;
        let serial = self.next_serial;
        self.next_serial += 1;
        let entry = Entry {
            tick,
            len,
            place: Place::Spilling { data, serial },
        };
        let stale = self.entries.insert(id, entry).and_then(|old| self.forget(id, old));
        self.in_memory += 1;
        self.in_memory_bytes += len;
        self.spilling_bytes += len;
        (stale, serial)
    }

    /// A fresh spill-file serial for a result that arrives as a file ([`Ledger::on_put_file`]):
    /// taken before the file is moved to its name, so the name is never anyone else's.
    pub(super) fn reserve_serial(&mut self) -> u64 {
        let serial = self.next_serial;
        self.next_serial += 1;
        serial
    }

    /// A result that was written to a file by its maker is now the spill file `serial`
    /// (reserved with [`Ledger::reserve_serial`]): held spilled from the start, never in
    /// memory. Returns the serial of a spill file the replaced result leaves behind.
    pub(super) fn on_put_file(&mut self, id: TaskId, serial: u64, len: u64) -> Option<u64> {
        debug_assert!(serial < self.next_serial, "the serial of a file put was reserved");
        let tick = self.tick();
        let entry = Entry {
            tick,
            len,
            place: Place::Spilled { serial },
        };
        let stale = self.entries.insert(id, entry).and_then(|old| self.forget(id, old));
        self.spilled += 1;
        self.spilled_bytes += len;
        stale
    }

    pub(super) fn on_get(&mut self, id: TaskId) -> Lookup {
        let tick = self.tick();
        let Some(entry) = self.entries.get_mut(&id) else {
            return Lookup::Absent;
        };
        let old_tick = std::mem::replace(&mut entry.tick, tick);
        match &entry.place {
            Place::Memory(data) => {
                let data = Arc::clone(data);
                self.lru.remove(&old_tick);
                self.lru.insert(tick, id);
                Lookup::InMemory(data)
            }
            Place::Spilling { data, .. } => Lookup::InMemory(Arc::clone(data)),
            Place::Spilled { serial } => Lookup::Spilled {
                serial: *serial,
                len: entry.len,
            },
        }
    }

    pub(super) fn is_spilled_as(&self, id: TaskId, serial: u64) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|e| matches!(e.place, Place::Spilled { serial: s } if s == serial))
    }

    /// A reader got `data` back from the file `serial`. Returns whether the result is held in
    /// memory again, in which case the caller deletes the file.
    pub(super) fn on_read_back(&mut self, id: TaskId, serial: u64, data: &Data) -> bool {
        let len = data.len() as u64;
        if !self.is_spilled_as(id, serial) || !self.has_room_for(len) {
            return false;
        }
        let tick = self.tick();
        let entry = self.entries.get_mut(&id).expect("is_spilled_as just found the entry");
        entry.tick = tick;
        entry.place = Place::Memory(Arc::clone(data));
        self.lru.insert(tick, id);
        self.spilled -= 1;
        self.spilled_bytes -= len;
        self.in_memory += 1;
        self.in_memory_bytes += len;
        true
    }

    /// Returns the serial of the spill file to delete, if any.
    pub(super) fn on_remove(&mut self, id: TaskId) -> Option<u64> {
        let entry = self.entries.remove(&id)?;
        self.forget(id, entry)
    }

    /// Returns the spill files to delete. Spills under way find their entries gone and delete
    /// their own files.
    pub(super) fn on_clear(&mut self) -> Vec<(TaskId, u64)> {
        let stale = self
            .entries
            .drain()
            .filter_map(|(id, entry)| match entry.place {
                Place::Spilled { serial } => Some((id, serial)),
                Place::Memory(_) | Place::Spilling { .. } => None,
            })
            .collect();
        self.lru.clear();
        self.in_memory = 0;
        self.in_memory_bytes = 0;
        self.spilling_bytes = 0;
        self.spilled = 0;
        self.spilled_bytes = 0;
        stale
    }

    /// Takes an entry already out of `entries` off the books; returns its file's serial if
    /// it was spilled.
    fn forget(&mut self, id: TaskId, entry: Entry) -> Option<u64> {
        match entry.place {
            Place::Memory(_) => {
                let listed = self.lru.remove(&entry.tick);
                debug_assert_eq!(listed, Some(id), "a Memory entry is in lru under its tick");
                self.in_memory -= 1;
                self.in_memory_bytes -= entry.len;
                None
            }
            Place::Spilling { .. } => {
                self.in_memory -= 1;
                self.in_memory_bytes -= entry.len;
                self.spilling_bytes -= entry.len;
                None
            }
            Place::Spilled { serial } => {
                self.spilled -= 1;
                self.spilled_bytes -= entry.len;
                Some(serial)
            }
        }
    }

    /// Marks least recently used results `Spilling` until at most `target` bytes will stay
    /// in memory, and hands them out for writing.
    pub(super) fn pick_victims(&mut self, target: u64) -> Vec<Victim> {
        let mut victims = Vec::new();
        while self.staying_bytes() > target {
            let Some((_, id)) = self.lru.pop_first() else {
                break;
            };
            let entry = self.entries.get_mut(&id).expect("lru names only held entries");
            let Place::Memory(data) = &entry.place else {
                unreachable!("lru names only entries in Place::Memory");
            };
            let data = Arc::clone(data);
            let serial = self.next_serial;
            self.next_serial += 1;
            entry.place = Place::Spilling {
                data: Arc::clone(&data),
                serial,
            };
            self.spilling_bytes += entry.len;
            victims.push(Victim {
                id,
                serial,
                len: entry.len,
                data,
            });
        }
        victims
    }

    /// The file `serial` of `id` is complete. Returns false if the entry was removed or
    /// replaced meanwhile: then the file belongs to nobody and the caller deletes it.
    pub(super) fn on_spill_written(&mut self, id: TaskId, serial: u64) -> bool {
        let Some(entry) = self.entries.get_mut(&id) else {
            return false;
        };
        if !matches!(entry.place, Place::Spilling { serial: s, .. } if s == serial) {
            return false;
        }
        entry.place = Place::Spilled { serial };
        self.spilling_bytes -= entry.len;
        self.in_memory -= 1;
        self.in_memory_bytes -= entry.len;
        self.spilled += 1;
        self.spilled_bytes += entry.len;
        true
    }

    /// The file `serial` of `id` could not be written: the result stays in memory, in its LRU
    /// place (or later, if it was read meanwhile).
    pub(super) fn on_spill_failed(&mut self, id: TaskId, serial: u64) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let Place::Spilling { data, serial: s } = &entry.place else {
            return;
        };
        if *s != serial {
            return;
        }
        entry.place = Place::Memory(Arc::clone(data));
        self.spilling_bytes -= entry.len;
        self.lru.insert(entry.tick, id);
    }

    pub(super) fn stats(&self) -> StoreStats {
        StoreStats {
            in_memory: self.in_memory,
            in_memory_bytes: self.in_memory_bytes,
            spilled: self.spilled,
            spilled_bytes: self.spilled_bytes,
        }
    }

    /// Recounts everything from `entries` and checks the cached counters and the LRU index.
    #[cfg(test)]
    pub(super) fn sanity_check(&self) {
        let mut recount = StoreStats::default();
        let mut spilling_bytes = 0;
        let mut in_lru = 0;
        for (id, entry) in &self.entries {
            assert!(entry.tick < self.next_tick, "{id}: tick from the future");
            match &entry.place {
                Place::Memory(data) => {
                    assert_eq!(data.len() as u64, entry.len, "{id}: len");
                    assert_eq!(self.lru.get(&entry.tick), Some(id), "{id}: not in lru");
                    recount.in_memory += 1;
                    recount.in_memory_bytes += entry.len;
                    in_lru += 1;
                }
                Place::Spilling { data, serial } => {
                    assert_eq!(data.len() as u64, entry.len, "{id}: len");
                    assert!(*serial < self.next_serial, "{id}: serial from the future");
                    recount.in_memory += 1;
                    recount.in_memory_bytes += entry.len;
                    spilling_bytes += entry.len;
                }
                Place::Spilled { serial } => {
                    assert!(*serial < self.next_serial, "{id}: serial from the future");
                    recount.spilled += 1;
                    recount.spilled_bytes += entry.len;
                }
            }
        }
        assert_eq!(recount, self.stats(), "cached counters");
        assert_eq!(spilling_bytes, self.spilling_bytes, "spilling_bytes");
        assert_eq!(in_lru, self.lru.len(), "lru holds exactly the Memory entries");
    }
}

/// 80% of the threshold: spilling goes this far below it so that it does not run on every put.
fn low_water_mark(spill_above: u64) -> u64 {
    // u128: `spill_above * 4` may not fit in a u64.
    (u128::from(spill_above) * 4 / 5) as u64
}
