//! The tamper-evident chain, sans-IO. Every line ends with `"seq"`, `"prev"` (the previous
//! line's hash) and `"hash"` = SHA-256 of the line's bytes up to the hash field, so
//! editing, deleting, inserting or reordering a line breaks the chain at that line. Each
//! segment ends with a checkpoint line, itself chained, whose bytes are also signed with
//! the gateway's audit key: truncating a segment removes its checkpoint, and rewriting
//! the whole chain from some line on cannot produce a valid signature.

use crate::envelope::SigningKey;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA256, digest};

/// The `prev` of the very first line.
pub const GENESIS: [u8; 32] = [0; 32];

const HASH_FIELD: &[u8] = b",\"hash\":\"";
const SIG_FIELD: &[u8] = b",\"sig\":\"";

pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(b"0123456789abcdef"[(x >> 4) as usize]));
        s.push(char::from(b"0123456789abcdef"[(x & 15) as usize]));
    }
    s
}

fn push_hex(out: &mut Vec<u8>, b: &[u8]) {
    for x in b {
        out.push(b"0123456789abcdef"[(x >> 4) as usize]);
        out.push(b"0123456789abcdef"[(x & 15) as usize]);
    }
}

/// Chain state: the next sequence number and the last hash.
#[derive(Debug, Clone)]
pub struct Chain {
    pub seq: u64,
    pub last: [u8; 32],
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            seq: 1,
            last: GENESIS,
        }
    }
}

impl Chain {
    /// Completes a record body (a JSON object missing its closing brace) into a chained
    /// line, appended to `out` with a trailing newline.
    pub fn append(&mut self, body: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(body);
        out.extend_from_slice(b",\"seq\":");
        crate::http::write::push_u64(out, self.seq);
        out.extend_from_slice(b",\"prev\":\"");
        push_hex(out, &self.last);
        out.push(b'"');
        let h = digest(&SHA256, &out[start..]);
        out.extend_from_slice(HASH_FIELD);
        push_hex(out, h.as_ref());
        out.extend_from_slice(b"\"}\n");
        self.last.copy_from_slice(h.as_ref());
        self.seq += 1;
    }

    /// A signed checkpoint closing segment `segment`, chained like any line.
    pub fn checkpoint(&mut self, segment: u64, time_us: u64, key: &SigningKey, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(256);
        body.extend_from_slice(b"{\"checkpoint\":true,\"time\":\"");
        crate::clock::push_rfc3339_micros(&mut body, time_us);
        body.extend_from_slice(b"\",\"segment\":");
        crate::http::write::push_u64(&mut body, segment);
        body.extend_from_slice(b",\"kid\":");
        crate::http::write::json_str(&mut body, &key.kid);
        let start = out.len();
        self.append(&body, out);
        // Sign the whole chained line (its hash included), then add the signature.
        let line_end = out.len() - 2; // before `}\n`
        let sig = key.sign(&out[start..line_end]);
        out.truncate(line_end);
        out.extend_from_slice(SIG_FIELD);
        out.extend_from_slice(URL_SAFE_NO_PAD.encode(sig).as_bytes());
        out.extend_from_slice(b"\"}\n");
    }
}

/// Why a line does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    NotJson,
    MissingChainFields,
    HashMismatch,
    /// `prev` is not the previous line's hash: a line was deleted, inserted or moved.
    PrevMismatch,
    SeqGap {
        expected: u64,
        found: u64,
    },
    BadSignature,
    /// Segment files are numbered from 1 without gaps; this one is not the next.
    MissingSegment {
        expected: u64,
        found: u64,
    },
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::NotJson => write!(f, "not a JSON audit line"),
            Broken::MissingChainFields => write!(f, "missing seq/prev/hash"),
            Broken::HashMismatch => write!(f, "line content does not match its hash (edited)"),
            Broken::PrevMismatch => {
                write!(
                    f,
                    "prev does not match the previous line (deleted, inserted or reordered)"
                )
            }
            Broken::MissingSegment { expected, found } => write!(
                f,
                "segment {found} follows where segment {expected} was expected (a segment file is missing)"
            ),
            Broken::SeqGap { expected, found } => {
                write!(
                    f,
                    "sequence {found} where {expected} was expected (lines missing or reordered)"
                )
            }
            Broken::BadSignature => write!(f, "checkpoint signature does not verify"),
        }
    }
}

/// What a verified line was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    Record,
    Checkpoint { signature_checked: bool },
}

