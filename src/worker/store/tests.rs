//! Tests of the result store: the ledger, spilling, and concurrent use.

use super::*;
use std::collections::{BTreeSet, HashMap};

impl Store {
    /// Checks the ledger and that the files on disk are exactly those of spilled results.
    /// Only meaningful when no operation is under way.
    fn sanity_check(&self) {
        let ledger = self.lock();
        ledger.sanity_check();
        let expected: BTreeSet<String> = ledger
            .entries
            .iter()
            .filter_map(|(id, entry)| match entry.place {
                Place::Spilled { serial } => Some(format!("{id}-{serial}.bin")),
                _ => None,
            })
            .collect();
        assert_eq!(files_in(&self.dir), expected, "files on disk");
    }

    fn is_spilled(&self, id: TaskId) -> bool {
        self.lock()
            .entries
            .get(&id)
            .is_some_and(|e| matches!(e.place, Place::Spilled { .. }))
    }
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                let e = e.expect("readable test directory");
                e.file_name().to_string_lossy().into_owned()
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    }
}

fn bytes(len: usize, fill: u8) -> Data {
    Arc::new(vec![fill; len])
}

fn scratch() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("spill");
    (tmp, dir)
}

#[test]
fn store_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Store>();
}

#[test]
fn put_then_get_returns_the_same_bytes() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir.clone(), None);
    let data = bytes(1000, 7);
    store.put(TaskId(1), data.clone()).unwrap();
    assert!(store.contains(TaskId(1)));
    assert!(!store.contains(TaskId(2)));
    let got = store.get(TaskId(1)).unwrap().expect("held");
    assert!(Arc::ptr_eq(&got, &data), "in memory, no copy");
    assert_eq!(store.get(TaskId(2)).unwrap(), None);
    assert!(!dir.exists(), "the directory is created only on the first spill");
    store.sanity_check();
}

#[test]
fn least_recently_used_results_are_spilled_first() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir, Some(300));
    for i in 1..=3 {
        store.put(TaskId(i), bytes(100, i as u8)).unwrap();
    }
    assert_eq!(store.stats().spilled, 0, "300 bytes do not exceed 300");
    store.get(TaskId(1)).unwrap(); // protects t1
    store.put(TaskId(4), bytes(100, 4)).unwrap(); // 400 > 300: down to 240
    assert!(!store.is_spilled(TaskId(1)));
    assert!(store.is_spilled(TaskId(2)));
    assert!(store.is_spilled(TaskId(3)));
    assert!(!store.is_spilled(TaskId(4)));
    store.sanity_check();
}

#[test]
fn the_result_just_put_is_spilled_only_if_it_alone_exceeds_the_target() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir, Some(300));
    store.put(TaskId(1), bytes(100, 1)).unwrap();
    store.put(TaskId(2), bytes(100, 2)).unwrap();
    store.put(TaskId(3), bytes(200, 3)).unwrap(); // 400: t1 goes, then t2 (200 <= 240)
    assert!(store.is_spilled(TaskId(1)) && store.is_spilled(TaskId(2)));
    assert!(!store.is_spilled(TaskId(3)));
    store.put(TaskId(4), bytes(250, 4)).unwrap(); // 450: t3 goes, t4 alone is 250 > 240
    assert!(store.is_spilled(TaskId(3)) && store.is_spilled(TaskId(4)));
    assert_eq!(store.stats().in_memory_bytes, 0);
    store.sanity_check();
}

