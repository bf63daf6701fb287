//! The evaluator: decides a request against a loaded bundle exactly as Cedar's authorizer
//! would. Candidate policies come from the action index; each policy's conditions are
//! evaluated in order over borrowed values (no copies of strings, sets or records); a
//! policy whose condition errors is skipped, as Cedar specifies; `forbid` overrides
//! `permit`; default deny. The only allocation is for set and record literals built from
//! non-constant parts, and it comes from the scratch arena, reset per decision.

use super::bundle::Bundle;
use super::context::{CtxValue, EntityUid, OwnedValue, Request};
use super::ir::{BinOp, ConstValue, EntityIdx, Expr, ExprId, PatElem, StrId, ValueId, Var};
use super::uids::str_eq;
use super::vm::{Cmp, Op, Operand, STACK, Test};
use bumpalo::Bump;
use std::cell::Cell;

/// Stack slots of the common, small programs.
const SMALL_STACK: usize = 6;

/// Reused per-core state for decisions: the arena for built values, the lists of
/// determining and erroring policies, and where context attributes were last found.
#[derive(Default)]
pub struct Scratch {
    bump: Bump,
    ctx_hint: Vec<Cell<u8>>,
    determining: Vec<PolicyRef>,
    errored: Vec<PolicyRef>,
    /// Evaluate every candidate policy, even after a `forbid` has decided, so `errored`
    /// is complete (the CLI and the differential tests want it; the gateway does not).
    pub collect_all_errors: bool,
}

impl Scratch {
    /// Policies that determined the last decision: the satisfied `forbid`s of a denial,
    /// or the satisfied `permit`s of an allow (empty for a default deny).
    pub fn determining(&self) -> &[PolicyRef] {
        &self.determining
    }

    /// Policies skipped because a condition errored.
    pub fn errored(&self) -> &[PolicyRef] {
        &self.errored
    }
}

/// A policy, by index in the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRef(pub u32);

/// The outcome of a decision; the policies are in the scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub errored: u32,
}

/// Why an expression has no value. Cedar distinguishes many kinds; a policy is skipped
/// for any of them, so one marker suffices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalError;

type R<T> = Result<T, EvalError>;

#[derive(Debug, Clone, Copy)]
enum Ent<'a> {
    /// In the bundle's entity table (which also holds entities only policies name).
    Known(EntityIdx),
    /// Nowhere in the bundle: no attributes, no ancestors.
    Foreign(&'a EntityUid<'a>),
}