/// Checks one line against the chain state, advancing it. `keys` verifies checkpoint
/// signatures when given.
pub fn verify_line(
    chain: &mut Chain,
    line: &[u8],
    keys: Option<&crate::envelope::TrustedKeys>,
) -> Result<Verified, Broken> {
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|_| Broken::NotJson)?;
    let seq = v
        .get("seq")
        .and_then(serde_json::Value::as_u64)
        .ok_or(Broken::MissingChainFields)?;
    let prev = v
        .get("prev")
        .and_then(serde_json::Value::as_str)
        .ok_or(Broken::MissingChainFields)?;
    let hash = v
        .get("hash")
        .and_then(serde_json::Value::as_str)
        .ok_or(Broken::MissingChainFields)?;
    let checkpoint = v.get("checkpoint").and_then(serde_json::Value::as_bool) == Some(true);
    let hash_at = rfind(line, HASH_FIELD).ok_or(Broken::MissingChainFields)?;
    let computed = hex(digest(&SHA256, &line[..hash_at]).as_ref());
    if computed != hash {
        return Err(Broken::HashMismatch);
    }
    if prev != hex(&chain.last) {
        return Err(if seq != chain.seq {
            Broken::SeqGap {
                expected: chain.seq,
                found: seq,
            }
        } else {
            Broken::PrevMismatch
        });
    }
    if seq != chain.seq {
        return Err(Broken::SeqGap {
            expected: chain.seq,
            found: seq,
        });
    }
    let mut signature_checked = false;
    if checkpoint {
        let sig_at = rfind(line, SIG_FIELD).ok_or(Broken::MissingChainFields)?;
        if let Some(keys) = keys {
            let kid = v
                .get("kid")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            let sig = v
                .get("sig")
                .and_then(serde_json::Value::as_str)
                .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
                .ok_or(Broken::BadSignature)?;
            let key = keys.get(kid).ok_or(Broken::BadSignature)?;
            key.verify(&line[..sig_at], &sig)
                .map_err(|_| Broken::BadSignature)?;
            signature_checked = true;
        }
    }
    let mut last = [0u8; 32];
    for (i, chunk) in hash.as_bytes().chunks(2).enumerate().take(32) {
        last[i] = u8::from_str_radix(std::str::from_utf8(chunk).unwrap_or("zz"), 16)
            .map_err(|_| Broken::HashMismatch)?;
    }
    chain.last = last;
    chain.seq = seq + 1;
    Ok(if checkpoint {
        Verified::Checkpoint { signature_checked }
    } else {
        Verified::Record
    })
}

fn rfind(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).rposition(|w| w == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, key: &SigningKey) -> Vec<Vec<u8>> {
        let mut c = Chain::default();
        let mut out = Vec::new();
        for i in 0..n {
            c.append(format!("{{\"decision_id\":\"d-{i}\"").as_bytes(), &mut out);
        }
        c.checkpoint(1, 0, key, &mut out);
        out.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn verify_all(
        ls: &[Vec<u8>],
        keys: &crate::envelope::TrustedKeys,
    ) -> Result<(), (usize, Broken)> {
        let mut c = Chain::default();
        for (i, l) in ls.iter().enumerate() {
            verify_line(&mut c, l, Some(keys)).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    #[test]
    fn detects_edits_deletions_reordering_and_forged_checkpoints() {
        let key = SigningKey::generate(Some("audit".into())).unwrap();
        let mut keys = crate::envelope::TrustedKeys::new();
        keys.add("audit", key.public_key());
        let ls = lines(5, &key);
        assert_eq!(verify_all(&ls, &keys), Ok(()));

        let mut edited = ls.clone();
        edited[2] = String::from_utf8(edited[2].clone())
            .unwrap()
            .replace("d-2", "d-X")
            .into_bytes();
        assert_eq!(verify_all(&edited, &keys), Err((2, Broken::HashMismatch)));

        let mut deleted = ls.clone();
        deleted.remove(1);
        assert!(matches!(verify_all(&deleted, &keys), Err((1, _))));

        let mut swapped = ls.clone();
        swapped.swap(1, 2);
        assert!(matches!(verify_all(&swapped, &keys), Err((1, _))));

        let other = SigningKey::generate(Some("audit".into())).unwrap();
        let forged = lines(5, &other);
        assert_eq!(verify_all(&forged, &keys), Err((5, Broken::BadSignature)));
    }
}
