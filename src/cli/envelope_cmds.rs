//! `keygen`, `mint`, `verify` and `inspect`: the envelope's life cycle from the shell.

use super::CliError;
use clap::Args;
use portcullis::clock;
use portcullis::envelope::mint::{MintOptions, claims_from_file};
use portcullis::envelope::{SigningKey, TrustedKeys, Verifier, jws};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct KeygenArgs {
    /// Directory to write private.pem, public.pem and jwks.json into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Key id to publish; defaults to the key's RFC 7638 thumbprint.
    #[arg(long)]
    pub kid: Option<String>,
    /// Overwrite an existing private.pem.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct MintArgs {
    /// Issuer private key (PKCS#8 PEM, as written by `portcullis keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Claims file: a JSON object in the seed's shape (delegator_id, tenant_id, session_id,
    /// task_id, purpose, allowed_tools, resource_constraints, expires_at, ...).
    #[arg(long)]
    pub claims: PathBuf,
    /// Lifetime from now, e.g. 15m, 1h, 90s; overrides the file's expires_at (the seed's is
    /// in the past, so it needs this or --expires-at).
    #[arg(long, conflicts_with = "expires_at")]
    pub ttl: Option<String>,
    /// Absolute expiry as RFC 3339 (2026-05-12T18:30:00Z); overrides the file's expires_at.
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Audience: the gateway that will accept the envelope [default: the file's aud, else
    /// portcullis].
    #[arg(long)]
    pub aud: Option<String>,
    /// Issuer name (`iss`) [default: the file's iss, else portcullis-cli].
    #[arg(long)]
    pub iss: Option<String>,
    /// The agent's own id (`agent_id`); defaults to one derived from the jti.
    #[arg(long)]
    pub agent_id: Option<String>,
    /// The agent's kind (`agent_kind`, e.g. renewal_reviewer, email_drafter) [default: the
    /// file's agent_kind, else assistant].
    #[arg(long)]
    pub agent_kind: Option<String>,
    /// Key id for the header; defaults to the kid in jwks.json beside the key, else the
    /// key's thumbprint.
    #[arg(long)]
    pub kid: Option<String>,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Trusted issuer keys (JWKS JSON, as written by `portcullis keygen`).
    #[arg(long)]
    pub jwks: PathBuf,
    /// Audience this verifier stands for.
    #[arg(long, default_value = portcullis::envelope::mint::DEFAULT_AUDIENCE)]
    pub aud: String,
    /// Tolerated clock skew on exp/nbf/iat.
    #[arg(long, default_value = "30s")]
    pub skew: String,
    /// The token, or `-` to read it from standard input.
    pub token: String,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The token, or `-` to read it from standard input.
    pub token: String,
}

fn read_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))
}

pub fn read_token(arg: &str) -> Result<String, CliError> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::io("<stdin>", e))?;
        Ok(s.trim().to_owned())
    } else {
        Ok(arg.trim().to_owned())
    }
}

fn write_file(path: &Path, contents: &str, private: bool, force: bool) -> Result<(), CliError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::Usage(format!(
                "{} already exists; pass --force to overwrite it",
                path.display()
            ))
        } else {
            CliError::io(path, e)
        }
    })?;
    // `mode` only applies when the file is created: a file overwritten with --force keeps
    // whatever mode it had, so a private key is narrowed explicitly, before it is written.
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| CliError::io(path, e))?;
    }
    let _ = private;
    f.write_all(contents.as_bytes())
        .map_err(|e| CliError::io(path, e))
}

pub fn keygen(a: KeygenArgs) -> Result<(), CliError> {
    std::fs::create_dir_all(&a.out).map_err(|e| CliError::io(&a.out, e))?;
    let key = SigningKey::generate(a.kid).map_err(|e| CliError::Envelope {
        context: "generating a key".into(),
        source: e,
    })?;
    let private = a.out.join("private.pem");
    write_file(&private, &key.private_pem(), true, a.force)?;
    let public = a.out.join("public.pem");
    write_file(&public, &key.public_pem(), false, true)?;
    let jwks = a.out.join("jwks.json");
    let jwks_text = serde_json::to_string_pretty(&key.jwks()).unwrap_or_default() + "\n";
    write_file(&jwks, &jwks_text, false, true)?;
    outln!("kid:         {}", key.kid)?;
    outln!(
        "private key: {} (mode 0600; keep it with the issuer)",
        private.display()
    )?;
    outln!("public key:  {}", public.display())?;
    outln!("jwks:        {} (give this to the gateway)", jwks.display())?;
    Ok(())
}

