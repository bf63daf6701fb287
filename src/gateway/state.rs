//! What every core shares: settings, trusted keys, the active policy bundle bound to
//! upstreams and vaulted credentials (swapped atomically as a whole), revocations and
//! session keys. Read on every call without locks: `ArcSwap` loads and plain `Arc`s.

use crate::config::LimitsResolved;
use crate::decision::{Bundle, ToolSpec};
use crate::envelope::{Claims, SigningKey, Verifier};
use crate::mcp::session::SessionKey;
use crate::proxy::pool::UpstreamSpec;
use crate::vault::{Secret, Vault};
use arc_swap::ArcSwap;
use memchr::memmem::Finder;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// How a tool reaches its upstream: resolved once per bundle, so a call does no name
/// lookups beyond the tool itself.
pub struct ToolBinding {
    pub upstream: usize,
    pub credential: Secret,
    pub credential_header: String,
    pub credential_prefix: String,
    /// Prepared search for the credential in upstream responses.
    pub finder: Option<Finder<'static>>,
}

/// A policy bundle together with its bindings. Swapped as one unit: a call sees one
/// bundle version from start to end.
pub struct Active {
    pub bundle: Bundle,
    /// One per tool, in the order of `bundle.tools()`.
    bindings: Vec<ToolBinding>,
    /// The bundle's version and digest as audit-record fields, encoded once per bundle.
    pub audit_version: Box<[u8]>,
}

/// Why a bundle cannot be activated with this gateway's configuration.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("tool `{tool}` names upstream `{upstream}`, which the configuration does not define")]
    UnknownUpstream { tool: String, upstream: String },
    #[error("tool `{tool}` needs credential `{credential}`, which is not in the vault")]
    MissingCredential { tool: String, credential: String },
}

impl Active {
    /// Binds every tool of `bundle` to its upstream and credential, or explains why not.
    pub fn bind(
        bundle: Bundle,
        upstreams: &HashMap<String, usize>,
        specs: &[UpstreamSpec],
        vault: &Vault,
    ) -> Result<Active, BindError> {
        let mut bindings = Vec::new();
        for t in bundle.tools() {
            let upstream =
                *upstreams
                    .get(&t.upstream)
                    .ok_or_else(|| BindError::UnknownUpstream {
                        tool: t.name.clone(),
                        upstream: t.upstream.clone(),
                    })?;
            let credential =
                vault
                    .get(&t.credential)
                    .cloned()
                    .ok_or_else(|| BindError::MissingCredential {
                        tool: t.name.clone(),
                        credential: t.credential.clone(),
                    })?;
            let spec = &specs[upstream];
            let finder = crate::proxy::scrub::finder(credential.expose());
            bindings.push(ToolBinding {
                upstream,
                credential,
                credential_header: t
                    .credential_header
                    .clone()
                    .unwrap_or_else(|| spec.credential_header.clone()),
                credential_prefix: t
                    .credential_prefix
                    .clone()
                    .unwrap_or_else(|| spec.credential_prefix.clone()),
                finder,
            });
        }
        let mut audit_version = Vec::new();
        crate::audit::record::encode_policy_version(
            &mut audit_version,
            &bundle.meta().version,
            &bundle.meta().digest_hex,
        );
        Ok(Active {
            bundle,
            bindings,
            audit_version: audit_version.into_boxed_slice(),
        })
    }

    /// A tool of the bundle and how it reaches its upstream: one lookup by name.
    pub fn tool(&self, name: &str) -> Option<(&ToolSpec, &ToolBinding)> {
        let i = self.bundle.tool_index(name)?;
        Some((&self.bundle.tools()[i], &self.bindings[i]))
    }

    /// Every tool with its binding, in bundle order.
    pub fn tools(&self) -> impl Iterator<Item = (&ToolSpec, &ToolBinding)> {
        self.bundle.tools().iter().zip(&self.bindings)
    }
}

/// Revoked envelopes (by `jti`, which covers every envelope delegated from them), sessions
/// and tasks.
#[derive(Debug, Default, Clone)]
pub struct Revocations {
    pub jtis: HashSet<String>,
    pub sessions: HashSet<String>,
    pub tasks: HashSet<String>,
}

impl Revocations {
    pub fn is_empty(&self) -> bool {
        self.jtis.is_empty() && self.sessions.is_empty() && self.tasks.is_empty()
    }

