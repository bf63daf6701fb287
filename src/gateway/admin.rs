//! The admin listener: a separate address for operators and policy pipelines, behind its
//! own bearer token. Bundle push (verified, optionally signed, swapped atomically) and
//! status, revocation (by envelope, which covers its descendants, by session or by task),
//! Prometheus metrics, health and readiness.

use super::state::{Revocations, Shared};
use crate::http::head::Method;
use crate::http::write::full_response;
use crate::metrics::Gauges;
use crate::server::{ConnIo, Disposition, Request, Service};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Header carrying a pipeline's Ed25519 signature over a pushed bundle (base64url).
pub const SIGNATURE_HEADER: &str = "x-portcullis-bundle-signature";

pub struct Admin {
    pub shared: Arc<Shared>,
    pub token: Arc<str>,
}

fn reply(io: &mut ConnIo, status: u16, v: &serde_json::Value) {
    let body = serde_json::to_vec(v).unwrap_or_default();
    full_response(&mut io.wbuf, status, "application/json", &[], &body, false);
}

fn error(io: &mut ConnIo, status: u16, reason: &str, message: &str) {
    reply(io, status, &json!({"error": message, "reason": reason}));
}

/// Compares without an early exit on the first differing byte.
fn token_matches(given: &str, want: &str) -> bool {
    given.len() == want.len()
        && given
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn header<'a>(req: &Request<'a>, name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(&req.buf[..req.head.len]).ok()?;
    text.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    task_id: Option<String>,
}

impl Admin {
    fn bundle_status(&self) -> serde_json::Value {
        let active = self.shared.active.load();
        let meta = active.bundle.meta();
        json!({
            "version": meta.version,
            "digest": meta.digest_hex,
            "compiler_version": meta.compiler_version,
            "compiled_at": meta.compiled_at,
            "counts": {
                "policies": meta.counts.policies,
                "actions": meta.counts.actions,
                "entities": meta.counts.entities,
                "tools": meta.counts.tools,
                "purposes": meta.counts.purposes,
            },
            "swaps": self.shared.bundle_swaps.load(Ordering::Relaxed),
        })
    }

    fn revoke(&self, body: &[u8], io: &mut ConnIo) {
        let r: RevokeRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    io,
                    400,
                    "invalid_request",
                    &format!("expected {{\"jti\" | \"session_id\" | \"task_id\": \"...\"}}: {e}"),
                );
            }
        };
        if r.jti.is_none() && r.session_id.is_none() && r.task_id.is_none() {
            return error(
                io,
                400,
                "invalid_request",
                "name a jti, session_id or task_id to revoke",
            );
        }
        let updated = self.shared.revocations.rcu(|cur| {
            let mut next: Revocations = (**cur).clone();
            next.jtis.extend(r.jti.clone());
            next.sessions.extend(r.session_id.clone());
            next.tasks.extend(r.task_id.clone());
            next
        });
        drop(updated);
        let now = self.shared.revocations.load();
        if let Err(e) = self.shared.persist_revocations(&now) {
            return error(
                io,
                500,
                "persist_failed",
                &format!("revoked in memory, but not persisted: {e}"),
            );
        }
        crate::info!(
            "revoked jti={:?} session={:?} task={:?}",
            r.jti.as_deref().unwrap_or("-"),
            r.session_id.as_deref().unwrap_or("-"),
            r.task_id.as_deref().unwrap_or("-")
        );
        reply(
            io,
            200,
            &json!({"revoked": {"jti": r.jti, "session_id": r.session_id, "task_id": r.task_id},
                               "totals": {"jtis": now.jtis.len(), "sessions": now.sessions.len(), "tasks": now.tasks.len()}}),
        );
    }

    fn metrics(&self) -> String {
        let active = self.shared.active.load();
        let meta = active.bundle.meta();
        let audit = &self.shared.audit;
        let rev = self.shared.revocations.load();
        self.shared.metrics.render(&Gauges {
            bundle_version: &meta.version,
            bundle_digest: &meta.digest_hex,
            audit_queue_depth: audit.depth() as u64,
            audit_dropped: audit.dropped.load(Ordering::Relaxed),
            audit_lines: audit.stats.lines.load(Ordering::Relaxed),
            audit_write_errors: audit.stats.write_errors.load(Ordering::Relaxed),
            revocations: (rev.jtis.len() + rev.sessions.len() + rev.tasks.len()) as u64,
            bundle_swaps: self.shared.bundle_swaps.load(Ordering::Relaxed),
        })
    }
}

