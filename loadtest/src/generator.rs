//! Load generation on monoio: worker threads, each with its share of keep-alive
//! connections. Open loop: every connection sends the requests the schedule assigns it at
//! their intended times and measures latency from those times (a connection still busy
//! with a slow answer sends late, and the lateness counts). Closed loop: each connection
//! sends its next request as soon as the previous answer arrives, for maximum throughput.

use crate::report::Stats;
use crate::schedule::{Schedule, Yielder, wait_until};
use crate::workload::{Expect, Template};
use bytes::Bytes;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncWriteRentExt, CancelableAsyncReadRent};
use monoio::net::TcpStream;
use portcullis::http::ChunkedDecoder;
use portcullis::http::head::{Framing, Method, parse_response};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Poll, Waker};
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
    /// Keep latency by completion time in intervals this long (for the `.hlog`).
    pub timeline: Option<Duration>,
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
/// `at`: when it ended, into the run.
fn classify(stats: &mut Stats, status: u16, body: &[u8], expect: &Expect, at: Duration) {
    let reason = find_reason(body);
    let mut kind = [0; 10];
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
            // Named by its kind, so an unexpected answer says which error it was.
            let k = http_kind(s, &mut kind);
            stats.error_at(k, at);
            Some(k)
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
        stats.unexpected_answer(want, got.unwrap_or("allow"));
    }
}

/// `http_503`: the error kind of an unexpected status, formatted on the stack (a
/// failing target answers this once per request).
fn http_kind(status: u16, buf: &mut [u8; 10]) -> &str {
    use std::io::Write;
    let mut w = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(w, "http_{status}"); // at most 10 bytes: "http_" and five digits
    let len = w.position() as usize;
    std::str::from_utf8(&buf[..len]).unwrap_or("http_error")
}

/// The gateway's `"reason":"..."` (in a denial body or a JSON-RPC error's data).
fn find_reason(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"reason\":\"";
    let at = memchr::memmem::find(body, KEY)? + KEY.len();
    let end = memchr::memchr(b'"', &body[at..])? + at;
    std::str::from_utf8(&body[at..end]).ok()
}

enum Failure {
    Connect(std::io::ErrorKind),
    /// The generator itself is at its open-file limit: not the target's fault.
    NoDescriptors,
    Timeout,
    Closed,
    Io(std::io::ErrorKind),
    Protocol,
}

impl Failure {
    /// The kind's name; formatted (allocated) only for the rare io error kinds.
    fn kind(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Failure::Connect(std::io::ErrorKind::ConnectionRefused) => "connect_refused".into(),
            Failure::Connect(k) => format!("connect_{k:?}").to_lowercase().into(),
            Failure::NoDescriptors => "generator_out_of_descriptors".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Closed => "closed_by_peer".into(),
            Failure::Io(std::io::ErrorKind::ConnectionReset) => "reset".into(),
            Failure::Io(k) => format!("io_{k:?}").to_lowercase().into(),
            Failure::Protocol => "bad_response".into(),
        }
    }
}

