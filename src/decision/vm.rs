//! Policy conditions as the evaluator runs them, built from the expression tree when a
//! bundle is loaded. A policy is a conjunction: its scope constraints, `when` bodies and
//! negated `unless` bodies, with top-level `&&` (and, negated, `||`) split further, in
//! evaluation order. Each conjunct is a `Test`: the common shapes (`x in Entity`,
//! `x is T`, `x has a`, `x == y`, `x < y`, `x.contains(y)` over variables, attributes
//! and literals) are single steps with no stack; anything else is a straight-line
//! program for a small stack machine (one dispatch per step, `&&`, `||` and `if` as
//! jumps), and a program too deep for its stack is walked as a tree. Rare constructs
//! inside a program (set and record literals, `like`) are one step that walks their
//! subtree, so every path shares one definition of every operator.

use super::ir::{
    BinOp, BundleData, ConstValue, EntityIdx, Expr, ExprId, PolicyData, StrId, TypeId, ValueId, Var,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lit(ValueId),
    Var(Var),
    VarAttr(Var, StrId),
    VarHas(Var, StrId),
    VarIs(Var, TypeId),
    GetAttr(StrId),
    HasAttr(StrId),
    Is(TypeId),
    /// Pop x; push `x == literal`.
    EqLit(ValueId),
    /// Pop x (an entity, else error); push `x in entity`.
    InEntity(EntityIdx),
    /// Pop y, pop x; push `x op y`.
    Bin(BinOp),
    Not,
    Neg,
    IsEmpty,
    /// Top must be a bool (else error). False: keep it, jump. True: drop it, go on.
    AndJump(u32),
    /// Top must be a bool (else error). True: keep it, jump. False: drop it, go on.
    OrJump(u32),
    /// Top must be a bool (else error): the right operand of `&&`/`||`.
    CheckBool,
    /// Pop a bool (else error); false: jump.
    IfFalseJump(u32),
    Jump(u32),
    /// Evaluate a subtree with the tree walker (rare constructs).
    Eval(ExprId),
    /// Pop a bool (else error): false ends the program with "not satisfied".
    Require,
}

/// A value a test reads: no step of its own, no stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    Var(Var),
    /// `var.a`
    Attr(Var, StrId),
    /// `var.a.b`
    Path(Var, StrId, StrId),
    Lit(ValueId),
}

/// How a context attribute is compared with an integer literal: `context.a OP n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Less,
    LessEq,
    Greater,
    GreaterEq,
}

/// One conjunct, evaluating to a bool or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    // The commonest shapes of all, read without building values:
    /// `var.a == literal` for an entity variable: its attribute is a pool value, so
    /// equal scalars are one comparison of canonical ids.
    AttrEqLit(Var, StrId, ValueId),
    /// `var.a == other` (ReBAC: `resource.owner == principal`).
    AttrEqVar(Var, StrId, Var),
    /// `var.a == other.b`, both entity variables (`principal.tenant == resource.tenant`).
    AttrEqAttr(Var, StrId, Var, StrId),
    /// `context.a == "literal"`
    CtxEqStr(StrId, StrId),
    /// `context.a OP n`
    CtxLong(StrId, Cmp, i64),
    /// `context.a.contains("literal")`
    CtxContainsStr(StrId, StrId),
    // The common shapes over any operands:
    /// `x in Entity::"literal"`
    In(Operand, EntityIdx),
    Is(Operand, TypeId),
    Has(Operand, StrId),
    Eq(Operand, Operand),
    Less(Operand, Operand),
    LessEq(Operand, Operand),
    /// `x.contains(y)`
    Contains(Operand, Operand),
    /// An operand that must itself be a bool.
    Bool(Operand),
    /// `all[start..end]` all hold, in order: a conjunction that is not split into the
    /// policy's own checks because it is negated (`unless { a && b }`, the commonest
    /// guardrail), whose parts are single-step tests. The first false part ends it, an
    /// error in a part is the conjunction's, as Cedar's `&&` does.
    All {
        start: u32,
        end: u32,
    },
    /// `ops[start..end]`, needing `stack` slots.
    Ops {
        start: u32,
        end: u32,
        stack: u32,
    },
    /// Walked as a tree: too deep for a program's stack.
    Tree(ExprId),
}

