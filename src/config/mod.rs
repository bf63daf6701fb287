//! The gateway's configuration: one TOML file (or the embedded default, `default.toml`,
//! which documents every field). Problems fail at start-up with the file and the field
//! named: unknown fields, wrong types, bad durations, addresses and URLs.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The `source` of the embedded default, in messages.
pub const EMBEDDED_SOURCE: &str = "<embedded default>";

/// A configuration problem, naming the file and the field.
#[derive(Debug, Error)]
#[error("{file}: {field}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    pub envelope: Envelope,
    #[serde(default)]
    pub delegation: Delegation,
    pub policy: Policy,
    pub vault: VaultCfg,
    #[serde(default)]
    pub audit: Audit,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub mcp: Mcp,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Upstream>,
    /// Where the configuration came from, for messages; relative paths resolve against
    /// its directory.
    #[serde(skip)]
    pub source: String,
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: String,
    #[serde(default)]
    pub cores: usize,
    #[serde(default = "default_driver")]
    pub driver: String,
}

fn default_driver() -> String {
    "auto".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub jwks: String,
    #[serde(default = "default_audience")]
    pub audience: String,
    #[serde(default = "default_skew")]
    pub skew: String,
    #[serde(default = "default_max_token")]
    pub max_token_bytes: usize,
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
}

fn default_audience() -> String {
    crate::envelope::mint::DEFAULT_AUDIENCE.into()
}
fn default_skew() -> String {
    "30s".into()
}
fn default_max_token() -> usize {
    crate::envelope::verify::DEFAULT_MAX_TOKEN_LEN
}
fn default_cache_entries() -> usize {
    16_384
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegation {
    #[serde(default = "default_signing_key")]
    pub signing_key: String,
    #[serde(default = "default_max_depth")]
    pub max_depth: u32,
}

impl Default for Delegation {
    fn default() -> Self {
        Delegation {
            signing_key: default_signing_key(),
            max_depth: default_max_depth(),
        }
    }
}

fn default_signing_key() -> String {
    "builtin:ephemeral".into()
}
fn default_max_depth() -> u32 {
    4
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub bundle: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultCfg {
    pub path: String,
    #[serde(default)]
    pub key_env: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    pub dir: String,
    pub max_segment_bytes: u64,
    pub fsync_interval: String,
    pub queue_batches: usize,
    pub on_full: String,
    pub signing_key: String,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            dir: "builtin:temp".into(),
            max_segment_bytes: 64 * 1024 * 1024,
            fsync_interval: "1s".into(),
            queue_batches: 1024,
            on_full: "deny".into(),
            signing_key: "builtin:ephemeral".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    pub listen: String,
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    pub bundle_signing_jwks: Option<String>,
    pub revocations_file: Option<String>,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: "127.0.0.1:9090".into(),
            token_env: Some("PORTCULLIS_ADMIN_TOKEN".into()),
            token_file: None,
            bundle_signing_jwks: None,
            revocations_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_body_bytes: usize,
    pub header_timeout: String,
    pub body_timeout: String,
    pub idle_timeout: String,
    pub max_upstream_head_bytes: usize,
    pub max_wrapped_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            header_timeout: "10s".into(),
            body_timeout: "30s".into(),
            idle_timeout: "60s".into(),
            max_upstream_head_bytes: 32 * 1024,
            max_wrapped_body_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mcp {
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub url: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "default_response_timeout")]
    pub response_timeout: String,
    #[serde(default = "default_max_idle")]
    pub max_idle_per_core: usize,
    #[serde(default = "default_cred_header")]
    pub credential_header: String,
    #[serde(default)]
    pub credential_prefix: String,
}

fn default_connect_timeout() -> String {
    "2s".into()
}
fn default_response_timeout() -> String {
    "30s".into()
}
fn default_max_idle() -> usize {
    64
}
fn default_cred_header() -> String {
    "Authorization".into()
}

/// Where a configured component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Builtin(String),
    File(PathBuf),
}

/// An upstream's resolved address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    Builtin(String),
    /// `http://host:port` with an optional path prefix prepended to every request path.
    Http {
        host_header: String,
        addr: String,
        base_path: String,
    },
}

