//! `/mcp`: the agent-facing MCP endpoint over Streamable HTTP. The gateway is the MCP
//! server the agent sees; behind it, each tool is served by an upstream MCP server (the
//! call is forwarded and its JSON or SSE answer streamed back) or by a plain HTTP API (the
//! answer is wrapped into a `CallToolResult`).
//!
//! Both protocol styles are served: the session-based revisions (`initialize` answered
//! with an `Mcp-Session-Id`, bound to the envelope that opened it) and self-contained
//! requests that carry no session. Every request carries the agent's envelope;
//! `tools/list` shows only what that envelope may call and `tools/call` is decided per
//! call exactly as `POST /v1/tools/{tool}` is.

use super::audit_hook::{Held, HeldSubject, Subject};
use super::service::Gateway;
use super::state::Active;
use super::upstream_mcp::write_post;
use crate::clock;
use crate::decision::ToolKind;
use crate::http::head::Method;
use crate::http::write::{full_response, json_str};
use crate::mcp::rpc::{self, Message, RpcId};
use crate::mcp::version;
use crate::pipeline::authorize::{attempted, check_scope, decide, determining};
use crate::pipeline::deny::{DecisionId, Denial};
use crate::proxy::exchange::{Sink, exchange};
use crate::proxy::request::{Target, write_request};
use crate::proxy::scrub::Scrubber;
use crate::server::{ConnIo, Disposition, Request};
use serde_json::{Value, json};
use std::sync::Arc;

/// What a POSTed message asks for, decided synchronously while the body is parsed.
enum Plan {
    Accepted,
    /// A 2026-07-28 request naming a protocol revision this gateway does not speak.
    Unsupported {
        id: RpcId,
        version: String,
    },
    Discover {
        id: RpcId,
    },
    Error {
        status: u16,
        id: Option<RpcId>,
        code: i64,
        message: String,
    },
    Initialize {
        id: RpcId,
        version: &'static str,
    },
    Ping {
        id: RpcId,
    },
    ToolsList {
        id: RpcId,
    },
    Denied {
        id: RpcId,
        denial: Denial,
    },
    /// Forward to an upstream MCP server; the agent's body goes as it is.
    CallMcp {
        id: RpcId,
        tool: String,
    },
    /// Call a plain HTTP tool; `io.upreq` holds the upstream request.
    CallHttp {
        id: RpcId,
        tool: String,
    },
}

const INSTRUCTIONS: &str = "Tool calls are authorised one by one against your identity envelope, its declared purpose and the policy; refusals carry a reason and a decision id.";

fn server_info() -> Value {
    json!({"name": "portcullis", "title": "Portcullis gateway", "version": env!("CARGO_PKG_VERSION")})
}

/// SEP-2243: from 2026-07-28 a request carries `Mcp-Method` (and `Mcp-Name` for
/// `tools/call`) and they must agree with the body, so that intermediaries routing on
/// headers see what the server executes.
fn check_standard_headers(
    message: &Message<'_>,
    m: &crate::pipeline::args::Args<'_, '_>,
    method_hdr: Option<&str>,
    name_hdr: Option<&str>,
) -> Option<Plan> {
    let (id, method) = match message {
        Message::Request { id, method } => (Some(id.clone()), *method),
        // 2026-07-28 defines no header requirements for notification POSTs: accept one
        // without `Mcp-Method`, but one that names a different method is still refused.
        Message::Notification { method } if method_hdr.is_some() => (None, *method),
        _ => return None,
    };
    let mismatch = |why: String| Plan::Error {
        status: 400,
        id: id.clone(),
        code: version::HEADER_MISMATCH,
        message: why,
    };
    match method_hdr {
        None => return Some(mismatch("missing required Mcp-Method header".into())),
        Some(h) if h != method => {
            return Some(mismatch(format!(
                "Mcp-Method header `{h}` does not match body method `{method}`"
            )));
        }
        Some(_) => {}
    }
    if method == "tools/call" {
        let body_name = m
            .object_at("params")
            .and_then(|p| p.str("name").ok().flatten());
        match (name_hdr.map(version::decode_header_value), body_name) {
            (None, Some(_)) => {
                return Some(mismatch(
                    "missing required Mcp-Name header for `tools/call`".into(),
                ));
            }
            (Some(None), _) => return Some(mismatch("Mcp-Name header is not valid Base64".into())),
            (Some(Some(h)), Some(b)) if h != b => {
                return Some(mismatch(format!(
                    "Mcp-Name header `{h}` does not match body value `{b}`"
                )));
            }
            _ => {}
        }
    }
    None
}

fn rpc_reply(io: &mut ConnIo, status: u16, body: &[u8], session: Option<&str>) {
    let extra: &[(&str, &[u8])] = match session {
        Some(s) => &[("Mcp-Session-Id", s.as_bytes())],
        None => &[],
    };
    full_response(&mut io.wbuf, status, "application/json", extra, body, false);
}

