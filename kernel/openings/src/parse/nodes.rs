//! `nodes:`: ids, `use` resolved through the catalog, `with` templates, `retry`, timeouts,
//! token budgets and the `require_human_confirm` rule.

use super::{AgentCatalog, Ck, Rule};
use crate::model::{
    self, AgentFacts, AgentRef, BACKOFF_MS_MAX, BACKOFF_MULTIPLIER_MAX, NODES_MAX, NodeId,
    ParamDecl, Policy, Retry, TIMEOUT_MS_MAX,
};
use crate::template::Template;
use crate::yaml::{self, Entry, Node};

/// Keys of one node.
const NODE_KEYS: &[&str] = &[
    "id",
    "use",
    "with",
    "retry",
    "timeout_ms",
    "budget_tokens",
    "require_human_confirm",
];
/// Keys of `retry:`.
const RETRY_KEYS: &[&str] = &[
    "max_attempts",
    "initial_ms",
    "max_ms",
    "multiplier",
    "jitter",
];

/// A node as far as it validated.
#[derive(Debug)]
pub(super) struct Parsed {
    pub node: model::Node,
    /// The agent resolved, so `node.facts` lists its real ports (edges to a node whose
    /// agent did not resolve are not checked for ports: that error is already reported).
    pub ports_known: bool,
}

/// Every node with a valid, unique id, in declaration order.
pub(super) fn nodes(
    ck: &mut Ck,
    root: &Node,
    top: &[Entry],
    params: &[ParamDecl],
    policy: &Policy,
    catalog: &dyn AgentCatalog,
) -> Vec<Parsed> {
    let Some(entry) = ck.required(root, top, "nodes", "opening") else {
        return Vec::new();
    };
    let Some(items) = ck.seq(&entry.value, "nodes") else {
        return Vec::new();
    };
    if items.is_empty() {
        let message = "nodes: at least one node is required";
        ck.err(entry.value.pos, Rule::MissingKey, message);
    }
    if items.len() > NODES_MAX {
        let message = format!("{} nodes; at most {NODES_MAX} are allowed", items.len());
        ck.err(entry.value.pos, Rule::Limit, message);
    }
    let mut parsed: Vec<Parsed> = Vec::new();
    for item in items {
        let Some(p) = node(ck, item, params, policy, catalog) else {
            continue;
        };
        if parsed.iter().any(|q| q.node.id == p.node.id) {
            let id_pos = item
                .as_map()
                .and_then(|m| yaml::get(m, "id"))
                .map_or(item.pos, |e| e.value.pos);
            let message = format!("duplicate node id {}", p.node.id);
            ck.err(id_pos, Rule::DuplicateNode, message);
            continue;
        }
        parsed.push(p);
    }
    parsed
}

/// One node; `None` when it has no valid id (its other keys are still checked).
fn node(
    ck: &mut Ck,
    item: &Node,
    params: &[ParamDecl],
    policy: &Policy,
    catalog: &dyn AgentCatalog,
) -> Option<Parsed> {
    let body = ck.map(item, "node")?;
    let id = ck.required(item, body, "id", "node").and_then(|e| {
        let id = ck.string(&e.value, "node id")?;
        ck.name_grammar(e.value.pos, id, "node id", Rule::NodeId)
            .then(|| NodeId::new(id))
            .flatten()
    });
    let what = id
        .as_ref()
        .map_or_else(|| "node".to_owned(), |id| format!("node {id}"));
    ck.known_keys(body, NODE_KEYS, &what);
    let (agent, facts) = agent(ck, item, body, &what, catalog);
    let with = match yaml::get(body, "with") {
        None => Template::Literal(rmpv::Value::Map(Vec::new())),
        Some(e) => match ck.map(&e.value, &format!("{what}: with")) {
            Some(_) => ck.template(&e.value, params),
            None => Template::Literal(rmpv::Value::Map(Vec::new())),
        },
    };
    let retry =
        yaml::get(body, "retry").map_or_else(Retry::default, |e| retry(ck, &e.value, &what));
    let timeout_ms = yaml::get(body, "timeout_ms")
        .and_then(|e| {
            ck.uint_in(
                &e.value,
                &format!("{what}: timeout_ms"),
                Rule::Policy,
                1,
                TIMEOUT_MS_MAX,
            )
        })
        .unwrap_or(policy.node_timeout_ms);
    let budget_tokens = budget(ck, body, &what, policy);
    let require_human_confirm = confirm(ck, item, body, &what, policy, &agent, &facts);
    Some(Parsed {
        node: model::Node {
            id: id?,
            agent: agent.unwrap_or(AgentRef {
                name: String::new(),
                variant: None,
            }),
            with,
            retry,
            timeout_ms,
            budget_tokens,
            require_human_confirm,
            facts: facts.clone().unwrap_or_default(),
        },
        ports_known: facts.is_some(),
    })
}

