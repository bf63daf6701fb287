//! The demo "docs" MCP server: a real MCP server over Streamable HTTP serving the
//! clause-classification tools of the renewal-review scenario. It speaks the
//! session-based revisions (initialize, `Mcp-Session-Id`) and also answers self-contained
//! requests without a session. `tools/call` answers as an SSE stream (a log notification,
//! then the result) when the client accepts it, so the gateway's streaming relay is
//! exercised; everything else answers with JSON. Like the records backend it accepts only
//! its vaulted credential and logs what it received. Like the official TypeScript SDK's
//! server, it names the session (`Mcp-Session-Id`) on its `tools/call` answers too.

use super::records::{SeenLog, record};
use crate::http::chunked::{LAST_CHUNK, encode_chunk};
use crate::http::write::full_response;
use crate::server::{ConnIo, Disposition, Request, Service};
use serde_json::{Value, json};

pub struct DocsMcp {
    pub expected_auth: String,
    pub log: SeenLog,
}

fn tools() -> Value {
    json!([
        {
            "name": "contracts.classify_clauses",
            "title": "Classify contract clauses",
            "description": "Classify the clauses of one contract by renewal risk.",
            "inputSchema": {
                "type": "object",
                "properties": {"contract_id": {"type": "string"}},
                "required": ["contract_id"]
            }
        },
        {
            "name": "contracts.summarize_renewal_risk",
            "title": "Summarize renewal risk",
            "description": "One-paragraph renewal-risk summary of a contract.",
            "inputSchema": {
                "type": "object",
                "properties": {"contract_id": {"type": "string"}},
                "required": ["contract_id"]
            }
        }
    ])
}

fn classify(contract: &str) -> Value {
    json!({
        "contract_id": contract,
        "clauses": [
            {"clause": "limitation_of_liability", "risk": "low"},
            {"clause": "termination_for_convenience", "risk": "high"},
            {"clause": "price_escalation", "risk": "medium"}
        ]
    })
}

fn json_reply(io: &mut ConnIo, status: u16, v: &Value, extra: &[(&str, &[u8])]) {
    let body = serde_json::to_vec(v).unwrap_or_default();
    full_response(
        &mut io.wbuf,
        status,
        "application/json",
        extra,
        &body,
        false,
    );
}

fn rpc_error(id: &Value, code: i64, msg: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": msg}})
}

impl Service for DocsMcp {
    async fn call(&self, req: Request<'_>, io: &mut ConnIo) -> Disposition {
        if req.path() == "/_demo/requests" {
            let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
            json_reply(io, 200, &serde_json::to_value(log).unwrap_or_default(), &[]);
            return Disposition::KeepAlive;
        }
        record(&self.log, &req);
        if req.field(&req.head.authorization) != Some(self.expected_auth.as_str()) {
            json_reply(
                io,
                401,
                &json!({"error": "missing or wrong credential for the docs MCP server"}),
                &[],
            );
            return Disposition::KeepAlive;
        }
        if req.path() != "/mcp" {
            json_reply(io, 404, &json!({"error": "not found"}), &[]);
            return Disposition::KeepAlive;
        }
        match req.head.method().as_str() {
            "POST" => {}
            "DELETE" => {
                full_response(&mut io.wbuf, 204, "application/json", &[], b"", false);
                return Disposition::KeepAlive;
            }
            _ => {
                full_response(
                    &mut io.wbuf,
                    405,
                    "application/json",
                    &[("Allow", b"POST, DELETE")],
                    b"",
                    false,
                );
                return Disposition::KeepAlive;
            }
        }
        let msg: Value = match serde_json::from_slice(req.body) {
            Ok(v) => v,
            Err(_) => {
                json_reply(
                    io,
                    400,
                    &rpc_error(&Value::Null, -32700, "parse error"),
                    &[],
                );
                return Disposition::KeepAlive;
            }
        };
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        if id.is_null() {
            // Notifications and responses: accepted, no body.
            full_response(&mut io.wbuf, 202, "application/json", &[], b"", false);
            return Disposition::KeepAlive;
        }
        let sse = req
            .field(&req.head.accept)
            .is_some_and(|a| a.contains("text/event-stream"));
        match method {
            "initialize" => {
                let asked = msg["params"]["protocolVersion"].as_str().unwrap_or("");
                let version = crate::mcp::version::negotiate(asked);
                let result = json!({
                    "jsonrpc": "2.0", "id": id,
                    "result": {
                        "protocolVersion": version,
                        "capabilities": {"tools": {"listChanged": false}},
                        "serverInfo": {"name": "portcullis-demo-docs", "version": env!("CARGO_PKG_VERSION")}
                    }
                });
                let sid = format!("docs-{}", crate::envelope::mint::random_id());
                json_reply(io, 200, &result, &[("Mcp-Session-Id", sid.as_bytes())]);
            }
            "ping" => json_reply(
                io,
                200,
                &json!({"jsonrpc": "2.0", "id": id, "result": {}}),
                &[],
            ),
            "tools/list" => json_reply(
                io,
                200,
                &json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools()}}),
                &[],
            ),
            "tools/call" => {
                let sid = req.field(&req.head.mcp_session_id).unwrap_or("");
                let sid_hdr: &[(&str, &[u8])] = if sid.is_empty() {
                    &[]
                } else {
                    &[("Mcp-Session-Id", sid.as_bytes())]
                };
                let name = msg["params"]["name"].as_str().unwrap_or("");
                let contract = msg["params"]["arguments"]["contract_id"]
                    .as_str()
                    .unwrap_or("");
                let payload = match name {
                    "contracts.classify_clauses" => classify(contract),
                    "contracts.summarize_renewal_risk" => json!({
                        "contract_id": contract,
                        "summary": "Termination for convenience with 60 days notice and no auto-renewal: high renewal risk."
                    }),
                    _ => {
                        json_reply(
                            io,
                            200,
                            &rpc_error(&id, -32602, &format!("unknown tool {name}")),
                            &[],
                        );
                        return Disposition::KeepAlive;
                    }
                };
                let result = json!({
                    "jsonrpc": "2.0", "id": id,
                    "result": {
                        "content": [{"type": "text", "text": payload.to_string()}],
                        "structuredContent": payload,
                        "isError": false
                    }
                });
                if sse {
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                                      "params": {"level": "info", "data": format!("classifying {contract}")}});
                    // Streamed as it would be by a server doing real work: the notification goes
                    // out first, the result later, each as its own chunk.
                    io.wbuf.extend_from_slice(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n",
                    );
                    for (n, v) in sid_hdr {
                        crate::http::write::header(&mut io.wbuf, n, v);
                    }
                    io.wbuf.extend_from_slice(b"\r\n");
                    let first = format!("event: message\ndata: {note}\n\n");
                    encode_chunk(&mut io.wbuf, first.as_bytes());
                    if io.flush().await.is_err() {
                        return Disposition::Close;
                    }
                    monoio::time::sleep(std::time::Duration::from_millis(2)).await;
                    let second = format!("event: message\ndata: {result}\n\n");
                    encode_chunk(&mut io.wbuf, second.as_bytes());
                    io.wbuf.extend_from_slice(LAST_CHUNK);
                } else {
                    json_reply(io, 200, &result, sid_hdr);
                }
            }
            _ => json_reply(
                io,
                200,
                &rpc_error(&id, -32601, &format!("method not found: {method}")),
                &[],
            ),
        }
        Disposition::KeepAlive
    }
}