fn rpc_error(
    io: &mut ConnIo,
    status: u16,
    id: Option<&RpcId>,
    code: i64,
    message: &str,
    data: Option<(&str, Option<&str>)>,
) -> Disposition {
    let mut body = Vec::with_capacity(160 + message.len());
    rpc::write_error(&mut body, id, code, message, data);
    if status == 401 {
        full_response(
            &mut io.wbuf,
            status,
            "application/json",
            &[(
                "WWW-Authenticate",
                b"Bearer realm=\"portcullis\", error=\"invalid_token\"",
            )],
            &body,
            false,
        );
    } else {
        rpc_reply(io, status, &body, None);
    }
    Disposition::KeepAlive
}

/// 400 with an `UnsupportedProtocolVersionError` (-32022) listing what is supported.
fn unsupported_version(io: &mut ConnIo, id: Option<&RpcId>, requested: &str) {
    let mut body = Vec::with_capacity(256);
    rpc::open_error(
        &mut body,
        id,
        version::UNSUPPORTED_PROTOCOL_VERSION,
        &format!(
            "unsupported protocol version `{requested}`; supported: {}",
            version::SUPPORTED.join(", ")
        ),
    );
    body.extend_from_slice(b",\"data\":");
    body.extend_from_slice(
        json!({"supported": version::SUPPORTED, "requested": requested})
            .to_string()
            .as_bytes(),
    );
    body.extend_from_slice(b"}}");
    rpc_reply(io, 400, &body, None);
}

fn deny_rpc(io: &mut ConnIo, id: Option<&RpcId>, d: &Denial, did: &DecisionId) -> Disposition {
    let (status, code) = match d.status() {
        401 => (401, rpc::UNAUTHENTICATED),
        400 => (200, rpc::INVALID_PARAMS),
        404 => (200, rpc::INVALID_PARAMS),
        // A refusal is an answer, not a transport failure: HTTP 200 with a JSON-RPC error,
        // so MCP clients surface it to the model instead of retrying the connection.
        _ => (200, rpc::DENIED),
    };
    let msg = format!("{}: {}", d.reason(), d.message());
    rpc_error(
        io,
        status,
        id,
        code,
        &msg,
        Some((d.reason(), Some(did.as_str()))),
    )
}

pub async fn handle(gw: &Gateway, req: Request<'_>, io: &mut ConnIo) -> Disposition {
    match req.head.method() {
        Method::Post => post(gw, req, io).await,
        Method::Delete => delete(gw, req, io),
        _ => {
            // No server-initiated stream is offered (2025-03-26+: answer GET with 405).
            full_response(
                &mut io.wbuf,
                405,
                "application/json",
                &[("Allow", b"POST, DELETE")],
                b"",
                false,
            );
            Disposition::KeepAlive
        }
    }
}

fn delete(gw: &Gateway, req: Request<'_>, io: &mut ConnIo) -> Disposition {
    let now = clock::now_unix();
    let claims = match gw.authenticate(&req, now) {
        Ok(c) => c,
        Err((d, _)) => return deny_rpc(io, None, &d, &gw.next_id()),
    };
    let Some(sid) = req.field(&req.head.mcp_session_id) else {
        return rpc_error(
            io,
            400,
            None,
            rpc::INVALID_REQUEST,
            "DELETE needs an Mcp-Session-Id",
            None,
        );
    };
    let Some(session) = gw.shared.sessions.verify(sid, &claims.jti) else {
        return rpc_error(io, 404, None, rpc::INVALID_REQUEST, "unknown session", None);
    };
    // Terminated sessions are remembered until their envelope expires (after that the
    // envelope itself is refused), and only so many at once: an agent opening and ending
    // sessions in a loop must not grow this without bound.
    let forget_before = now.saturating_sub(gw.shared.verifier.skew_secs);
    let mut full = false;
    gw.shared.ended_sessions.rcu(|ended| {
        let (next, ok) = crate::mcp::session::with_ended(
            ended,
            sid,
            session.expires_at,
            forget_before,
            MAX_ENDED_SESSIONS,
        );
        full = !ok;
        next
    });
    if full {
        // 2025-03-26+: a server MAY answer 405 when it does not let clients end sessions.
        return rpc_error(
            io,
            405,
            None,
            rpc::INVALID_REQUEST,
            "too many sessions ended recently; stop using this one, it ends with its envelope",
            None,
        );
    }
    full_response(&mut io.wbuf, 204, "application/json", &[], b"", false);
    Disposition::KeepAlive
}

/// Most terminated sessions remembered at once (each until its envelope expires).
const MAX_ENDED_SESSIONS: usize = 16_384;

