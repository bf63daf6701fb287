//! The decision-table IR: what a compiled bundle holds, in plain serialisable structs.
//! The compiler (`portcullis-compile`) produces it from Cedar; the gateway loads it
//! (`bundle`) and evaluates it (`eval`). Everything is by index into flat tables, so
//! loading is a single decode and evaluation chases integers, not names.

use super::registry::{PurposeProfile, ToolSpec};
use serde::{Deserialize, Serialize};

/// Index into `BundleData::strings`.
pub type StrId = u32;
/// Index into `BundleData::values`.
pub type ValueId = u32;
/// Index into `BundleData::exprs`.
pub type ExprId = u32;
/// Index into `BundleData::entities`.
pub type EntityIdx = u32;
/// Index into `BundleData::types`.
pub type TypeId = u32;

/// The whole compiled policy: tables, policies, the action index, and the gateway's tool
/// registry and purpose profiles.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BundleData {
    pub meta: MetaData,
    pub principal_type: String,
    pub types: Vec<String>,
    pub strings: Vec<String>,
    pub entities: Vec<EntityData>,
    pub values: Vec<ConstValue>,
    pub exprs: Vec<Expr>,
    pub policies: Vec<PolicyData>,
    /// Policies that can apply to each action entity, by entity index, in policy order.
    pub by_action: Vec<(EntityIdx, Vec<u32>)>,
    /// Policies whose action scope is unconstrained: the only candidates for an action
    /// the bundle does not know.
    pub any_action: Vec<u32>,
    pub tools: Vec<ToolSpec>,
    pub purposes: Vec<PurposeProfile>,
}

/// Bundle identity and provenance.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MetaData {
    pub version: String,
    /// RFC 3339.
    pub compiled_at: String,
    /// SHA-256 (hex) of the policy sources, so two compilations of the same sources can be
    /// recognised even though their compile times differ.
    pub source_digest: String,
    pub counts: Counts,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub policies: usize,
    pub actions: usize,
    pub entities: usize,
    pub tools: usize,
    pub purposes: usize,
}

/// An entity: its type and id, whether it exists in the entity store (entities named only
/// by policies do not: attribute access on them is an error, as in Cedar), its attributes
/// sorted by name, and every ancestor (the transitive closure of its parents), sorted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EntityData {
    pub ty: TypeId,
    pub id: StrId,
    pub exists: bool,
    pub attrs: Vec<(StrId, ValueId)>,
    pub ancestors: Vec<EntityIdx>,
}

/// A constant value in the pool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum ConstValue {
    Bool(bool),
    Long(i64),
    Str(StrId),
    Entity(EntityIdx),
    Set(Vec<ValueId>),
    /// Sorted by attribute name (string order of the names).
    Record(Vec<(StrId, ValueId)>),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Var {
    Principal,
    Action,
    Resource,
    Context,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum BinOp {
    Eq,
    Less,
    LessEq,
    Add,
    Sub,
    Mul,
    In,
    Contains,
    ContainsAll,
    ContainsAny,
}

/// One piece of a `like` pattern.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum PatElem {
    Wildcard,
    Literal(String),
}

/// A node of the predicate program. Children always have smaller indices than their
/// parent (checked at load), so evaluation terminates and depth is bounded by the table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Expr {
    Lit(ValueId),
    Var(Var),
    Not(ExprId),
    Neg(ExprId),
    IsEmpty(ExprId),
    Bin(BinOp, ExprId, ExprId),
    And(ExprId, ExprId),
    Or(ExprId, ExprId),
    If(ExprId, ExprId, ExprId),
    GetAttr(ExprId, StrId),
    HasAttr(ExprId, StrId),
    Like(ExprId, Vec<PatElem>),
    Is(ExprId, TypeId),
    Set(Vec<ExprId>),
    Record(Vec<(StrId, ExprId)>),
    // Fused forms of the commonest shapes (the compiler emits them; same semantics as
    // the expansion in the comment, fewer nodes to walk):
    /// `var.attr`
    VarAttr(Var, StrId),
    /// `var has attr`
    VarHas(Var, StrId),
    /// `x == literal` (either side; a literal never errors, so the order is immaterial)
    EqLit(ExprId, ValueId),
    /// `x in Entity::"literal"`
    InEntity(ExprId, EntityIdx),
    /// `var is Type`
    VarIs(Var, TypeId),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Effect {
    Permit,
    Forbid,
}

/// A policy: it is satisfied when every condition evaluates to `true` (scope constraints
/// first, then `when` bodies and negated `unless` bodies, in source order); an error in
/// any of them skips the policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyData {
    pub id: String,
    pub effect: Effect,
    pub conditions: Vec<ExprId>,
}
