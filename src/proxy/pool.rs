//! Per-core keep-alive connection pools, one per upstream. Each worker thread owns its
//! pools outright (no locks, no cross-core sharing). A connection goes back to the pool
//! only after its response was read to the end; anything else (a timeout, an error, an
//! early drop, a response the upstream marked `close`) discards it, so a pooled
//! connection is never dirty.
//!
//! A connection can also go bad while it sits in the pool: the upstream closes idle
//! keep-alive connections on its own schedule (often after a few seconds), or a faulty
//! one sends bytes nobody asked for. Reusing such a connection turns the next call into a
//! 502 (a POST cannot be retried: the upstream may have acted on it) or, worse, hands the
//! stray bytes to the next caller as its response. So each connection keeps a second
//! handle on its socket (a `dup`), and before reuse a non-blocking `MSG_PEEK` checks that
//! nothing is waiting on it: no data and no end-of-stream. Only then is it reused.

use super::ProxyError;
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An upstream connection and its read buffer.
pub struct UpstreamConn {
    pub stream: TcpStream,
    /// A duplicate of the stream's socket (same open file, non-blocking), used only to
    /// peek at an idle connection before reuse.
    probe: socket2::Socket,
    pub buf: Vec<u8>,
    /// Relayed header ranges of the current response, kept to reuse the allocation.
    pub relay: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    /// The timer this connection's reads and writes share.
    pub deadline: crate::server::deadline::Deadline,
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
                Some(c)
                    if now.duration_since(c.idle_since) < self.spec.idle_timeout
                        && c.is_quiet() =>
                {
                    return Ok((c, true));
                }
                Some(_) => continue,
                None => break,
            }
        }
        Ok((self.connect().await?, false))
    }

    /// A fresh connection: a non-blocking connect on a socket of our own (so a duplicate
    /// handle can be kept for `is_quiet`), handed to the runtime, completion awaited as
    /// write readiness within `connect_timeout`.
    pub async fn connect(&self) -> Result<UpstreamConn, ProxyError> {
        let s = &self.spec;
        let fail = |e: std::io::Error| {
            if crate::server::fd_limit::is_exhausted(&e) {
                ProxyError::NoDescriptors {
                    upstream: s.name.clone(),
                }
            } else {
                ProxyError::Connect {
                    upstream: s.name.clone(),
                    detail: e.to_string(),
                }
            }
        };
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(s.addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(fail)?;
        sock.set_nonblocking(true).map_err(fail)?;
        let _ = sock.set_nodelay(true);
        match sock.connect(&s.addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(fail(e)),
        }
        let probe = sock.try_clone().map_err(fail)?;
        let stream = TcpStream::from_std(std::net::TcpStream::from(sock)).map_err(fail)?;
        match monoio::time::timeout(s.connect_timeout, stream.writable(false)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(fail(e)),
            Err(_) => {
                return Err(ProxyError::ConnectTimeout {
                    upstream: s.name.clone(),
                    secs: s.connect_timeout.as_secs_f64(),
                });
            }
        }
        // Writable also means "failed": the outcome of the connect is the socket error.
        if let Some(e) = probe.take_error().map_err(fail)? {
            return Err(fail(e));
        }
        Ok(UpstreamConn {
            stream,
            probe,
            buf: Vec::with_capacity(UPSTREAM_BUF),
            relay: Vec::with_capacity(16),
            deadline: crate::server::deadline::Deadline::new(),
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

impl UpstreamConn {
    /// Nothing is waiting on this idle connection: no stray bytes, no end-of-stream, no
    /// error. Anything else means it must not carry another request.
    fn is_quiet(&self) -> bool {
        let mut byte = [MaybeUninit::<u8>::uninit(); 1];
        matches!(self.probe.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}
