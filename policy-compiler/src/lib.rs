//! `portcullis-compile` as a library: Cedar policies, a Cedar schema, Cedar entities, the
//! tool registry and the purpose profiles in; a verified decision-table bundle out.
//!
//! Cedar (`cedar-policy`) parses and validates everything; `lower` turns the result into
//! the gateway's IR. Errors name the file, the line and, for policies, the policy id.
#![forbid(unsafe_code)]

pub mod lower;

use cedar_policy::{Entities, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use lower::{Builder, Unsupported, uid_of};
use miette::Diagnostic;
use portcullis::decision::ir::{BundleData, Counts, Effect, MetaData, PolicyData, Var};
use portcullis::decision::registry::{self, PurposeProfile, ToolSpec};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub const COMPILER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What went wrong, and where. Every variant is the policy author's to fix except `Io`.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Parse {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}:{line}: policy `{policy}`: {message}")]
    Invalid {
        file: String,
        line: usize,
        policy: String,
        message: String,
    },
    #[error(
        "{file}:{line}: policy `{policy}` uses {construct}, which the decision table cannot express exactly"
    )]
    Unsupported {
        file: String,
        line: usize,
        policy: String,
        construct: String,
    },
    #[error("{file}: {message}")]
    Source { file: String, message: String },
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
}

/// The inputs, as texts with the names errors should use.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `*.cedar` files, in the order their policies are numbered.
    pub policies: Vec<(String, String)>,
    pub schema: Option<(String, String)>,
    pub entities: (String, String),
    pub tools: (String, String),
    pub purposes: (String, String),
}

/// Compile options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Validate policies (strict mode) and entities against the schema. Always on for
    /// policy directories; tests of the evaluator's dynamic semantics turn it off.
    pub validate: bool,
    /// The bundle version; default `<compile time>-<source digest prefix>`.
    pub version: Option<String>,
    /// The compile time recorded in the bundle (Unix seconds); default now. With the same
    /// sources, version and compile time, the bundle is the same byte for byte: the CLI
    /// takes it from `SOURCE_DATE_EPOCH`, as reproducible builds do.
    pub compiled_at: Option<i64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            validate: true,
            version: None,
            compiled_at: None,
        }
    }
}

/// A compiled bundle and what the summary prints.
pub struct Compiled {
    pub data: BundleData,
    /// The policies as Cedar parsed them, under the bundle's ids.
    pub cedar: PolicySet,
    pub policy_files: HashMap<String, String>,
    pub warnings: Vec<String>,
}

fn read(path: &Path) -> Result<String, CompileError> {
    std::fs::read_to_string(path).map_err(|e| CompileError::Io {
        path: path.to_owned(),
        source: e,
    })
}

/// Reads a policy directory: `*.cedar` (sorted by name), `schema.cedarschema`,
/// `entities.json`, `tools.toml`, `purposes.toml`.
pub fn read_dir(dir: &Path) -> Result<Sources, CompileError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CompileError::Io {
            path: dir.to_owned(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CompileError::Source {
            file: dir.display().to_string(),
            message: "no *.cedar policy files".into(),
        });
    }
    let name = |p: &Path| p.display().to_string();
    let mut s = Sources::default();
    for f in files {
        s.policies.push((name(&f), read(&f)?));
    }
    let schema = dir.join("schema.cedarschema");
    s.schema = Some((name(&schema), read(&schema)?));
    let ent = dir.join("entities.json");
    s.entities = (name(&ent), read(&ent)?);
    let tools = dir.join("tools.toml");
    s.tools = (name(&tools), read(&tools)?);
    let purposes = dir.join("purposes.toml");
    s.purposes = (name(&purposes), read(&purposes)?);
    Ok(s)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The first labelled offset of a diagnostic, as a line in `text`.
fn diag_line(d: &dyn miette::Diagnostic, text: &str) -> usize {
    d.labels()
        .and_then(|mut l| l.next())
        .map_or(1, |l| line_of(text, l.offset()))
}

fn diag_message(d: &dyn miette::Diagnostic) -> String {
    let mut m = d.to_string();
    let mut src = d.source();
    while let Some(e) = src {
        let s = e.to_string();
        if !m.contains(&s) {
            m.push_str(": ");
            m.push_str(&s);
        }
        src = e.source();
    }
    if let Some(h) = d.help() {
        m.push_str(&format!(" (help: {h})"));
    }
    m
}

