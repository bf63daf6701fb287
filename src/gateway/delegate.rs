//! `POST /v1/delegate`: a sub-agent's envelope, minted by the gateway from the caller's
//! envelope and never broader than it. The request names what the sub-agent needs; every
//! field must be a subset of the parent's (tools, resource ids, data classes, record limit,
//! purpose profile, expiry) and the chain grows by one. Anything wider is refused with
//! `delegation_widening`, naming the field.

use super::audit_hook::Subject;
use super::service::{Gateway, write_json_error};
use crate::audit::record::no_policies;
use crate::clock;
use crate::envelope::{Claims, IdScope, ResourceConstraints, jws};
use crate::pipeline::deny::Denial;
use crate::server::{ConnIo, Disposition, Request};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Longest sub-agent lifetime when the request names none.
const DEFAULT_TTL_SECS: i64 = 15 * 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegateRequest {
    agent_id: String,
    agent_kind: String,
    #[serde(default)]
    allowed_tools: Option<Vec<String>>,
    #[serde(default)]
    resource_constraints: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    task_id: Option<String>,
    /// Lifetime, e.g. "10m"; capped by the parent's expiry.
    #[serde(default)]
    ttl: Option<String>,
}

fn widening(field: &str, detail: impl Into<String>) -> (u16, &'static str, String) {
    (
        403,
        "delegation_widening",
        format!("{field}: {}", detail.into()),
    )
}

/// Builds the child's claims, or the refusal (status, reason, message).
fn child_claims(
    gw: &Gateway,
    parent: &Claims,
    body: &[u8],
    now: i64,
) -> Result<Claims, (u16, &'static str, String)> {
    let req: DelegateRequest = serde_json::from_slice(body)
        .map_err(|e| (400, "invalid_arguments", format!("delegation request: {e}")))?;
    if req.agent_id.is_empty() || req.agent_kind.is_empty() {
        return Err((
            400,
            "invalid_arguments",
            "agent_id and agent_kind must not be empty".into(),
        ));
    }
    let depth = parent.delegation_depth + 1;
    if depth > gw.shared.max_delegation_depth {
        return Err((
            403,
            "delegation_depth",
            format!(
                "a sub-agent would be at depth {depth}; the limit is {}",
                gw.shared.max_delegation_depth
            ),
        ));
    }
    let tools = match req.allowed_tools {
        None => parent.allowed_tools.clone(),
        Some(t) => {
            if let Some(extra) = t.iter().find(|x| !parent.allowed_tools.contains(x)) {
                return Err(widening(
                    "allowed_tools",
                    format!("`{extra}` is not in the parent envelope"),
                ));
            }
            t
        }
    };
    let parent_rc = &parent.resource_constraints;
    let rc = match req.resource_constraints {
        None => parent_rc.clone(),
        Some(m) => {
            let mut child = ResourceConstraints {
                max_records: parent_rc.max_records,
                data_classes: parent_rc.data_classes.clone(),
                ids: BTreeMap::new(),
            };
            for (k, v) in &m {
                match k.as_str() {
                    "max_records" => {
                        let n = v.as_u64().ok_or_else(|| {
                            (
                                400,
                                "invalid_arguments",
                                "max_records must be a non-negative integer".to_string(),
                            )
                        })?;
                        if n > parent_rc.max_records {
                            return Err(widening(
                                "max_records",
                                format!("{n} > parent's {}", parent_rc.max_records),
                            ));
                        }
                        child.max_records = n;
                    }
                    "data_classes" => {
                        let classes: Vec<String> =
                            serde_json::from_value(v.clone()).map_err(|_| {
                                (
                                    400,
                                    "invalid_arguments",
                                    "data_classes must be an array of strings".to_string(),
                                )
                            })?;
                        if let Some(c) =
                            classes.iter().find(|c| !parent_rc.data_classes.contains(c))
                        {
                            return Err(widening(
                                "data_classes",
                                format!("`{c}` is not granted to the parent"),
                            ));
                        }
                        child.data_classes = classes;
                    }
                    key => {
                        let Some(parent_scope) = parent_rc.scope(key) else {
                            return Err(widening(
                                &format!("resource_constraints.{key}"),
                                "the parent envelope grants no such resource",
                            ));
                        };
                        let scope = match v {
                            serde_json::Value::String(s) => IdScope::One(s.clone()),
                            _ => IdScope::Many(serde_json::from_value(v.clone()).map_err(|_| {
                                (400, "invalid_arguments", format!("resource_constraints.{key} must be an id or an array of ids"))
                            })?),
                        };
                        if let Some(id) = scope
                            .as_slice()
                            .iter()
                            .find(|id| !parent_scope.contains(id))
                        {
                            return Err(widening(
                                &format!("resource_constraints.{key}"),
                                format!("`{id}` is outside the parent's scope"),
                            ));
                        }
                        child.ids.insert(key.to_owned(), scope);
                    }
                }
            }
            // Dimensions the request does not mention are inherited, never dropped:
            // dropping one would not widen (an absent constraint grants nothing) but the
            // sub-agent would lose access it was meant to keep.
            for (k, v) in &parent_rc.ids {
                child.ids.entry(k.clone()).or_insert_with(|| v.clone());
            }
            child
        }
    };
    let purpose = match req.purpose {
        None => parent.purpose.clone(),
        Some(p) if p == parent.purpose => p,
        Some(p) => {
            let active = gw.shared.active.load();
            let (Some(child), Some(par)) = (
                active.bundle.purpose(&p),
                active.bundle.purpose(&parent.purpose),
            ) else {
                return Err(widening(
                    "purpose",
                    format!(
                        "`{p}` is not a purpose the policy bundle knows, or the parent's is not"
                    ),
                ));
            };
            let narrower = child.tools.iter().all(|t| par.tools.contains(t))
                && child
                    .data_classes
                    .iter()
                    .all(|c| par.data_classes.contains(c));
            if !narrower {
                return Err(widening(
                    "purpose",
                    format!(
                        "`{p}` admits tools or data classes that `{}` does not",
                        parent.purpose
                    ),
                ));
            }
            p
        }
    };
    let ttl = match &req.ttl {
        Some(t) => clock::parse_duration(t)
            .map_err(|e| (400, "invalid_arguments", format!("ttl: {e}")))?
            .as_secs() as i64,
        None => DEFAULT_TTL_SECS,
    };
    let exp = (now + ttl).min(parent.exp);
    if exp <= now {
        return Err((401, "expired", "the parent envelope has expired".into()));
    }
    let mut chain = parent.delegation_chain.clone();
    chain.push(parent.jti.clone());
    Ok(Claims {
        iss: gw.shared.delegation_key.kid.clone(),
        aud: parent.aud.clone(),
        iat: now,
        nbf: None,
        exp,
        jti: crate::envelope::mint::random_id(),
        delegator_id: parent.delegator_id.clone(),
        tenant_id: parent.tenant_id.clone(),
        session_id: parent.session_id.clone(),
        task_id: req.task_id.unwrap_or_else(|| parent.task_id.clone()),
        purpose,
        allowed_tools: tools,
        resource_constraints: rc,
        expires_at: clock::format_rfc3339(exp),
        agent_id: req.agent_id,
        agent_kind: req.agent_kind,
        delegation_chain: chain,
        delegation_depth: depth,
        audit_memo: Default::default(),
    })
}

