//! `security:` — the trust roots bundles are checked against, and what capability grants
//! may do.

use std::collections::BTreeMap;

use serde_norway::Value;

use super::read::{leaf, origin_of, shown};
use super::{ConfigError, Source};

/// `security.trust_roots` and `security.allow_unsigned_agents` as the loader's policy.
pub(super) fn trust(
    tree: &Value,
    sources: &BTreeMap<String, Source>,
) -> Result<runloop_bundle::TrustPolicy, ConfigError> {
    use runloop_bundle::{PublicKey, Scope, TrustPolicy, TrustRoot};
    const ROOTS: &str = "security.trust_roots";
    const ALLOW: &str = "security.allow_unsigned_agents";
    let allow = match leaf(tree, ALLOW) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(allow)) => *allow,
        Some(other) => {
            return Err(ConfigError::BadValue {
                path: ALLOW,
                origin: origin_of(sources, ALLOW),
                want: "true or false".into(),
                problem: format!("got {}", shown(other)),
            });
        }
    };
    let bad = |index: usize, problem: String| ConfigError::BadValue {
        path: ROOTS,
        origin: origin_of(sources, ROOTS),
        want: "a list of {key: runloop-ed25519:<hex>, name, scopes: [agent globs]}".into(),
        problem: format!("entry {index}: {problem}"),
    };
    let entries = match leaf(tree, ROOTS) {
        Some(Value::Sequence(entries)) => entries.as_slice(),
        _ => &[],
    };
    let mut roots = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let key = match entry.get("key") {
            Some(Value::String(key)) => {
                PublicKey::parse(key, "key").map_err(|e| bad(index, e.to_string()))?
            }
            _ => return Err(bad(index, "key is missing".into())),
        };
        let name = match entry.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(name.clone()),
            Some(other) => return Err(bad(index, format!("name: got {}", shown(other)))),
        };
        let scopes = match entry.get("scopes") {
            Some(Value::Sequence(scopes)) => scopes
                .iter()
                .map(|s| {
                    s.as_str()
                        .ok_or_else(|| bad(index, format!("scope: got {}", shown(s))))
                        .and_then(|s| Scope::parse(s).map_err(|e| bad(index, e.to_string())))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => Vec::new(),
        };
        roots.push(TrustRoot::new(key, name, scopes).map_err(|e| bad(index, e.to_string()))?);
    }
    TrustPolicy::with_roots(roots, allow).map_err(|e| bad(entries.len(), e.to_string()))
}

/// `security.grants` as the kernel's [`GrantRules`](runloop_bundle::grants::GrantRules):
/// `extend` (op patterns a grant may add beyond a bundle's policy; default
/// [`EXTEND_DEFAULT`](runloop_bundle::grants::EXTEND_DEFAULT)) and `max_ttl` (a duration
/// like `24h`, at most 30 days).
pub(super) fn grants(
    tree: &Value,
    sources: &BTreeMap<String, Source>,
) -> Result<runloop_bundle::grants::GrantRules, ConfigError> {
    use runloop_bundle::grants::{GrantRules, MAX_TTL_MS_LIMIT, parse_duration_ms};
    const EXTEND: &str = "security.grants.extend";
    const MAX_TTL: &str = "security.grants.max_ttl";
    let mut rules = GrantRules::default();
    match leaf(tree, EXTEND) {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(items)) => {
            rules.extend = items
                .iter()
                .map(|item| match item.as_str() {
                    Some(p) if !p.is_empty() && p.len() <= 128 && p.is_ascii() => Ok(p.to_owned()),
                    _ => Err(ConfigError::BadValue {
                        path: EXTEND,
                        origin: origin_of(sources, EXTEND),
                        want: "a list of op patterns (e.g. model.*, effect:mail.send)".into(),
                        problem: format!("got {}", shown(item)),
                    }),
                })
                .collect::<Result<_, _>>()?;
        }
        Some(other) => {
            return Err(ConfigError::BadValue {
                path: EXTEND,
                origin: origin_of(sources, EXTEND),
                want: "a list of op patterns (e.g. model.*, effect:mail.send)".into(),
                problem: format!("got {}", shown(other)),
            });
        }
    }
    match leaf(tree, MAX_TTL) {
        None | Some(Value::Null) => {}
        Some(value) => {
            let text = match value {
                Value::String(text) => Some(text.clone()),
                _ => None,
            };
            rules.max_ttl_ms = text
                .as_deref()
                .and_then(parse_duration_ms)
                .filter(|ms| (1..=MAX_TTL_MS_LIMIT).contains(ms))
                .ok_or_else(|| ConfigError::BadValue {
                    path: MAX_TTL,
                    origin: origin_of(sources, MAX_TTL),
                    want: "a duration from 1ms to 30d, like 24h or 90min".into(),
                    problem: format!("got {}", shown(value)),
                })?;
        }
    }
    Ok(rules)
}
