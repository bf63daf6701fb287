//! The load generator's own correctness, over real sockets against the built-in backend
//! and an in-process gateway: it keeps the schedule, a stalling backend shows up as
//! latency (not as fewer requests), failures are counted by kind, and the fleet workload
//! gets exactly the decisions it expects.

use portcullis_loadtest::backend::{self, BackendConfig};
use portcullis_loadtest::compare::{CpuPlan, GatewayUnderTest, Stack};
use portcullis_loadtest::generator::{self, Mode, RunConfig, Target};
use portcullis_loadtest::workload::{self, Mix};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn any_credential() -> BackendConfig {
    BackendConfig::default()
}

fn direct(addr: SocketAddr) -> Target {
    Target {
        name: "direct".into(),
        addr,
        templates: Arc::new(workload::direct_allowed(&addr.to_string(), "secret")),
    }
}

fn open(rate: f64, duration: Duration, connections: usize) -> RunConfig {
    RunConfig {
        duration,
        connections,
        threads: 1,
        mode: Mode::Open(rate),
        timeout: Duration::from_secs(10),
        cpus: vec![],
        timeline: None,
    }
}

#[test]
fn an_open_loop_run_sends_exactly_the_schedule_and_not_faster() {
    let b = backend::start("127.0.0.1:0".parse().unwrap(), 1, any_credential()).unwrap();
    let began = Instant::now();
    let s = generator::run(
        &direct(b.addr),
        &open(800.0, Duration::from_secs(1), 8),
        false,
    );
    let took = began.elapsed();
    assert_eq!(s.sent, 800, "rate x duration requests are sent");
    assert_eq!(s.completed(), 800);
    assert_eq!(s.ok, 800, "{:?}", s.errors);
    assert!(
        s.errors.is_empty() && s.unexpected.is_empty(),
        "{:?} {:?}",
        s.errors,
        s.unexpected
    );
    // Requests are held back until their intended time: the last one is due 999 ms in.
    // A generator that sent as fast as it could would be done in a few milliseconds.
    assert!(took >= Duration::from_millis(999), "the run took {took:?}");
    b.shutdown();
}

#[test]
fn a_stalling_backend_shows_up_as_latency_not_as_fewer_requests() {
    let cfg = BackendConfig {
        service_time: Duration::from_millis(100),
        ..any_credential()
    };
    let b = backend::start("127.0.0.1:0".parse().unwrap(), 1, cfg).unwrap();
    // 2 connections against a 100 ms backend serve at most 20 requests a second; the
    // schedule asks for 50 in one second. Each connection must work through 25 requests,
    // so its last answer comes at least 2.5 s in, for a request intended at ~1 s.
    let s = generator::run(
        &direct(b.addr),
        &open(50.0, Duration::from_secs(1), 2),
        false,
    );
    assert_eq!(s.sent, 50, "every scheduled request is still sent");
    assert_eq!(s.completed(), 50);
    assert!(
        s.us(100.0) >= 1_400_000.0,
        "max latency {} µs must include the queueing",
        s.us(100.0)
    );
    assert!(
        s.us(50.0) >= 500_000.0,
        "median {} µs must include the queueing",
        s.us(50.0)
    );
    assert!(s.late_sends > 0, "the late sends are reported");
    b.shutdown();
}

#[test]
fn failures_are_counted_by_kind() {
    // Bound but never listening, so every request is a refused connection, and no other
    // test's listener can be handed the port meanwhile.
    let held = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    held.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let dead = held.local_addr().unwrap().as_socket().unwrap();
    let s = generator::run(
        &direct(dead),
        &open(200.0, Duration::from_millis(250), 4),
        false,
    );
    assert_eq!(s.sent, 50);
    assert_eq!(s.errors.get("connect_refused"), Some(&50), "{:?}", s.errors);
    assert_eq!(s.ok, 0);
    assert!(
        generator::probe(&direct(dead))
            .unwrap_err()
            .to_string()
            .contains("refused")
    );

    // A backend answering 503.
    let b = backend::start(
        "127.0.0.1:0".parse().unwrap(),
        1,
        BackendConfig {
            force_status: Some(503),
            ..any_credential()
        },
    )
    .unwrap();
    let s = generator::run(
        &direct(b.addr),
        &open(200.0, Duration::from_millis(250), 4),
        false,
    );
    assert_eq!(s.errors.get("http_503"), Some(&50), "{:?}", s.errors);
    b.shutdown();

    // A backend slower than the timeout.
    let slow = BackendConfig {
        service_time: Duration::from_millis(400),
        ..any_credential()
    };
    let b = backend::start("127.0.0.1:0".parse().unwrap(), 1, slow).unwrap();
    let cfg = RunConfig {
        timeout: Duration::from_millis(100),
        ..open(20.0, Duration::from_millis(200), 4)
    };
    let s = generator::run(&direct(b.addr), &cfg, false);
    assert_eq!(s.errors.get("timeout"), Some(&4), "{:?}", s.errors);
    b.shutdown();
}

