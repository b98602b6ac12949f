//! `event.status_delta.v1`: the next status snapshot of a `subscribe` stream, sent as what
//! changed since a snapshot the subscriber already holds — the way a stream of a thousand
//! mostly idle agents stays small. [`StatusDelta::between`] computes it on the daemon's
//! side, [`StatusDelta::apply`] rebuilds the whole snapshot on the client's.
//!
//! The tree is read in preorder, each node with its number of direct children (which
//! together give the tree back). A delta is an edit script over the base's preorder:
//! keep the next nodes, skip the next nodes, or put a new or changed node. Any script that
//! only keeps nodes equal to the new ones is correct; matching by `(depth, name)` keeps it
//! short (a changed agent is one `put`, an added run is its nodes, a removed one a `skip`).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::control::{ActorKind, ActorNode, ActorRunState};
use super::status::{ActorInfo, StatusSnapshot};
use crate::registry::PayloadExample;

/// Most nodes a rebuilt tree may hold (a status frame holds ≈ 3,000 agents; this bounds
/// the work a hostile delta can ask of a client).
pub const STATUS_NODES_MAX: usize = 1 << 20;

/// `event.status_delta.v1`: snapshot `seq`, as edits of snapshot `base_seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusDelta {
    /// The snapshot this delta makes.
    pub seq: u64,
    /// The snapshot it applies to (the last one the subscriber was sent).
    pub base_seq: u64,
    /// As in [`StatusSnapshot`].
    pub taken_at_ms: u64,
    /// As in [`StatusSnapshot`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage_at_ms: u64,
    /// As in [`StatusSnapshot`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub agents_cut: u64,
    /// The new tree's preorder as edits of the base's.
    pub edits: Vec<TreeEdit>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One step of a [`StatusDelta`]'s edit script (closed).
// A wire payload read once and dropped; boxing the node would cost an allocation per
// changed node to save stack space in a list that is mostly puts when it is long.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TreeEdit {
    /// The base's next `count` nodes are in the new tree unchanged (with as many children).
    Keep { count: u64 },
    /// The base's next `count` nodes are not in the new tree.
    Skip { count: u64 },
    /// A new or changed node; `node.children` is empty and the `children` nodes that
    /// follow it in preorder are its own.
    Put { node: ActorNode, children: u64 },
}

/// Why a delta does not apply (the stream is broken; subscribe again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("the delta applies to snapshot {want}, the last one received is {have}")]
    Base { want: u64, have: u64 },
    #[error("the delta keeps or skips {asked} nodes past the base's {base}")]
    PastBase { asked: u64, base: usize },
    #[error("the delta leaves {left} of the base's nodes unaccounted for")]
    BaseLeft { left: usize },
    #[error("a put node carries {0} children of its own (they follow it instead)")]
    NestedPut(usize),
    #[error("the delta's preorder is not one tree")]
    NotATree,
    #[error("the delta makes a tree over {STATUS_NODES_MAX} nodes")]
    TooBig,
}

/// A node and its depth, in preorder.
fn preorder(tree: &ActorNode) -> Vec<(u32, &ActorNode)> {
    let mut out = Vec::new();
    let mut stack = vec![(0u32, tree)];
    while let Some((depth, node)) = stack.pop() {
        out.push((depth, node));
        stack.extend(node.children.iter().rev().map(|c| (depth + 1, c)));
    }
    out
}

/// Whether two nodes are equal apart from their children's contents.
fn same_head(a: &ActorNode, b: &ActorNode) -> bool {
    a.name == b.name
        && a.kind == b.kind
        && a.state == b.state
        && a.restarts == b.restarts
        && a.last_error == b.last_error
        && a.info == b.info
        && a.children.len() == b.children.len()
}

/// Appends `edit`, merging it into the last one when both keep or both skip.
fn push(edits: &mut Vec<TreeEdit>, edit: TreeEdit) {
    match (edits.last_mut(), &edit) {
        (Some(TreeEdit::Keep { count }), TreeEdit::Keep { count: more })
        | (Some(TreeEdit::Skip { count }), TreeEdit::Skip { count: more }) => *count += more,
        _ => edits.push(edit),
    }
}

fn put(node: &ActorNode) -> TreeEdit {
    TreeEdit::Put {
        node: ActorNode {
            name: node.name.clone(),
            kind: node.kind,
            state: node.state,
            restarts: node.restarts,
            last_error: node.last_error.clone(),
            info: node.info.clone(),
            children: Vec::new(),
        },
        children: node.children.len() as u64,
    }
}

