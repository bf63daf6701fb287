//! One audit line per decision: who (delegator, agent and its chain), for whom (tenant),
//! in which workflow (session, task, purpose), what (tool, resource, data classes, record
//! count), the outcome and its reason, which policy version decided and which policies
//! determined it, and how long it took. Encoded by hand into a reused buffer: the hot
//! path pays for a few `memcpy`s, not for a serializer. The chain fields (`seq`, `prev`,
//! `hash`) are added by the writer thread, which owns the chain.
//!
//! Nothing secret goes in: no credential, no envelope, no signature.

use crate::envelope::Claims;
use crate::http::write::{json_str, push_u64};

/// `,"name":` as one literal, so a field's key is one copy (three, built at run time, were
/// an eighth of a record's cost). Field names are this module's own identifiers, never
/// escaped.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

/// Visits the ids of the policies that determined a decision.
pub type PolicyVisitor<'a> = &'a dyn Fn(&mut dyn FnMut(&str));

/// No determining policies (the decision was made before the policy was consulted).
pub fn no_policies(_: &mut dyn FnMut(&str)) {}

/// The facts of one decision, borrowed from the call.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    /// Unix time in microseconds.
    pub time_us: u64,
    pub decision_id: &'a str,
    pub allowed: bool,
    pub reason: &'a str,
    /// Who and for whom: `encode_who`'s output for the call's envelope (or `NO_WHO`).
    pub who: &'a [u8],
    pub tool: &'a str,
    pub resource: &'a str,
    pub data_classes: &'a [String],
    pub record_count: u64,
    /// `encode_policy_version`'s output for the bundle that decided.
    pub policy_version: &'a [u8],
    pub policies: PolicyVisitor<'a>,
    /// `http`, `mcp` or `delegate`.
    pub via: &'a str,
}

/// The envelope's part of a record. Every call an agent makes with one envelope carries
/// the same nine fields, so they are encoded once per envelope (the gateway keeps them
/// with the verified claims) and each record copies them in one piece: encoding them
/// per call was a third of the hot path's audit cost.
pub struct Who<'a> {
    pub delegator: &'a str,
    pub tenant: &'a str,
    pub session: &'a str,
    pub task: &'a str,
    pub purpose: &'a str,
    pub agent_id: &'a str,
    pub agent_kind: &'a str,
    pub envelope_id: &'a str,
    pub delegation_chain: &'a [String],
}

/// `Who` for a call with no valid envelope: every field empty.
pub const NO_WHO: &[u8] = br#","delegator":"","tenant":"","session":"","task":"","purpose":"","agent_id":"","agent_kind":"","envelope_id":"","delegation_chain":[]"#;

/// Appends the envelope's fields, each preceded by a comma, in record order.
pub fn encode_who(out: &mut Vec<u8>, w: &Who<'_>) {
    field(out, key!("delegator"), w.delegator);
    field(out, key!("tenant"), w.tenant);
    field(out, key!("session"), w.session);
    field(out, key!("task"), w.task);
    field(out, key!("purpose"), w.purpose);
    field(out, key!("agent_id"), w.agent_id);
    field(out, key!("agent_kind"), w.agent_kind);
    field(out, key!("envelope_id"), w.envelope_id);
    list(out, key!("delegation_chain"), w.delegation_chain);
}

/// The envelope's fields of `c`, encoded on the first call that needs them and kept with
/// the claims (which the envelope cache shares between an agent's calls).
pub fn claims_who(c: &Claims) -> &[u8] {
    c.audit_memo.get_or_init(|| {
        let mut out = Vec::with_capacity(256);
        encode_who(
            &mut out,
            &Who {
                delegator: &c.delegator_id,
                tenant: &c.tenant_id,
                session: &c.session_id,
                task: &c.task_id,
                purpose: &c.purpose,
                agent_id: &c.agent_id,
                agent_kind: &c.agent_kind,
                envelope_id: &c.jti,
                delegation_chain: &c.delegation_chain,
            },
        );
        out.into_boxed_slice()
    })
}

/// Appends the bundle's version and digest fields; encoded once per loaded bundle.
pub fn encode_policy_version(out: &mut Vec<u8>, version: &str, digest: &str) {
    field(out, key!("bundle_version"), version);
    field(out, key!("bundle_digest"), digest);
}

