//! A short list of ids that costs no heap allocation while it holds at most one, and
//! finds or removes an id in constant time once it is long.
//!
//! Most tasks have one input, one dependent, one holder and one client that wants them;
//! a `Vec` would spend a 24-byte header and a heap block on each of those. This list is
//! 16 bytes, holds one id inline, and keeps a boxed `Vec` only from two ids on. A list that
//! grows past [`INDEX_FROM`] ids (the dependents of an input shared by 100,000 tasks)
//! also keeps an index of where each id is, so removing one of its ids (a dependent
//! forgotten) or asking whether it holds one costs the same whatever its length: a scan
//! would make forgetting every dependent of such an input quadratic.
//!
//! It must never depend on the order of ids beyond what `push` and `retain` keep.

use crate::idmap::IdMap;
use std::hash::Hash;
use std::ops::Deref;

/// A list growing to this many ids gets an index.
const INDEX_FROM: usize = 32;

/// An indexed list shrinking to this many ids drops its index (below `INDEX_FROM`, so a list
/// moving around one size does not build and drop its index on every change).
const UNINDEX_AT: usize = 16;

/// See the module doc. Reads as a slice (`Deref<Target = [T]>`); the order of ids is kept by
/// `push` and `retain`, not by `remove_item`.
#[derive(Clone, Debug)]
pub(crate) struct IdList<T: Copy + Eq + Hash>(Repr<T>);

/// The canonical forms: `Many` holds two ids or more, `Indexed` more than `UNINDEX_AT`.
#[derive(Clone, Debug)]
enum Repr<T: Copy + Eq + Hash> {
    Empty,
    One(T),
    /// Boxed, so the list stays two words; the second indirection is paid only by lists of
    /// two or more.
    #[allow(clippy::box_collection)] // on purpose: see above
    Many(Box<Vec<T>>),
    Indexed(Box<Indexed<T>>),
}

/// A long list with the positions of its ids.
#[derive(Clone, Debug)]
struct Indexed<T: Copy + Eq + Hash> {
    ids: Vec<T>,
    /// The position of one occurrence of each id.
    first: IdMap<T, u32>,
    /// The positions of the other occurrences of ids listed more than once (a task that
    /// names one input twice is a dependent twice): rare, so out of `first`.
    more: IdMap<T, Vec<u32>>,
}

impl<T: Copy + Eq + Hash> Indexed<T> {
    fn new(ids: Vec<T>) -> Self {
        let mut list = Indexed {
            first: IdMap::with_capacity_and_hasher(ids.len(), Default::default()),
            more: IdMap::default(),
            ids: Vec::with_capacity(ids.len()),
        };
        for id in ids {
            list.push(id);
        }
        list
    }

    fn push(&mut self, id: T) {
        let pos = self.ids.len() as u32;
        self.ids.push(id);
        if let std::collections::hash_map::Entry::Vacant(e) = self.first.entry(id) {
            e.insert(pos);
        } else {
            self.more.entry(id).or_default().push(pos);
        }
    }

    /// Removes one occurrence of `id`, moving the last id into its place.
    fn remove(&mut self, id: T) -> bool {
        let pos = match self.more.get_mut(&id) {
            Some(others) => {
                let pos = others.pop().expect("`more` holds no empty list");
                if others.is_empty() {
                    self.more.remove(&id);
                }
                pos
            }
            None => match self.first.remove(&id) {
                Some(pos) => pos,
                None => return false,
            },
        };
        let last = (self.ids.len() - 1) as u32;
        self.ids.swap_remove(pos as usize);
        if pos != last {
            // The id that was last now sits at `pos`: its record follows it.
            let moved = self.ids[pos as usize];
            match self.first.get_mut(&moved) {
                Some(p) if *p == last => *p = pos,
                _ => {
                    let others = self.more.get_mut(&moved).expect("every position is recorded");
                    let p = others
                        .iter_mut()
                        .find(|p| **p == last)
                        .expect("every position is recorded");
                    *p = pos;
                }
            }
        }
        true
    }