/// A conjunct: the policy goes on only if the test is `true` (`false` when negated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub test: Test,
    pub negate: bool,
}

/// Every policy's conditions, and one table of the step programs of the conjuncts that
/// need them: a policy's checks are then one indexed load from its number.
#[derive(Debug, Clone, Default)]
pub struct Programs {
    /// By policy.
    pub checks: Vec<Box<[Check]>>,
    pub ops: Vec<Op>,
    /// The parts of every `Test::All`.
    pub all: Vec<Check>,
}

/// Stack slots available to a program; deeper programs fall back to the tree walker.
pub const STACK: usize = 32;

struct Emitter<'e> {
    exprs: &'e [Expr],
    ops: Vec<Op>,
    depth: usize,
    max: usize,
}

impl Emitter<'_> {
    fn push(&mut self, op: Op, delta: isize) {
        self.ops.push(op);
        self.depth = (self.depth as isize + delta) as usize;
        self.max = self.max.max(self.depth);
    }

    fn here(&self) -> u32 {
        self.ops.len() as u32
    }

    fn patch(&mut self, at: usize, target: u32) {
        self.ops[at] = match self.ops[at] {
            Op::AndJump(_) => Op::AndJump(target),
            Op::OrJump(_) => Op::OrJump(target),
            Op::IfFalseJump(_) => Op::IfFalseJump(target),
            Op::Jump(_) => Op::Jump(target),
            other => other,
        };
    }

    fn emit(&mut self, e: ExprId) {
        match &self.exprs[e as usize] {
            Expr::Lit(v) => self.push(Op::Lit(*v), 1),
            Expr::Var(v) => self.push(Op::Var(*v), 1),
            Expr::VarAttr(v, a) => self.push(Op::VarAttr(*v, *a), 1),
            Expr::VarHas(v, a) => self.push(Op::VarHas(*v, *a), 1),
            Expr::VarIs(v, t) => self.push(Op::VarIs(*v, *t), 1),
            Expr::GetAttr(x, a) => {
                self.emit(*x);
                self.push(Op::GetAttr(*a), 0);
            }
            Expr::HasAttr(x, a) => {
                self.emit(*x);
                self.push(Op::HasAttr(*a), 0);
            }
            Expr::Is(x, t) => {
                self.emit(*x);
                self.push(Op::Is(*t), 0);
            }
            Expr::EqLit(x, v) => {
                self.emit(*x);
                self.push(Op::EqLit(*v), 0);
            }
            Expr::InEntity(x, t) => {
                self.emit(*x);
                self.push(Op::InEntity(*t), 0);
            }
            Expr::Bin(op, l, r) => {
                self.emit(*l);
                self.emit(*r);
                self.push(Op::Bin(*op), -1);
            }
            Expr::Not(x) => {
                self.emit(*x);
                self.push(Op::Not, 0);
            }
            Expr::Neg(x) => {
                self.emit(*x);
                self.push(Op::Neg, 0);
            }
            Expr::IsEmpty(x) => {
                self.emit(*x);
                self.push(Op::IsEmpty, 0);
            }
            Expr::And(l, r) | Expr::Or(l, r) => {
                let is_and = matches!(self.exprs[e as usize], Expr::And(..));
                self.emit(*l);
                let at = self.ops.len();
                // Either the left value stays (jump) or it is dropped and the right
                // operand takes its slot.
                self.push(
                    if is_and {
                        Op::AndJump(0)
                    } else {
                        Op::OrJump(0)
                    },
                    -1,
                );
                self.emit(*r);
                self.push(Op::CheckBool, 0);
                let end = self.here();
                self.patch(at, end);
            }
            Expr::If(c, t, f) => {
                self.emit(*c);
                let at_else = self.ops.len();
                self.push(Op::IfFalseJump(0), -1);
                self.emit(*t);
                let at_end = self.ops.len();
                self.push(Op::Jump(0), -1);
                let else_start = self.here();
                self.patch(at_else, else_start);
                self.emit(*f);
                let end = self.here();
                self.patch(at_end, end);
            }
            Expr::Like(..) | Expr::Set(_) | Expr::Record(_) => self.push(Op::Eval(e), 1),
        }
    }
}

