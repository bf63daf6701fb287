//! The entity index: every entity of a bundle by (type name, id) in one open-addressed
//! table, so resolving a request's entity reference costs one hash of its two strings and
//! usually one probe, instead of a search for the type and then a hash map for the id.
//! Also the short-string comparison the evaluator's hot paths use.

use super::ir::{BundleData, EntityIdx};

/// Marks an empty slot; the loader refuses bundles with this many entities.
const EMPTY: u32 = u32::MAX;

/// Names up to this long are held whole in a key's words (see `word`).
const SHORT: usize = 8;

/// A key as the table compares it: a word per name and both lengths. For names of at
/// most `SHORT` bytes the words are the names themselves, so equal words and lengths
/// are equal names and a probe reads no bytes of the bundle; longer names are compared
/// byte by byte after their words (a prefix filter) agree.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    ty: u64,
    id: u64,
    /// Type name length in the high half, id length in the low.
    lens: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    key: Key,
    entity: EntityIdx,
    /// Where the entity's type name and then its id start in `UidIndex::keys`; read only
    /// for names longer than `SHORT`.
    at: u32,
}

/// The (type, id) → entity table. Read-only after the bundle is loaded.
pub struct UidIndex {
    slots: Vec<Slot>,
    mask: usize,
    /// Every entity's type name and id, back to back, for the long names' comparisons.
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
            key: Key {
                ty: 0,
                id: 0,
                lens: 0,
            },
            entity: EMPTY,
            at: 0,
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
            let (t, d) = (ty.as_bytes(), id.as_bytes());
            let key = key(t, d);
            let mut pos = hash_of(t, d, key) as usize & index.mask;
            while index.slots[pos].entity != EMPTY {
                pos = (pos + 1) & index.mask;
            }
            index.slots[pos] = Slot {
                key,
                entity: i as EntityIdx,
                at,
            };
        }
        Ok(index)
    }

    /// The entity `ty::"id"`, if the bundle has it.
    #[inline]
    pub fn get(&self, ty: &str, id: &str) -> Option<EntityIdx> {
        let (t, i) = (ty.as_bytes(), id.as_bytes());
        if t.len() > SHORT || i.len() > SHORT {
            return self.get_long(t, i);
        }
        let k = key(t, i);
        // Equal words and lengths are equal names: no bytes to compare.
        self.probe(k, short_hash(k), |_| true)
    }

    /// `get` for names longer than `SHORT`: kept apart so the short path is a leaf with
    /// few registers.
    #[inline(never)]
    fn get_long(&self, t: &[u8], i: &[u8]) -> Option<EntityIdx> {
        self.probe(key(t, i), long_hash(t, i), |at| {
            self.key_is(at as usize, t, i)
        })
    }

    #[inline(always)]
    fn probe(&self, k: Key, h: u64, same: impl Fn(u32) -> bool) -> Option<EntityIdx> {
        let mut pos = h as usize;
        loop {
            let s = self.slots.get(pos & self.mask)?;
            if s.entity == EMPTY {
                return None;
            }
            if s.key == k && same(s.at) {
                return Some(s.entity);
            }
            pos += 1;
        }
    }

    /// Whether the key bytes at `at` are `ty` then `id`.
    #[inline(never)]
    fn key_is(&self, at: usize, ty: &[u8], id: &[u8]) -> bool {
        match self
            .keys
            .get(at..)
            .and_then(|k| k.split_at_checked(ty.len()))
        {
            Some((t, rest)) => t == ty && rest.get(..id.len()) == Some(id),
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
const K2: u64 = 0xa409_3822_299f_31d0;

/// A name's word: for at most `SHORT` bytes, all of them (with the length, which the key
/// holds beside it, no two names share a word); for longer ones, the first and last 8.
#[inline(always)]
fn word(b: &[u8]) -> u64 {
    let n = b.len();
    match n {
        0 => 0,
        // Three positions cover every byte of a name this short.
        1..=3 => (u64::from(b[0]) << 16) | (u64::from(b[n / 2]) << 8) | u64::from(b[n - 1]),
        // Two overlapping halves cover the rest.
        4..=SHORT => u64::from(read4(b, 0)) | (u64::from(read4(b, n - 4)) << 32),
        _ => read8(b, 0) ^ read8(b, n - 8).rotate_left(32),
    }
}

/// An entity reference's key.
#[inline(always)]
fn key(ty: &[u8], id: &[u8]) -> Key {
    Key {
        ty: word(ty),
        id: word(id),
        lens: ((ty.len() as u64) << 32) | id.len() as u64,
    }
}

/// The hash of a key whose names are both short: from its words, which hold all their
/// bytes. (Long names are hashed from every byte, as their words do not hold them.)
/// Fixed keys suffice: requests only look entities up, so a caller cannot lengthen the
/// probe sequences the bundle built.
#[inline(always)]
fn short_hash(k: Key) -> u64 {
    // The lengths in a multiply of their own: xored into a word they could cancel a
    // difference between two names of different lengths (`ab` and `abc`).
    fold(fold(k.ty ^ K0, k.id ^ K1) ^ k.lens, K2)
}

/// The table's hash of `ty::"id"` with key `k`, by the rule `get` probes with.
fn hash_of(ty: &[u8], id: &[u8], k: Key) -> u64 {
    if ty.len() > SHORT || id.len() > SHORT {
        long_hash(ty, id)
    } else {
        short_hash(k)
    }
}

#[inline(never)]
fn long_hash(ty: &[u8], id: &[u8]) -> u64 {
    mix(mix(0, ty), id)
}

/// Mixes `b` into `h`, 16 bytes at a time, its length included (so `("ab", "c")` and
/// `("a", "bc")` differ).
fn mix(h: u64, b: &[u8]) -> u64 {
    let n = b.len();
    if n < 16 {
        let (x, y) = if n <= SHORT {
            (word(b), 0)
        } else {
            (read8(b, 0), read8(b, n - 8))
        };
        return fold(h ^ x ^ K0, y ^ K1 ^ n as u64);
    }
    let mut h = h;
    let mut at = 0;
    while n - at > 16 {
        h = fold(h ^ read8(b, at) ^ K0, read8(b, at + 8) ^ K1);
        at += 16;
    }
    // The last words overlap what came before when fewer than 16 bytes are left.
    fold(h ^ read8(b, n - 16) ^ K0, read8(b, n - 8) ^ K1 ^ n as u64)
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
        let h = |t: &str, i: &str| {
            let (t, i) = (t.as_bytes(), i.as_bytes());
            hash_of(t, i, key(t, i))
        };
        assert_ne!(h("ab", "c"), h("a", "bc"));
        assert_ne!(h("User", "u1"), h("User", "u2"));
        assert_ne!(h("", "x"), h("x", ""));
        assert_ne!(h("T", "aaaa"), h("T", "`aaaa"));
        // Every length, short and long, through the word loop and its tail.
        let long = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz";
        let hashes: std::collections::HashSet<u64> =
            (0..long.len()).map(|n| h("T", &long[..n])).collect();
        assert_eq!(hashes.len(), long.len());
        let hashes: std::collections::HashSet<u64> =
            (0..long.len()).map(|n| h(&long[..n], "x")).collect();
        assert_eq!(hashes.len(), long.len());
    }

    fn index_of(names: &[(&str, &str)]) -> UidIndex {
        let mut types: Vec<String> = Vec::new();
        let mut strings = Vec::new();
        let mut entities = Vec::new();
        for (t, i) in names {
            let ty = types.iter().position(|x| x == t).unwrap_or_else(|| {
                types.push(t.to_string());
                types.len() - 1
            });
            strings.push(i.to_string());
            entities.push(crate::decision::ir::EntityData {
                ty: ty as u32,
                id: (strings.len() - 1) as u32,
                exists: true,
                attrs: Vec::new(),
                ancestors: Vec::new(),
            });
        }
        let data = BundleData {
            meta: Default::default(),
            principal_type: "User".into(),
            types,
            strings,
            entities,
            values: Vec::new(),
            exprs: Vec::new(),
            policies: Vec::new(),
            by_action: Vec::new(),
            any_action: Vec::new(),
            tools: Vec::new(),
            purposes: Vec::new(),
        };
        UidIndex::build(&data).unwrap()
    }

    #[test]
    fn finds_exactly_the_names_it_holds() {
        // Short and long names, and long ones whose words agree (same first and last
        // 8 bytes) but whose middles differ.
        let names = [
            ("User", "u1"),
            ("User", "u2"),
            ("Use", "ru1"),
            ("", ""),
            ("Action", "tool0"),
            ("Action", "github.create_issue"),
            ("NS::LongTypeName", "x"),
            ("Doc", "abcdefgh-1-ijklmnop"),
            ("Doc", "abcdefgh-2-ijklmnop"),
            ("Doc", "0123456789abcdef0123456789abcdef01234567"),
        ];
        let index = index_of(&names);
        for (n, (t, i)) in names.iter().enumerate() {
            assert_eq!(index.get(t, i), Some(n as u32), "{t}::{i}");
        }
        for (t, i) in [
            ("User", "u3"),
            ("Use", "u1"),
            ("User", "u"),
            ("Users", "u1"),
            ("", "x"),
            ("Action", "github.create_issuf"),
            ("Doc", "abcdefgh-3-ijklmnop"),
            ("Doc", "abcdefgh-1-ijklmno"),
            ("Doc", "0123456789abcdef0123456789abcdeX01234567"),
            ("NS::LongTypeNamf", "x"),
        ] {
            assert_eq!(index.get(t, i), None, "{t}::{i}");
        }
    }
}