/// A result too large to hold next to the memory limit goes straight to disk when it is
/// put, and the results already held stay where they are: before, it landed in memory (or
/// pushed every other result out first), and the next task's result crossed the kill line.
#[test]
fn a_result_too_large_to_hold_is_written_straight_to_disk() {
    let (_tmp, dir) = scratch();
    // As a worker's store under a 1000-byte limit: spill above 600, hold at most 350.
    let policy = crate::memory::MemoryPolicy::new(1000);
    let store = Store::new(dir.clone(), policy.spill_above()).with_largest_in_memory(policy.largest_held_result());
    store.put(TaskId(1), bytes(100, 1)).unwrap();
    store.put(TaskId(2), bytes(350, 2)).unwrap();
    assert_eq!(store.stats().spilled, 0, "350 bytes may be held");
    // 475 bytes alone: under the spill threshold, and with the others, still under it.
    store.put(TaskId(3), bytes(475, 3)).unwrap();
    assert!(store.is_spilled(TaskId(3)), "on disk as soon as it is stored");
    assert!(
        !store.is_spilled(TaskId(1)) && !store.is_spilled(TaskId(2)),
        "the others stay"
    );
    assert_eq!(store.stats().in_memory_bytes, 450);
    assert_eq!(files_in(&dir).len(), 1);
    store.sanity_check();
    // It reads back whole, and is not kept in memory for it.
    assert_eq!(*store.get(TaskId(3)).unwrap().expect("held"), vec![3; 475]);
    assert!(store.is_spilled(TaskId(3)));
    // Replaced by a small one, its file goes.
    store.put(TaskId(3), bytes(10, 4)).unwrap();
    assert!(!store.is_spilled(TaskId(3)));
    assert!(files_in(&dir).is_empty());
    store.sanity_check();
}

/// If its file cannot be written, a result too large to hold stays in memory, as any spill
/// that fails does.
#[test]
fn a_result_too_large_to_hold_stays_in_memory_if_its_file_cannot_be_written() {
    let (_tmp, dir) = scratch();
    fs::create_dir(&dir).unwrap();
    let obstacle = dir.join("t1-0.tmp");
    fs::create_dir(&obstacle).unwrap();
    let store = Store::new(dir.clone(), None).with_largest_in_memory(Some(100));
    store.put(TaskId(1), bytes(200, 1)).unwrap();
    assert!(!store.is_spilled(TaskId(1)));
    assert_eq!(*store.get(TaskId(1)).unwrap().expect("held"), vec![1; 200]);
    fs::remove_dir(&obstacle).unwrap();
    // Still held, and a pressure spill can take it later.
    assert_eq!(store.spill_until(0).unwrap(), 200);
    assert!(store.is_spilled(TaskId(1)));
    store.sanity_check();
}

#[test]
fn spilled_results_stay_readable_and_their_files_exist() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir.clone(), None);
    store.put(TaskId(5), bytes(64, 5)).unwrap();
    store.put(TaskId(6), bytes(32, 6)).unwrap();
    assert_eq!(store.spill_until(0).unwrap(), 96);
    assert_eq!(files_in(&dir).len(), 2);
    for name in files_in(&dir) {
        let content = fs::read(dir.join(&name)).unwrap();
        match name.split('-').next() {
            Some("t5") => assert_eq!(content, vec![5; 64]),
            Some("t6") => assert_eq!(content, vec![6; 32]),
            _ => panic!("unexpected spill file {name}"),
        }
    }
    assert_eq!(*store.get(TaskId(5)).unwrap().expect("held"), vec![5; 64]);
    assert!(store.contains(TaskId(6)));
    // No threshold: a result spilled under pressure is not pulled back into memory.
    assert!(store.is_spilled(TaskId(5)));
    store.sanity_check();
}

#[test]
fn a_result_read_back_stays_in_memory_only_if_there_is_room() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir.clone(), Some(1000)); // target 800
    store.put(TaskId(1), bytes(100, 1)).unwrap();
    store.put(TaskId(2), bytes(100, 2)).unwrap();
    store.spill_until(0).unwrap();
    store.put(TaskId(3), bytes(650, 3)).unwrap();

    assert_eq!(*store.get(TaskId(1)).unwrap().expect("held"), vec![1; 100]);
    assert!(!store.is_spilled(TaskId(1)), "650 + 100 <= 800");
    assert_eq!(*store.get(TaskId(2)).unwrap().expect("held"), vec![2; 100]);
    assert!(store.is_spilled(TaskId(2)), "750 + 100 > 800");
    assert_eq!(files_in(&dir).len(), 1, "t1's file went when it came back");
    store.sanity_check();
}