/// Where each policy came from: its file, its position there, and the id Cedar gave it in
/// that file (to find its line when a message needs it).
struct Origin {
    file: String,
    ordinal: usize,
    local_id: String,
    text_index: usize,
}

impl Origin {
    fn line(&self, files: &[(String, String)]) -> usize {
        let text = &files[self.text_index].1;
        cedar_policy_core::parser::parse_policyset(text)
            .ok()
            .and_then(|ps| {
                ps.policies()
                    .find(|p| p.id().to_string() == self.local_id)
                    .and_then(|p| p.loc().map(|l| line_of(text, l.start())))
            })
            .unwrap_or(1)
    }
}

/// Parses the policy files, naming policies by `@id("...")` when present (as the Cedar
/// CLI does), else `policy<N>` numbered across files in order.
fn parse_policies(
    files: &[(String, String)],
) -> Result<(PolicySet, HashMap<String, Origin>), CompileError> {
    let mut out = PolicySet::new();
    let mut origins = HashMap::new();
    let mut n = 0usize;
    for (file_index, (file, text)) in files.iter().enumerate() {
        let pset = PolicySet::from_str(text).map_err(|e| CompileError::Parse {
            file: file.clone(),
            line: diag_line(&e, text),
            message: diag_message(&e),
        })?;
        if let Some(t) = pset.templates().next() {
            // Report the template that comes first in the file, by its @id when it has one.
            let first = cedar_policy_core::parser::parse_policyset(text)
                .ok()
                .and_then(|ps| {
                    ps.templates()
                        .filter_map(|t| Some((t.loc()?.start(), t.id().to_string())))
                        .min()
                });
            let (line, local) = first.map_or_else(
                || (1, t.id().to_string()),
                |(start, id)| (line_of(text, start), id),
            );
            let local_id = PolicyId::new(&local);
            let policy = pset
                .template(&local_id)
                .and_then(|t| t.annotation("id"))
                .map_or(local, str::to_owned);
            return Err(CompileError::Unsupported {
                file: file.clone(),
                line,
                policy,
                construct: "a policy template (slots `?principal`/`?resource`)".into(),
            });
        }
        // Cedar numbers a file's policies policy0.. in source order. Their lines (for
        // messages) cost a second parse, so they are worked out only when needed.
        let locs = std::cell::OnceCell::new();
        let line_of_id = |id: &str| -> usize {
            let map: &HashMap<String, usize> = locs.get_or_init(|| {
                cedar_policy_core::parser::parse_policyset(text)
                    .map(|ps| {
                        ps.policies()
                            .filter_map(|p| {
                                Some((p.id().to_string(), line_of(text, p.loc()?.start())))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            });
            map.get(id).copied().unwrap_or(1)
        };
        let mut in_file: Vec<&cedar_policy::Policy> = pset.policies().collect();
        in_file.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        for (ordinal, p) in in_file.into_iter().enumerate() {
            let id = match p.annotation("id") {
                Some(a) => a.to_owned(),
                None => format!("policy{n}"),
            };
            n += 1;
            let local_id = p.id().to_string();
            if origins.contains_key(&id) {
                return Err(CompileError::Invalid {
                    file: file.clone(),
                    line: line_of_id(&local_id),
                    policy: id.clone(),
                    message: "duplicate policy id".into(),
                });
            }
            let renamed = if local_id == id {
                p.clone()
            } else {
                p.new_id(PolicyId::new(&id))
            };
            out.add(renamed).map_err(|e| CompileError::Invalid {
                file: file.clone(),
                line: line_of_id(&local_id),
                policy: id.clone(),
                message: e.to_string(),
            })?;
            origins.insert(
                id,
                Origin {
                    file: file.clone(),
                    ordinal,
                    local_id,
                    text_index: file_index,
                },
            );
        }
    }
    Ok((out, origins))
}

fn digest_sources(s: &Sources) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut add = |name: &str, text: &str| {
        ctx.update(name.rsplit('/').next().unwrap_or(name).as_bytes());
        ctx.update(&[0]);
        ctx.update(&(text.len() as u64).to_le_bytes());
        ctx.update(text.as_bytes());
    };
    for (n, t) in &s.policies {
        add(n, t);
    }
    if let Some((n, t)) = &s.schema {
        add(n, t);
    }
    add(&s.entities.0, &s.entities.1);
    add(&s.tools.0, &s.tools.1);
    add(&s.purposes.0, &s.purposes.1);
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parses, validates and lowers everything into bundle data.
pub fn compile(s: &Sources, opts: &Options) -> Result<Compiled, CompileError> {
    let (pset, origins) = parse_policies(&s.policies)?;
    let texts: HashMap<String, String> = s.policies.iter().cloned().collect();
    let mut warnings = Vec::new();
    let schema = match &s.schema {
        Some((file, text)) if opts.validate => {
            let (schema, w) =
                Schema::from_cedarschema_str(text).map_err(|e| CompileError::Parse {
                    file: file.clone(),
                    line: diag_line(&e, text),
                    message: diag_message(&e),
                })?;
            warnings.extend(w.map(|w| format!("{file}: {w}")));
            Some(schema)
        }
        _ => None,
    };
    if let Some(schema) = &schema {
        let result = Validator::new(schema.clone()).validate(&pset, ValidationMode::Strict);
        if let Some(e) = result.validation_errors().next() {
            let id = e.policy_id().to_string();
            let o = origins.get(&id);
            let file = o.map_or_else(String::new, |o| o.file.clone());
            let text = texts.get(&file).map_or("", String::as_str);
            let line = e.labels().and_then(|mut l| l.next()).map_or_else(
                || o.map_or(1, |o| o.line(&s.policies)),
                |l| line_of(text, l.offset()),
            );
            return Err(CompileError::Invalid {
                file,
                line,
                policy: id,
                message: diag_message(e),
            });
        }
        warnings.extend(result.validation_warnings().map(|w| w.to_string()));
    }
    let (efile, etext) = &s.entities;
    let entities =
        Entities::from_json_str(etext, schema.as_ref()).map_err(|e| CompileError::Source {
            file: efile.clone(),
            message: diag_message(&e),
        })?;
    let (tools_principal, tools) = registry::parse_tools(&s.tools.0, &s.tools.1)?;
    let purposes = registry::parse_purposes(&s.purposes.0, &s.purposes.1, &tools)?;
    warnings.extend(
        purpose_warnings(&purposes)
            .into_iter()
            .map(|w| format!("{}: {w}", s.purposes.0)),
    );
    if let Some(schema) = &schema {
        check_registry(schema, &tools_principal, &tools, &s.tools.0)?;
    }

    let mut b = Builder::default();
    // Store entities (and, with a schema, the schema's action entities with their groups).
    let mut all = entities.to_json_value().map_err(|e| CompileError::Source {
        file: efile.clone(),
        message: e.to_string(),
    })?;
    if let Some(schema) = &schema {
        let actions = schema.action_entities().map_err(|e| CompileError::Source {
            file: s.schema.as_ref().map(|x| x.0.clone()).unwrap_or_default(),
            message: e.to_string(),
        })?;
        if let (Some(list), Ok(Value::Array(extra))) = (all.as_array_mut(), actions.to_json_value())
        {
            list.extend(extra);
        }
    }
    load_entities(&mut b, &all).map_err(|Unsupported(m)| CompileError::Source {
        file: efile.clone(),
        message: m,
    })?;

    // Policies, in id order so the bundle does not depend on hash order.
    let mut policies: Vec<&cedar_policy::Policy> = pset.policies().collect();
    policies.sort_by_key(|p| {
        let o = &origins[&p.id().to_string()];
        (o.text_index, o.ordinal)
    });
    let mut lowered = Vec::with_capacity(policies.len());
    let mut action_scopes = Vec::with_capacity(policies.len());
    for p in &policies {
        let id = p.id().to_string();
        let o = &origins[&id];
        let unsupported = |Unsupported(construct): Unsupported| CompileError::Unsupported {
            file: o.file.clone(),
            line: o.line(&s.policies),
            policy: id.clone(),
            construct,
        };
        let est = p.to_json().map_err(|e| CompileError::Invalid {
            file: o.file.clone(),
            line: o.line(&s.policies),
            policy: id.clone(),
            message: e.to_string(),
        })?;
        let effect = match est.get("effect").and_then(Value::as_str) {
            Some("forbid") => Effect::Forbid,
            _ => Effect::Permit,
        };
        let mut conditions = Vec::new();
        if let Some(e) = b
            .scope(Var::Principal, &est["principal"])
            .map_err(unsupported)?
        {
            conditions.push(e);
        }
        action_scopes.push(b.action_scope(&est["action"]).map_err(unsupported)?);
        if let Some(e) = b
            .scope(Var::Resource, &est["resource"])
            .map_err(unsupported)?
        {
            conditions.push(e);
        }
        for c in est
            .get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let body = b.lower(&c["body"]).map_err(unsupported)?;
            let e = match c.get("kind").and_then(Value::as_str) {
                Some("unless") => b.lower_not(body),
                _ => body,
            };
            conditions.push(e);
        }
        lowered.push(PolicyData {
            id,
            effect,
            conditions,
        });
    }
    b.close_hierarchy();
    let (by_action, any_action) = index_by_action(&b, &action_scopes);

    let actions = by_action.len();
    let source_digest = digest_sources(s);
    // Whole seconds, so any bundle can be rebuilt exactly from its recorded compile time.
    let unusable = |t: i64, why: String| CompileError::Source {
        file: "compiled_at (SOURCE_DATE_EPOCH)".into(),
        message: format!("{t} is not a usable compile time: {why}"),
    };
    let now = match opts.compiled_at {
        // Reproducible-builds: a non-negative count of seconds.
        Some(t) if t < 0 => return Err(unusable(t, "it is before 1970".into())),
        Some(t) => {
            time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| unusable(t, e.to_string()))?
        }
        None => time::OffsetDateTime::now_utc(),
    };
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let compiled_at = now
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| unusable(now.unix_timestamp(), e.to_string()))?;
    let version = opts.version.clone().unwrap_or_else(|| {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
            now.year(),
            now.month() as u8,
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            &source_digest[..8]
        )
    });
    let counts = Counts {
        policies: lowered.len(),
        actions,
        entities: b.entities.iter().filter(|e| e.exists).count(),
        tools: tools.len(),
        purposes: purposes.len(),
    };
    let data = BundleData {
        meta: MetaData {
            version,
            compiled_at,
            source_digest,
            counts,
        },
        principal_type: tools_principal,
        types: b.types,
        strings: b.strings,
        entities: b.entities,
        values: b.values,
        exprs: b.exprs,
        policies: lowered,
        by_action,
        any_action,
        tools,
        purposes,
    };
    drop(policies);
    Ok(Compiled {
        data,
        cedar: pset,
        policy_files: texts,
        warnings,
    })
}

