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

impl Op {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares per the spec: numbers numerically, strings by bytes, values of different
/// types never equal (`!=` true, ordering false). Booleans and `nil` only answer `==` and
/// `!=` (ordering is false); so do arrays, maps, binaries and extensions, equal when
/// structurally equal. A NaN is unordered: only `!=` holds for it.
pub fn compare(value: &rmpv::Value, op: Op, literal: &rmpv::Value) -> bool {
    use rmpv::Value as V;
    let ordering = match (value, literal) {
        (V::Integer(_) | V::F32(_) | V::F64(_), V::Integer(_) | V::F32(_) | V::F64(_)) => {
            compare_numbers(value, literal)
        }
        (V::String(a), V::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (V::Boolean(_), V::Boolean(_))
        | (V::Nil, V::Nil)
        | (V::Array(_), V::Array(_))
        | (V::Map(_), V::Map(_))
        | (V::Binary(_), V::Binary(_))
        | (V::Ext(..), V::Ext(..)) => {
            return match op {
                Op::Eq => value == literal,
                Op::Ne => value != literal,
                _ => false,
            };
        }
        _ => return op == Op::Ne,
    };
    let Some(ordering) = ordering else {
        return op == Op::Ne;
    };
    match op {
        Op::Eq => ordering.is_eq(),
        Op::Ne => ordering.is_ne(),
        Op::Lt => ordering.is_lt(),
        Op::Le => ordering.is_le(),
        Op::Gt => ordering.is_gt(),
        Op::Ge => ordering.is_ge(),
    }
}

/// Two numbers' order: integers exactly (an `i64` and a `u64` included), anything with a
/// float as `f64`; `None` when a NaN is involved.
fn compare_numbers(a: &rmpv::Value, b: &rmpv::Value) -> Option<std::cmp::Ordering> {
    use rmpv::Value as V;
    let as_i128 = |v: &V| match v {
        V::Integer(i) => i
            .as_i64()
            .map(i128::from)
            .or_else(|| i.as_u64().map(i128::from)),
        _ => None,
    };
    if let (Some(x), Some(y)) = (as_i128(a), as_i128(b)) {
        return Some(x.cmp(&y));
    }
    let as_f64 = |v: &V| match v {
        V::Integer(i) => i.as_f64(),
        V::F32(f) => Some(f64::from(*f)),
        V::F64(f) => Some(*f),
        _ => None,
    };
    as_f64(a)?.partial_cmp(&as_f64(b)?)
}

/// The value at `fields` inside a port's payload (`None` when a field is missing or the
/// value is not a map). Map keys match as strings.
pub fn lookup<'v>(payload: &'v rmpv::Value, fields: &[String]) -> Option<&'v rmpv::Value> {
    let mut at = payload;
    for field in fields {
        let rmpv::Value::Map(entries) = at else {
            return None;
        };
        at = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(field.as_str()))
            .map(|(_, v)| v)?;
    }
    Some(at)
}

/// A path as written, before its node name is resolved to an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawPath {
    pub node: String,
    pub port: String,
    pub fields: Vec<String>,
}

/// A parsed `<path> [<op> <literal>]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawExpr {
    pub path: RawPath,
    pub compare: Option<(Op, rmpv::Value)>,
}

/// Why an expression does not parse: a path problem or a guard (operator/literal) one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExprError {
    Path(String),
    Guard(String),
}

/// Parses `<node>.<port>[.<field>…]` where each name is `[A-Za-z0-9_-]+`.
pub(crate) fn parse_path(text: &str) -> Result<RawPath, String> {
    let text = text.trim();
    let bad = || format!("{text:?}: expected <node>.<port>[.<field>…]");
    let mut parts = text.split('.');
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let node = parts.next().filter(|s| name_ok(s)).ok_or_else(bad)?;
    let port = parts.next().filter(|s| name_ok(s)).ok_or_else(bad)?;
    let fields: Vec<String> = parts.map(str::to_owned).collect();
    if !fields.iter().all(|f| name_ok(f)) {
        return Err(bad());
    }
    Ok(RawPath {
        node: node.to_owned(),
        port: port.to_owned(),
        fields,
    })
}

