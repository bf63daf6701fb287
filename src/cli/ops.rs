//! Operator commands: `audit verify`, and `push` / `revoke` as thin clients of the admin
//! API.

use super::CliError;
use clap::{Args, Subcommand};
use portcullis::audit::verify::{VerifyError, segments_in, verify_files};
use portcullis::demo::client::Client;
use portcullis::envelope::TrustedKeys;
use std::net::ToSocketAddrs;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain (and, with --jwks, the signed checkpoints) of audit segments,
    /// in order; report the first line that does not verify. FILE may be a directory.
    Verify {
        /// JWKS holding the gateway's audit key (audit-key.jwks.json for a generated key).
        #[arg(long)]
        jwks: Option<PathBuf>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
pub struct AdminArgs {
    /// Admin API base URL.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub admin: String,
    /// Environment variable holding the admin token.
    #[arg(long, default_value = "PORTCULLIS_ADMIN_TOKEN")]
    pub token_env: String,
    /// File holding the admin token (instead of --token-env).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct PushArgs {
    /// Compiled bundle (portcullis-compile build ... -o BUNDLE).
    pub bundle: PathBuf,
    /// Sign the bundle with this Ed25519 key (PKCS#8 PEM) for gateways that require it.
    #[arg(long)]
    pub sign_with: Option<PathBuf>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// Revoke one envelope (and every envelope delegated from it) by `jti`.
    #[arg(long, group = "what")]
    pub jti: Option<String>,
    /// Revoke every envelope of a session.
    #[arg(long, group = "what")]
    pub session: Option<String>,
    /// Revoke every envelope of a task.
    #[arg(long, group = "what")]
    pub task: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

pub fn audit(cmd: AuditCmd) -> Result<(), CliError> {
    let AuditCmd::Verify { jwks, files } = cmd;
    let keys = match &jwks {
        Some(p) => Some(
            TrustedKeys::from_jwks(&std::fs::read_to_string(p).map_err(|e| CliError::io(p, e))?)
                .map_err(|e| CliError::Usage(format!("{}: {e}", p.display())))?,
        ),
        None => None,
    };
    let mut all = Vec::new();
    for f in files {
        if f.is_dir() {
            all.extend(segments_in(&f).map_err(|e| CliError::io(&f, e))?);
        } else {
            all.push(f);
        }
    }
    match verify_files(&all, keys.as_ref()) {
        Ok(r) => {
            outln!(
                "ok: {} lines in {} file(s), {} checkpoint(s), {} signature(s) verified{}",
                r.lines,
                all.len(),
                r.checkpoints,
                r.signatures_checked,
                if keys.is_none() {
                    " (no --jwks: checkpoint signatures not checked)"
                } else {
                    ""
                }
            )?;
            if let Some(seq) = r.trusted_start {
                outln!(
                    "note: the files do not start with segment 1: the chain is checked from sequence {seq} on, what came before is not proven"
                )?;
            }
            if r.unsealed_tail > 0 {
                outln!(
                    "note: the last {} line(s) follow the last checkpoint (an open segment)",
                    r.unsealed_tail
                )?;
            }
            Ok(())
        }
        Err(VerifyError::Broken(f)) => Err(CliError::Usage(format!("BROKEN at {f}"))),
        Err(e) => Err(CliError::Usage(e.to_string())),
    }
}

fn connect(a: &AdminArgs) -> Result<(Client, String), CliError> {
    let token = match &a.token_file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| CliError::io(p, e))?
            .trim()
            .to_owned(),
        None => std::env::var(&a.token_env).map_err(|_| {
            CliError::Usage(format!(
                "no admin token: set ${} or pass --token-file",
                a.token_env
            ))
        })?,
    };
    let host = a
        .admin
        .strip_prefix("http://")
        .ok_or_else(|| CliError::Usage(format!("--admin `{}` must be an http:// URL", a.admin)))?
        .trim_end_matches('/');
    let addr = host
        .to_socket_addrs()
        .map_err(|e| CliError::Usage(format!("--admin `{host}`: {e}")))?
        .next()
        .ok_or_else(|| CliError::Usage(format!("--admin `{host}` resolves to no address")))?;
    let c = Client::connect(addr)
        .map_err(|e| CliError::Usage(format!("cannot reach the admin API at {addr}: {e}")))?;
    Ok((c, format!("Bearer {token}")))
}

fn report(r: portcullis::demo::client::Response) -> Result<(), CliError> {
    let text = r.text();
    if (200..300).contains(&r.status) {
        outln!("{text}")?;
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "admin API answered {}: {text}",
            r.status
        )))
    }
}

pub fn push(a: PushArgs) -> Result<(), CliError> {
    let bytes = std::fs::read(&a.bundle).map_err(|e| CliError::io(&a.bundle, e))?;
    let sig = match &a.sign_with {
        Some(k) => {
            let key = super::envelope_cmds::load_signing_key(k, None)?;
            use base64::Engine;
            Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.sign(&bytes)))
        }
        None => None,
    };
    let (mut c, auth) = connect(&a.admin)?;
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/octet-stream"),
    ];
    if let Some(s) = &sig {
        headers.push(("X-Portcullis-Bundle-Signature", s.as_str()));
    }
    let r = c
        .request("PUT", "/admin/bundle", &headers, &bytes)
        .map_err(|e| CliError::Usage(format!("push failed: {e}")))?;
    report(r)
}

pub fn revoke(a: RevokeArgs) -> Result<(), CliError> {
    let body = serde_json::json!({"jti": a.jti, "session_id": a.session, "task_id": a.task});
    if a.jti.is_none() && a.session.is_none() && a.task.is_none() {
        return Err(CliError::Usage(
            "name what to revoke: --jti, --session or --task".into(),
        ));
    }
    let (mut c, auth) = connect(&a.admin)?;
    let r = c
        .request(
            "POST",
            "/admin/revoke",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .map_err(|e| CliError::Usage(format!("revoke failed: {e}")))?;
    report(r)
}