/// Whether an `Accept` value admits `media` (`type/subtype`): an exact range or a
/// wildcard (`type/*`, `*/*`), not with `q=0`.
fn admits(accept: &str, media: &str) -> bool {
    let (ty, _) = media.split_once('/').unwrap_or((media, ""));
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let r = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        !refused
            && (r.eq_ignore_ascii_case(media)
                || r == "*/*"
                || r.strip_suffix("/*")
                    .is_some_and(|t| t.eq_ignore_ascii_case(ty)))
    })
}

/// MCP clients must accept both JSON and SSE answers: a tool served by an upstream MCP
/// server may answer either way, and the gateway relays it as it comes. A client without
/// an `Accept` field takes anything.
fn accepts(req: &Request<'_>) -> bool {
    match req.field(&req.head.accept) {
        None => true,
        Some(a) => admits(a, "application/json") && admits(a, "text/event-stream"),
    }
}

async fn post(gw: &Gateway, req: Request<'_>, io: &mut ConnIo) -> Disposition {
    let did = gw.next_id();
    if let Some(origin) = req.field(&req.head.origin)
        && !gw.shared.allowed_origins.iter().any(|o| o == origin)
    {
        return rpc_error(
            io,
            403,
            None,
            rpc::INVALID_REQUEST,
            "origin not allowed",
            None,
        );
    }
    let header_version = req.field(&req.head.mcp_protocol_version);
    if let Some(v) = header_version
        && !version::is_supported(v)
    {
        // 400 for every revision (2025-06-18: "invalid or unsupported"); the body is the
        // 2026-07-28 `UnsupportedProtocolVersionError`, so a modern client can pick one
        // of the supported versions and retry.
        unsupported_version(io, None, v);
        return Disposition::KeepAlive;
    }
    if req.head.mcp_duplicate {
        return rpc_error(
            io,
            400,
            None,
            version::HEADER_MISMATCH,
            "an MCP header (Mcp-Method, Mcp-Name, Mcp-Session-Id, MCP-Protocol-Version) appears more than once",
            None,
        );
    }
    // 2026-07-28 and later: no session, standard headers that must agree with the body.
    let modern = header_version.is_some_and(version::is_stateless);
    let method_hdr = req.field(&req.head.mcp_method);
    let name_hdr = req.field(&req.head.mcp_name);
    if !accepts(&req) {
        return rpc_error(
            io,
            406,
            None,
            rpc::INVALID_REQUEST,
            "Accept must list both application/json and text/event-stream",
            None,
        );
    }
    let now = clock::now_unix();
    let started = std::time::Instant::now();
    let claims = match gw.authenticate(&req, now) {
        Ok(c) => c,
        Err(d) => {
            // A refused credential is a decision too: it gets its audit line.
            let (d, known) = d;
            let active = gw.shared.active.load();
            let mut note = std::mem::take(&mut io.note);
            let subject = Subject {
                claims: known.as_deref(),
                tool: "",
                resource: "",
                data_classes: &[],
                record_count: 0,
                via: "mcp",
            };
            gw.audit_decision(
                &mut note,
                &did,
                false,
                d.reason(),
                &subject,
                &active,
                &crate::audit::record::no_policies,
            );
            gw.audit_commit(&note, started, 0, false);
            io.note = note;
            return deny_rpc(io, None, &d, &did);
        }
    };
    let session_hdr = req.field(&req.head.mcp_session_id).filter(|_| !modern);
    if let Some(sid) = session_hdr
        && (gw.shared.sessions.verify(sid, &claims.jti).is_none()
            || gw.shared.ended_sessions.load().contains_key(sid))
    {
        return rpc_error(
            io,
            404,
            None,
            rpc::INVALID_REQUEST,
            "unknown or terminated MCP session; initialize again",
            None,
        );
    }
    if req.body.first().is_some_and(|b| *b == b'[')
        || req.body.trim_ascii_start().first() == Some(&b'[')
    {
        return rpc_error(
            io,
            400,
            None,
            rpc::INVALID_REQUEST,
            "JSON-RPC batches are not supported; send one message per POST",
            None,
        );
    }
    let active: Arc<Active> = gw.shared.active.load_full();
    let mut note = std::mem::take(&mut io.note);
    note.clear();
    let mut held = None;
    let plan = {
        let mut parser = gw.parser.borrow_mut();
        let mut scratch = gw.scratch.borrow_mut();
        let upreq = &mut io.upreq;
        let note = &mut note;
        parser.with_args(req.body, |parsed| {
            let m = match parsed {
                Ok(m) => m,
                Err(crate::pipeline::args::ArgsError::InvalidJson) => {
                    return Plan::Error {
                        status: 400,
                        id: None,
                        code: rpc::PARSE_ERROR,
                        message: "parse error: body is not JSON".into(),
                    };
                }
                Err(e @ crate::pipeline::args::ArgsError::DuplicateKey(_)) => {
                    // Forwarded as it is, so the gateway and the upstream must not be
                    // able to read different members (see `pipeline::args`).
                    return Plan::Error {
                        status: 400,
                        id: None,
                        code: rpc::INVALID_REQUEST,
                        message: format!("invalid request: {e}"),
                    };
                }
                Err(_) => {
                    return Plan::Error {
                        status: 400,
                        id: None,
                        code: rpc::INVALID_REQUEST,
                        message: "a JSON-RPC message is a JSON object".into(),
                    };
                }
            };
            let message = rpc::classify(&m);
            if modern && let Some(plan) = check_standard_headers(&message, &m, method_hdr, name_hdr)
            {
                return plan;
            }
            let (id, method) = match message {
                Message::Notification { .. } | Message::Response => return Plan::Accepted,
                Message::Invalid { id, why } => {
                    return Plan::Error {
                        status: 400,
                        id,
                        code: rpc::INVALID_REQUEST,
                        message: why.into(),
                    };
                }
                Message::Request { id, method } => (id, method),
            };
            if let Some(v) = m
                .object_at("params")
                .and_then(|p| p.object_at("_meta"))
                .and_then(|meta| meta.str(version::META_PROTOCOL_VERSION).ok().flatten())
            {
                if !version::is_supported(v) {
                    return Plan::Unsupported {
                        id,
                        version: v.to_owned(),
                    };
                }
                // The header must carry the body's revision (2026-07-28, "Protocol Version
                // Header"): a modern body under a legacy or missing header, or a header
                // naming another revision, is a mismatch.
                if (modern || version::is_stateless(v)) && header_version != Some(v) {
                    return Plan::Error {
                        status: 400,
                        id: Some(id),
                        code: version::HEADER_MISMATCH,
                        message: match header_version {
                            None => format!(
                                "missing MCP-Protocol-Version header; _meta names `{v}`"
                            ),
                            Some(h) => format!(
                                "MCP-Protocol-Version header `{h}` does not match _meta protocol version `{v}`"
                            ),
                        },
                    };
                }
            }
            match method {
                "server/discover" => Plan::Discover { id },
                "initialize" => {
                    let asked = m
                        .object_at("params")
                        .and_then(|p| p.str("protocolVersion").ok().flatten())
                        .unwrap_or(version::DEFAULT_WITHOUT_HEADER);
                    Plan::Initialize {
                        id,
                        version: version::negotiate(asked),
                    }
                }
                "ping" => Plan::Ping { id },
                "tools/list" => Plan::ToolsList { id },
                "tools/call" => plan_call(
                    gw,
                    &active,
                    &claims,
                    &m,
                    id,
                    now,
                    &did,
                    &mut scratch,
                    upreq,
                    note,
                    &mut held,
                ),
                other => Plan::Error {
                    // 2026-07-28: an unimplemented method is HTTP 404 with -32601 (the
                    // body tells it apart from a legacy server's 404); earlier revisions
                    // answer it as any other JSON-RPC error.
                    status: if modern { 404 } else { 200 },
                    id: Some(id),
                    code: rpc::METHOD_NOT_FOUND,
                    message: format!("method `{other}` is not offered by this gateway"),
                },
            }
        })
    };
    let audited = |tool: &str, status: u16| {
        audit_allowed(
            gw,
            &note,
            held.as_ref(),
            &did,
            &claims,
            tool,
            &active,
            started,
            status,
        )
    };
    let disposition = match plan {
        Plan::CallMcp { id, tool } => {
            let (disposition, status) = call_mcp(
                gw, &active, &claims, &req, io, id, &tool, &did, started, modern,
            )
            .await;
            audited(&tool, status);
            disposition
        }
        Plan::CallHttp { id, tool } => {
            let (disposition, status) =
                call_http(gw, &active, io, id, &tool, &did, modern, started).await;
            audited(&tool, status);
            disposition
        }
        other => {
            if !note.is_empty() {
                // A tools/call that was refused (an allowed one is a Call plan).
                gw.audit_commit(&note, started, 0, false);
            }
            answer(gw, other, &active, &claims, io, &did, modern, now).await
        }
    };
    io.note = note;
    disposition
}

