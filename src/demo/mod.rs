//! Built-in demo backends (real servers on loopback) and the renewal-review walk-through.
//! They make `portcullis serve` and `portcullis demo` work on a fresh machine with nothing
//! else installed.

pub mod client;
pub mod mcp_server;
pub mod records;
pub mod scenario;

use crate::config::Config;
use crate::decision::Bundle;
use crate::server::{self, Driver, Limits, ServerHandle};
use crate::vault::Vault;
use records::SeenLog;
use std::net::SocketAddr;

/// The running demo backends and what they have seen.
pub struct DemoBackends {
    pub records: Option<(ServerHandle, SeenLog)>,
    pub docs: Option<(ServerHandle, SeenLog)>,
}

impl DemoBackends {
    pub fn addr_of(&self, builtin: &str) -> Option<SocketAddr> {
        match builtin {
            "records" => self.records.as_ref().map(|(h, _)| h.addr),
            "docs-mcp" => self.docs.as_ref().map(|(h, _)| h.addr),
            _ => None,
        }
    }

    pub fn log_of(&self, builtin: &str) -> Option<&SeenLog> {
        match builtin {
            "records" => self.records.as_ref().map(|(_, l)| l),
            "docs-mcp" => self.docs.as_ref().map(|(_, l)| l),
            _ => None,
        }
    }
}

/// The `Authorization` value a built-in backend must insist on: the vaulted credential of
/// the tools routed to it, with the upstream's prefix.
fn expected_auth(builtin: &str, bundle: &Bundle, vault: &Vault, cfg: &Config) -> String {
    for (name, u) in &cfg.upstreams {
        if u.url != format!("builtin:{builtin}") {
            continue;
        }
        if let Some(t) = bundle.tools().iter().find(|t| &t.upstream == name)
            && let Some(secret) = vault.get(&t.credential)
        {
            let prefix = t
                .credential_prefix
                .as_deref()
                .unwrap_or(&u.credential_prefix);
            return format!("{prefix}{}", String::from_utf8_lossy(secret.expose()));
        }
    }
    // No tool routes here: accept nothing (a random value nobody holds).
    format!("Bearer unused-{}", crate::envelope::mint::random_id())
}

/// Starts the built-in backends the configuration names, one worker each, on loopback.
pub fn start_backends(
    bundle: &Bundle,
    vault: &Vault,
    cfg: &Config,
) -> std::io::Result<DemoBackends> {
    let wants = |b: &str| {
        cfg.upstreams
            .values()
            .any(|u| u.url == format!("builtin:{b}"))
    };
    let loopback: SocketAddr = "127.0.0.1:0".parse().map_err(std::io::Error::other)?;
    let mut out = DemoBackends {
        records: None,
        docs: None,
    };
    if wants("records") {
        let log = SeenLog::default();
        let auth = expected_auth("records", bundle, vault, cfg);
        let l = log.clone();
        let h = server::start(
            "demo-records",
            loopback,
            1,
            Driver::Auto,
            Limits::default(),
            move |_| records::Records {
                expected_auth: auth.clone(),
                log: l.clone(),
            },
        )?;
        out.records = Some((h, log));
    }
    if wants("docs-mcp") {
        let log = SeenLog::default();
        let auth = expected_auth("docs-mcp", bundle, vault, cfg);
        let l = log.clone();
        let h = server::start(
            "demo-docs-mcp",
            loopback,
            1,
            Driver::Auto,
            Limits::default(),
            move |_| mcp_server::DocsMcp {
                expected_auth: auth.clone(),
                log: l.clone(),
            },
        )?;
        out.docs = Some((h, log));
    }
    Ok(out)
}
