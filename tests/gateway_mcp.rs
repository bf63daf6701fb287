//! The MCP endpoint driven by a real MCP client library (rmcp, the official Rust SDK) over
//! Streamable HTTP, in both protocol styles: the session-based handshake (`initialize`,
//! `Mcp-Session-Id`) and the stateless 2026-07-28 revision (`server/discover`, per-request
//! `_meta`, standard `Mcp-Method`/`Mcp-Name` headers).

mod common;

use common::*;
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService, ServiceError, ServiceExt,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

async fn connect(gw: &TestGateway, token: &str, modern: bool) -> RunningService<RoleClient, ()> {
    let cfg = StreamableHttpClientTransportConfig::with_uri(format!("http://{}/mcp", gw.addr()))
        .auth_header(token.to_owned());
    let transport = StreamableHttpClientTransport::from_config(cfg);
    if modern {
        ().serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("discover handshake")
    } else {
        ().serve(transport).await.expect("initialize handshake")
    }
}

fn args(v: Value) -> rmcp::model::JsonObject {
    v.as_object().unwrap().clone()
}

fn denial(e: ServiceError) -> (i32, Value) {
    match e {
        ServiceError::McpError(d) => (d.code.0, d.data.unwrap_or(Value::Null)),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

async fn exercise(modern: bool) {
    let gw = start_gateway(|t| t);
    let token = gw.envelope(|_| {});
    let client = connect(&gw, &token, modern).await;
    let info = client.peer_info().expect("server info");
    if modern {
        assert_eq!(info.protocol_version, ProtocolVersion::V_2026_07_28);
    } else {
        assert!(info.protocol_version.has_initialize());
    }

    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["contracts.read", "crm.read", "tickets.create"],
        "only what the envelope may call"
    );

    let ok = client
        .call_tool(
            CallToolRequestParams::new("contracts.read")
                .with_arguments(args(json!({"contract_id": "contract_7781"}))),
        )
        .await
        .unwrap();
    assert_eq!(ok.is_error, Some(false));
    assert_eq!(
        ok.structured_content.as_ref().unwrap()["contract_id"],
        "contract_7781"
    );

    let e = client
        .call_tool(
            CallToolRequestParams::new("crm.read")
                .with_arguments(args(json!({"customer_id": "cust_globex_2001"}))),
        )
        .await
        .unwrap_err();
    let (code, data) = denial(e);
    assert_eq!(code, -32003);
    assert_eq!(data["reason"], "resource_out_of_scope");
    assert!(data["decision_id"].as_str().unwrap().starts_with("d-"));

    let e = client
        .call_tool(
            CallToolRequestParams::new("billing.update")
                .with_arguments(args(json!({"customer_id": "cust_acme_1042"}))),
        )
        .await
        .unwrap_err();
    assert_eq!(denial(e).1["reason"], "tool_not_in_envelope");

    let line = &allowed_mcp_lines(&gw, "contracts.read", 1)[0];
    assert_eq!(line["resource"], "contract_7781", "{line}");
    assert_eq!(line["upstream_status"], 200, "{line}");
    assert_eq!(line["delegator"], "user_7f3a91", "{line}");
    assert!(
        !line["policies"].as_array().unwrap().is_empty(),
        "an allowed call names its determining policies: {line}"
    );

    // The records backend saw the vaulted credential, never the envelope.
    let cred = gw.credential("records_api");
    let seen = gw.demo_log("records");
    assert!(!seen.is_empty());
    for s in &seen {
        assert_eq!(
            s.authorization.as_deref(),
            Some(format!("Bearer {cred}").as_str())
        );
        assert!(s.headers.iter().all(|(_, v)| !v.contains(&token[..60])));
    }
    client.cancel().await.unwrap();
}

/// The audit lines of `n` allowed MCP calls of `tool`, once they are on disk (cores hand
/// their batches to the writer on a timer). Gives up after a minute.
fn allowed_mcp_lines(gw: &TestGateway, tool: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let lines: Vec<Value> = gw
            .audit_lines_now()
            .into_iter()
            .filter(|l| l["via"] == "mcp" && l["tool"] == tool && l["decision"] == "allow")
            .collect();
        if lines.len() >= n || std::time::Instant::now() > deadline {
            assert_eq!(lines.len(), n, "allowed {tool} lines: {lines:?}");
            return lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_based_client_lists_only_allowed_tools_and_gets_denials_as_errors() {
    exercise(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_2026_client_lists_only_allowed_tools_and_gets_denials_as_errors() {
    exercise(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_served_by_an_upstream_mcp_server_streams_through() {
    let gw = start_gateway(|t| t);
    let token = gw.envelope(|v| {
        v["allowed_tools"]
            .as_array_mut()
            .unwrap()
            .push("contracts.classify_clauses".into());
    });
    for modern in [false, true] {
        let client = connect(&gw, &token, modern).await;
        let tools = client.list_all_tools().await.unwrap();
        let classify = tools
            .iter()
            .find(|t| t.name == "contracts.classify_clauses")
            .expect("merged from the upstream");
        assert_eq!(
            classify.description.as_deref(),
            Some("Classify the clauses of one contract by renewal risk.")
        );
        let r = client
            .call_tool(
                CallToolRequestParams::new("contracts.classify_clauses")
                    .with_arguments(args(json!({"contract_id": "contract_7781"}))),
            )
            .await
            .unwrap();
        let s = r.structured_content.unwrap();
        assert_eq!(s["clauses"].as_array().unwrap().len(), 3);
        client.cancel().await.unwrap();
    }
    for line in allowed_mcp_lines(&gw, "contracts.classify_clauses", 2) {
        assert_eq!(line["resource"], "contract_7781", "{line}");
        assert_eq!(line["upstream_status"], 200, "{line}");
        assert!(!line["policies"].as_array().unwrap().is_empty(), "{line}");
    }
    let cred = gw.credential("docs_mcp");
    for s in gw.demo_log("docs-mcp") {
        assert_eq!(
            s.authorization.as_deref(),
            Some(format!("Bearer {cred}").as_str())
        );
    }
}

#[test]
fn standard_headers_must_agree_with_the_body() {
    let gw = start_gateway(|t| t);
    let token = gw.envelope(|_| {});
    let mut c = gw.client();
    let auth = format!("Bearer {token}");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"contracts.read","arguments":{"contract_id":"contract_7781"}}}"#;
    let base = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2026-07-28"),
    ];
    let send = |c: &mut portcullis::demo::client::Client, extra: &[(&str, &str)]| {
        let mut h = base.to_vec();
        h.extend_from_slice(extra);
        c.request("POST", "/mcp", &h, body.as_bytes()).unwrap()
    };
    let r = send(
        &mut c,
        &[("Mcp-Method", "tools/call"), ("Mcp-Name", "contracts.read")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["resultType"], "complete");
    for extra in [
        vec![("Mcp-Name", "contracts.read")],
        vec![("Mcp-Method", "tools/list"), ("Mcp-Name", "contracts.read")],
        vec![("Mcp-Method", "tools/call"), ("Mcp-Name", "crm.read")],
        vec![("Mcp-Method", "tools/call")],
        vec![
            ("Mcp-Method", "tools/call"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "contracts.read"),
        ],
    ] {
        let r = send(&mut c, &extra);
        assert_eq!(r.status, 400, "{extra:?}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], -32020, "{extra:?}");
    }
    // Base64-encoded names are decoded before comparison.
    let r = send(
        &mut c,
        &[
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "=?base64?Y29udHJhY3RzLnJlYWQ=?="),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn sessions_are_bound_to_their_envelope_and_end_on_delete() {
    let gw = start_gateway(|t| t);
    let a = gw.envelope(|_| {});
    let b = gw.envelope(|_| {});
    let mut c = gw.client();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let r = mcp(&mut c, &a, None, init);
    assert_eq!(r.json()["result"]["protocolVersion"], "2025-06-18");
    let sid = r.header("Mcp-Session-Id").unwrap().to_owned();
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    assert_eq!(mcp(&mut c, &a, Some(&sid), list).status, 200);
    assert_eq!(
        mcp(&mut c, &b, Some(&sid), list).status,
        404,
        "another envelope cannot ride the session"
    );
    let auth = format!("Bearer {a}");
    let r = c
        .request(
            "DELETE",
            "/mcp",
            &[("Authorization", &auth), ("Mcp-Session-Id", &sid)],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(mcp(&mut c, &a, Some(&sid), list).status, 404, "terminated");
    let r = mcp(
        &mut c,
        &a,
        None,
        r#"{"jsonrpc":"2.0","id":3,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}"#,
    );
    assert_eq!(
        r.json()["result"]["protocolVersion"],
        "2025-11-25",
        "unknown versions get our newest session-based one"
    );
}

#[test]
fn the_2026_revision_rules_for_versions_methods_and_notifications() {
    let gw = start_gateway(|t| t);
    let token = gw.envelope(|_| {});
    let mut c = gw.client();
    let auth = format!("Bearer {token}");
    let post = |c: &mut portcullis::demo::client::Client,
                version: Option<&str>,
                method: Option<&str>,
                body: &str| {
        let mut h = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        if let Some(v) = version {
            h.push(("MCP-Protocol-Version", v));
        }
        if let Some(m) = method {
            h.push(("Mcp-Method", m));
        }
        c.request("POST", "/mcp", &h, body.as_bytes()).unwrap()
    };
    let with_meta = |method: &str, v: &str| {
        json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": v,
            "io.modelcontextprotocol/clientCapabilities": {}}}})
        .to_string()
    };
    let modern = Some("2026-07-28");

    // The baseline: header and _meta agree.
    let r = post(
        &mut c,
        modern,
        Some("tools/list"),
        &with_meta("tools/list", "2026-07-28"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["resultType"], "complete");

    // An unimplemented method is 404 with -32601 in this revision.
    let r = post(
        &mut c,
        modern,
        Some("resources/list"),
        &with_meta("resources/list", "2026-07-28"),
    );
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (404, json!(-32601)),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["id"], 9);

    // The header must carry the body's revision.
    for (header, meta) in [
        (modern, "2025-11-25"),
        (None, "2026-07-28"),
        (Some("2025-06-18"), "2026-07-28"),
    ] {
        let r = post(
            &mut c,
            header,
            Some("tools/list"),
            &with_meta("tools/list", meta),
        );
        assert_eq!(r.status, 400, "{header:?} vs {meta}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], -32020, "{header:?} vs {meta}");
    }

    // An unsupported revision, in the header or in _meta: 400 with the supported list.
    for (header, meta) in [(Some("1900-01-01"), "2026-07-28"), (modern, "1900-01-01")] {
        let r = post(
            &mut c,
            header,
            Some("tools/list"),
            &with_meta("tools/list", meta),
        );
        assert_eq!(r.status, 400, "{header:?} / {meta}: {}", r.text());
        let e = &r.json()["error"];
        assert_eq!(e["code"], -32022, "{}", r.text());
        assert_eq!(e["data"]["requested"], "1900-01-01");
        assert!(
            e["data"]["supported"]
                .as_array()
                .unwrap()
                .contains(&json!("2026-07-28")),
            "{}",
            r.text()
        );
    }

    // Notifications: 202 with no body, with or without Mcp-Method; a contradicting
    // Mcp-Method is still refused.
    let note = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#;
    for method in [None, Some("notifications/cancelled")] {
        let r = post(&mut c, modern, method, note);
        assert_eq!(r.status, 202, "{method:?}: {}", r.text());
        assert!(r.body.is_empty());
    }
    let r = post(&mut c, modern, Some("tools/list"), note);
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (400, json!(-32020))
    );

    // The session-based revisions keep answering an unknown method in the JSON-RPC body.
    let r = post(
        &mut c,
        None,
        None,
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/list"}"#,
    );
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (200, json!(-32601))
    );
}

#[test]
fn a_tools_call_with_duplicate_member_names_is_refused_before_it_is_forwarded() {
    // The body of an MCP tools/call is forwarded as it is: were duplicates allowed, the
    // gateway could check one `contract_id` and the upstream MCP server act on another.
    let gw = start_gateway(|t| t);
    let token = gw.envelope(|v| {
        v["allowed_tools"]
            .as_array_mut()
            .unwrap()
            .push("contracts.classify_clauses".into());
    });
    let mut c = gw.client();
    let before = gw.demo_log("docs-mcp").len();
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"contracts.classify_clauses","arguments":{"contract_id":"contract_7781","contract_id":"contract_9999"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"contracts.classify_clauses","arguments":{"contract_id":"contract_7781"}},"params":{"name":"contracts.classify_clauses","arguments":{"contract_id":"contract_9999"}}}"#,
    ] {
        let r = mcp(&mut c, &token, None, body);
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], -32600);
        assert!(r.text().contains("more than once"), "{}", r.text());
    }
    assert_eq!(
        gw.demo_log("docs-mcp").len(),
        before,
        "nothing reached the MCP server"
    );
    // The same call without the duplicate goes through.
    let r = mcp(
        &mut c,
        &token,
        None,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"contracts.classify_clauses","arguments":{"contract_id":"contract_7781"}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The demo MCP server answers over SSE: a progress message, then the result.
    let last = r
        .text()
        .lines()
        .rfind(|l| l.starts_with("data: "))
        .unwrap_or("")
        .to_owned();
    let v: Value = serde_json::from_str(&last["data: ".len()..]).unwrap();
    assert_eq!(v["id"], 2);
    assert_eq!(
        v["result"]["structuredContent"]["contract_id"],
        "contract_7781"
    );
    assert!(gw.demo_log("docs-mcp").len() > before);
}

/// The last `data:` line of an SSE body, parsed.
fn last_sse_message(text: &str) -> Value {
    let last = text
        .lines()
        .rfind(|l| l.starts_with("data:"))
        .unwrap_or_else(|| panic!("no SSE data in {text}"));
    serde_json::from_str(last["data:".len()..].trim()).unwrap()
}

#[test]
fn a_2026_agent_is_bridged_to_a_session_based_upstream_mcp_server() {
    // The demo MCP server speaks the session-based revisions, as most deployed servers do.
    // A 2026-07-28 agent must still get 2026-07-28 results (with `resultType`), the
    // upstream must not see the agent's era metadata (it contradicts the session's
    // MCP-Protocol-Version), and the upstream's session id must never reach the agent.
    let gw = start_gateway(|t| t);
    let token = gw.envelope(|v| {
        v["allowed_tools"]
            .as_array_mut()
            .unwrap()
            .push("contracts.classify_clauses".into());
    });
    let auth = format!("Bearer {token}");
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "contracts.classify_clauses",
        "arguments": {"contract_id": "contract_7781"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {},
                  "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                  "progressToken": "p1"}}})
    .to_string();
    let mut c = gw.client();
    let r = c
        .request(
            "POST",
            "/mcp",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
                ("MCP-Protocol-Version", "2026-07-28"),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "contracts.classify_clauses"),
            ],
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("Mcp-Session-Id").is_none(),
        "upstream session leaked"
    );
    let m = last_sse_message(&r.text());
    assert_eq!(m["id"], 5);
    assert_eq!(m["result"]["resultType"], "complete", "{m}");
    assert_eq!(
        m["result"]["structuredContent"]["contract_id"],
        "contract_7781"
    );
    // The notification before it is relayed as it came.
    assert!(r.text().contains("notifications/message"), "{}", r.text());

    let seen = gw.demo_log("docs-mcp");
    let call = seen
        .iter()
        .rfind(|s| s.body.contains("tools/call"))
        .expect("the call reached the MCP server");
    let sent: Value = serde_json::from_str(&call.body).unwrap();
    assert_eq!(
        sent["params"]["_meta"],
        json!({"progressToken": "p1"}),
        "{sent}"
    );
    assert_eq!(sent["params"]["arguments"]["contract_id"], "contract_7781");
    let version = call
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("mcp-protocol-version"))
        .map(|(_, v)| v.as_str());
    assert_eq!(version, Some("2025-11-25"));

    // A session-based agent gets the upstream's answer as it is, without its session id.
    let r = mcp(
        &mut c,
        &token,
        None,
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"contracts.classify_clauses","arguments":{"contract_id":"contract_7781"}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("Mcp-Session-Id").is_none(),
        "upstream session leaked"
    );
    let m = last_sse_message(&r.text());
    assert_eq!(m["id"], 6);
    assert!(m["result"].get("resultType").is_none(), "{m}");
}

#[test]
fn clients_must_accept_both_json_and_event_streams() {
    // A tool served by an upstream MCP server may answer with SSE and is relayed as it
    // comes, so a client that cannot take both is told at once, not on its first call.
    let gw = start_gateway(|t| t);
    let token = gw.envelope(|_| {});
    let auth = format!("Bearer {token}");
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let mut c = gw.client();
    let mut send = |accept: Option<&str>| {
        let mut h = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        if let Some(a) = accept {
            h.push(("Accept", a));
        }
        c.request("POST", "/mcp", &h, list.as_bytes()).unwrap()
    };
    for ok in [
        None,
        Some("application/json, text/event-stream"),
        Some("text/event-stream;q=0.9, application/json"),
        Some("*/*"),
        Some("application/*, text/*"),
    ] {
        let r = send(ok);
        assert_eq!(r.status, 200, "{ok:?}: {}", r.text());
    }
    for refused in [
        "application/json",
        "text/event-stream",
        "application/json, text/event-stream;q=0",
        "text/html",
    ] {
        let r = send(Some(refused));
        assert_eq!(r.status, 406, "{refused}: {}", r.text());
        assert!(r.text().contains("text/event-stream"), "{}", r.text());
    }
}