/// The dotted name of the field set on `line` (1-based) of a TOML text: the last table
/// header before it and the key on it (`server.cores`). `None` when the line holds no
/// `key = value` (a parse error elsewhere on it, or a header).
fn field_at_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for l in text.lines().take(line.saturating_sub(1)) {
        let t = l.trim();
        if let Some(h) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            table = h.trim_matches(['[', ' ']).to_owned();
        }
    }
    let here = text.lines().nth(line.checked_sub(1)?)?.trim();
    let (key, _) = here.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || here.starts_with('#') || here.starts_with('[') {
        return None;
    }
    Some(if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    })
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Result<Config, ConfigError> {
        Self::parse(DEFAULT_TOML, EMBEDDED_SOURCE, Path::new("."))
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            field: "(file)".into(),
            message: e.to_string(),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &path.display().to_string(), &base)
    }

    pub fn parse(text: &str, source: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| {
            let span_line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            ConfigError {
                file: source.into(),
                field: span_line.map_or("(parse)".into(), |l| match field_at_line(text, l) {
                    Some(f) => format!("{f} (line {l})"),
                    None => format!("line {l}"),
                }),
                message: e.message().trim().to_owned(),
            }
        })?;
        c.source = source.into();
        c.base_dir = base_dir.to_path_buf();
        c.validate()?;
        Ok(c)
    }

    pub fn err(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.source.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn duration(&self, field: &str, v: &str) -> Result<Duration, ConfigError> {
        let d = crate::clock::parse_duration(v).map_err(|e| self.err(field, e))?;
        if d.is_zero() {
            return Err(self.err(field, "must be greater than zero"));
        }
        Ok(d)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if !["auto", "io_uring", "legacy"].contains(&self.server.driver.as_str()) {
            return Err(self.err(
                "server.driver",
                format!(
                    "`{}`; expected \"auto\", \"io_uring\" or \"legacy\"",
                    self.server.driver
                ),
            ));
        }
        if self.server.cores > 1024 {
            return Err(self.err("server.cores", "more than 1024 worker threads"));
        }
        self.duration("envelope.skew", &self.envelope.skew)?;
        if self.envelope.max_token_bytes < 256 {
            return Err(self.err("envelope.max_token_bytes", "must be at least 256"));
        }
        if self.envelope.audience.is_empty() {
            return Err(self.err("envelope.audience", "must not be empty"));
        }
        self.limits_checked()?;
        self.audit_fsync_interval()?;
        if !["deny", "drop"].contains(&self.audit.on_full.as_str()) {
            return Err(self.err(
                "audit.on_full",
                format!(
                    "`{}`; expected \"deny\" (fail closed) or \"drop\"",
                    self.audit.on_full
                ),
            ));
        }
        if self.audit.max_segment_bytes < 4096 {
            return Err(self.err("audit.max_segment_bytes", "must be at least 4096"));
        }
        self.admin_addr()?;
        if self.delegation.max_depth > 32 {
            return Err(self.err("delegation.max_depth", "must be at most 32"));
        }
        for (name, u) in &self.upstreams {
            let f = |k: &str| format!("upstreams.{name}.{k}");
            self.upstream_addr(name)?;
            self.duration(&f("connect_timeout"), &u.connect_timeout)?;
            self.duration(&f("response_timeout"), &u.response_timeout)?;
            if !is_token(&u.credential_header) {
                return Err(self.err(&f("credential_header"), "is not a valid header name"));
            }
            if u.credential_prefix.bytes().any(|b| b < 0x20 || b == 0x7f) {
                return Err(self.err(&f("credential_prefix"), "contains control characters"));
            }
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            self.err(
                "server.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080",
                    self.server.listen
                ),
            )
        })
    }

    pub fn audit_fsync_interval(&self) -> Result<Duration, ConfigError> {
        self.duration("audit.fsync_interval", &self.audit.fsync_interval)
    }

    pub fn admin_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.admin.listen.parse().map_err(|_| {
            self.err(
                "admin.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:9090",
                    self.admin.listen
                ),
            )
        })
    }

    pub fn limits_checked(&self) -> Result<LimitsResolved, ConfigError> {
        let l = &self.limits;
        if l.max_head_bytes < 1024 {
            return Err(self.err("limits.max_head_bytes", "must be at least 1024"));
        }
        if l.max_upstream_head_bytes < 1024 {
            return Err(self.err("limits.max_upstream_head_bytes", "must be at least 1024"));
        }
        Ok(LimitsResolved {
            max_head_bytes: l.max_head_bytes,
            max_body_bytes: l.max_body_bytes,
            header_timeout: self.duration("limits.header_timeout", &l.header_timeout)?,
            body_timeout: self.duration("limits.body_timeout", &l.body_timeout)?,
            idle_timeout: self.duration("limits.idle_timeout", &l.idle_timeout)?,
            max_upstream_head_bytes: l.max_upstream_head_bytes,
            max_wrapped_body_bytes: l.max_wrapped_body_bytes,
        })
    }

    pub fn skew_secs(&self) -> i64 {
        crate::clock::parse_duration(&self.envelope.skew).map_or(30, |d| d.as_secs() as i64)
    }

    /// Resolves a `builtin:` value or a path relative to the config file's directory.
    pub fn source_of(&self, value: &str) -> Source {
        match value.strip_prefix("builtin:") {
            Some(b) => Source::Builtin(b.to_owned()),
            None => Source::File(self.base_dir.join(value)),
        }
    }

    pub fn upstream_timeouts(&self, name: &str) -> (Duration, Duration) {
        let u = &self.upstreams[name];
        let d = |v: &str| crate::clock::parse_duration(v).unwrap_or(Duration::from_secs(30));
        (d(&u.connect_timeout), d(&u.response_timeout))
    }

    pub fn upstream_addr(&self, name: &str) -> Result<UpstreamAddr, ConfigError> {
        let field = format!("upstreams.{name}.url");
        let Some(u) = self.upstreams.get(name) else {
            return Err(self.err(&format!("upstreams.{name}"), "no such upstream"));
        };
        if let Some(b) = u.url.strip_prefix("builtin:") {
            return Ok(UpstreamAddr::Builtin(b.to_owned()));
        }
        let Some(rest) = u.url.strip_prefix("http://") else {
            return Err(self.err(
                &field,
                format!(
                    "`{}`: only http:// upstreams (on a trusted network or loopback) and builtin: \
                     are supported",
                    u.url
                ),
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(self.err(&field, format!("`{}` has no usable host", u.url)));
        }
        let addr = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(UpstreamAddr::Http {
            host_header: authority.to_owned(),
            addr,
            base_path: path.to_owned(),
        })
    }
}

/// Limits with durations parsed.
#[derive(Debug, Clone)]
pub struct LimitsResolved {
    pub max_head_bytes: usize,
    pub max_body_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_upstream_head_bytes: usize,
    pub max_wrapped_body_bytes: usize,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.listen_addr().unwrap().port(), 8080);
        assert_eq!(
            c.upstream_addr("records").unwrap(),
            UpstreamAddr::Builtin("records".into())
        );
        assert_eq!(
            c.source_of(&c.policy.bundle),
            Source::Builtin("example".into())
        );
    }

    fn err_of(text: &str) -> String {
        Config::parse(text, "gw.toml", Path::new("."))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let base = DEFAULT_TOML;
        let e = err_of(&base.replace("listen = \"127.0.0.1:8080\"", "listen = \"nowhere\""));
        assert!(e.starts_with("gw.toml: server.listen:"), "{e}");
        let e = err_of(&base.replace("skew = \"30s\"", "skew = \"30 parsecs\""));
        assert!(e.starts_with("gw.toml: envelope.skew:"), "{e}");
        let e = err_of(&base.replace("url = \"builtin:records\"", "url = \"https://crm\""));
        assert!(e.starts_with("gw.toml: upstreams.records.url:"), "{e}");
        let e = err_of(&base.replace("[limits]", "[limits]\nmax_body = 3"));
        assert!(
            e.starts_with("gw.toml: limits.max_body (line ")
                && e.contains("unknown field `max_body`"),
            "{e}"
        );
        let e = err_of(&base.replace("cores = 0", "cores = \"two\""));
        assert!(
            e.starts_with("gw.toml: server.cores (line ") && e.contains("invalid type"),
            "{e}"
        );
        let e = err_of(&base.replacen("connect_timeout = \"2s\"", "connect_timeout = 2", 1));
        assert!(
            e.starts_with("gw.toml: upstreams.records.connect_timeout (line "),
            "{e}"
        );
    }

    #[test]
    fn upstream_urls() {
        let c = Config::parse(
            &DEFAULT_TOML.replace(
                "url = \"builtin:records\"",
                "url = \"http://crm.internal/api/\"",
            ),
            "t",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            c.upstream_addr("records").unwrap(),
            UpstreamAddr::Http {
                host_header: "crm.internal".into(),
                addr: "crm.internal:80".into(),
                base_path: "/api".into()
            }
        );
    }
}
