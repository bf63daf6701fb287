//! Built-in upstream backends for load tests: the example tool registry's HTTP routes and
//! a minimal MCP server (`tools/call`), answering fixed bodies with a configurable service
//! time. Built on the gateway's own server core, so a run needs nothing else installed.
//! The credential check is the vaulted one the gateway injects (or none, for direct and
//! third-party-proxy comparisons that send it themselves).

use portcullis::http::write::{full_response, json_str};
use portcullis::server::{
    self, ConnIo, Disposition, Driver, Limits, Request, ServerHandle, Service,
};
use std::net::SocketAddr;
use std::time::Duration;

/// How the backend behaves.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// The `Authorization` value required on the records routes (`None`: anything is
    /// accepted, for runs that only measure).
    pub records_auth: Option<String>,
    /// The `Authorization` value required on `/mcp`.
    pub mcp_auth: Option<String>,
    /// Time spent "working" before each answer (monoio timers: millisecond resolution).
    pub service_time: Duration,
    /// Answer every request with this status instead (for error tests).
    pub force_status: Option<u16>,
    /// I/O driver (epoll for runs under valgrind, which cannot follow io_uring).
    pub driver: Driver,
}

impl Default for BackendConfig {
    /// Accepts any credential, answers at once, on the best driver available.
    fn default() -> Self {
        BackendConfig {
            records_auth: None,
            mcp_auth: None,
            service_time: Duration::ZERO,
            force_status: None,
            driver: Driver::Auto,
        }
    }
}

pub struct Backend {
    cfg: BackendConfig,
}

const CONTRACT: &[u8] = br#"{"contract_id":"contract_7781","customer_id":"cust_acme_1042","tenant_id":"tenant_acme","status":"active","annual_value_usd":184000,"renewal_date":"2026-12-31","renewal_terms":{"auto_renew":false,"notice_days":60,"price_cap_pct":5},"clauses":["limitation_of_liability","termination_for_convenience","price_escalation"]}"#;
const ACCOUNT: &[u8] = br#"{"customer_id":"cust_acme_1042","name":"Acme Corp","tenant_id":"tenant_acme","health":"at_risk","support_summary":{"open_tickets":3,"escalations_90d":1,"csat":3.8}}"#;
const TICKET: &[u8] = br#"{"ticket_id":"TCK-40211","status":"open"}"#;

impl Service for Backend {
    async fn call(&self, req: Request<'_>, io: &mut ConnIo) -> Disposition {
        if !self.cfg.service_time.is_zero() {
            monoio::time::sleep(self.cfg.service_time).await;
        }
        if let Some(s) = self.cfg.force_status {
            full_response(
                &mut io.wbuf,
                s,
                "application/json",
                &[],
                br#"{"error":"forced"}"#,
                false,
            );
            return Disposition::KeepAlive;
        }
        let path = req.path();
        let want = if path == "/mcp" {
            &self.cfg.mcp_auth
        } else {
            &self.cfg.records_auth
        };
        if let Some(want) = want
            && req.field(&req.head.authorization) != Some(want.as_str())
        {
            full_response(
                &mut io.wbuf,
                401,
                "application/json",
                &[],
                br#"{"error":"wrong credential"}"#,
                false,
            );
            return Disposition::KeepAlive;
        }
        let body: &[u8] = if path.starts_with("/contracts/") {
            CONTRACT
        } else if path.starts_with("/crm/") || path.starts_with("/billing/") {
            ACCOUNT
        } else if path == "/tickets" || path.ends_with("/renewal-notes") {
            TICKET
        } else if path == "/mcp" {
            return mcp(&req, io);
        } else {
            full_response(
                &mut io.wbuf,
                404,
                "application/json",
                &[],
                br#"{"error":"no route"}"#,
                false,
            );
            return Disposition::KeepAlive;
        };
        full_response(&mut io.wbuf, 200, "application/json", &[], body, false);
        Disposition::KeepAlive
    }
}

