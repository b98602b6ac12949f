//! `{{params.NAME}}` templates in `goals` and `with` strings, and their rendering.

use crate::params::BoundParams;

/// A value tree whose strings may hold `{{params.NAME}}` placeholders (validated: each
/// names a declared param).
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// A value with no placeholder in it (any MsgPack value, maps in source order).
    Literal(rmpv::Value),
    /// A string that is exactly one placeholder: renders to the param's value, type kept.
    Whole(String),
    /// A string with placeholders inside text: renders to a string (strings as they are,
    /// anything else as JSON).
    Text(Vec<Piece>),
    /// An array with templates inside.
    Array(Vec<Template>),
    /// A map with templates inside, keys in source order.
    Map(Vec<(String, Template)>),
}

/// A piece of a [`Template::Text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Param(String),
}

impl Template {
    /// Renders against bound params (every param named exists: validation checked it, and
    /// binding gives each declared param a value or `nil`).
    pub fn render(&self, params: &BoundParams) -> rmpv::Value {
        match self {
            Template::Literal(value) => value.clone(),
            Template::Whole(name) => param(params, name).clone(),
            Template::Text(pieces) => {
                let mut text = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => text.push_str(t),
                        Piece::Param(name) => push_as_text(&mut text, param(params, name)),
                    }
                }
                rmpv::Value::from(text.as_str())
            }
            Template::Array(items) => {
                rmpv::Value::Array(items.iter().map(|t| t.render(params)).collect())
            }
            Template::Map(entries) => rmpv::Value::Map(
                entries
                    .iter()
                    .map(|(k, t)| (rmpv::Value::from(k.as_str()), t.render(params)))
                    .collect(),
            ),
        }
    }
}

fn param<'p>(params: &'p BoundParams, name: &str) -> &'p rmpv::Value {
    // Validation refused templates naming undeclared params, and binding gives every
    // declared param a value: a miss means params bound for another opening.
    params
        .get(name)
        .unwrap_or_else(|| panic!("template names param {name}, which is not bound"))
}

/// Strings as they are, everything else as compact JSON.
fn push_as_text(text: &mut String, value: &rmpv::Value) {
    match value {
        rmpv::Value::String(s) => text.push_str(&String::from_utf8_lossy(s.as_bytes())),
        other => text.push_str(&runloop_proto::json::msgpack_to_json(other).to_string()),
    }
}

/// Splits a string into text and `{{params.NAME}}` pieces. The error names the first
/// `{{…}}` that is not exactly `{{params.NAME}}` (or a `{{` never closed).
pub(crate) fn split(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            return Err(format!(
                "template {:?} is never closed with }}}}",
                &rest[open..]
            ));
        };
        let inner = &rest[open + 2..open + close];
        let name = inner
            .strip_prefix("params.")
            .filter(|n| crate::model::NodeId::new(n).is_some())
            .ok_or_else(|| format!("template {{{{{inner}}}}}: expected {{{{params.NAME}}}}"))?;
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_owned()));
        }
        pieces.push(Piece::Param(name.to_owned()));
        rest = &rest[open + close + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

/// The template for one string: `Literal` without placeholders, `Whole` when the string
/// is exactly one, else `Text`.
pub(crate) fn of_string(s: &str) -> Result<Template, String> {
    let mut pieces = split(s)?;
    Ok(match pieces.as_slice() {
        [Piece::Param(_)] => match pieces.pop() {
            Some(Piece::Param(name)) => Template::Whole(name),
            _ => unreachable!("matched one param piece"),
        },
        _ if pieces.iter().all(|p| matches!(p, Piece::Text(_))) => {
            Template::Literal(rmpv::Value::from(s))
        }
        _ => Template::Text(pieces),
    })
}

/// The params a template names, in order (with repeats).
pub(crate) fn params_named(template: &Template, out: &mut Vec<String>) {
    match template {
        Template::Literal(_) => {}
        Template::Whole(name) => out.push(name.clone()),
        Template::Text(pieces) => out.extend(pieces.iter().filter_map(|p| match p {
            Piece::Param(name) => Some(name.clone()),
            Piece::Text(_) => None,
        })),
        Template::Array(items) => items.iter().for_each(|t| params_named(t, out)),
        Template::Map(entries) => entries.iter().for_each(|(_, t)| params_named(t, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_strings() {
        assert_eq!(of_string("plain"), Ok(Template::Literal("plain".into())));
        assert_eq!(of_string("{{params.a}}"), Ok(Template::Whole("a".into())));
        assert_eq!(
            of_string("x {{params.a}}{{params.b}} y"),
            Ok(Template::Text(vec![
                Piece::Text("x ".into()),
                Piece::Param("a".into()),
                Piece::Param("b".into()),
                Piece::Text(" y".into()),
            ]))
        );
        for bad in [
            "{{ params.a }}",
            "{{env.x}}",
            "{{params.A}}",
            "a {{params.a",
            "{{}}",
        ] {
            assert!(of_string(bad).is_err(), "{bad}");
        }
    }
}
