//! Building claims to sign: from a claims file in the seed's shape (which may lack the
//! registered claims, or carry a past `expires_at`) plus the minting options.

use super::{Claims, EnvelopeError};
use crate::clock;
use serde_json::{Map, Value};

/// Claim names that suggest an end-service credential. An envelope identifies an action;
/// it must never carry the power to bypass the gateway, so minting refuses them.
const CREDENTIAL_WORDS: [&str; 7] = [
    "password",
    "secret",
    "api_key",
    "apikey",
    "credential",
    "access_token",
    "private_key",
];

/// How to fill in and override a claims file.
#[derive(Debug, Clone, Default)]
pub struct MintOptions {
    /// Time of minting (Unix seconds); `iat`.
    pub now: i64,
    /// Lifetime from `now`; overrides the file's `expires_at`.
    pub ttl_secs: Option<i64>,
    /// Absolute expiry (Unix seconds); overrides the file's `expires_at`.
    pub expires_at: Option<i64>,
    pub aud: Option<String>,
    pub iss: Option<String>,
    pub jti: Option<String>,
    pub agent_id: Option<String>,
    pub agent_kind: Option<String>,
}

pub const DEFAULT_AUDIENCE: &str = "portcullis";
pub const DEFAULT_ISSUER: &str = "portcullis-cli";
pub const DEFAULT_AGENT_KIND: &str = "assistant";

/// Completes a claims object and validates it. Options win over the file; the file wins
/// over defaults. Refuses an envelope that would already be expired.
pub fn claims_from_file(
    mut m: Map<String, Value>,
    opts: &MintOptions,
) -> Result<Claims, EnvelopeError> {
    refuse_credentials(&Value::Object(m.clone()), "")?;
    let set = |m: &mut Map<String, Value>, k: &str, v: Option<&String>, default: &str| {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v.clone()));
        } else if !m.contains_key(k) {
            m.insert(k.into(), Value::String(default.into()));
        }
    };
    let jti = opts.jti.clone().unwrap_or_else(random_id);
    set(&mut m, "aud", opts.aud.as_ref(), DEFAULT_AUDIENCE);
    set(&mut m, "iss", opts.iss.as_ref(), DEFAULT_ISSUER);
    set(&mut m, "jti", opts.jti.as_ref(), &jti);
    let default_agent = format!("agent_{}", &jti[..jti.len().min(12)]);
    set(&mut m, "agent_id", opts.agent_id.as_ref(), &default_agent);
    set(
        &mut m,
        "agent_kind",
        opts.agent_kind.as_ref(),
        DEFAULT_AGENT_KIND,
    );
    m.insert("iat".into(), Value::from(opts.now));
    m.entry("delegation_chain")
        .or_insert_with(|| Value::Array(Vec::new()));
    let depth = m
        .get("delegation_chain")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    m.entry("delegation_depth")
        .or_insert_with(|| Value::from(depth));

    let exp = if let Some(ttl) = opts.ttl_secs {
        opts.now.saturating_add(ttl)
    } else if let Some(at) = opts.expires_at {
        at
    } else {
        match m.get("expires_at") {
            Some(Value::String(s)) => {
                clock::parse_rfc3339(s).map_err(|e| EnvelopeError::InvalidClaim {
                    claim: "expires_at".into(),
                    detail: e,
                })?
            }
            Some(_) => {
                return Err(EnvelopeError::InvalidClaim {
                    claim: "expires_at".into(),
                    detail: "expected an RFC 3339 string".into(),
                });
            }
            None => {
                return Err(EnvelopeError::MissingClaim {
                    claim: "expires_at (or pass --ttl / --expires-at)".into(),
                });
            }
        }
    };
    if exp <= opts.now {
        return Err(EnvelopeError::Expired { exp, now: opts.now });
    }
    m.insert("exp".into(), Value::from(exp));
    m.insert(
        "expires_at".into(),
        Value::String(clock::format_rfc3339(exp)),
    );
    Claims::from_json(&m)
}

fn refuse_credentials(v: &Value, path: &str) -> Result<(), EnvelopeError> {
    if let Value::Object(m) = v {
        for (k, child) in m {
            let lower = k.to_ascii_lowercase();
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if CREDENTIAL_WORDS.iter().any(|w| lower.contains(w)) {
                return Err(EnvelopeError::InvalidClaim {
                    claim: here,
                    detail: "looks like an end-service credential; envelopes never carry \
                             credentials (keep them in the gateway vault)"
                        .into(),
                });
            }
            refuse_credentials(child, &here)?;
        }
    }
    Ok(())
}

/// 128 random bits as hex: unique `jti`s without coordination.
pub fn random_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // Falling back to time keeps minting working; uniqueness then rests on the clock.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = t.to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