#[test]
fn remove_clear_and_drop_delete_the_files() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir.clone(), None);
    for i in 0..6 {
        store.put(TaskId(i), bytes(10, i as u8)).unwrap();
    }
    store.spill_until(0).unwrap();
    assert_eq!(files_in(&dir).len(), 6);

    store.remove(TaskId(0));
    store.remove(TaskId(99)); // unknown: fine
    assert!(!store.contains(TaskId(0)));
    assert_eq!(files_in(&dir).len(), 5);
    store.sanity_check();

    store.clear();
    assert_eq!(store.stats(), StoreStats::default());
    assert!(files_in(&dir).is_empty());
    store.sanity_check();

    store.put(TaskId(7), bytes(10, 7)).unwrap();
    store.put(TaskId(8), bytes(10, 8)).unwrap();
    store.spill_until(10).unwrap();
    assert_eq!(files_in(&dir).len(), 1);
    drop(store);
    assert!(!dir.exists(), "the store created the directory, so it removes it");
}

#[test]
fn drop_keeps_a_directory_it_did_not_create_and_files_it_did_not_write() {
    let (_tmp, dir) = scratch();
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("notes.txt"), b"mine").unwrap();
    let store = Store::new(dir.clone(), None);
    store.put(TaskId(1), bytes(10, 1)).unwrap();
    store.spill_until(0).unwrap();
    drop(store);
    assert_eq!(files_in(&dir), BTreeSet::from(["notes.txt".to_string()]));
}

#[test]
fn replacing_a_spilled_result_deletes_its_file() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir.clone(), None);
    store.put(TaskId(1), bytes(100, 1)).unwrap();
    store.spill_until(0).unwrap();
    assert_eq!(files_in(&dir).len(), 1);

    store.put(TaskId(1), bytes(40, 2)).unwrap();
    assert!(files_in(&dir).is_empty());
    assert_eq!(*store.get(TaskId(1)).unwrap().expect("held"), vec![2; 40]);
    assert_eq!(
        store.stats(),
        StoreStats {
            in_memory: 1,
            in_memory_bytes: 40,
            spilled: 0,
            spilled_bytes: 0
        }
    );
    store.sanity_check();
}

#[test]
fn spill_until_reports_the_bytes_it_spilled() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir, None);
    for i in 0..10 {
        store.put(TaskId(i), bytes(100, i as u8)).unwrap();
    }
    assert_eq!(store.spill_until(1000).unwrap(), 0, "already there");
    assert_eq!(store.spill_until(650).unwrap(), 400);
    assert_eq!(store.stats().in_memory_bytes, 600);
    for i in 0..4 {
        assert!(store.is_spilled(TaskId(i)), "t{i} is among the oldest");
    }
    assert_eq!(store.spill_until(0).unwrap(), 600);
    assert_eq!(store.spill_until(0).unwrap(), 0, "nothing left in memory");
    store.sanity_check();
}

#[test]
fn stats_count_results_and_bytes_by_place() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir, None);
    assert_eq!(store.stats(), StoreStats::default());
    store.put(TaskId(1), bytes(10, 1)).unwrap();
    store.put(TaskId(2), bytes(20, 2)).unwrap();
    store.put(TaskId(3), bytes(30, 3)).unwrap();
    store.spill_until(50).unwrap();
    assert_eq!(
        store.stats(),
        StoreStats {
            in_memory: 2,
            in_memory_bytes: 50,
            spilled: 1,
            spilled_bytes: 10
        }
    );
    store.remove(TaskId(1));
    store.remove(TaskId(3));
    assert_eq!(
        store.stats(),
        StoreStats {
            in_memory: 1,
            in_memory_bytes: 20,
            spilled: 0,
            spilled_bytes: 0
        }
    );
    store.sanity_check();
}

