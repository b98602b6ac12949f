//! Guards and success predicates: `<node>.<port>[.<field>…] <op> <literal>` and
//! `exists(<node>.<port>[.<field>…])`, evaluated over nodes' outputs.

/// `<node>.<port>[.<field>…]`, resolved: `node` is an index into the opening's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub node: usize,
    pub port: String,
    pub fields: Vec<String>,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A guard on an edge: the value at the edge's `from` path compared with a literal.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    pub op: Op,
    pub literal: rmpv::Value,
}

/// A success predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    Compare {
        path: Path,
        op: Op,
        literal: rmpv::Value,
    },
    Exists(Path),
}

/// Compares per the spec: numbers numerically, strings by bytes, values of different
/// types never equal (`!=` true, ordering false).
pub fn compare(value: &rmpv::Value, op: Op, literal: &rmpv::Value) -> bool {
    let _ = (value, op, literal);
    todo!("helper: compare")
}

/// The value at `fields` inside a port's payload (`None` when a field is missing or the
/// value is not a map).
pub fn lookup<'v>(payload: &'v rmpv::Value, fields: &[String]) -> Option<&'v rmpv::Value> {
    let _ = (payload, fields);
    todo!("helper: lookup")
}
