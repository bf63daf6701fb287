//! A bounded cache of verified envelopes, one per core, so that an agent's repeat calls
//! cost a hash and a lookup instead of an Ed25519 verification (~50 µs).
//!
//! Indexed by a keyed hash (SipHash with a per-process random key) of the end of the
//! token's signature segment, and confirmed by comparing the whole token: two different
//! tokens never share an entry, as with a full SHA-256 digest, at a tenth of the cost (a
//! SHA-256 of a 1 KiB token is ~0.7 µs here; the signature segment is 86 bytes). Only
//! successful verifications are cached; expiry is re-checked on every hit, so a cached
//! envelope stops working the second it expires. Eviction is first-in first-out: entries
//! are immutable, and an agent's envelope is re-verified at most once per eviction cycle.

use super::{Claims, EnvelopeError, Verifier};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::rc::Rc;

/// Passes a precomputed `u64` through as the hash: the key is already a keyed hash.
#[derive(Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; fold anything else in defensively.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

struct Entry {
    token: Box<[u8]>,
    claims: Rc<Claims>,
}

/// Verified claims by token, holding at most `capacity` entries.
pub struct EnvelopeCache {
    map: HashMap<u64, Entry, BuildHasherDefault<PassThroughHasher>>,
    order: VecDeque<u64>,
    capacity: usize,
    hasher: RandomState,
    pub hits: u64,
    pub misses: u64,
}

impl EnvelopeCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        EnvelopeCache {
            map: HashMap::with_capacity_and_hasher(capacity, Default::default()),
            order: VecDeque::with_capacity(capacity),
            capacity,
            hasher: RandomState::new(),
            hits: 0,
            misses: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn key(&self, token: &[u8]) -> u64 {
        // The signature is what makes a token unique, and only valid (signed) tokens are
        // ever stored, so its last 32 characters (192 bits) spread entries as well as the
        // whole token would; the full comparison after the lookup decides equality.
        // Hashing 32 bytes instead of the 86-byte segment saves ~250 instructions a call.
        let sig = memchr::memrchr(b'.', token).map_or(token, |i| &token[i + 1..]);
        self.hasher.hash_one(&sig[sig.len().saturating_sub(32)..])
    }

    /// Verifies `token` through the cache: a hit re-checks expiry only; a miss runs full
    /// verification and caches the result if it succeeded. Bytes, as they came off the
    /// wire: a hit is equal to a token that was checked, so only a miss checks UTF-8.
    pub fn verify(
        &mut self,
        verifier: &Verifier,
        token: &(impl AsRef<[u8]> + ?Sized),
        now: i64,
    ) -> Result<Rc<Claims>, EnvelopeError> {
        let token = token.as_ref();
        if token.len() > verifier.max_token_len {
            return Err(EnvelopeError::TooLarge {
                len: token.len(),
                limit: verifier.max_token_len,
            });
        }
        let key = self.key(token);
        if let Some(e) = self.map.get(&key)
            && *e.token == *token
        {
            self.hits += 1;
            verifier.check_expiry(&e.claims, now)?;
            return Ok(Rc::clone(&e.claims));
        }
        self.misses += 1;
        let text = std::str::from_utf8(token).map_err(|_| EnvelopeError::Malformed)?;
        let claims = Rc::new(verifier.verify(text, now)?);
        let entry = Entry {
            token: token.into(),
            claims: Rc::clone(&claims),
        };
        // A 64-bit collision between two valid tokens replaces the older entry in place.
        if self.map.insert(key, entry).is_none() {
            self.order.push_back(key);
            if self.map.len() > self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                self.map.remove(&oldest);
            }
        }
        Ok(claims)
    }

    /// Drops every entry (for example after the trusted keys change).
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}