#[test]
fn the_fleet_mix_through_a_real_gateway_gets_exactly_the_decisions_it_expects() {
    let stack = Stack::start(
        &GatewayUnderTest::InProcess { cores: 1 },
        "127.0.0.1:0".parse().unwrap(),
        1,
        &CpuPlan::default(),
        false,
    )
    .unwrap();
    let host = stack.gateway.authority.clone();
    let mix = Mix {
        envelopes: 40,
        ..Mix::default()
    };
    let templates = workload::gateway_templates(&stack.deployment.issuer, &host, &mix);
    let target = Target {
        name: "portcullis".into(),
        addr: stack.gateway.addr,
        templates: Arc::new(templates),
    };
    let s = generator::run(&target, &open(400.0, Duration::from_millis(500), 8), false);
    assert_eq!(s.sent, 200);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert!(
        s.unexpected.is_empty(),
        "answers the workload did not expect: {:?}",
        s.unexpected
    );
    assert!(s.ok > 0);
    for reason in [
        "tool_not_in_envelope",
        "resource_out_of_scope",
        "record_limit",
        "drift",
        "policy_denied",
    ] {
        assert!(
            s.denials.contains_key(reason),
            "{reason} missing from {:?}",
            s.denials
        );
    }

    // Closed loop through the gateway: every answer allowed, the vaulted credential
    // accepted by the backend (a wrong one would be a 401 error here).
    let allowed = Target {
        name: "portcullis".into(),
        addr: stack.gateway.addr,
        templates: Arc::new(workload::gateway_allowed(
            &stack.deployment.issuer,
            &host,
            10,
        )),
    };
    let cfg = RunConfig {
        mode: Mode::Closed,
        ..open(1.0, Duration::from_millis(300), 4)
    };
    let s = generator::run(&allowed, &cfg, false);
    assert!(
        s.completed() > 0 && s.ok == s.completed(),
        "ok {} of {}: {:?}",
        s.ok,
        s.completed(),
        s.errors
    );
    stack.shutdown();
}

#[test]
fn the_timeline_shows_each_stretch_of_a_run_and_its_log_reads_back() {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let b = backend::start("127.0.0.1:0".parse().unwrap(), 1, any_credential()).unwrap();
    let cfg = RunConfig {
        threads: 2,
        timeline: Some(Duration::from_millis(250)),
        ..open(400.0, Duration::from_secs(1), 8)
    };
    let s = generator::run(&direct(b.addr), &cfg, false);
    b.shutdown();
    assert_eq!(s.completed(), 400, "{:?}", s.errors);
    let t = s.timeline.as_ref().expect("the run keeps a timeline");
    assert_eq!(t.width, Duration::from_millis(250));
    let counts: Vec<u64> = t.intervals.iter().map(|h| h.len()).collect();
    assert_eq!(
        counts.iter().sum::<u64>(),
        400,
        "both threads' samples: {counts:?}"
    );
    // Sent at 400/s: each quarter second completes about a hundred (the first starts after
    // the run's lead, the last may spill into a fifth interval).
    assert!(counts.len() <= 5, "{counts:?}");
    assert!(
        counts[1..3].iter().all(|c| (80..=120).contains(c)),
        "{counts:?}"
    );

    let out = tempfile::tempdir().unwrap();
    let files = portcullis_loadtest::report::write_run(out.path(), &s).unwrap();
    let hlog = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "hlog"));
    let log = std::fs::read(hlog.expect("an .hlog is written")).unwrap();
    let intervals = IntervalLogIterator::new(&log)
        .filter(|e| matches!(e, Ok(LogEntry::Interval(_))))
        .count();
    assert_eq!(intervals, counts.len());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("direct.json")).unwrap()).unwrap();
    let rows = json["timeline"]["intervals"].as_array().unwrap();
    let in_json: u64 = rows.iter().map(|r| r["completed"].as_u64().unwrap()).sum();
    assert_eq!(in_json, 400);
}
