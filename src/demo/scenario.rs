//! The renewal-review scenario of DESIGN.md, walked over real sockets against a gateway
//! running the embedded default (example policies, built-in backends): Maya's agent does
//! its job, a sub-agent gets a narrower envelope, and every way the scenario can go wrong
//! is refused with its reason. `portcullis demo` prints it; the audit trail tells the same
//! story afterwards.

use super::client::{Client, Response};
use crate::config::Config;
use crate::envelope::mint::{MintOptions, claims_from_file};
use crate::envelope::{SigningKey, jws};
use serde_json::{Value, json};
use std::io::Write;

/// The seed article's envelope.
pub const SEED: &str = include_str!("../../policies/envelopes/renewal-review.json");

/// One step of the walk: what was asked and what the gateway answered.
#[derive(Debug, Clone)]
pub struct Step {
    pub title: String,
    pub call: String,
    pub status: u16,
    pub outcome: String,
    pub reason: String,
    pub decision_id: String,
    /// What the walk expects, so a surprise is visible (and a test can assert it).
    pub expected: &'static str,
}

impl Step {
    pub fn as_expected(&self) -> bool {
        self.outcome == self.expected || self.reason == self.expected
    }
}

struct Agent<'a> {
    client: Client,
    token: String,
    label: &'a str,
}

