//! Load generation on monoio: worker threads, each with its share of keep-alive
//! connections. Open loop: every connection sends the requests the schedule assigns it at
//! their intended times and measures latency from those times (a connection still busy
//! with a slow answer sends late, and the lateness counts). Closed loop: each connection
//! sends its next request as soon as the previous answer arrives, for maximum throughput.

use crate::report::Stats;
use crate::schedule::{Schedule, wait_until};
use crate::workload::{Expect, Template};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use portcullis::http::ChunkedDecoder;
use portcullis::http::head::{Framing, Method, parse_response};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Constant rate, requests per second.
    Open(f64),
    /// As fast as answers come back, for the run's duration.
    Closed,
    /// As fast as answers come back, until this many requests have been sent (for
    /// instruction counts: a known number of calls).
    Requests(u64),
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub duration: Duration,
    pub connections: usize,
    pub threads: usize,
    pub mode: Mode,
    /// Longest wait for an answer before the request counts as a timeout.
    pub timeout: Duration,
    /// CPUs to pin the generator threads to (round robin), if any.
    pub cpus: Vec<usize>,
}

/// Where to send and what.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
    pub templates: Arc<Vec<Template>>,
}

/// Live counter for the progress line.
#[derive(Default)]
pub struct Progress {
    /// Requests taken from the budget of a `Mode::Requests` run.
    pub issued: AtomicU64,
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

/// Counts the answer as success, denial (by reason) or error (by kind), and notes when it
/// is not what the workload expected of this request.
fn classify(stats: &mut Stats, status: u16, body: &[u8], expect: &Expect) {
    let reason = find_reason(body);
    let got = match (status, reason) {
        (200..=299, None) => {
            stats.ok += 1;
            None
        }
        (400..=499, Some(r)) => {
            stats.denial(r);
            Some(r)
        }
        // JSON-RPC errors arrive with 200.
        (200..=299, Some(r)) => {
            stats.denial(r);
            Some(r)
        }
        (s, _) => {
            stats.error(&format!("http_{s}"));
            Some("error")
        }
    };
    let matches = match (expect, got) {
        (Expect::Allow, None) => true,
        (Expect::Deny(want), Some(r)) => *want == r,
        _ => false,
    };
    if !matches {
        let want = match expect {
            Expect::Allow => "allow",
            Expect::Deny(r) => r,
        };
        let key = format!("expected {want}, got {}", got.unwrap_or("allow"));
        *stats.unexpected.entry(key).or_default() += 1;
    }
}

/// The gateway's `"reason":"..."` (in a denial body or a JSON-RPC error's data).
fn find_reason(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"reason\":\"";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let end = body[at..].iter().position(|b| *b == b'"')? + at;
    std::str::from_utf8(&body[at..end]).ok()
}

enum Failure {
    Connect(std::io::ErrorKind),
    Timeout,
    Closed,
    Io(std::io::ErrorKind),
    Protocol,
}

impl Failure {
    fn kind(&self) -> String {
        match self {
            Failure::Connect(std::io::ErrorKind::ConnectionRefused) => "connect_refused".into(),
            Failure::Connect(k) => format!("connect_{k:?}").to_lowercase(),
            Failure::Timeout => "timeout".into(),
            Failure::Closed => "closed_by_peer".into(),
            Failure::Io(std::io::ErrorKind::ConnectionReset) => "reset".into(),
            Failure::Io(k) => format!("io_{k:?}").to_lowercase(),
            Failure::Protocol => "bad_response".into(),
        }
    }
}

struct Conn {
    stream: Option<TcpStream>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    body: Vec<u8>,
    relay: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

async fn read_more(
    stream: &mut TcpStream,
    rbuf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), Failure> {
    if rbuf.capacity() - rbuf.len() < 4096 {
        rbuf.reserve(16 * 1024);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let b = std::mem::take(rbuf);
    let (len, cap) = (b.len(), b.capacity());
    match monoio::time::timeout(left, stream.read(b.slice_mut(len..cap))).await {
        Ok((Ok(0), s)) => {
            *rbuf = s.into_inner();
            Err(Failure::Closed)
        }
        Ok((Ok(_), s)) => {
            *rbuf = s.into_inner();
            Ok(())
        }
        Ok((Err(e), s)) => {
            *rbuf = s.into_inner();
            Err(Failure::Io(e.kind()))
        }
        Err(_) => Err(Failure::Timeout),
    }
}

impl Conn {
    fn new() -> Conn {
        Conn {
            stream: None,
            rbuf: Vec::with_capacity(16 * 1024),
            wbuf: Vec::with_capacity(4096),
            body: Vec::new(),
            relay: Vec::new(),
        }
    }

    /// Sends one request and reads its answer: status and body.
    async fn exchange(
        &mut self,
        addr: SocketAddr,
        req: &[u8],
        timeout: Duration,
    ) -> Result<u16, Failure> {
        let deadline = Instant::now() + timeout;
        if self.stream.is_none() {
            let s = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(Failure::Connect(e.kind())),
                Err(_) => return Err(Failure::Timeout),
            };
            let _ = s.set_nodelay(true);
            self.stream = Some(s);
            self.rbuf.clear();
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(Failure::Closed);
        };
        self.wbuf.clear();
        self.wbuf.extend_from_slice(req);
        let w = std::mem::take(&mut self.wbuf);
        let (r, w) = stream.write_all(w).await;
        self.wbuf = w;
        r.map_err(|e| Failure::Io(e.kind()))?;
        let head = loop {
            if !self.rbuf.is_empty() {
                match parse_response(&self.rbuf, 64 * 1024, Method::Post, &mut self.relay) {
                    Ok(Some(h)) => break h,
                    Ok(None) => {}
                    Err(_) => return Err(Failure::Protocol),
                }
            }
            read_more(stream, &mut self.rbuf, deadline).await?;
        };
        self.relay = head.relay;
        self.body.clear();
        let mut pos = head.len;
        match head.framing {
            Framing::None => {}
            Framing::Length(n) => {
                let end = head.len + n as usize;
                while self.rbuf.len() < end {
                    read_more(stream, &mut self.rbuf, deadline).await?;
                }
                self.body.extend_from_slice(&self.rbuf[pos..end]);
                pos = end;
            }
            Framing::Chunked => {
                let mut dec = ChunkedDecoder::new(u64::MAX);
                loop {
                    let body = &mut self.body;
                    pos += dec
                        .decode(&self.rbuf[pos..], |d| body.extend_from_slice(d))
                        .map_err(|_| Failure::Protocol)?;
                    if dec.is_done() {
                        break;
                    }
                    read_more(stream, &mut self.rbuf, deadline).await?;
                }
            }
            Framing::UntilClose => {
                loop {
                    match read_more(stream, &mut self.rbuf, deadline).await {
                        Ok(()) => {}
                        Err(Failure::Closed) => break,
                        Err(e) => return Err(e),
                    }
                }
                self.body.extend_from_slice(&self.rbuf[pos..]);
                pos = self.rbuf.len();
                self.stream = None;
            }
        }
        self.rbuf.drain(..pos);
        if head.close {
            self.stream = None;
        }
        Ok(head.status)
    }
}

/// What every connection task of a run shares.
struct Shared {
    target: Target,
    cfg: RunConfig,
    schedule: Schedule,
    conns: u64,
    deadline: Instant,
    progress: Arc<Progress>,
}

async fn connection(sh: Rc<Shared>, conn_id: u64, stats: Rc<RefCell<Stats>>) {
    let mut c = Conn::new();
    let templates = &sh.target.templates;
    let open = matches!(sh.cfg.mode, Mode::Open(_));
    let mut i = conn_id;
    if !open {
        wait_until(sh.schedule.start).await;
    }
    loop {
        let intended = if open {
            if i >= sh.schedule.total {
                break;
            }
            let t = sh.schedule.at(i);
            wait_until(t).await;
            t
        } else if let Mode::Requests(n) = sh.cfg.mode {
            if sh.progress.issued.fetch_add(1, Ordering::Relaxed) >= n {
                break;
            }
            Instant::now()
        } else {
            let now = Instant::now();
            if now >= sh.deadline {
                break;
            }
            now
        };
        let late = Instant::now().saturating_duration_since(intended) > Duration::from_millis(1);
        // Spread requests over the templates without lining up with the connection count.
        let t = &templates[(i.wrapping_mul(2_654_435_761) % templates.len() as u64) as usize];
        let result = c.exchange(sh.target.addr, &t.bytes, sh.cfg.timeout).await;
        let latency = Instant::now().saturating_duration_since(intended);
        let refused = matches!(result, Err(Failure::Connect(_)));
        {
            let mut s = stats.borrow_mut();
            s.sent += 1;
            s.late_sends += u64::from(late);
            match result {
                Ok(status) => {
                    s.record(latency);
                    classify(&mut s, status, &c.body, &t.expect);
                }
                Err(f) => {
                    s.error(&f.kind());
                    sh.progress.errors.fetch_add(1, Ordering::Relaxed);
                    c.stream = None;
                }
            }
        }
        sh.progress.done.fetch_add(1, Ordering::Relaxed);
        if refused && !open {
            // A closed-loop run against a dead target would spin: pace the retries.
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        i += sh.conns;
    }
}

/// Runs one target with `cfg`, reporting a progress line to stderr when `progress_line`.
pub fn run(target: &Target, cfg: &RunConfig, progress_line: bool) -> Stats {
    let threads = cfg.threads.clamp(1, cfg.connections.max(1));
    let conns = cfg.connections.max(1) as u64;
    let rate = match cfg.mode {
        Mode::Open(r) => r,
        Mode::Closed | Mode::Requests(_) => 1.0,
    };
    // Start a little in the future so every thread is ready at the first intended time.
    let lead = Duration::from_millis(50);
    let start = Instant::now() + lead;
    let schedule = Schedule::new(start, rate, cfg.duration);
    let deadline = start + cfg.duration;
    let progress = Arc::new(Progress::default());
    let finished = Arc::new(AtomicBool::new(false));
    let reporter = progress_line.then(|| {
        let (p, finished, name) = (
            Arc::clone(&progress),
            Arc::clone(&finished),
            target.name.clone(),
        );
        let of = match cfg.mode {
            Mode::Open(_) => format!("/{}", schedule.total),
            Mode::Requests(n) => format!("/{n}"),
            Mode::Closed => String::new(),
        };
        std::thread::spawn(move || {
            let mut last = 0;
            let mut tick = Instant::now();
            while !finished.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(100));
                if tick.elapsed() < Duration::from_secs(1) && !finished.load(Ordering::Acquire) {
                    continue;
                }
                let done = p.done.load(Ordering::Relaxed);
                let per_s = (done - last) as f64 / tick.elapsed().as_secs_f64();
                let errs = p.errors.load(Ordering::Relaxed);
                eprint!("\r  {name}: {done}{of} requests, {per_s:.0}/s, {errs} errors      ");
                last = done;
                tick = Instant::now();
            }
            eprintln!();
        })
    });
    let mut handles = Vec::new();
    for t in 0..threads {
        let sh = Shared {
            target: target.clone(),
            cfg: cfg.clone(),
            schedule,
            conns,
            deadline,
            progress: Arc::clone(&progress),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("lt-client-{t}"))
            .spawn(move || {
                if !sh.cfg.cpus.is_empty() {
                    let _ = monoio::utils::bind_to_cpu_set([sh.cfg.cpus[t % sh.cfg.cpus.len()]]);
                }
                let stats = Rc::new(RefCell::new(Stats::new(&sh.target.name)));
                let sh = Rc::new(sh);
                let s2 = Rc::clone(&stats);
                let run = async move {
                    let tasks: Vec<_> = (t as u64..conns)
                        .step_by(threads)
                        .map(|c| monoio::spawn(connection(Rc::clone(&sh), c, Rc::clone(&s2))))
                        .collect();
                    for task in tasks {
                        task.await;
                    }
                };
                if let Err(e) =
                    portcullis::server::runtime::block_on(portcullis::server::Driver::Auto, run)
                {
                    stats
                        .borrow_mut()
                        .error(&format!("runtime_{:?}", e.kind()).to_lowercase());
                }
                stats.replace(Stats::new(""))
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => eprintln!("cannot start generator thread {t}: {e}"),
        }
    }
    let mut total = Stats::new(&target.name);
    for h in handles {
        match h.join() {
            Ok(s) => total.merge(&s),
            Err(_) => total.error("generator_thread_panicked"),
        }
    }
    let ran = start.elapsed();
    finished.store(true, Ordering::Release);
    if let Some(r) = reporter {
        let _ = r.join();
    }
    // Open loop: the offered load's window, or longer if answers came in late.
    total.elapsed = match cfg.mode {
        Mode::Open(_) => cfg.duration.max(ran),
        Mode::Closed | Mode::Requests(_) => ran,
    };
    total
}

/// Why a probe call failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProbeError(String);

/// Sends one request (the first template) and returns the answer's status: a check that
/// the target is up and serving before it is measured.
pub fn probe(target: &Target) -> Result<u16, ProbeError> {
    let t = target.clone();
    let joined = std::thread::spawn(move || {
        portcullis::server::runtime::block_on(portcullis::server::Driver::Auto, async move {
            let mut c = Conn::new();
            let Some(tpl) = t.templates.first() else {
                return Err(ProbeError("no requests to send".into()));
            };
            c.exchange(t.addr, &tpl.bytes, Duration::from_secs(5))
                .await
                .map_err(|f| {
                    ProbeError(match f {
                        Failure::Connect(std::io::ErrorKind::ConnectionRefused) => {
                            "connection refused: is it running, and on this address?".into()
                        }
                        Failure::Timeout => "no answer within 5 s".into(),
                        f => format!("the call failed: {}", f.kind()),
                    })
                })
        })
    })
    .join();
    match joined {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(ProbeError(format!("cannot start a runtime: {e}"))),
        Err(_) => Err(ProbeError("the probe thread panicked".into())),
    }
}

/// Sends each template once, sequentially, so the gateway's envelope cache and upstream
/// pools are warm before measuring (first calls pay an Ed25519 verification).
pub fn warm_up(target: &Target) {
    let t = target.clone();
    let _ = std::thread::spawn(move || {
        let _ =
            portcullis::server::runtime::block_on(portcullis::server::Driver::Auto, async move {
                let mut c = Conn::new();
                for tpl in t.templates.iter() {
                    let _ = c.exchange(t.addr, &tpl.bytes, Duration::from_secs(5)).await;
                }
            });
    })
    .join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_found_in_http_and_json_rpc_bodies() {
        assert_eq!(
            find_reason(br#"{"error":"x","reason":"drift","decision_id":"d"}"#),
            Some("drift")
        );
        assert_eq!(find_reason(br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32003,"data":{"reason":"record_limit"}}}"#), Some("record_limit"));
        assert_eq!(find_reason(b"{}"), None);
    }
}
