//! JWS compact serialisation for envelopes: splitting and decoding a token, and signing
//! claims into one. No policy here: which algorithms, keys and claims are acceptable is
//! the verifier's business.

use super::keys::SigningKey;
use super::{Claims, EnvelopeError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

/// The `typ` every envelope carries (RFC 8725 §3.11 explicit typing).
pub const ENVELOPE_TYP: &str = "agent-envelope+jwt";
pub const ALG: &str = "EdDSA";

/// A token split into its parts, with header and payload decoded but nothing verified.
pub struct Decoded<'t> {
    /// `header.payload` exactly as received: the bytes the signature covers.
    pub signing_input: &'t str,
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWS. Refuses anything that is not exactly three unpadded
/// base64url parts whose first two are JSON objects.
pub fn decode(token: &str) -> Result<Decoded<'_>, EnvelopeError> {
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(EnvelopeError::Malformed);
    };
    // An empty signature is left for the verifier to refuse by algorithm (`alg: none`
    // tokens end in a bare '.'), which is the more useful reason to report.
    if h.is_empty() || p.is_empty() {
        return Err(EnvelopeError::Malformed);
    }
    let header = json_object(b64(h, "header")?, "header")?;
    let payload = json_object(b64(p, "payload")?, "payload")?;
    let signature = b64(s, "signature")?;
    Ok(Decoded {
        signing_input: &token[..h.len() + 1 + p.len()],
        header,
        payload,
        signature,
    })
}

fn b64(part: &str, name: &'static str) -> Result<Vec<u8>, EnvelopeError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| EnvelopeError::BadBase64 { part: name })
}

fn json_object(bytes: Vec<u8>, part: &'static str) -> Result<Map<String, Value>, EnvelopeError> {
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(EnvelopeError::BadJson {
            part,
            detail: "not an object".into(),
        }),
        Err(e) => Err(EnvelopeError::BadJson {
            part,
            detail: e.to_string(),
        }),
    }
}

/// Signs claims into a compact JWS with the envelope header (`alg` EdDSA, `typ`, `kid`).
pub fn sign(claims: &Claims, key: &SigningKey) -> String {
    let header = json!({ "alg": ALG, "typ": ENVELOPE_TYP, "kid": key.kid });
    sign_raw(
        header.to_string().as_bytes(),
        claims.to_json().to_string().as_bytes(),
        key,
    )
}

/// Signs arbitrary header and payload bytes. Exposed so tests can build tokens that are
/// correctly signed yet otherwise wrong (bad claims, odd headers).
pub fn sign_raw(header: &[u8], payload: &[u8], key: &SigningKey) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let sig = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut token);
    token
}
