//! Issuer keys: Ed25519 key generation, PKCS#8/SPKI PEM files, JWK/JWKS and RFC 7638
//! thumbprints used as default key ids.
//!
//! Private keys are written as PKCS#8 v1 (RFC 8410), the form OpenSSL and every JOSE
//! library read; ring's own v2 output is not accepted everywhere.

use super::EnvelopeError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde_json::{Value, json};

/// DER prefix of a PKCS#8 v1 Ed25519 private key; the 32-byte seed follows.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// DER prefix of an SPKI Ed25519 public key; the 32-byte key follows.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn key_err(msg: impl Into<String>) -> EnvelopeError {
    EnvelopeError::Key(msg.into())
}

/// An issuer's signing key with the `kid` it signs under.
pub struct SigningKey {
    pub kid: String,
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    // Never print key material, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the system CSPRNG; `kid` defaults to the JWK thumbprint.
    pub fn generate(kid: Option<String>) -> Result<Self, EnvelopeError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| key_err("the system random number generator failed"))?;
        let mut der = PKCS8_V1_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        Self::from_pkcs8_der(&der, kid)
    }

    /// Loads a PKCS#8 DER private key (v1 or v2).
    pub fn from_pkcs8_der(der: &[u8], kid: Option<String>) -> Result<Self, EnvelopeError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| key_err(format!("not an Ed25519 PKCS#8 private key ({e})")))?;
        let kid = kid.unwrap_or_else(|| thumbprint(pair.public_key().as_ref()));
        Ok(SigningKey {
            kid,
            pair,
            pkcs8: der.to_vec(),
        })
    }

    /// Loads a `-----BEGIN PRIVATE KEY-----` PEM file's contents.
    pub fn from_pkcs8_pem(pem_text: &str, kid: Option<String>) -> Result<Self, EnvelopeError> {
        let p = pem::parse(pem_text).map_err(|e| key_err(format!("not a PEM file ({e})")))?;
        if p.tag() != "PRIVATE KEY" {
            return Err(key_err(format!(
                "PEM block is `{}`; expected `PRIVATE KEY` (PKCS#8 Ed25519)",
                p.tag()
            )));
        }
        Self::from_pkcs8_der(p.contents(), kid)
    }

    pub fn private_pem(&self) -> String {
        pem_lf(&pem::Pem::new("PRIVATE KEY", self.pkcs8.clone()))
    }

    pub fn public_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        k
    }

    pub fn public_pem(&self) -> String {
        public_spki_pem(&self.public_key())
    }

    /// The public key as a JWK with this key's `kid`.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": self.kid, "x": URL_SAFE_NO_PAD.encode(self.public_key()),
        })
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }
}

pub fn public_spki_pem(key: &[u8; 32]) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(key);
    pem_lf(&pem::Pem::new("PUBLIC KEY", der))
}

/// PEM with Unix line endings, as OpenSSL writes it (the `pem` crate defaults to CRLF).
fn pem_lf(p: &pem::Pem) -> String {
    pem::encode_config(
        p,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key (base64url SHA-256 of the canonical
/// `{"crv","kty","x"}` JSON), a stable default key id.
pub fn thumbprint(public_key: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public_key)
    );
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// The trusted issuer keys, by `kid`.
#[derive(Clone)]
pub struct TrustedKeys {
    keys: Vec<(String, UnparsedPublicKey<[u8; 32]>)>,
}

impl std::fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(k, _)| k))
            .finish()
    }
}

impl TrustedKeys {
    pub fn new() -> Self {
        TrustedKeys { keys: Vec::new() }
    }

    pub fn add(&mut self, kid: impl Into<String>, public_key: [u8; 32]) {
        self.keys
            .push((kid.into(), UnparsedPublicKey::new(&ED25519, public_key)));
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(k, _)| k.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&UnparsedPublicKey<[u8; 32]>> {
        // A handful of issuer keys: a linear scan beats hashing.
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    /// Reads a JWKS document. Ed25519 keys (`kty: OKP`, `crv: Ed25519`) are trusted; keys of
    /// other types are skipped, since an issuer may publish keys for other uses. A JWKS with
    /// no Ed25519 key, a key without `kid`, or a duplicate `kid` is refused.
    pub fn from_jwks(text: &str) -> Result<Self, EnvelopeError> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| key_err(format!("JWKS is not JSON ({e})")))?;
        let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
            return Err(key_err("JWKS has no `keys` array"));
        };
        let mut out = TrustedKeys::new();
        for (i, k) in keys.iter().enumerate() {
            let field = |name: &str| k.get(name).and_then(Value::as_str);
            if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
                continue;
            }
            if let Some(alg) = field("alg")
                && alg != "EdDSA"
                && alg != "Ed25519"
            {
                return Err(key_err(format!("keys[{i}]: alg `{alg}` on an Ed25519 key")));
            }
            let kid = field("kid").ok_or_else(|| key_err(format!("keys[{i}] has no `kid`")))?;
            let x = field("x").ok_or_else(|| key_err(format!("keys[{i}] has no `x`")))?;
            let raw = URL_SAFE_NO_PAD
                .decode(x)
                .map_err(|_| key_err(format!("keys[{i}].x is not base64url")))?;
            let pk: [u8; 32] = raw
                .try_into()
                .map_err(|_| key_err(format!("keys[{i}].x is not a 32-byte Ed25519 key")))?;
            if out.get(kid).is_some() {
                return Err(key_err(format!("kid `{kid}` appears twice in the JWKS")));
            }
            out.add(kid, pk);
        }
        if out.is_empty() {
            return Err(key_err("JWKS holds no Ed25519 (OKP) key"));
        }
        Ok(out)
    }
}

impl Default for TrustedKeys {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let k = SigningKey::generate(None).unwrap();
        let again = SigningKey::from_pkcs8_pem(&k.private_pem(), None).unwrap();
        assert_eq!(k.public_key(), again.public_key());
        assert_eq!(
            k.kid, again.kid,
            "default kid is the thumbprint, stable across loads"
        );
        assert!(k.private_pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(k.public_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(!k.private_pem().contains('\r') && !k.public_pem().contains('\r'));
        let jwks = TrustedKeys::from_jwks(&k.jwks().to_string()).unwrap();
        assert!(jwks.get(&k.kid).is_some());
    }

    #[test]
    fn refuses_bad_jwks() {
        assert!(TrustedKeys::from_jwks("{}").is_err());
        assert!(TrustedKeys::from_jwks(r#"{"keys":[{"kty":"RSA","n":"x","e":"AQAB"}]}"#).is_err());
        assert!(
            TrustedKeys::from_jwks(
                r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"a"}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn thumbprint_matches_rfc8037_example() {
        // RFC 8037 appendix A.3: thumbprint of the example Ed25519 key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            thumbprint(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
