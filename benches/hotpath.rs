//! Every step of an allowed tool call's user-space work, alone and together, so a
//! regression shows up step by step: HTTP head parse, verified-envelope cache hit,
//! argument parse, envelope scope and purpose check, policy decision, upstream request
//! rewrite, audit record encode, and the whole in-process pipeline.
//!
//! `cargo bench --bench hotpath`

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::audit::record::{
    Record, claims_who, encode, encode_outcome, encode_policy_version,
};
use portcullis::decision::{Bundle, Scratch};
use portcullis::envelope::mint::{MintOptions, claims_from_file};
use portcullis::envelope::{EnvelopeCache, SigningKey, TrustedKeys, Verifier, jws};
use portcullis::http::head::parse_request;
use portcullis::pipeline::args::ArgParser;
use portcullis::pipeline::authorize::{check_scope, decide, determining};
use portcullis::proxy::request::{Target, write_request};
use std::hint::black_box;

const SEED: &str = include_str!("../policies/envelopes/renewal-review.json");
const BUNDLE: &[u8] = include_bytes!("../policies/example.bundle");

struct World {
    token: String,
    head: Vec<u8>,
    body: Vec<u8>,
    verifier: Verifier,
    bundle: Bundle,
}

fn world() -> World {
    let key = SigningKey::generate(Some("bench".into())).unwrap();
    let now = portcullis::clock::now_unix();
    let m = serde_json::from_str::<serde_json::Value>(SEED)
        .unwrap()
        .as_object()
        .unwrap()
        .clone();
    let claims = claims_from_file(
        m,
        &MintOptions {
            now,
            ttl_secs: Some(3600),
            ..Default::default()
        },
    )
    .unwrap();
    let token = jws::sign(&claims, &key);
    let mut keys = TrustedKeys::new();
    keys.add("bench", key.public_key());
    // A realistic call body (~1 KiB): the resource id and a free-text note.
    let body = format!(
        r#"{{"contract_id":"contract_7781","note":"{}"}}"#,
        "x".repeat(950)
    )
    .into_bytes();
    let head = format!(
        "POST /v1/tools/contracts.read HTTP/1.1\r\nHost: gateway.internal:8080\r\nUser-Agent: agent-runtime/1.4\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    World {
        token,
        head,
        body,
        verifier: Verifier::new(keys, "portcullis"),
        bundle: Bundle::from_bytes(BUNDLE).unwrap(),
    }
}

fn steps(c: &mut Criterion) {
    let w = world();
    let now = portcullis::clock::now_unix();
    let mut cache = EnvelopeCache::new(1024);
    let claims = cache.verify(&w.verifier, &w.token, now).unwrap();
    let tool = w.bundle.tool("contracts.read").unwrap();
    let mut parser = ArgParser::default();
    let mut scratch = Scratch::default();
    let mut out = Vec::with_capacity(4096);
    let mut g = c.benchmark_group("hotpath");

    g.bench_function("http_head_parse", |b| {
        b.iter(|| {
            parse_request(black_box(&w.head), 16 * 1024)
                .unwrap()
                .unwrap()
        })
    });
    g.bench_function("envelope_verify_cached", |b| {
        b.iter(|| cache.verify(&w.verifier, black_box(&w.token), now).unwrap())
    });
    g.bench_function("args_parse", |b| {
        b.iter(|| parser.with_args(black_box(&w.body), |a| a.is_ok()))
    });
    g.bench_function("scope_and_purpose", |b| {
        b.iter(|| {
            parser.with_args(&w.body, |a| {
                check_scope(&w.bundle, &claims, tool, &a.unwrap()).is_ok()
            })
        })
    });
    g.bench_function("policy_decide", |b| {
        parser.with_args(&w.body, |a| {
            let facts = check_scope(&w.bundle, &claims, tool, &a.unwrap()).unwrap();
            b.iter(|| {
                decide(
                    &w.bundle,
                    &mut scratch,
                    &claims,
                    tool,
                    black_box(&facts),
                    now,
                )
            })
        })
    });
    g.bench_function("request_rewrite", |b| {
        parser.with_args(&w.body, |a| {
            let a = a.unwrap();
            let t = Target {
                method: &tool.method,
                base_path: "",
                path_template: &tool.path,
                host: "127.0.0.1:7001",
                credential_header: "Authorization",
                credential_prefix: "Bearer ",
                credential: b"demo_records_api_0123456789abcdef0123456789abcdef",
                decision_id: "d-60fe6e655003-0-1",
                delegator: &claims.delegator_id,
            };
            b.iter(|| {
                out.clear();
                write_request(&mut out, &t, &|k| a.scalar(k), &mut a.keys(), Some(&w.body))
                    .unwrap();
            })
        })
    });
    // Once per bundle in the gateway (`Active`).
    let mut policy_version = Vec::new();
    encode_policy_version(
        &mut policy_version,
        &w.bundle.meta().version,
        &w.bundle.meta().digest_hex,
    );
    g.bench_function("audit_encode", |b| {
        b.iter(|| {
            out.clear();
            let r = Record {
                time_us: 1_790_000_000_000_000,
                decision_id: "d-60fe6e655003-0-1",
                allowed: true,
                reason: "allow",
                who: claims_who(&claims),
                tool: "contracts.read",
                resource: "contract_7781",
                data_classes: &tool.data_classes,
                record_count: 1,
                policy_version: &policy_version,
                policies: &|f| f("csm-works-on-contracts-of-assigned-accounts"),
                via: "http",
            };
            encode(&mut out, black_box(&r));
            encode_outcome(&mut out, 45, 200);
        })
    });
    let mut audit = Vec::with_capacity(1024);
    g.bench_function("pipeline_allowed_call", |b| {
        b.iter(|| {
            let head = parse_request(black_box(&w.head), 16 * 1024)
                .unwrap()
                .unwrap();
            let auth = &w.head[head.authorization.clone().unwrap()];
            let token = std::str::from_utf8(&auth[7..]).unwrap();
            let claims = cache.verify(&w.verifier, token, now).unwrap();
            let tool = w.bundle.tool("contracts.read").unwrap();
            parser.with_args(&w.body, |a| {
                let a = a.unwrap();
                let facts = check_scope(&w.bundle, &claims, tool, &a).unwrap();
                assert!(decide(&w.bundle, &mut scratch, &claims, tool, &facts, now));
                out.clear();
                let t = Target {
                    method: &tool.method,
                    base_path: "",
                    path_template: &tool.path,
                    host: "127.0.0.1:7001",
                    credential_header: "Authorization",
                    credential_prefix: "Bearer ",
                    credential: b"demo_records_api_0123456789abcdef0123456789abcdef",
                    decision_id: "d-60fe6e655003-0-1",
                    delegator: &claims.delegator_id,
                };
                write_request(&mut out, &t, &|k| a.scalar(k), &mut a.keys(), Some(&w.body))
                    .unwrap();
                audit.clear();
                let r = Record {
                    time_us: portcullis::clock::now_unix_micros(),
                    decision_id: "d-60fe6e655003-0-1",
                    allowed: true,
                    reason: "allow",
                    who: claims_who(&claims),
                    tool: &tool.name,
                    resource: facts.resource_id,
                    data_classes: &tool.data_classes,
                    record_count: facts.record_count,
                    policy_version: &policy_version,
                    policies: &|f| determining(&w.bundle, &scratch, f),
                    via: "http",
                };
                encode(&mut audit, &r);
                black_box(audit.len())
            })
        })
    });
    g.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
