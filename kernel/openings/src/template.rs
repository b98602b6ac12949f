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
        let _ = params;
        todo!("helper: render")
    }
}
