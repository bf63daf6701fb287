//! The agentic identity envelope: a JWS (EdDSA, `typ` `agent-envelope+jwt`) saying on
//! whose behalf, in which workflow, for what purpose and within which limits an agent acts.
//!
//! * `claims` — the typed claims and their validation;
//! * `jws` — compact serialisation, signing;
//! * `keys` — issuer keys, PEM and JWKS;
//! * `verify` — strict verification;
//! * `cache` — the bounded per-core cache of verified envelopes;
//! * `mint` — completing a claims file for signing.
//!
//! Everything here is sans-IO: bytes and structs in, results out.

pub mod cache;
pub mod claims;
mod error;
pub mod jws;
pub mod keys;
pub mod mint;
pub mod verify;

pub use cache::EnvelopeCache;
pub use claims::{Claims, IdScope, ResourceConstraints};
pub use error::EnvelopeError;
pub use keys::{SigningKey, TrustedKeys};
pub use verify::Verifier;
