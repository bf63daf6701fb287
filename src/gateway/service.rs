//! The gateway on one core: routing, authentication (envelope through the per-core cache,
//! then revocation), denial responses, and the plain HTTP tool-call path
//! (`POST /v1/tools/{tool}`). MCP and delegation live in their own modules.

use super::state::{Active, Shared};
use crate::clock;
use crate::decision::Scratch;
use crate::envelope::{Claims, EnvelopeCache};
use crate::http::head::Method;
use crate::http::write::{full_response, json_str};
use crate::pipeline::args::ArgParser;
use crate::pipeline::authorize::{check_scope, decide};
use crate::pipeline::deny::{DecisionId, Denial};
use crate::proxy::exchange::{Sink, exchange};
use crate::proxy::pool::Pool;
use crate::proxy::request::{Target, write_request};
use crate::proxy::scrub::Scrubber;
use crate::server::{ConnIo, Disposition, Request, Service};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

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
    seq: Cell<u64>,
}

impl Gateway {
    pub fn new(core: usize, shared: Arc<Shared>) -> Self {
        let pools: Vec<Pool> = shared.upstreams.iter().cloned().map(Pool::new).collect();
        let n = pools.len();
        Gateway {
            mcp_sessions: RefCell::new(vec![None; n]),
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
    pub fn authenticate(&self, req: &Request<'_>, now: i64) -> Result<Rc<Claims>, Denial> {
        let token = req.bearer().ok_or(Denial::MissingEnvelope)?;
        let claims = self
            .cache
            .borrow_mut()
            .verify(&self.shared.verifier, token, now)
            .map_err(Denial::Envelope)?;
        if let Some(id) = self.shared.revocations.load().covering(&claims) {
            return Err(Denial::Revoked { jti: id.to_owned() });
        }
        Ok(claims)
    }

    fn route_not_found(&self, req: &Request<'_>, io: &mut ConnIo) -> Disposition {
        let msg = format!("no route for {} {}", req.head.method().as_str(), req.path());
        write_json_error(io, 404, "not_found", &msg, None);
        Disposition::KeepAlive
    }

    async fn tool_call(&self, req: Request<'_>, io: &mut ConnIo, tool_name: &str) -> Disposition {
        let id = self.next_id();
        let now = clock::now_unix();
        let claims = match self.authenticate(&req, now) {
            Ok(c) => c,
            Err(d) => return deny_http(io, &d, &id),
        };
        let active: Arc<Active> = self.shared.active.load_full();
        let Some(tool) = active.bundle.tool(tool_name) else {
            return deny_http(
                io,
                &Denial::UnknownTool {
                    tool: tool_name.to_owned(),
                },
                &id,
            );
        };
        let Some(binding) = active.bindings.get(tool_name) else {
            return deny_http(
                io,
                &Denial::UnknownTool {
                    tool: tool_name.to_owned(),
                },
                &id,
            );
        };
        let pool = &self.pools[binding.upstream];
        let decided = {
            let mut parser = self.parser.borrow_mut();
            let mut scratch = self.scratch.borrow_mut();
            let upreq = &mut io.upreq;
            parser.with_args(req.body, |args| {
                let args = args.map_err(|e| Denial::BadArguments(e.to_string()))?;
                let facts = check_scope(&active.bundle, &claims, tool, &args)?;
                if !decide(&active.bundle, &mut scratch, &claims, tool, &facts, now) {
                    return Err(Denial::PolicyDenied);
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
            })
        };
        if let Err(d) = decided {
            return deny_http(io, &d, &id);
        }
        let method = match tool.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            _ => Method::Post,
        };
        let mut extra = [0u8; 96];
        let extra_len = decision_header(&mut extra, &id);
        let mut carry = std::mem::take(&mut io.carry);
        let mut scrubber = binding
            .finder
            .as_ref()
            .map(|f| Scrubber::new(f, &mut carry));
        let mut upreq = std::mem::take(&mut io.upreq);
        let mut relay_scratch = std::mem::take(&mut io.scratch);
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
                relay_errors: true,
            },
        )
        .await;
        drop(scrubber);
        io.carry = carry;
        io.upreq = upreq;
        io.scratch = relay_scratch;
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

impl Service for Gateway {
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
