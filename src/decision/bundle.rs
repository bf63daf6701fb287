//! The bundle file and the loaded bundle.
//!
//! File layout (all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `PCLSBNDL` |
//! | 2 + 2 | format major, minor |
//! | 2 + n | compiler version (UTF-8) |
//! | 32 | SHA-256 of the payload |
//! | 8 | payload length |
//! | … | payload: the IR (`BundleData`) in postcard encoding |
//!
//! Loading is all or nothing: magic, format version, length, digest, decoding and every
//! index inside are checked before anything is built, so a truncated, corrupted, foreign
//! or newer-major file is refused with a reason and never half-loaded. A newer *minor*
//! version loads (additions are backwards compatible by rule).

use super::ir::{BundleData, ConstValue, Effect, EntityIdx, Expr, StrId, ValueId};
use super::registry::{PurposeProfile, ToolSpec};
use super::uids::UidIndex;
use super::vm::Programs;
use ring::digest::{SHA256, digest};
use rustc_hash::{FxHashMap, FxHashSet};

pub const MAGIC: &[u8; 8] = b"PCLSBNDL";
pub const FORMAT_MAJOR: u16 = 1;
pub const FORMAT_MINOR: u16 = 0;
/// Deepest expression or value nesting accepted (Cedar itself guards its stack too).
pub const MAX_DEPTH: u32 = 256;

/// An action's candidate policies: its `forbid`s, then its `permit`s, each in policy
/// order.
type Candidates = (Box<[u32]>, Box<[u32]>);

/// Why a bundle was refused. `Truncated`, `Corrupted` and `NotABundle` are the file's
/// fault (transport or storage); `NewerFormat` means this gateway is older than the
/// compiler; `Malformed` means the compiler wrote something inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not a Portcullis policy bundle (bad magic number)")]
    NotABundle,
    #[error("bundle is truncated: {0}")]
    Truncated(String),
    #[error(
        "bundle format {major}.{minor} is newer than this gateway reads ({FORMAT_MAJOR}.x); upgrade the gateway or compile with a matching portcullis-compile"
    )]
    NewerFormat { major: u16, minor: u16 },
    #[error("bundle is corrupted: content digest {found} does not match the recorded {recorded}")]
    Corrupted { recorded: String, found: String },
    #[error("bundle is malformed: {0}")]
    Malformed(String),
}

/// What the gateway and operators see of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleMeta {
    pub version: String,
    pub digest_hex: String,
    pub compiler_version: String,
    pub compiled_at: String,
    pub source_digest: String,
    pub format: (u16, u16),
    pub counts: super::ir::Counts,
}

