//! Strict envelope verification: EdDSA only, trusted `kid` only, explicit `typ`, audience,
//! expiry and not-before with a configurable skew, and a size limit checked before any
//! decoding work is done.

use super::jws::{self, ALG, ENVELOPE_TYP};
use super::keys::TrustedKeys;
use super::{Claims, EnvelopeError};
use serde_json::Value;

/// Verification settings and trusted keys. Cheap to share; holds no per-call state.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: TrustedKeys,
    audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub skew_secs: i64,
    /// Longest token accepted, in bytes.
    pub max_token_len: usize,
}

pub const DEFAULT_SKEW_SECS: i64 = 30;
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

impl Verifier {
    pub fn new(keys: TrustedKeys, audience: impl Into<String>) -> Self {
        Verifier {
            keys,
            audience: audience.into(),
            skew_secs: DEFAULT_SKEW_SECS,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn keys(&self) -> &TrustedKeys {
        &self.keys
    }

    /// Verifies a token at time `now` (Unix seconds) and returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, EnvelopeError> {
        if token.len() > self.max_token_len {
            return Err(EnvelopeError::TooLarge {
                len: token.len(),
                limit: self.max_token_len,
            });
        }
        let d = jws::decode(token)?;
        let alg = match d.header.get("alg") {
            Some(Value::String(a)) => a.as_str(),
            Some(_) | None => "(absent)",
        };
        // Only the exact registered name: `none`, every HMAC/RSA/ECDSA alg and case
        // variants are refused before any key is looked at (RFC 8725 §3.1).
        if alg != ALG {
            // An unsigned token is an attack rather than a misconfiguration: its own reason,
            // whatever the case of `none`.
            if alg.eq_ignore_ascii_case("none") {
                return Err(EnvelopeError::AlgNone {
                    alg: alg.to_owned(),
                });
            }
            return Err(EnvelopeError::UnsupportedAlg {
                alg: alg.to_owned(),
            });
        }
        match d.header.get("typ") {
            Some(Value::String(t)) if typ_matches(t) => {}
            Some(Value::String(t)) => return Err(EnvelopeError::BadType { typ: t.clone() }),
            Some(_) => {
                return Err(EnvelopeError::BadType {
                    typ: "(not a string)".into(),
                });
            }
            None => {
                return Err(EnvelopeError::BadType {
                    typ: "(absent)".into(),
                });
            }
        }
        if let Some(crit) = d.header.get("crit") {
            let name = crit
                .as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .unwrap_or("crit");
            return Err(EnvelopeError::UnsupportedCritical {
                name: name.to_owned(),
            });
        }
        let kid = match d.header.get("kid") {
            Some(Value::String(k)) => k.as_str(),
            _ => return Err(EnvelopeError::MissingKid),
        };
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| EnvelopeError::UnknownKid {
                kid: kid.to_owned(),
            })?;
        key.verify(d.signing_input.as_bytes(), &d.signature)
            .map_err(|_| EnvelopeError::BadSignature)?;
        let claims = Claims::from_json(&d.payload)?;
        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    /// Audience and time checks, shared by fresh verification and cache hits' re-checks.
    fn check_claims(&self, c: &Claims, now: i64) -> Result<(), EnvelopeError> {
        if !c.aud.iter().any(|a| a == &self.audience) {
            return Err(EnvelopeError::WrongAudience {
                got: c.aud.clone(),
                expected: self.audience.clone(),
            });
        }
        self.check_expiry(c, now)?;
        let not_before = c.nbf.unwrap_or(c.iat).max(c.iat);
        if not_before > now.saturating_add(self.skew_secs) {
            return Err(EnvelopeError::NotYetValid { not_before, now });
        }
        Ok(())
    }

    /// `exp` is the first instant the envelope is no longer valid (RFC 7519 §4.1.4).
    pub fn check_expiry(&self, c: &Claims, now: i64) -> Result<(), EnvelopeError> {
        if now >= c.exp.saturating_add(self.skew_secs) {
            return Err(EnvelopeError::Expired { exp: c.exp, now });
        }
        Ok(())
    }
}

fn typ_matches(t: &str) -> bool {
    // RFC 7515 §4.1.9: media types compare case-insensitively and `application/` may be
    // omitted.
    let t = match t.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &t[12..],
        _ => t,
    };
    t.eq_ignore_ascii_case(ENVELOPE_TYP)
}
