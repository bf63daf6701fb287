//! A load-test deployment: the files a gateway needs to sit in front of the built-in
//! backend (an issuer key it trusts, a vault holding the credentials the backend checks,
//! a configuration pointing its upstreams at the backend). `compare` writes one into a
//! temporary directory and runs the gateway in-process; `setup` writes one where the user
//! asks, so the gateway can run as its own process (`portcullis serve --config ...`),
//! pinned to its own cores, and `run --deployment DIR` can load it.

use portcullis::envelope::SigningKey;
use portcullis::vault::{MasterKey, Secret, Vault};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Vault names the example tool registry uses.
pub const RECORDS_CREDENTIAL: &str = "records_api";
pub const MCP_CREDENTIAL: &str = "docs_mcp";

/// The admin token written into every deployment (loopback-only admin listener).
const ADMIN_TOKEN_FILE: &str = "admin.token";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A written deployment.
pub struct Deployment {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub issuer: SigningKey,
    /// The credential the backend expects on records routes (without the `Bearer ` prefix).
    pub records_credential: String,
    pub mcp_credential: String,
}

/// How the gateway of a deployment is set up.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub cores: usize,
    pub driver: portcullis::server::Driver,
    pub backend: SocketAddr,
    /// `audit.on_full`: "deny" or "drop".
    pub audit_on_full: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), SetupError> {
    std::fs::write(path, bytes).map_err(io(path))
}

fn random_secret(prefix: &str) -> String {
    format!("{prefix}-{}", portcullis::envelope::mint::random_id())
}

