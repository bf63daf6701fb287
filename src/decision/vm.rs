//! Policy conditions as straight-line programs for a small stack machine, built from the
//! expression tree when a bundle is loaded. Walking the tree costs a recursive call, a
//! large stack frame and a `Result` per node; a program costs one dispatch per step, with
//! `&&`, `||` and `if` as jumps. Anything uncommon (set and record literals, `like`)
//! stays a single step that evaluates its subtree with the tree walker, so both paths
//! share one definition of every operator.

use super::ir::{BinOp, EntityIdx, Expr, ExprId, PolicyData, StrId, TypeId, ValueId, Var};

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

/// A policy's conditions as one program, and the deepest stack it needs.
#[derive(Debug, Clone, Default)]
pub struct Program {
    pub ops: Vec<Op>,
    pub max_stack: usize,
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

/// Compiles a policy's conditions; `None` when it needs more stack than `STACK`.
pub fn compile(exprs: &[Expr], p: &PolicyData) -> Option<Program> {
    let mut em = Emitter {
        exprs,
        ops: Vec::new(),
        depth: 0,
        max: 0,
    };
    for &c in &p.conditions {
        em.emit(c);
        em.push(Op::Require, -1);
    }
    (em.max <= STACK).then_some(Program {
        ops: em.ops,
        max_stack: em.max,
    })
}