/// The audit record of an allowed `tools/call`, once the tool has answered: the held
/// decision (see `plan_call`), or the record already in `note` when none was held.
#[allow(clippy::too_many_arguments)]
fn audit_allowed(
    gw: &Gateway,
    note: &[u8],
    held: Option<&Held>,
    did: &DecisionId,
    claims: &crate::envelope::Claims,
    tool: &str,
    active: &Active,
    started: std::time::Instant,
    upstream_status: u16,
) {
    let Some(held) = held else {
        return gw.audit_commit(note, started, upstream_status, true);
    };
    let about = HeldSubject {
        claims,
        tool,
        data_classes: active.bundle.tool(tool).map_or(&[], |t| &t.data_classes),
        via: "mcp",
    };
    gw.audit_held(note, held, did, &about, active, started, upstream_status);
}

/// Answers a plan that calls no tool.
#[allow(clippy::too_many_arguments)]
async fn answer(
    gw: &Gateway,
    plan: Plan,
    active: &Active,
    claims: &crate::envelope::Claims,
    io: &mut ConnIo,
    did: &DecisionId,
    modern: bool,
    now: i64,
) -> Disposition {
    let did = *did;
    match plan {
        Plan::Accepted => {
            full_response(&mut io.wbuf, 202, "application/json", &[], b"", false);
            Disposition::KeepAlive
        }
        Plan::Error {
            status,
            id,
            code,
            message,
        } => rpc_error(io, status, id.as_ref(), code, &message, None),
        Plan::Denied { id, denial } => deny_rpc(io, Some(&id), &denial, &did),
        Plan::Unsupported { id, version: v } => {
            unsupported_version(io, Some(&id), &v);
            Disposition::KeepAlive
        }
        Plan::Discover { id } => {
            let result = json!({
                "resultType": "complete",
                "supportedVersions": version::SUPPORTED,
                "capabilities": {"tools": {"listChanged": false}},
                "instructions": INSTRUCTIONS,
                // Tool visibility depends on the caller's envelope: never share a cached
                // answer across authorization contexts.
                "ttlMs": 0,
                "cacheScope": "private",
                "_meta": {version::META_SERVER_INFO: server_info()},
            });
            let mut body = Vec::with_capacity(512);
            rpc::open_result(&mut body, &id);
            body.extend_from_slice(result.to_string().as_bytes());
            body.push(b'}');
            rpc_reply(io, 200, &body, None);
            Disposition::KeepAlive
        }
        Plan::Ping { id } => {
            let mut body = Vec::with_capacity(48);
            rpc::open_result(&mut body, &id);
            body.extend_from_slice(if modern {
                b"{\"resultType\":\"complete\"}}"
            } else {
                b"{}}"
            });
            rpc_reply(io, 200, &body, None);
            Disposition::KeepAlive
        }
        Plan::Initialize { id, version: v } => {
            let session = (!version::is_stateless(v))
                .then(|| gw.shared.sessions.issue(v, &claims.jti, claims.exp, now));
            let result = json!({
                "protocolVersion": v,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": server_info(),
                "instructions": INSTRUCTIONS,
            });
            let mut body = Vec::with_capacity(512);
            rpc::open_result(&mut body, &id);
            body.extend_from_slice(result.to_string().as_bytes());
            body.push(b'}');
            rpc_reply(io, 200, &body, session.as_deref());
            Disposition::KeepAlive
        }
        Plan::ToolsList { id } => tools_list(gw, active, claims, id, modern, io).await,
        Plan::CallMcp { .. } | Plan::CallHttp { .. } => Disposition::KeepAlive,
    }
}

