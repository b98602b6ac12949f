//! The validated opening: plain Rust, every invariant the spec states already checked.

use crate::expr::{Guard, Path, Predicate};
use crate::template::Template;

/// Longest node id / opening name / param name (bytes); the spec's `[a-z][a-z0-9_]{0,63}`.
pub const NAME_BYTES_MAX: usize = 64;
/// Most nodes in one opening.
pub const NODES_MAX: usize = 256;
/// Most edges in one opening.
pub const EDGES_MAX: usize = 1024;
/// Largest opening source (bytes).
pub const SOURCE_BYTES_MAX: usize = 256 * 1024;
/// Most attempts a node may ask for.
pub const ATTEMPTS_MAX: u32 = 32;
/// Default whole-run wall time.
pub const RUN_TIMEOUT_MS_DEFAULT: u64 = 300_000;
/// Default per-attempt timeout.
pub const NODE_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Default `policy.max_parallel`.
pub const MAX_PARALLEL_DEFAULT: u32 = 8;
/// Largest `policy.max_parallel` (the kernel's global bound caps it further).
pub const MAX_PARALLEL_MAX: u32 = 1024;
/// Longest run or attempt timeout a file may ask for: one day.
pub const TIMEOUT_MS_MAX: u64 = 86_400_000;
/// Default `retry.max_attempts` (no retry).
pub const ATTEMPTS_DEFAULT: u32 = 1;
/// Default `retry.initial_ms`: the wait before the second attempt.
pub const BACKOFF_INITIAL_MS_DEFAULT: u64 = 100;
/// Default `retry.max_ms`: the longest wait between attempts.
pub const BACKOFF_MAX_MS_DEFAULT: u64 = 10_000;
/// Default `retry.multiplier`.
pub const BACKOFF_MULTIPLIER_DEFAULT: f64 = 2.0;
/// Default `retry.jitter` (none: waits are exactly the formula's).
pub const BACKOFF_JITTER_DEFAULT: f64 = 0.0;
/// Longest `retry.initial_ms` / `retry.max_ms` a file may ask for: one hour.
pub const BACKOFF_MS_MAX: u64 = 3_600_000;
/// Largest `retry.multiplier`.
pub const BACKOFF_MULTIPLIER_MAX: f64 = 100.0;

/// A node id, opening name or param name: `[a-z][a-z0-9_]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// Checks the spec's grammar; `None` when it does not hold.
    pub fn new(s: &str) -> Option<NodeId> {
        let mut chars = s.chars();
        let first = chars.next()?;
        let ok = first.is_ascii_lowercase()
            && s.len() <= NAME_BYTES_MAX
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        ok.then(|| NodeId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `agent:<name>[@<variant>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRef {
    pub name: String,
    pub variant: Option<String>,
}

/// What the validator needs to know about an installed agent (from its bundle).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentFacts {
    /// `[ports] in` of the manifest.
    pub ports_in: Vec<String>,
    /// `[ports] out` of the manifest.
    pub ports_out: Vec<String>,
    /// The send/delete/spend effects the agent's capabilities allow, e.g. `mail.send`
    /// (empty for an agent that cannot act on the world).
    pub external_effects: Vec<String>,
}

/// A param's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    Object,
    Array,
}

/// One `params:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDecl {
    pub name: String,
    pub ty: ParamType,
    pub required: bool,
    /// Has the declared type (checked).
    pub default: Option<rmpv::Value>,
    pub description: Option<String>,
}

/// `policy:` with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub timeout_ms: u64,
    pub node_timeout_ms: u64,
    pub budget_tokens: Option<u64>,
    pub budget_usd_micros: Option<u64>,
    pub max_parallel: u32,
    pub confirm_external: bool,
}

/// `retry:` with defaults filled in (`max_attempts` 1 when absent; the `BACKOFF_*_DEFAULT`
/// constants for the rest).
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub max_attempts: u32,
    pub initial_ms: u64,
    pub max_ms: u64,
    pub multiplier: f64,
    /// In `[0, 1]`.
    pub jitter: f64,
}

/// One node.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: NodeId,
    pub agent: AgentRef,
    /// The `with:` tree, templates still unrendered.
    pub with: Template,
    pub retry: Retry,
    /// Per-attempt timeout; `policy.node_timeout_ms` when the node does not say.
    pub timeout_ms: u64,
    pub budget_tokens: Option<u64>,
    pub require_human_confirm: bool,
    /// Ports of the resolved agent (from its manifest), kept for the plan.
    pub facts: AgentFacts,
}

/// One edge: `from` (with an optional guard) → `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// Index into [`Opening::nodes`].
    pub from_node: usize,
    /// The source port, and for a guard the field path within it.
    pub from: Path,
    pub guard: Option<Guard>,
    /// Index into [`Opening::nodes`].
    pub to_node: usize,
    pub to_port: String,
    pub optional: bool,
}

/// `success:`.
#[derive(Debug, Clone, PartialEq)]
pub enum Success {
    AllOf(Vec<Predicate>),
    AnyOf(Vec<Predicate>),
}

/// A validated opening. Invariants: node ids unique; edges reference existing nodes and
/// ports; the graph is acyclic; every template names a declared param; every node's
/// agent resolved through the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Opening {
    pub name: String,
    pub description: Option<String>,
    pub goals: Vec<Template>,
    pub params: Vec<ParamDecl>,
    pub policy: Policy,
    /// In declaration order.
    pub nodes: Vec<Node>,
    /// In declaration order.
    pub edges: Vec<Edge>,
    pub success: Option<Success>,
    /// BLAKE3 of the source bytes.
    pub digest: [u8; 32],
}

impl Opening {
    /// The index of a node by id.
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id.as_str() == id)
    }
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            max_attempts: ATTEMPTS_DEFAULT,
            initial_ms: BACKOFF_INITIAL_MS_DEFAULT,
            max_ms: BACKOFF_MAX_MS_DEFAULT,
            multiplier: BACKOFF_MULTIPLIER_DEFAULT,
            jitter: BACKOFF_JITTER_DEFAULT,
        }
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            timeout_ms: RUN_TIMEOUT_MS_DEFAULT,
            node_timeout_ms: NODE_TIMEOUT_MS_DEFAULT,
            budget_tokens: None,
            budget_usd_micros: None,
            max_parallel: MAX_PARALLEL_DEFAULT,
            confirm_external: true,
        }
    }
}
