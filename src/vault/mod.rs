//! The credential vault: end-service credentials encrypted at rest with AES-256-GCM (ring),
//! decrypted once at start-up into memory, and handed out only to the proxy for injection
//! into upstream requests. Secrets never print: `Secret`'s `Debug` and `Display` redact.
//!
//! File format (JSON, so an operator can see what it is without being able to read it):
//! `{"format":"portcullis-vault","version":1,"aead":"AES-256-GCM","nonce":b64,"ciphertext":b64}`
//! where the plaintext is `{"secrets":{name: value}}` and the header fields are bound in as
//! associated data. Every write uses a fresh random nonce and replaces the file atomically.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

const FORMAT: &str = "portcullis-vault";
const VERSION: u32 = 1;
const AEAD_NAME: &str = "AES-256-GCM";
/// Environment variable holding the master key (base64 of 32 bytes) by default.
pub const DEFAULT_KEY_ENV: &str = "PORTCULLIS_VAULT_KEY";

/// Why the vault could not be opened or written. Every variant is the operator's to fix.
#[derive(Debug, Error)]
pub enum VaultError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a Portcullis vault ({detail})")]
    Format { path: PathBuf, detail: String },
    #[error(
        "{path}: cannot decrypt: the master key is wrong or the file was modified (AEAD tag mismatch)"
    )]
    Decrypt { path: PathBuf },
    #[error("master key: {0}")]
    Key(String),
    #[error("no secret named `{0}` in the vault")]
    NoSuchSecret(String),
    #[error("secret name `{0}` is invalid: use letters, digits, `_`, `-` and `.` only")]
    BadName(String),
}

/// A credential value. Redacted in every formatted output; wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(v: impl Into<Vec<u8>>) -> Self {
        Secret(v.into())
    }
    /// The raw bytes, for injection into an upstream request and nowhere else.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            *b = 0;
        }
        std::hint::black_box(&self.0);
    }
}

