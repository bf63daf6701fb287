//! Lowering Cedar to the decision-table IR: entities (with the transitive closure of their
//! parents), constant values (interned, deduplicated), and policies from Cedar's JSON
//! policy format (the EST, a stable public representation of the parsed AST) into the
//! compact expression arena. Anything the IR cannot express exactly is refused here,
//! naming the construct.

use portcullis::decision::ir::{
    BinOp, ConstValue, EntityData, Expr, ExprId, PatElem, StrId, TypeId, ValueId, Var,
};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// A construct the decision table cannot express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

type L<T> = Result<T, Unsupported>;

fn unsupported<T>(what: impl Into<String>) -> L<T> {
    Err(Unsupported(what.into()))
}

/// The interning tables, filled as sources are lowered.
#[derive(Default)]
pub struct Builder {
    pub strings: Vec<String>,
    string_ids: HashMap<String, StrId>,
    pub types: Vec<String>,
    type_ids: HashMap<String, TypeId>,
    pub entities: Vec<EntityData>,
    entity_ids: HashMap<(TypeId, String), u32>,
    /// Direct parents, by entity index (closure computed at the end).
    pub parents: Vec<Vec<u32>>,
    pub values: Vec<ConstValue>,
    value_ids: HashMap<ConstValue, ValueId>,
    pub exprs: Vec<Expr>,
    expr_ids: HashMap<Expr, ExprId>,
}

/// An entity uid written either `{"type", "id"}` or `{"__entity": {"type", "id"}}`.
pub fn uid_of(v: &Value) -> Option<(&str, &str)> {
    let v = v.get("__entity").unwrap_or(v);
    Some((v.get("type")?.as_str()?, v.get("id")?.as_str()?))
}