impl StatusDelta {
    /// The delta that turns `base` into `new`.
    pub fn between(base: &StatusSnapshot, new: &StatusSnapshot) -> StatusDelta {
        let old = preorder(&base.tree);
        let now = preorder(&new.tree);
        // The nodes of the new tree, by depth and name: asked only where the two trees
        // disagree, so built only then (a tick of an unchanged tree never builds it).
        let mut wanted: Option<HashSet<(u32, &str)>> = None;
        let mut edits = Vec::new();
        let mut i = 0;
        for (depth, node) in &now {
            loop {
                match old.get(i) {
                    Some((d, o)) if d == depth && o.name == node.name => {
                        if same_head(o, node) {
                            push(&mut edits, TreeEdit::Keep { count: 1 });
                        } else {
                            push(&mut edits, TreeEdit::Skip { count: 1 });
                            push(&mut edits, put(node));
                        }
                        i += 1;
                    }
                    Some((d, o)) => {
                        let wanted = wanted.get_or_insert_with(|| {
                            now.iter().map(|(d, n)| (*d, n.name.as_str())).collect()
                        });
                        if !wanted.contains(&(*d, o.name.as_str())) {
                            // A base node the new tree no longer has.
                            push(&mut edits, TreeEdit::Skip { count: 1 });
                            i += 1;
                            continue;
                        }
                        // A new node (or one that moved: put again, the old one skipped
                        // later).
                        push(&mut edits, put(node));
                    }
                    None => push(&mut edits, put(node)),
                }
                break;
            }
        }
        if i < old.len() {
            push(
                &mut edits,
                TreeEdit::Skip {
                    count: (old.len() - i) as u64,
                },
            );
        }
        StatusDelta {
            seq: new.seq,
            base_seq: base.seq,
            taken_at_ms: new.taken_at_ms,
            usage_at_ms: new.usage_at_ms,
            agents_cut: new.agents_cut,
            edits,
        }
    }

    /// `base` turned into snapshot `seq`; an error when `base` is not the snapshot this
    /// delta was made from or the edits do not make one tree.
    pub fn apply(self, base: StatusSnapshot) -> Result<StatusSnapshot, DeltaError> {
        if base.seq != self.base_seq {
            return Err(DeltaError::Base {
                want: self.base_seq,
                have: base.seq,
            });
        }
        let old = into_preorder(base.tree);
        let base_len = old.len();
        let mut old = old.into_iter();
        let mut out: Vec<(ActorNode, u64)> = Vec::new();
        for edit in self.edits {
            match edit {
                TreeEdit::Keep { count } | TreeEdit::Skip { count } if count > old.len() as u64 => {
                    return Err(DeltaError::PastBase {
                        asked: count,
                        base: base_len,
                    });
                }
                TreeEdit::Keep { count } => out.extend(old.by_ref().take(count as usize)),
                TreeEdit::Skip { count } => {
                    old.by_ref().take(count as usize).for_each(drop);
                }
                TreeEdit::Put { node, children } => {
                    if !node.children.is_empty() {
                        return Err(DeltaError::NestedPut(node.children.len()));
                    }
                    out.push((node, children));
                }
            }
            if out.len() > STATUS_NODES_MAX {
                return Err(DeltaError::TooBig);
            }
        }
        if old.len() > 0 {
            return Err(DeltaError::BaseLeft { left: old.len() });
        }
        Ok(StatusSnapshot {
            seq: self.seq,
            taken_at_ms: self.taken_at_ms,
            usage_at_ms: self.usage_at_ms,
            tree: from_preorder(out)?,
            agents_cut: self.agents_cut,
        })
    }
}

/// The tree's nodes in preorder, each with its children moved out and counted.
fn into_preorder(tree: ActorNode) -> Vec<(ActorNode, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![tree];
    while let Some(mut node) = stack.pop() {
        let children = std::mem::take(&mut node.children);
        out.push((node, children.len() as u64));
        stack.extend(children.into_iter().rev());
    }
    out
}

/// The one tree a preorder with child counts describes.
fn from_preorder(nodes: Vec<(ActorNode, u64)>) -> Result<ActorNode, DeltaError> {
    let total = nodes.len();
    let mut stack: Vec<(ActorNode, u64)> = Vec::new();
    for (k, (node, children)) in nodes.into_iter().enumerate() {
        stack.push((node, children));
        // Close every node whose children are all in.
        while let Some((_, 0)) = stack.last() {
            let (done, _) = stack.pop().expect("just seen");
            match stack.last_mut() {
                Some((parent, left)) => {
                    parent.children.push(done);
                    *left -= 1;
                }
                None if k + 1 == total => return Ok(done),
                None => return Err(DeltaError::NotATree),
            }
        }
    }
    Err(DeltaError::NotATree)
}

impl PayloadExample for StatusDelta {
    fn example() -> Self {
        StatusDelta {
            seq: 4,
            base_seq: 3,
            taken_at_ms: 1_763_766_000_250,
            usage_at_ms: 1_763_766_000_000,
            agents_cut: 0,
            edits: vec![
                TreeEdit::Skip { count: 1 },
                TreeEdit::Put {
                    node: ActorNode {
                        name: "metrics".into(),
                        kind: ActorKind::Worker,
                        state: ActorRunState::Running,
                        restarts: 0,
                        last_error: None,
                        info: Some(ActorInfo::Kernel {
                            cpu_ms: 130,
                            rss_kb: 51_200,
                            warm: None,
                        }),
                        children: vec![],
                    },
                    children: 0,
                },
            ],
        }
    }
}

#[cfg(test)]
#[path = "status_delta_tests.rs"]
mod tests;