/// Splits `e` (negated if `negate`) into the conjuncts it requires, in evaluation order.
/// `a && b` requires `a` then `b`: an error or non-bool in `a` is the conjunction's, a
/// false `a` ends it before `b`, and a non-bool `b` is an error either way. Negated,
/// `!(a || b)` is `!a` then `!b` on the same reasoning, and `!x` flips the sign (a
/// non-bool `x` errors either way).
fn conjuncts(exprs: &[Expr], e: ExprId, negate: bool, out: &mut Vec<(ExprId, bool)>) {
    match exprs[e as usize] {
        Expr::And(l, r) if !negate => {
            conjuncts(exprs, l, false, out);
            conjuncts(exprs, r, false, out);
        }
        Expr::Or(l, r) if negate => {
            conjuncts(exprs, l, true, out);
            conjuncts(exprs, r, true, out);
        }
        Expr::Not(x) => conjuncts(exprs, x, !negate, out),
        _ => out.push((e, negate)),
    }
}

fn operand(exprs: &[Expr], e: ExprId) -> Option<Operand> {
    Some(match exprs[e as usize] {
        Expr::Var(v) => Operand::Var(v),
        Expr::VarAttr(v, a) => Operand::Attr(v, a),
        Expr::GetAttr(x, b) => match exprs[x as usize] {
            Expr::VarAttr(v, a) => Operand::Path(v, a, b),
            _ => return None,
        },
        Expr::Lit(v) => Operand::Lit(v),
        _ => return None,
    })
}

/// `test` narrowed to a form that reads no `Val`, where one applies.
fn special(d: &BundleData, t: Test) -> Test {
    let lit = |v: ValueId| &d.values[v as usize];
    let long = |v: ValueId| match lit(v) {
        ConstValue::Long(n) => Some(*n),
        _ => None,
    };
    let entity = |v: Var| v != Var::Context;
    match t {
        Test::Eq(Operand::Attr(v, a), Operand::Lit(l))
        | Test::Eq(Operand::Lit(l), Operand::Attr(v, a)) => match lit(l) {
            ConstValue::Str(s) if v == Var::Context => Test::CtxEqStr(a, *s),
            _ if entity(v) => Test::AttrEqLit(v, a, l),
            _ => t,
        },
        Test::Eq(Operand::Attr(v, a), Operand::Var(w))
        | Test::Eq(Operand::Var(w), Operand::Attr(v, a))
            if entity(v) && entity(w) =>
        {
            Test::AttrEqVar(v, a, w)
        }
        Test::Eq(Operand::Attr(v, a), Operand::Attr(w, b)) if entity(v) && entity(w) => {
            Test::AttrEqAttr(v, a, w, b)
        }
        Test::Less(Operand::Attr(Var::Context, a), Operand::Lit(l)) => {
            long(l).map_or(t, |n| Test::CtxLong(a, Cmp::Less, n))
        }
        Test::LessEq(Operand::Attr(Var::Context, a), Operand::Lit(l)) => {
            long(l).map_or(t, |n| Test::CtxLong(a, Cmp::LessEq, n))
        }
        Test::Less(Operand::Lit(l), Operand::Attr(Var::Context, a)) => {
            long(l).map_or(t, |n| Test::CtxLong(a, Cmp::Greater, n))
        }
        Test::LessEq(Operand::Lit(l), Operand::Attr(Var::Context, a)) => {
            long(l).map_or(t, |n| Test::CtxLong(a, Cmp::GreaterEq, n))
        }
        Test::Contains(Operand::Attr(Var::Context, a), Operand::Lit(l)) => match lit(l) {
            ConstValue::Str(s) => Test::CtxContainsStr(a, *s),
            _ => t,
        },
        _ => t,
    }
}