/// `require_human_confirm`, and the spec's rule: while `policy.confirm_external` holds, a
/// node whose agent can perform a send/delete/spend effect must set it.
fn confirm(
    ck: &mut Ck,
    item: &Node,
    body: &[Entry],
    what: &str,
    policy: &Policy,
    agent: &Option<AgentRef>,
    facts: &Option<AgentFacts>,
) -> bool {
    let entry = yaml::get(body, "require_human_confirm");
    let confirm = entry
        .and_then(|e| ck.bool(&e.value, &format!("{what}: require_human_confirm")))
        .unwrap_or(false);
    let (Some(agent), Some(facts)) = (agent, facts) else {
        return confirm;
    };
    if policy.confirm_external && !facts.external_effects.is_empty() && !confirm {
        // At the `false` that breaks the rule, else at the agent that needs it.
        let pos = entry
            .or_else(|| yaml::get(body, "use"))
            .map_or(item.pos, |e| e.value.pos);
        let message = format!(
            "{what}: agent {} performs {}; set require_human_confirm: true",
            agent.name,
            facts.external_effects.join(", ")
        );
        ck.err(pos, Rule::Confirm, message);
    }
    confirm
}

/// `use:` parsed, and the agent's facts when the catalog resolves it.
fn agent(
    ck: &mut Ck,
    item: &Node,
    body: &[Entry],
    what: &str,
    catalog: &dyn AgentCatalog,
) -> (Option<AgentRef>, Option<AgentFacts>) {
    let Some(entry) = ck.required(item, body, "use", what) else {
        return (None, None);
    };
    let Some(text) = ck.string(&entry.value, &format!("{what}: use")) else {
        return (None, None);
    };
    let Some(agent) = parse_use(text) else {
        let message = format!("{what}: use {text:?}: expected agent:<name>[@<variant>]");
        ck.err(entry.value.pos, Rule::Use, message);
        return (None, None);
    };
    match catalog.agent(&agent) {
        Ok(facts) => (Some(agent), Some(facts)),
        Err(e) => {
            ck.err(entry.value.pos, Rule::UnknownAgent, format!("{what}: {e}"));
            (Some(agent), None)
        }
    }
}

/// `agent:<name>[@<variant>]`, each part non-empty of `[A-Za-z0-9_.-]`.
pub(crate) fn parse_use(text: &str) -> Option<AgentRef> {
    let rest = text.strip_prefix("agent:")?;
    let (name, variant) = match rest.split_once('@') {
        Some((name, variant)) => (name, Some(variant)),
        None => (rest, None),
    };
    let part_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= model::NAME_BYTES_MAX
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    (part_ok(name) && variant.is_none_or(part_ok)).then(|| AgentRef {
        name: name.to_owned(),
        variant: variant.map(str::to_owned),
    })
}

fn retry(ck: &mut Ck, node: &Node, what: &str) -> Retry {
    let mut retry = Retry::default();
    let Some(entries) = ck.map(node, &format!("{what}: retry")) else {
        return retry;
    };
    ck.known_keys(entries, RETRY_KEYS, &format!("{what}: retry"));
    for entry in entries {
        let (v, field) = (&entry.value, format!("{what}: retry.{}", entry.key));
        match entry.key.as_str() {
            "max_attempts" => {
                let max = u64::from(model::ATTEMPTS_MAX);
                let n = ck.uint_in(v, &field, Rule::Retry, 1, max);
                retry.max_attempts = n
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(retry.max_attempts);
            }
            "initial_ms" => {
                let n = ck.uint_in(v, &field, Rule::Retry, 0, BACKOFF_MS_MAX);
                retry.initial_ms = n.unwrap_or(retry.initial_ms);
            }
            "max_ms" => {
                let n = ck.uint_in(v, &field, Rule::Retry, 0, BACKOFF_MS_MAX);
                retry.max_ms = n.unwrap_or(retry.max_ms);
            }
            "multiplier" => {
                let n = ck.number_in(v, &field, Rule::Retry, 1.0, BACKOFF_MULTIPLIER_MAX);
                retry.multiplier = n.unwrap_or(retry.multiplier);
            }
            "jitter" => {
                let n = ck.number_in(v, &field, Rule::Retry, 0.0, 1.0);
                retry.jitter = n.unwrap_or(retry.jitter);
            }
            _ => {} // reported by known_keys
        }
    }
    retry
}

/// `budget_tokens`: each node's share must fit the run's budget on its own (shares are
/// caps, not reservations, so they may add up to more than the run's budget).
fn budget(ck: &mut Ck, body: &[Entry], what: &str, policy: &Policy) -> Option<u64> {
    let entry = yaml::get(body, "budget_tokens")?;
    let field = format!("{what}: budget_tokens");
    let tokens = ck.uint_in(&entry.value, &field, Rule::Budget, 0, u64::MAX)?;
    if let Some(run) = policy.budget_tokens.filter(|run| tokens > *run) {
        let message = format!("{field} {tokens} exceeds the run's budget_tokens {run}");
        ck.err(entry.value.pos, Rule::Budget, message);
    }
    Some(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_syntax() {
        let r = parse_use("agent:writer@nightly").unwrap();
        assert_eq!(
            (r.name.as_str(), r.variant.as_deref()),
            ("writer", Some("nightly"))
        );
        assert_eq!(parse_use("agent:writer").unwrap().variant, None);
        for bad in [
            "writer",
            "agent:",
            "agent:a@",
            "agent:a b",
            "agent:@v",
            "tool:x",
        ] {
            assert!(parse_use(bad).is_none(), "{bad}");
        }
    }
}
