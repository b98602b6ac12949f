//! One YAML document as a small tree whose every node keeps its 1-based `line:col`, built
//! from saphyr-parser's events (its own loader keeps no position on keys and lets a
//! duplicate key silently win).
//!
//! Scalars resolve by the YAML 1.2 core schema (plain `null`/`~`/empty, `true`/`false`,
//! decimal, `0x` and `0o` integers, floats with `.inf`/`.nan`); quoted and block scalars
//! are strings. Refused here, as one syntax error each: duplicate keys, collection keys,
//! aliases (an opening has no use for them, and expanding them is how a small file becomes
//! a huge tree), tags, more than one document, and nesting deeper than [`DEPTH_MAX`].

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deepest nesting of sequences and maps; keeps every walk over the tree shallow.
pub(crate) const DEPTH_MAX: usize = 64;

/// A 1-based position in the source (`col` counts characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    fn of(span: &Span) -> Pos {
        let line = u32::try_from(span.start.line()).unwrap_or(u32::MAX);
        let col = u32::try_from(span.start.col().saturating_add(1)).unwrap_or(u32::MAX);
        Pos { line, col }
    }
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(rmpv::Integer),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys unique, in source order.
    Map(Vec<Entry>),
}

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
    /// A scalar's text as written (for messages); empty for collections.
    pub raw: String,
}

/// One `key: value` of a map.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// Why the source is not a YAML document this crate accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    /// The YAML type's name, for "expected X, got Y" messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "sequence",
            Value::Map(_) => "mapping",
        }
    }

    /// The entries when this is a map.
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The string when this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// As a MsgPack value (maps keep source order, keys are strings).
    pub fn to_msgpack(&self) -> rmpv::Value {
        match &self.value {
            Value::Null => rmpv::Value::Nil,
            Value::Bool(b) => rmpv::Value::Boolean(*b),
            Value::Int(i) => rmpv::Value::Integer(*i),
            Value::Float(f) => rmpv::Value::F64(*f),
            Value::Str(s) => rmpv::Value::from(s.as_str()),
            Value::Seq(items) => rmpv::Value::Array(items.iter().map(Node::to_msgpack).collect()),
            Value::Map(entries) => rmpv::Value::Map(
                entries
                    .iter()
                    .map(|e| (rmpv::Value::from(e.key.as_str()), e.value.to_msgpack()))
                    .collect(),
            ),
        }
    }
}

/// The entry for `key` in a map's entries.
pub(crate) fn get<'m>(entries: &'m [Entry], key: &str) -> Option<&'m Entry> {
    entries.iter().find(|e| e.key == key)
}

/// A collection being built.
enum Frame {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<Entry>, Option<(String, Pos)>),
}

/// Parses one document. `Ok(None)` for a stream with no document (or an empty one).
pub(crate) fn parse(source: &str) -> Result<Option<Node>, YamlError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0_u32;
    for item in Parser::new_from_str(source) {
        let (event, span) = item.map_err(|e| YamlError {
            pos: Pos {
                line: u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
                col: u32::try_from(e.marker().col().saturating_add(1)).unwrap_or(u32::MAX),
            },
            message: format!("yaml: {}", e.info()),
        })?;
        let pos = Pos::of(&span);
        let fail = |message: &str| YamlError {
            pos,
            message: message.to_owned(),
        };
        let done = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(fail("more than one yaml document; one opening per file"));
                }
                continue;
            }
            Event::Alias(_) => return Err(fail("yaml aliases are not supported")),
            Event::Scalar(_, _, _, Some(_))
            | Event::SequenceStart(_, Some(_))
            | Event::MappingStart(_, Some(_)) => {
                return Err(fail("yaml tags are not supported"));
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if stack.len() >= DEPTH_MAX => {
                return Err(fail(&format!("nesting deeper than {DEPTH_MAX} levels")));
            }
            Event::SequenceStart(..) => {
                stack.push(Frame::Seq(pos, Vec::new()));
                continue;
            }
            Event::MappingStart(..) => {
                stack.push(Frame::Map(pos, Vec::new(), None));
                continue;
            }
            Event::Scalar(text, style, _, None) => scalar(&text, style, pos)?,
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(pos, items)) => collection(pos, Value::Seq(items)),
                _ => return Err(fail("yaml: unbalanced sequence")),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(pos, entries, None)) => collection(pos, Value::Map(entries)),
                _ => return Err(fail("yaml: unbalanced mapping")),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {
                continue;
            }
        };
        attach(&mut stack, &mut root, done)?;
    }
    Ok(root)
}

