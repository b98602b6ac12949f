//! `edges:` (paths, guards, ports), the cycle check, and `success:` predicates.

use super::nodes::Parsed;
use super::{Ck, Rule};
use crate::expr::{self, ExprError, Guard, Path, Predicate, RawPath};
use crate::model::{EDGES_MAX, Edge, Success};
use crate::yaml::{self, Entry, Node, Pos};

/// Keys of one edge.
const EDGE_KEYS: &[&str] = &["from", "to", "optional"];
/// Keys of `success:`.
const SUCCESS_KEYS: &[&str] = &["all_of", "any_of"];

/// Which side of an edge (or a predicate) a path is on: the port must be an output of
/// the node for `Out`, an input for `In`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Out,
    In,
}

/// Every valid edge in declaration order; then the cycle check over them.
pub(super) fn edges(ck: &mut Ck, top: &[Entry], nodes: &[Parsed]) -> Vec<Edge> {
    let Some(entry) = yaml::get(top, "edges") else {
        return Vec::new();
    };
    let Some(items) = ck.seq(&entry.value, "edges") else {
        return Vec::new();
    };
    if items.len() > EDGES_MAX {
        let message = format!("{} edges; at most {EDGES_MAX} are allowed", items.len());
        ck.err(entry.value.pos, Rule::Limit, message);
    }
    let mut edges = Vec::new();
    let mut positions = Vec::new();
    for item in items {
        if let Some((edge, pos)) = edge(ck, item, nodes) {
            edges.push(edge);
            positions.push(pos);
        }
    }
    if let Some((message, at)) = find_cycle(nodes, &edges) {
        ck.err(positions[at], Rule::Cycle, message);
    }
    edges
}

/// One edge and the position of its `from` value; `None` after an error.
fn edge(ck: &mut Ck, item: &Node, nodes: &[Parsed]) -> Option<(Edge, Pos)> {
    let body = ck.map(item, "edge")?;
    ck.known_keys(body, EDGE_KEYS, "edge");
    let from = ck.required(item, body, "from", "edge");
    let to = ck.required(item, body, "to", "edge");
    let optional = yaml::get(body, "optional")
        .and_then(|e| ck.bool(&e.value, "edge: optional"))
        .unwrap_or(false);
    let from = from.and_then(|e| edge_from(ck, &e.value, nodes));
    let to = to.and_then(|e| edge_to(ck, &e.value, nodes));
    let ((from, guard, pos), to) = (from?, to?);
    Some((
        Edge {
            from_node: from.node,
            to_node: to.node,
            to_port: to.port,
            from,
            guard,
            optional,
        },
        pos,
    ))
}

fn edge_from(ck: &mut Ck, value: &Node, nodes: &[Parsed]) -> Option<(Path, Option<Guard>, Pos)> {
    let text = ck.string(value, "edge from")?;
    let parsed = match expr::parse_expr(text) {
        Ok(parsed) => parsed,
        Err(ExprError::Path(message)) => {
            ck.err(value.pos, Rule::Edge, format!("edge from {message}"));
            return None;
        }
        Err(ExprError::Guard(message)) => {
            ck.err(value.pos, Rule::Guard, format!("edge from {message}"));
            return None;
        }
    };
    if parsed.compare.is_none() && !parsed.path.fields.is_empty() {
        let message = format!(
            "edge from {text:?}: expected <node>.<port> (fields only in a guard: \
             <node>.<port>.<field> <op> <literal>)"
        );
        ck.err(value.pos, Rule::Edge, message);
        return None;
    }
    let path = resolve(ck, value.pos, parsed.path, nodes, Side::Out)?;
    let guard = parsed.compare.map(|(op, literal)| Guard { op, literal });
    Some((path, guard, value.pos))
}

fn edge_to(ck: &mut Ck, value: &Node, nodes: &[Parsed]) -> Option<Path> {
    let text = ck.string(value, "edge to")?;
    let path = match expr::parse_path(text) {
        Ok(path) if path.fields.is_empty() => path,
        _ => {
            let message = format!("edge to {text:?}: expected <node>.<port>");
            ck.err(value.pos, Rule::Edge, message);
            return None;
        }
    };
    resolve(ck, value.pos, path, nodes, Side::In)
}

/// Resolves a path's node to its index and checks its port against the agent's manifest.
fn resolve(ck: &mut Ck, pos: Pos, raw: RawPath, nodes: &[Parsed], side: Side) -> Option<Path> {
    let Some(index) = nodes.iter().position(|p| p.node.id.as_str() == raw.node) else {
        ck.err(pos, Rule::UnknownNode, format!("unknown node {}", raw.node));
        return None;
    };
    let parsed = &nodes[index];
    let (ports, kind) = match side {
        Side::Out => (&parsed.node.facts.ports_out, "output"),
        Side::In => (&parsed.node.facts.ports_in, "input"),
    };
    if parsed.ports_known && !ports.contains(&raw.port) {
        let message = format!(
            "node {} (agent {}) has no {kind} port {}; it has: {}",
            raw.node,
            parsed.node.agent.name,
            raw.port,
            if ports.is_empty() {
                "none".to_owned()
            } else {
                ports.join(", ")
            }
        );
        ck.err(pos, Rule::UnknownPort, message);
        return None;
    }
    Some(Path {
        node: index,
        port: raw.port,
        fields: raw.fields,
    })
}

