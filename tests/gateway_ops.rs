//! Running Portcullis in production: the admin API and its token, revocation that reaches
//! every descendant on every core, an audit trail with exactly one line per decision that
//! verifies and exposes tampering, the full-queue policy, and graceful shutdown.

mod common;

use common::*;
use portcullis::demo::client::Client;
use serde_json::{Value, json};
use std::time::Duration;

fn delegate(gw: &TestGateway, parent: &str, body: Value) -> portcullis::demo::client::Response {
    let auth = format!("Bearer {parent}");
    gw.client()
        .request(
            "POST",
            "/v1/delegate",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .unwrap()
}

#[test]
fn admin_api_requires_its_token() {
    let gw = start_gateway(|t| t);
    let mut c = Client::connect(gw.admin_addr()).unwrap();
    let r = c.request("GET", "/admin/bundle", &[], b"").unwrap();
    assert_eq!(r.status, 401);
    let r = c
        .request(
            "GET",
            "/metrics",
            &[("Authorization", "Bearer wrong-token-0123456789")],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 403);
    let r = c
        .request(
            "POST",
            "/admin/revoke",
            &[("Authorization", "Bearer ")],
            b"{\"jti\":\"x\"}",
        )
        .unwrap();
    assert!(r.status == 401 || r.status == 403);
    assert!(
        gw.running.shared.revocations.load().jtis.is_empty(),
        "nothing was revoked"
    );
    // Without the token, a large upload is refused from its head: the gateway does not
    // read (and buffer) the body first. Nothing but the head is sent here.
    for auth in ["", "Authorization: Bearer wrong-token-0123456789\r\n"] {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(gw.admin_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let head = format!(
            "PUT /admin/bundle HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: 900000000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let want = if auth.is_empty() { "401" } else { "403" };
        assert!(
            out.starts_with(&format!("HTTP/1.1 {want}")),
            "{auth:?}: {out:?}"
        );
        assert!(out.contains("Connection: close"), "{out}");
    }
    // Probes are open. (A refused request with a body closes its connection: the body
    // was never read.)
    let mut c = Client::connect(gw.admin_addr()).unwrap();
    assert_eq!(c.request("GET", "/healthz", &[], b"").unwrap().status, 200);
    assert_eq!(c.request("GET", "/readyz", &[], b"").unwrap().status, 200);
    let r = gw.admin("GET", "/admin/bundle", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["version"].as_str().is_some());
}

#[test]
fn a_corrupted_bundle_is_refused_and_the_old_one_keeps_serving() {
    let gw = start_gateway(|t| t);
    let before = gw.admin("GET", "/admin/bundle", b"").json();
    let mut bytes = portcullis::gateway::boot::EXAMPLE_BUNDLE.to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    for bad in [
        bytes.clone(),
        bytes[..bytes.len() / 3].to_vec(),
        b"not a bundle".to_vec(),
    ] {
        let r = gw.admin("PUT", "/admin/bundle", &bad);
        assert_eq!(r.status, 422, "{}", r.text());
        assert_eq!(r.json()["reason"], "bundle_rejected");
    }
    assert_eq!(
        gw.admin("GET", "/admin/bundle", b"").json()["digest"],
        before["digest"]
    );
    let t = gw.envelope(|_| {});
    assert_eq!(
        call(
            &mut gw.client(),
            &t,
            "contracts.read",
            r#"{"contract_id":"contract_7781"}"#
        )
        .status,
        200
    );
    // A good push is accepted.
    let r = gw.admin(
        "PUT",
        "/admin/bundle",
        portcullis::gateway::boot::EXAMPLE_BUNDLE,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["swaps"], 1);
}

#[test]
fn revoking_a_parent_denies_its_descendants_on_every_core() {
    let gw = start_gateway(|t| t);
    let parent = gw.envelope(|_| {});
    let r = delegate(
        &gw,
        &parent,
        json!({"agent_id": "clause-classifier", "agent_kind": "classifier",
        "allowed_tools": ["contracts.read"], "resource_constraints": {"contract_ids": ["contract_7781"]}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let child = r.json()["envelope"].as_str().unwrap().to_owned();
    let r = delegate(
        &gw,
        &child,
        json!({"agent_id": "grandchild", "agent_kind": "classifier"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let grandchild = r.json()["envelope"].as_str().unwrap().to_owned();
    let args = r#"{"contract_id":"contract_7781"}"#;
    // Warm every core's verified-envelope cache with all three (many connections).
    for _ in 0..8 {
        for t in [&parent, &child, &grandchild] {
            assert_eq!(
                call(&mut gw.client(), t, "contracts.read", args).status,
                200
            );
        }
    }
    let jti = portcullis::envelope::jws::decode(&parent).unwrap().payload["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = gw.admin(
        "POST",
        "/admin/revoke",
        json!({"jti": jti}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..8 {
        for t in [&parent, &child, &grandchild] {
            let r = call(&mut gw.client(), t, "contracts.read", args);
            assert_eq!((r.status, reason(&r)), (401, "revoked".to_string()));
        }
    }
    let list = gw.admin("GET", "/admin/revocations", b"").json();
    assert_eq!(list["jtis"][0], jti);
    // Revoking by task covers every envelope of the task.
    let other = gw.envelope(|v| v["task_id"] = "task_other".into());
    assert_eq!(
        call(&mut gw.client(), &other, "contracts.read", args).status,
        200
    );
    gw.admin("POST", "/admin/revoke", br#"{"task_id":"task_other"}"#);
    assert_eq!(
        reason(&call(&mut gw.client(), &other, "contracts.read", args)),
        "revoked"
    );
}

#[test]
fn sub_agents_never_get_more_than_their_parent() {
    let gw = start_gateway(|t| t);
    let parent = gw.envelope(|_| {});
    let cases = [
        (
            json!({"allowed_tools": ["contracts.read", "billing.update"]}),
            "allowed_tools",
        ),
        (
            json!({"resource_constraints": {"contract_ids": ["contract_7781", "contract_5555"]}}),
            "contract_ids",
        ),
        (
            json!({"resource_constraints": {"max_records": 26}}),
            "max_records",
        ),
        (
            json!({"resource_constraints": {"data_classes": ["billing_terms"]}}),
            "data_classes",
        ),
        (
            json!({"resource_constraints": {"invoice_ids": ["inv_1"]}}),
            "invoice_ids",
        ),
    ];
    for (extra, field) in cases {
        let mut body = json!({"agent_id": "sub", "agent_kind": "classifier"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = delegate(&gw, &parent, body);
        assert_eq!(r.status, 403, "{field}: {}", r.text());
        assert_eq!(reason(&r), "delegation_widening");
        assert!(r.text().contains(field), "{}", r.text());
    }
    // A narrower child: only contracts.read on one contract, expiring no later than the
    // parent, one level deeper.
    let r = delegate(
        &gw,
        &parent,
        json!({"agent_id": "sub", "agent_kind": "classifier", "ttl": "100h",
        "allowed_tools": ["contracts.read"], "resource_constraints": {"contract_ids": ["contract_7781"], "max_records": 5}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let c = &r.json()["claims"];
    let p = portcullis::envelope::jws::decode(&parent).unwrap().payload;
    assert_eq!(c["delegation_depth"], 1);
    assert_eq!(c["delegation_chain"][0], p["jti"]);
    assert!(
        c["exp"].as_i64().unwrap() <= p["exp"].as_i64().unwrap(),
        "never outlives the parent"
    );
    assert_eq!(c["delegator_id"], p["delegator_id"]);
    let child = r.json()["envelope"].as_str().unwrap().to_owned();
    let r = call(
        &mut gw.client(),
        &child,
        "crm.read",
        r#"{"customer_id":"cust_acme_1042"}"#,
    );
    assert_eq!(
        (r.status, reason(&r)),
        (403, "tool_not_in_envelope".to_string())
    );
    // Depth is capped (max_depth 4 in the default configuration).
    let mut t = child;
    for depth in 2..=4 {
        let r = delegate(
            &gw,
            &t,
            json!({"agent_id": format!("d{depth}"), "agent_kind": "classifier"}),
        );
        assert_eq!(r.status, 200, "depth {depth}: {}", r.text());
        t = r.json()["envelope"].as_str().unwrap().to_owned();
    }
    let r = delegate(
        &gw,
        &t,
        json!({"agent_id": "d5", "agent_kind": "classifier"}),
    );
    assert_eq!(
        (r.status, reason(&r)),
        (403, "delegation_depth".to_string())
    );
}

#[test]
fn every_call_gets_exactly_one_audit_line_and_the_trail_verifies() {
    let gw = start_gateway(|t| t);
    let t = gw.envelope(|_| {});
    let mut c = gw.client();
    let mut ids = Vec::new();
    for (tool, args) in [
        ("contracts.read", r#"{"contract_id":"contract_7781"}"#),
        ("crm.read", r#"{"customer_id":"cust_globex_2001"}"#),
        (
            "crm.read",
            r#"{"customer_id":"cust_acme_1042","echo":true}"#,
        ),
        ("billing.update", r#"{"customer_id":"cust_acme_1042"}"#),
        ("nope.tool", "{}"),
        (
            "crm.read",
            r#"{"customer_id":"cust_acme_1042","limit":500}"#,
        ),
    ] {
        let r = call(&mut c, &t, tool, args);
        ids.push(r.header("X-Portcullis-Decision-Id").unwrap().to_owned());
    }
    let r = call(&mut c, "not-a-token", "crm.read", "{}");
    ids.push(r.json()["decision_id"].as_str().unwrap().to_owned());
    let lines = gw.audit_lines(&ids);
    for id in &ids {
        let n = lines
            .iter()
            .filter(|l| l["decision_id"] == id.as_str())
            .count();
        assert_eq!(n, 1, "decision {id} has exactly one line");
    }
    let allowed = lines
        .iter()
        .find(|l| l["decision_id"] == ids[0].as_str())
        .unwrap();
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["delegator"], "user_7f3a91");
    assert_eq!(allowed["tenant"], "tenant_acme");
    assert_eq!(
        allowed["purpose"],
        "review_customer_contract_for_renewal_risk"
    );
    assert_eq!(allowed["resource"], "contract_7781");
    assert_eq!(allowed["upstream_status"], 200);
    assert!(
        allowed["bundle_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    let denied = lines
        .iter()
        .find(|l| l["decision_id"] == ids[1].as_str())
        .unwrap();
    assert_eq!(
        (denied["decision"].as_str(), denied["reason"].as_str()),
        (Some("deny"), Some("resource_out_of_scope"))
    );
    // A denied line says what was attempted: the customer outside the envelope, the
    // record count over the limit.
    assert_eq!(denied["resource"], "cust_globex_2001", "{denied}");
    let over = lines
        .iter()
        .find(|l| l["decision_id"] == ids[5].as_str())
        .unwrap();
    assert_eq!(over["reason"], "record_limit", "{over}");
    assert_eq!(over["record_count"], 500, "{over}");
    assert_eq!(over["resource"], "cust_acme_1042", "{over}");
    for field in [
        "time",
        "decision_id",
        "decision",
        "reason",
        "delegator",
        "tenant",
        "session",
        "task",
        "purpose",
        "agent_id",
        "agent_kind",
        "delegation_chain",
        "tool",
        "resource",
        "data_classes",
        "record_count",
        "bundle_version",
        "bundle_digest",
        "policies",
        "latency_us",
        "upstream_status",
        "seq",
        "prev",
        "hash",
    ] {
        assert!(
            allowed.get(field).is_some(),
            "audit line lacks `{field}`: {allowed}"
        );
    }
    assert!(
        !allowed["policies"].as_array().unwrap().is_empty(),
        "an allowed call names its determining policies: {allowed}"
    );
    // No secret reaches the trail: not the vaulted credential (even the one the backend
    // echoed), not the envelope or its signature.
    let text: String = portcullis::audit::verify::segments_in(&gw.running.audit_dir)
        .unwrap()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(!text.contains(&gw.credential("records_api")));
    assert!(!text.contains(t.rsplit('.').next().unwrap()));
    assert!(!text.contains(&t[..50]));
    let files = portcullis::audit::verify::segments_in(&gw.running.audit_dir).unwrap();
    assert!(portcullis::audit::verify::verify_files(&files, None).is_ok());
}

fn sealed_trail() -> (
    tempfile::TempDir,
    Vec<std::path::PathBuf>,
    portcullis::envelope::TrustedKeys,
) {
    let gw = start_gateway(|t| t);
    let t = gw.envelope(|_| {});
    let mut c = gw.client();
    for _ in 0..10 {
        call(
            &mut c,
            &t,
            "contracts.read",
            r#"{"contract_id":"contract_7781"}"#,
        );
    }
    let dir = gw.running.audit_dir.clone();
    let TestGateway {
        running, dir: keep, ..
    } = gw;
    running.shutdown();
    let keys = portcullis::envelope::TrustedKeys::from_jwks(
        &std::fs::read_to_string(dir.join("audit-key.jwks.json")).unwrap(),
    )
    .unwrap();
    (
        keep,
        portcullis::audit::verify::segments_in(&dir).unwrap(),
        keys,
    )
}

fn rewrite(file: &std::path::Path, f: impl Fn(&mut Vec<String>)) {
    let mut lines: Vec<String> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    f(&mut lines);
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
}

#[test]
fn audit_verify_names_the_line_of_an_edit_a_deletion_or_a_reordering() {
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let verify = |files: &[std::path::PathBuf], jwks: &std::path::Path| {
        let out = std::process::Command::new(bin)
            .args(["audit", "verify", "--jwks", jwks.to_str().unwrap()])
            .args(files)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (dir, files, _) = sealed_trail();
    let jwks = dir.path().join("audit").join("audit-key.jwks.json");
    let (ok, text) = verify(&files, &jwks);
    assert!(ok, "{text}");
    assert!(text.contains("1 signature(s) verified"), "{text}");
    let f = files[0].clone();
    let pristine = std::fs::read_to_string(&f).unwrap();

    rewrite(&f, |l| {
        l[3] = l[3].replace("\"decision\":\"allow\"", "\"decision\":\"deny\"")
    });
    let (ok, text) = verify(&files, &jwks);
    assert!(!ok && text.contains(":4: "), "edit names line 4: {text}");

    std::fs::write(&f, &pristine).unwrap();
    rewrite(&f, |l| {
        l.remove(5);
    });
    let (ok, text) = verify(&files, &jwks);
    assert!(
        !ok && text.contains(":6: "),
        "deletion shows at line 6: {text}"
    );

    std::fs::write(&f, &pristine).unwrap();
    rewrite(&f, |l| l.swap(2, 7));
    let (ok, text) = verify(&files, &jwks);
    assert!(
        !ok && text.contains(":3: "),
        "reordering shows at line 3: {text}"
    );

    // Cutting the tail (checkpoint included) leaves an unsealed segment, reported as such.
    std::fs::write(&f, &pristine).unwrap();
    rewrite(&f, |l| l.truncate(4));
    let (ok, text) = verify(&files, &jwks);
    assert!(ok && text.contains("follow the last checkpoint"), "{text}");

    // Deleting the first entries: the trail starts with segment 1, so it must start at
    // the chain's genesis; the first line left is the break.
    std::fs::write(&f, &pristine).unwrap();
    rewrite(&f, |l| {
        l.drain(..2);
    });
    let (ok, text) = verify(&files, &jwks);
    assert!(
        !ok && text.contains(":1: "),
        "head deletion shows at line 1: {text}"
    );
}

#[test]
fn rotated_segments_are_each_sealed_and_a_missing_one_is_named() {
    // Segments of four or five lines.
    let gw =
        start_gateway(|t| t.replace("max_segment_bytes = 67108864", "max_segment_bytes = 4096"));
    let t = gw.envelope(|_| {});
    let mut c = gw.client();
    for _ in 0..16 {
        let r = call(
            &mut c,
            &t,
            "contracts.read",
            r#"{"contract_id":"contract_7781"}"#,
        );
        // Rotation happens between the writer's batches: wait for each line, so each
        // call is a batch of its own.
        gw.audit_lines(&[r.header("X-Portcullis-Decision-Id").unwrap().to_owned()]);
    }
    let dir = gw.running.audit_dir.clone();
    let TestGateway {
        running,
        dir: _keep,
        ..
    } = gw;
    running.shutdown();
    let keys = portcullis::envelope::TrustedKeys::from_jwks(
        &std::fs::read_to_string(dir.join("audit-key.jwks.json")).unwrap(),
    )
    .unwrap();
    let files = portcullis::audit::verify::segments_in(&dir).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    let r = portcullis::audit::verify::verify_files(&files, Some(&keys)).unwrap();
    assert_eq!(
        r.checkpoints as usize,
        files.len(),
        "every segment sealed: {r:?}"
    );
    assert_eq!(r.signatures_checked, r.checkpoints);
    assert_eq!((r.unsealed_tail, r.trusted_start), (0, None));
    assert_eq!(r.lines, 16 + files.len() as u64);

    // A whole segment taken out of the middle is named.
    let gone = files[1].clone();
    std::fs::rename(&gone, dir.join("elsewhere.jsonl")).unwrap();
    let left = portcullis::audit::verify::segments_in(&dir).unwrap();
    let e = portcullis::audit::verify::verify_files(&left, Some(&keys)).unwrap_err();
    assert!(
        e.to_string()
            .contains("segment 3 follows where segment 2 was expected"),
        "{e}"
    );
    // Archived older segments: what is given is checked, and the report says from where.
    let later = &files[2..];
    let r = portcullis::audit::verify::verify_files(later, Some(&keys)).unwrap();
    assert!(r.trusted_start.is_some_and(|s| s > 1), "{r:?}");
}

#[cfg(unix)]
fn stalled_audit_gateway(on_full: &str) -> TestGateway {
    // Segment 2 is a FIFO nobody reads: the writer blocks opening it, so the queue fills.
    let gw_dir_hook = |t: String| {
        t.replace("queue_batches = 1024", "queue_batches = 1")
            .replace("on_full = \"deny\"", &format!("on_full = \"{on_full}\""))
            .replace("dir = \"audit\"", "dir = \"stalled-audit\"")
    };
    // The directory must exist with the FIFO before the gateway starts: prepare it in a
    // temp dir and point the config at its absolute path.
    let stalled = tempfile::tempdir().unwrap().keep();
    std::fs::write(stalled.join("portcullis-audit-000001.jsonl"), "").unwrap();
    let fifo = stalled.join("portcullis-audit-000002.jsonl");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let path = stalled.to_str().unwrap().to_owned();
    start_gateway(move |t| {
        gw_dir_hook(t).replace("dir = \"stalled-audit\"", &format!("dir = \"{path}\""))
    })
}

#[cfg(unix)]
#[test]
fn a_full_audit_queue_fails_closed_when_configured_to() {
    let gw = stalled_audit_gateway("deny");
    let t = gw.envelope(|_| {});
    let args = r#"{"contract_id":"contract_7781"}"#;
    let mut allowed = Vec::new();
    // The first call is let through; its core hands the batch to the writer, which is
    // stuck, and the one-batch queue is full.
    let r = call(&mut gw.client(), &t, "contracts.read", args);
    assert_eq!(r.status, 200, "{}", r.text());
    allowed.push(r.header("X-Portcullis-Decision-Id").unwrap().to_owned());
    assert_eq!(
        gw.wait_metric("portcullis_audit_queue_depth", |d| d >= 1.0),
        1.0
    );
    // From now on every call, on every core, is refused with its reason: nothing happens
    // that the trail could not record. Delegation (minting an envelope) too.
    for _ in 0..8 {
        let r = call(&mut gw.client(), &t, "contracts.read", args);
        assert_eq!(
            (r.status, reason(&r)),
            (503, "audit_unavailable".to_string()),
            "{}",
            r.text()
        );
    }
    let r = delegate(
        &gw,
        &t,
        json!({"agent_id": "sub", "agent_kind": "classifier"}),
    );
    assert_eq!(
        (r.status, reason(&r)),
        (503, "audit_unavailable".to_string()),
        "{}",
        r.text()
    );
    let r = mcp(
        &mut gw.client(),
        &t,
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"contracts.read","arguments":{"contract_id":"contract_7781"}}}"#,
    );
    assert_eq!(
        r.json()["error"]["data"]["reason"],
        "audit_unavailable",
        "{}",
        r.text()
    );

    // The writer recovers (the FIFO it was stuck on gets a writer and closes): calls go
    // through again, and every call that was let through has exactly one line.
    let fifo = gw.running.audit_dir.join("portcullis-audit-000002.jsonl");
    drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = call(&mut gw.client(), &t, "contracts.read", args);
        if r.status == 200 {
            allowed.push(r.header("X-Portcullis-Decision-Id").unwrap().to_owned());
            break;
        }
        assert_eq!(reason(&r), "audit_unavailable");
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never recovered"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::remove_file(&fifo).unwrap();
    let lines = gw.audit_lines(&allowed);
    for id in &allowed {
        let n = lines
            .iter()
            .filter(|l| l["decision_id"] == id.as_str())
            .count();
        assert_eq!(n, 1, "allowed call {id} has exactly one line");
    }
    assert_eq!(gw.metric("portcullis_audit_dropped_total"), 0.0);
}

#[cfg(unix)]
#[test]
fn a_full_audit_queue_drops_and_counts_when_configured_to() {
    let gw = stalled_audit_gateway("drop");
    let t = gw.envelope(|_| {});
    let args = r#"{"contract_id":"contract_7781"}"#;
    let r = call(&mut gw.client(), &t, "contracts.read", args);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        gw.wait_metric("portcullis_audit_queue_depth", |d| d >= 1.0),
        1.0
    );
    // The queue is full: calls still go through, and their lost records are counted.
    for _ in 0..8 {
        let r = call(&mut gw.client(), &t, "contracts.read", args);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let dropped = gw.wait_metric("portcullis_audit_dropped_total", |d| d >= 8.0);
    assert!(dropped >= 8.0, "every lost record is counted: {dropped}");
}

#[test]
fn shutdown_finishes_in_flight_calls_and_seals_the_trail() {
    let (dir, files, keys) = sealed_trail();
    let r = portcullis::audit::verify::verify_files(&files, Some(&keys)).unwrap();
    assert_eq!(r.checkpoints, 1);
    assert_eq!(r.signatures_checked, 1);
    assert_eq!(r.unsealed_tail, 0);
    assert_eq!(r.lines, 11);
    drop(dir);
}

/// One call made while the bundles were being swapped: its decision id, HTTP status and
/// the reason the gateway gave (empty for an allowed call; `transport: ...` when the call
/// failed below HTTP).
type Outcome = (String, u16, String);

#[test]
fn swapping_bundles_under_load_fails_no_call_and_each_line_names_the_deciding_bundle() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    const SWAPS: usize = 30;
    const HTTP_CLIENTS: usize = 3;

    let gw = start_gateway(|t| t);
    let (allow_bytes, allow_digest) = bundle_variant("swap-allow", false);
    let (deny_bytes, deny_digest) = bundle_variant("swap-deny", true);
    let r = gw.admin("PUT", "/admin/bundle", &allow_bytes);
    assert_eq!(r.json()["version"], "swap-allow", "{}", r.text());

    let token = gw.envelope(|_| {});
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let mut clients = Vec::new();
    for n in 0..=HTTP_CLIENTS {
        let (stop, done, outcomes) = (stop.clone(), done.clone(), outcomes.clone());
        let (addr, token) = (gw.addr(), token.clone());
        let via_mcp = n == HTTP_CLIENTS; // and one MCP client
        clients.push(std::thread::spawn(move || {
            let mut c = Client::connect(addr).unwrap();
            while !stop.load(Ordering::Acquire) {
                let outcome = if via_mcp {
                    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"contracts.read","arguments":{"contract_id":"contract_7781"}}}"#;
                    let auth = format!("Bearer {token}");
                    match c.request(
                        "POST",
                        "/mcp",
                        &[
                            ("Authorization", &auth),
                            ("Content-Type", "application/json"),
                            ("Accept", "application/json, text/event-stream"),
                        ],
                        body.as_bytes(),
                    ) {
                        Ok(r) => {
                            let v = r.json();
                            let e = &v["error"]["data"];
                            match (r.header("X-Portcullis-Decision-Id"), e["decision_id"].as_str()) {
                                (Some(id), _) if v["result"].is_object() => {
                                    (id.to_owned(), r.status, String::new())
                                }
                                (_, Some(id)) => (
                                    id.to_owned(),
                                    403, // a refusal, answered as a JSON-RPC error
                                    e["reason"].as_str().unwrap_or("").to_owned(),
                                ),
                                _ => (String::new(), r.status, format!("unexpected: {}", r.text())),
                            }
                        }
                        Err(e) => (String::new(), 0, format!("transport: {e}")),
                    }
                } else {
                    let auth = format!("Bearer {token}");
                    match c.request(
                        "POST",
                        "/v1/tools/contracts.read",
                        &[("Authorization", &auth), ("Content-Type", "application/json")],
                        br#"{"contract_id":"contract_7781"}"#,
                    ) {
                        Ok(r) => (
                            r.header("X-Portcullis-Decision-Id").unwrap_or("").to_owned(),
                            r.status,
                            if r.status == 200 { String::new() } else { reason(&r) },
                        ),
                        Err(e) => (String::new(), 0, format!("transport: {e}")),
                    }
                };
                let failed = outcome.1 == 0;
                outcomes.lock().unwrap().push(outcome);
                done.fetch_add(1, Ordering::Release);
                if failed {
                    c = Client::connect(addr).unwrap();
                }
            }
        }));
    }

    // Alternate the bundles. After each push, wait until the clients have completed
    // enough calls that some of them certainly started after the swap (calls in flight
    // at the swap finish on the bundle they started with).
    let threads = (HTTP_CLIENTS + 1) as u64;
    for i in 0..SWAPS {
        let (bytes, version) = if i % 2 == 0 {
            (&deny_bytes, "swap-deny")
        } else {
            (&allow_bytes, "swap-allow")
        };
        let r = gw.admin("PUT", "/admin/bundle", bytes);
        assert_eq!(
            (r.status, r.json()["version"].as_str()),
            (200, Some(version)),
            "{}",
            r.text()
        );
        let target = done.load(Ordering::Acquire) + 2 * threads;
        while done.load(Ordering::Acquire) < target {
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Release);
    for c in clients {
        c.join().unwrap();
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());

    // Zero failed calls: each one was either allowed or refused by the policy.
    for (id, status, why) in &outcomes {
        assert!(
            (*status == 200 && why.is_empty()) || (*status == 403 && why == "policy_denied"),
            "call {id:?} failed during the swaps: {status} {why}"
        );
        assert!(!id.is_empty());
    }

    // Seal the trail, then check every call's line against the bundle it names.
    let TestGateway {
        running,
        dir: _keep,
        ..
    } = gw;
    let audit_dir = running.audit_dir.clone();
    running.shutdown();
    let files = portcullis::audit::verify::segments_in(&audit_dir).unwrap();
    portcullis::audit::verify::verify_files(&files, None).expect("the trail verifies");
    let mut lines: std::collections::HashMap<String, Vec<Value>> = Default::default();
    for f in &files {
        for l in std::fs::read_to_string(f).unwrap().lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            if let Some(id) = v["decision_id"].as_str() {
                lines.entry(id.to_owned()).or_default().push(v);
            }
        }
    }
    let mut decided_by = std::collections::HashMap::<&str, usize>::new();
    for (id, status, _) in &outcomes {
        let found = lines.get(id).map_or(&[][..], Vec::as_slice);
        assert_eq!(found.len(), 1, "decision {id} has exactly one line");
        let line = &found[0];
        let version = line["bundle_version"].as_str().unwrap();
        let (decision, digest) = match version {
            "swap-allow" => ("allow", &allow_digest),
            "swap-deny" => ("deny", &deny_digest),
            other => panic!("decision {id} names bundle {other}: {line}"),
        };
        assert_eq!(line["bundle_digest"], digest.as_str(), "{line}");
        assert_eq!(line["decision"], decision, "{line}");
        assert_eq!(
            *status == 200,
            decision == "allow",
            "answer and line agree: {line}"
        );
        if decision == "deny" {
            assert_eq!(line["reason"], "policy_denied", "{line}");
        }
        assert!(
            !line["policies"].as_array().unwrap().is_empty(),
            "names the policies that decided: {line}"
        );
        *decided_by.entry(version).or_default() += 1;
    }
    assert!(
        decided_by.len() == 2,
        "both bundles decided calls: {decided_by:?} over {} calls",
        outcomes.len()
    );
}

/// A strict reading of the Prometheus text exposition format (0.0.4): every sample
/// belongs to a family declared by `# HELP` and `# TYPE` before it, names and label
/// names are valid, label values are quoted, values are numbers, and each histogram's
/// buckets are cumulative up to `+Inf`, which equals its `_count`.
fn parse_prometheus(text: &str) -> std::collections::BTreeMap<String, Vec<(String, f64)>> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut types = std::collections::BTreeMap::<String, String>::new();
    let mut helped = std::collections::BTreeSet::<String>::new();
    let mut samples = std::collections::BTreeMap::<String, Vec<(String, f64)>>::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(name_ok(name) && !help.is_empty(), "{line}");
            assert!(helped.insert(name.to_owned()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{line}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.trim().is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("labels end with }")),
            None => (series, ""),
        };
        assert!(name_ok(name), "{line}");
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, v) = rest
                .split_once("=\"")
                .unwrap_or_else(|| panic!("label in {line}"));
            assert!(name_ok(k), "label name in {line}");
            let mut end = None;
            let mut escaped = false;
            for (i, c) in v.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.unwrap_or_else(|| panic!("unterminated label value in {line}"));
            rest = v[end + 1..].strip_prefix(',').unwrap_or(&v[end + 1..]);
        }
        let family = types
            .keys()
            .find(|f| {
                name == f.as_str()
                    || (types[*f] == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| name == format!("{f}{s}")))
            })
            .unwrap_or_else(|| panic!("sample of an undeclared family: {line}"))
            .clone();
        samples
            .entry(family)
            .or_default()
            .push((series.to_owned(), value));
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let s = &samples[family];
        let buckets: Vec<f64> = s
            .iter()
            .filter(|(n, _)| n.starts_with(&format!("{family}_bucket")))
            .map(|(_, v)| *v)
            .collect();
        assert!(
            buckets.windows(2).all(|w| w[0] <= w[1]),
            "{family} buckets are cumulative"
        );
        let inf = s
            .iter()
            .find(|(n, _)| n.contains("le=\"+Inf\""))
            .unwrap_or_else(|| panic!("{family} has a +Inf bucket"))
            .1;
        let count = s
            .iter()
            .find(|(n, _)| *n == format!("{family}_count"))
            .unwrap()
            .1;
        assert_eq!(inf, count, "{family}: +Inf bucket equals _count");
    }
    samples
}

#[test]
fn metrics_are_valid_prometheus_text_with_what_operators_need() {
    let gw = start_gateway(|t| t);
    let t = gw.envelope(|_| {});
    let mut c = gw.client();
    let mut ids = Vec::new();
    for (tool, args) in [
        ("contracts.read", r#"{"contract_id":"contract_7781"}"#),
        ("contracts.read", r#"{"contract_id":"contract_7781"}"#),
        ("crm.read", r#"{"customer_id":"cust_globex_2001"}"#),
    ] {
        let r = call(&mut c, &t, tool, args);
        ids.push(r.json()["decision_id"].as_str().map_or_else(
            || r.header("X-Portcullis-Decision-Id").unwrap().to_owned(),
            str::to_owned,
        ));
    }
    gw.audit_lines(&ids);
    // Per-tool counts and cache counters are published by each core once a second.
    gw.wait_metric("portcullis_envelope_cache_hits_total", |v| v >= 1.0);
    let r = gw.admin("GET", "/metrics", b"");
    assert!(
        r.header("Content-Type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.headers
    );
    let m = parse_prometheus(&r.text());
    let value = |family: &str, series: &str| {
        m[family]
            .iter()
            .find(|(s, _)| s == series)
            .unwrap_or_else(|| panic!("no {series} in {:?}", m[family]))
            .1
    };
    assert_eq!(
        value(
            "portcullis_decisions_total",
            r#"portcullis_decisions_total{outcome="allow",reason="allow"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            "portcullis_decisions_total",
            r#"portcullis_decisions_total{outcome="deny",reason="resource_out_of_scope"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            "portcullis_tool_calls_total",
            r#"portcullis_tool_calls_total{tool="contracts.read"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            "portcullis_gateway_overhead_seconds",
            "portcullis_gateway_overhead_seconds_count"
        ),
        2.0
    );
    assert_eq!(
        value(
            "portcullis_upstream_seconds",
            "portcullis_upstream_seconds_count"
        ),
        2.0
    );
    assert_eq!(
        value(
            "portcullis_audit_lines_total",
            "portcullis_audit_lines_total"
        ),
        3.0
    );
    assert!(
        value(
            "portcullis_envelope_cache_hits_total",
            "portcullis_envelope_cache_hits_total"
        ) >= 1.0
    );
    for family in [
        "portcullis_upstream_errors_total",
        "portcullis_audit_queue_depth",
        "portcullis_audit_dropped_total",
        "portcullis_bundle_info",
        "portcullis_bundle_swaps_total",
        "portcullis_revocations",
    ] {
        assert!(m.contains_key(family), "{family} exported");
    }
    assert!(
        m["portcullis_bundle_info"][0]
            .0
            .contains(r#"version="example-1""#)
    );
}

#[test]
fn a_gateway_that_requires_signed_bundles_takes_only_the_pipelines() {
    use base64::Engine;
    let pipeline = portcullis::envelope::SigningKey::generate(Some("pipeline".into())).unwrap();
    let other = portcullis::envelope::SigningKey::generate(Some("pipeline".into())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("pipeline.jwks.json");
    std::fs::write(&jwks, pipeline.jwks().to_string()).unwrap();
    let jwks = jwks.to_str().unwrap().to_owned();
    let gw = start_gateway(move |t| {
        t.replace(
            "# bundle_signing_jwks = \"pipeline.jwks.json\"",
            &format!("bundle_signing_jwks = \"{jwks}\""),
        )
    });
    let (bytes, _) = bundle_variant("signed-1", false);
    let b64 = |sig: [u8; 64]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let put = |sig: Option<String>, body: &[u8]| {
        let mut h = vec![("Authorization", auth.as_str())];
        if let Some(s) = &sig {
            h.push(("X-Portcullis-Bundle-Signature", s.as_str()));
        }
        Client::connect(gw.admin_addr())
            .unwrap()
            .request("PUT", "/admin/bundle", &h, body)
            .unwrap()
    };
    let (other_bytes, _) = bundle_variant("signed-2", false);
    for (sig, why) in [
        (None, "missing"),
        (Some(b64(other.sign(&bytes))), "another key"),
        (Some(b64(pipeline.sign(&other_bytes))), "other bytes"),
        (Some("not base64!".to_owned()), "garbage"),
    ] {
        let r = put(sig, &bytes);
        assert_eq!(r.status, 422, "{why}: {}", r.text());
        assert!(r.text().contains("signature"), "{why}: {}", r.text());
    }
    assert_eq!(
        gw.admin("GET", "/admin/bundle", b"").json()["version"],
        "example-1"
    );
    let r = put(Some(b64(pipeline.sign(&bytes))), &bytes);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], "signed-1");
    // `portcullis push --sign-with` does the same.
    let key = dir.path().join("pipeline.pem");
    std::fs::write(&key, pipeline.private_pem()).unwrap();
    let bundle = dir.path().join("b.pcb");
    std::fs::write(&bundle, &other_bytes).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "push",
            bundle.to_str().unwrap(),
            "--sign-with",
            key.to_str().unwrap(),
        ])
        .args(["--admin", &format!("http://{}", gw.admin_addr())])
        .env("PORTCULLIS_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        gw.admin("GET", "/admin/bundle", b"").json()["version"],
        "signed-2"
    );
}
