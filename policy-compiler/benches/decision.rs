//! Decision cost: the compiled table versus `cedar-policy`'s authorizer on the same
//! policies and request, as the policy set grows (spread over many actions, and all on one
//! action), plus compile time and bundle size for a large set.
//!
//! `cargo bench -p portcullis-policy-compiler --bench decision`

use cedar_policy::{
    Authorizer, Context as CContext, Entities, EntityUid as CUid, Request as CRequest,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portcullis::decision::{Bundle, Context, CtxValue, EntityUid, Request, Scratch};
use portcullis_compile::{Options, Sources, compile};
use std::hint::black_box;
use std::str::FromStr;

/// `n` policies over `actions` actions (five forms, RBAC, ReBAC and ABAC), and an entity
/// store of `users` users in groups and `docs` documents with owners.
fn synthetic(n: usize, actions: usize, users: usize, docs: usize) -> Sources {
    let mut text = String::new();
    for i in 0..n {
        let a = i % actions;
        let g = i % 16;
        let p = match i % 5 {
            0 => format!(
                "permit(principal in Group::\"g{g}\", action == Action::\"tool{a}\", resource is Doc) when {{ resource.owner == principal }};"
            ),
            1 => format!(
                "permit(principal, action == Action::\"tool{a}\", resource in Folder::\"f{g}\") when {{ context.level >= {} }};",
                i % 7
            ),
            2 => format!(
                "forbid(principal, action == Action::\"tool{a}\", resource) when {{ context.agent_kind == \"blocked{i}\" }};"
            ),
            3 => format!(
                "permit(principal is User, action == Action::\"tool{a}\", resource) when {{ principal.dept == \"d{g}\" && context.tags.contains(\"t{g}\") }};"
            ),
            _ => format!(
                "forbid(principal, action == Action::\"tool{a}\", resource) unless {{ principal.tenant == resource.tenant }};"
            ),
        };
        text.push_str(&format!("@id(\"p{i}\")\n{p}\n"));
    }
    let mut ents = Vec::new();
    for g in 0..16 {
        ents.push(format!(
            r#"{{"uid":{{"type":"Group","id":"g{g}"}},"attrs":{{}},"parents":[]}}"#
        ));
        ents.push(format!(
            r#"{{"uid":{{"type":"Folder","id":"f{g}"}},"attrs":{{}},"parents":[]}}"#
        ));
    }
    for u in 0..users {
        ents.push(format!(
            r#"{{"uid":{{"type":"User","id":"u{u}"}},"attrs":{{"dept":"d{}","tenant":"t"}},"parents":[{{"type":"Group","id":"g{}"}}]}}"#,
            u % 16,
            u % 16
        ));
    }
    for d in 0..docs {
        ents.push(format!(
            r#"{{"uid":{{"type":"Doc","id":"d{d}"}},"attrs":{{"owner":{{"__entity":{{"type":"User","id":"u{}"}}}},"tenant":"t"}},"parents":[{{"type":"Folder","id":"f{}"}}]}}"#,
            d % users.max(1),
            d % 16
        ));
    }
    for a in 0..actions {
        ents.push(format!(
            r#"{{"uid":{{"type":"Action","id":"tool{a}"}},"attrs":{{}},"parents":[]}}"#
        ));
    }
    Sources {
        policies: vec![("bench.cedar".into(), text)],
        schema: None,
        entities: ("entities.json".into(), format!("[{}]", ents.join(","))),
        tools: ("tools.toml".into(), String::new()),
        purposes: ("purposes.toml".into(), String::new()),
    }
}

struct Fixture {
    bundle: Bundle,
    pset: cedar_policy::PolicySet,
    entities: Entities,
}

fn fixture(s: &Sources) -> Fixture {
    let c = compile(
        s,
        &Options {
            validate: false,
            version: Some("bench".into()),
            ..Options::default()
        },
    )
    .unwrap();
    let bytes = portcullis::decision::bundle::encode(&c.data, "0.1.0").unwrap();
    Fixture {
        bundle: Bundle::from_bytes(&bytes).unwrap(),
        pset: c.cedar,
        entities: Entities::from_json_str(&s.entities.1, None).unwrap(),
    }
}

const CTX_JSON: &str = r#"{"level": 3, "agent_kind": "reviewer", "tags": ["t1", "t3"]}"#;

/// The request's set-valued context attribute, built once like Cedar's request: the
/// comparison times the decision, not the caller's allocations.
fn tags() -> Vec<String> {
    vec!["t1".to_string(), "t3".to_string()]
}

#[inline(never)] // a symbol of its own, for instruction counts under callgrind
fn table(f: &Fixture, scratch: &mut Scratch, tags: &[String]) -> bool {
    let attrs = [
        ("level", CtxValue::Long(3)),
        ("agent_kind", CtxValue::Str("reviewer")),
        ("tags", CtxValue::StrSet(tags)),
    ];
    let ctx = Context::new(&attrs);
    let req = Request {
        principal: EntityUid {
            ty: "User",
            id: "u1",
        },
        action: EntityUid {
            ty: "Action",
            id: "tool0",
        },
        resource: EntityUid {
            ty: "Doc",
            id: "d1",
        },
        context: &ctx,
    };
    f.bundle.decide(&req, scratch).allow
}

fn cedar_request() -> CRequest {
    CRequest::new(
        CUid::from_str(r#"User::"u1""#).unwrap(),
        CUid::from_str(r#"Action::"tool0""#).unwrap(),
        CUid::from_str(r#"Doc::"d1""#).unwrap(),
        CContext::from_json_str(CTX_JSON, None).unwrap(),
        None,
    )
    .unwrap()
}

fn versus(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    let auth = Authorizer::new();
    let req = cedar_request();
    for n in [5usize, 1005] {
        // 5 policies on one action, or 1,005 over 201 actions (5 each).
        let f = fixture(&synthetic(n, n.div_ceil(5), 200, 400));
        let mut scratch = Scratch::default();
        let tags = tags();
        let ours = table(&f, &mut scratch, &tags);
        let theirs = auth.is_authorized(&req, &f.pset, &f.entities).decision()
            == cedar_policy::Decision::Allow;
        assert_eq!(ours, theirs, "same decision before timing");
        g.bench_with_input(BenchmarkId::new("table", n), &n, |b, _| {
            b.iter(|| table(black_box(&f), &mut scratch, &tags))
        });
        g.bench_with_input(BenchmarkId::new("cedar", n), &n, |b, _| {
            b.iter(|| auth.is_authorized(black_box(&req), &f.pset, &f.entities))
        });
    }
    g.finish();
}

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("table_scaling");
    for n in [10usize, 100, 1000, 10_000] {
        let spread = fixture(&synthetic(n, n.div_ceil(5), 200, 400));
        let one = fixture(&synthetic(n, 1, 200, 400));
        let mut scratch = Scratch::default();
        let tags = tags();
        g.bench_with_input(BenchmarkId::new("spread_over_actions", n), &n, |b, _| {
            b.iter(|| table(black_box(&spread), &mut scratch, &tags))
        });
        g.bench_with_input(BenchmarkId::new("all_on_one_action", n), &n, |b, _| {
            b.iter(|| table(black_box(&one), &mut scratch, &tags))
        });
    }
    g.finish();
}

fn compile_large(c: &mut Criterion) {
    let s = synthetic(10_000, 2_000, 50_000, 50_000);
    let c0 = compile(
        &s,
        &Options {
            validate: false,
            version: Some("bench".into()),
            ..Options::default()
        },
    )
    .unwrap();
    let bytes = portcullis::decision::bundle::encode(&c0.data, "0.1.0").unwrap();
    eprintln!(
        "large bundle: {} policies, {} entities, {} bytes ({:.1} MiB)",
        c0.data.policies.len(),
        c0.data.meta.counts.entities.max(c0.data.entities.len()),
        bytes.len(),
        bytes.len() as f64 / (1024.0 * 1024.0)
    );
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(30));
    g.bench_function("10k_policies_100k_entities", |b| {
        b.iter(|| {
            compile(
                black_box(&s),
                &Options {
                    validate: false,
                    version: Some("bench".into()),
                    ..Options::default()
                },
            )
            .unwrap()
        })
    });
    g.bench_function("load_10k_policies_100k_entities", |b| {
        b.iter(|| Bundle::from_bytes(black_box(&bytes)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, versus, scaling, compile_large);
criterion_main!(benches);