    /// The revoked id that covers these claims, if any: the envelope itself, any ancestor
    /// in its delegation chain, its session or its task.
    pub fn covering<'c>(&self, c: &'c Claims) -> Option<&'c str> {
        if self.is_empty() {
            return None;
        }
        if self.jtis.contains(&c.jti) {
            return Some(&c.jti);
        }
        if let Some(a) = c.delegation_chain.iter().find(|a| self.jtis.contains(*a)) {
            return Some(a);
        }
        if self.sessions.contains(&c.session_id) {
            return Some(&c.session_id);
        }
        if self.tasks.contains(&c.task_id) {
            return Some(&c.task_id);
        }
        None
    }
}

/// State shared by all cores.
pub struct Shared {
    pub limits: LimitsResolved,
    pub verifier: Verifier,
    pub active: ArcSwap<Active>,
    pub vault: Arc<Vault>,
    pub revocations: ArcSwap<Revocations>,
    pub delegation_key: SigningKey,
    pub max_delegation_depth: u32,
    pub sessions: SessionKey,
    /// Sessions ended by DELETE, with the expiry of the envelope that opened each.
    pub ended_sessions: ArcSwap<HashMap<String, i64>>,
    pub upstreams: Vec<UpstreamSpec>,
    pub upstream_index: HashMap<String, usize>,
    pub allowed_origins: Vec<String>,
    pub envelope_cache_entries: usize,
    /// Process start in microseconds: the prefix of every decision id.
    pub epoch: u64,
    pub audit: Arc<crate::audit::AuditSink>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub bundle_swaps: std::sync::atomic::AtomicU64,
    /// Set when shutdown begins: responses say `Connection: close`.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Keys that must have signed a pushed bundle, when configured.
    pub bundle_signers: Option<crate::envelope::TrustedKeys>,
    pub revocations_file: Option<std::path::PathBuf>,
}

/// Why a new bundle was not activated. The previous one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("bundle signature required (X-Portcullis-Bundle-Signature) and missing")]
    SignatureMissing,
    #[error("bundle signature does not verify with the configured pipeline keys")]
    SignatureInvalid,
    #[error("bundle refused: {0}")]
    Bundle(String),
    #[error(transparent)]
    Bind(#[from] BindError),
}

impl Shared {
    /// Verifies, binds and atomically activates a bundle. In-flight calls finish on the
    /// bundle they started with; the next call sees the new one.
    pub fn activate_bytes(
        &self,
        bytes: &[u8],
        signature: Option<&str>,
    ) -> Result<(), ActivateError> {
        if let Some(keys) = &self.bundle_signers {
            use base64::Engine;
            let sig = signature.ok_or(ActivateError::SignatureMissing)?;
            let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig.trim_end_matches('='))
                .map_err(|_| ActivateError::SignatureInvalid)?;
            let ok = keys
                .kids()
                .any(|kid| keys.get(kid).is_some_and(|k| k.verify(bytes, &sig).is_ok()));
            if !ok {
                return Err(ActivateError::SignatureInvalid);
            }
        }
        let bundle = Bundle::from_bytes(bytes).map_err(|e| ActivateError::Bundle(e.to_string()))?;
        let active = Active::bind(bundle, &self.upstream_index, &self.upstreams, &self.vault)?;
        let active = Arc::new(active);
        // Stored before it is announced: whoever reads the log line and then asks which
        // bundle serves must hear the new one.
        self.active.store(Arc::clone(&active));
        self.bundle_swaps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let meta = active.bundle.meta();
        crate::info!(
            "activated policy bundle {} ({})",
            meta.version,
            &meta.digest_hex[..meta.digest_hex.len().min(16)]
        );
        Ok(())
    }

    /// Writes the revocation set to the configured file (atomically), if any.
    pub fn persist_revocations(&self, r: &Revocations) -> std::io::Result<()> {
        let Some(path) = &self.revocations_file else {
            return Ok(());
        };
        let mut doc = serde_json::json!({"jtis": r.jtis, "sessions": r.sessions, "tasks": r.tasks});
        for k in ["jtis", "sessions", "tasks"] {
            if let Some(a) = doc[k].as_array_mut() {
                a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            }
        }
        crate::vault::write_private_atomically(path, doc.to_string().as_bytes())
    }
}

/// Reads a persisted revocation set; a missing file is an empty set.
pub fn load_revocations(path: &std::path::Path) -> Result<Revocations, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Revocations::default()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(default)]
        jtis: HashSet<String>,
        #[serde(default)]
        sessions: HashSet<String>,
        #[serde(default)]
        tasks: HashSet<String>,
    }
    let d: Doc = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Revocations {
        jtis: d.jtis,
        sessions: d.sessions,
        tasks: d.tasks,
    })
}
