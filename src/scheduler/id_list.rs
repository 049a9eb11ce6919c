//! A short list of ids that costs no heap allocation while it holds at most one.
//!
//! Most tasks have one input, one dependent, one holder and one client that wants them;
//! a `Vec` would spend a 24-byte header and a heap block on each of those. This list is
//! 16 bytes, holds one id inline, and keeps a boxed `Vec` only from two ids on.

use std::ops::Deref;

/// See the module doc. Reads as a slice (`Deref<Target = [T]>`); the order of ids is kept by
/// `push` and `retain`, not by `remove_item`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct IdList<T>(Repr<T>);

/// The canonical form: `Many` holds two ids or more, so equal lists have equal forms.
#[derive(Clone, Debug, PartialEq)]
enum Repr<T> {
    Empty,
    One(T),
    /// Boxed, so the list stays two words; the second indirection is paid only by lists of
    /// two or more.
    #[allow(clippy::box_collection)] // on purpose: see above
    Many(Box<Vec<T>>),
}

impl<T> Default for IdList<T> {
    fn default() -> Self {
        IdList(Repr::Empty)
    }
}

impl<T: Copy + PartialEq> IdList<T> {
    pub fn new() -> Self {
        IdList(Repr::Empty)
    }

    pub fn push(&mut self, id: T) {
        self.0 = match std::mem::replace(&mut self.0, Repr::Empty) {
            Repr::Empty => Repr::One(id),
            Repr::One(a) => Repr::Many(Box::new(vec![a, id])),
            Repr::Many(mut v) => {
                v.push(id);
                Repr::Many(v)
            }
        };
    }

    /// Removes one occurrence of `id`, moving the last id into its place.
    pub fn remove_item(&mut self, id: T) -> bool {
        let Some(pos) = self.iter().position(|x| *x == id) else {
            return false;
        };
        match &mut self.0 {
            Repr::Many(v) => {
                v.swap_remove(pos);
                self.normalize();
            }
            _ => self.0 = Repr::Empty,
        }
        true
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        match &mut self.0 {
            Repr::Empty => {}
            Repr::One(a) => {
                if !keep(a) {
                    self.0 = Repr::Empty;
                }
            }
            Repr::Many(v) => {
                v.retain(keep);
                self.normalize();
            }
        }
    }

    pub fn clear(&mut self) {
        self.0 = Repr::Empty;
    }

    /// Back to the canonical form after a `Many` shrank.
    fn normalize(&mut self) {
        if let Repr::Many(v) = &self.0 {
            match v.len() {
                0 => self.0 = Repr::Empty,
                1 => self.0 = Repr::One(v[0]),
                _ => {}
            }
        }
    }

    /// Whether the form is canonical, for sanity checks.
    #[cfg(test)]
    pub fn is_canonical(&self) -> bool {
        !matches!(&self.0, Repr::Many(v) if v.len() < 2)
    }
}

impl<T> Deref for IdList<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.0 {
            Repr::Empty => &[],
            Repr::One(a) => std::slice::from_ref(a),
            Repr::Many(v) => v,
        }
    }
}

impl<T: Copy + PartialEq> FromIterator<T> for IdList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut list = IdList::new();
        for id in iter {
            list.push(id);
        }
        list
    }
}

impl<'a, T> IntoIterator for &'a IdList<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T> IntoIterator for IdList<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        match self.0 {
            Repr::Empty => IntoIter::Inline(None.into_iter()),
            Repr::One(a) => IntoIter::Inline(Some(a).into_iter()),
            Repr::Many(v) => IntoIter::Heap(v.into_iter()),
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
}