/// Decides a `tools/call`. An allowed call's decision is held (`held`, with its data in
/// `note`) until the tool has answered; any other's audit record is encoded into `note`.
#[allow(clippy::too_many_arguments)]
fn plan_call(
    gw: &Gateway,
    active: &Active,
    claims: &crate::envelope::Claims,
    m: &crate::pipeline::args::Args<'_, '_>,
    id: RpcId,
    now: i64,
    did: &DecisionId,
    scratch: &mut crate::decision::Scratch,
    upreq: &mut Vec<u8>,
    note: &mut Vec<u8>,
    held: &mut Option<Held>,
) -> Plan {
    let mut subject = Subject {
        claims: Some(claims),
        tool: "",
        resource: "",
        data_classes: &[],
        record_count: 0,
        via: "mcp",
    };
    let plan = plan_call_inner(
        gw,
        active,
        claims,
        m,
        id,
        now,
        did,
        scratch,
        upreq,
        &mut subject,
    );
    let (allowed, reason, by_policy) = match &plan {
        Plan::CallMcp { .. } | Plan::CallHttp { .. } => (true, "allow", true),
        Plan::Denied { denial, .. } => (
            false,
            denial.reason(),
            matches!(denial, Denial::PolicyDenied | Denial::AuditUnavailable),
        ),
        _ => (false, "invalid_arguments", false),
    };
    if allowed {
        *held = Some(Held::new(
            note,
            subject.resource,
            subject.record_count,
            scratch.determining(),
        ));
        return plan;
    }
    let scratch: &crate::decision::Scratch = scratch;
    let visit = |f: &mut dyn FnMut(&str)| {
        if by_policy {
            determining(&active.bundle, scratch, f);
        }
    };
    gw.audit_decision(note, did, allowed, reason, &subject, active, &visit);
    plan
}

