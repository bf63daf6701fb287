//! Ctrl-C on a measuring run, through the real binary and a real signal: the run stops
//! within moments, still prints and writes what it measured (marked as stopped early,
//! timed over the stretch that ran), exits with 130, and a second Ctrl-C ends a run whose
//! target never answers.

use portcullis_loadtest::backend::{self, BackendConfig};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn loadtest() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis-loadtest"))
}

fn interrupt(child: &Child) {
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(st.success(), "kill -INT failed");
}

/// Waits for the child's exit for at most `limit`; a child still running then is killed
/// and the test fails, so a hang cannot hold the suite.
fn exit_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {limit:?} after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the child's stderr until a line containing `marker`, then keeps draining it in
/// the background (a full pipe would block the child).
fn wait_for_stderr(child: &mut Child, marker: &str) {
    let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    for line in lines.by_ref() {
        if line.expect("stderr is text").contains(marker) {
            std::thread::spawn(move || lines.for_each(drop));
            return;
        }
    }
    panic!("the child's stderr ended before `{marker}`");
}

/// Starts the binary with `args`, its output piped to the test.
fn spawn_piped(args: &[&str]) -> Child {
    loadtest()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `marker` on the child's stderr, then `after`, sends Ctrl-C and returns what
/// the child printed once it has exited with 130.
fn interrupted_run(mut child: Child, marker: &str, after: Duration) -> String {
    wait_for_stderr(&mut child, marker);
    std::thread::sleep(after);
    interrupt(&child);
    let st = exit_within(&mut child, Duration::from_secs(10));
    let stdout = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
    assert_eq!(st.code(), Some(130), "stdout: {stdout}");
    stdout
}

/// `run --workload direct` at `rate` for a minute against a built-in backend, stopped by
/// Ctrl-C a moment after its warm-up: what it printed, its JSON summary, and the `--out`
/// directory.
fn ctrl_c_on_a_backend_run(rate: &str) -> (String, serde_json::Value, tempfile::TempDir) {
    let b = backend::start("127.0.0.1:0".parse().unwrap(), 1, BackendConfig::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = b.addr.to_string();
    let child = spawn_piped(&[
        "run",
        "--workload",
        "direct",
        "--rate",
        rate,
        "--duration",
        "60s",
        "--connections",
        "4",
        "--name",
        "backend",
        "--target",
        &target,
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let stdout = interrupted_run(child, "warming up", Duration::from_millis(1500));
    b.shutdown();
    let json = read_json(&out.path().join("backend.json"));
    (stdout, json, out)
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn ctrl_c_ends_an_open_loop_run_with_its_figures() {
    let (stdout, json, out) = ctrl_c_on_a_backend_run("500");
    assert!(stdout.contains("stopped early"), "{stdout}");
    assert_eq!(json["stopped_early"], true);
    let (sent, completed) = (
        json["sent"].as_u64().unwrap(),
        json["completed"].as_u64().unwrap(),
    );
    assert!(sent > 0, "{json}");
    assert_eq!(
        completed, sent,
        "every request sent was answered and counted: {json}"
    );
    assert_eq!(json["errors"], serde_json::json!({}), "{json}");
    // Timed over the stretch that ran, not the 60 s asked for: the throughput is the rate.
    let elapsed = json["elapsed_s"].as_f64().unwrap();
    assert!(elapsed < 10.0, "{json}");
    let rate = json["throughput_per_s"].as_f64().unwrap();
    assert!((400.0..=600.0).contains(&rate), "{json}");
    assert!(out.path().join("backend.hgrm").exists());
}

#[test]
fn a_second_ctrl_c_ends_a_run_whose_target_never_answers() {
    // Accepts and then says nothing: the start-up probe waits up to 5 s for an answer.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let (conn, _) = silent.accept().unwrap();
        std::thread::sleep(Duration::from_secs(8));
        drop(conn);
    });
    let mut child = loadtest()
        .args([
            "run",
            "--workload",
            "direct",
            "--rate",
            "100",
            "--duration",
            "60s",
        ])
        .arg("--target")
        .arg(addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "one Ctrl-C waits for what is in flight"
    );
    interrupt(&child);
    let st = exit_within(&mut child, Duration::from_secs(2));
    assert_eq!(st.code(), Some(130));
    let _ = held.join();
}

#[test]
fn ctrl_c_during_a_comparison_keeps_its_whole_rounds() {
    let out = tempfile::tempdir().unwrap();
    let child = spawn_piped(&[
        "compare",
        "--rates",
        "300",
        "--duration",
        "500ms",
        "--rounds",
        "100",
        "--no-max",
        "--no-hop",
        "--connections",
        "4",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    interrupted_run(child, "comparing", Duration::from_secs(4));

    let summary = read_json(&out.path().join("summary.json"));
    assert_eq!(summary["stopped_early"], true);
    let results = summary["results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        2,
        "direct and portcullis at the one rate: {summary}"
    );
    let rounds: Vec<u64> = results
        .iter()
        .map(|r| r["rounds"].as_u64().unwrap())
        .collect();
    // Every target keeps the same whole rounds: the one cut short is dropped for all.
    assert!(rounds[0] >= 1 && rounds[0] < 100, "{rounds:?}");
    assert_eq!(rounds[0], rounds[1]);
    for r in results {
        assert_eq!(
            r["stopped_early"], false,
            "no partial run is merged in: {r}"
        );
        let expected = rounds[0] as f64 * 150.0;
        assert_eq!(r["completed"].as_f64().unwrap(), expected, "{r}");
    }
}

#[test]
fn ctrl_c_on_a_saturated_run_ends_it_without_sending_the_backlog() {
    // Far more than one backend thread answers: the due requests pile up.
    let (stdout, json, _out) = ctrl_c_on_a_backend_run("1000000");
    assert!(stdout.contains("due but not yet sent"), "{stdout}");
    assert!(json["unsent_at_stop"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["completed"], json["sent"], "{json}");
}