/// Writes a fresh deployment into `dir` (created if missing).
pub fn write_deployment(dir: &Path, s: &GatewaySettings) -> Result<Deployment, SetupError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let issuer =
        SigningKey::generate(Some("loadtest-issuer".into())).map_err(|e| SetupError::Invalid {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
    let key_path = dir.join("issuer.pem");
    portcullis::vault::write_private_atomically(&key_path, issuer.private_pem().as_bytes())
        .map_err(io(&key_path))?;
    write(&dir.join("jwks.json"), issuer.jwks().to_string().as_bytes())?;

    let records_credential = random_secret("lt-records");
    let mcp_credential = random_secret("lt-mcp");
    let master = MasterKey::generate().map_err(|e| SetupError::Invalid {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let vault_key = dir.join("vault.key");
    portcullis::vault::write_private_atomically(&vault_key, master.to_base64().as_bytes())
        .map_err(io(&vault_key))?;
    let mut vault = Vault::new();
    for (name, value) in [
        (RECORDS_CREDENTIAL, &records_credential),
        (MCP_CREDENTIAL, &mcp_credential),
    ] {
        vault
            .insert(name, Secret::new(value.as_bytes()))
            .map_err(|e| SetupError::Invalid {
                path: dir.to_path_buf(),
                message: e.to_string(),
            })?;
    }
    let vault_path = dir.join("vault.json");
    vault
        .save(&vault_path, &master)
        .map_err(|e| SetupError::Invalid {
            path: vault_path.clone(),
            message: e.to_string(),
        })?;
    // The backend's side of the shared secret, kept apart from the gateway's vault so the
    // backend can check what the gateway injects.
    write(
        &dir.join("backend-credentials.json"),
        serde_json::json!({
            RECORDS_CREDENTIAL: records_credential,
            MCP_CREDENTIAL: mcp_credential,
        })
        .to_string()
        .as_bytes(),
    )?;
    let admin = dir.join(ADMIN_TOKEN_FILE);
    portcullis::vault::write_private_atomically(&admin, random_secret("lt-admin").as_bytes())
        .map_err(io(&admin))?;

    let config = dir.join("gateway.toml");
    let d = Deployment {
        dir: dir.to_path_buf(),
        config,
        issuer,
        records_credential,
        mcp_credential,
    };
    write_gateway_config(&d, s)?;
    Ok(d)
}

/// The gateway configuration: the example policies, the deployment's keys and vault, and
/// both upstreams on the built-in backend.
fn gateway_toml(s: &GatewaySettings) -> String {
    format!(
        r#"# Written by portcullis-loadtest setup: the gateway in front of the load-test backend.
[server]
listen = "{listen}"
cores = {cores}
driver = "{driver}"

[envelope]
jwks = "jwks.json"
# Every envelope of the workload is distinct; keep them all cached.
cache_entries = 65536

[policy]
bundle = "builtin:example"

[vault]
path = "vault.json"
key_file = "vault.key"

[audit]
dir = "audit"
on_full = "{on_full}"

[admin]
listen = "{admin}"
token_file = "{ADMIN_TOKEN_FILE}"

[upstreams.records]
url = "http://{backend}"
max_idle_per_core = 1024
credential_header = "Authorization"
credential_prefix = "Bearer "

[upstreams.docs-mcp]
url = "http://{backend}"
max_idle_per_core = 1024
credential_header = "Authorization"
credential_prefix = "Bearer "
"#,
        listen = s.listen,
        cores = s.cores,
        driver = match s.driver {
            portcullis::server::Driver::Auto => "auto",
            portcullis::server::Driver::IoUring => "io_uring",
            portcullis::server::Driver::Legacy => "legacy",
        },
        on_full = s.audit_on_full,
        admin = s.admin_listen,
        backend = s.backend,
    )
}

/// Loads a deployment `write_deployment` wrote (for `run` against a gateway started from
/// it, and for `backend`).
pub fn load_deployment(dir: &Path) -> Result<Deployment, SetupError> {
    let key_path = dir.join("issuer.pem");
    let pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
    let issuer = SigningKey::from_pkcs8_pem(&pem, Some("loadtest-issuer".into())).map_err(|e| {
        SetupError::Invalid {
            path: key_path.clone(),
            message: e.to_string(),
        }
    })?;
    let (records_credential, mcp_credential) = load_backend_credentials(dir)?;
    Ok(Deployment {
        dir: dir.to_path_buf(),
        config: dir.join("gateway.toml"),
        issuer,
        records_credential,
        mcp_credential,
    })
}

/// (Re)writes the deployment's `gateway.toml` for `s`: the last step of `write_deployment`,
/// and how a caller points the gateway at a backend whose port is known only once the
/// backend listens.
pub fn write_gateway_config(d: &Deployment, s: &GatewaySettings) -> Result<(), SetupError> {
    write(&d.config, gateway_toml(s).as_bytes())
}

/// Where the deployment's gateway sends its records calls: the backend to run for it.
pub fn backend_addr(d: &Deployment) -> Result<SocketAddr, SetupError> {
    let invalid = |message: String| SetupError::Invalid {
        path: d.config.clone(),
        message,
    };
    let cfg = portcullis::config::Config::load(&d.config).map_err(|e| invalid(e.to_string()))?;
    if !cfg.upstreams.contains_key("records") {
        return Err(invalid(
            "no [upstreams.records]: not a `portcullis-loadtest setup` deployment".into(),
        ));
    }
    // The gateway's own reading of the URL, so both agree on where it forwards.
    match cfg
        .upstream_addr("records")
        .map_err(|e| invalid(e.to_string()))?
    {
        portcullis::config::UpstreamAddr::Http { addr, .. } => addr.parse().map_err(|_| {
            invalid(format!(
                "upstreams.records.url: `{addr}` is not IP:PORT, so no backend can listen there"
            ))
        }),
        portcullis::config::UpstreamAddr::Builtin(b) => Err(invalid(format!(
            "upstreams.records is `builtin:{b}`: there is no backend to start for it"
        ))),
    }
}

/// The credentials the backend must see, from a deployment directory.
pub fn load_backend_credentials(dir: &Path) -> Result<(String, String), SetupError> {
    let p = dir.join("backend-credentials.json");
    let text = std::fs::read_to_string(&p).map_err(io(&p))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| SetupError::Invalid {
        path: p.clone(),
        message: e.to_string(),
    })?;
    let get = |k: &str| {
        v[k].as_str()
            .map(str::to_owned)
            .ok_or_else(|| SetupError::Invalid {
                path: p.clone(),
                message: format!("missing `{k}`"),
            })
    };
    Ok((get(RECORDS_CREDENTIAL)?, get(MCP_CREDENTIAL)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_deployment_is_a_valid_gateway_configuration_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = GatewaySettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            cores: 1,
            driver: portcullis::server::Driver::Legacy,
            backend: "127.0.0.1:18080".parse().unwrap(),
            audit_on_full: "deny".into(),
        };
        let d = write_deployment(dir.path(), &s).unwrap();
        let cfg = portcullis::config::Config::load(&d.config).unwrap();
        assert_eq!(cfg.upstreams.len(), 2);
        let back = load_deployment(dir.path()).unwrap();
        assert_eq!(back.records_credential, d.records_credential);
        assert_eq!(back.issuer.public_key(), d.issuer.public_key());
        assert_ne!(d.records_credential, d.mcp_credential);
    }
}
