//! The compiled decision table against Cedar's own authorizer, the correctness oracle:
//! the example policy set over a grid of requests, and generated policy sets, entity
//! hierarchies and requests exercising every supported construct (well-typed and not).
//! Every request must get the same decision, the same determining policies and the same
//! erroring policies from both.

use cedar_policy::{
    Authorizer, Context as CContext, Entities, EntityUid as CUid, Request as CRequest, Schema,
};
use portcullis::decision::{
    Bundle, Context, CtxValue, EntityUid, OwnedContext, OwnedValue, Request, Scratch,
};
use portcullis_compile::{Options, Sources, compile, read_dir};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::str::FromStr;

/// A small deterministic generator (xorshift64*): reproducible failures by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

struct Oracle {
    pset: cedar_policy::PolicySet,
    entities: Entities,
    bundle: Bundle,
}

impl Oracle {
    fn new(sources: &Sources, schema: Option<&Schema>, validate: bool) -> Result<Oracle, String> {
        let compiled = compile(
            sources,
            &Options {
                validate,
                version: Some("t".into()),
                ..Options::default()
            },
        )
        .map_err(|e| e.to_string())?;
        let bytes = portcullis::decision::bundle::encode(&compiled.data, "0.1.0").unwrap();
        let bundle = Bundle::from_bytes(&bytes).map_err(|e| e.to_string())?;
        let pset = compiled.cedar;
        let mut ents: Value = serde_json::from_str(&sources.entities.1).unwrap();
        if let Some(s) = schema {
            let actions = s.action_entities().unwrap().to_json_value().unwrap();
            ents.as_array_mut()
                .unwrap()
                .extend(actions.as_array().unwrap().iter().cloned());
        }
        let entities = Entities::from_json_value(ents, schema).map_err(|e| e.to_string())?;
        Ok(Oracle {
            pset,
            entities,
            bundle,
        })
    }