/// The 256-bit master key.
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn generate() -> Result<Self, VaultError> {
        let mut k = [0u8; 32];
        SystemRandom::new()
            .fill(&mut k)
            .map_err(|_| VaultError::Key("the system random number generator failed".into()))?;
        Ok(MasterKey(k))
    }

    /// Parses base64 (standard or URL-safe) or hex text holding exactly 32 bytes.
    pub fn parse(text: &str, source: &str) -> Result<Self, VaultError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| VaultError::Key(format!("{source}: bad hex")))?
        } else {
            B64.decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
                .map_err(|_| {
                    VaultError::Key(format!("{source}: not base64 or hex of a 32-byte key"))
                })?
        };
        let k: [u8; 32] = bytes.try_into().map_err(|v: Vec<u8>| {
            VaultError::Key(format!("{source}: key is {} bytes; expected 32", v.len()))
        })?;
        Ok(MasterKey(k))
    }

    pub fn from_env(var: &str) -> Result<Self, VaultError> {
        let v = std::env::var(var).map_err(|_| {
            VaultError::Key(format!(
                "environment variable {var} is not set (or pass a key file); \
                 `portcullis vault init` creates a key"
            ))
        })?;
        Self::parse(&v, var)
    }

    pub fn from_file(path: &Path) -> Result<Self, VaultError> {
        let text = std::fs::read_to_string(path).map_err(|e| VaultError::Io {
            path: path.to_owned(),
            source: e,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    fn aead(&self) -> LessSafeKey {
        // AES_256_GCM takes any 32-byte key; this cannot fail.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte AES key"))
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0 = [0; 32];
        std::hint::black_box(&self.0);
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHeader {
    format: String,
    version: u32,
    aead: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Plain {
    secrets: BTreeMap<String, String>,
}

/// Decrypted vault contents.
#[derive(Default)]
pub struct Vault {
    secrets: BTreeMap<String, Secret>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.secrets.keys()).finish()
    }
}

fn aad() -> Aad<[u8; 32]> {
    // Binds the format name and version to the ciphertext.
    let mut a = [0u8; 32];
    let tag = format!("{FORMAT}/{VERSION}/{AEAD_NAME}");
    a[..tag.len()].copy_from_slice(tag.as_bytes());
    Aad::from(a)
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

impl Vault {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.secrets.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn insert(&mut self, name: &str, value: Secret) -> Result<(), VaultError> {
        if !valid_name(name) {
            return Err(VaultError::BadName(name.into()));
        }
        self.secrets.insert(name.into(), value);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<(), VaultError> {
        self.secrets
            .remove(name)
            .map(drop)
            .ok_or_else(|| VaultError::NoSuchSecret(name.into()))
    }

    /// Reads and decrypts a vault file. Fails on a wrong key or any modification.
    pub fn open(path: &Path, key: &MasterKey) -> Result<Self, VaultError> {
        let text = std::fs::read_to_string(path).map_err(|e| VaultError::Io {
            path: path.to_owned(),
            source: e,
        })?;
        let fmt_err = |d: String| VaultError::Format {
            path: path.to_owned(),
            detail: d,
        };
        let h: FileHeader = serde_json::from_str(&text).map_err(|e| fmt_err(e.to_string()))?;
        if h.format != FORMAT {
            return Err(fmt_err(format!("format is `{}`", h.format)));
        }
        if h.version != VERSION || h.aead != AEAD_NAME {
            return Err(fmt_err(format!(
                "version {} / {} is not supported (this build reads {VERSION} / {AEAD_NAME})",
                h.version, h.aead
            )));
        }
        let nonce: [u8; NONCE_LEN] = B64
            .decode(&h.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| fmt_err("bad nonce".into()))?;
        let mut ct = B64
            .decode(&h.ciphertext)
            .map_err(|_| fmt_err("bad ciphertext".into()))?;
        let plain = key
            .aead()
            .open_in_place(Nonce::assume_unique_for_key(nonce), aad(), &mut ct)
            .map_err(|_| VaultError::Decrypt {
                path: path.to_owned(),
            })?;
        let p: Plain = serde_json::from_slice(plain).map_err(|e| fmt_err(e.to_string()))?;
        for b in ct.iter_mut() {
            *b = 0;
        }
        let mut v = Vault::new();
        for (k, val) in p.secrets {
            v.insert(&k, Secret::new(val.into_bytes()))?;
        }
        Ok(v)
    }

    /// Encrypts and writes the vault atomically (temporary file, fsync, rename), mode 0600.
    pub fn save(&self, path: &Path, key: &MasterKey) -> Result<(), VaultError> {
        let io = |e| VaultError::Io {
            path: path.to_owned(),
            source: e,
        };
        let plain = Plain {
            secrets: self
                .secrets
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v.expose()).into_owned()))
                .collect(),
        };
        let mut buf = serde_json::to_vec(&plain).map_err(|e| io(std::io::Error::other(e)))?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| VaultError::Key("the system random number generator failed".into()))?;
        key.aead()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad(), &mut buf)
            .map_err(|_| VaultError::Key("encryption failed".into()))?;
        let header = FileHeader {
            format: FORMAT.into(),
            version: VERSION,
            aead: AEAD_NAME.into(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(&buf),
        };
        let text =
            serde_json::to_string_pretty(&header).map_err(|e| io(std::io::Error::other(e)))?;
        write_private_atomically(path, text.as_bytes()).map_err(io)
    }
}

/// Writes `bytes` to `path` via a temporary file in the same directory, mode 0600.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("vault"),
        std::process::id()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.json");
        let key = MasterKey::generate().unwrap();
        let mut v = Vault::new();
        v.insert("crm_api", Secret::new("sk_live_abc")).unwrap();
        v.save(&path, &key).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("sk_live_abc"),
            "secrets are not in the file in clear"
        );
        assert!(!text.contains("crm_api"), "nor are their names");
        let back = Vault::open(&path, &key).unwrap();
        assert_eq!(back.get("crm_api").unwrap().expose(), b"sk_live_abc");
        assert_eq!(
            format!("{back:?} {:?}", back.get("crm_api").unwrap()),
            "{\"crm_api\"} Secret([REDACTED])"
        );

        let wrong = MasterKey::generate().unwrap();
        assert!(matches!(
            Vault::open(&path, &wrong),
            Err(VaultError::Decrypt { .. })
        ));

        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut ct = B64.decode(doc["ciphertext"].as_str().unwrap()).unwrap();
        ct[3] ^= 1;
        doc["ciphertext"] = B64.encode(ct).into();
        std::fs::write(&path, doc.to_string()).unwrap();
        assert!(matches!(
            Vault::open(&path, &key),
            Err(VaultError::Decrypt { .. })
        ));

        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(
            Vault::open(&path, &key),
            Err(VaultError::Format { .. })
        ));
        assert!(v.insert("bad name!", Secret::new("x")).is_err());
    }

    #[test]
    fn key_parsing() {
        let k = MasterKey::generate().unwrap();
        assert!(MasterKey::parse(&k.to_base64(), "t").is_ok());
        assert!(MasterKey::parse(&"ab".repeat(32), "t").is_ok());
        let e = MasterKey::parse("c2hvcnQ=", "t").unwrap_err().to_string();
        assert!(e.contains("expected 32"), "{e}");
    }
}
