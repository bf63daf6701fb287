//! Scrubbing a vaulted credential out of an upstream response before the agent sees it.
//!
//! Backends sometimes echo what they were sent (debug endpoints, error pages quoting the
//! request). The agent must never see a vaulted credential, so every byte relayed from an
//! upstream passes through a `Scrubber` for the credential that call injected. Matches are
//! overwritten with `*` of the same length, so Content-Length framing stays valid and the
//! body can be streamed: the last `len - 1` bytes of each piece are held back until the
//! next piece shows whether a match straddles the boundary.

use memchr::memmem::Finder;

/// Replacement byte for a scrubbed credential.
pub const MASK: u8 = b'*';

/// A prepared search for one credential value, built once when the vault is loaded.
/// Values shorter than 4 bytes are not scrubbed: masking every occurrence of a tiny string
/// would mangle bodies without protecting anything real.
pub fn finder(needle: &[u8]) -> Option<Finder<'static>> {
    (needle.len() >= 4).then(|| Finder::new(needle).into_owned())
}

/// Streaming scrubber for one exchange: a prepared finder and a held-back tail buffer
/// (both borrowed, so a call allocates nothing).
pub struct Scrubber<'a> {
    finder: &'a Finder<'static>,
    carry: &'a mut Vec<u8>,
    pub scrubbed: u32,
}

impl<'a> Scrubber<'a> {
    pub fn new(finder: &'a Finder<'static>, carry: &'a mut Vec<u8>) -> Self {
        carry.clear();
        Scrubber {
            finder,
            carry,
            scrubbed: 0,
        }
    }

    fn needle_len(&self) -> usize {
        self.finder.needle().len()
    }

    /// Masks every match in a complete buffer in place (headers, gathered bodies).
    pub fn mask_all(&mut self, buf: &mut [u8]) -> u32 {
        let n = self.needle_len();
        let mut count = 0;
        let mut at = 0;
        while let Some(i) = self.finder.find(&buf[at..]) {
            buf[at + i..at + i + n].fill(MASK);
            at += i + n;
            count += 1;
        }
        self.scrubbed += count;
        count
    }

    /// Feeds the next piece of a stream; appends to `out` every byte that is now known to
    /// be safe, keeping back a possible partial match.
    pub fn feed(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(self.carry);
        out.extend_from_slice(piece);
        self.carry.clear();
        self.mask_all(&mut out[start..]);
        let keep = (self.needle_len() - 1).min(out.len() - start);
        let split = out.len() - keep;
        self.carry.extend_from_slice(&out[split..]);
        out.truncate(split);
    }

    /// Ends the stream: the held-back tail cannot start a match any more.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.carry);
        self.carry.clear();
    }

    /// Bytes held back so far (for the caller's framing arithmetic).
    pub fn pending(&self) -> usize {
        self.carry.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(secret: &[u8], body: &[u8], step: usize) -> Vec<u8> {
        let f = finder(secret).unwrap();
        let mut carry = Vec::new();
        let mut s = Scrubber::new(&f, &mut carry);
        let mut out = Vec::new();
        for piece in body.chunks(step) {
            s.feed(piece, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn masks_matches_across_every_split() {
        let secret = b"sk_live_TOPSECRET";
        let body = b"{\"echo\":\"Bearer sk_live_TOPSECRET\",\"again\":\"sk_live_TOPSECRETsk_live_TOPSECRET\"}";
        let want = String::from_utf8_lossy(body).replace("sk_live_TOPSECRET", &"*".repeat(17));
        for step in 1..body.len() + 1 {
            let out = stream(secret, body, step);
            assert_eq!(out.len(), body.len(), "length preserved");
            assert_eq!(String::from_utf8_lossy(&out), want, "step {step}");
        }
    }

    #[test]
    fn leaves_clean_bodies_alone() {
        let body = b"nothing to see here, just sk_live_ but not the rest";
        assert_eq!(stream(b"sk_live_TOPSECRET", body, 5), body);
        assert!(finder(b"abc").is_none());
    }
}
