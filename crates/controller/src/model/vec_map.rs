//! `VecMap`: an ordered map kept as a sorted vector, for the small maps every object of the
//! graph holds (a definition's resources and volume definitions: one to three entries, almost
//! always). A `BTreeMap` allocates a node with room for eleven entries for the first one; with
//! 10,000 resource definitions that was a third of the controller's memory. A `Vec` makes room
//! for four entries at the first insert, so a small map grows one entry at a time instead
//! (at 100,000 definitions the spare room of the satellites' per-volume reports alone was
//! over 100 MiB).

use std::borrow::Borrow;

/// Up to this many entries a map grows one entry at a time, so it holds no spare room; past
/// it, as a `Vec` does (doubling), so a map that does grow large is not copied on every insert.
const EXACT_UP_TO: usize = 8;

/// An ordered map as a sorted vector: lookups are binary searches, inserts and removes shift.
/// Meant for a handful of entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> VecMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    fn position<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.position(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.position(key).ok().map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.position(key).is_ok()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                if self.entries.len() == self.entries.capacity() && self.entries.len() < EXACT_UP_TO
                {
                    // `Vec` grows a vector from nothing to room for four entries: three
                    // wasted slots in the map of a definition's one volume definition or of a
                    // node's report of a resource's one volume.
                    self.entries.reserve_exact(1);
                }
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.position(key).ok().map(|i| self.entries.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    pub fn last_key_value(&self) -> Option<(&K, &V)> {
        self.entries.last().map(|(k, v)| (k, v))
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for VecMap<K, V> {
    type Output = V;

    /// Panics when the key is absent, as `BTreeMap`'s does.
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for the key")
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = VecMap::new();
        for (key, value) in iter {
            map.insert(key, value);
        }
        map
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_map_holds_no_spare_room() {
        let mut map = VecMap::new();
        for i in 0..EXACT_UP_TO {
            map.insert(i, [0u8; 100]);
            assert_eq!(map.entries.capacity(), i + 1);
        }
        for i in EXACT_UP_TO..100 {
            map.insert(i, [0u8; 100]);
        }
        assert_eq!(map.len(), 100);
        assert!(map.entries.capacity() < 2 * 100);
    }

    #[test]
    fn behaves_like_an_ordered_map() {
        let mut map = VecMap::new();
        assert_eq!(map.insert(3, "c"), None);
        assert_eq!(map.insert(1, "a"), None);
        assert_eq!(map.insert(2, "b"), None);
        assert_eq!(map.insert(2, "B"), Some("b"));
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(map.get(&2), Some(&"B"));
        assert!(map.contains_key(&3) && !map.contains_key(&4));
        assert_eq!(map.remove(&1), Some("a"));
        assert_eq!(map.remove(&1), None);
        assert_eq!(map.len(), 2);
        assert_eq!(map.last_key_value(), Some((&3, &"c")));
        map.retain(|k, _| *k != 3);
        assert_eq!(map.values().copied().collect::<Vec<_>>(), ["B"]);
        let collected: VecMap<_, _> = [(5, 'e'), (4, 'd')].into_iter().collect();
        assert_eq!(collected.entries.capacity(), 2);
        assert_eq!(
            collected.iter().collect::<Vec<_>>(),
            [(&4, &'d'), (&5, &'e')]
        );
    }
}
