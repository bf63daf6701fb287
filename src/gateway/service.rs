//! The gateway on one core: routing, authentication (envelope through the per-core cache,
//! then revocation), denial responses, and the plain HTTP tool-call path
//! (`POST /v1/tools/{tool}`). MCP and delegation live in their own modules.

use super::audit_hook::{Held, HeldSubject, Subject};
use super::state::{Active, Shared};
use crate::audit::record::no_policies;
use crate::clock;
use crate::decision::Scratch;
use crate::envelope::{Claims, EnvelopeCache};
use crate::http::head::Method;
use crate::http::write::{full_response, json_str};
use crate::pipeline::args::ArgParser;
use crate::pipeline::authorize::{attempted, check_scope, decide, determining};
use crate::pipeline::deny::{DecisionId, Denial};
use crate::proxy::exchange::{Sink, exchange};
use crate::proxy::pool::Pool;
use crate::proxy::request::{Target, write_request};
use crate::proxy::scrub::Scrubber;
use crate::server::{ConnIo, Disposition, Request, Service};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// A refused credential, with the claims when they verified (a revoked envelope).
pub type Refused = (Denial, Option<Rc<Claims>>);

/// Per-core gateway state. Single-threaded: `RefCell`s are borrowed only between awaits.
pub struct Gateway {
    pub core: usize,
    pub shared: Arc<Shared>,
    pub cache: RefCell<EnvelopeCache>,
    pub parser: RefCell<ArgParser>,
    pub scratch: RefCell<Scratch>,
    pub pools: Vec<Pool>,
    /// This core's session with each upstream MCP server (by upstream index).
    pub mcp_sessions: RefCell<Vec<Option<super::upstream_mcp::UpstreamSession>>>,
    /// Tool catalogues advertised by upstream MCP servers (by upstream index).
    pub catalogues: RefCell<Vec<Option<super::upstream_mcp::Catalogue>>>,
    /// This core's batch of audit records.
    pub audit: RefCell<crate::audit::CoreAudit>,
    /// Decisions per tool, published to the metrics once a second.
    pub tool_counts: RefCell<std::collections::BTreeMap<String, u64>>,
    seq: Cell<u64>,
}

impl Gateway {
    pub fn new(core: usize, shared: Arc<Shared>) -> Self {
        let pools: Vec<Pool> = shared.upstreams.iter().cloned().map(Pool::new).collect();
        let n = pools.len();
        Gateway {
            mcp_sessions: RefCell::new(vec![None; n]),
            audit: RefCell::new(crate::audit::CoreAudit::new(Arc::clone(&shared.audit))),
            tool_counts: RefCell::new(std::collections::BTreeMap::new()),
            catalogues: RefCell::new((0..n).map(|_| None).collect()),
            core,
            cache: RefCell::new(EnvelopeCache::new(shared.envelope_cache_entries)),
            parser: RefCell::new(ArgParser::default()),
            scratch: RefCell::new(Scratch::default()),
            pools,
            seq: Cell::new(0),
            shared,
        }
    }

    pub fn next_id(&self) -> DecisionId {
        let n = self.seq.get() + 1;
        self.seq.set(n);
        DecisionId::new(self.shared.epoch, self.core, n)
    }

    /// Verifies the bearer envelope (through the cache) and checks revocation.
    /// A revoked envelope's claims come back with the refusal, so its audit line can
    /// say who tried.
    pub fn authenticate(&self, req: &Request<'_>, now: i64) -> Result<Rc<Claims>, Refused> {
        let token = req.bearer_bytes().ok_or((Denial::MissingEnvelope, None))?;
        let claims = self
            .cache
            .borrow_mut()
            .verify(&self.shared.verifier, token, now)
            .map_err(|e| (Denial::Envelope(e), None))?;
        if let Some(id) = self.shared.revocations.load().covering(&claims) {
            return Err((Denial::Revoked { jti: id.to_owned() }, Some(claims)));
        }
        Ok(claims)
    }

    fn route_not_found(&self, req: &Request<'_>, io: &mut ConnIo) -> Disposition {
        let msg = format!("no route for {} {}", req.head.method().as_str(), req.path());
        write_json_error(io, 404, "not_found", &msg, None);
        Disposition::KeepAlive
    }

