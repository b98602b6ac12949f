//! Run params: the caller's JSON object checked against `params:` declarations.

use crate::model::Opening;

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
        todo!("helper: to_json")
    }
}

/// Binds `given` (a JSON object) to the opening's declarations.
pub fn bind(opening: &Opening, given: &serde_json::Value) -> Result<BoundParams, ParamError> {
    let _ = (opening, given);
    todo!("helper: bind")
}