#[derive(Clone, Copy)]
enum SetV<'a> {
    Pool(&'a [ValueId]),
    Strs(&'a [String]),
    Owned(&'a [OwnedValue]),
    Dyn(&'a [Val<'a>]),
}

#[derive(Clone, Copy)]
enum RecV<'a> {
    Pool(&'a [(StrId, ValueId)]),
    Ctx(&'a [(&'a str, CtxValue<'a>)]),
    Owned(&'a [(String, OwnedValue)]),
    Dyn(&'a [(&'a str, Val<'a>)]),
}

/// A value during evaluation: borrowed from the bundle, the request or the arena. Flat
/// (one tag, at most a fat pointer) so it stays 24 bytes: evaluation moves a lot of them.
#[derive(Clone, Copy)]
enum Val<'a> {
    Bool(bool),
    Long(i64),
    Str(&'a str),
    Known(EntityIdx),
    Foreign(&'a EntityUid<'a>),
    SetPool(&'a [ValueId]),
    SetStrs(&'a [String]),
    SetOwned(&'a [OwnedValue]),
    SetDyn(&'a [Val<'a>]),
    RecPool(&'a [(StrId, ValueId)]),
    RecCtx(&'a [(&'a str, CtxValue<'a>)]),
    RecOwned(&'a [(String, OwnedValue)]),
    RecDyn(&'a [(&'a str, Val<'a>)]),
}

impl<'a> Val<'a> {
    fn ent(self) -> Option<Ent<'a>> {
        match self {
            Val::Known(i) => Some(Ent::Known(i)),
            Val::Foreign(u) => Some(Ent::Foreign(u)),
            _ => None,
        }
    }

    fn set(self) -> Option<SetV<'a>> {
        match self {
            Val::SetPool(s) => Some(SetV::Pool(s)),
            Val::SetStrs(s) => Some(SetV::Strs(s)),
            Val::SetOwned(s) => Some(SetV::Owned(s)),
            Val::SetDyn(s) => Some(SetV::Dyn(s)),
            _ => None,
        }
    }

    fn rec(self) -> Option<RecV<'a>> {
        match self {
            Val::RecPool(r) => Some(RecV::Pool(r)),
            Val::RecCtx(r) => Some(RecV::Ctx(r)),
            Val::RecOwned(r) => Some(RecV::Owned(r)),
            Val::RecDyn(r) => Some(RecV::Dyn(r)),
            _ => None,
        }
    }

    fn from_ent(e: Ent<'a>) -> Val<'a> {
        match e {
            Ent::Known(i) => Val::Known(i),
            Ent::Foreign(u) => Val::Foreign(u),
        }
    }
}

#[inline]
fn bool_of(v: Val<'_>) -> R<bool> {
    match v {
        Val::Bool(b) => Ok(b),
        _ => Err(EvalError),
    }
}

/// Everything one decision reads.
struct Env<'a> {
    b: &'a Bundle,
    /// The request's variables by `Var` (the context as its record), ready to push:
    /// `var` is then one indexed copy, with no branch on which variable it is.
    vars: [Val<'a>; 4],
    context: &'a [(&'a str, CtxValue<'a>)],
    bump: &'a Bump,
    /// Where each context attribute (by interned name) was found last time: a gateway
    /// builds its context in the same order every call, so the next lookup is one check.
    ctx_hint: &'a [Cell<u8>],
}

impl Bundle {
    fn resolve<'a>(&self, uid: &'a EntityUid<'a>) -> Ent<'a> {
        match self.lookup_entity(uid.ty, uid.id) {
            Some(i) => Ent::Known(i),
            None => Ent::Foreign(uid),
        }
    }

    /// Decides `req`. Allocation-free once `scratch` is warm, unless a policy builds a
    /// set or record from non-constant parts (then from the scratch arena).
    pub fn decide(&self, req: &Request<'_>, scratch: &mut Scratch) -> Decision {
        scratch.bump.reset();
        scratch.determining.clear();
        scratch.errored.clear();
        if scratch.ctx_hint.len() < self.data.strings.len() {
            scratch
                .ctx_hint
                .resize_with(self.data.strings.len(), || Cell::new(0));
        }
        let action = self.resolve(&req.action);
        // In `Var` order.
        let vars = [
            Val::from_ent(self.resolve(&req.principal)),
            Val::from_ent(action),
            Val::from_ent(self.resolve(&req.resource)),
            Val::RecCtx(req.context.attrs),
        ];
        let env = Env {
            b: self,
            vars,
            context: req.context.attrs,
            bump: &scratch.bump,
            ctx_hint: &scratch.ctx_hint,
        };
        let (forbids, permits) = self.candidates(match action {
            Ent::Known(i) => Some(i),
            Ent::Foreign(..) => None,
        });
        let denied = env.evaluate(
            forbids,
            permits,
            &mut scratch.determining,
            &mut scratch.errored,
            scratch.collect_all_errors,
        );
        let allow = !denied && !scratch.determining.is_empty();
        Decision {
            allow,
            errored: scratch.errored.len() as u32,
        }
    }
}

impl<'a> Env<'a> {
    /// Evaluates the `forbid`s, then (unless one held and errors need not be complete)
    /// the `permit`s; returns whether a `forbid` held. One loop over both lists, so the
    /// inlined policy evaluation, and its loading of the request's values, happen once
    /// per decision rather than once per policy.
    fn evaluate(
        &self,
        forbids: &[u32],
        permits: &[u32],
        determining: &mut Vec<PolicyRef>,
        errored: &mut Vec<PolicyRef>,
        collect_all_errors: bool,
    ) -> bool {
        // What is left of the current list: one pointer and length through the loop.
        let (mut rest, mut on_permits, mut denied) = (forbids, false, false);
        loop {
            let Some((&p, tail)) = rest.split_first() else {
                if on_permits {
                    return denied;
                }
                denied = !determining.is_empty();
                if denied && !collect_all_errors {
                    return true;
                }
                (rest, on_permits) = (permits, true);
                continue;
            };
            rest = tail;
            match self.satisfied(p) {
                Ok(true) if !denied => determining.push(PolicyRef(p)),
                Ok(_) => {}
                Err(_) => errored.push(PolicyRef(p)),
            }
        }
    }

    #[inline(always)]
    fn satisfied(&self, p: u32) -> R<bool> {
        let progs = &self.b.programs;
        for c in progs.checks[p as usize].iter() {
            if self.test(&progs.ops, &c.test)? == c.negate {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One conjunct's value. Inlined into `satisfied` with its operands: a call and a
    /// `Result` in memory per operand were most of a small policy's cost.
    #[inline(always)]
    fn test(&self, ops: &[Op], t: &Test) -> R<bool> {
        match *t {
            Test::AttrEqLit(v, a, l) => Ok(self.value_eq(self.attr_id(v, a)?, l)),
            Test::AttrEqVar(v, a, w) => {
                let x = self.attr_id(v, a)?;
                match (&self.b.data.values[x as usize], self.var(w)) {
                    (ConstValue::Entity(e), Val::Known(i)) => Ok(*e == i),
                    (_, y) => Ok(self.eq(self.pool(x), y)),
                }
            }
            Test::AttrEqAttr(v, a, w, b) => {
                let x = self.attr_id(v, a)?;
                Ok(self.value_eq(x, self.attr_id(w, b)?))
            }
            Test::CtxEqStr(a, lit) => match self.ctx_field(self.context, a).ok_or(EvalError)? {
                CtxValue::Str(x) => Ok(str_eq(x, self.str(lit))),
                v => Ok(self.eq(self.ctx(v), Val::Str(self.str(lit)))),
            },
            Test::CtxLong(a, cmp, n) => {
                let x = match self.ctx_field(self.context, a).ok_or(EvalError)? {
                    CtxValue::Long(x) => *x,
                    v => match self.ctx(v) {
                        Val::Long(x) => x,
                        _ => return Err(EvalError),
                    },
                };
                Ok(match cmp {
                    Cmp::Less => x < n,
                    Cmp::LessEq => x <= n,
                    Cmp::Greater => x > n,
                    Cmp::GreaterEq => x >= n,
                })
            }
            Test::CtxContainsStr(a, lit) => {
                let lit = self.str(lit);
                match self.ctx_field(self.context, a).ok_or(EvalError)? {
                    CtxValue::StrSet(items) => Ok(items.iter().any(|i| str_eq(i, lit))),
                    v => match self.ctx(v).set() {
                        Some(set) => Ok(self.set_contains(set, Val::Str(lit))),
                        None => Err(EvalError),
                    },
                }
            }
            // A variable apart from the other operands: merged with the call's result,
            // its value went through memory.
            Test::In(Operand::Var(v), target) => self.in_entity(self.var(v), target),
            Test::In(x, target) => self.in_entity(self.operand(x)?, target),
            Test::Is(Operand::Var(v), ty) => self.is_entity_type(self.var(v), ty),
            Test::Is(x, ty) => self.is_entity_type(self.operand(x)?, ty),
            Test::Has(x, a) => self.has_attr(self.operand_fast(x)?, a).and_then(bool_of),
            Test::Eq(x, y) => Ok(self.eq(self.operand_fast(x)?, self.operand_fast(y)?)),
            Test::Less(x, y) => match (self.operand_fast(x)?, self.operand_fast(y)?) {
                (Val::Long(a), Val::Long(b)) => Ok(a < b),
                _ => Err(EvalError),
            },
            Test::LessEq(x, y) => match (self.operand_fast(x)?, self.operand_fast(y)?) {
                (Val::Long(a), Val::Long(b)) => Ok(a <= b),
                _ => Err(EvalError),
            },
            Test::Contains(x, y) => {
                let (x, y) = (self.operand_fast(x)?, self.operand_fast(y)?);
                match x.set() {
                    Some(s) => Ok(self.set_contains(s, y)),
                    None => Err(EvalError),
                }
            }
            Test::Bool(x) => bool_of(self.operand_fast(x)?),
            Test::All { start, end } => self.test_all(ops, start, end),
            Test::Ops { .. } | Test::Tree(_) => self.test_slow(ops, t),
        }
    }

    /// A negated conjunction's parts, out of line: `test` is inlined into it.
    #[inline(never)]
    fn test_all(&self, ops: &[Op], start: u32, end: u32) -> R<bool> {
        for c in &self.b.programs.all[start as usize..end as usize] {
            if self.test(ops, &c.test)? == c.negate {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `x in target` for one literal entity.
    #[inline(always)]
    fn in_entity(&self, x: Val<'a>, target: EntityIdx) -> R<bool> {
        match x {
            Val::Known(i) => Ok(i == target || self.b.is_ancestor(i, target)),
            Val::Foreign(_) => Ok(false),
            _ => Err(EvalError),
        }
    }

    /// `x is ty`.
    #[inline(always)]
    fn is_entity_type(&self, x: Val<'a>, ty: super::ir::TypeId) -> R<bool> {
        match x {
            Val::Known(i) => Ok(self.b.data.entities[i as usize].ty == ty),
            v => self.is_type(v, ty).and_then(bool_of),
        }
    }

    /// The conjuncts that are programs or trees, out of line so their stacks do not
    /// enlarge every policy's frame.
    #[inline(never)]
    fn test_slow(&self, ops: &[Op], t: &Test) -> R<bool> {
        match *t {
            Test::Ops { start, end, stack } => {
                let ops = &ops[start as usize..end as usize];
                // Most conditions need a few slots; zeroing a 32-slot stack (768 bytes)
                // for each was a large share of a small policy's cost.
                if stack as usize <= SMALL_STACK {
                    self.run::<SMALL_STACK>(ops)
                } else {
                    self.run::<STACK>(ops)
                }
            }
            Test::Tree(e) => bool_of(self.eval(e)?),
            _ => Err(EvalError),
        }
    }

    /// A test's operand, a variable without a call. (Reading literals here too was tried:
    /// it changed inlining and cost ~100 instructions a decision at 5 policies.)
    #[inline(always)]
    fn operand_fast(&self, o: Operand) -> R<Val<'a>> {
        match o {
            Operand::Var(v) => Ok(self.var(v)),
            _ => self.operand(o),
        }
    }

    /// A test's operand: one body, with the context and entity attribute paths inlined.
    #[inline(never)]
    fn operand(&self, o: Operand) -> R<Val<'a>> {
        match o {
            Operand::Var(v) => Ok(self.var(v)),
            Operand::Attr(Var::Context, a) => self.ctx_get(self.context, a).ok_or(EvalError),
            Operand::Attr(v, a) => self.get_attr(self.var(v), a),
            Operand::Path(v, a, b) => self.get_attr(self.get_attr(self.var(v), a)?, b),
            Operand::Lit(v) => Ok(self.pool(v)),
        }
    }

    #[inline]
    fn str(&self, id: StrId) -> &'a str {
        &self.b.data.strings[id as usize]
    }

    #[inline]
    fn pool(&self, v: ValueId) -> Val<'a> {
        match &self.b.data.values[v as usize] {
            ConstValue::Bool(b) => Val::Bool(*b),
            ConstValue::Long(n) => Val::Long(*n),
            ConstValue::Str(s) => Val::Str(self.str(*s)),
            ConstValue::Entity(e) => Val::Known(*e),
            ConstValue::Set(items) => Val::SetPool(items),
            ConstValue::Record(fields) => Val::RecPool(fields),
        }
    }

    fn owned(&self, v: &'a OwnedValue) -> Val<'a> {
        match v {
            OwnedValue::Bool(b) => Val::Bool(*b),
            OwnedValue::Long(n) => Val::Long(*n),
            OwnedValue::Str(s) => Val::Str(s),
            OwnedValue::Entity { ty, id } => match self.b.lookup_entity(ty, id) {
                Some(i) => Val::Known(i),
                None => Val::Foreign(self.bump.alloc(EntityUid { ty, id })),
            },
            OwnedValue::Set(items) => Val::SetOwned(items),
            OwnedValue::Record(fields) => Val::RecOwned(fields),
        }
    }

    #[inline(always)]
    fn ctx(&self, v: &'a CtxValue<'a>) -> Val<'a> {
        match v {
            CtxValue::Bool(b) => Val::Bool(*b),
            CtxValue::Long(n) => Val::Long(*n),
            CtxValue::Str(s) => Val::Str(s),
            CtxValue::StrSet(s) => Val::SetStrs(s),
            CtxValue::Entity(uid) => self.ctx_entity(uid),
            CtxValue::Value(v) => self.ctx_owned(v),
        }
    }

    /// A context entity: needs a lookup, kept out of line.
    #[inline(never)]
    fn ctx_entity(&self, uid: &'a EntityUid<'a>) -> Val<'a> {
        Val::from_ent(self.b.resolve(uid))
    }

    /// A context value built from JSON: needs a conversion, kept out of line.
    #[inline(never)]
    fn ctx_owned(&self, v: &'a OwnedValue) -> Val<'a> {
        self.owned(v)
    }

    /// Visits the elements of a set until `f` returns `true`; returns whether it did.
    fn set_any(&self, s: SetV<'a>, mut f: impl FnMut(Val<'a>) -> bool) -> bool {
        match s {
            SetV::Pool(items) => items.iter().any(|v| f(self.pool(*v))),
            SetV::Strs(items) => items.iter().any(|v| f(Val::Str(v))),
            SetV::Owned(items) => items.iter().any(|v| f(self.owned(v))),
            SetV::Dyn(items) => items.iter().any(|v| f(*v)),
        }
    }

    fn set_is_empty(&self, s: SetV<'a>) -> bool {
        match s {
            SetV::Pool(i) => i.is_empty(),
            SetV::Strs(i) => i.is_empty(),
            SetV::Owned(i) => i.is_empty(),
            SetV::Dyn(i) => i.is_empty(),
        }
    }

    fn set_contains(&self, s: SetV<'a>, x: Val<'a>) -> bool {
        match (s, x) {
            // The gateway's `context.data_classes.contains("...")`: plain string compares.
            (SetV::Strs(items), Val::Str(x)) => items.iter().any(|v| str_eq(v, x)),
            _ => self.set_any(s, |v| self.eq(v, x)),
        }
    }

    /// `a` contains every element of `b`.
    fn set_superset(&self, a: SetV<'a>, b: SetV<'a>) -> bool {
        !self.set_any(b, |v| !self.set_contains(a, v))
    }

    fn rec_len(&self, r: RecV<'a>) -> usize {
        match r {
            RecV::Pool(f) => f.len(),
            RecV::Ctx(f) => f.len(),
            RecV::Owned(f) => f.len(),
            RecV::Dyn(f) => f.len(),
        }
    }

    /// The context attribute named `id`, remembering where it was.
    #[inline(always)]
    fn ctx_get(&self, fields: &'a [(&'a str, CtxValue<'a>)], id: StrId) -> Option<Val<'a>> {
        self.ctx_field(fields, id).map(|v| self.ctx(v))
    }

    /// The context attribute named `id`, as the caller gave it.
    #[inline(always)]
    fn ctx_field(
        &self,
        fields: &'a [(&'a str, CtxValue<'a>)],
        id: StrId,
    ) -> Option<&'a CtxValue<'a>> {
        let name = self.str(id);
        let hint = &self.ctx_hint[id as usize];
        if let Some((k, v)) = fields.get(hint.get() as usize)
            && str_eq(k, name)
        {
            return Some(v);
        }
        self.ctx_search(fields, name, hint)
    }

    #[inline(never)]
    fn ctx_search(
        &self,
        fields: &'a [(&'a str, CtxValue<'a>)],
        name: &str,
        hint: &Cell<u8>,
    ) -> Option<&'a CtxValue<'a>> {
        let i = fields.iter().position(|(k, _)| str_eq(k, name))?;
        if i < 256 {
            hint.set(i as u8);
        }
        Some(&fields[i].1)
    }

    /// An entity variable's attribute, as the pool value it is.
    #[inline(always)]
    fn attr_id(&self, v: Var, attr: StrId) -> R<ValueId> {
        match self.var(v) {
            Val::Known(i) => self.entity_attr_id(i, attr),
            // A foreign entity has no attributes (and `v` is never the context).
            _ => Err(EvalError),
        }
    }

    #[inline(always)]
    fn entity_attr_id(&self, i: EntityIdx, attr: StrId) -> R<ValueId> {
        let ent = &self.b.data.entities[i as usize];
        if !ent.exists {
            return Err(EvalError);
        }
        attr_of(&ent.attrs, attr).ok_or(EvalError)
    }

    /// `==` of two pool values: canonical ids settle every pair of scalars.
    #[inline(always)]
    fn value_eq(&self, x: ValueId, y: ValueId) -> bool {
        let b = self.b;
        if b.canon[x as usize] == b.canon[y as usize] {
            return true;
        }
        let compound = |v: ValueId| {
            matches!(
                b.data.values[v as usize],
                ConstValue::Set(_) | ConstValue::Record(_)
            )
        };
        // Different canonical ids settle it unless both are sets or records (a compound
        // never equals a scalar).
        (compound(x) && compound(y)) && self.eq(self.pool(x), self.pool(y))
    }

    /// A record field by name; `id` is the name's interned id when the caller has it
    /// (pool records are keyed by id, sorted).
    fn rec_get(&self, r: RecV<'a>, name: &str, id: Option<StrId>) -> Option<Val<'a>> {
        match r {
            RecV::Pool(fields) => {
                let id = match id {
                    Some(i) => i,
                    None => self.b.string_id(name)?,
                };
                fields
                    .binary_search_by_key(&id, |(k, _)| *k)
                    .ok()
                    .map(|i| self.pool(fields[i].1))
            }
            RecV::Ctx(fields) => match id {
                Some(id) if std::ptr::eq(fields, self.context) => self.ctx_get(fields, id),
                _ => fields
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| self.ctx(v)),
            },
            RecV::Owned(fields) => fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| self.owned(v)),
            RecV::Dyn(fields) => fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v),
        }
    }

    /// Visits record fields until `f` returns `true`.
    fn rec_any(&self, r: RecV<'a>, mut f: impl FnMut(&str, Val<'a>) -> bool) -> bool {
        match r {
            RecV::Pool(fields) => fields.iter().any(|(k, v)| f(self.str(*k), self.pool(*v))),
            RecV::Ctx(fields) => fields.iter().any(|(k, v)| f(k, self.ctx(v))),
            RecV::Owned(fields) => fields.iter().any(|(k, v)| f(k, self.owned(v))),
            RecV::Dyn(fields) => fields.iter().any(|(k, v)| f(k, *v)),
        }
    }

    #[inline]
    fn ent_eq(&self, a: Ent<'a>, b: Ent<'a>) -> bool {
        match (a, b) {
            (Ent::Known(x), Ent::Known(y)) => x == y,
            (Ent::Foreign(x), Ent::Foreign(y)) => x.ty == y.ty && x.id == y.id,
            _ => false,
        }
    }

    /// Cedar's `==`: structural, never an error; values of different types are unequal.
    fn eq(&self, a: Val<'a>, b: Val<'a>) -> bool {
        match (a, b) {
            (Val::Bool(x), Val::Bool(y)) => x == y,
            (Val::Long(x), Val::Long(y)) => x == y,
            (Val::Str(x), Val::Str(y)) => str_eq(x, y),
            (Val::Known(x), Val::Known(y)) => x == y,
            _ => self.eq_slow(a, b),
        }
    }

    #[inline(never)]
    fn eq_slow(&self, a: Val<'a>, b: Val<'a>) -> bool {
        if let (Some(x), Some(y)) = (a.ent(), b.ent()) {
            return self.ent_eq(x, y);
        }
        if let (Some(x), Some(y)) = (a.set(), b.set()) {
            return self.set_superset(x, y) && self.set_superset(y, x);
        }
        if let (Some(x), Some(y)) = (a.rec(), b.rec()) {
            // Distinct keys: equal sizes plus every key of `x` present with an equal value
            // means the key sets are the same.
            return self.rec_len(x) == self.rec_len(y)
                && !self.rec_any(x, |k, v| {
                    !self.rec_get(y, k, None).is_some_and(|w| self.eq(v, w))
                });
        }
        false
    }

    /// `a in b` for one entity `b`: equal, or `b` is an ancestor of `a`.
    #[inline]
    fn in_one(&self, a: Ent<'a>, b: Ent<'a>) -> bool {
        match (a, b) {
            (Ent::Known(x), Ent::Known(y)) => x == y || self.b.is_ancestor(x, y),
            _ => self.ent_eq(a, b),
        }
    }

    #[inline]
    fn var(&self, v: Var) -> Val<'a> {
        self.vars[v as usize]
    }

    /// `x.attr` for an evaluated `x`.
    #[inline(always)]
    fn get_attr(&self, x: Val<'a>, attr: StrId) -> R<Val<'a>> {
        match x {
            Val::Known(i) => self.entity_attr(i, attr),
            Val::RecCtx(f) if std::ptr::eq(f, self.context) => {
                self.ctx_get(f, attr).ok_or(EvalError)
            }
            _ => self.get_attr_slow(x, attr),
        }
    }

    #[inline(always)]
    fn entity_attr(&self, i: EntityIdx, attr: StrId) -> R<Val<'a>> {
        self.entity_attr_id(i, attr).map(|v| self.pool(v))
    }

    /// Attributes of records other than the request's context.
    #[inline(never)]
    fn get_attr_slow(&self, x: Val<'a>, attr: StrId) -> R<Val<'a>> {
        match x.rec() {
            Some(r) => self.rec_get(r, self.str(attr), Some(attr)).ok_or(EvalError),
            None => Err(EvalError),
        }
    }

    /// `x has attr` for an evaluated `x`.
    #[inline]
    fn has_attr(&self, x: Val<'a>, attr: StrId) -> R<Val<'a>> {
        match x {
            Val::Known(i) => {
                let ent = &self.b.data.entities[i as usize];
                Ok(Val::Bool(ent.exists && attr_of(&ent.attrs, attr).is_some()))
            }
            Val::Foreign(_) => Ok(Val::Bool(false)),
            _ => match x.rec() {
                Some(r) => Ok(Val::Bool(
                    self.rec_get(r, self.str(attr), Some(attr)).is_some(),
                )),
                None => Err(EvalError),
            },
        }
    }

    fn is_type(&self, x: Val<'a>, ty: super::ir::TypeId) -> R<Val<'a>> {
        match x {
            Val::Known(i) => Ok(Val::Bool(self.b.data.entities[i as usize].ty == ty)),
            Val::Foreign(u) => Ok(Val::Bool(u.ty == self.b.data.types[ty as usize])),
            _ => Err(EvalError),
        }
    }

    fn eval(&self, e: ExprId) -> R<Val<'a>> {
        let b = self.b;
        Ok(match &b.data.exprs[e as usize] {
            Expr::VarAttr(v, attr) => self.get_attr(self.var(*v), *attr)?,
            Expr::EqLit(x, v) => {
                let x = self.eval(*x)?;
                Val::Bool(self.eq(x, self.pool(*v)))
            }
            Expr::And(l, r) => match self.eval(*l)? {
                Val::Bool(false) => Val::Bool(false),
                Val::Bool(true) => match self.eval(*r)? {
                    Val::Bool(v) => Val::Bool(v),
                    _ => return Err(EvalError),
                },
                _ => return Err(EvalError),
            },
            Expr::Or(l, r) => match self.eval(*l)? {
                Val::Bool(true) => Val::Bool(true),
                Val::Bool(false) => match self.eval(*r)? {
                    Val::Bool(v) => Val::Bool(v),
                    _ => return Err(EvalError),
                },
                _ => return Err(EvalError),
            },
            Expr::Not(x) => match self.eval(*x)? {
                Val::Bool(v) => Val::Bool(!v),
                _ => return Err(EvalError),
            },
            Expr::VarHas(v, attr) => self.has_attr(self.var(*v), *attr)?,
            Expr::VarIs(v, ty) => self.is_type(self.var(*v), *ty)?,
            Expr::InEntity(x, target) => match self.eval(*x)?.ent() {
                Some(a) => Val::Bool(self.in_one(a, Ent::Known(*target))),
                None => return Err(EvalError),
            },
            Expr::Lit(v) => self.pool(*v),
            Expr::Var(v) => self.var(*v),
            Expr::Bin(op, l, r) => {
                // Cedar evaluates both operands before applying the operator.
                let (x, y) = (self.eval(*l)?, self.eval(*r)?);
                self.binary(*op, x, y)?
            }
            Expr::GetAttr(x, attr) => {
                let x = self.eval(*x)?;
                self.get_attr(x, *attr)?
            }
            Expr::HasAttr(x, attr) => {
                let x = self.eval(*x)?;
                self.has_attr(x, *attr)?
            }
            Expr::Is(x, ty) => {
                let x = self.eval(*x)?;
                self.is_type(x, *ty)?
            }
            Expr::If(c, t, f) => match self.eval(*c)? {
                Val::Bool(true) => self.eval(*t)?,
                Val::Bool(false) => self.eval(*f)?,
                _ => return Err(EvalError),
            },
            Expr::Neg(x) => match self.eval(*x)? {
                Val::Long(v) => Val::Long(v.checked_neg().ok_or(EvalError)?),
                _ => return Err(EvalError),
            },
            Expr::IsEmpty(x) => match self.eval(*x)?.set() {
                Some(s) => Val::Bool(self.set_is_empty(s)),
                None => return Err(EvalError),
            },
            Expr::Like(x, pattern) => self.like(*x, pattern)?,
            Expr::Set(items) => self.build_set(items)?,
            Expr::Record(fields) => self.build_record(fields)?,
        })
    }

    /// Runs a policy program (see `vm`) that needs at most `N` stack slots: `Ok(true)`
    /// when every condition held.
    fn run<const N: usize>(&self, ops: &[Op]) -> R<bool> {
        let mut stack = [Val::Bool(false); N];
        let mut sp = 0usize;
        let mut pc = 0usize;
        macro_rules! top {
            () => {
                stack[sp - 1]
            };
        }
        while pc < ops.len() {
            match ops[pc] {
                Op::Lit(v) => {
                    stack[sp] = self.pool(v);
                    sp += 1;
                }
                Op::Var(v) => {
                    stack[sp] = self.var(v);
                    sp += 1;
                }
                Op::VarAttr(v, a) => {
                    stack[sp] = self.get_attr(self.var(v), a)?;
                    sp += 1;
                }
                Op::VarHas(v, a) => {
                    stack[sp] = self.has_attr(self.var(v), a)?;
                    sp += 1;
                }
                Op::VarIs(v, t) => {
                    stack[sp] = self.is_type(self.var(v), t)?;
                    sp += 1;
                }
                Op::GetAttr(a) => top!() = self.get_attr(top!(), a)?,
                Op::HasAttr(a) => top!() = self.has_attr(top!(), a)?,
                Op::Is(t) => top!() = self.is_type(top!(), t)?,
                Op::EqLit(v) => top!() = Val::Bool(self.eq(top!(), self.pool(v))),
                Op::InEntity(t) => match top!().ent() {
                    Some(a) => top!() = Val::Bool(self.in_one(a, Ent::Known(t))),
                    None => return Err(EvalError),
                },
                Op::Bin(op) => {
                    sp -= 1;
                    top!() = self.binary(op, top!(), stack[sp])?;
                }
                Op::Not => match top!() {
                    Val::Bool(v) => top!() = Val::Bool(!v),
                    _ => return Err(EvalError),
                },
                Op::Neg => match top!() {
                    Val::Long(v) => top!() = Val::Long(v.checked_neg().ok_or(EvalError)?),
                    _ => return Err(EvalError),
                },
                Op::IsEmpty => match top!().set() {
                    Some(s) => top!() = Val::Bool(self.set_is_empty(s)),
                    None => return Err(EvalError),
                },
                Op::AndJump(target) => match top!() {
                    Val::Bool(false) => {
                        pc = target as usize;
                        continue;
                    }
                    Val::Bool(true) => sp -= 1,
                    _ => return Err(EvalError),
                },
                Op::OrJump(target) => match top!() {
                    Val::Bool(true) => {
                        pc = target as usize;
                        continue;
                    }
                    Val::Bool(false) => sp -= 1,
                    _ => return Err(EvalError),
                },
                Op::CheckBool => {
                    if !matches!(top!(), Val::Bool(_)) {
                        return Err(EvalError);
                    }
                }
                Op::IfFalseJump(target) => {
                    sp -= 1;
                    match stack[sp] {
                        Val::Bool(true) => {}
                        Val::Bool(false) => {
                            pc = target as usize;
                            continue;
                        }
                        _ => return Err(EvalError),
                    }
                }
                Op::Jump(target) => {
                    pc = target as usize;
                    continue;
                }
                Op::Eval(e) => {
                    stack[sp] = self.eval(e)?;
                    sp += 1;
                }
                Op::Require => {
                    sp -= 1;
                    match stack[sp] {
                        Val::Bool(true) => {}
                        Val::Bool(false) => return Ok(false),
                        _ => return Err(EvalError),
                    }
                }
            }
            pc += 1;
        }
        Ok(true)
    }

    // Literals built from non-constant parts and `like` are rare: kept out of `eval` so
    // its frame (and every recursion) stays small.
    #[inline(never)]
    fn build_set(&self, items: &[ExprId]) -> R<Val<'a>> {
        let mut out = bumpalo::collections::Vec::with_capacity_in(items.len(), self.bump);
        for i in items {
            out.push(self.eval(*i)?);
        }
        Ok(Val::SetDyn(out.into_bump_slice()))
    }

    #[inline(never)]
    fn build_record(&self, fields: &[(StrId, ExprId)]) -> R<Val<'a>> {
        let mut out = bumpalo::collections::Vec::with_capacity_in(fields.len(), self.bump);
        for (k, v) in fields {
            out.push((self.str(*k), self.eval(*v)?));
        }
        Ok(Val::RecDyn(out.into_bump_slice()))
    }

    #[inline(never)]
    fn like(&self, x: ExprId, pattern: &[PatElem]) -> R<Val<'a>> {
        match self.eval(x)? {
            Val::Str(s) => Ok(Val::Bool(wildcard_match(s, pattern))),
            _ => Err(EvalError),
        }
    }

    #[inline(never)]
    fn binary(&self, op: BinOp, x: Val<'a>, y: Val<'a>) -> R<Val<'a>> {
        Ok(match op {
            BinOp::Eq => Val::Bool(self.eq(x, y)),
            BinOp::Less | BinOp::LessEq | BinOp::Add | BinOp::Sub | BinOp::Mul => {
                let (Val::Long(a), Val::Long(b)) = (x, y) else {
                    return Err(EvalError);
                };
                match op {
                    BinOp::Less => Val::Bool(a < b),
                    BinOp::LessEq => Val::Bool(a <= b),
                    BinOp::Add => Val::Long(a.checked_add(b).ok_or(EvalError)?),
                    BinOp::Sub => Val::Long(a.checked_sub(b).ok_or(EvalError)?),
                    _ => Val::Long(a.checked_mul(b).ok_or(EvalError)?),
                }
            }
            BinOp::In => {
                let Some(a) = x.ent() else {
                    return Err(EvalError);
                };
                if let Some(b) = y.ent() {
                    Val::Bool(self.in_one(a, b))
                } else if let Some(s) = y.set() {
                    // Every element must be an entity, or the whole `in` is an error.
                    if self.set_any(s, |v| v.ent().is_none()) {
                        return Err(EvalError);
                    }
                    Val::Bool(self.set_any(s, |v| v.ent().is_some_and(|b| self.in_one(a, b))))
                } else {
                    return Err(EvalError);
                }
            }
            BinOp::Contains => match x.set() {
                Some(s) => Val::Bool(self.set_contains(s, y)),
                None => return Err(EvalError),
            },
            BinOp::ContainsAll | BinOp::ContainsAny => {
                let (Some(a), Some(b)) = (x.set(), y.set()) else {
                    return Err(EvalError);
                };
                if op == BinOp::ContainsAll {
                    Val::Bool(self.set_superset(a, b))
                } else {
                    Val::Bool(self.set_any(b, |v| self.set_contains(a, v)))
                }
            }
        })
    }
}

/// The value of attribute `attr` in a list sorted by name. Entities have a few
/// attributes: scanning those beats the branches of a binary search.
#[inline(always)]
fn attr_of(attrs: &[(StrId, ValueId)], attr: StrId) -> Option<ValueId> {
    if attrs.len() <= 4 {
        return attrs.iter().find(|(k, _)| *k == attr).map(|(_, v)| *v);
    }
    match attrs.binary_search_by_key(&attr, |(k, _)| *k) {
        Ok(k) => Some(attrs[k].1),
        Err(_) => None,
    }
}

/// Cedar's `like`: `*` matches any run of characters (including none); everything else
/// literally, character by character.
pub fn wildcard_match(s: &str, pattern: &[PatElem]) -> bool {
    // Flatten to a char-level pattern lazily: iterate with backtracking on the last `*`.
    let text: &[u8] = s.as_bytes();
    // Work on chars for correctness with multi-byte text.
    let chars: Vec<char>;
    let use_chars = !s.is_ascii()
        || pattern
            .iter()
            .any(|p| matches!(p, PatElem::Literal(l) if !l.is_ascii()));
    if use_chars {
        chars = s.chars().collect();
        let pat: Vec<Option<char>> = pattern
            .iter()
            .flat_map(|p| match p {
                PatElem::Wildcard => vec![None],
                PatElem::Literal(l) => l.chars().map(Some).collect(),
            })
            .collect();
        return glob(&chars, &pat);
    }
    let pat: smallpat::Pat<'_> = smallpat::Pat::new(pattern);
    glob_bytes(text, &pat)
}

fn glob<T: PartialEq + Copy>(text: &[T], pat: &[Option<T>]) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && pat[p] == Some(text[t]) {
            t += 1;
            p += 1;
        } else if p < pat.len() && pat[p].is_none() {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p].is_none() {
        p += 1;
    }
    p == pat.len()
}

fn glob_bytes(text: &[u8], pat: &smallpat::Pat<'_>) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.at(p) {
            Some(Some(c)) if c == text[t] => {
                t += 1;
                p += 1;
                continue;
            }
            Some(None) => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            _ => {}
        }
        if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pat.at(p) == Some(None) {
        p += 1;
    }
    pat.at(p).is_none()
}

/// An ASCII pattern viewed as a flat sequence without allocating.
mod smallpat {
    use super::PatElem;

    pub struct Pat<'a> {
        elems: &'a [PatElem],
    }

    impl<'a> Pat<'a> {
        pub fn new(elems: &'a [PatElem]) -> Self {
            Pat { elems }
        }

        /// Position `i` of the flattened pattern: `Some(None)` a wildcard, `Some(Some(b))`
        /// a literal byte, `None` past the end.
        pub fn at(&self, mut i: usize) -> Option<Option<u8>> {
            for e in self.elems {
                match e {
                    PatElem::Wildcard if i == 0 => return Some(None),
                    PatElem::Wildcard => i -= 1,
                    PatElem::Literal(l) if i < l.len() => return Some(Some(l.as_bytes()[i])),
                    PatElem::Literal(l) => i -= l.len(),
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Vec<PatElem> {
        let mut out = Vec::new();
        let mut lit = String::new();
        for c in s.chars() {
            if c == '*' {
                if !lit.is_empty() {
                    out.push(PatElem::Literal(std::mem::take(&mut lit)));
                }
                out.push(PatElem::Wildcard);
            } else {
                lit.push(c);
            }
        }
        if !lit.is_empty() {
            out.push(PatElem::Literal(lit));
        }
        out
    }

    #[test]
    fn like() {
        let cases = [
            ("contract_7781", "contract_*", true),
            ("contract_7781", "*7781", true),
            ("contract_7781", "*_*_*", false),
            ("contract_7781", "c*t*1", true),
            ("", "*", true),
            ("", "", true),
            ("a", "", false),
            ("abc", "a*b*c*", true),
            ("aaa", "a*a", true),
            ("héllo", "h*o", true),
            ("héllo", "h?llo", false),
            ("x*y", "x*y", true),
        ];
        for (s, p, want) in cases {
            assert_eq!(wildcard_match(s, &pat(p)), want, "{s} like {p}");
        }
    }
}