impl Builder {
    fn lower_not(&mut self, e: u32) -> u32 {
        self.push_expr(portcullis::decision::ir::Expr::Not(e))
    }
}

fn load_entities(b: &mut Builder, all: &Value) -> Result<(), Unsupported> {
    let list = all
        .as_array()
        .ok_or_else(|| Unsupported("entities must be a JSON array".into()))?;
    // Cedar hands entities back in hash order; sorted, the bundle is reproducible.
    let mut list: Vec<&Value> = list.iter().collect();
    list.sort_by_key(|e| uid_of(&e["uid"]).map(|(t, i)| (t.to_owned(), i.to_owned())));
    for e in list {
        let (t, id) =
            uid_of(&e["uid"]).ok_or_else(|| Unsupported("an entity without a uid".into()))?;
        let idx = b.entity(t, id);
        b.entities[idx as usize].exists = true;
        let mut attrs = Vec::new();
        if let Some(m) = e.get("attrs").and_then(Value::as_object) {
            for (k, v) in m {
                let kid = b.string(k);
                let val = b.json_value(v).map_err(|Unsupported(m)| {
                    Unsupported(format!("entity {t}::\"{id}\" attribute `{k}`: {m}"))
                })?;
                attrs.push((kid, val));
            }
        }
        attrs.sort_by_key(|(k, _)| *k);
        b.entities[idx as usize].attrs = attrs;
        // Parents too come in hash order, and a parent not seen yet is numbered here: sorted
        // first, so the numbering does not depend on the order Cedar chose.
        let mut uids = Vec::new();
        for p in e
            .get("parents")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            uids.push(uid_of(p).ok_or_else(|| {
                Unsupported(format!("entity {t}::\"{id}\" has a malformed parent"))
            })?);
        }
        uids.sort_unstable();
        let parents = uids
            .into_iter()
            .map(|(pt, pid)| b.entity(pt, pid))
            .collect();
        b.parents[idx as usize] = parents;
    }
    Ok(())
}

