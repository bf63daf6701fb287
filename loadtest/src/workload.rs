//! The agent-fleet workload: many distinct envelopes (delegators' agents, tasks,
//! sessions, sub-agents at various delegation depths), and a mix of tool calls: allowed
//! ones, ones denied for each reason, invalid envelopes, over plain HTTP and over MCP,
//! with request bodies of realistic size. Each request is prepared once as raw HTTP/1.1
//! bytes; the generator hands them to the socket without copying.

use bytes::Bytes;
use portcullis::envelope::mint::{MintOptions, claims_from_file};
use portcullis::envelope::{SigningKey, jws};
use serde_json::{Value, json};

/// What a request is expected to get; reported beside what it did get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Allow,
    Deny(&'static str),
}

#[derive(Debug, Clone)]
pub struct Template {
    pub bytes: Bytes,
    pub expect: Expect,
}

/// Shares of the mix, in percent of requests (the rest is allowed calls).
#[derive(Debug, Clone)]
pub struct Mix {
    pub denied_pct: u32,
    pub invalid_pct: u32,
    pub mcp_pct: u32,
    pub delegated_pct: u32,
    pub envelopes: usize,
    pub body_bytes: usize,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            denied_pct: 15,
            invalid_pct: 2,
            mcp_pct: 20,
            delegated_pct: 20,
            envelopes: 500,
            body_bytes: 512,
        }
    }
}

const SEED: &str = include_str!("../../policies/envelopes/renewal-review.json");

/// A delegating human of the example entities, with the account they review.
struct Persona {
    delegator: &'static str,
    tenant: &'static str,
    customer: &'static str,
    contract: Option<&'static str>,
}

/// Maya and Omar (tenant Acme) and Raj (tenant Globex), each the CSM of their customer.
const PERSONAS: [Persona; 3] = [
    Persona {
        delegator: "user_7f3a91",
        tenant: "tenant_acme",
        customer: "cust_acme_1042",
        contract: Some("contract_7781"),
    },
    Persona {
        delegator: "user_2b9c44",
        tenant: "tenant_globex",
        customer: "cust_globex_2001",
        contract: Some("contract_5555"),
    },
    Persona {
        delegator: "user_0cc0a2",
        tenant: "tenant_acme",
        customer: "cust_acme_1077",
        contract: None,
    },
];

/// Puts `p`'s identity and account into the seed's claims.
fn as_persona(v: &mut Value, p: &Persona) {
    v["delegator_id"] = p.delegator.into();
    v["tenant_id"] = p.tenant.into();
    v["resource_constraints"]["customer_id"] = p.customer.into();
    v["resource_constraints"]["contract_ids"] = json!(p.contract.into_iter().collect::<Vec<_>>());
    if p.contract.is_none() {
        v["allowed_tools"] = json!(["crm.read", "tickets.create"]);
        v["resource_constraints"]["data_classes"] = json!(["support_summary"]);
    }
}

