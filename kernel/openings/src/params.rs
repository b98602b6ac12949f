//! Run params: the caller's JSON object checked against `params:` declarations.

use crate::model::{Opening, ParamType};
use serde_json::Value as Json;

/// A param error at run time (exit 2, nothing runs). Each names the param.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("param {0}: required but not given")]
    Missing(String),
    #[error("param {0}: not declared by this opening")]
    Undeclared(String),
    #[error("param {name}: expected {expected}, got {got}")]
    WrongType {
        name: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("params: expected a JSON object")]
    NotAnObject,
    /// A `$`-tagged JSON value (see `runloop_proto::json`) that does not decode.
    #[error("param {name}: {reason}")]
    Malformed { name: String, reason: String },
}

/// Every declared param with its value (given, else default, else `nil` for an optional
/// param without default), in declaration order.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundParams {
    pub values: Vec<(String, rmpv::Value)>,
}

impl BoundParams {
    pub fn get(&self, name: &str) -> Option<&rmpv::Value> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// As a JSON object (for records and `--json`).
    pub fn to_json(&self) -> serde_json::Value {
        Json::Object(
            self.values
                .iter()
                .map(|(name, value)| (name.clone(), runloop_proto::json::msgpack_to_json(value)))
                .collect(),
        )
    }
}

/// Binds `given` (a JSON object) to the opening's declarations. The first error found is
/// returned: undeclared params (in the order given) before declared ones (in declaration
/// order) that are missing or of the wrong type.
pub fn bind(opening: &Opening, given: &serde_json::Value) -> Result<BoundParams, ParamError> {
    let Json::Object(given) = given else {
        return Err(ParamError::NotAnObject);
    };
    if let Some(name) = given
        .keys()
        .find(|k| !opening.params.iter().any(|p| &p.name == *k))
    {
        return Err(ParamError::Undeclared(name.clone()));
    }
    let mut values = Vec::with_capacity(opening.params.len());
    for decl in &opening.params {
        let value = match given.get(&decl.name) {
            Some(json) => convert(&decl.name, decl.ty, json)?,
            None if decl.required => return Err(ParamError::Missing(decl.name.clone())),
            None => decl.default.clone().unwrap_or(rmpv::Value::Nil),
        };
        values.push((decl.name.clone(), value));
    }
    Ok(BoundParams { values })
}

/// Checks one given value's type and converts it (integers stay integers).
fn convert(name: &str, ty: ParamType, json: &Json) -> Result<rmpv::Value, ParamError> {
    let got = json_kind(json);
    let fits = match ty {
        ParamType::String => json.is_string(),
        ParamType::Integer => json.is_i64() || json.is_u64(),
        ParamType::Number => json.is_number(),
        ParamType::Boolean => json.is_boolean(),
        ParamType::Object => json.is_object(),
        ParamType::Array => json.is_array(),
    };
    let wrong = |got| ParamError::WrongType {
        name: name.to_owned(),
        expected: type_name(ty),
        got,
    };
    if !fits {
        return Err(wrong(got));
    }
    let value =
        runloop_proto::json::json_to_msgpack(json, &format!("params.{name}")).map_err(|e| {
            ParamError::Malformed {
                name: name.to_owned(),
                reason: e.to_string(),
            }
        })?;
    // A `$`-tagged object (e.g. `{"$bin": "00"}`) decodes to a non-map value.
    if ty == ParamType::Object && !value.is_map() {
        return Err(wrong("a $-tagged value"));
    }
    Ok(value)
}

/// The name a param type is declared with.
pub fn type_name(ty: ParamType) -> &'static str {
    match ty {
        ParamType::String => "string",
        ParamType::Integer => "integer",
        ParamType::Number => "number",
        ParamType::Boolean => "boolean",
        ParamType::Object => "object",
        ParamType::Array => "array",
    }
}

/// The param type a declaration names, if any.
pub fn parse_type(name: &str) -> Option<ParamType> {
    Some(match name {
        "string" => ParamType::String,
        "integer" => ParamType::Integer,
        "number" => ParamType::Number,
        "boolean" => ParamType::Boolean,
        "object" => ParamType::Object,
        "array" => ParamType::Array,
        _ => return None,
    })
}

/// Whether a MsgPack value has a param type (a `number` may be an integer).
pub fn has_type(value: &rmpv::Value, ty: ParamType) -> bool {
    match ty {
        ParamType::String => value.is_str(),
        ParamType::Integer => value.is_i64() || value.is_u64(),
        ParamType::Number => value.is_number(),
        ParamType::Boolean => value.is_bool(),
        ParamType::Object => value.is_map(),
        ParamType::Array => value.is_array(),
    }
}

fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_f64() => "number",
        Json::Number(_) => "integer",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}
