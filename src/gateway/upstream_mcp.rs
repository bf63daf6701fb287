//! The gateway as an MCP client of its upstream MCP servers: one session per core per
//! upstream (opened lazily with `initialize` + `notifications/initialized`, reopened when
//! the upstream forgets it), `tools/call` forwarding, and the merged tool catalogue that
//! `tools/list` filters. Upstreams that speak the stateless revision need no session; the
//! gateway still sends `initialize` first, which such servers answer for compatibility.

use super::service::Gateway;
use super::state::ToolBinding;
use crate::http::head::Method;
use crate::http::write::{header, push_u64};
use crate::mcp::version;
use crate::proxy::ProxyError;
use crate::proxy::exchange::{Sink, exchange};
use serde_json::Value;
use std::time::{Duration, Instant};

/// An open session with one upstream MCP server.
#[derive(Debug, Clone)]
pub struct UpstreamSession {
    pub id: Option<String>,
    pub version: String,
}

/// Upstream tool descriptions, refreshed at most this often.
const CATALOGUE_TTL: Duration = Duration::from_secs(60);

/// One upstream's advertised tools, by name.
pub struct Catalogue {
    pub fetched: Instant,
    pub tools: Vec<Value>,
}

/// Writes the head and body of a POST to an upstream MCP endpoint.
#[allow(clippy::too_many_arguments)]
pub fn write_post(
    out: &mut Vec<u8>,
    path: &str,
    host: &str,
    binding: &ToolBinding,
    session: Option<&UpstreamSession>,
    decision_id: &str,
    delegator: &str,
    body: &[u8],
) {
    out.clear();
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    header(out, "Host", host.as_bytes());
    out.extend_from_slice(binding.credential_header.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(binding.credential_prefix.as_bytes());
    out.extend_from_slice(binding.credential.expose());
    out.extend_from_slice(b"\r\n");
    header(out, "Content-Type", b"application/json");
    header(out, "Accept", b"application/json, text/event-stream");
    if let Some(s) = session {
        header(out, "MCP-Protocol-Version", s.version.as_bytes());
        if let Some(id) = &s.id {
            header(out, "Mcp-Session-Id", id.as_bytes());
        }
    }
    if !decision_id.is_empty() {
        header(out, "X-Portcullis-Decision-Id", decision_id.as_bytes());
    }
    if !delegator.is_empty() {
        header(out, "X-Portcullis-Delegator", delegator.as_bytes());
    }
    out.extend_from_slice(b"Content-Length: ");
    push_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// Pulls the JSON-RPC response with `id` out of a gathered JSON or SSE body.
pub fn response_in(body: &[u8], content_type: Option<&str>, id: &Value) -> Option<Value> {
    let is_sse = content_type.is_some_and(|c| c.starts_with("text/event-stream"));
    if !is_sse {
        return serde_json::from_slice::<Value>(body)
            .ok()
            .filter(|v| v.get("id") == Some(id));
    }
    let mut found = None;
    crate::mcp::sse::for_each_event(body, |data| {
        if let Ok(v) = serde_json::from_slice::<Value>(data)
            && v.get("id") == Some(id)
            && (v.get("result").is_some() || v.get("error").is_some())
        {
            found = Some(v);
        }
    });
    found
}

impl Gateway {
    /// Sends one gathered JSON-RPC exchange to an upstream MCP server.
    async fn mcp_roundtrip(
        &self,
        upstream: usize,
        path: &str,
        binding: &ToolBinding,
        session: Option<&UpstreamSession>,
        body: &[u8],
        gather: &mut Vec<u8>,
    ) -> Result<crate::proxy::exchange::Outcome, ProxyError> {
        let pool = &self.pools[upstream];
        let mut req = Vec::with_capacity(512 + body.len());
        write_post(
            &mut req,
            path,
            &pool.spec.host_header,
            binding,
            session,
            "",
            "",
            body,
        );
        let mut scratch = Vec::new();
        let ex = exchange(
            pool,
            &mut req,
            Method::Post,
            None,
            self.shared.limits.max_upstream_head_bytes,
            Sink::Gather {
                body: gather,
                scratch: &mut scratch,
                limit: self.shared.limits.max_wrapped_body_bytes,
            },
        )
        .await;
        ex.result
    }

    /// The core's session with `upstream`, opening one if needed.
    pub async fn upstream_session(
        &self,
        upstream: usize,
        path: &str,
        binding: &ToolBinding,
    ) -> Result<UpstreamSession, ProxyError> {
        if let Some(s) = self.mcp_sessions.borrow()[upstream].clone() {
            return Ok(s);
        }
        let name = || self.pools[upstream].spec.name.clone();
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{}","capabilities":{{}},"clientInfo":{{"name":"portcullis","version":"{}"}}}}}}"#,
            version::LATEST_WITH_INITIALIZE,
            env!("CARGO_PKG_VERSION")
        );
        let mut gather = Vec::new();
        let out = self
            .mcp_roundtrip(upstream, path, binding, None, init.as_bytes(), &mut gather)
            .await?;
        if out.status != 200 {
            return Err(ProxyError::BadResponse {
                upstream: name(),
                detail: format!("initialize answered HTTP {}", out.status),
            });
        }
        let resp = response_in(&gather, out.content_type.as_deref(), &Value::from(0)).ok_or_else(
            || ProxyError::BadResponse {
                upstream: name(),
                detail: "no initialize result".into(),
            },
        )?;
        let version = resp["result"]["protocolVersion"]
            .as_str()
            .filter(|v| version::is_supported(v))
            .ok_or_else(|| ProxyError::BadResponse {
                upstream: name(),
                detail: format!("initialize result has no supported protocolVersion: {resp}"),
            })?
            .to_owned();
        let session = UpstreamSession {
            id: out.mcp_session_id,
            version,
        };
        let note = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let out = self
            .mcp_roundtrip(upstream, path, binding, Some(&session), note, &mut gather)
            .await?;
        if !(200..300).contains(&out.status) {
            return Err(ProxyError::BadResponse {
                upstream: name(),
                detail: format!("notifications/initialized answered HTTP {}", out.status),
            });
        }
        self.mcp_sessions.borrow_mut()[upstream] = Some(session.clone());
        Ok(session)
    }

    /// Forgets the session with `upstream` (it answered 404 for it).
    pub fn drop_upstream_session(&self, upstream: usize) {
        self.mcp_sessions.borrow_mut()[upstream] = None;
    }

    /// The tools `upstream` advertises (cached per core for a minute).
    pub async fn upstream_tools(
        &self,
        upstream: usize,
        path: &str,
        binding: &ToolBinding,
    ) -> Result<Vec<Value>, ProxyError> {
        if let Some(c) = &self.catalogues.borrow()[upstream]
            && c.fetched.elapsed() < CATALOGUE_TTL
        {
            return Ok(c.tools.clone());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let session = self.upstream_session(upstream, path, binding).await?;
            let mut gather = Vec::new();
            let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;
            let out = self
                .mcp_roundtrip(upstream, path, binding, Some(&session), body, &mut gather)
                .await?;
            if out.status == 404 && attempt == 1 {
                self.drop_upstream_session(upstream);
                continue;
            }
            let resp = response_in(&gather, out.content_type.as_deref(), &Value::from(1));
            let tools = resp
                .as_ref()
                .and_then(|r| r["result"]["tools"].as_array())
                .cloned()
                .ok_or_else(|| ProxyError::BadResponse {
                    upstream: self.pools[upstream].spec.name.clone(),
                    detail: format!(
                        "tools/list answered HTTP {} without a tool list",
                        out.status
                    ),
                })?;
            self.catalogues.borrow_mut()[upstream] = Some(Catalogue {
                fetched: Instant::now(),
                tools: tools.clone(),
            });
            return Ok(tools);
        }
    }
}