/// Which policies can apply to each action. An action's list holds the policies whose
/// action scope is unconstrained or names the action, one of its ancestors (`in`), or the
/// action itself (`==`); every entity that could be a request's action and match some
/// scope gets a list, every other action falls back to `any_action`.
fn index_by_action(
    b: &Builder,
    scopes: &[Option<(bool, Vec<u32>)>],
) -> (Vec<(u32, Vec<u32>)>, Vec<u32>) {
    let named: HashSet<u32> = scopes
        .iter()
        .flatten()
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    let any_action: Vec<u32> = scopes
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_none())
        .map(|(i, _)| i as u32)
        .collect();
    let mut out = BTreeMap::new();
    for (i, e) in b.entities.iter().enumerate() {
        let i = i as u32;
        let ty = &b.types[e.ty as usize];
        let is_action_type = ty == "Action" || ty.ends_with("::Action");
        if !is_action_type && !named.contains(&i) && !e.ancestors.iter().any(|a| named.contains(a))
        {
            continue;
        }
        let list: Vec<u32> = scopes
            .iter()
            .enumerate()
            .filter(|(_, s)| match s {
                None => true,
                Some((false, targets)) => targets.contains(&i),
                Some((true, targets)) => targets.iter().any(|t| *t == i || e.ancestors.contains(t)),
            })
            .map(|(p, _)| p as u32)
            .collect();
        out.insert(i, list);
    }
    (out.into_iter().collect(), any_action)
}

