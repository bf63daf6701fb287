//! The compiler as policy authors and pipelines meet it: errors that name the file, line,
//! policy and construct; bundles that refuse to load when truncated, corrupted or from a
//! newer format; the CLI's build, check and decide; and the committed example bundle kept
//! in step with its sources.

use portcullis::decision::Bundle;
use portcullis::decision::bundle::{self, BundleError};
use portcullis_compile::{CompileError, Options, compile, read_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis-compile");

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A copy of the example policy directory with `edit` applied to one file.
fn edited(file: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(policies_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            let mut text = std::fs::read_to_string(&p).unwrap_or_default();
            if name == file {
                text = edit(text);
            }
            if !name.ends_with(".bundle") {
                std::fs::write(dir.path().join(&name), text).unwrap();
            }
        }
    }
    dir
}

fn compile_dir(dir: &Path) -> Result<(), CompileError> {
    compile(&read_dir(dir)?, &Options::default()).map(|_| ())
}

#[test]
fn unsupported_constructs_name_the_policy_line_and_construct() {
    let cases = [
        (
            "context.now > 0 && decimal(\"1.5\").lessThan(decimal(\"2.0\"))",
            "decimal",
        ),
        ("ip(\"10.0.0.1\").isLoopback()", "ip"),
        ("principal.hasTag(\"x\")", "tags"),
    ];
    for (cond, construct) in cases {
        let extra = format!(
            "\n\n@id(\"uses-extension\")\npermit(principal, action, resource)\nwhen {{ {cond} }};\n"
        );
        let dir = edited("finance.cedar", |t| t + &extra);
        let e = compile(
            &read_dir(dir.path()).unwrap(),
            &Options {
                validate: false,
                version: None,
                ..Options::default()
            },
        )
        .err()
        .expect("refused");
        match &e {
            CompileError::Unsupported {
                file,
                line,
                policy,
                construct: c,
            } => {
                assert!(file.ends_with("finance.cedar"), "{e}");
                assert_eq!(policy, "uses-extension");
                let text = std::fs::read_to_string(dir.path().join("finance.cedar")).unwrap();
                let want = text
                    .lines()
                    .position(|l| l.starts_with("@id(\"uses-extension\")"))
                    .unwrap()
                    + 1;
                assert_eq!(*line, want, "{e}");
                assert!(c.contains(construct), "{e}");
            }
            other => panic!("expected Unsupported, got {other}"),
        }
    }
    let dir = edited("finance.cedar", |t| {
        t + "\n@id(\"per-user\")\npermit(principal == ?principal, action, resource);\n"
    });
    let e = compile_dir(dir.path()).unwrap_err();
    let text = std::fs::read_to_string(dir.path().join("finance.cedar")).unwrap();
    let want = text
        .lines()
        .position(|l| l.starts_with("@id(\"per-user\")"))
        .unwrap()
        + 1;
    match &e {
        CompileError::Unsupported {
            file,
            line,
            policy,
            construct,
        } => {
            assert!(file.ends_with("finance.cedar"), "{e}");
            assert_eq!((policy.as_str(), *line), ("per-user", want), "{e}");
            assert!(construct.contains("template"), "{e}");
        }
        other => panic!("expected Unsupported, got {other}"),
    }
}

#[test]
fn schema_violations_and_bad_sources_are_named() {
    let dir = edited("renewal.cedar", |t| {
        t.replace(
            "resource.csm == principal",
            "resource.csm_typo == principal",
        )
    });
    let e = compile_dir(dir.path()).unwrap_err();
    match &e {
        CompileError::Invalid {
            file,
            policy,
            line,
            message,
        } => {
            assert!(file.ends_with("renewal.cedar"));
            assert_eq!(policy, "csm-reads-assigned-accounts");
            assert!(message.contains("csm_typo"), "{e}");
            let text = std::fs::read_to_string(dir.path().join("renewal.cedar")).unwrap();
            assert_eq!(
                text.lines().nth(*line - 1).map(|l| l.contains("csm_typo")),
                Some(true),
                "{e}"
            );
        }
        other => panic!("expected a validation error, got {other}"),
    }
    let dir = edited("renewal.cedar", |t| {
        t.replace("resource.csm == principal", "resource.csm == 3")
    });
    assert!(matches!(
        compile_dir(dir.path()),
        Err(CompileError::Invalid { .. })
    ));

    let dir = edited("guardrails.cedar", |t| {
        t.replace(
            "forbid (principal, action, resource)\nunless",
            "forbid (principal, action, resource\nunless",
        )
    });
    let e = compile_dir(dir.path()).unwrap_err();
    assert!(
        matches!(&e, CompileError::Parse { file, line, .. } if file.ends_with("guardrails.cedar") && *line > 1),
        "{e}"
    );

    let dir = edited("entities.json", |t| {
        t.replace("\"status\": \"active\"", "\"status\": 7")
    });
    let e = compile_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("entities.json") && e.contains("status"), "{e}");

    let dir = edited("tools.toml", |t| {
        t.replace("resource = { type = \"Customer\", arg = \"customer_id\" }\nscope = { customer_id = \"customer_id\" }\nrecord_count_arg = \"limit\"\ninput_schema", "resource = { type = \"Client\", arg = \"customer_id\" }\nscope = { customer_id = \"customer_id\" }\nrecord_count_arg = \"limit\"\ninput_schema")
    });
    let e = compile_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("tools.toml") && e.contains("resource.type") && e.contains("Client"),
        "{e}"
    );

    let dir = edited("purposes.toml", |t| {
        t.replace("\"contracts.read\",", "\"contracts.reed\",")
    });
    let e = compile_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("purposes.toml") && e.contains("contracts.reed"),
        "{e}"
    );

    let dir = edited("finance.cedar", |t| {
        t.replace(
            "@id(\"account-owner-reads-payment-history\")",
            "@id(\"finance-admins-change-billing-terms\")",
        )
    });
    let e = compile_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("duplicate policy id"), "{e}");
}