    /// Whether every position is recorded once and every record is right.
    #[cfg(test)]
    fn is_consistent(&self) -> bool {
        let mut recorded = vec![false; self.ids.len()];
        let records = self
            .first
            .iter()
            .map(|(id, p)| (id, *p))
            .chain(self.more.iter().flat_map(|(id, ps)| ps.iter().map(move |p| (id, *p))));
        for (id, p) in records {
            let p = p as usize;
            if p >= self.ids.len() || recorded[p] || self.ids[p] != *id {
                return false;
            }
            recorded[p] = true;
        }
        recorded.into_iter().all(|r| r) && self.more.values().all(|ps| !ps.is_empty())
    }
}

impl<T: Copy + Eq + Hash> Default for IdList<T> {
    fn default() -> Self {
        IdList(Repr::Empty)
    }
}

impl<T: Copy + Eq + Hash> PartialEq for IdList<T> {
    /// Lists are equal when they hold the same ids in the same order, whatever their form.
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Copy + Eq + Hash> IdList<T> {
    pub fn new() -> Self {
        IdList(Repr::Empty)
    }

    pub fn push(&mut self, id: T) {
        self.0 = match std::mem::replace(&mut self.0, Repr::Empty) {
            Repr::Empty => Repr::One(id),
            Repr::One(a) => Repr::Many(Box::new(vec![a, id])),
            Repr::Many(mut v) if v.len() + 1 >= INDEX_FROM => {
                v.push(id);
                Repr::Indexed(Box::new(Indexed::new(*v)))
            }
            Repr::Many(mut v) => {
                v.push(id);
                Repr::Many(v)
            }
            Repr::Indexed(mut l) => {
                l.push(id);
                Repr::Indexed(l)
            }
        };
    }

    /// Whether `id` is in the list: a lookup once the list is long, not a scan. (The
    /// slice's `contains`, which `Deref` would offer, is shadowed on purpose.)
    pub fn contains(&self, id: &T) -> bool {
        match &self.0 {
            Repr::Indexed(l) => l.first.contains_key(id),
            _ => self.iter().any(|x| x == id),
        }
    }

    /// Removes one occurrence of `id`, moving the last id into its place.
    pub fn remove_item(&mut self, id: T) -> bool {
        let removed = match &mut self.0 {
            Repr::Indexed(l) => l.remove(id),
            Repr::Many(v) => match v.iter().position(|x| *x == id) {
                Some(pos) => {
                    v.swap_remove(pos);
                    true
                }
                None => false,
            },
            Repr::One(a) if *a == id => {
                self.0 = Repr::Empty;
                true
            }
            Repr::One(_) | Repr::Empty => false,
        };
        self.normalize();
        removed
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        match &mut self.0 {
            Repr::Empty => {}
            Repr::One(a) => {
                if !keep(a) {
                    self.0 = Repr::Empty;
                }
            }
            Repr::Many(v) => v.retain(keep),
            Repr::Indexed(l) => {
                let mut ids = std::mem::take(&mut l.ids);
                let before = ids.len();
                ids.retain(keep);
                if ids.len() == before {
                    l.ids = ids;
                } else {
                    **l = Indexed::new(ids);
                }
            }
        }
        self.normalize();
    }

    pub fn clear(&mut self) {
        self.0 = Repr::Empty;
    }

    /// Back to the canonical form after a list shrank.
    fn normalize(&mut self) {
        match &mut self.0 {
            Repr::Many(v) => match v.len() {
                0 => self.0 = Repr::Empty,
                1 => self.0 = Repr::One(v[0]),
                _ => {}
            },
            Repr::Indexed(l) if l.ids.len() <= UNINDEX_AT => {
                let ids = std::mem::take(&mut l.ids);
                self.0 = Repr::Many(Box::new(ids));
                self.normalize();
            }
            _ => {}
        }
    }

    /// Whether the form is canonical (and an index right), for sanity checks.
    #[cfg(test)]
    pub fn is_canonical(&self) -> bool {
        match &self.0 {
            Repr::Many(v) => (2..=INDEX_FROM).contains(&v.len()),
            Repr::Indexed(l) => l.ids.len() > UNINDEX_AT && l.is_consistent(),
            Repr::Empty | Repr::One(_) => true,
        }
    }
}

impl<T: Copy + Eq + Hash> Deref for IdList<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.0 {
            Repr::Empty => &[],
            Repr::One(a) => std::slice::from_ref(a),
            Repr::Many(v) => v,
            Repr::Indexed(l) => &l.ids,
        }
    }
}