/// Every tool must be an action of the schema, its resource type and the principal type
/// entity types of it.
fn check_registry(
    schema: &Schema,
    principal: &str,
    tools: &[ToolSpec],
    file: &str,
) -> Result<(), CompileError> {
    let types: HashSet<String> = schema.entity_types().map(|t| t.to_string()).collect();
    let actions: HashSet<String> = schema
        .actions()
        .map(|a| a.id().unescaped().to_string())
        .collect();
    let err = |field: String, message: String| {
        CompileError::Registry(registry::RegistryError {
            file: file.into(),
            field,
            message,
        })
    };
    if !types.contains(principal) {
        return Err(err(
            "principal_type".into(),
            format!("`{principal}` is not an entity type of the schema"),
        ));
    }
    for t in tools {
        if !actions.contains(&t.name) {
            return Err(err(
                format!("tools.\"{}\"", t.name),
                format!("the schema has no action `{}`", t.name),
            ));
        }
        if !types.contains(&t.resource.entity_type) {
            return Err(err(
                format!("tools.\"{}\".resource.type", t.name),
                format!(
                    "`{}` is not an entity type of the schema",
                    t.resource.entity_type
                ),
            ));
        }
    }
    Ok(())
}

/// The policies as Cedar sees them, with the ids the bundle uses: for running Cedar's own
/// authorizer on the same policies (the differential tests do).
pub fn cedar_policy_set(files: &[(String, String)]) -> Result<PolicySet, CompileError> {
    parse_policies(files).map(|(p, _)| p)
}

/// Compiles a directory into bundle bytes.
pub fn build(dir: &Path, opts: &Options) -> Result<(Vec<u8>, Compiled), CompileError> {
    let sources = read_dir(dir)?;
    let compiled = compile(&sources, opts)?;
    let bytes =
        portcullis::decision::bundle::encode(&compiled.data, COMPILER_VERSION).map_err(|e| {
            CompileError::Source {
                file: dir.display().to_string(),
                message: e.to_string(),
            }
        })?;
    Ok((bytes, compiled))
}

/// Unused purpose profiles are not errors, but worth a word.
pub fn purpose_warnings(purposes: &[PurposeProfile]) -> Vec<String> {
    purposes
        .iter()
        .filter(|p| p.tools.is_empty())
        .map(|p| format!("purpose `{}` admits no tools", p.name))
        .collect()
}