#[allow(clippy::too_many_arguments)]
fn plan_call_inner<'a>(
    gw: &Gateway,
    active: &'a Active,
    claims: &crate::envelope::Claims,
    m: &crate::pipeline::args::Args<'a, '_>,
    id: RpcId,
    now: i64,
    did: &DecisionId,
    scratch: &mut crate::decision::Scratch,
    upreq: &mut Vec<u8>,
    subject: &mut Subject<'a>,
) -> Plan {
    let Some(params) = m.object_at("params") else {
        return Plan::Error {
            status: 200,
            id: Some(id),
            code: rpc::INVALID_PARAMS,
            message: "tools/call needs params".into(),
        };
    };
    let name = match params.str("name") {
        Ok(Some(n)) => n,
        _ => {
            return Plan::Error {
                status: 200,
                id: Some(id),
                code: rpc::INVALID_PARAMS,
                message: "params.name must name a tool".into(),
            };
        }
    };
    subject.tool = name;
    let Some((tool, binding)) = active.tool(name) else {
        return Plan::Denied {
            id,
            denial: Denial::UnknownTool {
                tool: name.to_owned(),
            },
        };
    };
    let args = match params.object_at("arguments") {
        Some(a) => a,
        None if params.get("arguments").is_none() => crate::pipeline::args::Args::empty(),
        None => {
            return Plan::Error {
                status: 200,
                id: Some(id),
                code: rpc::INVALID_PARAMS,
                message: "params.arguments must be an object".into(),
            };
        }
    };
    subject.data_classes = &tool.data_classes;
    (subject.resource, subject.record_count) = attempted(tool, &args);
    let facts = match check_scope(&active.bundle, claims, tool, &args) {
        Ok(f) => f,
        Err(d) => return Plan::Denied { id, denial: d },
    };
    subject.resource = facts.resource_id;
    subject.record_count = facts.record_count;
    if !decide(&active.bundle, scratch, claims, tool, &facts, now) {
        return Plan::Denied {
            id,
            denial: Denial::PolicyDenied,
        };
    }
    if !gw.audit_has_room() {
        return Plan::Denied {
            id,
            denial: Denial::AuditUnavailable,
        };
    }
    match &tool.kind {
        ToolKind::Mcp { .. } => Plan::CallMcp {
            id,
            tool: name.to_owned(),
        },
        ToolKind::Http => {
            let pool = &gw.pools[binding.upstream];
            upreq.clear();
            let target = Target {
                method: &tool.method,
                base_path: &pool.spec.base_path,
                path_template: &tool.path,
                host: &pool.spec.host_header,
                credential_header: &binding.credential_header,
                credential_prefix: &binding.credential_prefix,
                credential: binding.credential.expose(),
                decision_id: did.as_str(),
                delegator: &claims.delegator_id,
            };
            let body = args.to_json();
            match write_request(
                upreq,
                &target,
                &|k| args.scalar(k),
                &mut args.keys(),
                Some(body.as_bytes()),
            ) {
                Ok(()) => Plan::CallHttp {
                    id,
                    tool: name.to_owned(),
                },
                Err(e) => Plan::Denied {
                    id,
                    denial: Denial::BadArguments(e.to_string()),
                },
            }
        }
    }
}

/// The tools this envelope may call: in its `allowed_tools`, admitted by its purpose, and
/// with data classes it holds. Descriptions and schemas come from the upstream MCP server
/// that serves the tool (merged), or from the tool registry for HTTP tools.
async fn tools_list(
    gw: &Gateway,
    active: &Active,
    claims: &crate::envelope::Claims,
    id: RpcId,
    modern: bool,
    io: &mut ConnIo,
) -> Disposition {
    let purpose = active.bundle.purpose(&claims.purpose);
    let rc = &claims.resource_constraints;
    let mut tools = Vec::new();
    for (t, binding) in active.tools() {
        let visible = claims.allowed_tools.contains(&t.name)
            && purpose.is_some_and(|p| p.tools.contains(&t.name))
            && t.data_classes.iter().all(|c| rc.data_classes.contains(c))
            && purpose.is_some_and(|p| t.data_classes.iter().all(|c| p.data_classes.contains(c)));
        if !visible {
            continue;
        }
        let mut desc = json!({
            "name": t.name,
            "description": t.description,
            "inputSchema": t.input_schema.as_deref()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .unwrap_or_else(|| json!({
                    "type": "object",
                    "properties": {t.resource.arg.clone(): {"type": "string"}},
                    "required": [t.resource.arg]
                })),
        });
        if let ToolKind::Mcp { remote_name } = &t.kind {
            match gw.upstream_tools(binding.upstream, &t.path, binding).await {
                Ok(remote) => {
                    if let Some(r) = remote.iter().find(|r| r["name"] == remote_name.as_str()) {
                        for k in [
                            "title",
                            "description",
                            "inputSchema",
                            "outputSchema",
                            "annotations",
                        ] {
                            if let Some(v) = r.get(k) {
                                desc[k] = v.clone();
                            }
                        }
                    } else {
                        crate::warn!(
                            "upstream `{}` does not list tool `{remote_name}`",
                            gw.pools[binding.upstream].spec.name
                        );
                        continue;
                    }
                }
                Err(e) => {
                    crate::warn!("tools/list: {e}");
                    continue;
                }
            }
            desc["name"] = Value::from(t.name.clone());
        }
        tools.push(desc);
    }
    let mut body = Vec::with_capacity(1024);
    rpc::open_result(&mut body, &id);
    let result = if modern {
        json!({"resultType": "complete", "tools": tools, "ttlMs": 0, "cacheScope": "private"})
    } else {
        json!({"tools": tools})
    };
    body.extend_from_slice(result.to_string().as_bytes());
    body.push(b'}');
    rpc_reply(io, 200, &body, None);
    Disposition::KeepAlive
}

