//! The data plane under bad input and failing upstreams, over real sockets: malformed and
//! ambiguous requests, smuggling attempts, oversize heads and bodies, invalid JSON, slow
//! clients, pipelining; upstreams that are down, slow, resetting or talking nonsense. The
//! gateway answers each with the right status and keeps serving everyone else.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(resp: &str) -> u16 {
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn with_fake(edit: impl Fn(String) -> String) -> (TestGateway, FakeUpstream) {
    let fake = fake_upstream();
    let url = format!("http://{}", fake.addr);
    let gw = start_gateway(|t| {
        edit(t.replace("url = \"builtin:records\"", &format!("url = \"{url}\"")))
            .replace("response_timeout = \"30s\"", "response_timeout = \"1s\"")
    });
    (gw, fake)
}

#[test]
fn malformed_and_ambiguous_requests_get_400_and_close() {
    let gw = start_gateway(|t| t);
    let a = gw.addr();
    let cases: [(&[u8], u16); 9] = [
        (b"GARBAGE\r\n\r\n", 400),
        (b"POST /v1/tools/crm.read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST /v1/tools/crm.read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
        (b"POST /v1/tools/crm.read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST /v1/tools/crm.read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST /v1/tools/crm.read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400),
        (b"POST /v1/tools/crm.read HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 400),
        (b"POST /v1/tools/crm.read HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"POST /v1/tools/crm.read HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413),
    ];
    for (bytes, want) in cases {
        let resp = raw(a, bytes);
        assert_eq!(
            status_of(&resp),
            want,
            "{:?} -> {resp}",
            String::from_utf8_lossy(bytes)
        );
        assert!(resp.contains("Connection: close"), "{resp}");
        assert!(resp.contains("\"reason\""), "JSON error body: {resp}");
    }
    // Still serving.
    let t = gw.envelope(|_| {});
    let r = call(
        &mut gw.client(),
        &t,
        "contracts.read",
        r#"{"contract_id":"contract_7781"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn oversize_heads_and_bodies() {
    let gw = start_gateway(|t| t.replace("max_body_bytes = 1048576", "max_body_bytes = 1024"));
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(status_of(&raw(gw.addr(), big_header.as_bytes())), 431);
    let many = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-A: 1\r\n".repeat(100)
    );
    assert_eq!(status_of(&raw(gw.addr(), many.as_bytes())), 431);
    let body = "x".repeat(2000);
    let req = format!(
        "POST /v1/tools/crm.read HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(status_of(&raw(gw.addr(), req.as_bytes())), 413);
    let chunked = format!(
        "POST /v1/tools/crm.read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n{body}\r\n0\r\n\r\n"
    );
    assert_eq!(status_of(&raw(gw.addr(), chunked.as_bytes())), 413);
}

#[test]
fn smuggled_second_request_is_never_forwarded_as_part_of_the_first() {
    // A classic CL.TE attempt is refused outright; a TE body followed by a pipelined
    // request is framed by the chunked encoding, so the second request is parsed (and
    // authorised) on its own.
    let (gw, fake) = with_fake(|t| t);
    let t = gw.envelope(|_| {});
    let args = r#"{"contract_id":"contract_7781"}"#;
    let req = format!(
        "POST /v1/tools/contracts.read HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{args}\r\n0\r\n\r\nGET /v1/tools/crm.read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        args.len()
    );
    let resp = raw(gw.addr(), req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains("HTTP/1.1 405"),
        "the smuggled GET is its own request: {resp}"
    );
    let seen = fake.seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "exactly one upstream request: {seen:?}");
    assert!(!seen[0].contains("crm"), "{seen:?}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let gw = start_gateway(|t| t);
    let t = gw.envelope(|_| {});
    let one = |id: &str| {
        let body = format!(r#"{{"contract_id":"{id}"}}"#);
        format!(
            "POST /v1/tools/contracts.read HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let all = format!(
        "{}{}{}GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        one("contract_7781"),
        one("contract_9999"),
        one("contract_7781")
    );
    let out = raw(gw.addr(), all.as_bytes());
    let statuses: Vec<&str> = out
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &out[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "403", "200", "200"], "{out}");
}

/// ApacheBench's `-k` and other HTTP/1.0 clients keep a connection only when the answer
/// says it stays open; otherwise they close it after every call.
#[test]
fn http_1_0_clients_asking_for_keep_alive_are_told_it_is_kept() {
    let gw = start_gateway(|t| t);
    let t = gw.envelope(|_| {});
    let body = r#"{"contract_id":"contract_7781"}"#;
    let call = |tool: &str, connection: &str| {
        format!(
            "POST /v1/tools/{tool} HTTP/1.0\r\nHost: x\r\n{connection}Authorization: Bearer {t}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // A relayed answer and a refusal (written whole by the gateway) on one connection,
    // then one without keep-alive, after which the gateway closes.
    let all = format!(
        "{}{}{}",
        call("contracts.read", "Connection: keep-alive\r\n"),
        call("no.such_tool", "Connection: Keep-Alive\r\n"),
        call("contracts.read", "")
    );
    let out = raw(gw.addr(), all.as_bytes());
    let heads: Vec<&str> = out
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|r| r.split("\r\n\r\n").next().unwrap())
        .collect();
    assert_eq!(heads.len(), 3, "{out}");
    for (head, status, connection) in [
        (heads[0], "200", "keep-alive"),
        (heads[1], "404", "keep-alive"),
        (heads[2], "200", "close"),
    ] {
        assert!(head.starts_with(status), "{head}");
        let fields: Vec<&str> = head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("connection:"))
            .collect();
        assert_eq!(fields, [format!("Connection: {connection}")], "{head}");
    }
}

#[test]
fn invalid_json_bodies_are_400_with_a_reason() {
    let gw = start_gateway(|t| t);
    let t = gw.envelope(|_| {});
    let mut c = gw.client();
    for body in ["{not json", "[1,2]", "\"str\"", r#"{"contract_id": 7781}"#] {
        let r = call(&mut c, &t, "contracts.read", body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(reason(&r), "invalid_arguments", "{body}");
        assert!(r.json()["decision_id"].as_str().is_some());
    }
    let r = call(&mut c, &t, "contracts.read", "{}");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("contract_id"),
        "names the missing argument: {}",
        r.text()
    );
}

#[test]
fn duplicate_argument_names_are_refused_and_never_forwarded() {
    // The body is forwarded as it came: the gateway must not check the first
    // `customer_id` while the upstream (last one wins, like most JSON parsers) acts on
    // the second, a customer outside the envelope.
    let (gw, fake) = with_fake(|t| t);
    let t = gw.envelope(|_| {});
    let mut c = gw.client();
    for body in [
        r#"{"customer_id":"cust_acme_1042","subject":"renewal","customer_id":"cust_globex_2001"}"#,
        r#"{"customer_id":"cust_acme_1042","subject":"renewal","customer\u005fid":"cust_globex_2001"}"#,
        r#"{"customer_id":"cust_acme_1042","subject":"renewal","meta":{"a":1,"a":2}}"#,
    ] {
        let r = call(&mut c, &t, "tickets.create", body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(reason(&r), "invalid_arguments", "{body}");
        assert!(r.text().contains("more than once"), "{}", r.text());
    }
    assert!(
        fake.seen.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
    let r = call(
        &mut c,
        &t,
        "tickets.create",
        r#"{"customer_id":"cust_acme_1042","subject":"renewal"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(fake.seen.lock().unwrap().len(), 1);
}

#[test]
fn invalid_json_rpc_gets_json_rpc_errors() {
    let gw = start_gateway(|t| t);
    let t = gw.envelope(|_| {});
    let mut c = gw.client();
    let r = mcp(&mut c, &t, None, "{oops");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32700);
    let r = mcp(
        &mut c,
        &t,
        None,
        r#"{"jsonrpc":"1.0","id":1,"method":"tools/list"}"#,
    );
    assert_eq!(r.json()["error"]["code"], -32600);
    let r = mcp(
        &mut c,
        &t,
        None,
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#,
    );
    assert_eq!(r.json()["error"]["code"], -32600);
    let r = mcp(
        &mut c,
        &t,
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/list"}"#,
    );
    assert_eq!(r.json()["error"]["code"], -32601);
    let r = mcp(
        &mut c,
        &t,
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"contracts.read","arguments":[]}}"#,
    );
    assert_eq!(r.json()["error"]["code"], -32602);
    let r = mcp(
        &mut c,
        &t,
        None,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(r.status, 202);
    assert!(r.body.is_empty());
}

#[test]
fn slow_clients_are_timed_out_and_never_stall_the_others() {
    // One core, so every connection below shares it.
    let gw = start_gateway(|t| {
        t.replace("header_timeout = \"10s\"", "header_timeout = \"1s\"")
            .replace("body_timeout = \"30s\"", "body_timeout = \"120s\"")
            .replace("idle_timeout = \"60s\"", "idle_timeout = \"120s\"")
            .replace("cores = 2", "cores = 1")
    });
    // A client stuck in the middle of its body (two minutes allowed) and one that never
    // says anything (two minutes too)...
    let mut stuck = TcpStream::connect(gw.addr()).unwrap();
    stuck
        .write_all(b"POST /v1/tools/contracts.read HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"contract")
        .unwrap();
    let silent = TcpStream::connect(gw.addr()).unwrap();
    // ... and a slowloris trickling its head a byte at a time: the header timeout runs
    // from the first byte, so trickling does not keep it alive.
    let mut loris = TcpStream::connect(gw.addr()).unwrap();
    loris
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut w = loris.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let head = b"POST /v1/tools/crm.read HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        for b in head.iter().chain(std::iter::repeat(&b'a')).take(8000) {
            if w.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    // Meanwhile another agent is served: nothing above holds the core.
    let t = gw.envelope(|_| {});
    let r = call(
        &mut gw.client(),
        &t,
        "contracts.read",
        r#"{"contract_id":"contract_7781"}"#,
    );
    assert_eq!(r.status, 200);
    let mut out = String::new();
    let _ = loris.read_to_string(&mut out);
    assert_eq!(status_of(&out), 408, "{out}");
    assert!(out.contains("header_timeout"), "{out}");
    trickle.join().unwrap();
    // The stuck and the silent client are still waiting (their limits are two minutes),
    // and the core still serves.
    for s in [&stuck, &silent] {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let e = (&*s).read(&mut b).unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "nothing answered yet"
        );
    }
    let r = call(
        &mut gw.client(),
        &t,
        "contracts.read",
        r#"{"contract_id":"contract_7781"}"#,
    );
    assert_eq!(r.status, 200);
    drop((stuck, silent));
}

#[test]
fn body_and_idle_timeouts_answer_408_or_close() {
    let gw = start_gateway(|t| {
        t.replace("body_timeout = \"30s\"", "body_timeout = \"1s\"")
            .replace("idle_timeout = \"60s\"", "idle_timeout = \"1s\"")
    });
    let read_all = |mut s: TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut out = Vec::new();
        let r = s.read_to_end(&mut out);
        assert!(
            r.is_ok(),
            "closed by the gateway, not by our read timeout: {r:?}"
        );
        String::from_utf8_lossy(&out).into_owned()
    };
    // A body that stops coming: 408, then close.
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    s.write_all(
        b"POST /v1/tools/contracts.read HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\"",
    )
    .unwrap();
    let out = read_all(s);
    assert_eq!(status_of(&out), 408, "{out}");
    assert!(out.contains("body_timeout"), "{out}");
    // A connection that never sends a byte, and a keep-alive one after its request:
    // closed without a word once idle.
    let s = TcpStream::connect(gw.addr()).unwrap();
    assert_eq!(read_all(s), "");
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let out = read_all(s);
    assert_eq!(status_of(&out), 200, "{out}");
    assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
}

#[test]
fn upstream_down_is_502() {
    let (_held, free) = refusing_addr();
    let gw = start_gateway(|t| {
        t.replace(
            "url = \"builtin:records\"",
            &format!("url = \"http://{free}\""),
        )
    });
    let t = gw.envelope(|_| {});
    let r = call(
        &mut gw.client(),
        &t,
        "contracts.read",
        r#"{"contract_id":"contract_7781"}"#,
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(reason(&r), "upstream_unreachable");
}

#[test]
fn upstream_failures_map_to_502_and_504() {
    let (gw, fake) = with_fake(|t| t);
    let t = gw.envelope(|_| {});
    let mut c = gw.client();
    let args = r#"{"contract_id":"contract_7781"}"#;
    let cases: [(Behaviour, u16, &str); 5] = [
        // Never answers (a gate nobody opens): the 1 s response timeout must fire.
        (Behaviour::Gated(Gate::default()), 504, "upstream_timeout"),
        (Behaviour::Close, 502, "upstream_closed"),
        (Behaviour::Reset, 502, ""),
        (
            Behaviour::Raw(b"NOT HTTP AT ALL\r\n\r\n".to_vec()),
            502,
            "upstream_bad_response",
        ),
        (
            Behaviour::Raw(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec(),
            ),
            502,
            "upstream_bad_response",
        ),
    ];
    for (b, status, why) in cases {
        *fake.behaviour.lock().unwrap() = b.clone();
        let r = call(&mut c, &t, "contracts.read", args);
        assert_eq!(r.status, status, "{b:?}: {}", r.text());
        if !why.is_empty() {
            assert_eq!(reason(&r), why, "{b:?}");
        }
    }
    // And back to normal on the same connection.
    *fake.behaviour.lock().unwrap() = Behaviour::Echo;
    assert_eq!(call(&mut c, &t, "contracts.read", args).status, 200);
}

/// The drivers this host can run: the pool watches idle connections differently on each.
fn drivers() -> Vec<&'static str> {
    match portcullis::server::Driver::Auto.resolve() {
        portcullis::server::Driver::IoUring => vec!["io_uring", "legacy"],
        _ => vec!["legacy"],
    }
}

/// One worker on `driver`.
fn one_core_on(driver: &'static str) -> impl Fn(String) -> String {
    move |t| {
        t.replace("cores = 2", "cores = 1")
            .replace("driver = \"auto\"", &format!("driver = \"{driver}\""))
    }
}

#[test]
fn a_quiet_pooled_connection_carries_the_next_calls() {
    // The check that keeps closed and dirty connections out must not keep good ones out:
    // sequential calls on one core share one upstream connection.
    for driver in drivers() {
        let (gw, fake) = with_fake(one_core_on(driver));
        let t = gw.envelope(|_| {});
        let mut c = gw.client();
        for n in 1..=5 {
            let r = call(
                &mut c,
                &t,
                "contracts.read",
                r#"{"contract_id":"contract_7781"}"#,
            );
            assert_eq!(r.status, 200, "{driver}, call {n}: {}", r.text());
        }
        assert_eq!(
            fake.accepted.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{driver}: five calls, one upstream connection"
        );
    }
}

#[test]
fn a_pooled_connection_the_upstream_closed_is_not_reused() {
    for driver in drivers() {
        a_pooled_connection_the_upstream_closed_is_not_reused_on(driver);
    }
}

fn a_pooled_connection_the_upstream_closed_is_not_reused_on(driver: &'static str) {
    // Upstreams close idle keep-alive connections on their own schedule. A POST cannot be
    // retried once sent (the upstream may have acted on it), so a connection the upstream
    // already closed must be noticed before it carries one: else every POST after a pause
    // would be a 502.
    let (gw, fake) = with_fake(one_core_on(driver));
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
    *fake.behaviour.lock().unwrap() = Behaviour::AnswerThenClose(ok.to_vec());
    let t = gw.envelope(|_| {});
    let mut c = gw.client();
    let args = r#"{"customer_id":"cust_acme_1042","subject":"renewal"}"#;
    for n in 1..=4 {
        let r = call(&mut c, &t, "tickets.create", args);
        assert_eq!(r.status, 200, "{driver}, call {n}: {}", r.text());
        assert_eq!(r.text(), r#"{"ok":true}"#);
        // The upstream has closed the connection the gateway just pooled.
        fake.wait_events(n);
    }
    assert_eq!(
        fake.seen.lock().unwrap().len(),
        4,
        "each call reached the upstream once"
    );
}

#[test]
fn bytes_an_upstream_sends_unasked_never_become_the_next_callers_answer() {
    // Right behind the answer (read with it), and later, once the connection is pooled.
    for pause in [Duration::ZERO, Duration::from_millis(50)] {
        for driver in drivers() {
            bytes_an_upstream_sends_unasked_never_become_the_next_callers_answer_on(driver, pause);
        }
    }
}

fn bytes_an_upstream_sends_unasked_never_become_the_next_callers_answer_on(
    driver: &'static str,
    pause: Duration,
) {
    let (gw, fake) = with_fake(one_core_on(driver));
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
    let planted = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"planted\":true}";
    *fake.behaviour.lock().unwrap() =
        Behaviour::AnswerThenStray(ok.to_vec(), planted.to_vec(), pause);
    let t = gw.envelope(|_| {});
    let mut c = gw.client();
    let r = call(
        &mut c,
        &t,
        "contracts.read",
        r#"{"contract_id":"contract_7781"}"#,
    );
    assert_eq!((r.status, r.text()), (200, r#"{"ok":true}"#.to_string()));
    fake.wait_events(1);
    *fake.behaviour.lock().unwrap() = Behaviour::Echo;
    // Another agent's call on the same core: it must get its own answer.
    let other = gw.envelope(|v| v["session_id"] = "sess_other".into());
    let r = call(
        &mut gw.client(),
        &other,
        "contracts.read",
        r#"{"contract_id":"contract_7781"}"#,
    );
    assert_eq!(r.status, 200, "{driver}, {pause:?}: {}", r.text());
    assert!(
        !r.text().contains("planted"),
        "{driver}, {pause:?}: {}",
        r.text()
    );
    assert!(
        r.json()["head"]
            .as_str()
            .unwrap()
            .starts_with("GET /contracts/contract_7781 "),
        "{}",
        r.text()
    );
}

#[test]
fn the_upstream_gets_the_vaulted_credential_and_never_the_envelope() {
    let (gw, fake) = with_fake(|t| t);
    let t = gw.envelope(|_| {});
    let r = call(
        &mut gw.client(),
        &t,
        "contracts.read",
        r#"{"contract_id":"contract_7781"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let head = fake.seen.lock().unwrap()[0].clone();
    let cred = gw.credential("records_api");
    assert!(
        head.contains(&format!("Authorization: Bearer {cred}")),
        "{head}"
    );
    let sig = t.rsplit('.').next().unwrap();
    assert!(
        !head.contains(sig) && !head.contains(&t[..40]),
        "the envelope never travels upstream"
    );
    // The echoed credential is scrubbed before the agent sees the body.
    assert!(!r.text().contains(&cred), "{}", r.text());
    assert!(r.text().contains("Bearer ****"), "{}", r.text());
}

#[test]
fn hop_by_hop_fields_of_an_upstream_answer_stay_on_its_hop() {
    // RFC 9110 §7.6.1: Connection and the fields it names, Keep-Alive, TE, Trailer,
    // Transfer-Encoding, Upgrade and Proxy-* describe one hop; the gateway sets its own
    // framing. End-to-end fields pass.
    let (gw, fake) = with_fake(|t| t);
    *fake.behaviour.lock().unwrap() = Behaviour::Raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive, X-Hop-Secret\r\n\
          X-Hop-Secret: internal\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n\
          Upgrade: h2c\r\nTrailer: X-Checksum\r\nX-Request-Id: r-42\r\nCache-Control: no-store\r\n\
          Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Checksum: 1\r\n\r\n"
            .to_vec(),
    );
    let t = gw.envelope(|_| {});
    let mut c = gw.client();
    for _ in 0..2 {
        let r = call(
            &mut c,
            &t,
            "contracts.read",
            r#"{"contract_id":"contract_7781"}"#,
        );
        assert_eq!((r.status, r.text()), (200, "{}".to_string()));
        for hop in [
            "X-Hop-Secret",
            "Keep-Alive",
            "Proxy-Authenticate",
            "Upgrade",
            "Trailer",
        ] {
            assert!(r.header(hop).is_none(), "{hop} relayed: {:?}", r.headers);
        }
        assert_eq!(r.header("X-Request-Id"), Some("r-42"));
        assert_eq!(r.header("Cache-Control"), Some("no-store"));
        assert!(r.header("X-Portcullis-Decision-Id").is_some());
    }
}