    /// Decides with both and panics with the request if they disagree.
    fn check(
        &self,
        scratch: &mut Scratch,
        p: (&str, &str),
        a: (&str, &str),
        r: (&str, &str),
        ctx: &Value,
        what: &str,
    ) {
        let uid = |(t, i): (&str, &str)| CUid::from_str(&format!("{t}::{}", json!(i))).unwrap();
        let creq = CRequest::new(
            uid(p),
            uid(a),
            uid(r),
            CContext::from_json_value(ctx.clone(), None).unwrap(),
            None,
        )
        .unwrap();
        let resp = Authorizer::new().is_authorized(&creq, &self.pset, &self.entities);
        let c_allow = resp.decision() == cedar_policy::Decision::Allow;
        let c_reason: BTreeSet<String> =
            resp.diagnostics().reason().map(|p| p.to_string()).collect();
        let c_errors: BTreeSet<String> = resp
            .diagnostics()
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                    e.policy_id().to_string()
                }
            })
            .collect();

        let owned = OwnedContext::from_json(ctx).unwrap();
        let view = owned.view();
        let context = Context::new(&view);
        let req = Request {
            principal: EntityUid { ty: p.0, id: p.1 },
            action: EntityUid { ty: a.0, id: a.1 },
            resource: EntityUid { ty: r.0, id: r.1 },
            context: &context,
        };
        let d = self.bundle.decide(&req, scratch);
        let names = |list: &[portcullis::decision::PolicyRef]| -> BTreeSet<String> {
            list.iter()
                .map(|p| self.bundle.policy_id(*p).to_owned())
                .collect()
        };
        let reason = names(scratch.determining());
        let errors = names(scratch.errored());
        // The gateway's own forms (`CtxValue::Str`, `StrSet`, ...) take other paths through
        // the evaluator than values parsed from JSON: in that form the same request must
        // decide the same way.
        let sets: Vec<Option<Vec<String>>> = owned
            .attrs
            .iter()
            .map(|(_, v)| match v {
                OwnedValue::Set(items) => items
                    .iter()
                    .map(|i| match i {
                        OwnedValue::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            })
            .collect();
        let native: Vec<(&str, CtxValue<'_>)> = owned
            .attrs
            .iter()
            .zip(&sets)
            .map(|((k, v), set)| {
                let v = match (v, set) {
                    (OwnedValue::Bool(b), _) => CtxValue::Bool(*b),
                    (OwnedValue::Long(n), _) => CtxValue::Long(*n),
                    (OwnedValue::Str(s), _) => CtxValue::Str(s),
                    (_, Some(set)) => CtxValue::StrSet(set),
                    (OwnedValue::Entity { ty, id }, _) => CtxValue::Entity(EntityUid { ty, id }),
                    _ => CtxValue::Value(v),
                };
                (k.as_str(), v)
            })
            .collect();
        let native_ctx = Context::new(&native);
        let d2 = self.bundle.decide(
            &Request {
                context: &native_ctx,
                ..req
            },
            scratch,
        );
        let same_as_json =
            d2 == d && names(scratch.determining()) == reason && names(scratch.errored()) == errors;
        assert!(
            same_as_json,
            "native context decides otherwise than JSON on {what}\nrequest: {p:?} {a:?} {r:?} context {ctx}"
        );
        assert!(
            c_allow == d.allow && c_reason == reason && c_errors == errors,
            "disagreement on {what}\nrequest: {p:?} {a:?} {r:?} context {ctx}\ncedar: allow={c_allow} reason={c_reason:?} errors={c_errors:?}\ntable: allow={} reason={reason:?} errors={errors:?}\npolicies:\n{}",
            d.allow,
            self.pset
        );
    }
}

#[test]
fn example_policies_decide_exactly_as_cedar() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
    let sources = read_dir(std::path::Path::new(dir)).unwrap();
    let schema = Schema::from_cedarschema_str(&sources.schema.as_ref().unwrap().1)
        .unwrap()
        .0;
    let o = Oracle::new(&sources, Some(&schema), true).unwrap();
    let users = [
        "user_7f3a91",
        "user_0cc0a2",
        "user_f1n4nc",
        "user_2b9c44",
        "nobody",
    ];
    let actions = [
        "contracts.read",
        "contracts.classify_clauses",
        "contracts.summarize_renewal_risk",
        "crm.read",
        "payments.history",
        "tickets.create",
        "renewal_notes.update",
        "billing.update",
        "data_tools",
        "unknown.tool",
    ];
    let resources = [
        ("Customer", "cust_acme_1042"),
        ("Customer", "cust_acme_1077"),
        ("Customer", "cust_globex_2001"),
        ("Contract", "contract_7781"),
        ("Contract", "contract_7790"),
        ("Contract", "contract_5555"),
        ("Contract", "contract_0000"),
        ("User", "user_7f3a91"),
    ];
    let mut scratch = Scratch::default();
    scratch.collect_all_errors = true;
    let mut n = 0;
    for tenant in ["tenant_acme", "tenant_globex"] {
        for kind in ["renewal_reviewer", "email_drafter"] {
            for depth in [0, 1, 2] {
                for records in [1, 101] {
                    let ctx = json!({
                        "tenant_id": tenant, "purpose": "review_customer_contract_for_renewal_risk",
                        "task_id": "t", "session_id": "s", "data_classes": ["contract_metadata"],
                        "record_count": records, "agent_id": "a", "agent_kind": kind,
                        "delegation_depth": depth, "now": 1_790_000_000
                    });
                    for u in users {
                        for a in actions {
                            for r in resources {
                                o.check(
                                    &mut scratch,
                                    ("User", u),
                                    ("Action", a),
                                    r,
                                    &ctx,
                                    "example set",
                                );
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(n, 24 * 5 * 10 * 8);
}

// ---- generated policy sets -------------------------------------------------------------

const TYPES: [&str; 4] = ["User", "Group", "Doc", "Folder"];
const ATTRS: [&str; 7] = ["level", "name", "tags", "owner", "info", "flag", "missing"];

struct World {
    users: Vec<String>,
    groups: Vec<String>,
    docs: Vec<String>,
    folders: Vec<String>,
}

fn entity_ref(rng: &mut Rng, w: &World) -> (String, String) {
    let (ty, list) = match rng.below(5) {
        0 => ("User", &w.users),
        1 => ("Group", &w.groups),
        2 => ("Doc", &w.docs),
        3 => ("Folder", &w.folders),
        _ => return (rng.pick(&TYPES).to_string(), "ghost".to_string()),
    };
    (ty.to_string(), rng.pick(list).clone())
}

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Bool,
    Long,
    Str,
    Ent,
    Set,
    Rec,
}

const ALL_TYPES: [Ty; 6] = [Ty::Bool, Ty::Long, Ty::Str, Ty::Ent, Ty::Set, Ty::Rec];

fn ent_lit(rng: &mut Rng, w: &World) -> String {
    let (t, i) = entity_ref(rng, w);
    format!("{t}::\"{i}\"")
}

/// An attribute source: an entity (from the store or not), or the context.
fn holder(rng: &mut Rng, w: &World, depth: u32) -> String {
    match rng.below(7) {
        0..=2 => "context".into(),
        3 => "principal".into(),
        4 => "resource".into(),
        5 => ent_lit(rng, w),
        _ => generate(rng, w, depth + 1, Ty::Ent),
    }
}

/// An expression meant to have type `ty`; now and then (about one node in fifteen) of
/// another type, so type errors are exercised too.
fn generate(rng: &mut Rng, w: &World, depth: u32, ty: Ty) -> String {
    let ty = if rng.chance(4) {
        *rng.pick(&ALL_TYPES)
    } else {
        ty
    };
    let leaf = depth >= 3 || rng.chance(35);
    let g = |rng: &mut Rng, t: Ty| generate(rng, w, depth + 1, t);
    match ty {
        Ty::Bool if leaf => match rng.below(4) {
            0 => rng.pick(&["true", "false"]).to_string(),
            1 => format!("{}.flag", holder(rng, w, depth)),
            2 => format!("{} has {}", holder(rng, w, depth), rng.pick(&ATTRS)),
            _ => format!("{} has info.a", holder(rng, w, depth)),
        },
        Ty::Bool => match rng.below(17) {
            0 | 14 | 15 | 16 => format!(
                "({}) {} ({})",
                g(rng, Ty::Long),
                rng.pick(&["<", "<=", ">", ">=", "==", "!="]),
                g(rng, Ty::Long)
            ),
            1 => {
                let t = *rng.pick(&ALL_TYPES);
                format!(
                    "({}) {} ({})",
                    g(rng, t),
                    rng.pick(&["==", "!="]),
                    g(rng, t)
                )
            }
            2 => format!("!({})", g(rng, Ty::Bool)),
            3 => format!("({}) && ({})", g(rng, Ty::Bool), g(rng, Ty::Bool)),
            4 => format!("({}) || ({})", g(rng, Ty::Bool), g(rng, Ty::Bool)),
            5 => format!(
                "if ({}) then ({}) else ({})",
                g(rng, Ty::Bool),
                g(rng, Ty::Bool),
                g(rng, Ty::Bool)
            ),
            6 => format!("({}) in ({})", g(rng, Ty::Ent), g(rng, Ty::Ent)),
            7 => format!(
                "({}) in [{}, {}]",
                g(rng, Ty::Ent),
                g(rng, Ty::Ent),
                ent_lit(rng, w)
            ),
            8 => {
                let elem = if rng.chance(50) { Ty::Str } else { Ty::Ent };
                format!("({}).contains({})", g(rng, Ty::Set), g(rng, elem))
            }
            9 => format!(
                "({}).{}({})",
                g(rng, Ty::Set),
                rng.pick(&["containsAll", "containsAny"]),
                g(rng, Ty::Set)
            ),
            10 => format!("({}).isEmpty()", g(rng, Ty::Set)),
            11 => format!(
                "({}) like \"{}\"",
                g(rng, Ty::Str),
                rng.pick(&["a*", "*", "ab\\*c", "h*o", "", "*b*"])
            ),
            12 => {
                let t = rng.pick(&TYPES);
                if rng.chance(50) {
                    format!("({}) is {t}", g(rng, Ty::Ent))
                } else {
                    format!("({}) is {t} in ({})", g(rng, Ty::Ent), g(rng, Ty::Ent))
                }
            }
            _ => format!("({}) has {}", g(rng, Ty::Rec), rng.pick(&["a", "b", "c"])),
        },
        Ty::Long if leaf => match rng.below(4) {
            0 | 3 => rng
                .pick(&[
                    "0",
                    "1",
                    "1",
                    "2",
                    "-3",
                    "9223372036854775807",
                    "4611686018427387904",
                ])
                .to_string(),
            1 => format!("{}.level", holder(rng, w, depth)),
            _ => format!("({}).a", g(rng, Ty::Rec)),
        },
        Ty::Long => match rng.below(5) {
            0 => format!(
                "({}) {} ({})",
                g(rng, Ty::Long),
                rng.pick(&["+", "-", "*"]),
                g(rng, Ty::Long)
            ),
            1 => format!("-({})", g(rng, Ty::Long)),
            2 => format!(
                "if ({}) then ({}) else ({})",
                g(rng, Ty::Bool),
                g(rng, Ty::Long),
                g(rng, Ty::Long)
            ),
            _ => format!("{}.level", holder(rng, w, depth)),
        },
        Ty::Str => match rng.below(4) {
            0 | 1 => rng
                .pick(&["\"a\"", "\"b\"", "\"\"", "\"ab*c\"", "\"héllo\""])
                .to_string(),
            2 => format!("{}.name", holder(rng, w, depth)),
            _ => format!("({}).b", g(rng, Ty::Rec)),
        },
        Ty::Ent => match rng.below(if leaf { 2 } else { 4 }) {
            0 => ent_lit(rng, w),
            1 => rng.pick(&["principal", "resource", "action"]).to_string(),
            2 => format!("{}.owner", holder(rng, w, depth)),
            _ => format!(
                "if ({}) then ({}) else ({})",
                g(rng, Ty::Bool),
                g(rng, Ty::Ent),
                g(rng, Ty::Ent)
            ),
        },
        Ty::Set => match rng.below(if leaf { 2 } else { 4 }) {
            0 => format!(
                "[{}]",
                (0..rng.below(3))
                    .map(|_| rng.pick(&["\"a\"", "\"b\"", "\"c\""]).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            1 => format!("{}.tags", holder(rng, w, depth)),
            2 => format!("[{}, {}]", g(rng, Ty::Ent), ent_lit(rng, w)),
            _ => format!(
                "[{}]",
                (0..rng.below(3))
                    .map(|_| g(rng, Ty::Str))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        Ty::Rec => match rng.below(if leaf { 3 } else { 4 }) {
            0 => format!("{}.info", holder(rng, w, depth)),
            1 => format!("{{a: {}, b: \"{}\"}}", rng.below(3), rng.pick(&["a", "b"])),
            2 => format!("{{a: {}}}", rng.below(3)),
            _ => format!("{{a: {}, b: {}}}", g(rng, Ty::Long), g(rng, Ty::Str)),
        },
    }
}

fn expr(rng: &mut Rng, w: &World, depth: u32) -> String {
    generate(rng, w, depth, Ty::Bool)
}

fn scope(rng: &mut Rng, w: &World, var: &str) -> String {
    let (t, i) = entity_ref(rng, w);
    match rng.below(5) {
        0 | 1 => var.to_string(),
        2 => format!("{var} == {t}::\"{i}\""),
        3 => format!("{var} in {t}::\"{i}\""),
        _ => {
            let ty = rng.pick(&TYPES);
            if rng.chance(50) {
                format!("{var} is {ty}")
            } else {
                format!("{var} is {ty} in {t}::\"{i}\"")
            }
        }
    }
}

fn action_scope(rng: &mut Rng) -> String {
    let acts = ["read", "write", "delete", "readers", "all", "nowhere"];
    match rng.below(4) {
        0 => "action".into(),
        1 => format!("action == Action::\"{}\"", rng.pick(&acts)),
        2 => format!("action in Action::\"{}\"", rng.pick(&acts)),
        _ => format!(
            "action in [Action::\"{}\", Action::\"{}\"]",
            rng.pick(&acts),
            rng.pick(&acts)
        ),
    }
}

fn attr_value(rng: &mut Rng, w: &World, attr: &str) -> Value {
    match attr {
        "level" => json!(rng.pick(&[0i64, 1, 1, 2, i64::MAX])),
        "name" => json!(rng.pick(&["a", "b", "ab*c", "héllo"])),
        "tags" => json!(
            (0..rng.below(3))
                .map(|_| *rng.pick(&["a", "b", "c"]))
                .collect::<Vec<_>>()
        ),
        "owner" => {
            let u = rng.pick(&w.users).clone();
            json!({"__entity": {"type": "User", "id": u}})
        }
        "info" => {
            if rng.chance(30) {
                json!({"a": rng.below(3), "b": *rng.pick(&["a", "b"]), "c": true})
            } else if rng.chance(20) {
                json!({"a": rng.below(3)})
            } else {
                json!({"a": rng.below(3), "b": *rng.pick(&["a", "b"])})
            }
        }
        _ => json!(rng.chance(50)),
    }
}

fn scenario(seed: u64) -> (Sources, World) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let w = World {
        users: (0..4).map(|i| format!("u{i}")).collect(),
        groups: (0..3).map(|i| format!("g{i}")).collect(),
        docs: (0..4).map(|i| format!("d{i}")).collect(),
        folders: (0..2).map(|i| format!("f{i}")).collect(),
    };
    let mut entities = Vec::new();
    let mut add = |rng: &mut Rng, ty: &str, id: &str, parents: Vec<(String, String)>| {
        let mut attrs = serde_json::Map::new();
        for a in ["level", "name", "tags", "owner", "info", "flag"] {
            if rng.chance(60) {
                attrs.insert(a.into(), attr_value(rng, &w, a));
            }
        }
        let parents: Vec<Value> = parents
            .into_iter()
            .map(|(t, i)| json!({"type": t, "id": i}))
            .collect();
        entities.push(json!({"uid": {"type": ty, "id": id}, "attrs": attrs, "parents": parents}));
    };
    for (i, g) in w.groups.iter().enumerate() {
        let parents = if i > 0 && rng.chance(60) {
            vec![("Group".into(), w.groups[rng.below(i)].clone())]
        } else {
            vec![]
        };
        add(&mut rng, "Group", g, parents);
    }
    for u in &w.users {
        let parents = (0..rng.below(3))
            .map(|_| ("Group".to_string(), rng.pick(&w.groups).clone()))
            .collect();
        add(&mut rng, "User", u, parents);
    }
    for (i, f) in w.folders.iter().enumerate() {
        let parents = if i > 0 && rng.chance(50) {
            vec![("Folder".into(), w.folders[0].clone())]
        } else {
            vec![]
        };
        add(&mut rng, "Folder", f, parents);
    }
    for d in &w.docs {
        let parents = if rng.chance(70) {
            vec![("Folder".to_string(), rng.pick(&w.folders).clone())]
        } else {
            vec![]
        };
        add(&mut rng, "Doc", d, parents);
    }
    // The action hierarchy: read in readers, readers and write in all.
    for (a, parents) in [
        ("read", vec!["readers"]),
        ("write", vec!["all"]),
        ("delete", vec![]),
        ("readers", vec!["all"]),
        ("all", vec![]),
    ] {
        let parents: Vec<Value> = parents
            .iter()
            .map(|p| json!({"type": "Action", "id": p}))
            .collect();
        entities.push(json!({"uid": {"type": "Action", "id": a}, "attrs": {}, "parents": parents}));
    }
    let n = 1 + rng.below(10);
    let mut text = String::new();
    for _ in 0..n {
        let effect = if rng.chance(35) { "forbid" } else { "permit" };
        text.push_str(&format!(
            "{effect}({}, {}, {})",
            scope(&mut rng, &w, "principal"),
            action_scope(&mut rng),
            scope(&mut rng, &w, "resource")
        ));
        for _ in 0..rng.below(3) {
            let kind = if rng.chance(70) { "when" } else { "unless" };
            text.push_str(&format!(" {kind} {{ {} }}", expr(&mut rng, &w, 0)));
        }
        text.push_str(";\n");
    }
    let sources = Sources {
        policies: vec![("gen.cedar".into(), text)],
        schema: None,
        entities: ("entities.json".into(), Value::Array(entities).to_string()),
        tools: ("tools.toml".into(), String::new()),
        purposes: ("purposes.toml".into(), String::new()),
    };
    (sources, w)
}

fn random_context(rng: &mut Rng, w: &World) -> Value {
    let mut m = serde_json::Map::new();
    if rng.chance(80) {
        m.insert(
            "level".into(),
            json!(rng.pick(&[0i64, 1, 1, 2, i64::MAX, i64::MIN])),
        );
    }
    if rng.chance(60) {
        m.insert("name".into(), json!(rng.pick(&["a", "b"])));
    }
    if rng.chance(60) {
        let (t, i) = entity_ref(rng, w);
        m.insert("owner".into(), json!({"__entity": {"type": t, "id": i}}));
    }
    if rng.chance(50) {
        m.insert(
            "tags".into(),
            json!(
                (0..rng.below(3))
                    .map(|_| *rng.pick(&["a", "b"]))
                    .collect::<Vec<_>>()
            ),
        );
    }
    if rng.chance(40) {
        m.insert(
            "info".into(),
            if rng.chance(30) {
                json!({"a": rng.below(3)})
            } else {
                json!({"a": rng.below(3), "b": "a"})
            },
        );
    }
    Value::Object(m)
}

#[test]
fn generated_policy_sets_decide_exactly_as_cedar() {
    let scenarios: u64 = std::env::var("PORTCULLIS_DIFF_SCENARIOS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let per: usize = 600;
    let mut scratch = Scratch::default();
    scratch.collect_all_errors = true;
    let (mut requests, mut skipped, mut allows, mut errors) = (0usize, 0usize, 0usize, 0usize);
    for seed in 0..scenarios {
        let (sources, w) = scenario(seed);
        let o = match Oracle::new(&sources, None, false) {
            Ok(o) => o,
            // The generator can write things Cedar's parser refuses (e.g. `-` on the
            // minimum Long); those sets are not evaluated by either side.
            Err(e) if e.contains("gen.cedar") => {
                skipped += 1;
                continue;
            }
            Err(e) => panic!("seed {seed}: {e}\n{}", sources.policies[0].1),
        };
        let mut rng = Rng(seed ^ 0xdead_beef_cafe);
        let actions = ["read", "write", "delete", "readers", "all", "unknown"];
        for _ in 0..per {
            let p = entity_ref(&mut rng, &w);
            let r = entity_ref(&mut rng, &w);
            let a = *rng.pick(&actions);
            let ctx = random_context(&mut rng, &w);
            o.check(
                &mut scratch,
                (&p.0, &p.1),
                ("Action", a),
                (&r.0, &r.1),
                &ctx,
                &format!("seed {seed}"),
            );
            requests += 1;
            allows += usize::from(!scratch.determining().is_empty() && o.bundle.policy_count() > 0);
            errors += scratch.errored().len();
        }
    }
    assert!(
        skipped * 4 < scenarios as usize,
        "too many generated sets rejected by Cedar's parser: {skipped}"
    );
    assert!(
        requests >= 200_000 || scenarios < 400,
        "{requests} requests"
    );
    // The generator must exercise both outcomes and error handling, or it proves nothing.
    assert!(
        allows > requests / 20,
        "determining policies in only {allows} of {requests}"
    );
    assert!(
        errors > requests / 20,
        "policy errors in only {errors} of {requests}"
    );
    eprintln!(
        "{requests} requests over {} generated policy sets agreed with Cedar ({skipped} sets skipped)",
        scenarios as usize - skipped
    );
}

/// Every operator applied to every pair of operands from a pool covering each value kind,
/// each value backing (literals, constant sets and records, entity attributes, context
/// values, values built at run time) and the edge cases (overflow, missing attributes,
/// entities not in the store, mixed-type sets). One policy per expression: Cedar's reasons
/// and errors then say, policy by policy, whether each expression was true, false or an
/// error, and the table must say the same.
#[test]
fn operator_matrix_matches_cedar() {
    let operands = [
        "0",
        "1",
        "-1",
        "2",
        "9223372036854775807",
        "4611686018427387904",
        "context.min",
        "\"\"",
        "\"a\"",
        "\"ab*c\"",
        "\"héllo\"",
        "true",
        "false",
        "User::\"u0\"",
        "User::\"ghost\"",
        "Group::\"g0\"",
        "principal",
        "resource",
        "action",
        "[]",
        "[\"a\"]",
        "[\"a\", \"b\"]",
        "[User::\"u0\"]",
        "[User::\"u0\", Group::\"g0\"]",
        "[1, \"a\"]",
        "[principal, resource]",
        "context.tags",
        "principal.tags",
        "{}",
        "{a: 1}",
        "{a: 1, b: \"a\"}",
        "{a: context.level}",
        "context.info",
        "principal.info",
        "context.level",
        "context.name",
        "context.flag",
        "context.owner",
        "context.missing",
        "principal.level",
    ];
    let binary = ["==", "!=", "<", "<=", ">", ">=", "in", "&&", "||"];
    let arith = ["+", "-", "*"];
    let methods = ["contains", "containsAll", "containsAny"];
    let probes = [
        "0",
        "1",
        "2",
        "3",
        "-1",
        "-2",
        "9223372036854775807",
        "context.min",
    ];
    let mut text = String::new();
    let mut n = 0;
    let mut add = |cond: String| {
        text.push_str(&format!(
            "permit(principal, action, resource) when {{ {cond} }};\n"
        ));
        n += 1;
    };
    for a in operands {
        add(format!("!({a})"));
        add(format!("({a}).isEmpty()"));
        for p in probes {
            add(format!("-({a}) == {p}"));
        }
        for attr in ["a", "b", "level", "name", "tags", "missing"] {
            add(format!("({a}) has {attr}"));
            add(format!("({a}).{attr} == ({a}).{attr}"));
        }
        add(format!("({a}) has info.a"));
        for pat in ["\"*\"", "\"a*\"", "\"ab\\\\*c\"", "\"h*o\"", "\"\""] {
            add(format!("({a}) like {pat}"));
        }
        for t in ["User", "Group"] {
            add(format!("({a}) is {t}"));
            add(format!("({a}) is {t} in Group::\"g0\""));
        }
        add(format!("if ({a}) then true else false"));
        for b in operands {
            for op in binary {
                add(format!("({a}) {op} ({b})"));
            }
            for m in methods {
                add(format!("({a}).{m}({b})"));
            }
            // Boolean results compared, so an operand of the wrong type must show as an
            // error rather than pass as a value.
            for op in ["&&", "||"] {
                add(format!("(({a}) {op} ({b})) == false"));
            }
            // A negated conjunction (`unless { a && b }`) runs as one test over its parts
            // when each is a single step: their values, errors and the short circuit
            // must still come out as Cedar's `&&` and `!`.
            add(format!("!(({a}) && ({b}))"));
            add(format!(
                "!((({a}) has level) && (({a}).level == ({b})) && !({b}))"
            ));
            add(format!("(if ({a}) then ({b}) else ({a})) == ({b})"));
        }
    }
    // Arithmetic only ever succeeds on Longs: every pair of Long-valued operands (and a
    // few others, for the errors), each result compared with probes.
    let longs = [
        "0",
        "1",
        "-1",
        "2",
        "9223372036854775807",
        "4611686018427387904",
        "context.min",
        "context.level",
        "principal.level",
        "\"a\"",
        "context.missing",
    ];
    for a in longs {
        for b in longs {
            for op in arith {
                for p in probes {
                    add(format!("(({a}) {op} ({b})) == {p}"));
                }
            }
        }
    }
    let entities = json!([
        {"uid": {"type": "Group", "id": "g0"}, "attrs": {"level": 1}, "parents": []},
        {"uid": {"type": "User", "id": "u0"},
         "attrs": {"level": 2, "name": "a", "tags": ["a", "b"], "info": {"a": 1, "b": "a"}},
         "parents": [{"type": "Group", "id": "g0"}]},
        {"uid": {"type": "Doc", "id": "d0"}, "attrs": {}, "parents": []},
        {"uid": {"type": "Action", "id": "read"}, "attrs": {}, "parents": []}
    ]);
    let sources = Sources {
        policies: vec![("matrix.cedar".into(), text)],
        schema: None,
        entities: ("entities.json".into(), entities.to_string()),
        tools: ("tools.toml".into(), String::new()),
        purposes: ("purposes.toml".into(), String::new()),
    };
    let o = Oracle::new(&sources, None, false).unwrap();
    let mut scratch = Scratch::default();
    scratch.collect_all_errors = true;
    let contexts = [
        json!({"level": 1, "min": i64::MIN, "name": "a", "tags": ["a"], "info": {"a": 1}, "flag": true,
               "owner": {"__entity": {"type": "User", "id": "u0"}}}),
        json!({"level": 9223372036854775807i64, "min": i64::MIN, "name": "héllo", "tags": [], "info": {"a": 1, "b": "a"}, "flag": false,
               "owner": {"__entity": {"type": "User", "id": "ghost"}}}),
    ];
    for ctx in &contexts {
        for principal in ["u0", "ghost"] {
            o.check(
                &mut scratch,
                ("User", principal),
                ("Action", "read"),
                ("Doc", "d0"),
                ctx,
                "operator matrix",
            );
        }
    }
    assert!(n > 20_000, "{n} expressions");
}