/// Forwards a `tools/call` to the upstream MCP server that owns the tool and streams its
/// answer (JSON or SSE) back. The agent's body goes as it is when the upstream knows the
/// tool by the same name and speaks the agent's protocol era; otherwise `params.name` is
/// rewritten and, for a 2026-07-28 agent over a session-based upstream, the messages are
/// bridged (`mcp::translate`). The upstream's `Mcp-Session-Id` is never relayed: it names
/// the gateway's session with the upstream. Returns the disposition and the upstream
/// status for the audit line (0: no answer).
#[allow(clippy::too_many_arguments)]
async fn call_mcp(
    gw: &Gateway,
    active: &Active,
    claims: &crate::envelope::Claims,
    req: &Request<'_>,
    io: &mut ConnIo,
    id: RpcId,
    tool_name: &str,
    did: &DecisionId,
    started: std::time::Instant,
    modern: bool,
) -> (Disposition, u16) {
    let unknown = Denial::UnknownTool {
        tool: tool_name.to_owned(),
    };
    let Some((tool, binding)) = active.tool(tool_name) else {
        return (deny_rpc(io, Some(&id), &unknown, did), 0);
    };
    let ToolKind::Mcp { remote_name } = &tool.kind else {
        return (deny_rpc(io, Some(&id), &unknown, did), 0);
    };
    let pool = &gw.pools[binding.upstream];
    let upstream_error = |io: &mut ConnIo, e: &crate::proxy::ProxyError| {
        gw.metrics().upstream_error(e.reason());
        let d = rpc_error(
            io,
            200,
            Some(&id),
            rpc::UPSTREAM_ERROR,
            &e.to_string(),
            Some((e.reason(), Some(did.as_str()))),
        );
        (d, e.status())
    };
    for attempt in 1..=2 {
        let session = match gw
            .upstream_session(binding.upstream, &tool.path, binding)
            .await
        {
            Ok(s) => s,
            Err(e) => return upstream_error(io, &e),
        };
        let bridge = modern && !version::is_stateless(&session.version);
        let rename = (remote_name != tool_name).then_some(remote_name.as_str());
        let rewritten = (bridge || rename.is_some())
            .then(|| crate::mcp::translate::request_for_legacy(req.body, bridge, rename))
            .flatten();
        let body: &[u8] = rewritten.as_deref().map_or(req.body, str::as_bytes);
        let mut translator = bridge.then(|| {
            crate::mcp::translate::ModernResults::new(gw.shared.limits.max_wrapped_body_bytes)
        });
        let mut upreq = std::mem::take(&mut io.upreq);
        let path = format!("{}{}", pool.spec.base_path, tool.path);
        write_post(
            &mut upreq,
            &path,
            &pool.spec.host_header,
            binding,
            Some(&session),
            did.as_str(),
            &claims.delegator_id,
            body,
        );
        let mut extra = [0u8; 96];
        let n = super::service::decision_header(&mut extra, did);
        let mut carry = std::mem::take(&mut io.carry);
        let mut scrubber = binding
            .finder
            .as_ref()
            .map(|f| Scrubber::new(f, &mut carry));
        let mut scratch = std::mem::take(&mut io.scratch);
        let upstream_started = std::time::Instant::now();
        let ex = exchange(
            pool,
            &mut upreq,
            Method::Post,
            scrubber.as_mut(),
            gw.shared.limits.max_upstream_head_bytes,
            Sink::Client {
                stream: &mut io.stream,
                wbuf: &mut io.wbuf,
                scratch: &mut scratch,
                extra: &extra[..n],
                close: req.head.close,
                http10: req.head.minor == 0,
                write_timeout: io.write_timeout,
                deadline: &mut io.deadline,
                relay_errors: false,
                strip: &["mcp-session-id"],
                rewrite: translator
                    .as_mut()
                    .map(|t| t as &mut dyn crate::proxy::exchange::Rewrite),
            },
        )
        .await;
        let scrubbed = scrubber.map_or(0, |s| s.scrubbed);
        io.carry = carry;
        io.upreq = upreq;
        let result = match ex.result {
            Ok(out) if (200..300).contains(&out.status) => {
                gw.observe_call(started, upstream_started, scrubbed);
                let d = if out.client_close {
                    Disposition::Close
                } else {
                    Disposition::KeepAlive
                };
                Some((d, out.status))
            }
            // The upstream forgot our session: open a new one and try once more.
            Ok(out) if out.status == 404 && attempt == 1 => {
                gw.drop_upstream_session(binding.upstream);
                None
            }
            Ok(out) => {
                let msg = format!(
                    "upstream `{}` answered HTTP {}: {}",
                    pool.spec.name,
                    out.status,
                    String::from_utf8_lossy(&scratch[..scratch.len().min(512)])
                );
                let d = rpc_error(
                    io,
                    200,
                    Some(&id),
                    rpc::UPSTREAM_ERROR,
                    &msg,
                    Some(("upstream_error", Some(did.as_str()))),
                );
                Some((d, out.status))
            }
            Err(e) if ex.head_sent => {
                gw.metrics().upstream_error(e.reason());
                Some((Disposition::Close, 0))
            }
            Err(e) => Some(upstream_error(io, &e)),
        };
        scratch.clear();
        io.scratch = scratch;
        if let Some(r) = result {
            return r;
        }
    }
    (Disposition::KeepAlive, 0)
}

