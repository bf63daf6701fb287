//! The envelope CLI as a user drives it: keygen, mint the seed's envelope, verify it,
//! see a tampered copy refused, inspect it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/policies/envelopes/renewal-review.json"
);

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn keygen(dir: &Path) {
    let out = run(&["keygen", "--out", dir.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn keygen_writes_a_private_key_only_the_owner_can_read() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("private.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("jwks.json")).unwrap())
            .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    // public.pem is the same key as SPKI: the Ed25519 algorithm identifier, then the key.
    use base64::Engine;
    let pem = std::fs::read_to_string(dir.path().join("public.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        der[..12],
        [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00
        ]
    );
    assert_eq!(der[12..], x[..]);
    // A second keygen must not silently replace the issuer key.
    let again = run(&["keygen", "--out", dir.path().to_str().unwrap()], None);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );

    // --force replaces the key, and a private.pem left world-readable is narrowed again.
    let before = std::fs::read_to_string(dir.path().join("private.pem")).unwrap();
    std::fs::set_permissions(
        dir.path().join("private.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let forced = run(
        &["keygen", "--out", dir.path().to_str().unwrap(), "--force"],
        None,
    );
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let meta = std::fs::metadata(dir.path().join("private.pem")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_ne!(
        std::fs::read_to_string(dir.path().join("private.pem")).unwrap(),
        before,
        "a new key was written"
    );
}

#[test]
fn mint_verify_and_refuse_a_tampered_copy() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path());
    let key = dir.path().join("private.pem");
    let jwks = dir.path().join("jwks.json");
    let (key, jwks) = (key.to_str().unwrap(), jwks.to_str().unwrap());

    let minted = run(
        &[
            "mint",
            "--key",
            key,
            "--claims",
            SEED,
            "--ttl",
            "15m",
            "--agent-kind",
            "renewal_reviewer",
        ],
        None,
    );
    assert!(minted.status.success(), "{}", text(&minted.stderr));
    let token = text(&minted.stdout).trim().to_owned();
    assert_eq!(token.matches('.').count(), 2);

    let verified = run(&["verify", "--jwks", jwks, &token], None);
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    let claims: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(claims["delegator_id"], "user_7f3a91");
    assert_eq!(claims["agent_kind"], "renewal_reviewer");
    assert_eq!(
        claims["resource_constraints"]["contract_ids"][0],
        "contract_7781"
    );

    // Same token from standard input.
    let piped = run(&["verify", "--jwks", jwks, "-"], Some(&token));
    assert!(piped.status.success(), "{}", text(&piped.stderr));

    // Flip one character of the payload: the signature no longer covers it.
    let mut bytes = token.clone().into_bytes();
    let dot = token.find('.').unwrap();
    bytes[dot + 5] = if bytes[dot + 5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let refused = run(&["verify", "--jwks", jwks, &tampered], None);
    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    assert!(err.contains("refused: bad_"), "{err}");
    assert!(
        refused.stdout.is_empty(),
        "no claims are printed for a refused token"
    );

    // Wrong audience.
    let other = run(
        &["verify", "--jwks", jwks, "--aud", "another-gateway", &token],
        None,
    );
    assert!(
        text(&other.stderr).contains("refused: wrong_audience"),
        "{}",
        text(&other.stderr)
    );

    let inspected = run(&["inspect", &token], None);
    assert!(inspected.status.success());
    assert!(text(&inspected.stderr).contains("UNVERIFIED"));
    let doc: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(doc["verified"], false);
    assert_eq!(doc["header"]["alg"], "EdDSA");
    assert_eq!(doc["header"]["typ"], "agent-envelope+jwt");
    assert_eq!(
        doc["claims"]["task_id"],
        "task_contract_renewal_review_8842"
    );
}

#[test]
fn mint_refuses_the_seed_as_is_because_it_has_expired() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path());
    let key = dir.path().join("private.pem");
    let out = run(
        &["mint", "--key", key.to_str().unwrap(), "--claims", SEED],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("already be expired") && err.contains("--ttl"),
        "{err}"
    );
}

#[test]
fn mint_refuses_malformed_claims_and_credentials() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path());
    let key = dir.path().join("private.pem");
    let key = key.to_str().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"delegator_id": "u", "allowed_tools": "x"}"#).unwrap();
    let out = run(
        &[
            "mint",
            "--key",
            key,
            "--claims",
            bad.to_str().unwrap(),
            "--ttl",
            "5m",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("bad.json"),
        "{}",
        text(&out.stderr)
    );

    let mut seed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(SEED).unwrap()).unwrap();
    seed["resource_constraints"]["crm_api_key"] = "sk_live_123".into();
    let leaky = dir.path().join("leaky.json");
    std::fs::write(&leaky, seed.to_string()).unwrap();
    let out = run(
        &[
            "mint",
            "--key",
            key,
            "--claims",
            leaky.to_str().unwrap(),
            "--ttl",
            "5m",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("credential"),
        "{}",
        text(&out.stderr)
    );

    let out = run(
        &["mint", "--key", key, "--claims", SEED, "--ttl", "soon"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--ttl"), "{}", text(&out.stderr));
}

#[test]
fn envelope_walkthrough_refuses_every_forgery() {
    let out = run(&["demo", "--envelope-only"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("Verified"), "{s}");
    assert!(!s.contains("ACCEPTED"), "{s}");
    assert_eq!(s.matches("refused:").count(), 4, "{s}");
}

#[test]
fn a_closed_stdout_ends_quietly_not_with_a_panic() {
    // `portcullis inspect - < token | head -c0`: the reader is gone before anything is
    // written. The token comes on stdin, so the write happens only after we close it.
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path());
    let key = dir.path().join("private.pem");
    let minted = run(
        &[
            "mint",
            "--key",
            key.to_str().unwrap(),
            "--claims",
            SEED,
            "--ttl",
            "5m",
        ],
        None,
    );
    let token = text(&minted.stdout);
    let jwks = dir.path().join("jwks.json");
    let verify = ["verify", "--jwks", jwks.to_str().unwrap(), "-"];
    for args in [&["inspect", "-"][..], &verify[..]] {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(token.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
    }
}