/// Parses `<path>` or `<path> <op> <literal>`.
pub(crate) fn parse_expr(text: &str) -> Result<RawExpr, ExprError> {
    let Some(at) = text.find(['=', '!', '<', '>']) else {
        let path = parse_path(text).map_err(ExprError::Path)?;
        return Ok(RawExpr {
            path,
            compare: None,
        });
    };
    let path = parse_path(&text[..at]).map_err(ExprError::Path)?;
    let rest = &text[at..];
    let (op, len) = match rest.as_bytes() {
        [b'=', b'=', ..] => (Op::Eq, 2),
        [b'!', b'=', ..] => (Op::Ne, 2),
        [b'<', b'=', ..] => (Op::Le, 2),
        [b'>', b'=', ..] => (Op::Ge, 2),
        [b'<', ..] => (Op::Lt, 1),
        [b'>', ..] => (Op::Gt, 1),
        _ => {
            return Err(ExprError::Guard(format!(
                "{text:?}: unknown operator; expected one of == != < <= > >="
            )));
        }
    };
    let literal = parse_literal(&rest[len..]).map_err(ExprError::Guard)?;
    Ok(RawExpr {
        path,
        compare: Some((op, literal)),
    })
}

/// A YAML/JSON scalar literal: `true`, `false`, `null`, a number, or a quoted string
/// (`"…"` with JSON escapes, `'…'` with `''` for a quote).
pub(crate) fn parse_literal(text: &str) -> Result<rmpv::Value, String> {
    let text = text.trim();
    let bad =
        || format!("literal {text:?}: expected true, false, null, a number or a quoted string");
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text)
            .map(|s| rmpv::Value::from(s.as_str()))
            .map_err(|_| bad());
    }
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        if inner.replace("''", "").contains('\'') {
            return Err(bad());
        }
        return Ok(rmpv::Value::from(inner.replace("''", "'").as_str()));
    }
    match crate::yaml::resolve_plain(text) {
        Some(crate::yaml::Value::Str(_)) | None => Err(bad()),
        Some(crate::yaml::Value::Null) if text.is_empty() => Err(bad()),
        Some(crate::yaml::Value::Null) => Ok(rmpv::Value::Nil),
        Some(crate::yaml::Value::Bool(b)) => Ok(rmpv::Value::Boolean(b)),
        Some(crate::yaml::Value::Int(i)) => Ok(rmpv::Value::Integer(i)),
        Some(crate::yaml::Value::Float(f)) => Ok(rmpv::Value::F64(f)),
        Some(_) => Err(bad()),
    }
}

/// A path as text, with its node's id: `node.port[.field…]`.
pub(crate) fn path_text(node_id: &str, path: &Path) -> String {
    let mut text = format!("{node_id}.{}", path.port);
    for field in &path.fields {
        text.push('.');
        text.push_str(field);
    }
    text
}

/// A literal as text: compact JSON (strings quoted).
pub(crate) fn literal_text(literal: &rmpv::Value) -> String {
    runloop_proto::json::msgpack_to_json(literal).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_guards_and_literals() {
        let e = parse_expr("review.ok == true").unwrap();
        assert_eq!(e.path.node, "review");
        assert_eq!(e.compare, Some((Op::Eq, rmpv::Value::Boolean(true))));
        let e = parse_expr("a.b.c.d>=-1.5").unwrap();
        assert_eq!(e.path.fields, vec!["c", "d"]);
        assert_eq!(e.compare, Some((Op::Ge, rmpv::Value::F64(-1.5))));
        let e = parse_expr("a.b != 'it''s'").unwrap();
        assert_eq!(e.compare, Some((Op::Ne, rmpv::Value::from("it's"))));
        let e = parse_expr(r#"a.b == "x\"y""#).unwrap();
        assert_eq!(e.compare, Some((Op::Eq, rmpv::Value::from("x\"y"))));
        assert_eq!(
            parse_expr("a.b == null").unwrap().compare.unwrap().1,
            rmpv::Value::Nil
        );
        assert!(matches!(parse_expr("a.b = 1"), Err(ExprError::Guard(_))));
        assert!(matches!(parse_expr("a.b == yes"), Err(ExprError::Guard(_))));
        assert!(matches!(parse_expr("a.b =="), Err(ExprError::Guard(_))));
        assert!(matches!(parse_expr("a == 1"), Err(ExprError::Path(_))));
        assert!(matches!(parse_expr("a..b"), Err(ExprError::Path(_))));
    }

    #[test]
    fn lookup_walks_maps_only() {
        let v = rmpv::Value::Map(vec![(
            "a".into(),
            rmpv::Value::Map(vec![("b".into(), 1.into())]),
        )]);
        let path = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(lookup(&v, &path(&["a", "b"])), Some(&1.into()));
        assert_eq!(lookup(&v, &path(&[])), Some(&v));
        assert_eq!(lookup(&v, &path(&["a", "c"])), None);
        assert_eq!(lookup(&v, &path(&["a", "b", "c"])), None);
    }
}