/// A loaded, immutable bundle with its lookup indexes. `Send + Sync`: shared by every
/// core through an `Arc` and swapped whole.
pub struct Bundle {
    pub(crate) data: BundleData,
    meta: BundleMeta,
    uids: UidIndex,
    string_ids: FxHashMap<Box<str>, StrId>,
    /// (descendant, ancestor) pairs of the transitive closure, for entities with more than
    /// `SCAN_ANCESTORS` ancestors: `in` is one hash probe for those.
    ancestry: FxHashSet<u64>,
    /// Candidate policies (forbids, permits) of each action that has a list, then those
    /// of every other action (the policies whose action scope is unconstrained).
    by_action: Vec<Candidates>,
    /// Per entity, its index in `by_action` (the last, for an entity without a list of
    /// its own): one load per decision where a hash map cost a probe, and no branch for
    /// the fallback.
    action_list: Vec<u32>,
    tools: FxHashMap<Box<str>, usize>,
    purposes: FxHashMap<Box<str>, usize>,
    /// Every policy's conditions as the evaluator runs them.
    pub(crate) programs: Programs,
    /// Per pool value, the first value equal to it if it is a scalar (itself otherwise):
    /// two scalars are equal exactly when their canonical ids are.
    pub(crate) canon: Vec<ValueId>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes a bundle file.
pub fn encode(data: &BundleData, compiler_version: &str) -> Result<Vec<u8>, BundleError> {
    let payload = postcard::to_allocvec(data).map_err(|e| BundleError::Malformed(e.to_string()))?;
    let mut out = Vec::with_capacity(payload.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
    out.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
    let v = compiler_version.as_bytes();
    out.extend_from_slice(&(v.len() as u16).to_le_bytes());
    out.extend_from_slice(v);
    out.extend_from_slice(digest(&SHA256, &payload).as_ref());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

struct Reader<'b> {
    b: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'b [u8], BundleError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| {
                BundleError::Truncated(format!("{} bytes end inside the {what}", self.b.len()))
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u16(&mut self, what: &str) -> Result<u16, BundleError> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
}

impl Bundle {
    /// Verifies and loads a bundle file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() >= 8 && &bytes[..8] != MAGIC {
            return Err(BundleError::NotABundle);
        }
        let mut r = Reader { b: bytes, at: 0 };
        r.take(8, "magic number")?;
        let major = r.u16("format version")?;
        let minor = r.u16("format version")?;
        if major > FORMAT_MAJOR {
            return Err(BundleError::NewerFormat { major, minor });
        }
        if major == 0 {
            return Err(BundleError::Malformed("format version 0".into()));
        }
        let vlen = r.u16("compiler version")? as usize;
        let compiler_version = std::str::from_utf8(r.take(vlen, "compiler version")?)
            .map_err(|_| BundleError::Malformed("compiler version is not UTF-8".into()))?
            .to_owned();
        if compiler_version.is_empty()
            || !compiler_version
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        {
            return Err(BundleError::Malformed(format!(
                "compiler version `{compiler_version}` is not a version"
            )));
        }
        let recorded = r.take(32, "content digest")?.to_vec();
        let len_bytes = r.take(8, "payload length")?;
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or([0; 8]));
        let remaining = (bytes.len() - r.at) as u64;
        if remaining < len {
            return Err(BundleError::Truncated(format!(
                "payload is {remaining} of {len} bytes"
            )));
        }
        if remaining > len {
            return Err(BundleError::Malformed(format!(
                "{} bytes after the payload",
                remaining - len
            )));
        }
        let payload = &bytes[r.at..];
        let found = digest(&SHA256, payload);
        if found.as_ref() != recorded.as_slice() {
            return Err(BundleError::Corrupted {
                recorded: hex(&recorded),
                found: hex(found.as_ref()),
            });
        }
        let data: BundleData = postcard::from_bytes(payload)
            .map_err(|e| BundleError::Malformed(format!("payload does not decode: {e}")))?;
        validate(&data)?;
        let uids = UidIndex::build(&data).map_err(BundleError::Malformed)?;
        let meta = BundleMeta {
            version: data.meta.version.clone(),
            digest_hex: hex(&recorded),
            compiler_version,
            compiled_at: data.meta.compiled_at.clone(),
            source_digest: data.meta.source_digest.clone(),
            format: (major, minor),
            counts: data.meta.counts.clone(),
        };
        Ok(Bundle::index(data, meta, uids))
    }

    fn index(data: BundleData, meta: BundleMeta, uids: UidIndex) -> Bundle {
        // Only long ancestor lists are looked up by pair (`is_ancestor` scans short ones).
        let mut ancestry = FxHashSet::default();
        for (i, e) in data.entities.iter().enumerate() {
            if e.ancestors.len() > SCAN_ANCESTORS {
                for a in &e.ancestors {
                    ancestry.insert(pair(i as EntityIdx, *a));
                }
            }
        }
        let string_ids = data
            .strings
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str().into(), i as StrId))
            .collect();
        let programs = super::vm::compile(&data);
        let split = |list: &[u32]| -> Candidates {
            let (f, p): (Vec<u32>, Vec<u32>) = list
                .iter()
                .partition(|p| data.policies[**p as usize].effect == Effect::Forbid);
            (f.into(), p.into())
        };
        let mut action_list = vec![data.by_action.len() as u32; data.entities.len()];
        let mut by_action: Vec<_> = data
            .by_action
            .iter()
            .enumerate()
            .map(|(i, (a, list))| {
                action_list[*a as usize] = i as u32;
                split(list)
            })
            .collect();
        by_action.push(split(&data.any_action));
        let tools = data
            .tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str().into(), i))
            .collect();
        let purposes = data
            .purposes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str().into(), i))
            .collect();
        let canon = canonical_values(&data);
        Bundle {
            canon,
            data,
            meta,
            uids,
            string_ids,
            ancestry,
            by_action,
            action_list,
            tools,
            purposes,
            programs,
        }
    }

    pub fn meta(&self) -> &BundleMeta {
        &self.meta
    }

    /// The IR itself (for tools that inspect a bundle).
    pub fn data(&self) -> &BundleData {
        &self.data
    }

    pub fn principal_type(&self) -> &str {
        &self.data.principal_type
    }

    pub fn tool(&self, name: &str) -> Option<&ToolSpec> {
        self.tool_index(name).map(|i| &self.data.tools[i])
    }

    /// The tool's position in `tools()`, so per-tool data kept beside the bundle can be
    /// a vector indexed by it instead of a second map searched by name.
    pub fn tool_index(&self, name: &str) -> Option<usize> {
        self.tools.get(name).copied()
    }

    pub fn tools(&self) -> &[ToolSpec] {
        &self.data.tools
    }

    pub fn purpose(&self, name: &str) -> Option<&PurposeProfile> {
        self.purposes.get(name).map(|i| &self.data.purposes[*i])
    }

    pub fn policy_id(&self, p: super::eval::PolicyRef) -> &str {
        self.data
            .policies
            .get(p.0 as usize)
            .map_or("", |p| p.id.as_str())
    }

    pub fn policy_count(&self) -> usize {
        self.data.policies.len()
    }

    #[inline]
    pub(crate) fn lookup_entity(&self, ty: &str, id: &str) -> Option<EntityIdx> {
        self.uids.get(ty, id)
    }

    pub(crate) fn string_id(&self, s: &str) -> Option<StrId> {
        self.string_ids.get(s).copied()
    }

    #[inline]
    pub(crate) fn is_ancestor(&self, entity: EntityIdx, ancestor: EntityIdx) -> bool {
        // Most entities have a few ancestors: scanning them beats hashing the pair.
        let list = &self.data.entities[entity as usize].ancestors;
        if list.len() <= SCAN_ANCESTORS {
            list.contains(&ancestor)
        } else {
            self.ancestry.contains(&pair(entity, ancestor))
        }
    }

    /// The candidate policies (forbids, permits) for an action entity, or for an action
    /// the bundle does not know (`None`).
    #[inline]
    pub(crate) fn candidates(&self, action: Option<EntityIdx>) -> (&[u32], &[u32]) {
        let any = self.by_action.len() - 1;
        let list = action.map_or(any, |a| self.action_list[a as usize] as usize);
        let (f, p) = &self.by_action[list];
        (f, p)
    }
}