impl<T: Copy + Eq + Hash> FromIterator<T> for IdList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut list = IdList::new();
        for id in iter {
            list.push(id);
        }
        list
    }
}

impl<'a, T: Copy + Eq + Hash> IntoIterator for &'a IdList<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Copy + Eq + Hash> IntoIterator for IdList<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        match self.0 {
            Repr::Empty => IntoIter::Inline(None.into_iter()),
            Repr::One(a) => IntoIter::Inline(Some(a).into_iter()),
            Repr::Many(v) => IntoIter::Heap(v.into_iter()),
            Repr::Indexed(l) => IntoIter::Heap(l.ids.into_iter()),
        }
    }
}

/// The ids of a list, by value.
pub(crate) enum IntoIter<T> {
    Inline(std::option::IntoIter<T>),
    Heap(std::vec::IntoIter<T>),
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self {
            IntoIter::Inline(i) => i.next(),
            IntoIter::Heap(i) => i.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_shrinks_through_every_form() {
        let mut l: IdList<u64> = IdList::new();
        assert!(l.is_empty());
        l.push(1);
        assert_eq!(&*l, &[1]);
        l.push(2);
        l.push(3);
        assert_eq!(&*l, &[1, 2, 3]);
        assert!(l.remove_item(1));
        assert_eq!(&*l, &[3, 2]);
        assert!(!l.remove_item(7));
        l.retain(|x| *x == 2);
        assert_eq!(&*l, &[2]);
        assert!(l.is_canonical());
        assert_eq!(l, [2].into_iter().collect());
        assert!(l.remove_item(2));
        assert_eq!(l, IdList::new());
        l.push(4);
        l.push(5);
        assert_eq!(l.into_iter().collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(std::mem::size_of::<IdList<u64>>(), 16);
    }

    /// A long list keeps its index right through pushes, removals (ids listed twice
    /// included), `retain` and the way back to the short forms, and equals a short list with
    /// the same ids.
    #[test]
    fn a_long_list_finds_and_removes_ids_through_its_index() {
        let mut l: IdList<u64> = (0..100).collect();
        l.push(7);
        l.push(7);
        assert!(l.is_canonical());
        assert!(l.contains(&99) && !l.contains(&100));
        assert!(l.remove_item(7) && l.remove_item(7) && l.remove_item(7));
        assert!(!l.remove_item(7) && !l.contains(&7));
        assert!(l.is_canonical());
        for i in (0..100).step_by(3) {
            l.remove_item(i);
            assert!(l.is_canonical(), "after removing {i}");
        }
        let mut expected: Vec<u64> = (0..100).filter(|i| i % 3 != 0 && *i != 7).collect();
        let mut held = l.to_vec();
        held.sort_unstable();
        assert_eq!(held, expected);
        l.retain(|x| *x < 40);
        expected.retain(|x| *x < 40);
        assert!(l.is_canonical());
        let mut held = l.to_vec();
        held.sort_unstable();
        assert_eq!(held, expected);
        while let Some(&x) = l.first() {
            assert!(l.remove_item(x));
            assert!(l.is_canonical());
        }
        assert_eq!(l, IdList::new());
        let short: IdList<u64> = (0..20).collect();
        let mut long: IdList<u64> = (0..40).collect();
        long.retain(|x| *x < 20);
        assert_eq!(long, short);
    }
}