/// The single-step test for `e`, if it has one of the common shapes.
fn test(exprs: &[Expr], e: ExprId) -> Option<Test> {
    let op = |x: ExprId| operand(exprs, x);
    Some(match exprs[e as usize] {
        Expr::InEntity(x, t) => Test::In(op(x)?, t),
        Expr::VarIs(v, t) => Test::Is(Operand::Var(v), t),
        Expr::Is(x, t) => Test::Is(op(x)?, t),
        Expr::VarHas(v, a) => Test::Has(Operand::Var(v), a),
        Expr::HasAttr(x, a) => Test::Has(op(x)?, a),
        Expr::EqLit(x, v) => Test::Eq(op(x)?, Operand::Lit(v)),
        Expr::Bin(BinOp::Eq, x, y) => Test::Eq(op(x)?, op(y)?),
        Expr::Bin(BinOp::Less, x, y) => Test::Less(op(x)?, op(y)?),
        Expr::Bin(BinOp::LessEq, x, y) => Test::LessEq(op(x)?, op(y)?),
        Expr::Bin(BinOp::Contains, x, y) => Test::Contains(op(x)?, op(y)?),
        _ => Test::Bool(op(e)?),
    })
}

/// Compiles every policy's conditions.
pub fn compile(d: &BundleData) -> Programs {
    let mut progs = Programs::default();
    for p in &d.policies {
        let checks = compile_policy(d, p, &mut progs.ops, &mut progs.all);
        progs.checks.push(checks.into());
    }
    progs
}

/// `e`, a conjunction, as a `Test::All` of single-step parts appended to `all`; `None`
/// when it is not a conjunction or a part needs a program.
fn all_of(d: &BundleData, e: ExprId, all: &mut Vec<Check>) -> Option<Test> {
    let exprs = &d.exprs[..];
    if !matches!(exprs[e as usize], Expr::And(..)) {
        return None;
    }
    let mut parts = Vec::new();
    conjuncts(exprs, e, false, &mut parts);
    let checks = parts
        .into_iter()
        .map(|(p, negate)| {
            test(exprs, p).map(|t| Check {
                test: special(d, t),
                negate,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let start = all.len() as u32;
    all.extend(checks);
    Some(Test::All {
        start,
        end: all.len() as u32,
    })
}

/// Compiles a policy's conditions, its programs onto the end of `ops` and the parts of
/// its negated conjunctions onto the end of `all`.
fn compile_policy(
    d: &BundleData,
    p: &PolicyData,
    ops: &mut Vec<Op>,
    all: &mut Vec<Check>,
) -> Vec<Check> {
    let exprs = &d.exprs[..];
    let mut parts = Vec::new();
    for &c in &p.conditions {
        conjuncts(exprs, c, false, &mut parts);
    }
    let mut checks = Vec::new();
    for (e, negate) in parts {
        let single = test(exprs, e).map(|t| special(d, t));
        // A conjunction reaches here only negated: `conjuncts` splits the others.
        let test = single.or_else(|| all_of(d, e, all)).unwrap_or_else(|| {
            let mut em = Emitter {
                exprs,
                ops: Vec::new(),
                depth: 0,
                max: 0,
            };
            em.emit(e);
            em.push(Op::Require, -1);
            if em.max > STACK {
                return Test::Tree(e);
            }
            let start = ops.len() as u32;
            ops.extend(em.ops);
            Test::Ops {
                start,
                end: ops.len() as u32,
                stack: em.max as u32,
            }
        });
        checks.push(Check { test, negate });
    }
    checks
}