/// Enough MCP for the gateway as a client: `initialize` (with a session id), the
/// initialized notification, `tools/list` and `tools/call`, as JSON.
fn mcp(req: &Request<'_>, io: &mut ConnIo) -> Disposition {
    let b = req.body;
    let find = |k: &[u8]| memchr::memmem::find(b, k).is_some();
    let id = extract_id(b);
    let mut out = Vec::with_capacity(512);
    if !find(b"\"id\"") {
        full_response(&mut io.wbuf, 202, "application/json", &[], b"", false);
        return Disposition::KeepAlive;
    }
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.as_bytes());
    if find(b"\"initialize\"") {
        out.extend_from_slice(br#","result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"loadtest-mcp","version":"1"}}}"#);
        full_response(
            &mut io.wbuf,
            200,
            "application/json",
            &[("Mcp-Session-Id", b"loadtest-session")],
            &out,
            false,
        );
        return Disposition::KeepAlive;
    }
    if find(b"\"tools/list\"") {
        out.extend_from_slice(br#","result":{"tools":[{"name":"contracts.classify_clauses","description":"Classify clauses","inputSchema":{"type":"object","properties":{"contract_id":{"type":"string"}}}},{"name":"contracts.summarize_renewal_risk","description":"Summarize","inputSchema":{"type":"object"}}]}}"#);
    } else {
        out.extend_from_slice(b",\"result\":{\"content\":[{\"type\":\"text\",\"text\":");
        json_str(
            &mut out,
            r#"{"clauses":[{"clause":"termination_for_convenience","risk":"high"}]}"#,
        );
        out.extend_from_slice(b"}],\"isError\":false}}");
    }
    full_response(&mut io.wbuf, 200, "application/json", &[], &out, false);
    Disposition::KeepAlive
}

/// The raw JSON text of the request's `"id"` (a number or a string), for the answer.
fn extract_id(b: &[u8]) -> String {
    let Some(at) = memchr::memmem::find(b, b"\"id\"") else {
        return "null".into();
    };
    let rest = &b[at + 4..];
    let start = rest
        .iter()
        .position(|c| *c != b':' && !c.is_ascii_whitespace())
        .unwrap_or(0);
    let rest = &rest[start..];
    let end = if rest.first() == Some(&b'"') {
        rest[1..]
            .iter()
            .position(|c| *c == b'"')
            .map_or(rest.len(), |e| e + 2)
    } else {
        rest.iter()
            .position(|c| !(c.is_ascii_digit() || *c == b'-'))
            .unwrap_or(rest.len())
    };
    String::from_utf8_lossy(&rest[..end]).into_owned()
}

impl BackendConfig {
    /// Requires the credentials of a deployment, as the gateway injects them.
    pub fn checking(records: &str, mcp: &str) -> BackendConfig {
        BackendConfig {
            records_auth: Some(format!("Bearer {records}")),
            mcp_auth: Some(format!("Bearer {mcp}")),
            ..BackendConfig::default()
        }
    }
}

/// Starts the backend on `addr` with `workers` threads.
pub fn start(
    addr: SocketAddr,
    workers: usize,
    cfg: BackendConfig,
) -> std::io::Result<ServerHandle> {
    let limits = Limits {
        idle_timeout: Duration::from_secs(300),
        ..Limits::default()
    };
    let driver = cfg.driver;
    server::start(
        "loadtest-backend",
        addr,
        workers,
        driver,
        limits,
        move |_| Backend { cfg: cfg.clone() },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_echoed_verbatim() {
        assert_eq!(
            extract_id(br#"{"jsonrpc":"2.0","id":42,"method":"x"}"#),
            "42"
        );
        assert_eq!(extract_id(br#"{"id": "a-1","method":"x"}"#), "\"a-1\"");
        assert_eq!(extract_id(br#"{"method":"x"}"#), "null");
    }
}