fn collection(pos: Pos, value: Value) -> Node {
    Node {
        pos,
        value,
        raw: String::new(),
    }
}

/// Hands a finished node to its parent (or makes it the root).
fn attach(stack: &mut [Frame], root: &mut Option<Node>, node: Node) -> Result<(), YamlError> {
    match stack.last_mut() {
        None => *root = Some(node),
        Some(Frame::Seq(_, items)) => items.push(node),
        Some(Frame::Map(_, entries, pending)) => match pending.take() {
            Some((key, key_pos)) => entries.push(Entry {
                key,
                key_pos,
                value: node,
            }),
            None => {
                if matches!(node.value, Value::Seq(_) | Value::Map(_)) {
                    return Err(YamlError {
                        pos: node.pos,
                        message: "mapping keys must be scalars".into(),
                    });
                }
                if entries.iter().any(|e| e.key == node.raw) {
                    return Err(YamlError {
                        pos: node.pos,
                        message: format!("duplicate key {}", node.raw),
                    });
                }
                *pending = Some((node.raw, node.pos));
            }
        },
    }
    Ok(())
}

fn scalar(text: &str, style: ScalarStyle, pos: Pos) -> Result<Node, YamlError> {
    let value = if style == ScalarStyle::Plain {
        resolve_plain(text).ok_or_else(|| YamlError {
            pos,
            message: format!("integer {text} out of range"),
        })?
    } else {
        Value::Str(text.to_owned())
    };
    Ok(Node {
        pos,
        value,
        raw: text.to_owned(),
    })
}

/// The core schema's reading of a plain scalar; `None` for an integer out of range.
pub(crate) fn resolve_plain(text: &str) -> Option<Value> {
    Some(match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Value::Float(f64::NAN),
        _ => {
            if let Some(hex) = text.strip_prefix("0x") {
                return int_radix(hex, 16, text);
            }
            if let Some(oct) = text.strip_prefix("0o") {
                return int_radix(oct, 8, text);
            }
            let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return decimal(text).map(Value::Int);
            }
            match is_float(text).then(|| text.parse::<f64>()) {
                Some(Ok(f)) => Value::Float(f),
                _ => Value::Str(text.to_owned()),
            }
        }
    })
}

fn int_radix(digits: &str, radix: u32, text: &str) -> Option<Value> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Some(Value::Str(text.to_owned()));
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .map(|u| Value::Int(u.into()))
}

fn decimal(text: &str) -> Option<rmpv::Integer> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(i.into());
    }
    text.strip_prefix('+')
        .unwrap_or(text)
        .parse::<u64>()
        .ok()
        .map(Into::into)
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int)
        && frac.is_none_or(digits)
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_for_keys_and_values() {
        let root = parse("a: 1\nb:\n  - x\n").unwrap().unwrap();
        let map = root.as_map().unwrap();
        assert_eq!(map[0].key_pos, Pos { line: 1, col: 1 });
        assert_eq!(map[0].value.pos, Pos { line: 1, col: 4 });
        let Value::Seq(items) = &map[1].value.value else {
            panic!("sequence")
        };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
    }

    #[test]
    fn core_schema_scalars() {
        let cases: &[(&str, Value)] = &[
            ("~", Value::Null),
            ("True", Value::Bool(true)),
            ("-12", Value::Int((-12_i64).into())),
            ("0x1f", Value::Int(31_u64.into())),
            ("18446744073709551615", Value::Int(u64::MAX.into())),
            ("1.5", Value::Float(1.5)),
            ("1e3", Value::Float(1000.0)),
            (".5", Value::Float(0.5)),
            ("1.2.3", Value::Str("1.2.3".into())),
            ("e3", Value::Str("e3".into())),
            ("0xzz", Value::Str("0xzz".into())),
        ];
        for (text, want) in cases {
            assert_eq!(resolve_plain(text).as_ref(), Some(want), "{text}");
        }
        assert_eq!(resolve_plain("99999999999999999999"), None);
    }

    #[test]
    fn refusals() {
        for (src, needle) in [
            ("a: 1\na: 2\n", "duplicate key a"),
            ("a: &x 1\nb: *x\n", "aliases"),
            ("a: !!str 1\n", "tags"),
            ("a: 1\n---\nb: 2\n", "one opening per file"),
            ("? [a]\n: 1\n", "scalars"),
        ] {
            let err = parse(src).unwrap_err();
            assert!(err.message.contains(needle), "{src}: {}", err.message);
        }
        let deep = "[".repeat(DEPTH_MAX + 1) + &"]".repeat(DEPTH_MAX + 1);
        assert!(parse(&deep).unwrap_err().message.contains("nesting"));
    }
}
