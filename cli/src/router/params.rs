//! From a prompt to an opening's params: the model's JSON answer checked against the
//! declarations, else the opening's goal templates read backwards (`email {{params.recipient}}
//! about {{params.topic}}` over `email Maria about the launch`). Pure; the broker call that
//! produces the answer lives in `crate::route`.

use runloop_openings::Opening;
use runloop_openings::model::ParamType;
use runloop_openings::template::{Piece, Template};
use serde_json::{Map, Value};

/// Longest model answer read for params, in bytes.
pub const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// How the params were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// The broker's model answered a JSON object that binds.
    Model,
    /// Goal template number `n` (0-based) matched the prompt.
    Goal(usize),
    /// The opening declares no params.
    NoParams,
}

/// A goal as an example sentence for people: `email <recipient> about <topic>`.
pub fn goal_example(goal: &Template) -> String {
    match goal {
        Template::Text(pieces) => pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Param(name) => format!("<{name}>"),
            })
            .collect(),
        Template::Whole(name) => format!("<{name}>"),
        Template::Literal(rmpv::Value::String(s)) => s.as_str().unwrap_or_default().to_owned(),
        _ => String::from("(a goal that is not text)"),
    }
}

/// The system message asking a model for the params of `opening` as JSON.
pub fn instruction(opening: &Opening) -> String {
    let mut text = format!(
        "Turn the user's request into the parameters of the opening \"{}\"",
        opening.name
    );
    if let Some(d) = &opening.description {
        text.push_str(&format!(" ({d})"));
    }
    text.push_str(". Parameters:\n");
    for p in &opening.params {
        let ty = runloop_openings::params::type_name(p.ty);
        let need = if p.required { "required" } else { "optional" };
        text.push_str(&format!("- {} ({ty}, {need})", p.name));
        if let Some(d) = &p.description {
            text.push_str(&format!(": {d}"));
        }
        text.push('\n');
    }
    text.push_str(
        "Answer with one JSON object and nothing else. Leave out parameters the request does \
         not give.",
    );
    text
}

/// The params in a model's answer: the first `{` to the last `}` as a JSON object, only
/// declared names, no nulls, and binding (types, required params) must succeed.
pub fn from_answer(answer: &str, opening: &Opening) -> Option<Value> {
    if answer.len() > ANSWER_BYTES_MAX {
        return None;
    }
    let start = answer.find('{')?;
    let end = answer.rfind('}')?;
    if end < start {
        return None;
    }
    let Value::Object(given) = serde_json::from_str::<Value>(&answer[start..=end]).ok()? else {
        return None;
    };
    let kept: Map<String, Value> = given
        .into_iter()
        .filter(|(k, v)| !v.is_null() && opening.params.iter().any(|p| &p.name == k))
        .collect();
    if kept.is_empty() {
        return None;
    }
    let params = Value::Object(kept);
    runloop_openings::params::bind(opening, &params).ok()?;
    Some(params)
}

/// The params read from the first goal template that matches `prompt` (and binds).
pub fn from_goals(prompt: &str, opening: &Opening) -> Option<(usize, Value)> {
    let prompt = prompt
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches(['.', '!'])
        .to_owned();
    opening.goals.iter().enumerate().find_map(|(i, goal)| {
        let Template::Text(pieces) = goal else {
            return None;
        };
        let captured = match_pieces(pieces, &prompt)?;
        let mut map = Map::new();
        for (name, text) in captured {
            let decl = opening.params.iter().find(|p| p.name == name)?;
            map.insert(name, typed(decl.ty, text)?);
        }
        let params = Value::Object(map);
        runloop_openings::params::bind(opening, &params).ok()?;
        Some((i, params))
    })
}

/// A captured text as the param's type: strings as they are, others parsed as JSON.
fn typed(ty: ParamType, text: String) -> Option<Value> {
    match ty {
        ParamType::String => Some(Value::String(text)),
        _ => serde_json::from_str(&text).ok(),
    }
}

/// Matches text pieces as words (any case) and captures what lies between them. A leading
/// literal may come after other words (`please email …`); a trailing one must end the
/// prompt; two params with nothing between them are ambiguous (no match).
fn match_pieces(pieces: &[Piece], prompt: &str) -> Option<Vec<(String, String)>> {
    let lower = prompt.to_ascii_lowercase();
    let mut pos = 0;
    let mut open: Option<(String, usize)> = None;
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Param(name) => {
                if open.is_some() {
                    return None;
                }
                open = Some((name.clone(), pos));
            }
            Piece::Text(text) => {
                let literal = text.trim().to_ascii_lowercase();
                if literal.is_empty() {
                    continue;
                }
                let at = find_word(&lower, &literal, pos + usize::from(open.is_some()))?;
                if let Some((name, from)) = open.take() {
                    let captured = prompt[from..at].trim();
                    if captured.is_empty() {
                        return None;
                    }
                    out.push((name, captured.to_owned()));
                }
                pos = at + literal.len();
            }
        }
    }
    match open {
        Some((name, from)) => {
            let captured = prompt[from..].trim();
            if captured.is_empty() {
                return None;
            }
            out.push((name, captured.to_owned()));
        }
        None if pos < prompt.len() && !prompt[pos..].trim().is_empty() => {
            // Words after the template's last literal: not this goal.
            return None;
        }
        None => {}
    }
    Some(out)
}

/// The first occurrence of `needle` at or after `from` with a word boundary (start, end or
/// a space) on both sides.
fn find_word(hay: &str, needle: &str, from: usize) -> Option<usize> {
    let mut start = from.min(hay.len());
    while let Some(found) = hay.get(start..)?.find(needle) {
        let at = start + found;
        let end = at + needle.len();
        let before = at == 0 || hay.as_bytes()[at - 1] == b' ';
        let after = end == hay.len() || hay.as_bytes()[end] == b' ';
        if before && after {
            return Some(at);
        }
        start = at + 1;
        while !hay.is_char_boundary(start) {
            start += 1;
        }
    }
    None
}