#[test]
fn damaged_bundles_are_refused_whole() {
    let (bytes, _) = portcullis_compile::build(&policies_dir(), &Options::default()).unwrap();
    assert!(Bundle::from_bytes(&bytes).is_ok());
    for cut in [0, 7, 20, bytes.len() / 2, bytes.len() - 1] {
        let e = Bundle::from_bytes(&bytes[..cut]).unwrap_err();
        assert!(matches!(e, BundleError::Truncated(_)), "cut at {cut}: {e}");
    }
    let mut flipped = bytes.clone();
    let last = flipped.len() - 10;
    flipped[last] ^= 1;
    assert!(matches!(
        Bundle::from_bytes(&flipped),
        Err(BundleError::Corrupted { .. })
    ));
    let mut foreign = bytes.clone();
    foreign[0] = b'X';
    assert_eq!(
        Bundle::from_bytes(&foreign).unwrap_err(),
        BundleError::NotABundle
    );
    let mut newer = bytes.clone();
    newer[8..10].copy_from_slice(&(bundle::FORMAT_MAJOR + 1).to_le_bytes());
    let e = Bundle::from_bytes(&newer).unwrap_err();
    assert!(matches!(e, BundleError::NewerFormat { .. }), "{e}");
    assert!(e.to_string().contains("newer"), "{e}");
    // A newer minor version of the same major loads.
    let mut minor = bytes.clone();
    minor[10..12].copy_from_slice(&7u16.to_le_bytes());
    assert!(Bundle::from_bytes(&minor).is_ok());
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(matches!(
        Bundle::from_bytes(&extra),
        Err(BundleError::Malformed(_))
    ));
}

#[test]
fn a_consistent_digest_cannot_smuggle_bad_indices() {
    // Even a bundle whose digest matches (a buggy or hostile compiler) is checked index by
    // index: out-of-range references are refused, never followed.
    let compiled = compile(&read_dir(&policies_dir()).unwrap(), &Options::default()).unwrap();
    let mut data = compiled.data.clone();
    data.policies[0].conditions.push(u32::MAX);
    let bytes = bundle::encode(&data, "0.1.0").unwrap();
    assert!(matches!(
        Bundle::from_bytes(&bytes),
        Err(BundleError::Malformed(_))
    ));
    let mut data = compiled.data.clone();
    let n = data.exprs.len() as u32;
    data.exprs.push(portcullis::decision::ir::Expr::Not(n));
    let bytes = bundle::encode(&data, "0.1.0").unwrap();
    assert!(
        matches!(Bundle::from_bytes(&bytes), Err(BundleError::Malformed(_))),
        "a cycle is refused"
    );
}

#[test]
fn the_committed_example_bundle_is_rebuilt_byte_for_byte() {
    // The gateway embeds policies/example.bundle; it must be exactly what the compiler
    // makes of policies/ with the version and compile time the file records.
    let path = policies_dir().join("example.bundle");
    let committed = std::fs::read(&path).unwrap();
    let meta = Bundle::from_bytes(&committed).unwrap().meta().clone();
    let at = portcullis::clock::parse_rfc3339(&meta.compiled_at).unwrap();
    let (rebuilt, _) = portcullis_compile::build(
        &policies_dir(),
        &Options {
            version: Some(meta.version.clone()),
            compiled_at: Some(at),
            ..Options::default()
        },
    )
    .unwrap();
    assert!(
        rebuilt == committed,
        "policies/example.bundle is stale: run `SOURCE_DATE_EPOCH=$(date +%s) cargo run -p portcullis-policy-compiler -- build policies -o policies/example.bundle --bundle-version {}`",
        meta.version
    );
}