impl Builder {
    pub fn string(&mut self, s: &str) -> StrId {
        if let Some(i) = self.string_ids.get(s) {
            return *i;
        }
        let i = self.strings.len() as StrId;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), i);
        i
    }

    pub fn ty(&mut self, t: &str) -> TypeId {
        if let Some(i) = self.type_ids.get(t) {
            return *i;
        }
        let i = self.types.len() as TypeId;
        self.types.push(t.to_owned());
        self.type_ids.insert(t.to_owned(), i);
        i
    }

    /// The entity's index, creating a placeholder (not in the store) if it is new.
    pub fn entity(&mut self, ty: &str, id: &str) -> u32 {
        let t = self.ty(ty);
        if let Some(i) = self.entity_ids.get(&(t, id.to_owned())) {
            return *i;
        }
        let sid = self.string(id);
        let i = self.entities.len() as u32;
        self.entities.push(EntityData {
            ty: t,
            id: sid,
            exists: false,
            attrs: Vec::new(),
            ancestors: Vec::new(),
        });
        self.parents.push(Vec::new());
        self.entity_ids.insert((t, id.to_owned()), i);
        i
    }

    pub fn find_entity(&self, ty: &str, id: &str) -> Option<u32> {
        let t = *self.type_ids.get(ty)?;
        self.entity_ids.get(&(t, id.to_owned())).copied()
    }

    pub fn value(&mut self, v: ConstValue) -> ValueId {
        if let Some(i) = self.value_ids.get(&v) {
            return *i;
        }
        let i = self.values.len() as ValueId;
        self.values.push(v.clone());
        self.value_ids.insert(v, i);
        i
    }

    /// Adds (or finds) an expression node.
    pub fn push_expr(&mut self, e: Expr) -> ExprId {
        self.expr(e)
    }

    fn expr(&mut self, e: Expr) -> ExprId {
        let e = self.fuse(e);
        if let Some(i) = self.expr_ids.get(&e) {
            return *i;
        }
        let i = self.exprs.len() as ExprId;
        self.exprs.push(e.clone());
        self.expr_ids.insert(e, i);
        i
    }

    /// Cedar's JSON value format (entity attributes, EST literals) to a pooled constant.
    pub fn json_value(&mut self, v: &Value) -> L<ValueId> {
        let c = match v {
            Value::Bool(b) => ConstValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(n) => ConstValue::Long(n),
                None => {
                    return unsupported(format!("number {n} (Cedar Longs are 64-bit integers)"));
                }
            },
            Value::String(s) => ConstValue::Str(self.string(s)),
            Value::Array(items) => {
                let mut ids = Vec::with_capacity(items.len());
                for i in items {
                    ids.push(self.json_value(i)?);
                }
                ConstValue::Set(ids)
            }
            Value::Object(m) => {
                if m.contains_key("__entity") {
                    let Some((t, id)) = uid_of(v) else {
                        return unsupported("malformed `__entity` reference");
                    };
                    ConstValue::Entity(self.entity(t, id))
                } else if let Some(x) = m.get("__extn") {
                    let f = x.get("fn").and_then(Value::as_str).unwrap_or("?");
                    return unsupported(format!(
                        "extension value `{f}(...)` (decimal, ipaddr, datetime and duration are not supported)"
                    ));
                } else {
                    let mut fields = Vec::with_capacity(m.len());
                    for (k, v) in m {
                        let kid = self.string(k);
                        fields.push((kid, self.json_value(v)?));
                    }
                    fields.sort_by_key(|(k, _)| *k);
                    ConstValue::Record(fields)
                }
            }
            Value::Null => return unsupported("null value"),
        };
        Ok(self.value(c))
    }

    fn entity_lit(&mut self, v: &Value) -> L<ExprId> {
        let Some((t, id)) = uid_of(v) else {
            return unsupported("malformed entity reference");
        };
        let e = self.entity(t, id);
        let val = self.value(ConstValue::Entity(e));
        Ok(self.expr(Expr::Lit(val)))
    }

    /// A principal or resource scope constraint as an expression (`None`: unconstrained).
    pub fn scope(&mut self, var: Var, c: &Value) -> L<Option<ExprId>> {
        let op = c.get("op").and_then(Value::as_str).unwrap_or("");
        if c.get("slot").is_some() {
            return unsupported("policy template slot");
        }
        let v = self.expr(Expr::Var(var));
        Ok(match op {
            "All" => None,
            "==" => {
                let e = self.entity_lit(c.get("entity").unwrap_or(&Value::Null))?;
                Some(self.expr(Expr::Bin(BinOp::Eq, v, e)))
            }
            "in" => {
                let e = self.entity_lit(c.get("entity").unwrap_or(&Value::Null))?;
                Some(self.expr(Expr::Bin(BinOp::In, v, e)))
            }
            "is" => {
                let t = c.get("entity_type").and_then(Value::as_str).unwrap_or("");
                let t = self.ty(t);
                let is = self.expr(Expr::Is(v, t));
                match c.get("in") {
                    None => Some(is),
                    Some(inner) => {
                        if inner.get("slot").is_some() {
                            return unsupported("policy template slot");
                        }
                        let e = self.entity_lit(inner.get("entity").unwrap_or(&Value::Null))?;
                        let inn = self.expr(Expr::Bin(BinOp::In, v, e));
                        Some(self.expr(Expr::And(is, inn)))
                    }
                }
            }
            other => return unsupported(format!("scope operator `{other}`")),
        })
    }

    /// The action entities an action scope names (`None`: every action).
    pub fn action_scope(&mut self, c: &Value) -> L<Option<(bool, Vec<u32>)>> {
        let op = c.get("op").and_then(Value::as_str).unwrap_or("");
        let one = |b: &mut Self, v: &Value| -> L<u32> {
            match uid_of(v) {
                Some((t, id)) => Ok(b.entity(t, id)),
                None => unsupported("malformed action reference"),
            }
        };
        Ok(match op {
            "All" => None,
            "==" => Some((
                false,
                vec![one(self, c.get("entity").unwrap_or(&Value::Null))?],
            )),
            "in" => match (c.get("entity"), c.get("entities")) {
                (Some(e), _) => Some((true, vec![one(self, e)?])),
                (None, Some(Value::Array(list))) => {
                    let mut out = Vec::new();
                    for e in list {
                        out.push(one(self, e)?);
                    }
                    Some((true, out))
                }
                _ => return unsupported("malformed action scope"),
            },
            other => return unsupported(format!("action scope operator `{other}`")),
        })
    }

    fn un(&mut self, m: &Map<String, Value>, key: &str, f: fn(ExprId) -> Expr) -> L<ExprId> {
        let a = self.lower(
            m.get(key)
                .and_then(|o| o.get("arg"))
                .unwrap_or(&Value::Null),
        )?;
        Ok(self.expr(f(a)))
    }

    fn lr(&mut self, body: &Value) -> L<(ExprId, ExprId)> {
        let l = self.lower(body.get("left").unwrap_or(&Value::Null))?;
        let r = self.lower(body.get("right").unwrap_or(&Value::Null))?;
        Ok((l, r))
    }

    /// Lowers one EST expression.
    pub fn lower(&mut self, v: &Value) -> L<ExprId> {
        let Some(m) = v.as_object() else {
            return unsupported("malformed expression");
        };
        let Some((key, body)) = m.iter().next().filter(|_| m.len() == 1) else {
            return unsupported("malformed expression");
        };
        Ok(match key.as_str() {
            "Value" => {
                let val = self.json_value(body)?;
                self.expr(Expr::Lit(val))
            }
            "Var" => {
                let var = match body.as_str() {
                    Some("principal") => Var::Principal,
                    Some("action") => Var::Action,
                    Some("resource") => Var::Resource,
                    Some("context") => Var::Context,
                    _ => return unsupported("unknown variable"),
                };
                self.expr(Expr::Var(var))
            }
            "Slot" => return unsupported("policy template slot"),
            "Unknown" => return unsupported("unknown (partial evaluation) value"),
            "!" => self.un(m, "!", Expr::Not)?,
            "neg" => self.un(m, "neg", Expr::Neg)?,
            "isEmpty" => self.un(m, "isEmpty", Expr::IsEmpty)?,
            "==" | "!=" | "in" | "<" | "<=" | ">" | ">=" | "+" | "-" | "*" | "contains"
            | "containsAll" | "containsAny" => {
                let (l, r) = self.lr(body)?;
                let bin = |op| Expr::Bin(op, l, r);
                match key.as_str() {
                    "==" => self.expr(bin(BinOp::Eq)),
                    "!=" => {
                        let eq = self.expr(bin(BinOp::Eq));
                        self.expr(Expr::Not(eq))
                    }
                    "in" => self.expr(bin(BinOp::In)),
                    "<" => self.expr(bin(BinOp::Less)),
                    "<=" => self.expr(bin(BinOp::LessEq)),
                    // `a > b` is `b < a`: same value, same errors.
                    ">" => self.expr(Expr::Bin(BinOp::Less, r, l)),
                    ">=" => self.expr(Expr::Bin(BinOp::LessEq, r, l)),
                    "+" => self.expr(bin(BinOp::Add)),
                    "-" => self.expr(bin(BinOp::Sub)),
                    "*" => self.expr(bin(BinOp::Mul)),
                    "contains" => self.expr(bin(BinOp::Contains)),
                    "containsAll" => self.expr(bin(BinOp::ContainsAll)),
                    _ => self.expr(bin(BinOp::ContainsAny)),
                }
            }
            "&&" | "||" => {
                let (l, r) = self.lr(body)?;
                self.expr(if key == "&&" {
                    Expr::And(l, r)
                } else {
                    Expr::Or(l, r)
                })
            }
            "hasTag" | "getTag" => return unsupported(format!("entity tags (`{key}`)")),
            "." => {
                let l = self.lower(body.get("left").unwrap_or(&Value::Null))?;
                let a = body.get("attr").and_then(Value::as_str).unwrap_or("");
                let a = self.string(a);
                self.expr(Expr::GetAttr(l, a))
            }
            "has" => {
                let l = self.lower(body.get("left").unwrap_or(&Value::Null))?;
                match body.get("attr") {
                    Some(Value::String(a)) => {
                        let a = self.string(a);
                        self.expr(Expr::HasAttr(l, a))
                    }
                    // `e has a.b.c` is `e has a && e.a has b && e.a.b has c`.
                    Some(Value::Array(path)) => {
                        let mut cur = l;
                        let mut acc: Option<ExprId> = None;
                        for a in path {
                            let a = self.string(a.as_str().unwrap_or(""));
                            let has = self.expr(Expr::HasAttr(cur, a));
                            acc = Some(match acc {
                                None => has,
                                Some(prev) => self.expr(Expr::And(prev, has)),
                            });
                            cur = self.expr(Expr::GetAttr(cur, a));
                        }
                        match acc {
                            Some(e) => e,
                            None => return unsupported("empty `has` path"),
                        }
                    }
                    _ => return unsupported("malformed `has`"),
                }
            }
            "like" => {
                let l = self.lower(body.get("left").unwrap_or(&Value::Null))?;
                let mut pat = Vec::new();
                for p in body
                    .get("pattern")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match p {
                        Value::String(w) if w == "Wildcard" => pat.push(PatElem::Wildcard),
                        Value::Object(o) => match o.get("Literal").and_then(Value::as_str) {
                            Some(s) => match pat.last_mut() {
                                Some(PatElem::Literal(prev)) => prev.push_str(s),
                                _ => pat.push(PatElem::Literal(s.to_owned())),
                            },
                            None => return unsupported("malformed `like` pattern"),
                        },
                        _ => return unsupported("malformed `like` pattern"),
                    }
                }
                self.expr(Expr::Like(l, pat))
            }
            "is" => {
                let l = self.lower(body.get("left").unwrap_or(&Value::Null))?;
                let t = body
                    .get("entity_type")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let t = self.ty(t);
                let is = self.expr(Expr::Is(l, t));
                match body.get("in") {
                    None => is,
                    Some(inner) => {
                        let r = self.lower(inner)?;
                        let inn = self.expr(Expr::Bin(BinOp::In, l, r));
                        self.expr(Expr::And(is, inn))
                    }
                }
            }
            "if-then-else" => {
                let c = self.lower(body.get("if").unwrap_or(&Value::Null))?;
                let t = self.lower(body.get("then").unwrap_or(&Value::Null))?;
                let e = self.lower(body.get("else").unwrap_or(&Value::Null))?;
                self.expr(Expr::If(c, t, e))
            }
            "Set" => {
                let mut items = Vec::new();
                for i in body.as_array().into_iter().flatten() {
                    items.push(self.lower(i)?);
                }
                // All-constant sets are folded into the value pool: no work at run time.
                if let Some(consts) = items
                    .iter()
                    .map(|i| self.const_of(*i))
                    .collect::<Option<Vec<_>>>()
                {
                    let v = self.value(ConstValue::Set(consts));
                    self.expr(Expr::Lit(v))
                } else {
                    self.expr(Expr::Set(items))
                }
            }
            "Record" => {
                let mut fields = Vec::new();
                for (k, v) in body.as_object().into_iter().flatten() {
                    let kid = self.string(k);
                    fields.push((kid, self.lower(v)?));
                }
                fields.sort_by_key(|(k, _)| *k);
                if let Some(consts) = fields
                    .iter()
                    .map(|(k, e)| self.const_of(*e).map(|v| (*k, v)))
                    .collect::<Option<Vec<_>>>()
                {
                    let v = self.value(ConstValue::Record(consts));
                    self.expr(Expr::Lit(v))
                } else {
                    self.expr(Expr::Record(fields))
                }
            }
            other => {
                return unsupported(format!(
                    "extension function `{other}` (the decimal, ipaddr, datetime and duration extensions are not supported)"
                ));
            }
        })
    }

    /// Rewrites the commonest shapes into the IR's fused nodes.
    fn fuse(&self, e: Expr) -> Expr {
        let var = |x: ExprId| match self.exprs[x as usize] {
            Expr::Var(v) => Some(v),
            _ => None,
        };
        match e {
            Expr::GetAttr(x, a) => var(x).map_or(e, |v| Expr::VarAttr(v, a)),
            Expr::HasAttr(x, a) => var(x).map_or(e, |v| Expr::VarHas(v, a)),
            Expr::Is(x, t) => var(x).map_or(e, |v| Expr::VarIs(v, t)),
            Expr::Bin(BinOp::Eq, l, r) => match (self.const_of(l), self.const_of(r)) {
                (_, Some(v)) => Expr::EqLit(l, v),
                (Some(v), None) => Expr::EqLit(r, v),
                _ => e,
            },
            Expr::Bin(BinOp::In, l, r) => {
                match self.const_of(r).map(|v| &self.values[v as usize]) {
                    Some(ConstValue::Entity(ent)) => Expr::InEntity(l, *ent),
                    _ => e,
                }
            }
            _ => e,
        }
    }

    fn const_of(&self, e: ExprId) -> Option<ValueId> {
        match &self.exprs[e as usize] {
            Expr::Lit(v) => Some(*v),
            _ => None,
        }
    }

    /// Fills every entity's `ancestors` with the transitive closure of its parents.
    pub fn close_hierarchy(&mut self) {
        let n = self.entities.len();
        let mut memo: Vec<Option<Vec<u32>>> = vec![None; n];
        for start in 0..n {
            if memo[start].is_some() {
                continue;
            }
            // Iterative DFS; a cycle simply makes its members each other's ancestors.
            let mut out: Vec<u32> = Vec::new();
            let mut stack: Vec<u32> = self.parents[start].clone();
            let mut visited = std::collections::HashSet::new();
            while let Some(p) = stack.pop() {
                if !visited.insert(p) {
                    continue;
                }
                out.push(p);
                if let Some(done) = &memo[p as usize] {
                    for a in done {
                        if visited.insert(*a) {
                            out.push(*a);
                        }
                    }
                } else {
                    stack.extend(self.parents[p as usize].iter().copied());
                }
            }
            out.sort_unstable();
            out.dedup();
            memo[start] = Some(out);
        }
        for (e, m) in self.entities.iter_mut().zip(memo) {
            e.ancestors = m.unwrap_or_default();
        }
    }
}
