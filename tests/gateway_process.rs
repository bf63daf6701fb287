//! The gateway as an operator runs it: the `portcullis serve` process from a
//! configuration file, driven by signals and by the `push` / `revoke` CLIs. SIGHUP reloads
//! the bundle file (a bad file leaves the old bundle serving), `push` and `revoke` reach
//! the admin API, revocations persist across a restart, and SIGTERM lets an in-flight
//! call finish, then seals the audit trail.

mod common;

use common::*;
use portcullis::demo::client::Client;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A running `portcullis serve` and its log lines (standard error), read as they come.
struct Process {
    child: Child,
    log: Receiver<String>,
    seen: Vec<String>,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Process {
    fn start(config: &Path) -> Process {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut p = Process {
            child,
            log,
            seen: Vec::new(),
            addr: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
        };
        let url = |l: &str, after: &str| -> Option<SocketAddr> {
            let rest = l.split_once(after)?.1;
            rest.split_whitespace().next()?.parse().ok()
        };
        p.addr = p.wait_log(|l| url(l, "listening on http://")).unwrap();
        p.admin = p.wait_log(|l| url(l, "admin API on http://")).unwrap();
        p
    }

    /// The first log line (already seen or still to come) for which `f` says something;
    /// a minute at most, and `None` if the process ends first.
    fn wait_log<T>(&mut self, f: impl Fn(&str) -> Option<T>) -> Option<T> {
        if let Some(v) = self.seen.iter().find_map(|l| f(l)) {
            return Some(v);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Ok(line) = self
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let v = f(&line);
            self.seen.push(line);
            if v.is_some() {
                return v;
            }
        }
        None
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    fn admin_get(&self, path: &str) -> portcullis::demo::client::Response {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        Client::connect(self.admin)
            .unwrap()
            .request("GET", path, &[("Authorization", &auth)], b"")
            .unwrap()
    }

    fn bundle_version(&self) -> String {
        self.admin_get("/admin/bundle").json()["version"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Waits for the process to exit (a minute at most) and returns its status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "the gateway did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A configuration in `dir`: the embedded default on port 0, the test issuer, a bundle
/// file, the records upstream at `records`, revocations persisted.
fn write_config(dir: &Path, issuer: &portcullis::envelope::SigningKey, records: SocketAddr) {
    write(&dir.join("jwks.json"), &issuer.jwks().to_string());
    write(&dir.join("admin.token"), ADMIN_TOKEN);
    let text = portcullis::config::DEFAULT_TOML
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "token_env = \"PORTCULLIS_ADMIN_TOKEN\"",
            "token_file = \"admin.token\"",
        )
        .replace(
            "# revocations_file = \"revocations.json\"",
            "revocations_file = \"revocations.json\"",
        )
        .replace("dir = \"builtin:temp\"", "dir = \"audit\"")
        .replace("cores = 0", "cores = 2")
        .replace("jwks = \"builtin:demo\"", "jwks = \"jwks.json\"")
        .replace("bundle = \"builtin:example\"", "bundle = \"bundle.pcb\"")
        .replace(
            "url = \"builtin:records\"",
            &format!("url = \"http://{records}\""),
        );
    write(&dir.join("gateway.toml"), &text);
}

fn mint(issuer: &portcullis::envelope::SigningKey, session: &str) -> String {
    use portcullis::envelope::mint::{MintOptions, claims_from_file};
    let mut v: serde_json::Value = serde_json::from_str(SEED).unwrap();
    v["agent_id"] = "renewal-review-agent".into();
    v["agent_kind"] = "renewal_reviewer".into();
    v["session_id"] = session.into();
    let claims = claims_from_file(
        v.as_object().unwrap().clone(),
        &MintOptions {
            now: portcullis::clock::now_unix(),
            ttl_secs: Some(900),
            ..Default::default()
        },
    )
    .unwrap();
    portcullis::envelope::jws::sign(&claims, issuer)
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[cfg(unix)]
#[test]
fn an_operator_reloads_pushes_revokes_restarts_and_stops_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let issuer = portcullis::envelope::SigningKey::generate(Some("test-issuer".into())).unwrap();
    let fake = fake_upstream();
    write_config(d, &issuer, fake.addr);
    let bundle = d.join("bundle.pcb");
    std::fs::write(&bundle, bundle_variant("file-1", false).0).unwrap();
    let config = d.join("gateway.toml");
    let mut gw = Process::start(&config);
    assert_eq!(gw.bundle_version(), "file-1");

    // SIGHUP reloads the bundle file.
    std::fs::write(&bundle, bundle_variant("file-2", false).0).unwrap();
    gw.signal("HUP");
    assert!(
        gw.wait_log(|l| l.contains("activated policy bundle file-2").then_some(()))
            .is_some()
    );
    assert_eq!(gw.bundle_version(), "file-2");
    // A damaged file is refused with a clear line, and file-2 keeps serving.
    let mut bad = bundle_variant("file-3", false).0;
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&bundle, &bad).unwrap();
    gw.signal("HUP");
    let line = gw
        .wait_log(|l| {
            l.contains("previous bundle keeps serving")
                .then(|| l.to_owned())
        })
        .unwrap();
    assert!(line.contains("bundle.pcb"), "{line}");
    assert_eq!(gw.bundle_version(), "file-2");

    // `portcullis push` and `portcullis revoke` against the admin API.
    let admin_url = format!("http://{}", gw.admin);
    let token_file = d.join("admin.token");
    let token_file = token_file.to_str().unwrap();
    let pushed = d.join("pushed.pcb");
    std::fs::write(&pushed, bundle_variant("pushed-1", false).0).unwrap();
    let (ok, out) = cli(&[
        "push",
        pushed.to_str().unwrap(),
        "--admin",
        &admin_url,
        "--token-file",
        token_file,
    ]);
    assert!(ok, "{out}");
    assert_eq!(gw.bundle_version(), "pushed-1");
    let wrong = d.join("wrong.token");
    write(&wrong, "not-the-admin-token-at-all");
    let (ok, out) = cli(&[
        "revoke",
        "--session",
        "sess_revoked",
        "--admin",
        &admin_url,
        "--token-file",
        wrong.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("403"), "{out}");
    let revoked = mint(&issuer, "sess_revoked");
    let kept = mint(&issuer, "sess_kept");
    let args = r#"{"contract_id":"contract_7781"}"#;
    let mut c = Client::connect(gw.addr).unwrap();
    assert_eq!(call(&mut c, &revoked, "contracts.read", args).status, 200);
    let (ok, out) = cli(&[
        "revoke",
        "--session",
        "sess_revoked",
        "--admin",
        &admin_url,
        "--token-file",
        token_file,
    ]);
    assert!(ok, "{out}");
    for _ in 0..4 {
        // New connections, so both cores answer.
        let mut c = Client::connect(gw.addr).unwrap();
        let r = call(&mut c, &revoked, "contracts.read", args);
        assert_eq!((r.status, reason(&r)), (401, "revoked".to_string()));
        assert_eq!(call(&mut c, &kept, "contracts.read", args).status, 200);
    }

    // SIGTERM while a call is in flight: it finishes, then the trail is sealed.
    let gate = Gate::default();
    *fake.behaviour.lock().unwrap() = Behaviour::Gated(gate.clone());
    let before = fake.seen.lock().unwrap().len();
    let addr = gw.addr;
    let in_flight = {
        let kept = kept.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(addr).unwrap();
            call(&mut c, &kept, "contracts.read", args)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.seen.lock().unwrap().len() == before {
        assert!(
            Instant::now() < deadline,
            "the call never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    gw.signal("TERM");
    assert!(
        gw.wait_log(|l| l.contains("shutting down").then_some(()))
            .is_some()
    );
    gate.open();
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "the in-flight call finished: {}", r.text());
    assert!(gw.wait_exit().success());
    let files = portcullis::audit::verify::segments_in(&d.join("audit")).unwrap();
    let keys = portcullis::envelope::TrustedKeys::from_jwks(
        &std::fs::read_to_string(d.join("audit").join("audit-key.jwks.json")).unwrap(),
    )
    .unwrap();
    let report = portcullis::audit::verify::verify_files(&files, Some(&keys)).unwrap();
    assert_eq!(report.unsealed_tail, 0, "sealed with a checkpoint");
    let last = r.header("X-Portcullis-Decision-Id").unwrap().to_owned();
    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert_eq!(
        text.matches(&format!("\"decision_id\":\"{last}\"")).count(),
        1
    );

    // Restarted, it still refuses the revoked session (revocations_file), and the bundle
    // file is what it loads.
    *fake.behaviour.lock().unwrap() = Behaviour::Echo;
    std::fs::write(&bundle, bundle_variant("file-4", false).0).unwrap();
    let mut gw = Process::start(&config);
    assert_eq!(gw.bundle_version(), "file-4");
    let mut c = Client::connect(gw.addr).unwrap();
    let r = call(&mut c, &revoked, "contracts.read", args);
    assert_eq!((r.status, reason(&r)), (401, "revoked".to_string()));
    assert_eq!(call(&mut c, &kept, "contracts.read", args).status, 200);
    let list = gw.admin_get("/admin/revocations").json();
    assert_eq!(list["sessions"], serde_json::json!(["sess_revoked"]));

    // The restarted gateway signs with a key of its own, and the trail's JWKS keeps the
    // first start's key beside it: every checkpoint of both starts still verifies.
    gw.signal("TERM");
    assert!(gw.wait_exit().success());
    let files = portcullis::audit::verify::segments_in(&d.join("audit")).unwrap();
    let jwks = std::fs::read_to_string(d.join("audit").join("audit-key.jwks.json")).unwrap();
    let keys = portcullis::envelope::TrustedKeys::from_jwks(&jwks).unwrap();
    assert_eq!(keys.kids().count(), 2, "{jwks}");
    let report = portcullis::audit::verify::verify_files(&files, Some(&keys)).unwrap();
    assert!(report.checkpoints >= 2, "{report:?}");
    assert_eq!(report.signatures_checked, report.checkpoints, "{report:?}");
}
