//! Per-core keep-alive connection pools, one per upstream. Each worker thread owns its
//! pools outright (no locks, no cross-core sharing). A connection goes back to the pool
//! only after its response was read to the end; anything else (a timeout, an error, an
//! early drop, a response the upstream marked `close`) discards it, so a pooled
//! connection is never dirty.

use super::ProxyError;
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An upstream connection and its read buffer.
pub struct UpstreamConn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    /// Relayed header ranges of the current response, kept to reuse the allocation.
    pub relay: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    idle_since: Instant,
}

/// How to reach one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    pub name: String,
    pub addr: SocketAddr,
    pub host_header: String,
    pub base_path: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_idle: usize,
    /// Pooled connections idle longer than this are closed instead of reused: upstreams
    /// close idle keep-alive connections on their own schedule.
    pub idle_timeout: Duration,
    pub credential_header: String,
    pub credential_prefix: String,
}

pub struct Pool {
    pub spec: UpstreamSpec,
    idle: RefCell<Vec<UpstreamConn>>,
}

const UPSTREAM_BUF: usize = 16 * 1024;

impl Pool {
    pub fn new(spec: UpstreamSpec) -> Self {
        let max = spec.max_idle;
        Pool {
            spec,
            idle: RefCell::new(Vec::with_capacity(max)),
        }
    }

    /// A pooled connection (most recently used first) or a fresh one; the flag says
    /// whether it was reused, which decides whether a failure may be retried.
    pub async fn get(&self) -> Result<(UpstreamConn, bool), ProxyError> {
        let now = Instant::now();
        loop {
            let conn = self.idle.borrow_mut().pop();
            match conn {
                Some(c) if now.duration_since(c.idle_since) < self.spec.idle_timeout => {
                    return Ok((c, true));
                }
                Some(_) => continue,
                None => break,
            }
        }
        Ok((self.connect().await?, false))
    }

    pub async fn connect(&self) -> Result<UpstreamConn, ProxyError> {
        let s = &self.spec;
        let stream =
            match monoio::time::timeout(s.connect_timeout, TcpStream::connect_addr(s.addr)).await {
                Ok(Ok(st)) => st,
                Ok(Err(e)) => {
                    return Err(ProxyError::Connect {
                        upstream: s.name.clone(),
                        detail: e.to_string(),
                    });
                }
                Err(_) => {
                    return Err(ProxyError::ConnectTimeout {
                        upstream: s.name.clone(),
                        secs: s.connect_timeout.as_secs_f64(),
                    });
                }
            };
        let _ = stream.set_nodelay(true);
        Ok(UpstreamConn {
            stream,
            buf: Vec::with_capacity(UPSTREAM_BUF),
            relay: Vec::with_capacity(16),
            idle_since: Instant::now(),
        })
    }

    /// Returns a clean connection (its response read to the end) for reuse.
    pub fn put(&self, mut conn: UpstreamConn) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.spec.max_idle {
            conn.buf.clear();
            conn.idle_since = Instant::now();
            idle.push(conn);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }
}