/// Loads a signing key; the kid comes from `--kid`, else from a jwks.json next to the key
/// that holds the same public key, else the thumbprint.
pub fn load_signing_key(path: &Path, kid: Option<String>) -> Result<SigningKey, CliError> {
    let pem_text = read_file(path)?;
    let ctx = || format!("{}", path.display());
    let key =
        SigningKey::from_pkcs8_pem(&pem_text, kid.clone()).map_err(|e| CliError::Envelope {
            context: ctx(),
            source: e,
        })?;
    if kid.is_some() {
        return Ok(key);
    }
    let beside = path.with_file_name("jwks.json");
    let Ok(text) = std::fs::read_to_string(&beside) else {
        return Ok(key);
    };
    let x = base64_url(&key.public_key());
    let found = serde_json::from_str::<Value>(&text).ok().and_then(|doc| {
        doc.get("keys")?.as_array()?.iter().find_map(|k| {
            (k.get("x")?.as_str()? == x).then(|| k.get("kid")?.as_str().map(str::to_owned))?
        })
    });
    match found {
        Some(kid) => {
            SigningKey::from_pkcs8_pem(&pem_text, Some(kid)).map_err(|e| CliError::Envelope {
                context: ctx(),
                source: e,
            })
        }
        None => Ok(key),
    }
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn mint(a: MintArgs) -> Result<(), CliError> {
    let key = load_signing_key(&a.key, a.kid)?;
    let text = read_file(&a.claims)?;
    let claims_ctx = a.claims.display().to_string();
    let map = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return Err(CliError::Usage(format!(
                "{claims_ctx}: claims must be a JSON object"
            )));
        }
        Err(e) => {
            return Err(CliError::Usage(format!(
                "{claims_ctx}: not valid JSON: {e}"
            )));
        }
    };
    let ttl_secs = match &a.ttl {
        Some(t) => Some(
            clock::parse_duration(t)
                .map_err(|e| CliError::Usage(format!("--ttl: {e}")))?
                .as_secs() as i64,
        ),
        None => None,
    };
    let expires_at = match &a.expires_at {
        Some(t) => Some(
            clock::parse_rfc3339(t).map_err(|e| CliError::Usage(format!("--expires-at: {e}")))?,
        ),
        None => None,
    };
    let opts = MintOptions {
        now: clock::now_unix(),
        ttl_secs,
        expires_at,
        aud: a.aud,
        iss: a.iss,
        jti: None,
        agent_id: a.agent_id,
        agent_kind: a.agent_kind,
    };
    let claims = claims_from_file(map, &opts).map_err(|e| match e {
        portcullis::envelope::EnvelopeError::Expired { exp, .. } => CliError::Usage(format!(
            "{claims_ctx}: the envelope would already be expired (expires_at {}); pass --ttl 15m \
             or --expires-at with a future time",
            clock::format_rfc3339(exp)
        )),
        other => CliError::Envelope {
            context: claims_ctx.clone(),
            source: other,
        },
    })?;
    outln!("{}", jws::sign(&claims, &key))?;
    Ok(())
}

pub fn verifier_from_jwks(path: &Path, aud: &str, skew: &str) -> Result<Verifier, CliError> {
    let keys = TrustedKeys::from_jwks(&read_file(path)?).map_err(|e| CliError::Envelope {
        context: path.display().to_string(),
        source: e,
    })?;
    let mut v = Verifier::new(keys, aud);
    v.skew_secs = clock::parse_duration(skew)
        .map_err(|e| CliError::Usage(format!("--skew: {e}")))?
        .as_secs() as i64;
    Ok(v)
}

pub fn verify(a: VerifyArgs) -> Result<(), CliError> {
    let v = verifier_from_jwks(&a.jwks, &a.aud, &a.skew)?;
    let token = read_token(&a.token)?;
    let claims = v
        .verify(&token, clock::now_unix())
        .map_err(CliError::Refused)?;
    outln!(
        "{}",
        serde_json::to_string_pretty(&claims).unwrap_or_default()
    )?;
    Ok(())
}

pub fn inspect(a: InspectArgs) -> Result<(), CliError> {
    let token = read_token(&a.token)?;
    let d = jws::decode(&token).map_err(|e| CliError::Envelope {
        context: "cannot decode the token".into(),
        source: e,
    })?;
    eprintln!("UNVERIFIED: decoded only; nothing here has been checked. Use `portcullis verify`.");
    let out = json!({
        "verified": false,
        "header": d.header,
        "claims": d.payload,
        "signature_bytes": d.signature.len(),
    });
    outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default())?;
    Ok(())
}