#[test]
fn spilling_goes_down_to_80_percent_and_then_waits_for_the_threshold() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir, Some(1000));
    for i in 0..10 {
        store.put(TaskId(i), bytes(100, 0)).unwrap();
    }
    assert_eq!(store.stats().spilled, 0, "1000 does not exceed 1000");
    store.put(TaskId(10), bytes(100, 0)).unwrap();
    assert_eq!(store.stats().in_memory_bytes, 800);
    assert_eq!(store.stats().spilled, 3);
    store.put(TaskId(11), bytes(100, 0)).unwrap();
    store.put(TaskId(12), bytes(100, 0)).unwrap();
    assert_eq!(store.stats().spilled, 3, "between 80% and 100%: no spill");
    store.put(TaskId(13), bytes(100, 0)).unwrap();
    assert_eq!(store.stats().spilled, 6);
    assert_eq!(store.stats().in_memory_bytes, 800);
    store.sanity_check();
}

#[test]
fn lowering_the_threshold_spills_at_once() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir, None);
    for i in 0..10 {
        store.put(TaskId(i), bytes(100, 0)).unwrap();
    }
    store.set_spill_above(Some(500));
    assert_eq!(store.stats().in_memory_bytes, 400);
    store.set_spill_above(None);
    store.put(TaskId(10), bytes(10_000, 0)).unwrap();
    assert_eq!(store.stats().spilled, 6, "no threshold, no spill");
    store.sanity_check();
}

#[test]
fn a_spill_directory_that_cannot_be_created_keeps_results_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("blocker");
    fs::write(&blocker, b"a file, not a directory").unwrap();
    let dir = blocker.join("spill");
    let store = Store::new(dir.clone(), Some(100));

    store.put(TaskId(1), bytes(200, 1)).unwrap(); // put still succeeds
    assert_eq!(store.stats().in_memory, 1);
    let err = store.spill_until(0).unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
    assert!(err.to_string().contains(&dir.display().to_string()), "{err}");
    assert_eq!(*store.get(TaskId(1)).unwrap().expect("held"), vec![1; 200]);
    store.lock().sanity_check(); // no directory to list
}

#[test]
fn a_failed_write_keeps_the_result_in_memory_and_names_the_file() {
    let (_tmp, dir) = scratch();
    fs::create_dir(&dir).unwrap();
    // The first spill's temporary name is taken by a directory: the write fails like a
    // full disk would.
    let obstacle = dir.join("t1-0.tmp");
    fs::create_dir(&obstacle).unwrap();
    let store = Store::new(dir.clone(), None);
    store.put(TaskId(1), bytes(50, 1)).unwrap();
    store.put(TaskId(2), bytes(50, 2)).unwrap();

    let err = store.spill_until(0).unwrap_err();
    assert!(matches!(err, StoreError::Write { .. }), "{err:?}");
    assert!(err.to_string().contains("t1-0.tmp"), "{err}");
    assert_eq!(store.stats().in_memory, 2, "t2 was not written either");
    assert!(!store.is_spilled(TaskId(2)));

    fs::remove_dir(&obstacle).unwrap();
    assert_eq!(store.spill_until(50).unwrap(), 50);
    assert!(store.is_spilled(TaskId(1)), "t1 kept its LRU place");
    store.sanity_check();
}