/// A cycle among the edges, as `cycle: a → b → a` and the index of the edge (the first
/// declared among the cycle's) to report it at. Kahn's algorithm removes every node not
/// on or behind a cycle; each node left has a predecessor left, so walking predecessors
/// from one of them must come back to a node already seen, and that loop is a cycle.
fn find_cycle(nodes: &[Parsed], edges: &[Edge]) -> Option<(String, usize)> {
    let mut indegree = vec![0_usize; nodes.len()];
    for e in edges {
        indegree[e.to_node] += 1;
    }
    let mut ready: Vec<usize> = (0..nodes.len()).filter(|&n| indegree[n] == 0).collect();
    let mut removed = vec![false; nodes.len()];
    while let Some(n) = ready.pop() {
        removed[n] = true;
        for e in edges.iter().filter(|e| e.from_node == n) {
            indegree[e.to_node] -= 1;
            if indegree[e.to_node] == 0 {
                ready.push(e.to_node);
            }
        }
    }
    let start = (0..nodes.len()).find(|&n| !removed[n])?;
    // Walk backwards along edges between remaining nodes until a node repeats.
    let mut walk = vec![start];
    let mut via = Vec::new();
    loop {
        let at = *walk.last().expect("walk starts non-empty");
        let (i, e) = edges
            .iter()
            .enumerate()
            .find(|(_, e)| e.to_node == at && !removed[e.from_node])
            .expect("a node left by Kahn's algorithm has a predecessor left");
        via.push(i);
        if let Some(seen) = walk.iter().position(|&n| n == e.from_node) {
            walk.push(e.from_node);
            // walk[seen..] runs backwards from the repeated node to itself.
            let mut cycle: Vec<usize> = walk[seen..].to_vec();
            cycle.reverse();
            let names: Vec<&str> = cycle.iter().map(|&n| nodes[n].node.id.as_str()).collect();
            let first_edge = via[seen..]
                .iter()
                .copied()
                .min()
                .expect("a cycle has an edge");
            return Some((format!("cycle: {}", names.join(" → ")), first_edge));
        }
        walk.push(e.from_node);
    }
}

/// `success:` with exactly one of `all_of` / `any_of`, each a non-empty list.
pub(super) fn success(ck: &mut Ck, value: &Node, nodes: &[Parsed]) -> Option<Success> {
    let entries = ck.map(value, "success")?;
    ck.known_keys(entries, SUCCESS_KEYS, "success");
    let all = yaml::get(entries, "all_of");
    let any = yaml::get(entries, "any_of");
    let (entry, all_of) = match (all, any) {
        (Some(e), None) => (e, true),
        (None, Some(e)) => (e, false),
        _ => {
            let message = "success: exactly one of all_of, any_of is required";
            ck.err(value.pos, Rule::Success, message);
            return None;
        }
    };
    let items = ck.seq(&entry.value, &format!("success.{}", entry.key))?;
    if items.is_empty() {
        let message = format!("success.{}: at least one predicate is required", entry.key);
        ck.err(entry.value.pos, Rule::Success, message);
        return None;
    }
    let predicates: Vec<Predicate> = items
        .iter()
        .filter_map(|item| predicate(ck, item, nodes))
        .collect();
    if predicates.len() != items.len() {
        return None;
    }
    Some(if all_of {
        Success::AllOf(predicates)
    } else {
        Success::AnyOf(predicates)
    })
}

/// `<node>.<port>[.<field>…] <op> <literal>` or `exists(<node>.<port>[.<field>…])`.
fn predicate(ck: &mut Ck, item: &Node, nodes: &[Parsed]) -> Option<Predicate> {
    let text = ck.string(item, "success predicate")?;
    let bad = |detail: &str| {
        format!(
            "success predicate {text:?}: {detail}; expected <node>.<port>[.<field>…] <op> \
             <literal> or exists(<node>.<port>[.<field>…])"
        )
    };
    let trimmed = text.trim();
    if let Some(inner) = trimmed
        .strip_prefix("exists(")
        .and_then(|t| t.strip_suffix(')'))
    {
        let Ok(raw) = expr::parse_path(inner) else {
            ck.err(item.pos, Rule::Success, bad("not a path"));
            return None;
        };
        return resolve(ck, item.pos, raw, nodes, Side::Out).map(Predicate::Exists);
    }
    let parsed = match expr::parse_expr(trimmed) {
        Ok(parsed) => parsed,
        Err(ExprError::Path(detail) | ExprError::Guard(detail)) => {
            ck.err(item.pos, Rule::Success, bad(&detail));
            return None;
        }
    };
    let Some((op, literal)) = parsed.compare else {
        ck.err(item.pos, Rule::Success, bad("no operator"));
        return None;
    };
    let path = resolve(ck, item.pos, parsed.path, nodes, Side::Out)?;
    Some(Predicate::Compare { path, op, literal })
}