fn field(out: &mut Vec<u8>, key: &str, v: &str) {
    out.extend_from_slice(key.as_bytes());
    json_str(out, v);
}

fn num(out: &mut Vec<u8>, key: &str, v: u64) {
    out.extend_from_slice(key.as_bytes());
    push_u64(out, v);
}

fn list<S: AsRef<str>>(out: &mut Vec<u8>, key: &str, v: &[S]) {
    out.extend_from_slice(key.as_bytes());
    out.push(b'[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, s.as_ref());
    }
    out.push(b']');
}

/// Appends the decision part of a record: a JSON object body without its closing brace.
/// The outcome (`encode_outcome`) follows once the upstream has answered; the writer adds
/// the chain fields and closes the object. Split so a denied call can encode what it
/// decided at once; an allowed call encodes both parts after the upstream has answered
/// (`gateway::audit_hook::Held`), off the path the agent waits on.
pub fn encode(out: &mut Vec<u8>, r: &Record<'_>) {
    out.extend_from_slice(b"{\"time\":\"");
    crate::clock::push_rfc3339_micros(out, r.time_us);
    out.push(b'"');
    field(out, key!("decision_id"), r.decision_id);
    field(
        out,
        key!("decision"),
        if r.allowed { "allow" } else { "deny" },
    );
    field(out, key!("reason"), r.reason);
    out.extend_from_slice(r.who);
    field(out, key!("tool"), r.tool);
    field(out, key!("resource"), r.resource);
    list(out, key!("data_classes"), r.data_classes);
    num(out, key!("record_count"), r.record_count);
    out.extend_from_slice(r.policy_version);
    out.extend_from_slice(b",\"policies\":[");
    let mut first = true;
    (r.policies)(&mut |id: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        json_str(out, id);
    });
    out.push(b']');
    field(out, key!("via"), r.via);
}

/// Appends the outcome: end-to-end latency and the upstream's status (0 when no upstream
/// was called).
pub fn encode_outcome(out: &mut Vec<u8>, latency_us: u64, upstream_status: u16) {
    num(out, key!("latency_us"), latency_us);
    num(out, key!("upstream_status"), u64::from(upstream_status));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_valid_json_with_every_field() {
        let chain = vec!["parent-jti".to_string()];
        let classes = vec!["contract_metadata".to_string()];
        let mut who = Vec::new();
        encode_who(
            &mut who,
            &Who {
                delegator: "user_7f3a91",
                tenant: "tenant_acme",
                session: "s",
                task: "t\"quoted\"",
                purpose: "p",
                agent_id: "a",
                agent_kind: "k",
                envelope_id: "j",
                delegation_chain: &chain,
            },
        );
        let mut version = Vec::new();
        encode_policy_version(&mut version, "v1", "abc");
        let r = Record {
            time_us: 1_778_610_600_123_456,
            decision_id: "d-1",
            allowed: false,
            reason: "policy_denied",
            who: &who,
            tool: "billing.update",
            resource: "cust_acme_1042",
            data_classes: &classes,
            record_count: 1,
            policy_version: &version,
            policies: &|f| f("forbid-billing"),
            via: "http",
        };
        let mut out = Vec::new();
        encode(&mut out, &r);
        encode_outcome(&mut out, 12, 0);
        out.push(b'}');
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], "2026-05-12T18:30:00.123456Z");
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["task"], "t\"quoted\"");
        assert_eq!(v["delegation_chain"][0], "parent-jti");
        assert_eq!(v["policies"][0], "forbid-billing");
        assert_eq!(v.as_object().unwrap().len(), 23);
        assert_eq!(v["tenant"], "tenant_acme");
        assert_eq!(v["bundle_digest"], "abc");
    }

    #[test]
    fn no_who_is_the_encoding_of_empty_fields() {
        let mut out = Vec::new();
        encode_who(
            &mut out,
            &Who {
                delegator: "",
                tenant: "",
                session: "",
                task: "",
                purpose: "",
                agent_id: "",
                agent_kind: "",
                envelope_id: "",
                delegation_chain: &[],
            },
        );
        assert_eq!(out, NO_WHO);
    }
}
