//! Why an envelope was refused. One variant per distinct reason, each with a stable
//! machine-readable code (`EnvelopeError::code`) that the CLI prints, the gateway returns
//! in denial bodies and the audit trail records.

use crate::clock::format_rfc3339 as fmt_time;
use thiserror::Error;

/// An envelope refused at verification, or one that could not be minted.
///
/// Every variant is the token presenter's fault except `Key`, which is the operator's
/// (a bad key file or JWKS), and `Internal`, which is ours.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    #[error("token is {len} bytes, over the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error(
        "token is not JWS compact serialisation (expected three base64url parts separated by '.')"
    )]
    Malformed,
    #[error("the {part} is not valid unpadded base64url")]
    BadBase64 { part: &'static str },
    #[error("the {part} is not a JSON object: {detail}")]
    BadJson { part: &'static str, detail: String },
    #[error(
        "unsigned token (`alg: {alg}`) is refused; only EdDSA (Ed25519) envelopes are accepted"
    )]
    AlgNone { alg: String },
    #[error("algorithm `{alg}` is refused; only EdDSA (Ed25519) envelopes are accepted")]
    UnsupportedAlg { alg: String },
    #[error("header `typ` is `{typ}`; expected `agent-envelope+jwt`")]
    BadType { typ: String },
    #[error("header has no `kid`; the issuer key must be named")]
    MissingKid,
    #[error("key id `{kid}` is not a trusted issuer key")]
    UnknownKid { kid: String },
    #[error("header marks `{name}` critical, which this verifier does not understand")]
    UnsupportedCritical { name: String },
    #[error("signature does not verify with the issuer key")]
    BadSignature,
    #[error("required claim `{claim}` is missing")]
    MissingClaim { claim: String },
    #[error("claim `{claim}` is invalid: {detail}")]
    InvalidClaim { claim: String, detail: String },
    #[error("audience {got:?} does not name this gateway (`{expected}`)")]
    WrongAudience { got: Vec<String>, expected: String },
    #[error("envelope expired at {} (now {})", fmt_time(*.exp), fmt_time(*.now))]
    Expired { exp: i64, now: i64 },
    #[error("envelope not valid until {} (now {})", fmt_time(*.not_before), fmt_time(*.now))]
    NotYetValid { not_before: i64, now: i64 },
    #[error("key problem: {0}")]
    Key(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl EnvelopeError {
    /// The stable machine-readable reason, one per variant.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "token_too_large",
            Self::Malformed => "malformed_token",
            Self::BadBase64 { .. } => "bad_base64",
            Self::BadJson { .. } => "bad_json",
            Self::AlgNone { .. } => "alg_none",
            Self::UnsupportedAlg { .. } => "unsupported_alg",
            Self::BadType { .. } => "bad_typ",
            Self::MissingKid => "missing_kid",
            Self::UnknownKid { .. } => "unknown_kid",
            Self::UnsupportedCritical { .. } => "unsupported_crit",
            Self::BadSignature => "bad_signature",
            Self::MissingClaim { .. } => "missing_claim",
            Self::InvalidClaim { .. } => "invalid_claim",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::Key(_) => "key_error",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The decision-level reason the gateway reports: expiry is its own reason, every other
    /// refusal is `invalid_envelope` (the detail stays in `code`).
    pub fn decision_reason(&self) -> &'static str {
        match self {
            Self::Expired { .. } => "expired",
            _ => "invalid_envelope",
        }
    }
}