    async fn tool_call(&self, req: Request<'_>, io: &mut ConnIo, tool_name: &str) -> Disposition {
        let started = Instant::now();
        let id = self.next_id();
        let now = clock::now_unix();
        let active: Arc<Active> = self.shared.active.load_full();
        let mut note = std::mem::take(&mut io.note);
        let subject = |claims| Subject {
            claims,
            tool: tool_name,
            resource: "",
            data_classes: &[],
            record_count: 0,
            via: "http",
        };
        let claims = match self.authenticate(&req, now) {
            Ok(c) => c,
            Err((d, known)) => {
                self.audit_decision(
                    &mut note,
                    &id,
                    false,
                    d.reason(),
                    &subject(known.as_deref()),
                    &active,
                    &no_policies,
                );
                self.audit_commit(&note, started, 0, false);
                io.note = note;
                return deny_http(io, &d, &id);
            }
        };
        let Some((tool, binding)) = active.tool(tool_name) else {
            let d = Denial::UnknownTool {
                tool: tool_name.to_owned(),
            };
            self.audit_decision(
                &mut note,
                &id,
                false,
                d.reason(),
                &subject(Some(&claims)),
                &active,
                &no_policies,
            );
            self.audit_commit(&note, started, 0, false);
            io.note = note;
            return deny_http(io, &d, &id);
        };
        let pool = &self.pools[binding.upstream];
        let decided = {
            let mut parser = self.parser.borrow_mut();
            let mut scratch = self.scratch.borrow_mut();
            let upreq = &mut io.upreq;
            let note = &mut note;
            parser.with_args(req.body, |args| {
                let mut subject = Subject {
                    claims: Some(&claims),
                    tool: tool_name,
                    resource: "",
                    data_classes: &tool.data_classes,
                    record_count: 0,
                    via: "http",
                };
                let outcome = (|| {
                    let args = args.map_err(|e| Denial::BadArguments(e.to_string()))?;
                    (subject.resource, subject.record_count) = attempted(tool, &args);
                    let facts = check_scope(&active.bundle, &claims, tool, &args);
                    if let Ok(f) = &facts {
                        subject.resource = f.resource_id;
                        subject.record_count = f.record_count;
                    }
                    let facts = facts?;
                    if !decide(&active.bundle, &mut scratch, &claims, tool, &facts, now) {
                        return Err(Denial::PolicyDenied);
                    }
                    if !self.audit_has_room() {
                        return Err(Denial::AuditUnavailable);
                    }
                    upreq.clear();
                    let target = Target {
                        method: &tool.method,
                        base_path: &pool.spec.base_path,
                        path_template: &tool.path,
                        host: &pool.spec.host_header,
                        credential_header: &binding.credential_header,
                        credential_prefix: &binding.credential_prefix,
                        credential: binding.credential.expose(),
                        decision_id: id.as_str(),
                        delegator: &claims.delegator_id,
                    };
                    write_request(
                        upreq,
                        &target,
                        &|k| args.scalar(k),
                        &mut args.keys(),
                        Some(req.body),
                    )
                    .map_err(|e| Denial::BadArguments(e.to_string()))
                })();
                match outcome {
                    Ok(()) => Ok(Held::new(
                        note,
                        subject.resource,
                        subject.record_count,
                        scratch.determining(),
                    )),
                    Err(d) => {
                        let by_policy =
                            matches!(d, Denial::PolicyDenied | Denial::AuditUnavailable);
                        let visit = |f: &mut dyn FnMut(&str)| {
                            if by_policy {
                                determining(&active.bundle, &scratch, f);
                            }
                        };
                        self.audit_decision(
                            note,
                            &id,
                            false,
                            d.reason(),
                            &subject,
                            &active,
                            &visit,
                        );
                        Err(d)
                    }
                }
            })
        };
        let held = match decided {
            Ok(h) => h,
            Err(d) => {
                self.audit_commit(&note, started, 0, false);
                io.note = note;
                return deny_http(io, &d, &id);
            }
        };
        let method = method_of(&tool.method);
        let mut extra = [0u8; 96];
        let extra_len = decision_header(&mut extra, &id);
        let mut carry = std::mem::take(&mut io.carry);
        let mut scrubber = binding
            .finder
            .as_ref()
            .map(|f| Scrubber::new(f, &mut carry));
        let mut upreq = std::mem::take(&mut io.upreq);
        let mut relay_scratch = std::mem::take(&mut io.scratch);
        let upstream_started = Instant::now();
        let ex = exchange(
            pool,
            &mut upreq,
            method,
            scrubber.as_mut(),
            self.shared.limits.max_upstream_head_bytes,
            Sink::Client {
                stream: &mut io.stream,
                wbuf: &mut io.wbuf,
                scratch: &mut relay_scratch,
                extra: &extra[..extra_len],
                close: req.head.close,
                http10: req.head.minor == 0,
                write_timeout: io.write_timeout,
                deadline: &mut io.deadline,
                relay_errors: true,
                strip: &[],
                rewrite: None,
            },
        )
        .await;
        let scrubbed = scrubber.map_or(0, |s| s.scrubbed);
        io.carry = carry;
        io.upreq = upreq;
        io.scratch = relay_scratch;
        let status = match &ex.result {
            Ok(out) => out.status,
            Err(e) => {
                self.metrics().upstream_error(e.reason());
                if ex.head_sent { 0 } else { e.status() }
            }
        };
        self.observe_call(started, upstream_started, scrubbed);
        let about = HeldSubject {
            claims: &claims,
            tool: tool_name,
            data_classes: &tool.data_classes,
            via: "http",
        };
        self.audit_held(&note, &held, &id, &about, &active, started, status);
        io.note = note;
        match ex.result {
            Ok(out) if out.client_close => Disposition::Close,
            Ok(_) => Disposition::KeepAlive,
            Err(_) if ex.head_sent => Disposition::Close,
            Err(e) => {
                write_json_error(io, e.status(), e.reason(), &e.to_string(), Some(&id));
                Disposition::KeepAlive
            }
        }
    }

