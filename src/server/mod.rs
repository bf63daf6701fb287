//! A thread-per-core HTTP/1.1 server on monoio: one worker thread per core, each with its
//! own runtime and SO_REUSEPORT listener, serving connections with a `Service`. The
//! gateway, the demo backends and the load-test backends are all services on this core,
//! so the protocol handling is written (and hardened) once.

pub mod conn;
pub mod deadline;
pub mod fd_limit;
pub mod listen;
pub mod runtime;

pub use conn::{ConnIo, Disposition};
pub use runtime::Driver;

use crate::http::head::{RequestHead, field};
use monoio::net::TcpListener;
use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Size limits and deadlines applied to every connection.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_body_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A parsed request: the head's fields index into `buf`.
pub struct Request<'a> {
    pub head: &'a RequestHead,
    pub buf: &'a [u8],
    pub body: &'a [u8],
    pub peer: SocketAddr,
}

impl<'a> Request<'a> {
    pub fn path(&self) -> &'a str {
        self.head.path(self.buf)
    }

    pub fn target(&self) -> &'a str {
        field(self.buf, &self.head.target)
    }

    pub fn field(&self, r: &Option<std::ops::Range<usize>>) -> Option<&'a str> {
        r.as_ref().map(|r| field(self.buf, r))
    }

    /// The bearer token of the `Authorization` field, if it is one.
    pub fn bearer(&self) -> Option<&'a str> {
        std::str::from_utf8(self.bearer_bytes()?).ok()
    }

    /// The bearer token as raw bytes: an envelope is over a kilobyte, and a cache hit
    /// compares it with one already verified, so it need not be checked as UTF-8 first.
    pub fn bearer_bytes(&self) -> Option<&'a [u8]> {
        let v = &self.buf[self.head.authorization.clone()?];
        let sp = memchr::memchr(b' ', v)?;
        v[..sp]
            .eq_ignore_ascii_case(b"bearer")
            .then(|| v[sp + 1..].trim_ascii())
    }
}

/// Handles requests on one core. Not `Send`: each worker builds its own from a factory.
pub trait Service: 'static {
    fn call(&self, req: Request<'_>, io: &mut ConnIo) -> impl Future<Output = Disposition>;

    /// Called with the head, before the body is read: a service may refuse the request
    /// right there (writing its answer into `io.wbuf` and returning true), so a caller it
    /// would turn away anyway cannot make it read and buffer a large body first. The
    /// connection closes after an early refusal (the unread body is still on it).
    /// `req.body` is empty here.
    fn refuse_early(&self, _req: &Request<'_>, _io: &mut ConnIo) -> bool {
        false
    }

    /// Called once on the worker's runtime after the service is built: the place to spawn
    /// the core's background tasks (flush timers and the like).
    fn start(self: &Rc<Self>) {}

    /// Called when the worker has stopped accepting and drained: flush what must not be
    /// lost. `cut_off` requests were still in flight when draining gave up on them.
    fn stop(&self, _cut_off: usize) {}
}

