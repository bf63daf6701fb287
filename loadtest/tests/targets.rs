//! Targets as users write them, through the real binary: a host name or an `http://` URL
//! reaches the server with that name in the `Host` header; a target the generator
//! cannot speak to is refused before anything is sent, with what to write instead; and
//! interim (1xx) answers before the final one are read past, as RFC 9110 asks.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;

fn loadtest() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis-loadtest"))
}

/// A keep-alive HTTP/1.1 server answering every request with `answer`; sends each
/// request's `Host` header value down the channel.
fn scripted(answer: &'static [u8]) -> (u16, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                let mut host = None;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end();
                    if let Some(h) = l.strip_prefix("Host: ") {
                        host = Some(h.to_owned());
                    }
                    if l.is_empty() {
                        let _ = tx.send(host.take().unwrap_or_default());
                        let ok = w.write_all(answer);
                        if ok.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, rx)
}

#[test]
fn a_named_target_is_resolved_and_sent_as_the_host_header() {
    let (port, hosts) = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    for (target, host) in [
        (format!("localhost:{port}"), format!("localhost:{port}")),
        (
            format!("http://localhost:{port}/"),
            format!("localhost:{port}"),
        ),
        (format!("127.0.0.1:{port}"), format!("127.0.0.1:{port}")),
    ] {
        let out = loadtest()
            .args(["run", "--target", &target, "--workload", "direct"])
            .args([
                "--credential",
                "c",
                "--requests",
                "20",
                "--connections",
                "2",
            ])
            .arg("--quiet")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{target}: {stdout}{stderr}");
        assert!(stdout.contains("errors 0"), "{target}: {stdout}");
        // The probe, the warm-up and the 20 measured calls all carry the name given.
        let seen: Vec<String> = hosts.try_iter().collect();
        assert!(seen.len() >= 20, "{target}: {} requests", seen.len());
        assert!(seen.iter().all(|h| *h == host), "{target}: {seen:?}");
    }
}

#[test]
fn targets_it_cannot_speak_to_are_refused_up_front() {
    for (target, says) in [
        ("https://localhost:8443", "https is not supported"),
        (
            "http://localhost:8080/v1/tools/x",
            "must end at the host and port",
        ),
        ("localhost", "has no port"),
    ] {
        let out = loadtest()
            .args([
                "run",
                "--target",
                target,
                "--workload",
                "direct",
                "--rate",
                "10",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{target}: {stderr}");
        assert!(stderr.contains(says), "{target}: {stderr}");
    }
    let out = loadtest()
        .args(["compare", "--proxy", "nginx=https://localhost:8443"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("https is not supported"), "{stderr}");
}

/// Runs 50 closed-loop calls against `port`; the report's stdout.
fn fifty_calls(port: u16) -> String {
    let out = loadtest()
        .args(["run", "--target", &format!("127.0.0.1:{port}")])
        .args(["--workload", "direct", "--credential", "c"])
        .args(["--requests", "50", "--connections", "2", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn interim_answers_are_read_past_to_the_final_one() {
    // Early Hints with a field, then a bare 100 Continue, then the answer, in one write.
    let (port, _) = scripted(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
          HTTP/1.1 100 Continue\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    let out = fifty_calls(port);
    assert!(out.contains("ok 50 denied 0 errors 0"), "{out}");
    assert!(!out.contains("UNEXPECTED"), "{out}");

    // A 101 is final, so it is counted as what it is.
    let (port, _) =
        scripted(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n");
    let out = fifty_calls(port);
    assert!(out.contains("errors by kind: http_101 50"), "{out}");
}
