//! Reading one key of the merged config tree: its value at a dotted path, the layer it
//! came from, and the typed readers (text, true/false, a bounded count) whose errors name
//! the key path and the layer.

use std::collections::BTreeMap;

use serde_norway::Value;

use super::{ConfigError, Source};

/// The value at a dotted key path, if set.
pub(super) fn leaf<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(tree, |value, key| value.get(key))
}

/// The layer a key came from, for messages.
pub(super) fn origin_of(sources: &BTreeMap<String, Source>, path: &str) -> String {
    sources
        .get(path)
        .map_or_else(|| Source::Default.to_string(), Source::to_string)
}

/// A value as a message shows it.
pub(super) fn shown(value: &Value) -> String {
    match value {
        Value::Null => "an empty value".into(),
        Value::String(text) if text.is_empty() => "an empty string".into(),
        other => {
            let text = serde_norway::to_string(other).unwrap_or_default();
            format!("`{}`", text.trim())
        }
    }
}

/// A text key; unset or empty (`key:`) is `None`.
pub(super) fn text(
    tree: &Value,
    sources: &BTreeMap<String, Source>,
    path: &'static str,
) -> Result<Option<String>, ConfigError> {
    match leaf(tree, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(ConfigError::BadValue {
            path,
            origin: origin_of(sources, path),
            want: "text".into(),
            problem: format!("got {}", shown(other)),
        }),
    }
}

/// A whole number from 0 to `max`; unset or empty is `None`.
pub(super) fn count(
    tree: &Value,
    sources: &BTreeMap<String, Source>,
    path: &'static str,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    match leaf(tree, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= max) => Ok(n.as_u64()),
        Some(other) => Err(ConfigError::BadValue {
            path,
            origin: origin_of(sources, path),
            want: format!("a whole number from 0 to {max}"),
            problem: format!("got {}", shown(other)),
        }),
    }
}

/// A `true`/`false` key; unset or empty is `None`.
pub(super) fn boolean(
    tree: &Value,
    sources: &BTreeMap<String, Source>,
    path: &'static str,
) -> Result<Option<bool>, ConfigError> {
    match leaf(tree, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(other) => Err(ConfigError::BadValue {
            path,
            origin: origin_of(sources, path),
            want: "true or false".into(),
            problem: format!("got {}", shown(other)),
        }),
    }
}
