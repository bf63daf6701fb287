//! MCP session ids for the session-based protocol revisions, without shared state: an id
//! is `<protocol version>.<issued at>.<envelope expiry>.<random>.<HMAC-SHA256 tag>`, so
//! any core (or any
//! gateway process holding the same key) can check it without a lookup. A session is also
//! bound to the envelope that opened it (by `jti`): another agent presenting the id gets
//! 404, as for an unknown session. Terminated sessions (DELETE) go into a small shared set.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

pub struct SessionKey {
    key: hmac::Key,
}

/// A verified session id's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session<'a> {
    pub protocol_version: &'a str,
    pub issued_at: i64,
    /// When the envelope that opened the session expires: the session is useless after
    /// it, so a record of its termination can be forgotten then.
    pub expires_at: i64,
}

impl SessionKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        // A failing system RNG leaves an all-zero key only if fill fails, which ring
        // reports; fall back to time-derived bytes rather than refusing to start.
        if SystemRandom::new().fill(&mut k).is_err() {
            let t = crate::clock::now_unix().to_le_bytes();
            k[..8].copy_from_slice(&t);
        }
        SessionKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, &k),
        }
    }

    fn tag(&self, body: &str, jti: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(body.as_bytes());
        ctx.update(b"\0");
        ctx.update(jti.as_bytes());
        URL_SAFE_NO_PAD.encode(&ctx.sign().as_ref()[..16])
    }

    /// A new session id for `jti` (an envelope expiring at `expires_at`) speaking
    /// `protocol_version`.
    pub fn issue(&self, protocol_version: &str, jti: &str, expires_at: i64, now: i64) -> String {
        let mut nonce = [0u8; 9];
        let _ = SystemRandom::new().fill(&mut nonce);
        let body = format!(
            "{protocol_version}.{now:x}.{:x}.{}",
            expires_at.max(0),
            URL_SAFE_NO_PAD.encode(nonce)
        );
        let tag = self.tag(&body, jti);
        format!("{body}.{tag}")
    }

    /// Checks a presented id against the presenting envelope's `jti`.
    pub fn verify<'a>(&self, id: &'a str, jti: &str) -> Option<Session<'a>> {
        if id.len() > 200 || !id.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return None;
        }
        let (body, tag) = id.rsplit_once('.')?;
        let want = self.tag(body, jti);
        if !ct_eq(want.as_bytes(), tag.as_bytes()) {
            return None;
        }
        let mut parts = body.splitn(4, '.');
        // Protocol versions are dates (YYYY-MM-DD) and contain no '.'.
        let version = parts.next()?;
        let issued = i64::from_str_radix(parts.next()?, 16).ok()?;
        let expires = i64::from_str_radix(parts.next()?, 16).ok()?;
        Some(Session {
            protocol_version: version,
            issued_at: issued,
            expires_at: expires,
        })
    }
}

/// The set of ended sessions (id -> expiry of its envelope) after ending `sid`: entries
/// whose envelope expired before `forget_before` are dropped (their envelope is refused
/// anyway); if `cap` entries remain, `sid` is not added and the flag is false.
pub fn with_ended(
    ended: &std::collections::HashMap<String, i64>,
    sid: &str,
    expires_at: i64,
    forget_before: i64,
    cap: usize,
) -> (std::collections::HashMap<String, i64>, bool) {
    let mut m: std::collections::HashMap<String, i64> = ended
        .iter()
        .filter(|(_, exp)| **exp >= forget_before)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if m.len() >= cap && !m.contains_key(sid) {
        return (m, false);
    }
    m.insert(sid.to_owned(), expires_at);
    (m, true)
}

/// Compares without an early exit, so timing does not reveal how much of a tag matched.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_verify_only_for_their_envelope_and_key() {
        let k = SessionKey::generate();
        let id = k.issue("2025-06-18", "jti-1", 1900, 1000);
        assert!(
            id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "visible ASCII per the spec"
        );
        let s = k.verify(&id, "jti-1").unwrap();
        assert_eq!(
            s,
            Session {
                protocol_version: "2025-06-18",
                issued_at: 1000,
                expires_at: 1900
            }
        );
        assert!(k.verify(&id, "jti-2").is_none());
        assert!(SessionKey::generate().verify(&id, "jti-1").is_none());
        let mut forged = id.clone();
        forged.replace_range(0..10, "2024-11-05");
        assert!(k.verify(&forged, "jti-1").is_none());
        assert_ne!(
            k.issue("2025-06-18", "jti-1", 1900, 1000),
            id,
            "random part"
        );
    }

    #[test]
    fn ended_sessions_are_forgotten_with_their_envelope_and_bounded() {
        let mut m = std::collections::HashMap::new();
        for (sid, exp) in [("a", 100), ("b", 200)] {
            let (next, ok) = with_ended(&m, sid, exp, 0, 3);
            assert!(ok);
            m = next;
        }
        // Full: a third fits, a fourth does not...
        let (m3, ok) = with_ended(&m, "c", 300, 0, 3);
        assert!(ok && m3.len() == 3);
        let (same, ok) = with_ended(&m3, "d", 400, 0, 3);
        assert!(!ok && !same.contains_key("d"));
        // ... until envelopes expire and their sessions are forgotten.
        let (later, ok) = with_ended(&m3, "d", 400, 150, 3);
        assert!(ok, "a (expired at 100) was forgotten");
        assert!(!later.contains_key("a") && later.contains_key("d"));
    }
}
