//! The scheduler's table of tasks: a dense slab indexed by [`TaskId`], and the index from
//! keys to ids, which borrows each key from its task instead of holding a second copy.
//!
//! It owns the numbering of tasks. A task id is `generation << 32 | slot`: slots are reused
//! once their task is forgotten, and the generation makes the new id differ from the old
//! one, so a late message about a forgotten task (a worker's `Finished` after a `Cancel`)
//! never reaches the task that took its slot. It knows nothing of task states.

use crate::protocol::TaskId;
use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};
use std::ops::{Index, IndexMut};

/// What the table needs from what it stores: the key it is found by.
pub(crate) trait Keyed {
    fn key(&self) -> &str;
}

/// Tasks by id and by key. See the module doc.
#[derive(Debug)]
pub(crate) struct TaskTable<T> {
    /// The tasks, by slot. Inline rather than boxed: a slot costs its size and nothing more,
    /// where a hash table of boxes costs a bucket, a box header and spare buckets besides.
    slots: Vec<Option<T>>,
    /// The current generation of each slot: the high half of the id of the task in it.
    generations: Vec<u32>,
    /// Empty slots, reused before the table grows.
    free: Vec<u32>,
    /// Slots by the hash of their task's key; the keys themselves live in the tasks. Slots
    /// rather than ids: half the size, and the slot's generation is at hand anyway.
    by_key: HashTable<u32>,
    /// Keys come from clients: a seeded hasher keeps them from choosing collisions.
    hasher: RandomState,
    len: usize,
}

impl<T> Default for TaskTable<T> {
    fn default() -> Self {
        TaskTable {
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            by_key: HashTable::new(),
            hasher: RandomState::new(),
            len: 0,
        }
    }
}

fn split(id: TaskId) -> (usize, u32) {
    (id.0 as u32 as usize, (id.0 >> 32) as u32)
}

impl<T: Keyed> TaskTable<T> {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, id: &TaskId) -> Option<&T> {
        let (slot, generation) = split(*id);
        if self.generations.get(slot) != Some(&generation) {
            return None;
        }
        self.slots[slot].as_ref()
    }

    pub fn get_mut(&mut self, id: &TaskId) -> Option<&mut T> {
        let (slot, generation) = split(*id);
        if self.generations.get(slot) != Some(&generation) {
            return None;
        }
        self.slots[slot].as_mut()
    }

    pub fn contains_key(&self, id: &TaskId) -> bool {
        self.get(id).is_some()
    }

    /// The id of the task with this key.
    pub fn id_of(&self, key: &str) -> Option<TaskId> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let slot = *self.by_key.find(hash, |slot| slot_key(slots, *slot) == key)?;
        Some(self.id_at(slot))
    }

    /// The id of the task in `slot`.
    fn id_at(&self, slot: u32) -> TaskId {
        TaskId(((self.generations[slot as usize] as u64) << 32) | slot as u64)
    }

    pub fn contains_key_str(&self, key: &str) -> bool {
        self.id_of(key).is_some()
    }

    /// Stores a task whose key is not known yet, and numbers it.
    pub fn insert(&mut self, task: T) -> TaskId {
        debug_assert!(!self.contains_key_str(task.key()), "keys are unique");
        let hash = self.hasher.hash_one(task.key());
        let slot = match self.free.pop() {
            Some(slot) => {
                debug_assert!(self.slots[slot as usize].is_none(), "free slots are empty");
                self.slots[slot as usize] = Some(task);
                slot
            }
            None => {
                let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 tasks are known at once");
                self.slots.push(Some(task));
                self.generations.push(0);
                slot
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_key
            .insert_unique(hash, slot, |slot| hasher.hash_one(slot_key(slots, *slot)));
        self.len += 1;
        self.id_at(slot)
    }

    /// Forgets a task; its id will not be given out again (until the generation wraps).
    pub fn remove(&mut self, id: &TaskId) -> Option<T> {
        self.get(id)?;
        let (slot, _) = split(*id);
        let task = self.slots[slot].take().expect("checked above");
        let hash = self.hasher.hash_one(task.key());
        match self.by_key.find_entry(hash, |x| *x as usize == slot) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => panic!("task {id} was missing from the key index"),
        }
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        self.free.push(slot as u32);
        self.len -= 1;
        Some(task)
    }

    /// Forgets every task. Generations move on, so no old id finds a new task.
    pub fn clear(&mut self) {
        for (slot, task) in self.slots.iter_mut().enumerate() {
            if task.take().is_some() {
                self.generations[slot] = self.generations[slot].wrapping_add(1);
                self.free.push(slot as u32);
            }
        }
        self.by_key.clear();
        self.len = 0;
    }

    pub fn iter(&self) -> impl Iterator<Item = (TaskId, &T)> {
        self.slots
            .iter()
            .zip(&self.generations)
            .enumerate()
            .filter_map(|(slot, (task, generation))| {
                task.as_ref()
                    .map(|t| (TaskId(((*generation as u64) << 32) | slot as u64), t))
            })
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
    }

    /// Checks that the key index and the slots agree.
    #[cfg(test)]
    pub fn sanity_check(&self) {
        assert_eq!(self.by_key.len(), self.len, "key index size");
        assert_eq!(self.slots.iter().flatten().count(), self.len, "occupied slots");
        assert_eq!(self.slots.len() - self.len, self.free.len(), "free list size");
        for &slot in &self.free {
            assert!(self.slots[slot as usize].is_none(), "free slot {slot} is occupied");
        }
        for (id, task) in self.iter() {
            assert_eq!(self.id_of(task.key()), Some(id), "key index of {}", task.key());
        }
    }
}

/// The key of the task in `slot`, for the index, which only holds occupied slots.
fn slot_key<T: Keyed>(slots: &[Option<T>], slot: u32) -> &str {
    slots[slot as usize]
        .as_ref()
        .expect("the key index names stored tasks")
        .key()
}

impl<T: Keyed> Index<&TaskId> for TaskTable<T> {
    type Output = T;

    fn index(&self, id: &TaskId) -> &T {
        self.get(id).unwrap_or_else(|| panic!("task {id} is not known"))
    }
}

impl<T: Keyed> IndexMut<&TaskId> for TaskTable<T> {
    fn index_mut(&mut self, id: &TaskId) -> &mut T {
        self.get_mut(id).unwrap_or_else(|| panic!("task {id} is not known"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Keyed for String {
        fn key(&self) -> &str {
            self
        }
    }

    #[test]
    fn a_reused_slot_gets_a_new_id_and_the_old_id_finds_nothing() {
        let mut table = TaskTable::default();
        let a = table.insert("a".to_string());
        let b = table.insert("b".to_string());
        assert_eq!((a, b), (TaskId(0), TaskId(1)));
        assert_eq!(table.remove(&a).as_deref(), Some("a"));
        let c = table.insert("c".to_string());
        assert_ne!(c, a, "a reused slot has a new generation");
        assert_eq!(table.get(&a), None);
        assert_eq!(table.remove(&a), None);
        assert_eq!(table[&c], "c");
        assert_eq!(table.id_of("a"), None);
        assert_eq!(table.id_of("c"), Some(c));
        assert_eq!(table.len(), 2);
        table.sanity_check();
    }
}