#[test]
fn the_same_sources_version_and_time_give_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = policies_dir();
    let mut outputs = Vec::new();
    for name in ["a.bundle", "b.bundle"] {
        let out = tmp.path().join(name);
        let status = Command::new(BIN)
            .args(["build", dir.to_str().unwrap(), "-o", out.to_str().unwrap()])
            .env("SOURCE_DATE_EPOCH", "1795497225")
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        outputs.push(std::fs::read(&out).unwrap());
    }
    assert!(
        outputs[0] == outputs[1],
        "two builds of the same sources differ"
    );
    let meta = Bundle::from_bytes(&outputs[0]).unwrap().meta().clone();
    assert_eq!(meta.compiled_at, "2026-11-24T05:13:45Z");
    assert!(
        meta.version.starts_with("20261124T051345Z-"),
        "{}",
        meta.version
    );

    let bad = Command::new(BIN)
        .args(["build", dir.to_str().unwrap(), "-o"])
        .arg(tmp.path().join("c.bundle"))
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SOURCE_DATE_EPOCH"));
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_build_check_and_decide() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("b.bundle");
    let dir = policies_dir();
    let (ok, stdout, stderr) = run(&[
        "build",
        dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--bundle-version",
        "v7",
    ]);
    assert!(ok, "{stderr}");
    for field in [
        "version   v7",
        "digest    sha256:",
        "policies  9",
        "entities",
        "compiled  in",
    ] {
        assert!(stdout.contains(field), "{field}: {stdout}");
    }
    let (ok, stdout, _) = run(&["check", dir.to_str().unwrap()]);
    assert!(ok && stdout.starts_with("ok: 9 policies"), "{stdout}");

    let ctx = tmp.path().join("ctx.json");
    std::fs::write(&ctx, r#"{"tenant_id":"tenant_acme","purpose":"p","task_id":"t","session_id":"s","data_classes":[],"record_count":1,"agent_id":"a","agent_kind":"renewal_reviewer","delegation_depth":0,"now":0}"#).unwrap();
    let b = out.to_str().unwrap();
    let (ok, stdout, stderr) = run(&[
        "decide",
        "--bundle",
        b,
        "--principal",
        "User::\"user_7f3a91\"",
        "--action",
        "Action::\"contracts.read\"",
        "--resource",
        "Contract::\"contract_7781\"",
        "--context",
        ctx.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "ALLOW csm-works-on-contracts-of-assigned-accounts"
    );

    let reqs = tmp.path().join("reqs.jsonl");
    let c = std::fs::read_to_string(&ctx).unwrap();
    std::fs::write(&reqs, format!(
        "{{\"principal\":\"User::\\\"user_7f3a91\\\"\",\"action\":\"Action::\\\"billing.update\\\"\",\"resource\":\"Customer::\\\"cust_acme_1042\\\"\",\"context\":{c}}}\n\
         {{\"principal\":\"User::\\\"user_f1n4nc\\\"\",\"action\":\"Action::\\\"billing.update\\\"\",\"resource\":\"Customer::\\\"cust_acme_1042\\\"\",\"context\":{c}}}\n\
         {{\"principal\":\"User::\\\"user_7f3a91\\\"\",\"action\":\"Action::\\\"contracts.read\\\"\",\"resource\":\"Contract::\\\"contract_5555\\\"\",\"context\":{c}}}\n"
    )).unwrap();
    let (ok, stdout, stderr) = run(&[
        "decide",
        "--bundle",
        b,
        "--requests",
        reqs.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "DENY",
            "ALLOW finance-admins-change-billing-terms",
            "DENY tenant-isolation"
        ]
    );

    let (ok, _, stderr) = run(&[
        "decide",
        "--bundle",
        b,
        "--principal",
        "user_7f3a91",
        "--action",
        "Action::\"x\"",
        "--resource",
        "R::\"r\"",
    ]);
    assert!(
        !ok && stderr.contains("not an entity reference"),
        "{stderr}"
    );
    let bad = tmp.path().join("bad.bundle");
    std::fs::write(&bad, b"PCLSBNDL\x01\x00").unwrap();
    let (ok, _, stderr) = run(&[
        "decide",
        "--bundle",
        bad.to_str().unwrap(),
        "--requests",
        reqs.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("truncated"), "{stderr}");
}

#[test]
fn entities_with_several_new_parents_compile_to_the_same_bytes_every_time() {
    // Cedar hands an entity's parents back in hash order, which changes between runs; an
    // entity whose parents the compiler has not numbered yet must not take that order in.
    let entities = r#"[
        {"uid":{"type":"Employee","id":"e"},"attrs":{},"parents":[
            {"type":"Team","id":"a"},{"type":"Team","id":"b"},{"type":"Team","id":"c"},
            {"type":"Team","id":"d"},{"type":"Team","id":"e"},{"type":"Team","id":"f"}]}
    ]"#;
    let s = portcullis_compile::Sources {
        policies: vec![(
            "p.cedar".into(),
            r#"permit(principal in Team::"a", action, resource);"#.into(),
        )],
        schema: None,
        entities: ("entities.json".into(), entities.into()),
        tools: ("tools.toml".into(), String::new()),
        purposes: ("purposes.toml".into(), String::new()),
    };
    let opts = Options {
        validate: false,
        version: Some("v".into()),
        compiled_at: Some(1_795_497_225),
    };
    let build = || bundle::encode(&compile(&s, &opts).unwrap().data, "0.1.0").unwrap();
    let first = build();
    for _ in 0..16 {
        assert!(build() == first, "two builds of the same sources differ");
    }
}