#[test]
fn a_spill_file_gone_or_damaged_is_an_error_naming_it() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir.clone(), None);
    store.put(TaskId(1), bytes(50, 1)).unwrap();
    store.put(TaskId(2), bytes(50, 2)).unwrap();
    store.spill_until(0).unwrap();

    fs::write(dir.join("t1-0.bin"), b"short").unwrap();
    let err = store.get(TaskId(1)).unwrap_err();
    assert!(matches!(err, StoreError::WrongSize { .. }), "{err:?}");
    assert!(err.to_string().contains("t1-0.bin"), "{err}");

    fs::remove_file(dir.join("t2-1.bin")).unwrap();
    let err = store.get(TaskId(2)).unwrap_err();
    assert!(matches!(err, StoreError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("t2-1.bin"), "{err}");
}

// The races of unlocked I/O, replayed step by step on the ledger.

#[test]
fn a_result_replaced_while_spilling_is_not_resurrected() {
    let mut ledger = Ledger::new(None);
    ledger.on_put(TaskId(1), bytes(60, 1));
    let victims = ledger.pick_victims(0);
    assert_eq!(victims.len(), 1);
    ledger.on_put(TaskId(1), bytes(30, 2)); // meanwhile
    assert!(
        !ledger.on_spill_written(TaskId(1), victims[0].serial),
        "stale: the caller deletes the file"
    );
    match ledger.on_get(TaskId(1)) {
        Lookup::InMemory(data) => assert_eq!(*data, vec![2; 30]),
        _ => panic!("the new result is in memory"),
    }
    ledger.sanity_check();
}

#[test]
fn a_result_removed_while_spilling_stays_removed() {
    let mut ledger = Ledger::new(None);
    ledger.on_put(TaskId(1), bytes(60, 1));
    ledger.on_put(TaskId(2), bytes(60, 2));
    let victims = ledger.pick_victims(0);
    assert_eq!(ledger.on_remove(TaskId(1)), None, "no file of its own yet");
    ledger.on_clear();
    for v in &victims {
        assert!(!ledger.on_spill_written(v.id, v.serial));
    }
    ledger.on_spill_failed(TaskId(1), victims[0].serial); // must not resurrect either
    assert!(ledger.entries.is_empty());
    ledger.sanity_check();
}

#[test]
fn a_result_respilled_after_read_back_gets_a_new_file() {
    let mut ledger = Ledger::new(Some(1000));
    ledger.on_put(TaskId(1), bytes(60, 1));
    let first = ledger.pick_victims(0).remove(0).serial;
    assert!(ledger.on_spill_written(TaskId(1), first));
    assert!(ledger.on_read_back(TaskId(1), first, &bytes(60, 1)));
    let second = ledger.pick_victims(0).remove(0).serial;
    assert_ne!(first, second, "deleting the old file must not hit the new one");
    ledger.sanity_check();
}