fn mint(key: &SigningKey, n: usize, edit: impl Fn(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(SEED).unwrap_or_default();
    v["agent_id"] = format!("fleet-agent-{n}").into();
    v["agent_kind"] = "renewal_reviewer".into();
    v["session_id"] = format!("sess_{}", n / 10).into();
    v["task_id"] = format!("task_{n}").into();
    edit(&mut v);
    let m = v.as_object().cloned().unwrap_or_default();
    let now = portcullis::clock::now_unix();
    let claims = claims_from_file(
        m,
        &MintOptions {
            now,
            ttl_secs: Some(6 * 3600),
            ..Default::default()
        },
    )
    .expect("the seed envelope is valid claims");
    jws::sign(&claims, key)
}

fn tool_call(host: &str, token: &str, tool: &str, args: &Value) -> Bytes {
    let body = args.to_string();
    format!(
        "POST /v1/tools/{tool} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into()
}

fn mcp_call(host: &str, token: &str, tool: &str, args: &Value) -> Bytes {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string();
    format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: {tool}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into()
}

/// Requests for the gateway, signed with `key` (which the gateway must trust).
pub fn gateway_templates(key: &SigningKey, host: &str, mix: &Mix) -> Vec<Template> {
    let pad = "n".repeat(mix.body_bytes.saturating_sub(60));
    let n = mix.envelopes.max(1);
    // Distinct envelopes: root agents, and sub-agents one or two delegations deep.
    let depth_of = |i: usize| {
        if (i * 100 / n) < mix.delegated_pct as usize {
            1 + i % 2
        } else {
            0
        }
    };
    // Root agents act for the three personas in turn; sub-agents for those with a contract.
    let persona_of = |i: usize| {
        if depth_of(i) > 0 {
            &PERSONAS[i % 2]
        } else {
            &PERSONAS[i % 3]
        }
    };
    let tokens: Vec<String> = (0..n)
        .map(|i| {
            let depth = depth_of(i);
            let p = persona_of(i);
            mint(key, i, |v| {
                as_persona(v, p);
                if depth > 0 {
                    // A clause classifier delegated from a renewal reviewer: the
                    // downscoped envelope `/v1/delegate` would give it.
                    v["delegation_chain"] = json!(
                        (0..depth)
                            .map(|d| format!("parent-{i}-{d}"))
                            .collect::<Vec<_>>()
                    );
                    v["delegation_depth"] = json!(depth);
                    v["agent_kind"] = "clause_classifier".into();
                    v["purpose"] = "classify_contract_clauses".into();
                    v["allowed_tools"] = json!(["contracts.read", "contracts.classify_clauses"]);
                    v["resource_constraints"] = json!({
                        "contract_ids": [p.contract],
                        "max_records": 5,
                        "data_classes": ["contract_metadata", "renewal_terms"],
                    });
                }
            })
        })
        .collect();
    let drifter = mint(key, n, |v| {
        if let Some(a) = v["allowed_tools"].as_array_mut() {
            a.push("payments.history".into());
        }
        if let Some(a) = v["resource_constraints"]["data_classes"].as_array_mut() {
            a.push("payment_history".into());
        }
    });
    let drafter = mint(key, n + 1, |v| v["agent_kind"] = "email_drafter".into());
    // A renewal reviewer that overreaches (whatever share of the fleet is delegated).
    let root = mint(key, n + 2, |_| {});
    let expired = {
        let mut v: Value = serde_json::from_str(SEED).unwrap_or_default();
        v["agent_id"] = "stale".into();
        v["agent_kind"] = "renewal_reviewer".into();
        let m = v.as_object().cloned().unwrap_or_default();
        let now = portcullis::clock::now_unix() - 7200;
        let c = claims_from_file(
            m,
            &MintOptions {
                now,
                ttl_secs: Some(60),
                ..Default::default()
            },
        )
        .expect("valid claims");
        jws::sign(&c, key)
    };
    let contract = json!({"contract_id": "contract_7781", "note": pad});
    // The mix in percent, over blocks of 100 templates: as many blocks as it takes for
    // the allowed calls to use every one of the `n` envelopes.
    let denied = mix.denied_pct.min(100) as usize;
    let invalid = mix.invalid_pct.min(100 - denied as u32) as usize;
    let allowed = 100 - denied - invalid;
    let blocks = if allowed == 0 { 1 } else { n.div_ceil(allowed) };
    let (denied, invalid, allowed) = (denied * blocks, invalid * blocks, allowed * blocks);
    let mut out = Vec::with_capacity(100 * blocks);
    // Exactly `mcp_pct` of every 100 allowed calls: call k is the one where the running
    // share k * pct / 100 steps up.
    let mcp_pct = mix.mcp_pct.min(100) as usize;
    let over_mcp_at = |k: usize| k * mcp_pct / 100 != (k + 1) * mcp_pct / 100;
    for k in 0..allowed {
        let e = k % n;
        let p = persona_of(e);
        let contract = json!({"contract_id": p.contract, "note": pad});
        let crm = json!({"customer_id": p.customer, "limit": 10, "note": pad});
        let ticket = json!({"customer_id": p.customer, "subject": "Renewal risk", "body": pad});
        let (tool, args, over_mcp) = if depth_of(e) > 0 {
            // Sub-agents classify clauses with the MCP upstream's tool, and read.
            match k % 2 {
                0 => (
                    "contracts.classify_clauses",
                    json!({"contract_id": p.contract}),
                    true,
                ),
                _ => ("contracts.read", contract, over_mcp_at(k)),
            }
        } else {
            let tool = match (k % 3, p.contract) {
                (0, Some(_)) => ("contracts.read", contract),
                (0 | 1, _) => ("crm.read", crm),
                _ => ("tickets.create", ticket),
            };
            (tool.0, tool.1, over_mcp_at(k))
        };
        let token = &tokens[e];
        let bytes = if over_mcp {
            mcp_call(host, token, tool, &args)
        } else {
            tool_call(host, token, tool, &args)
        };
        out.push(Template {
            bytes,
            expect: Expect::Allow,
        });
    }
    let mut denials: Vec<(&str, &str, Value, &'static str)> = vec![
        (
            &root,
            "billing.update",
            json!({"customer_id": "cust_acme_1042"}),
            "tool_not_in_envelope",
        ),
        (
            &root,
            "crm.read",
            json!({"customer_id": "cust_globex_2001"}),
            "resource_out_of_scope",
        ),
        (
            &root,
            "crm.read",
            json!({"customer_id": "cust_acme_1042", "limit": 200}),
            "record_limit",
        ),
        (
            &drifter,
            "payments.history",
            json!({"customer_id": "cust_acme_1042"}),
            "drift",
        ),
        (
            &drafter,
            "contracts.read",
            json!({"contract_id": "contract_7781"}),
            "policy_denied",
        ),
    ];
    // A sub-agent tries the CRM, outside its downscoped envelope.
    if let Some(sub) = (0..n).find(|i| depth_of(*i) > 0) {
        denials.push((
            &tokens[sub],
            "crm.read",
            json!({"customer_id": "cust_acme_1042"}),
            "tool_not_in_envelope",
        ));
    }
    for k in 0..denied {
        let (token, tool, args, reason) = &denials[k % denials.len()];
        out.push(Template {
            bytes: tool_call(host, token, tool, args),
            expect: Expect::Deny(reason),
        });
    }
    for k in 0..invalid {
        let (token, reason) = if k % 2 == 0 {
            (expired.as_str(), "expired")
        } else {
            ("not.a.token", "invalid_envelope")
        };
        out.push(Template {
            bytes: tool_call(host, token, "contracts.read", &contract),
            expect: Expect::Deny(reason),
        });
    }
    out
}

/// Allowed calls only, the same work on every path: through the gateway (tool calls with
/// an envelope) ...
pub fn gateway_allowed(key: &SigningKey, host: &str, envelopes: usize) -> Vec<Template> {
    (0..envelopes.max(1))
        .map(|i| {
            let token = mint(key, i, |_| {});
            Template {
                bytes: tool_call(
                    host,
                    &token,
                    "contracts.read",
                    &json!({"contract_id": "contract_7781"}),
                ),
                expect: Expect::Allow,
            }
        })
        .collect()
}

/// ... and straight to the backend's route, with the credential the gateway would inject
/// (directly, or through another proxy that forwards it).
pub fn direct_allowed(host: &str, credential: &str) -> Vec<Template> {
    let bytes = format!(
        "GET /contracts/contract_7781 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {credential}\r\nAccept: application/json\r\n\r\n"
    )
    .into_bytes()
    .into();
    vec![Template {
        bytes,
        expect: Expect::Allow,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_every_kind() {
        let key = SigningKey::generate(None).unwrap();
        let t = gateway_templates(
            &key,
            "gw",
            &Mix {
                envelopes: 20,
                ..Mix::default()
            },
        );
        assert_eq!(t.len(), 100);
        let allowed = t.iter().filter(|x| x.expect == Expect::Allow).count();
        assert_eq!(allowed, 83);
        for reason in [
            "tool_not_in_envelope",
            "resource_out_of_scope",
            "record_limit",
            "drift",
            "policy_denied",
            "expired",
            "invalid_envelope",
        ] {
            assert!(
                t.iter().any(|x| x.expect == Expect::Deny(reason)),
                "{reason}"
            );
        }
        assert!(t.iter().any(|x| x.bytes.starts_with(b"POST /mcp")));
        let distinct: std::collections::HashSet<&[u8]> = t.iter().map(|x| &x.bytes[..]).collect();
        assert!(distinct.len() > 50);
        // The envelopes of allowed calls come from several delegators, tenants and depths.
        let mut seen = std::collections::BTreeSet::new();
        for x in t.iter().filter(|x| x.expect == Expect::Allow) {
            let text = String::from_utf8_lossy(&x.bytes);
            let token = text
                .split("Bearer ")
                .nth(1)
                .and_then(|r| r.split("\r\n").next())
                .unwrap();
            let c = jws::decode(token).unwrap().payload;
            seen.insert((
                c["delegator_id"].as_str().unwrap().to_owned(),
                c["tenant_id"].as_str().unwrap().to_owned(),
                c["delegation_depth"].as_u64().unwrap_or(0),
            ));
        }
        let count = |f: &dyn Fn(&(String, String, u64)) -> String| {
            seen.iter()
                .map(f)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        assert_eq!(count(&|s| s.0.clone()), 3, "{seen:?}");
        assert_eq!(count(&|s| s.1.clone()), 2, "{seen:?}");
        assert_eq!(count(&|s| s.2.to_string()), 3, "{seen:?}");
    }
}
