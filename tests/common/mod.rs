//! Shared helpers for the gateway's integration tests: a gateway started in-process from a
//! configuration text, envelopes minted by a test issuer, and a raw-TCP fake upstream
//! whose misbehaviour each test chooses.
#![allow(dead_code)]

use portcullis::config::Config;
use portcullis::demo::client::{Client, Response};
use portcullis::envelope::mint::{MintOptions, claims_from_file};
use portcullis::envelope::{SigningKey, jws};
use portcullis::gateway::Running;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub const SEED: &str = include_str!("../../policies/envelopes/renewal-review.json");

/// A loopback address that refuses connections while the returned socket lives. The port
/// is bound, so no gateway or fake started by a concurrent test can be handed it (as it
/// could be if a probe listener were dropped), and it never listens.
pub fn refusing_addr() -> (socket2::Socket, SocketAddr) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s, addr)
}

pub struct TestGateway {
    pub running: Running,
    pub issuer: SigningKey,
    pub dir: tempfile::TempDir,
}

/// The embedded default with a file JWKS (a fresh test issuer), port 0, and `edit` applied
/// to the TOML text.
pub fn start_gateway(edit: impl Fn(String) -> String) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let issuer = SigningKey::generate(Some("test-issuer".into())).unwrap();
    std::fs::write(dir.path().join("jwks.json"), issuer.jwks().to_string()).unwrap();
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
    let text = portcullis::config::DEFAULT_TOML
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "token_env = \"PORTCULLIS_ADMIN_TOKEN\"",
            "token_file = \"admin.token\"",
        )
        .replace("dir = \"builtin:temp\"", "dir = \"audit\"")
        .replace("cores = 0", "cores = 2")
        .replace("jwks = \"builtin:demo\"", "jwks = \"jwks.json\"");
    let text = edit(text);
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = Config::load(&path).unwrap();
    portcullis::log::set_quiet(true);
    let running = portcullis::gateway::start(&cfg).unwrap();
    TestGateway {
        running,
        issuer,
        dir,
    }
}