#[test]
fn concurrent_puts_gets_removes_and_spills_stay_consistent() {
    const THREADS: u64 = 4;
    const OPS: u64 = 3000;
    const SHARED_IDS: u64 = 48;
    const OWN_IDS: u64 = 16;

    // A result names its id and version, so a reader can tell a torn or foreign one.
    fn make(id: u64, version: u64) -> Data {
        let len = 16 + ((id * 7 + version * 13) % 900) as usize;
        let mut v = Vec::with_capacity(len);
        v.extend_from_slice(&id.to_le_bytes());
        v.extend_from_slice(&version.to_le_bytes());
        v.resize(len, version as u8);
        Arc::new(v)
    }
    fn version_of(id: u64, data: &[u8]) -> u64 {
        let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        assert_eq!(word(0), id, "result of another id");
        let version = word(8);
        assert_eq!(*make(id, version), data, "torn result of t{id}");
        version
    }

    // Each thread also owns a few ids that only it puts and removes, and knows what they
    // must hold, while the others keep spilling them: a removed or replaced result that
    // came back would show there. Results over 700 bytes (about a quarter) go straight to
    // disk when put.
    let (_tmp, dir) = scratch();
    let store = Store::new(dir.clone(), Some(8 * 1024)).with_largest_in_memory(Some(700));
    let outcomes: Vec<(HashMap<u64, u64>, u64)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let store = &store;
                s.spawn(move || {
                    let mut expected = HashMap::new();
                    let mut spilled = 0;
                    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (thread + 1);
                    for op in 0..OPS {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let own = rng & 1 == 0;
                        let id = if own {
                            1000 * (thread + 1) + rng % OWN_IDS
                        } else {
                            rng % SHARED_IDS
                        };
                        let version = thread * OPS + op;
                        match (rng >> 32) % 100 {
                            0..=39 => {
                                store.put(TaskId(id), make(id, version)).unwrap();
                                if own {
                                    expected.insert(id, version);
                                }
                            }
                            40..=79 => {
                                let got = store.get(TaskId(id)).unwrap().map(|d| version_of(id, &d));
                                if own {
                                    assert_eq!(got, expected.get(&id).copied(), "t{id}");
                                }
                            }
                            80..=89 => {
                                store.remove(TaskId(id));
                                if own {
                                    expected.remove(&id);
                                }
                            }
                            90..=95 => {
                                spilled += store.spill_until(rng % 4096).unwrap();
                            }
                            96..=98 => {
                                assert!(!own || store.contains(TaskId(id)) == expected.contains_key(&id));
                                let _ = store.stats();
                            }
                            _ => store.set_spill_above(Some(2048 + rng % 16384)),
                        }
                    }
                    (expected, spilled)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("no worker thread panics"))
            .collect()
    });
    store.sanity_check();
    for id in 0..SHARED_IDS {
        if let Some(data) = store.get(TaskId(id)).unwrap() {
            version_of(id, &data);
        }
    }
    for (thread, (expected, _)) in (0..THREADS).zip(&outcomes) {
        for id in (0..OWN_IDS).map(|i| 1000 * (thread + 1) + i) {
            let got = store.get(TaskId(id)).unwrap().map(|d| version_of(id, &d));
            assert_eq!(got, expected.get(&id).copied(), "t{id} at the end");
        }
    }
    store.sanity_check();
    assert!(
        outcomes.iter().map(|o| o.1).sum::<u64>() > 0,
        "the test exercised spilling"
    );
    drop(store);
    assert!(files_in(&dir).is_empty(), "no orphan files");
}

#[test]
fn a_million_tiny_results_with_a_few_spilled() {
    const N: u64 = 1_000_000;
    let (_tmp, dir) = scratch();
    let store = Store::new(dir.clone(), None);
    for i in 0..N {
        store.put(TaskId(i), Arc::new(i.to_le_bytes().to_vec())).unwrap();
    }
    for i in 0..10 {
        store.get(TaskId(i)).unwrap(); // now t10..t19 are the oldest
    }
    assert_eq!(store.spill_until(8 * (N - 10)).unwrap(), 80);
    assert!((10..20).all(|i| store.is_spilled(TaskId(i))));
    assert!(!store.is_spilled(TaskId(0)) && !store.is_spilled(TaskId(20)));
    assert_eq!(files_in(&dir).len(), 10);
    assert_eq!(*store.get(TaskId(15)).unwrap().expect("held"), 15u64.to_le_bytes());
    for i in (0..N).step_by(10) {
        store.remove(TaskId(i)); // t10 of the spilled ones
    }
    let stats = store.stats();
    assert_eq!(stats.in_memory + stats.spilled, (N - N / 10) as usize);
    assert_eq!(stats.spilled, 9);
    assert_eq!(files_in(&dir).len(), 9);
    store.sanity_check();
}