impl Admin {
    /// Refuses a request without a valid admin token (401 or 403); true if it did.
    /// `close`: the answer says `Connection: close` (an early refusal, body unread).
    fn refuse_unauthorized(&self, req: &Request<'_>, io: &mut ConnIo, close: bool) -> bool {
        let (status, reason, message) = match req.bearer() {
            None => (
                401,
                "missing_admin_token",
                "send `Authorization: Bearer <admin token>`",
            ),
            Some(t) if !token_matches(t, &self.token) => {
                (403, "wrong_admin_token", "the admin token is not valid")
            }
            Some(_) => return false,
        };
        let body =
            serde_json::to_vec(&json!({"error": message, "reason": reason})).unwrap_or_default();
        full_response(&mut io.wbuf, status, "application/json", &[], &body, close);
        true
    }
}

impl Service for Admin {
    /// The admin listener takes bundles of up to 1 GiB: only from a caller holding the
    /// token. Anyone else is refused before the body is read.
    fn refuse_early(&self, req: &Request<'_>, io: &mut ConnIo) -> bool {
        let probe = matches!(req.path(), "/healthz" | "/readyz");
        !probe && self.refuse_unauthorized(req, io, true)
    }

    async fn call(&self, req: Request<'_>, io: &mut ConnIo) -> Disposition {
        let path = req.path();
        let method = req.head.method();
        // Probes stay open so orchestrators need no secret.
        match (method, path) {
            (Method::Get, "/healthz") => {
                reply(io, 200, &json!({"status": "ok"}));
                return Disposition::KeepAlive;
            }
            (Method::Get, "/readyz") => {
                if self.shared.stopping.load(Ordering::Relaxed) {
                    reply(io, 503, &json!({"status": "stopping"}));
                } else {
                    reply(
                        io,
                        200,
                        &json!({"status": "ready", "bundle": self.shared.active.load().bundle.meta().version}),
                    );
                }
                return Disposition::KeepAlive;
            }
            _ => {}
        }
        if self.refuse_unauthorized(&req, io, false) {
            return Disposition::KeepAlive;
        }
        match (method, path) {
            (Method::Put, "/admin/bundle") => {
                let sig = header(&req, SIGNATURE_HEADER);
                match self.shared.activate_bytes(req.body, sig) {
                    Ok(()) => reply(io, 200, &self.bundle_status()),
                    Err(e) => error(
                        io,
                        422,
                        "bundle_rejected",
                        &format!("{e}; the previous bundle keeps serving"),
                    ),
                }
            }
            (Method::Get, "/admin/bundle") => reply(io, 200, &self.bundle_status()),
            (Method::Post, "/admin/revoke") => self.revoke(req.body, io),
            (Method::Get, "/admin/revocations") => {
                let r = self.shared.revocations.load();
                let mut jtis: Vec<&String> = r.jtis.iter().collect();
                let mut sessions: Vec<&String> = r.sessions.iter().collect();
                let mut tasks: Vec<&String> = r.tasks.iter().collect();
                jtis.sort();
                sessions.sort();
                tasks.sort();
                reply(
                    io,
                    200,
                    &json!({"jtis": jtis, "sessions": sessions, "tasks": tasks}),
                );
            }
            (Method::Get, "/metrics") => {
                let text = self.metrics();
                full_response(
                    &mut io.wbuf,
                    200,
                    "text/plain; version=0.0.4",
                    &[],
                    text.as_bytes(),
                    false,
                );
            }
            _ => error(
                io,
                404,
                "not_found",
                &format!("no admin route {} {path}", method.as_str()),
            ),
        }
        Disposition::KeepAlive
    }
}
