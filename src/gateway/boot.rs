//! Start-up: resolve every configured component (built-in demo ones included), bind the
//! tools of the policy bundle to upstreams and vaulted credentials, bind the listeners,
//! and start one gateway service per core.

use super::service::Gateway;
use super::state::{Active, BindError, Revocations, Shared};
use crate::audit::writer::WriterConfig;
use crate::audit::{AuditSink, OnFull};
use crate::config::{Config, ConfigError, Source, UpstreamAddr};
use crate::decision::Bundle;
use crate::demo::{self, DemoBackends};
use crate::envelope::{SigningKey, TrustedKeys, Verifier};
use crate::mcp::session::SessionKey;
use crate::proxy::pool::UpstreamSpec;
use crate::server::{self, Driver, Limits, ServerHandle};
use crate::vault::{MasterKey, Secret, Vault};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The example policy bundle compiled from `policies/`, for `builtin:example`.
pub const EXAMPLE_BUNDLE: &[u8] = include_bytes!("../../policies/example.bundle");

/// Why the gateway could not start. Each names the configuration field to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{file}: {field}: {message}")]
    Component {
        file: String,
        field: String,
        message: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// A running gateway and what a user needs to know about it.
pub struct Running {
    pub server: ServerHandle,
    pub shared: Arc<Shared>,
    pub workers: usize,
    /// Where the demo issuer key was written, when `envelope.jwks = "builtin:demo"`.
    pub demo_issuer_dir: Option<PathBuf>,
    pub demo_backends: Option<DemoBackends>,
    pub audit_dir: PathBuf,
    /// The audit writer; `shutdown` closes it (final checkpoint, fsync).
    pub audit_writer: Option<std::thread::JoinHandle<()>>,
    pub admin: Option<ServerHandle>,
    /// Where a generated admin token was written (embedded default only).
    pub admin_token_file: Option<PathBuf>,
}

impl Running {
    /// Graceful shutdown: stop accepting, let in-flight calls finish, flush every core's
    /// audit batch, seal the audit segment with a checkpoint and sync it.
    pub fn shutdown(mut self) {
        self.shared
            .stopping
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(a) = self.admin.take() {
            a.begin_shutdown();
        }
        let ServerHandle { threads, .. } = {
            self.server.begin_shutdown();
            self.server
        };
        for t in threads {
            let _ = t.join();
        }
        // The writer seals the trail; if it is stuck (a dead disk), say so rather than
        // hang: what it could not write is already counted as dropped.
        let patience = std::time::Duration::from_secs(10);
        let sealed = self.shared.audit.close(patience) && {
            let deadline = std::time::Instant::now() + patience;
            let w = self.audit_writer.take();
            while w.as_ref().is_some_and(|w| !w.is_finished())
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            match w {
                Some(w) if w.is_finished() => w.join().is_ok(),
                Some(_) => false,
                None => true,
            }
        };
        if !sealed {
            crate::warn!(
                "audit: the writer did not finish sealing {} in time; the last segment may lack its checkpoint",
                self.audit_dir.display()
            );
        }
    }
}

/// The admin token: from `admin.token_file`, else the environment variable named by
/// `admin.token_env`. The embedded default, and only it, generates one when neither is
/// available and writes it next to the demo files.
fn admin_token(
    cfg: &Config,
    demo_dir: &std::path::Path,
) -> Result<(String, Option<PathBuf>), StartError> {
    if let Some(f) = &cfg.admin.token_file {
        let p = cfg.base_dir.join(f);
        let t = String::from_utf8(read(cfg, "admin.token_file", &p)?)
            .map_err(|_| component(cfg, "admin.token_file", "not UTF-8 text"))?;
        let t = t.trim().to_owned();
        if t.len() < 16 {
            return Err(component(
                cfg,
                "admin.token_file",
                "the token must be at least 16 characters",
            ));
        }
        return Ok((t, None));
    }
    if let Some(var) = &cfg.admin.token_env
        && let Ok(t) = std::env::var(var)
    {
        if t.len() < 16 {
            return Err(component(
                cfg,
                "admin.token_env",
                format!("${var} must hold at least 16 characters"),
            ));
        }
        return Ok((t, None));
    }
    if cfg.source != crate::config::EMBEDDED_SOURCE {
        return Err(component(
            cfg,
            "admin.token_env / admin.token_file",
            "no admin token: set the environment variable or point token_file at a file",
        ));
    }
    let t = crate::envelope::mint::random_id();
    let p = demo_dir.join("admin.token");
    crate::vault::write_private_atomically(&p, t.as_bytes())
        .map_err(|e| component(cfg, "admin.token_file", format!("{}: {e}", p.display())))?;
    Ok((t, Some(p)))
}

fn component(cfg: &Config, field: &str, message: impl Into<String>) -> StartError {
    StartError::Component {
        file: cfg.source.clone(),
        field: field.into(),
        message: message.into(),
    }
}

fn read(cfg: &Config, field: &str, path: &std::path::Path) -> Result<Vec<u8>, StartError> {
    std::fs::read(path).map_err(|e| component(cfg, field, format!("{}: {e}", path.display())))
}

/// Loads the bundle named by `policy.bundle`.
pub fn load_bundle(cfg: &Config) -> Result<Bundle, StartError> {
    let bytes = match cfg.source_of(&cfg.policy.bundle) {
        Source::Builtin(b) if b == "example" => EXAMPLE_BUNDLE.to_vec(),
        Source::Builtin(b) => {
            return Err(component(
                cfg,
                "policy.bundle",
                format!("no built-in bundle `{b}`; use builtin:example or a file"),
            ));
        }
        Source::File(p) => read(cfg, "policy.bundle", &p)?,
    };
    Bundle::from_bytes(&bytes).map_err(|e| component(cfg, "policy.bundle", e.to_string()))
}

pub fn start(cfg: &Config) -> Result<Running, StartError> {
    let limits = cfg.limits_checked()?;
    let listen = cfg.listen_addr()?;
    let driver = Driver::parse(&cfg.server.driver).unwrap_or(Driver::Auto);
    let bundle = load_bundle(cfg)?;

    // Delegation key first: its public half joins the trusted issuers.
    let delegation_key = match cfg.source_of(&cfg.delegation.signing_key) {
        Source::Builtin(_) => SigningKey::generate(Some("portcullis-delegation".into()))
            .map_err(|e| component(cfg, "delegation.signing_key", e.to_string()))?,
        Source::File(p) => {
            let text = String::from_utf8(read(cfg, "delegation.signing_key", &p)?)
                .map_err(|_| component(cfg, "delegation.signing_key", "not a PEM file"))?;
            SigningKey::from_pkcs8_pem(&text, Some("portcullis-delegation".into()))
                .map_err(|e| component(cfg, "delegation.signing_key", e.to_string()))?
        }
    };
    let mut demo_issuer_dir = None;
    let mut keys = match cfg.source_of(&cfg.envelope.jwks) {
        Source::Builtin(_) => {
            let key = SigningKey::generate(Some("demo-issuer".into()))
                .map_err(|e| component(cfg, "envelope.jwks", e.to_string()))?;
            let dir = std::env::temp_dir().join(format!("portcullis-demo-{}", std::process::id()));
            write_demo_issuer(&dir, &key).map_err(|e| {
                component(
                    cfg,
                    "envelope.jwks",
                    format!("writing the demo issuer key: {e}"),
                )
            })?;
            demo_issuer_dir = Some(dir);
            let mut k = TrustedKeys::new();
            k.add(key.kid.clone(), key.public_key());
            k
        }
        Source::File(p) => {
            let text = String::from_utf8(read(cfg, "envelope.jwks", &p)?)
                .map_err(|_| component(cfg, "envelope.jwks", "not UTF-8 JSON"))?;
            TrustedKeys::from_jwks(&text)
                .map_err(|e| component(cfg, "envelope.jwks", format!("{}: {e}", p.display())))?
        }
    };
    if keys.kids().any(|k| k == delegation_key.kid) {
        return Err(component(
            cfg,
            "envelope.jwks",
            format!(
                "kid `{}` is reserved for the gateway's delegation key",
                delegation_key.kid
            ),
        ));
    }
    keys.add(delegation_key.kid.clone(), delegation_key.public_key());
    let mut verifier = Verifier::new(keys, cfg.envelope.audience.clone());
    verifier.skew_secs = cfg.skew_secs();
    verifier.max_token_len = cfg.envelope.max_token_bytes;

    let vault = match cfg.source_of(&cfg.vault.path) {
        Source::Builtin(_) => demo_vault(&bundle),
        Source::File(p) => {
            let key = match (&cfg.vault.key_file, &cfg.vault.key_env) {
                (Some(f), _) => MasterKey::from_file(&cfg.base_dir.join(f)),
                (None, Some(var)) => MasterKey::from_env(var),
                (None, None) => MasterKey::from_env(crate::vault::DEFAULT_KEY_ENV),
            }
            .map_err(|e| component(cfg, "vault.key_file / vault.key_env", e.to_string()))?;
            Vault::open(&p, &key).map_err(|e| component(cfg, "vault.path", e.to_string()))?
        }
    };

    // Upstreams; built-in demo backends start here, on loopback.
    let needs_demo = cfg
        .upstreams
        .values()
        .any(|u| u.url.starts_with("builtin:"));
    let demo_backends = if needs_demo {
        Some(demo::start_backends(&bundle, &vault, cfg).map_err(|e| {
            component(
                cfg,
                "upstreams",
                format!("starting the built-in demo backends: {e}"),
            )
        })?)
    } else {
        None
    };
    let mut specs = Vec::new();
    let mut index = HashMap::new();
    for (name, u) in &cfg.upstreams {
        let field = format!("upstreams.{name}.url");
        let (addr, host_header, base_path) = match cfg.upstream_addr(name)? {
            UpstreamAddr::Builtin(b) => {
                let d = demo_backends.as_ref().and_then(|d| d.addr_of(&b)).ok_or_else(|| {
                    component(cfg, &field, format!("no built-in backend `{b}`; built-ins are builtin:records and builtin:docs-mcp"))
                })?;
                (d, d.to_string(), String::new())
            }
            UpstreamAddr::Http {
                host_header,
                addr,
                base_path,
            } => {
                let sa = addr
                    .to_socket_addrs()
                    .map_err(|e| component(cfg, &field, format!("cannot resolve `{addr}`: {e}")))?
                    .next()
                    .ok_or_else(|| {
                        component(cfg, &field, format!("`{addr}` resolves to no address"))
                    })?;
                (sa, host_header, base_path)
            }
        };
        let (connect_timeout, response_timeout) = cfg.upstream_timeouts(name);
        index.insert(name.clone(), specs.len());
        specs.push(UpstreamSpec {
            name: name.clone(),
            addr,
            host_header,
            base_path,
            connect_timeout,
            response_timeout,
            max_idle: u.max_idle_per_core,
            idle_timeout: Duration::from_secs(30),
            credential_header: u.credential_header.clone(),
            credential_prefix: u.credential_prefix.clone(),
        });
    }
    let active = Active::bind(bundle, &index, &specs, &vault).map_err(|e| {
        let field = match &e {
            BindError::UnknownUpstream { .. } => "upstreams",
            BindError::MissingCredential { .. } => "vault.path",
        };
        component(
            cfg,
            field,
            format!("policy bundle {}: {e}", cfg.policy.bundle),
        )
    })?;

    let (audit, audit_writer, audit_dir) = start_audit(cfg)?;
    let bundle_signers = match &cfg.admin.bundle_signing_jwks {
        None => None,
        Some(f) => {
            let p = cfg.base_dir.join(f);
            let text = String::from_utf8(read(cfg, "admin.bundle_signing_jwks", &p)?)
                .map_err(|_| component(cfg, "admin.bundle_signing_jwks", "not UTF-8 JSON"))?;
            Some(
                TrustedKeys::from_jwks(&text)
                    .map_err(|e| component(cfg, "admin.bundle_signing_jwks", e.to_string()))?,
            )
        }
    };
    let revocations_file = cfg
        .admin
        .revocations_file
        .as_ref()
        .map(|f| cfg.base_dir.join(f));
    let revocations = match &revocations_file {
        Some(p) => super::state::load_revocations(p)
            .map_err(|e| component(cfg, "admin.revocations_file", e))?,
        None => Revocations::default(),
    };
    let (admin_token, admin_token_file) =
        admin_token(cfg, demo_issuer_dir.as_deref().unwrap_or(&audit_dir))?;
    let workers = server::worker_count(cfg.server.cores);
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let shared = Arc::new(Shared {
        limits: limits.clone(),
        verifier,
        active: ArcSwap::from_pointee(active),
        vault: Arc::new(vault),
        revocations: ArcSwap::from_pointee(revocations),
        delegation_key,
        max_delegation_depth: cfg.delegation.max_depth,
        sessions: SessionKey::generate(),
        ended_sessions: ArcSwap::from_pointee(HashMap::new()),
        upstreams: specs,
        upstream_index: index,
        allowed_origins: cfg.mcp.allowed_origins.clone(),
        envelope_cache_entries: cfg.envelope.cache_entries,
        epoch,
        audit,
        metrics: crate::metrics::Metrics::new(workers),
        bundle_swaps: std::sync::atomic::AtomicU64::new(0),
        stopping: std::sync::atomic::AtomicBool::new(false),
        bundle_signers,
        revocations_file,
    });
    let server_limits = Limits {
        max_head_bytes: limits.max_head_bytes,
        max_body_bytes: limits.max_body_bytes,
        header_timeout: limits.header_timeout,
        body_timeout: limits.body_timeout,
        idle_timeout: limits.idle_timeout,
    };
    let for_workers = Arc::clone(&shared);
    let server = server::start(
        "portcullis",
        listen,
        workers,
        driver,
        server_limits,
        move |core| Gateway::new(core, Arc::clone(&for_workers)),
    )
    .map_err(|e| StartError::Listen {
        addr: listen.to_string(),
        source: e,
    })?;
    let admin_addr = cfg.admin_addr()?;
    let admin_shared = Arc::clone(&shared);
    let admin_token: Arc<str> = admin_token.into();
    let admin_limits = Limits {
        max_body_bytes: 1 << 30,
        ..Limits::default()
    };
    let admin = server::start(
        "portcullis-admin",
        admin_addr,
        1,
        driver,
        admin_limits,
        move |_| super::admin::Admin {
            shared: Arc::clone(&admin_shared),
            token: Arc::clone(&admin_token),
        },
    )
    .map_err(|e| StartError::Listen {
        addr: admin_addr.to_string(),
        source: e,
    })?;
    Ok(Running {
        server,
        admin: Some(admin),
        admin_token_file,
        shared,
        workers,
        demo_issuer_dir,
        demo_backends,
        audit_dir,
        audit_writer: Some(audit_writer),
    })
}

/// Starts the audit writer: directory, checkpoint key (its public JWKS written beside the
/// segments when it is generated here), queue size and full-queue policy.
fn start_audit(
    cfg: &Config,
) -> Result<(Arc<AuditSink>, std::thread::JoinHandle<()>, PathBuf), StartError> {
    let dir = match cfg.source_of(&cfg.audit.dir) {
        Source::Builtin(_) => {
            std::env::temp_dir().join(format!("portcullis-audit-{}", std::process::id()))
        }
        Source::File(p) => p,
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| component(cfg, "audit.dir", format!("{}: {e}", dir.display())))?;
    let key = match cfg.source_of(&cfg.audit.signing_key) {
        Source::Builtin(_) => {
            let kid = format!(
                "portcullis-audit-{}",
                &crate::envelope::mint::random_id()[..8]
            );
            let k = SigningKey::generate(Some(kid))
                .map_err(|e| component(cfg, "audit.signing_key", e.to_string()))?;
            publish_audit_key(&dir, &k).map_err(|e| component(cfg, "audit.signing_key", e))?;
            k
        }
        Source::File(p) => {
            let text = String::from_utf8(read(cfg, "audit.signing_key", &p)?)
                .map_err(|_| component(cfg, "audit.signing_key", "not a PEM file"))?;
            SigningKey::from_pkcs8_pem(&text, None)
                .map_err(|e| component(cfg, "audit.signing_key", e.to_string()))?
        }
    };
    let on_full = if cfg.audit.on_full == "drop" {
        OnFull::Drop
    } else {
        OnFull::Deny
    };
    let wcfg = WriterConfig {
        dir: dir.clone(),
        max_segment_bytes: cfg.audit.max_segment_bytes,
        fsync_interval: cfg.audit_fsync_interval()?,
    };
    let (sink, handle) = AuditSink::start(wcfg, Arc::new(key), cfg.audit.queue_batches, on_full)
        .map_err(|e| component(cfg, "audit.dir", format!("{}: {e}", dir.display())))?;
    Ok((sink, handle, dir))
}

/// Adds a key generated at this start to `audit-key.jwks.json` in the audit directory.
/// The trail resumes across restarts, so the segments sealed under earlier starts' keys
/// are still there: their keys stay in the file (replacing it made their checkpoints
/// unverifiable after every restart). Written whole to a temporary file and renamed, so
/// a crash never leaves half a JWKS.
fn publish_audit_key(dir: &std::path::Path, key: &SigningKey) -> Result<(), String> {
    let path = dir.join("audit-key.jwks.json");
    let mut keys = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let broken = |why: &str| {
                format!(
                    "{} {why}; it holds the keys that verify earlier segments' checkpoints: repair it or move it away",
                    path.display()
                )
            };
            let doc: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| broken(&format!("is not JSON ({e})")))?;
            doc.get("keys")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .ok_or_else(|| broken("has no `keys` array"))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    keys.push(key.jwk());
    let text = serde_json::to_string_pretty(&serde_json::json!({ "keys": keys }))
        .map_err(|e| e.to_string())?;
    let tmp = dir.join("audit-key.jwks.json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("writing the audit JWKS {}: {e}", path.display()))
}

/// Generated credentials for every name the bundle's tools use: known only to this
/// process and the built-in backends that check them.
fn demo_vault(bundle: &Bundle) -> Vault {
    let mut v = Vault::new();
    for t in bundle.tools() {
        if v.get(&t.credential).is_none() {
            let secret = format!(
                "demo_{}_{}",
                t.credential.replace(['.', '-'], "_"),
                crate::envelope::mint::random_id()
            );
            let _ = v.insert(&t.credential, Secret::new(secret.into_bytes()));
        }
    }
    v
}

fn write_demo_issuer(dir: &std::path::Path, key: &SigningKey) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    crate::vault::write_private_atomically(&dir.join("private.pem"), key.private_pem().as_bytes())?;
    std::fs::write(
        dir.join("jwks.json"),
        serde_json::to_string_pretty(&key.jwks()).unwrap_or_default(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_start_adds_its_audit_key_and_a_damaged_jwks_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            SigningKey::generate(Some("audit-a".into())).unwrap(),
            SigningKey::generate(Some("audit-b".into())).unwrap(),
        );
        publish_audit_key(dir.path(), &a).unwrap();
        publish_audit_key(dir.path(), &b).unwrap();
        let path = dir.path().join("audit-key.jwks.json");
        let keys =
            crate::envelope::TrustedKeys::from_jwks(&std::fs::read_to_string(&path).unwrap())
                .unwrap();
        let public = |kid| keys.get(kid).map(|k| k.as_ref().to_vec());
        assert_eq!(public("audit-a"), Some(a.public_key().to_vec()));
        assert_eq!(public("audit-b"), Some(b.public_key().to_vec()));

        std::fs::write(&path, "{\"keys\": [").unwrap();
        let e = publish_audit_key(dir.path(), &a).unwrap_err();
        assert!(e.contains("audit-key.jwks.json is not JSON"), "{e}");
        assert!(e.contains("repair it or move it away"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"keys\": [");
    }
}