/// A running server: its address and worker threads.
pub struct ServerHandle {
    pub addr: SocketAddr,
    pub driver: Driver,
    pub threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl ServerHandle {
    /// Stops accepting, lets in-flight requests finish (each worker waits up to `drain`),
    /// and waits for the workers to exit. Idle keep-alive connections are closed.
    pub fn shutdown(self) {
        self.begin_shutdown();
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Signals the workers to stop accepting and drain, without waiting.
    pub fn begin_shutdown(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Per-worker state shared by its connections.
pub struct Worker {
    pub limits: Limits,
    pub stop: Arc<AtomicBool>,
    /// Requests being served right now on this worker.
    pub in_flight: Cell<usize>,
}

impl Worker {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// How long a stopping worker waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` once per worker and starts `workers` threads, each serving with the
/// service `factory(core_index)` builds on that thread.
pub fn start<S, F>(
    name: &str,
    addr: SocketAddr,
    workers: usize,
    driver: Driver,
    limits: Limits,
    factory: F,
) -> std::io::Result<ServerHandle>
where
    S: Service,
    F: Fn(usize) -> S + Send + Sync + 'static,
{
    let workers = workers.max(1);
    let listeners = listen::bind_reuseport(addr, workers)?;
    let bound = listeners[0].local_addr()?;
    let driver = driver.resolve();
    let factory = Arc::new(factory);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::with_capacity(workers);
    for (core, l) in listeners.into_iter().enumerate() {
        l.set_nonblocking(true)?;
        let factory = Arc::clone(&factory);
        let limits = limits.clone();
        let stop = Arc::clone(&stop);
        let thread_name = format!("{name}-{core}");
        let t = std::thread::Builder::new()
            .name(thread_name.clone())
            .spawn(move || {
                let run = worker_loop(core, l, limits, stop, factory, thread_name);
                if let Err(e) = runtime::block_on(driver, run) {
                    crate::warn!("worker runtime failed to start: {e}");
                }
            })?;
        threads.push(t);
    }
    Ok(ServerHandle {
        addr: bound,
        driver,
        threads,
        stop,
    })
}

async fn worker_loop<S, F>(
    core: usize,
    l: std::net::TcpListener,
    limits: Limits,
    stop: Arc<AtomicBool>,
    factory: Arc<F>,
    thread_name: String,
) where
    S: Service,
    F: Fn(usize) -> S,
{
    let svc = Rc::new(factory(core));
    svc.start();
    let worker = Rc::new(Worker {
        limits,
        stop: Arc::clone(&stop),
        in_flight: Cell::new(0),
    });
    let listener = match TcpListener::from_std(l) {
        Ok(l) => l,
        Err(e) => {
            crate::warn!("{thread_name}: cannot register listener: {e}");
            return;
        }
    };
    let cancel = listen::cancel_on_stop(&stop);
    // At the open-file limit every accept fails until a connection closes: one line a
    // second says so, with how many failed since, instead of fifty.
    let mut accept_failed = crate::log::Repeating::default();
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, peer)) => {
                monoio::spawn(conn::serve(
                    Rc::clone(&svc),
                    stream,
                    peer,
                    Rc::clone(&worker),
                ));
            }
            Err(_) if worker.stopping() => break,
            Err(e) => {
                // Out of descriptors or a transient fault: back off briefly rather than
                // spin; the connections meanwhile wait in the listen backlog.
                if fd_limit::is_exhausted(&e) {
                    accept_failed.warn(format_args!(
                        "{thread_name}: accept failed: {e}; the gateway is at its open-file limit ({})",
                        fd_limit::RAISE_HINT
                    ));
                } else {
                    accept_failed.warn(format_args!("{thread_name}: accept failed: {e}"));
                }
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    drop(listener);
    let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
    while worker.in_flight.get() > 0 && std::time::Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    let cut = worker.in_flight.get();
    if cut > 0 {
        crate::warn!(
            "{thread_name}: {cut} request(s) still in flight after {}s of draining are cut off",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    svc.stop(cut);
}

/// Number of worker threads for `configured` (0 = one per available core).
pub fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_request;

    fn bearer_of(head: &[u8]) -> (Option<Vec<u8>>, Option<String>) {
        let h = match parse_request(head, 4096) {
            Ok(Some(h)) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(head)),
        };
        let req = Request {
            head: &h,
            buf: head,
            body: b"",
            peer: "127.0.0.1:1".parse().unwrap(),
        };
        (
            req.bearer_bytes().map(<[u8]>::to_vec),
            req.bearer().map(str::to_owned),
        )
    }

    #[test]
    fn the_bearer_token_is_found_by_scheme_in_any_case_and_trimmed() {
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let head =
                format!("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: {scheme}  a.b.c \r\n\r\n");
            let (bytes, text) = bearer_of(head.as_bytes());
            assert_eq!(bytes.as_deref(), Some(&b"a.b.c"[..]), "{scheme}");
            assert_eq!(text.as_deref(), Some("a.b.c"));
        }
        for other in ["Basic YWxhZGRpbjpvcGVu", "Bearer", "Token a.b.c"] {
            let head = format!("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: {other}\r\n\r\n");
            assert_eq!(bearer_of(head.as_bytes()), (None, None), "{other}");
        }
        assert_eq!(
            bearer_of(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            (None, None)
        );
    }

    #[test]
    fn a_token_that_is_not_utf8_is_bytes_only() {
        // obs-text passes the HTTP parser; the cache then refuses it as malformed.
        let (bytes, text) =
            bearer_of(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a.\xff.c\r\n\r\n");
        assert_eq!(bytes.as_deref(), Some(&b"a.\xff.c"[..]));
        assert_eq!(text, None);
    }
}