/// Calls a plain HTTP tool for an MCP client and wraps the answer as a `CallToolResult`:
/// the body as text content, as `structuredContent` too when it is a JSON object, and
/// `isError` for a non-2xx status.
#[allow(clippy::too_many_arguments)]
async fn call_http(
    gw: &Gateway,
    active: &Active,
    io: &mut ConnIo,
    id: RpcId,
    tool_name: &str,
    did: &DecisionId,
    modern: bool,
    started: std::time::Instant,
) -> (Disposition, u16) {
    let Some((tool, binding)) = active.tool(tool_name) else {
        let d = Denial::UnknownTool {
            tool: tool_name.to_owned(),
        };
        return (deny_rpc(io, Some(&id), &d, did), 0);
    };
    let pool = &gw.pools[binding.upstream];
    let mut carry = std::mem::take(&mut io.carry);
    let mut scrubber = binding
        .finder
        .as_ref()
        .map(|f| Scrubber::new(f, &mut carry));
    let mut upreq = std::mem::take(&mut io.upreq);
    let mut gather = std::mem::take(&mut io.gather);
    let mut scratch = std::mem::take(&mut io.scratch);
    let upstream_started = std::time::Instant::now();
    let ex = exchange(
        pool,
        &mut upreq,
        super::service::method_of(&tool.method),
        scrubber.as_mut(),
        gw.shared.limits.max_upstream_head_bytes,
        Sink::Gather {
            body: &mut gather,
            scratch: &mut scratch,
            limit: gw.shared.limits.max_wrapped_body_bytes,
        },
    )
    .await;
    let scrubbed = scrubber.map_or(0, |s| s.scrubbed);
    io.carry = carry;
    io.upreq = upreq;
    io.scratch = scratch;
    let result = match ex.result {
        Ok(out) => {
            gw.observe_call(started, upstream_started, scrubbed);
            let text = String::from_utf8_lossy(&gather);
            let mut body = Vec::with_capacity(gather.len() * 2 + 128);
            rpc::open_result(&mut body, &id);
            body.extend_from_slice(if modern {
                b"{\"resultType\":\"complete\",\"content\":[{\"type\":\"text\",\"text\":"
            } else {
                b"{\"content\":[{\"type\":\"text\",\"text\":"
            });
            json_str(&mut body, &text);
            body.extend_from_slice(b"}]");
            let is_json_object = out
                .content_type
                .as_deref()
                .is_some_and(|c| c.contains("json"))
                && gather.trim_ascii_start().first() == Some(&b'{')
                && serde_json::from_slice::<serde::de::IgnoredAny>(&gather).is_ok();
            if is_json_object {
                // Already a JSON object: embedded as it came, not re-serialised.
                body.extend_from_slice(b",\"structuredContent\":");
                body.extend_from_slice(&gather);
            }
            body.extend_from_slice(if (200..300).contains(&out.status) {
                b",\"isError\":false}}"
            } else {
                b",\"isError\":true}}"
            });
            let extra: &[(&str, &[u8])] = &[("X-Portcullis-Decision-Id", did.as_str().as_bytes())];
            full_response(&mut io.wbuf, 200, "application/json", extra, &body, false);
            (Disposition::KeepAlive, out.status)
        }
        Err(e) => {
            gw.metrics().upstream_error(e.reason());
            let d = rpc_error(
                io,
                200,
                Some(&id),
                rpc::UPSTREAM_ERROR,
                &e.to_string(),
                Some((e.reason(), Some(did.as_str()))),
            );
            (d, e.status())
        }
    };
    gather.clear();
    io.gather = gather;
    result
}