fn mint(key: &SigningKey, edit: impl Fn(&mut Value)) -> Result<String, String> {
    let mut v: Value = serde_json::from_str(SEED).map_err(|e| e.to_string())?;
    v["agent_id"] = "renewal-review-agent".into();
    v["agent_kind"] = "renewal_reviewer".into();
    edit(&mut v);
    let now = crate::clock::now_unix();
    let ttl = v.get("ttl").and_then(Value::as_i64).unwrap_or(900);
    let now = now - v.get("minted_ago").and_then(Value::as_i64).unwrap_or(0);
    if let Some(m) = v.as_object_mut() {
        m.remove("ttl");
        m.remove("minted_ago");
    }
    let m = v.as_object().cloned().unwrap_or_default();
    let claims = claims_from_file(
        m,
        &MintOptions {
            now,
            ttl_secs: Some(ttl),
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(jws::sign(&claims, key))
}

fn summarize(r: &Response) -> (String, String, String) {
    let j = r.json();
    let did = r
        .header("X-Portcullis-Decision-Id")
        .map(str::to_owned)
        .or_else(|| j["decision_id"].as_str().map(str::to_owned))
        .or_else(|| {
            j["error"]["data"]["decision_id"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let reason = j["reason"]
        .as_str()
        .or_else(|| j["error"]["data"]["reason"].as_str())
        .unwrap_or("")
        .to_owned();
    let allowed = (200..300).contains(&r.status) && j.get("error").is_none();
    (
        if allowed {
            "allow".into()
        } else {
            "deny".into()
        },
        reason,
        did,
    )
}

impl Agent<'_> {
    fn call(
        &mut self,
        title: &str,
        tool: &str,
        args: Value,
        expected: &'static str,
    ) -> Result<Step, String> {
        let auth = format!("Bearer {}", self.token);
        let body = args.to_string();
        let r = self
            .client
            .request(
                "POST",
                &format!("/v1/tools/{tool}"),
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
            )
            .map_err(|e| e.to_string())?;
        let (outcome, reason, decision_id) = summarize(&r);
        Ok(Step {
            title: title.into(),
            call: format!("{} → {tool} {body}", self.label),
            status: r.status,
            outcome,
            reason,
            decision_id,
            expected,
        })
    }

    fn mcp(
        &mut self,
        title: &str,
        tool: &str,
        args: Value,
        expected: &'static str,
    ) -> Result<Step, String> {
        let auth = format!("Bearer {}", self.token);
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string();
        let r = self
            .client
            .request(
                "POST",
                "/mcp",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                    ("Accept", "application/json, text/event-stream"),
                    ("MCP-Protocol-Version", "2026-07-28"),
                    ("Mcp-Method", "tools/call"),
                    ("Mcp-Name", tool),
                ],
                body.as_bytes(),
            )
            .map_err(|e| e.to_string())?;
        let (outcome, reason, decision_id) = summarize(&r);
        Ok(Step {
            title: title.into(),
            call: format!("{} → MCP tools/call {tool} {args}", self.label),
            status: r.status,
            outcome,
            reason,
            decision_id,
            expected,
        })
    }
}

/// Runs the walk against a gateway at `addr` whose trusted issuer is `key`, printing as it
/// goes. Returns every step.
pub fn walk(
    addr: std::net::SocketAddr,
    key: &SigningKey,
    out: &mut dyn Write,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let connect = || Client::connect(addr).map_err(|e| format!("cannot reach the gateway: {e}"));
    let mut maya = Agent {
        client: connect()?,
        token: mint(key, |_| {})?,
        label: "maya's agent",
    };
    let say = |out: &mut dyn Write, s: &Step| {
        let mark = if s.as_expected() { " " } else { "!" };
        let what = if s.outcome == "allow" {
            format!("ALLOW {}", s.status)
        } else {
            format!("DENY  {} {}", s.status, s.reason)
        };
        let _ = writeln!(out, "{mark} {:<62} {what:<32} {}", s.title, s.decision_id);
    };
    let _ = writeln!(
        out,
        "\n== Maya's renewal-review agent (the seed envelope: contracts.read, crm.read, tickets.create; cust_acme_1042 / contract_7781; 25 records) =="
    );
    for s in [
        maya.call("reads the contract it was given", "contracts.read", json!({"contract_id": "contract_7781"}), "allow")?,
        maya.call("reads the customer's CRM record", "crm.read", json!({"customer_id": "cust_acme_1042", "limit": 10}), "allow")?,
        maya.call("opens a renewal-risk ticket", "tickets.create", json!({"customer_id": "cust_acme_1042", "subject": "Renewal risk: termination for convenience"}), "allow")?,
        maya.mcp("reads the contract again, over MCP", "contracts.read", json!({"contract_id": "contract_7781"}), "allow")?,
        maya.call("asks for another customer's record", "crm.read", json!({"customer_id": "cust_globex_2001"}), "resource_out_of_scope")?,
        maya.call("asks for a contract outside its envelope", "contracts.read", json!({"contract_id": "contract_7790"}), "resource_out_of_scope")?,
        maya.call("asks for 200 records (envelope allows 25)", "crm.read", json!({"customer_id": "cust_acme_1042", "limit": 200}), "record_limit")?,
        maya.call("tries to change billing terms", "billing.update", json!({"customer_id": "cust_acme_1042"}), "tool_not_in_envelope")?,
    ] {
        say(out, &s);
        steps.push(s);
    }

    let _ = writeln!(
        out,
        "\n== Envelopes that ask for more than the human or the purpose allows =="
    );
    let mut billing = Agent {
        client: connect()?,
        token: mint(key, |v| {
            v["purpose"] = "renegotiate_billing_terms".into();
            v["allowed_tools"] = json!(["billing.update", "crm.read"]);
            v["resource_constraints"]["data_classes"] = json!(["billing_terms", "support_summary"]);
        })?,
        label: "billing agent (for maya)",
    };
    let mut drift = Agent {
        client: connect()?,
        token: mint(key, |v| {
            if let Some(a) = v["allowed_tools"].as_array_mut() {
                a.push("payments.history".into());
            }
            if let Some(a) = v["resource_constraints"]["data_classes"].as_array_mut() {
                a.push("payment_history".into());
            }
        })?,
        label: "drifting agent",
    };
    let mut drafter = Agent {
        client: connect()?,
        token: mint(key, |v| v["agent_kind"] = "email_drafter".into())?,
        label: "email drafter",
    };
    let mut other_tenant = Agent {
        client: connect()?,
        token: mint(key, |v| v["tenant_id"] = "tenant_globex".into())?,
        label: "wrong-tenant agent",
    };
    let mut narrow = Agent {
        client: connect()?,
        token: mint(key, |v| {
            v["resource_constraints"]["data_classes"] =
                json!(["contract_metadata", "renewal_terms"])
        })?,
        label: "contracts-only agent",
    };
    for s in [
        billing.call(
            "billing.update listed in the envelope, but Maya is not finance",
            "billing.update",
            json!({"customer_id": "cust_acme_1042"}),
            "policy_denied",
        )?,
        drift.call(
            "payments.history: outside the declared purpose (drift)",
            "payments.history",
            json!({"customer_id": "cust_acme_1042"}),
            "drift",
        )?,
        drafter.call(
            "an email-drafting agent reads a contract",
            "contracts.read",
            json!({"contract_id": "contract_7781"}),
            "policy_denied",
        )?,
        other_tenant.call(
            "an envelope for another tenant",
            "contracts.read",
            json!({"contract_id": "contract_7781"}),
            "policy_denied",
        )?,
        narrow.call(
            "crm.read needs support_summary, not granted",
            "crm.read",
            json!({"customer_id": "cust_acme_1042"}),
            "data_class_out_of_scope",
        )?,
    ] {
        say(out, &s);
        steps.push(s);
    }

    let _ = writeln!(
        out,
        "\n== Delegation: the clause classifier gets a downscoped envelope =="
    );
    let auth = format!("Bearer {}", maya.token);
    let body = json!({
        "agent_id": "clause-classifier", "agent_kind": "clause_classifier", "ttl": "10m",
        "purpose": "classify_contract_clauses", "allowed_tools": ["contracts.read"],
        "resource_constraints": {"contract_ids": ["contract_7781"], "max_records": 5, "data_classes": ["contract_metadata", "renewal_terms"]}
    });
    let r = maya
        .client
        .request(
            "POST",
            "/v1/delegate",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    let child = r.json()["envelope"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("delegation failed: {}", r.text()))?;
    let c = &r.json()["claims"];
    let _ = writeln!(
        out,
        "  delegated: tools {} on {} , purpose {}, depth {}, expires {}",
        c["allowed_tools"],
        c["resource_constraints"]["contract_ids"],
        c["purpose"],
        c["delegation_depth"],
        c["expires_at"]
    );
    let mut sub = Agent {
        client: connect()?,
        token: child,
        label: "clause classifier",
    };
    for s in [
        sub.call(
            "reads the contract it was delegated",
            "contracts.read",
            json!({"contract_id": "contract_7781"}),
            "allow",
        )?,
        sub.call(
            "tries the CRM",
            "crm.read",
            json!({"customer_id": "cust_acme_1042"}),
            "tool_not_in_envelope",
        )?,
    ] {
        say(out, &s);
        steps.push(s);
    }
    let auth = format!("Bearer {}", sub.token);
    let widen = json!({"agent_id": "sub-sub", "agent_kind": "x", "allowed_tools": ["contracts.read", "crm.read"]});
    let r = sub
        .client
        .request(
            "POST",
            "/v1/delegate",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            widen.to_string().as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    let (outcome, reason, did) = summarize(&r);
    let s = Step {
        title: "tries to delegate crm.read onwards (widening)".into(),
        call: "delegate".into(),
        status: r.status,
        outcome,
        reason,
        decision_id: did,
        expected: "delegation_widening",
    };
    say(out, &s);
    steps.push(s);

    let _ = writeln!(out, "\n== Time and revocation ==");
    let mut stale = Agent {
        client: connect()?,
        token: mint(key, |v| {
            v["minted_ago"] = json!(3600);
            v["ttl"] = json!(600);
        })?,
        label: "stale agent",
    };
    let s = stale.call(
        "an envelope that expired 50 minutes ago",
        "contracts.read",
        json!({"contract_id": "contract_7781"}),
        "expired",
    )?;
    say(out, &s);
    steps.push(s);
    Ok(steps)
}

/// `portcullis demo`: start the gateway on the embedded default (loopback, ephemeral
/// ports), walk the scenario, revoke Maya's envelope, shut down and verify the audit
/// trail.
pub fn run(out: &mut dyn Write) -> Result<Vec<Step>, String> {
    let mut cfg = Config::embedded().map_err(|e| e.to_string())?;
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.server.cores = 1;
    cfg.admin.listen = "127.0.0.1:0".into();
    crate::log::set_quiet(true);
    let running = crate::gateway::start(&cfg).map_err(|e| e.to_string())?;
    let dir = running
        .demo_issuer_dir
        .clone()
        .ok_or("the embedded default has no demo issuer")?;
    let pem = std::fs::read_to_string(dir.join("private.pem")).map_err(|e| e.to_string())?;
    let key =
        SigningKey::from_pkcs8_pem(&pem, Some("demo-issuer".into())).map_err(|e| e.to_string())?;
    let _ = writeln!(
        out,
        "Portcullis demo: gateway on http://{} ({} driver), policy bundle {}, built-in CRM/contracts and MCP backends on loopback.",
        running.server.addr,
        running.server.driver.name(),
        running.shared.active.load().bundle.meta().version
    );
    let _ = writeln!(
        out,
        "Each line: what the agent tried, the gateway's decision (and reason), and the decision id shared with the audit trail."
    );
    let mut steps = walk(running.server.addr, &key, out)?;

    // Revoke an envelope through the admin API: it and every envelope delegated from it
    // stop at once, on every core.
    let parent = mint(&key, |_| {})?;
    let jti = jws::decode(&parent).map_err(|e| e.to_string())?.payload["jti"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut c = Client::connect(running.server.addr).map_err(|e| e.to_string())?;
    let auth = format!("Bearer {parent}");
    let body = json!({"agent_id": "clause-classifier-2", "agent_kind": "clause_classifier", "allowed_tools": ["contracts.read"]});
    let r = c
        .request(
            "POST",
            "/v1/delegate",
            &[("Authorization", &auth)],
            body.to_string().as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    let child = r.json()["envelope"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("delegation failed: {}", r.text()))?;
    let admin = running.admin.as_ref().ok_or("no admin listener")?.addr;
    let token_file = running.admin_token_file.clone().ok_or("no admin token")?;
    let admin_token = std::fs::read_to_string(&token_file).map_err(|e| e.to_string())?;
    let r = Client::connect(admin)
        .and_then(|mut a| {
            a.request(
                "POST",
                "/admin/revoke",
                &[("Authorization", &format!("Bearer {admin_token}"))],
                json!({"jti": jti}).to_string().as_bytes(),
            )
        })
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("revocation failed: {}", r.text()));
    }
    let _ = writeln!(
        out,
        "  POST /admin/revoke {{\"jti\": \"{jti}\"}} -> {}",
        r.status
    );
    for (title, token) in [
        ("the revoked envelope", &parent),
        ("a sub-agent delegated from it", &child),
    ] {
        let auth = format!("Bearer {token}");
        let r = c
            .request(
                "POST",
                "/v1/tools/contracts.read",
                &[("Authorization", &auth)],
                br#"{"contract_id":"contract_7781"}"#,
            )
            .map_err(|e| e.to_string())?;
        let (outcome, reason, did) = summarize(&r);
        let s = Step {
            title: title.into(),
            call: String::new(),
            status: r.status,
            outcome,
            reason,
            decision_id: did,
            expected: "revoked",
        };
        let mark = if s.as_expected() { " " } else { "!" };
        let _ = writeln!(
            out,
            "{mark} {:<62} {:<32} {}",
            s.title,
            format!("DENY  {} {}", s.status, s.reason),
            s.decision_id
        );
        steps.push(s);
    }

    let audit_dir = running.audit_dir.clone();
    let vault = std::sync::Arc::clone(&running.shared.vault);
    let logs = running
        .demo_backends
        .as_ref()
        .and_then(|d| d.log_of("records").cloned());
    running.shutdown();
    let _ = writeln!(out, "\n== What the backends saw, and the audit trail ==");
    if let (Some(log), Some(secret)) = (logs, vault.get("records_api")) {
        let seen = log.lock().map(|l| l.clone()).unwrap_or_default();
        let with_cred = seen
            .iter()
            .filter(|s| {
                s.authorization
                    .as_deref()
                    .is_some_and(|a| a.as_bytes().ends_with(secret.expose()))
            })
            .count();
        let with_envelope = seen
            .iter()
            .filter(|s| s.headers.iter().any(|(_, v)| v.contains("eyJ")))
            .count();
        let _ = writeln!(
            out,
            "  records API: {} requests, {with_cred} carried the vaulted credential, {with_envelope} carried an envelope",
            seen.len()
        );
    }
    let files = crate::audit::verify::segments_in(&audit_dir).map_err(|e| e.to_string())?;
    let keys = std::fs::read_to_string(audit_dir.join("audit-key.jwks.json"))
        .ok()
        .and_then(|t| crate::envelope::TrustedKeys::from_jwks(&t).ok());
    match crate::audit::verify::verify_files(&files, keys.as_ref()) {
        Ok(r) => {
            let _ = writeln!(
                out,
                "  audit trail {}: {} lines, hash chain intact, {} signed checkpoint(s) verified",
                audit_dir.display(),
                r.lines,
                r.signatures_checked
            );
        }
        Err(e) => return Err(format!("audit trail does not verify: {e}")),
    }
    let _ = writeln!(
        out,
        "  inspect it: portcullis audit verify --jwks {}/audit-key.jwks.json {}",
        audit_dir.display(),
        audit_dir.display()
    );
    let surprises = steps.iter().filter(|s| !s.as_expected()).count();
    if surprises > 0 {
        return Err(format!(
            "{surprises} step(s) did not go as the scenario expects (marked !)"
        ));
    }
    Ok(steps)
}