/// See `Bundle::canon`. The compiler already pools equal values once, but the loader
/// does not rely on it: a bundle that repeats one stays exact.
fn canonical_values(data: &BundleData) -> Vec<ValueId> {
    #[derive(PartialEq, Eq, Hash)]
    enum Scalar<'d> {
        Bool(bool),
        Long(i64),
        Str(&'d str),
        Entity(EntityIdx),
    }
    let mut first: FxHashMap<Scalar<'_>, ValueId> = FxHashMap::default();
    (0..data.values.len() as ValueId)
        .map(|i| {
            let key = match &data.values[i as usize] {
                ConstValue::Bool(b) => Scalar::Bool(*b),
                ConstValue::Long(n) => Scalar::Long(*n),
                ConstValue::Str(s) => Scalar::Str(&data.strings[*s as usize]),
                ConstValue::Entity(e) => Scalar::Entity(*e),
                ConstValue::Set(_) | ConstValue::Record(_) => return i,
            };
            *first.entry(key).or_insert(i)
        })
        .collect()
}

/// Ancestor lists up to this long are scanned rather than hashed.
const SCAN_ANCESTORS: usize = 8;

fn pair(a: EntityIdx, b: EntityIdx) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// Checks every index and the nesting bound, so evaluation can index without checks
/// failing and recursion is bounded.
fn validate(d: &BundleData) -> Result<(), BundleError> {
    let bad = |m: String| Err(BundleError::Malformed(m));
    let (ns, nt, ne, nv, nx) = (
        d.strings.len(),
        d.types.len(),
        d.entities.len(),
        d.values.len(),
        d.exprs.len(),
    );
    for (i, e) in d.entities.iter().enumerate() {
        if e.ty as usize >= nt || e.id as usize >= ns {
            return bad(format!("entity {i} names a missing type or id"));
        }
        if e.attrs
            .iter()
            .any(|(k, v)| *k as usize >= ns || *v as usize >= nv)
        {
            return bad(format!("entity {i} has an attribute out of range"));
        }
        if e.attrs.windows(2).any(|w| w[0].0 >= w[1].0) {
            return bad(format!("entity {i} attributes are not sorted"));
        }
        if e.ancestors.iter().any(|a| *a as usize >= ne) {
            return bad(format!("entity {i} has an ancestor out of range"));
        }
    }
    let mut vdepth = vec![0u32; nv];
    for (i, v) in d.values.iter().enumerate() {
        let children: Vec<u32> = match v {
            ConstValue::Str(s) if *s as usize >= ns => {
                return bad(format!("value {i} string out of range"));
            }
            ConstValue::Entity(e) if *e as usize >= ne => {
                return bad(format!("value {i} entity out of range"));
            }
            ConstValue::Set(items) => items.clone(),
            ConstValue::Record(fields) => {
                if fields.iter().any(|(k, _)| *k as usize >= ns)
                    || fields.windows(2).any(|w| w[0].0 >= w[1].0)
                {
                    return bad(format!("value {i} record keys out of range or unsorted"));
                }
                fields.iter().map(|(_, v)| *v).collect()
            }
            _ => Vec::new(),
        };
        let mut depth = 0;
        for c in children {
            if c as usize >= i {
                return bad(format!("value {i} refers forward to {c}"));
            }
            depth = depth.max(vdepth[c as usize] + 1);
        }
        if depth > MAX_DEPTH {
            return bad(format!("value {i} nests deeper than {MAX_DEPTH}"));
        }
        vdepth[i] = depth;
    }
    let mut xdepth = vec![0u32; nx];
    for (i, x) in d.exprs.iter().enumerate() {
        let mut kids: Vec<u32> = Vec::new();
        match x {
            Expr::Lit(v) if *v as usize >= nv => {
                return bad(format!("expression {i} value out of range"));
            }
            Expr::Lit(_) | Expr::Var(_) => {}
            Expr::VarAttr(_, a) | Expr::VarHas(_, a) if *a as usize >= ns => {
                return bad(format!("expression {i} attribute out of range"));
            }
            Expr::VarAttr(..) | Expr::VarHas(..) => {}
            Expr::VarIs(_, t) if *t as usize >= nt => {
                return bad(format!("expression {i} type out of range"));
            }
            Expr::VarIs(..) => {}
            Expr::EqLit(a, v) => {
                if *v as usize >= nv {
                    return bad(format!("expression {i} value out of range"));
                }
                kids.push(*a);
            }
            Expr::InEntity(a, e) => {
                if *e as usize >= ne {
                    return bad(format!("expression {i} entity out of range"));
                }
                kids.push(*a);
            }
            Expr::Not(a) | Expr::Neg(a) | Expr::IsEmpty(a) => kids.push(*a),
            Expr::Bin(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => kids.extend([*a, *b]),
            Expr::If(a, b, c) => kids.extend([*a, *b, *c]),
            Expr::GetAttr(a, s) | Expr::HasAttr(a, s) => {
                if *s as usize >= ns {
                    return bad(format!("expression {i} attribute out of range"));
                }
                kids.push(*a);
            }
            Expr::Like(a, _) => kids.push(*a),
            Expr::Is(a, t) => {
                if *t as usize >= nt {
                    return bad(format!("expression {i} type out of range"));
                }
                kids.push(*a);
            }
            Expr::Set(items) => kids.extend(items),
            Expr::Record(fields) => {
                if fields.iter().any(|(k, _)| *k as usize >= ns) {
                    return bad(format!("expression {i} record key out of range"));
                }
                kids.extend(fields.iter().map(|(_, e)| *e));
            }
        }
        let mut depth = 0;
        for k in kids {
            if k as usize >= i {
                return bad(format!("expression {i} refers forward to {k}"));
            }
            depth = depth.max(xdepth[k as usize] + 1);
        }
        if depth > MAX_DEPTH {
            return bad(format!("expression {i} nests deeper than {MAX_DEPTH}"));
        }
        xdepth[i] = depth;
    }
    for p in &d.policies {
        if p.conditions.iter().any(|c| *c as usize >= nx) {
            return bad(format!("policy `{}` has a condition out of range", p.id));
        }
    }
    let np = d.policies.len();
    for (a, list) in &d.by_action {
        if *a as usize >= ne || list.iter().any(|p| *p as usize >= np) {
            return bad("action index out of range".into());
        }
    }
    if d.any_action.iter().any(|p| *p as usize >= np) {
        return bad("action index out of range".into());
    }
    Ok(())
}
