//! The entity index: every entity of a bundle by (type name, id) in one open-addressed
//! table, so resolving a request's entity reference costs one hash of its two strings and
//! usually one probe, instead of a search for the type and then a hash map for the id.
//! Also the short-string comparison the evaluator's hot paths use.

use super::ir::{BundleData, EntityIdx};

/// Marks an empty slot; the loader refuses bundles with this many entities.
const EMPTY: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Slot {
    /// High half of the hash: a probe that meets another entity's slot almost never has
    /// to compare strings to move on.
    tag: u32,
    entity: EntityIdx,
    /// Where the entity's type name and then its id start in `UidIndex::keys`.
    at: u32,
    ty_len: u32,
    id_len: u32,
}

/// The (type, id) → entity table. Read-only after the bundle is loaded.
pub struct UidIndex {
    slots: Vec<Slot>,
    mask: usize,
    /// Every entity's type name and id, back to back: a probe compares against one
    /// contiguous run of bytes instead of chasing the entity, its id and its type.
    keys: Vec<u8>,
}

impl UidIndex {
    /// Indexes every entity; an error names an entity that appears twice.
    pub fn build(data: &BundleData) -> Result<UidIndex, String> {
        let n = data.entities.len();
        if n >= EMPTY as usize {
            return Err(format!("{n} entities are more than a bundle may hold"));
        }
        // At most half full: linear probing stays short whatever the ids look like.
        let cap = (n * 2).next_power_of_two().max(8);
        let empty = Slot {
            tag: 0,
            entity: EMPTY,
            at: 0,
            ty_len: 0,
            id_len: 0,
        };
        let mut index = UidIndex {
            slots: vec![empty; cap],
            mask: cap - 1,
            keys: Vec::new(),
        };
        for (i, e) in data.entities.iter().enumerate() {
            let ty = &data.types[e.ty as usize];
            let id = &data.strings[e.id as usize];
            if index.get(ty, id).is_some() {
                return Err(format!("entity {ty}::\"{id}\" appears twice"));
            }
            let at = u32::try_from(index.keys.len())
                .map_err(|_| "entity names exceed 4 GiB".to_string())?;
            index.keys.extend_from_slice(ty.as_bytes());
            index.keys.extend_from_slice(id.as_bytes());
            let h = uid_hash(ty, id);
            let mut pos = h as usize & index.mask;
            while index.slots[pos].entity != EMPTY {
                pos = (pos + 1) & index.mask;
            }
            index.slots[pos] = Slot {
                tag: (h >> 32) as u32,
                entity: i as EntityIdx,
                at,
                ty_len: ty.len() as u32,
                id_len: id.len() as u32,
            };
        }
        Ok(index)
    }

    /// The entity `ty::"id"`, if the bundle has it.
    #[inline]
    pub fn get(&self, ty: &str, id: &str) -> Option<EntityIdx> {
        let h = uid_hash(ty, id);
        let tag = (h >> 32) as u32;
        let mut pos = h as usize & self.mask;
        loop {
            let s = self.slots[pos];
            if s.entity == EMPTY {
                return None;
            }
            if s.tag == tag
                && s.ty_len as usize == ty.len()
                && s.id_len as usize == id.len()
                && self.key_is(s.at as usize, ty.as_bytes(), id.as_bytes())
            {
                return Some(s.entity);
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Whether the key bytes at `at` are `ty` then `id` (lengths already equal).
    fn key_is(&self, at: usize, ty: &[u8], id: &[u8]) -> bool {
        let mid = at + ty.len();
        match self.keys.get(at..mid + id.len()) {
            Some(k) => bytes_eq(&k[..ty.len()], ty) && bytes_eq(&k[ty.len()..], id),
            None => false,
        }
    }
}

/// `a == b`, without a call into `memcmp` for the short strings (attribute names, types,
/// ids) that dominate decisions.
#[inline]
pub fn str_eq(a: &str, b: &str) -> bool {
    bytes_eq(a.as_bytes(), b.as_bytes())
}

#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        // Three positions cover every byte of a string this short.
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        // Two overlapping words cover the rest.
        4..=7 => read4(a, 0) == read4(b, 0) && read4(a, n - 4) == read4(b, n - 4),
        8..=16 => read8(a, 0) == read8(b, 0) && read8(a, n - 8) == read8(b, n - 8),
        _ => a == b,
    }
}

#[inline]
fn read4(b: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

#[inline]
fn read8(b: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Multiplies and folds the halves of the product: one instruction pair that mixes every
/// input bit into the low word the table uses.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;

/// Mixes `b` into `h`, a word at a time, its length included (so `("ab", "c")` and
/// `("a", "bc")` differ).
#[inline(always)]
fn mix(h: u64, b: &[u8]) -> u64 {
    let n = b.len();
    let (x, y) = match n {
        0 => (0, 0),
        1..=3 => (
            (u64::from(b[0]) << 16) | (u64::from(b[n / 2]) << 8) | u64::from(b[n - 1]),
            0,
        ),
        4..=8 => (u64::from(read4(b, 0)), u64::from(read4(b, n - 4))),
        _ => {
            let mut h = h;
            let mut at = 0;
            while n - at > 16 {
                h = fold(h ^ read8(b, at) ^ K0, read8(b, at + 8) ^ K1);
                at += 16;
            }
            // The last word overlaps what came before when fewer than 8 bytes are left.
            let x = read8(b, at.min(n - 8));
            return fold(h ^ x ^ K0, read8(b, n - 8) ^ K1 ^ n as u64);
        }
    };
    fold(h ^ x ^ K0, y ^ K1 ^ n as u64)
}

/// The table's hash of an entity reference. Fixed keys suffice: requests only look
/// entities up, so a caller cannot lengthen the probe sequences the bundle built.
#[inline]
fn uid_hash(ty: &str, id: &str) -> u64 {
    mix(mix(0, ty.as_bytes()), id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_eq_matches_eq_at_every_length() {
        let base = "abcdefghijklmnopqrstuvwxyz0123456789";
        for n in 0..base.len() {
            let a = &base[..n];
            assert!(str_eq(a, a), "{a}");
            for i in 0..n {
                let mut b = a.as_bytes().to_vec();
                b[i] = b'#';
                let b = String::from_utf8(b).unwrap();
                assert!(!str_eq(a, &b), "{a} vs {b}");
            }
            assert!(!str_eq(a, &base[..n + 1]));
        }
    }

    #[test]
    fn hash_separates_type_from_id() {
        assert_ne!(uid_hash("ab", "c"), uid_hash("a", "bc"));
        assert_ne!(uid_hash("User", "u1"), uid_hash("User", "u2"));
        assert_ne!(uid_hash("", "x"), uid_hash("x", ""));
        // Every length, through the word loop and its tail.
        let long = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz";
        let hashes: std::collections::HashSet<u64> =
            (0..long.len()).map(|n| uid_hash("T", &long[..n])).collect();
        assert_eq!(hashes.len(), long.len());
    }
}