/// A spilled result is opened to be sent, not read back: it stays spilled, costs no memory,
/// and its file reads whole even when the store removes it meanwhile.
#[test]
fn a_spilled_result_is_opened_as_its_file_and_stays_on_disk() {
    let (_tmp, dir) = scratch();
    let store = Store::new(dir, Some(150));
    store.put(TaskId(1), bytes(100, 1)).unwrap();
    store.put(TaskId(2), bytes(100, 2)).unwrap();
    assert!(store.is_spilled(TaskId(1)));
    let in_memory = store.stats().in_memory_bytes;
    let Some(Source::File { mut file, len }) = store.open(TaskId(1)).unwrap() else {
        panic!("a spilled result opens as its file");
    };
    assert_eq!(len, 100);
    assert!(store.is_spilled(TaskId(1)), "not read back");
    assert_eq!(store.stats().in_memory_bytes, in_memory);
    store.remove(TaskId(1));
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut got).unwrap();
    assert_eq!(got, *bytes(100, 1));
    assert!(matches!(store.open(TaskId(2)).unwrap(), Some(Source::Memory(d)) if *d == *bytes(100, 2)));
    assert!(store.open(TaskId(1)).unwrap().is_none());
    store.sanity_check();
}

/// A file written by the result's maker.
fn result_file(tmp: &tempfile::TempDir, name: &str, content: &[u8]) -> ResultFile {
    let mut file = ResultFile::new(tmp.path().join(name));
    fs::write(file.path(), content).expect("writable test directory");
    file.wrote(content.len() as u64);
    file
}

/// A result that is already a file is moved into the spill folder, not copied or read: it is
/// held spilled with its size, opened as its file, read back by `get`, and deleted with it.
#[test]
fn a_result_put_as_a_file_is_moved_in_and_held_spilled() {
    let (tmp, dir) = scratch();
    let store = Store::new(dir.clone(), Some(1000));
    store.put(TaskId(1), bytes(100, 1)).unwrap();
    let file = result_file(&tmp, "stdout.part", &[7; 500]);
    let made = file.path().to_path_buf();
    assert_eq!(store.put_file(TaskId(2), file).unwrap(), 500);
    assert!(!made.exists(), "moved, not copied");
    assert!(store.is_spilled(TaskId(2)));
    assert_eq!(
        store.stats(),
        StoreStats {
            in_memory: 1,
            in_memory_bytes: 100,
            spilled: 1,
            spilled_bytes: 500,
        }
    );
    store.sanity_check();
    let Some(Source::File { mut file, len }) = store.open(TaskId(2)).unwrap() else {
        panic!("a result put as a file opens as its file");
    };
    assert_eq!(len, 500);
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut got).unwrap();
    assert_eq!(got, vec![7; 500]);
    assert_eq!(*store.get(TaskId(2)).unwrap().expect("held"), vec![7; 500]);
    store.sanity_check();
    store.remove(TaskId(2));
    store.sanity_check();
    drop(store);
    assert!(!dir.exists(), "its file went with it");
}

/// A file put for a result already held replaces it, and the old one's file is deleted.
#[test]
fn a_result_put_as_a_file_replaces_a_spilled_one() {
    let (tmp, dir) = scratch();
    let store = Store::new(dir, None);
    store.put_file(TaskId(1), result_file(&tmp, "a", b"first")).unwrap();
    store.put_file(TaskId(1), result_file(&tmp, "b", b"second!")).unwrap();
    assert_eq!(store.stats().spilled_bytes, 7);
    assert_eq!(*store.get(TaskId(1)).unwrap().expect("held"), b"second!".to_vec());
    store.sanity_check();
}

/// A result file the store never took (the task was killed, or the move failed) is deleted.
#[test]
fn a_result_file_not_taken_is_deleted() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = result_file(&tmp, "dropped", b"abc");
    let path = file.path().to_path_buf();
    drop(file);
    assert!(!path.exists());
    let store = Store::new(tmp.path().join("spill"), None);
    let missing = ResultFile::new(tmp.path().join("never-written"));
    let err = store.put_file(TaskId(1), missing).unwrap_err();
    assert!(matches!(err, StoreError::Move { .. }), "{err}");
    assert!(err.to_string().contains("never-written"), "{err}");
    assert!(!store.contains(TaskId(1)));
    store.sanity_check();
}
