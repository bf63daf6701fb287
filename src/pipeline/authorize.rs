//! The per-call decision, in DESIGN.md's order: envelope scope (tool, resource ids, data
//! classes, record count), then the purpose profile, then the compiled policy. Any layer
//! can say no; the first that does names the reason. Sans-IO and allocation-free on the
//! allow path: facts borrow from the envelope and the parsed arguments.

use super::args::Args;
use super::deny::Denial;
use crate::decision::{Bundle, Context, CtxValue, EntityUid, Request, Scratch, ToolSpec};
use crate::envelope::Claims;

/// What the call touches, as established from its arguments.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub resource_id: &'a str,
    pub record_count: u64,
}

/// What the call asks for, as far as its arguments can be read: the resource id and the
/// record count. For the audit line of a denied call, which must say what was attempted
/// (the customer outside the envelope, the record count over the limit) even when the
/// scope check refuses it. `("", 0)` for what cannot be read.
pub fn attempted<'a>(tool: &ToolSpec, args: &Args<'a, '_>) -> (&'a str, u64) {
    let resource = args.str(&tool.resource.arg).ok().flatten().unwrap_or("");
    let count = match &tool.record_count_arg {
        Some(arg) => args.count(arg).unwrap_or(Some(0)).unwrap_or(1),
        None => 1,
    };
    (resource, count)
}

/// Checks the envelope's scope and the purpose profile; returns the call's facts.
pub fn check_scope<'a>(
    bundle: &Bundle,
    claims: &Claims,
    tool: &ToolSpec,
    args: &Args<'a, '_>,
) -> Result<Facts<'a>, Denial> {
    let bad = |e: super::args::ArgsError| Denial::BadArguments(e.to_string());
    if !claims.allowed_tools.iter().any(|t| t == &tool.name) {
        return Err(Denial::ToolNotInEnvelope {
            tool: tool.name.clone(),
        });
    }
    let resource_id = args.str(&tool.resource.arg).map_err(bad)?.ok_or_else(|| {
        Denial::BadArguments(format!(
            "argument `{}` (the {} this tool acts on) is required",
            tool.resource.arg, tool.resource.entity_type
        ))
    })?;
    let rc = &claims.resource_constraints;
    for s in &tool.scope {
        let Some(value) = args.str(&s.arg).map_err(bad)? else {
            continue;
        };
        if !rc.scope(&s.constraint).is_some_and(|c| c.contains(value)) {
            return Err(Denial::ResourceOutOfScope {
                arg: s.arg.clone(),
                value: value.to_owned(),
                constraint: s.constraint.clone(),
            });
        }
    }
    for class in &tool.data_classes {
        if !rc.data_classes.iter().any(|c| c == class) {
            return Err(Denial::DataClassOutOfScope {
                class: class.clone(),
            });
        }
    }
    let record_count = match &tool.record_count_arg {
        Some(arg) => args.count(arg).map_err(bad)?.unwrap_or(1),
        None => 1,
    };
    if record_count > rc.max_records {
        return Err(Denial::RecordLimit {
            requested: record_count,
            max: rc.max_records,
        });
    }
    let Some(profile) = bundle.purpose(&claims.purpose) else {
        return Err(Denial::Drift {
            purpose: claims.purpose.clone(),
            what: "anything: the purpose is not known to the policy bundle".into(),
        });
    };
    if !profile.tools.iter().any(|t| t == &tool.name) {
        return Err(Denial::Drift {
            purpose: claims.purpose.clone(),
            what: format!("tool `{}`", tool.name),
        });
    }
    for class in &tool.data_classes {
        if !profile.data_classes.iter().any(|c| c == class) {
            return Err(Denial::Drift {
                purpose: claims.purpose.clone(),
                what: format!("data class `{class}`"),
            });
        }
    }
    Ok(Facts {
        resource_id,
        record_count,
    })
}

/// Evaluates the compiled policy for the call. The context carries what DESIGN.md lists:
/// tenant, purpose, task, session, the tool's data classes, record count, agent id, kind
/// and delegation depth, and the time.
pub fn decide(
    bundle: &Bundle,
    scratch: &mut Scratch,
    claims: &Claims,
    tool: &ToolSpec,
    facts: &Facts<'_>,
    now: i64,
) -> bool {
    let attrs = [
        ("tenant_id", CtxValue::Str(&claims.tenant_id)),
        ("purpose", CtxValue::Str(&claims.purpose)),
        ("task_id", CtxValue::Str(&claims.task_id)),
        ("session_id", CtxValue::Str(&claims.session_id)),
        ("data_classes", CtxValue::StrSet(&tool.data_classes)),
        ("record_count", CtxValue::Long(facts.record_count as i64)),
        ("agent_id", CtxValue::Str(&claims.agent_id)),
        ("agent_kind", CtxValue::Str(&claims.agent_kind)),
        (
            "delegation_depth",
            CtxValue::Long(i64::from(claims.delegation_depth)),
        ),
        ("now", CtxValue::Long(now)),
    ];
    let context = Context::new(&attrs);
    let req = Request {
        principal: EntityUid {
            ty: bundle.principal_type(),
            id: &claims.delegator_id,
        },
        action: EntityUid {
            ty: "Action",
            id: &tool.name,
        },
        resource: EntityUid {
            ty: &tool.resource.entity_type,
            id: facts.resource_id,
        },
        context: &context,
    };
    bundle.decide(&req, scratch).allow
}

/// Visits the ids of the policies that determined the last decision made with `scratch`.
pub fn determining(bundle: &Bundle, scratch: &Scratch, f: &mut dyn FnMut(&str)) {
    for p in scratch.determining() {
        f(bundle.policy_id(*p));
    }
}