pub fn handle(gw: &Gateway, req: Request<'_>, io: &mut ConnIo) -> Disposition {
    let started = std::time::Instant::now();
    let id = gw.next_id();
    let now = clock::now_unix();
    let active = gw.shared.active.load();
    let mut note = std::mem::take(&mut io.note);
    let subject = |claims, resource| Subject {
        claims,
        tool: "delegate",
        resource,
        data_classes: &[],
        record_count: 0,
        via: "delegate",
    };
    let parent = match gw.authenticate(&req, now) {
        Ok(c) => c,
        Err((d, known)) => {
            gw.audit_decision(
                &mut note,
                &id,
                false,
                d.reason(),
                &subject(known.as_deref(), ""),
                &active,
                &no_policies,
            );
            gw.audit_commit(&note, started, 0, false);
            io.note = note;
            return super::service::deny_http(io, &d, &id);
        }
    };
    // Fail closed: no envelope is minted that the trail could not record.
    let child = if gw.audit_has_room() {
        child_claims(gw, &parent, req.body, now)
    } else {
        let d = Denial::AuditUnavailable;
        Err((d.status(), d.reason(), d.message()))
    };
    let allowed = child.is_ok();
    match child {
        Ok(child) => {
            let token = jws::sign(&child, &gw.shared.delegation_key);
            gw.audit_decision(
                &mut note,
                &id,
                true,
                "allow",
                &subject(Some(&parent), &child.agent_id),
                &active,
                &no_policies,
            );
            let body =
                serde_json::json!({"envelope": token, "claims": child, "decision_id": id.as_str()});
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            crate::http::write::full_response(
                &mut io.wbuf,
                200,
                "application/json",
                &[("X-Portcullis-Decision-Id", id.as_str().as_bytes())],
                &bytes,
                false,
            );
        }
        Err((status, reason, msg)) => {
            gw.audit_decision(
                &mut note,
                &id,
                false,
                reason,
                &subject(Some(&parent), ""),
                &active,
                &no_policies,
            );
            write_json_error(io, status, reason, &msg, Some(&id));
        }
    }
    gw.audit_commit(&note, started, 0, allowed);
    io.note = note;
    Disposition::KeepAlive
}