    /// Latency metrics for an allowed call: gateway overhead and upstream time.
    pub fn observe_call(&self, started: Instant, upstream_started: Instant, scrubbed: u32) {
        let now = Instant::now();
        let total = now.duration_since(started).as_micros() as u64;
        let upstream = now.duration_since(upstream_started).as_micros() as u64;
        let m = self.metrics();
        m.upstream.observe(upstream);
        m.overhead.observe(total.saturating_sub(upstream));
        if scrubbed > 0 {
            m.scrubbed
                .fetch_add(u64::from(scrubbed), std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn metrics(&self) -> &crate::metrics::CoreMetrics {
        &self.shared.metrics.cores[self.core]
    }
}

/// Maps a tool registry method to the HTTP method enum (anything unknown is a POST).
pub fn method_of(m: &str) -> Method {
    match m {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        _ => Method::Post,
    }
}

/// Writes `X-Portcullis-Decision-Id: <id>\r\n` into `buf`, returning its length.
pub fn decision_header(buf: &mut [u8; 96], id: &DecisionId) -> usize {
    let parts: [&[u8]; 3] = [
        b"X-Portcullis-Decision-Id: ",
        id.as_str().as_bytes(),
        b"\r\n",
    ];
    let mut n = 0;
    for p in parts {
        buf[n..n + p.len()].copy_from_slice(p);
        n += p.len();
    }
    n
}

/// `{"error", "reason", "decision_id"}` with the status, keeping the connection open.
pub fn write_json_error(
    io: &mut ConnIo,
    status: u16,
    reason: &str,
    message: &str,
    id: Option<&DecisionId>,
) {
    let mut body = Vec::with_capacity(128 + message.len());
    body.extend_from_slice(b"{\"error\":");
    json_str(&mut body, message);
    body.extend_from_slice(b",\"reason\":");
    json_str(&mut body, reason);
    if let Some(id) = id {
        body.extend_from_slice(b",\"decision_id\":");
        json_str(&mut body, id.as_str());
    }
    body.push(b'}');
    let extra: &[(&str, &[u8])] = match id {
        Some(id) => &[("X-Portcullis-Decision-Id", id.as_str().as_bytes())],
        None => &[],
    };
    full_response(
        &mut io.wbuf,
        status,
        "application/json",
        extra,
        &body,
        false,
    );
}

pub fn deny_http(io: &mut ConnIo, d: &Denial, id: &DecisionId) -> Disposition {
    write_json_error(io, d.status(), d.reason(), &d.message(), Some(id));
    Disposition::KeepAlive
}

/// How often a core hands its audit batch to the writer when traffic is light.
const AUDIT_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
/// How often a core publishes its per-tool counts and cache counters.
const PUBLISH_EVERY: u32 = 50;

impl Gateway {
    fn publish(&self) {
        let m = self.metrics();
        let cache = self.cache.borrow();
        m.cache_hits
            .store(cache.hits, std::sync::atomic::Ordering::Relaxed);
        m.cache_misses
            .store(cache.misses, std::sync::atomic::Ordering::Relaxed);
        m.tools.store(Arc::new(self.tool_counts.borrow().clone()));
    }
}

impl Service for Gateway {
    fn start(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        monoio::spawn(async move {
            let mut tick = 0u32;
            loop {
                monoio::time::sleep(AUDIT_FLUSH_EVERY).await;
                let Some(gw) = weak.upgrade() else { return };
                gw.audit.borrow_mut().flush();
                tick += 1;
                if tick.is_multiple_of(PUBLISH_EVERY) {
                    gw.publish();
                }
            }
        });
    }

    fn stop(&self, cut_off: usize) {
        // A call cut off after its decision never commits its audit line: count it as a
        // lost record, so the loss is in the metrics and the log, never silent.
        if cut_off > 0 {
            self.shared
                .audit
                .dropped
                .fetch_add(cut_off as u64, std::sync::atomic::Ordering::Relaxed);
        }
        self.audit
            .borrow_mut()
            .flush_before_stop(std::time::Duration::from_secs(5));
        self.publish();
    }

    async fn call(&self, req: Request<'_>, io: &mut ConnIo) -> Disposition {
        let path = req.path();
        match (req.head.method(), path) {
            (Method::Post, p) if p.starts_with("/v1/tools/") => {
                let tool = &p["/v1/tools/".len()..];
                self.tool_call(req, io, tool).await
            }
            (_, p) if p.starts_with("/v1/tools/") => {
                write_json_error(io, 405, "method_not_allowed", "tool calls are POST", None);
                Disposition::KeepAlive
            }
            (Method::Post, "/v1/delegate") => super::delegate::handle(self, req, io),
            (_, "/mcp") => super::mcp::handle(self, req, io).await,
            (Method::Get, "/healthz") => {
                full_response(
                    &mut io.wbuf,
                    200,
                    "application/json",
                    &[],
                    b"{\"status\":\"ok\"}",
                    false,
                );
                Disposition::KeepAlive
            }
            _ => self.route_not_found(&req, io),
        }
    }
}
