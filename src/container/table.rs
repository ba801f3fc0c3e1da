//! The inode table of a mounted container: base inodes (numbered 1..=n from the
//! manifest) in a dense vector indexed by inode number, inodes created later in a
//! hash map. A hash map of every inode costs twice the memory (its bucket array
//! is a power of two, holding the nodes inline) and a hash per lookup; every
//! mounted container keeps its table for the mount's life.

use std::collections::HashMap;

use crate::container::inode::Ino;

/// A cheap hasher (FxHash's rotate-xor-multiply, 8 bytes at a time) for the
/// inode table and the mount-time path index: keys are small integers and paths
/// we produced ourselves, so SipHash's resistance to chosen keys buys nothing and
/// costs a good part of the mount time of a 50,000-entry template.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A hash map using [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;

/// Inode number -> node. Methods mirror `HashMap`'s so callers read the same.
pub struct NodeTable<N> {
    base: Vec<Option<N>>,
    extra: FastMap<Ino, N>,
    len: usize,
}

impl<N> NodeTable<N> {
    /// A table with room for base inodes `1..=base_len`.
    pub fn with_base_len(base_len: usize) -> NodeTable<N> {
        let mut base = Vec::with_capacity(base_len);
        base.resize_with(base_len, || None);
        NodeTable {
            base,
            extra: FastMap::default(),
            len: 0,
        }
    }

    fn slot(&self, ino: Ino) -> Option<usize> {
        let i = usize::try_from(ino).ok()?.checked_sub(1)?;
        (i < self.base.len()).then_some(i)
    }

    pub fn get(&self, ino: &Ino) -> Option<&N> {
        match self.slot(*ino) {
            Some(i) => self.base[i].as_ref(),
            None => self.extra.get(ino),
        }
    }

    pub fn get_mut(&mut self, ino: &Ino) -> Option<&mut N> {
        match self.slot(*ino) {
            Some(i) => self.base[i].as_mut(),
            None => self.extra.get_mut(ino),
        }
    }

    /// Insert or replace; returns the node it replaced.
    pub fn insert(&mut self, ino: Ino, n: N) -> Option<N> {
        let old = match self.slot(ino) {
            Some(i) => self.base[i].replace(n),
            None => self.extra.insert(ino, n),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, ino: &Ino) -> Option<N> {
        let old = match self.slot(*ino) {
            Some(i) => self.base[i].take(),
            None => self.extra.remove(ino),
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every (inode number, node), base inodes first.
    pub fn iter(&self) -> impl Iterator<Item = (Ino, &N)> {
        self.base
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i as Ino + 1, n)))
            .chain(self.extra.iter().map(|(i, n)| (*i, n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_and_extra_inodes() {
        let mut t: NodeTable<&str> = NodeTable::with_base_len(3);
        assert_eq!(t.insert(1, "root"), None);
        assert_eq!(t.insert(3, "c"), None);
        assert_eq!(t.insert(10, "new"), None);
        assert_eq!(t.insert(0, "zero"), None); // not a base slot: goes to the map
        assert_eq!(t.len(), 4);
        assert_eq!(t.get(&3), Some(&"c"));
        assert_eq!(t.get(&2), None);
        assert_eq!(t.insert(3, "c2"), Some("c"));
        assert_eq!(t.remove(&1), Some("root"));
        assert_eq!(t.remove(&1), None);
        assert_eq!(t.len(), 3);
        let mut all: Vec<_> = t.iter().map(|(i, n)| (i, *n)).collect();
        all.sort();
        assert_eq!(all, vec![(0, "zero"), (3, "c2"), (10, "new")]);
    }
}