impl TestGateway {
    pub fn addr(&self) -> SocketAddr {
        self.running.server.addr
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr()).unwrap()
    }

    /// Mints the seed's envelope with `edit` applied to its claims.
    pub fn envelope(&self, edit: impl Fn(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(SEED).unwrap();
        v["agent_id"] = "renewal-review-agent".into();
        v["agent_kind"] = "renewal_reviewer".into();
        edit(&mut v);
        let now = portcullis::clock::now_unix();
        let ttl = v.get("ttl").and_then(Value::as_i64).unwrap_or(900);
        v.as_object_mut().unwrap().remove("ttl");
        let claims = claims_from_file(
            v.as_object().unwrap().clone(),
            &MintOptions {
                now,
                ttl_secs: Some(ttl),
                ..Default::default()
            },
        )
        .unwrap();
        jws::sign(&claims, &self.issuer)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.running.admin.as_ref().unwrap().addr
    }

    /// A request to the admin listener with the admin token.
    pub fn admin(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        Client::connect(self.admin_addr())
            .unwrap()
            .request(method, path, &[("Authorization", &auth)], body)
            .unwrap()
    }

    /// Audit lines written so far, parsed. The writer may be mid-write as this reads:
    /// a last line without its newline is not complete yet, and is left for next time.
    pub fn audit_lines_now(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for f in portcullis::audit::verify::segments_in(&self.running.audit_dir).unwrap() {
            let bytes = std::fs::read(f).unwrap();
            for l in bytes.split_inclusive(|b| *b == b'\n') {
                if let Some(line) = l.strip_suffix(b"\n") {
                    out.push(serde_json::from_slice(line).unwrap());
                }
            }
        }
        out
    }

    /// Audit lines, once the lines of all these decisions are on disk (cores hand their
    /// batches to the writer on a timer). Gives up after a minute and returns what there
    /// is, so the test's own assertions report what is missing.
    pub fn audit_lines(&self, decision_ids: &[String]) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let lines = self.audit_lines_now();
            let all = decision_ids
                .iter()
                .all(|id| lines.iter().any(|l| l["decision_id"] == id.as_str()));
            if all || std::time::Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The value of one unlabelled sample on `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.admin("GET", "/metrics", b"").text();
        let prefix = format!("{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no sample {name} in {text}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Polls `/metrics` until `name` satisfies `ok` (a minute at most; the caller's
    /// assertion then reports the value).
    pub fn wait_metric(&self, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let v = self.metric(name);
            if ok(v) || std::time::Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    pub fn credential(&self, name: &str) -> String {
        String::from_utf8(
            self.running
                .shared
                .vault
                .get(name)
                .unwrap()
                .expose()
                .to_vec(),
        )
        .unwrap()
    }

    pub fn demo_log(&self, backend: &str) -> Vec<portcullis::demo::records::Seen> {
        let d = self.running.demo_backends.as_ref().unwrap();
        d.log_of(backend).unwrap().lock().unwrap().clone()
    }
}

pub fn call(c: &mut Client, token: &str, tool: &str, args: &str) -> Response {
    let auth = format!("Bearer {token}");
    c.request(
        "POST",
        &format!("/v1/tools/{tool}"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        args.as_bytes(),
    )
    .unwrap()
}

pub fn mcp(c: &mut Client, token: &str, session: Option<&str>, body: &str) -> Response {
    let auth = format!("Bearer {token}");
    let mut h = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    if let Some(s) = session {
        h.push(("Mcp-Session-Id", s));
        h.push(("MCP-Protocol-Version", "2025-06-18"));
    }
    c.request("POST", "/mcp", &h, body.as_bytes()).unwrap()
}

pub fn reason(r: &Response) -> String {
    r.json()["reason"].as_str().unwrap_or("").to_owned()
}

/// How the fake upstream answers the next requests.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// A fixed raw response.
    Raw(Vec<u8>),
    /// Read the request, then wait this long before answering 200.
    Slow(std::time::Duration),
    /// Read the request, then close without answering.
    Close,
    /// Read the request, then reset the connection.
    Reset,
    /// Echo the request head back as the body (so tests can see what arrived).
    Echo,
    /// Answer with these bytes (a keep-alive response), then close the connection, as
    /// upstreams with a short keep-alive timeout do. Counted in `events` once closed.
    AnswerThenClose(Vec<u8>),
    /// Answer with the first bytes, then after the pause send the second unasked on the
    /// same connection. Counted in `events` once both are written.
    AnswerThenStray(Vec<u8>, Vec<u8>, std::time::Duration),
    /// Hold the request until the gate opens, then answer 200 `{}`.
    Gated(Gate),
}

/// A gate a fake upstream waits at; the test opens it.
#[derive(Clone, Debug, Default)]
pub struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    pub fn open(&self) {
        let (m, cv) = &*self.0;
        *m.lock().unwrap() = true;
        cv.notify_all();
    }

    fn wait(&self) {
        let (m, cv) = &*self.0;
        let mut open = m.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
    }
}

/// A raw TCP server whose behaviour the test sets; records every request head it reads.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub behaviour: Arc<Mutex<Behaviour>>,
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Completed `AnswerThenClose` / `AnswerThenStray` actions.
    pub events: Arc<(Mutex<u64>, std::sync::Condvar)>,
    /// Connections accepted so far.
    pub accepted: Arc<std::sync::atomic::AtomicU64>,
}

impl FakeUpstream {
    /// Waits until `n` actions have completed (no deadline of its own: the test harness
    /// bounds a hung test).
    pub fn wait_events(&self, n: u64) {
        let (m, cv) = &*self.events;
        let mut done = m.lock().unwrap();
        while *done < n {
            done = cv.wait(done).unwrap();
        }
    }
}

pub fn fake_upstream() -> FakeUpstream {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let behaviour = Arc::new(Mutex::new(Behaviour::Echo));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let events = Arc::new((Mutex::new(0u64), std::sync::Condvar::new()));
    let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (b, s, ev, acc) = (
        behaviour.clone(),
        seen.clone(),
        events.clone(),
        accepted.clone(),
    );
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            acc.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (b, s, ev) = (b.clone(), s.clone(), ev.clone());
            let count = move || {
                let (m, cv) = &*ev;
                *m.lock().unwrap() += 1;
                cv.notify_all();
            };
            std::thread::spawn(move || {
                loop {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read one request (head + Content-Length body).
                    let head_end = loop {
                        if let Some(i) = find(&buf, b"\r\n\r\n") {
                            break i + 4;
                        }
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let cl = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + cl {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    s.lock().unwrap().push(head.clone());
                    let behaviour = b.lock().unwrap().clone();
                    match behaviour {
                        Behaviour::Raw(bytes) => {
                            let _ = conn.write_all(&bytes);
                        }
                        Behaviour::Slow(d) => {
                            std::thread::sleep(d);
                            let _ =
                                conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
                        }
                        Behaviour::Close => return,
                        Behaviour::Gated(gate) => {
                            gate.wait();
                            let _ =
                                conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
                        }
                        Behaviour::AnswerThenClose(bytes) => {
                            let _ = conn.write_all(&bytes);
                            let _ = conn.shutdown(std::net::Shutdown::Both);
                            drop(conn);
                            count();
                            return;
                        }
                        Behaviour::AnswerThenStray(answer, stray, pause) => {
                            let _ = conn.write_all(&answer);
                            std::thread::sleep(pause);
                            let _ = conn.write_all(&stray);
                            count();
                        }
                        Behaviour::Reset => {
                            let sock = socket2::SockRef::from(&conn);
                            let _ = sock.set_linger(Some(std::time::Duration::ZERO));
                            return;
                        }
                        Behaviour::Echo => {
                            let body = serde_json::json!({"head": head}).to_string();
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = conn.write_all(resp.as_bytes());
                        }
                    }
                }
            });
        }
    });
    FakeUpstream {
        addr,
        behaviour,
        seen,
        events,
        accepted,
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

pub fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap();
}

/// The example bundle under another version name; with `deny_all`, every `permit` turned
/// into a `forbid`, so the policy refuses what the example allows.
pub fn bundle_variant(version: &str, deny_all: bool) -> (Vec<u8>, String) {
    use portcullis::decision::Bundle;
    use portcullis::decision::ir::Effect;
    let example = Bundle::from_bytes(portcullis::gateway::boot::EXAMPLE_BUNDLE).unwrap();
    let mut data = example.data().clone();
    data.meta.version = version.to_owned();
    if deny_all {
        for p in &mut data.policies {
            p.effect = Effect::Forbid;
        }
    }
    let bytes =
        portcullis::decision::bundle::encode(&data, &example.meta().compiler_version).unwrap();
    let digest = Bundle::from_bytes(&bytes)
        .unwrap()
        .meta()
        .digest_hex
        .clone();
    (bytes, digest)
}