struct Conn {
    slot: Rc<Slot>,
    stream: Option<TcpStream>,
    rbuf: Vec<u8>,
    body: Vec<u8>,
    relay: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

/// Reads more of the answer, failing at `deadline`. Two mechanisms enforce it, because
/// monoio fires timers only when its run queue empties, which a pacer spinning for a
/// precise send time prevents: the timer (when the thread is idle enough to park) and the
/// pacer's watchdog, which cancels the read through `slot` (when it is spinning).
async fn read_more(
    stream: &mut TcpStream,
    rbuf: &mut Vec<u8>,
    deadline: Instant,
    slot: &Slot,
) -> Result<(), Failure> {
    if rbuf.capacity() - rbuf.len() < 4096 {
        rbuf.reserve(16 * 1024);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let b = std::mem::take(rbuf);
    let (len, cap) = (b.len(), b.capacity());
    let handle = slot.canceller.borrow().handle();
    match monoio::time::timeout(left, stream.cancelable_read(b.slice_mut(len..cap), handle)).await {
        Ok((Ok(0), s)) => {
            *rbuf = s.into_inner();
            Err(Failure::Closed)
        }
        Ok((Ok(_), s)) => {
            *rbuf = s.into_inner();
            Ok(())
        }
        Ok((Err(_), s)) if slot.fired.get() => {
            *rbuf = s.into_inner();
            Err(Failure::Timeout)
        }
        Ok((Err(e), s)) => {
            *rbuf = s.into_inner();
            Err(Failure::Io(e.kind()))
        }
        Err(_) => Err(Failure::Timeout),
    }
}

/// A connection's entry in its thread's watchdog: when its current exchange must end,
/// and how to cancel the read it is waiting on.
#[derive(Default)]
struct Slot {
    deadline: Cell<Option<Instant>>,
    canceller: RefCell<monoio::io::Canceller>,
    fired: Cell<bool>,
}

impl Slot {
    /// Cancels the pending read if the deadline has passed.
    fn check(&self, now: Instant) {
        if self.deadline.get().is_some_and(|d| now >= d) && !self.fired.get() {
            self.fired.set(true);
            let c = self.canceller.replace(monoio::io::Canceller::new());
            let _ = c.cancel();
        }
    }
}

impl Conn {
    fn new() -> Conn {
        Conn {
            slot: Rc::new(Slot::default()),
            stream: None,
            rbuf: Vec::with_capacity(16 * 1024),
            body: Vec::new(),
            relay: Vec::new(),
        }
    }

    /// Sends one request and reads its answer: status and body.
    async fn exchange(
        &mut self,
        addr: SocketAddr,
        req: &Bytes,
        timeout: Duration,
    ) -> Result<u16, Failure> {
        let deadline = Instant::now() + timeout;
        self.slot.fired.set(false);
        self.slot.deadline.set(Some(deadline));
        let r = self.exchange_until(addr, req, timeout, deadline).await;
        self.slot.deadline.set(None);
        r
    }

    async fn exchange_until(
        &mut self,
        addr: SocketAddr,
        req: &Bytes,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<u16, Failure> {
        if self.stream.is_none() {
            let s = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(if portcullis::server::fd_limit::is_exhausted(&e) {
                        Failure::NoDescriptors
                    } else {
                        Failure::Connect(e.kind())
                    });
                }
                Err(_) => return Err(Failure::Timeout),
            };
            let _ = s.set_nodelay(true);
            self.stream = Some(s);
            self.rbuf.clear();
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(Failure::Closed);
        };
        // The template's bytes go out as they are: a reference count, not a copy.
        let (r, _) = stream.write_all(req.clone()).await;
        r.map_err(|e| Failure::Io(e.kind()))?;
        let head = loop {
            if !self.rbuf.is_empty() {
                match parse_response(&self.rbuf, 64 * 1024, Method::Post, &mut self.relay) {
                    // RFC 9110 §15.2: a client parses any 1xx before the final answer,
                    // asked for or not (103 Early Hints comes unasked); its latency is
                    // the final answer's.
                    Ok(Some(h)) if (100..200).contains(&h.status) && h.status != 101 => {
                        self.rbuf.drain(..h.len);
                        continue;
                    }
                    Ok(Some(h)) => break h,
                    Ok(None) => {}
                    Err(_) => return Err(Failure::Protocol),
                }
            }
            read_more(stream, &mut self.rbuf, deadline, &self.slot).await?;
        };
        self.relay = head.relay;
        self.body.clear();
        let mut pos = head.len;
        match head.framing {
            Framing::None => {}
            Framing::Length(n) => {
                let end = head.len + n as usize;
                while self.rbuf.len() < end {
                    read_more(stream, &mut self.rbuf, deadline, &self.slot).await?;
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
                    read_more(stream, &mut self.rbuf, deadline, &self.slot).await?;
                }
            }
            Framing::UntilClose => {
                loop {
                    match read_more(stream, &mut self.rbuf, deadline, &self.slot).await {
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
        // After a 101 the connection speaks something else: it is not reused.
        if head.close || head.status == 101 {
            self.stream = None;
        }
        Ok(head.status)
    }
}

/// What every connection task of a thread shares.
struct Shared {
    target: Target,
    cfg: RunConfig,
    schedule: Schedule,
    deadline: Instant,
    progress: Arc<Progress>,
    /// Open loop: requests due and not yet taken by a connection, oldest first.
    due: RefCell<VecDeque<u64>>,
    /// Connections waiting for a due request.
    idle: RefCell<Vec<Waker>>,
    /// The pacer has released every request of this thread.
    released: Cell<bool>,
    slots: RefCell<Vec<Rc<Slot>>>,
    yielder: Rc<Yielder>,
}

/// The next due request, or `None` once the pacer is done and the queue is empty.
fn next_due(sh: &Shared) -> impl Future<Output = Option<u64>> + '_ {
    std::future::poll_fn(move |cx| {
        if crate::stop::requested() {
            // Stopped: what is due stays unsent (and counted), however long the backlog.
            return Poll::Ready(None);
        }
        if let Some(i) = sh.due.borrow_mut().pop_front() {
            return Poll::Ready(Some(i));
        }
        if sh.released.get() {
            return Poll::Ready(None);
        }
        sh.idle.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    })
}

/// Open loop, one per thread: releases this thread's requests (`first`, `first +
/// stride`, ...) at their intended times into the due queue, where any idle connection
/// takes the oldest. A request no connection is free for waits there, its latency still
/// counting from the intended time. While spinning it also runs the watchdog.
async fn pacer(sh: Rc<Shared>, first: u64, stride: u64) {
    let mut i = first;
    let mut last_watch = Instant::now();
    while i < sh.schedule.total {
        let t = sh.schedule.at(i);
        wait_until(t, &sh.yielder, || {
            let now = Instant::now();
            if now - last_watch >= Duration::from_micros(250) {
                last_watch = now;
                for slot in sh.slots.borrow().iter() {
                    slot.check(now);
                }
            }
        })
        .await;
        if crate::stop::requested() {
            break;
        }
        sh.due.borrow_mut().push_back(i);
        // Wake one waiting connection; one that finds the queue already empty waits again.
        let w = sh.idle.borrow_mut().pop();
        if let Some(w) = w {
            w.wake();
        }
        i += stride;
    }
    sh.released.set(true);
    sh.yielder.stop();
    let waiting: Vec<Waker> = sh.idle.borrow_mut().drain(..).collect();
    for w in waiting {
        w.wake();
    }
}

async fn connection(sh: Rc<Shared>, stats: Rc<RefCell<Stats>>) {
    let mut c = Conn::new();
    sh.slots.borrow_mut().push(Rc::clone(&c.slot));
    let templates = &sh.target.templates;
    let open = matches!(sh.cfg.mode, Mode::Open(_));
    if !open {
        // Millisecond precision is enough to start a closed loop.
        monoio::time::sleep(sh.schedule.start.saturating_duration_since(Instant::now())).await;
    }
    let mut n = 0u64;
    // Stopped: no new request in any mode (an open-loop connection waiting for one is
    // told by `next_due`).
    while !crate::stop::requested() {
        let (i, intended) = match sh.cfg.mode {
            Mode::Open(_) => match next_due(&sh).await {
                Some(i) => (i, sh.schedule.at(i)),
                None => break,
            },
            Mode::Requests(total) => {
                let i = sh.progress.issued.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                (i, Instant::now())
            }
            Mode::Closed => {
                let now = Instant::now();
                if now >= sh.deadline {
                    break;
                }
                n += 1;
                (n, now)
            }
        };
        let late = Instant::now().saturating_duration_since(intended) > Duration::from_millis(1);
        // Spread requests over the templates without lining up with the connection count.
        let t = &templates[(i.wrapping_mul(2_654_435_761) % templates.len() as u64) as usize];
        let result = c.exchange(sh.target.addr, &t.bytes, sh.cfg.timeout).await;
        let done = Instant::now();
        let latency = done.saturating_duration_since(intended);
        let refused = matches!(result, Err(Failure::Connect(_) | Failure::NoDescriptors));
        {
            let mut s = stats.borrow_mut();
            s.sent += 1;
            s.late_sends += u64::from(late);
            match result {
                Ok(status) => {
                    let at = done.saturating_duration_since(sh.schedule.start);
                    s.record_at(latency, at);
                    classify(&mut s, status, &c.body, &t.expect, at);
                }
                Err(f) => {
                    s.error_at(&f.kind(), done.saturating_duration_since(sh.schedule.start));
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
    }
}

/// Runs one target with `cfg`, reporting a progress line to stderr when `progress_line`.
pub fn run(target: &Target, cfg: &RunConfig, progress_line: bool) -> Stats {
    if target.templates.is_empty() {
        // Nothing to send (every request picks a template): say so, do not divide by zero.
        let mut s = Stats::new(&target.name);
        s.error("no_requests");
        return s;
    }
    let threads = cfg.threads.clamp(1, cfg.connections.max(1));
    let conns = cfg.connections.max(1) as u64;
    let rate = match cfg.mode {
        Mode::Open(r) => r,
        Mode::Closed | Mode::Requests(_) => 1.0,
    };
    // Start a little in the future so every thread is ready at the first intended time.
    let lead = Duration::from_millis(50);
    let start = Instant::now() + lead;
    let start_wall = std::time::SystemTime::now() + lead;
    let schedule = Schedule::new(start, rate, cfg.duration);
    let deadline = start + cfg.duration;
    let progress = Arc::new(Progress::default());
    let finished = Arc::new(AtomicBool::new(false));
    // A progress line rewrites itself with `\r`: only on a terminal, not into a log.
    use std::io::IsTerminal;
    let reporter = (progress_line && std::io::stderr().is_terminal()).then(|| {
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
        let (target, cfg, progress) = (target.clone(), cfg.clone(), Arc::clone(&progress));
        let spawned = std::thread::Builder::new()
            .name(format!("lt-client-{t}"))
            .spawn(move || {
                let sh = Shared {
                    target,
                    cfg,
                    schedule,
                    deadline,
                    progress,
                    due: RefCell::new(VecDeque::new()),
                    idle: RefCell::new(Vec::new()),
                    released: Cell::new(false),
                    slots: RefCell::new(Vec::new()),
                    yielder: Rc::new(Yielder::default()),
                };
                if !sh.cfg.cpus.is_empty() {
                    let _ = monoio::utils::bind_to_cpu_set([sh.cfg.cpus[t % sh.cfg.cpus.len()]]);
                }
                let mut own = Stats::new(&sh.target.name);
                own.timeline = sh
                    .cfg
                    .timeline
                    .map(|width| crate::timeline::Timeline::new(start_wall, width));
                let stats = Rc::new(RefCell::new(own));
                let open = matches!(sh.cfg.mode, Mode::Open(_));
                let sh = Rc::new(sh);
                let s2 = Rc::clone(&stats);
                let run = async move {
                    let pacer = open.then(|| {
                        monoio::spawn(Rc::clone(&sh.yielder).helper());
                        monoio::spawn(pacer(Rc::clone(&sh), t as u64, threads as u64))
                    });
                    let tasks: Vec<_> = (t as u64..conns)
                        .step_by(threads)
                        .map(|_| monoio::spawn(connection(Rc::clone(&sh), Rc::clone(&s2))))
                        .collect();
                    if let Some(p) = pacer {
                        p.await;
                    }
                    for task in tasks {
                        task.await;
                    }
                    s2.borrow_mut().unsent_at_stop += sh.due.borrow().len() as u64;
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
    total.stopped_early = crate::stop::requested();
    // Open loop: the offered load's window, or longer if answers came in late; a run
    // stopped early covers only the time it ran.
    total.elapsed = match cfg.mode {
        Mode::Open(_) if !total.stopped_early => cfg.duration.max(ran),
        Mode::Open(_) | Mode::Closed | Mode::Requests(_) => ran,
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
                        Failure::Protocol => "it answered, but not with an HTTP/1.x response: is this the target's plaintext HTTP port?".into(),
                        Failure::Closed => "it closed the connection without answering".into(),
                        Failure::Io(std::io::ErrorKind::ConnectionReset) => {
                            "it reset the connection without answering".into()
                        }
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
                    if crate::stop::requested() {
                        break;
                    }
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
    fn a_spinning_pacer_still_times_out_a_silent_upstream() {
        // A listener that accepts (the kernel does) and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let (result, spinner_still_running) =
            portcullis::server::runtime::block_on(portcullis::server::Driver::Auto, async move {
                let yielder = Rc::new(Yielder::default());
                monoio::spawn(Rc::clone(&yielder).helper());
                let mut c = Conn::new();
                let slot = Rc::clone(&c.slot);
                let spinning = Rc::new(Cell::new(true));
                let (y, sp) = (Rc::clone(&yielder), Rc::clone(&spinning));
                // While this spins, monoio never parks, so its timers cannot fire: only the
                // watchdog can end the exchange before the spin does.
                let spinner = monoio::spawn(async move {
                    let end = Instant::now() + Duration::from_millis(1500);
                    while Instant::now() < end {
                        slot.check(Instant::now());
                        y.yield_back().await;
                    }
                    sp.set(false);
                    y.stop();
                });
                let r = c
                    .exchange(
                        addr,
                        &Bytes::from_static(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                        Duration::from_millis(100),
                    )
                    .await;
                let still = spinning.get();
                spinner.await;
                (r.map_err(|f| f.kind().into_owned()), still)
            })
            .unwrap();
        assert_eq!(result, Err("timeout".to_string()));
        assert!(
            spinner_still_running,
            "the timeout fired before the spin ended, by the watchdog"
        );
        drop(silent);
    }

    #[test]
    fn status_error_kinds_are_named_by_their_code() {
        for (s, k) in [
            (503, "http_503"),
            (0, "http_0"),
            (65535, "http_65535"),
            (404, "http_404"),
        ] {
            assert_eq!(http_kind(s, &mut [0; 10]), k);
        }
    }

    #[test]
    fn an_unexpected_answer_names_what_came_instead() {
        let mut s = Stats::new("t");
        for _ in 0..3 {
            classify(&mut s, 404, b"not found", &Expect::Allow, Duration::ZERO);
        }
        classify(&mut s, 200, b"{}", &Expect::Deny("drift"), Duration::ZERO);
        classify(
            &mut s,
            403,
            br#"{"reason":"drift"}"#,
            &Expect::Deny("drift"),
            Duration::ZERO,
        );
        assert_eq!(s.errors.get("http_404"), Some(&3));
        assert_eq!(s.unexpected.get("expected allow, got http_404"), Some(&3));
        assert_eq!(s.unexpected.get("expected drift, got allow"), Some(&1));
        assert_eq!(s.unexpected.len(), 2, "{:?}", s.unexpected);
        assert!(
            s.details().contains(
                "UNEXPECTED answers: 3 x expected allow, got http_404; 1 x expected drift, got allow"
            ),
            "{}",
            s.details()
        );
    }

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
