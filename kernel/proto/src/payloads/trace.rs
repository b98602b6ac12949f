//! What `rlp trace` and `rlp replay` are answered with: a run's recorded crossings as a
//! ladder's data (participants and crossings), and a replay's per-node verdict.
//!
//! A *crossing* is one message between two participants of a run: the CLI's submission,
//! each invoke to an agent and its reply, each host call and its result, each write to the
//! POG, each retry and timeout, each confirmation asked and decided. The kernel records
//! them in the POG (`crossing.recorded`, plus the run's own events) and builds a
//! [`TraceView`] from the record; renderers (`runloop_client::trace`) draw it.

use serde::{Deserialize, Serialize};

/// What a participant is (closed): decides its column's default order and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantKind {
    /// `rlp` (or another control-plane client) that submitted the run.
    Cli,
    /// The run actor that owns the DAG.
    Run,
    /// One agent (a node of the run), backed by its sandbox.
    Agent,
    /// The model broker.
    Broker,
    /// The POG (the knowledge base and the run's record).
    Pog,
    /// The confirmation gate (a person's yes or no).
    Gate,
    /// The effects journal and its executors.
    Effects,
    /// The kernel's own host calls (clock, random, log).
    Kernel,
}

impl ParticipantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantKind::Cli => "cli",
            ParticipantKind::Run => "run",
            ParticipantKind::Agent => "agent",
            ParticipantKind::Broker => "broker",
            ParticipantKind::Pog => "pog",
            ParticipantKind::Gate => "gate",
            ParticipantKind::Effects => "effects",
            ParticipantKind::Kernel => "kernel",
        }
    }
}

/// One column of the ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// Stable id crossings refer to: `rlp`, `run`, `broker`, `pog`, `gate`, `effects`,
    /// `kernel`, or `agent:<node id>` for an agent.
    pub id: String,
    pub kind: ParticipantKind,
    /// What a column header shows in full (`writer`, `run compose_email`).
    pub label: String,
}

/// How a crossing ended (closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossingStatus {
    /// Answered (or, for a one-way message, delivered).
    Ok,
    /// Answered with an error (denied, failed, timed out, pending a person).
    Error,
}

/// One message between two participants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crossing {
    /// Order within the run, from 0, gap-free in a [`TraceView`].
    pub seq: u64,
    /// Participant ids; `from == to` is a step of one participant (a retry's backoff).
    pub from: String,
    pub to: String,
    /// Message kind: `run.submit`, `agent.invoke`, a host call op (`model.complete`,
    /// `kb.query`, `clock.now`, `effect.perform`, …), `pog.write node.started`,
    /// `node.retry`, `node.timeout`, `confirm.ask`, `confirm.decision`, `run.report`.
    pub kind: String,
    /// The node it belongs to, when it belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Bytes of the message (its MsgPack encoding; the event's JCS bytes for POG writes).
    pub bytes: u64,
    /// Bytes of the answer, when the crossing has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_bytes: Option<u64>,
    /// When it was sent and when it was answered (Unix ms, the kernel's clock); equal for
    /// a one-way message.
    pub start_ms: u64,
    pub end_ms: u64,
    pub status: CrossingStatus,
    /// One line on an error or a decision (`denied: not on a terminal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A run's crossings, ready to draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceView {
    pub trace_id: String,
    pub opening: String,
    /// `succeeded`, `failed`, …, or `running` / `interrupted` for an unfinished run.
    pub status: String,
    /// When the run started (Unix ms): `--relative` times count from here.
    pub started_ms: u64,
    /// Columns, left to right.
    pub participants: Vec<Participant>,
    /// Rows, in `seq` order.
    pub crossings: Vec<Crossing>,
}

/// One recent trace, as `rlp trace` without an id lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub opening: String,
    pub status: String,
    pub started_ms: u64,
    pub crossings: u64,
}

/// Where a replayed node first made a different host call than recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// Which recorded invoke of the node (0-based; a node waiting for a person or retried
    /// has several).
    pub invoke: u64,
    /// Host call number within that invoke (1-based, as people count).
    pub call: u64,
    /// The recorded call's op, or `end` when the recording had no more calls.
    pub recorded: String,
    /// The op the guest made, or `end` when it finished without making the recorded call.
    pub got: String,
}

/// One node's replay verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayNode {
    pub id: String,
    pub agent: String,
    /// Output hash of the node's last recorded invoke (`""` when it recorded none).
    pub recorded_hash: String,
    /// Output hash the replay produced (`""` when it produced none).
    pub replayed_hash: String,
    pub identical: bool,
    /// Invokes replayed (every recorded one).
    pub invokes: u64,
    /// Host calls answered from the recording.
    pub host_calls: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_at: Option<Divergence>,
    /// The bundle's wasm digest now differs from the one recorded: `(recorded, now)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_changed: Option<(String, String)>,
    /// The first differing output, as a unified diff of the lossless JSON forms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Why the node could not be replayed or ended differently (one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `rlp replay`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayReport {
    pub trace_id: String,
    pub opening: String,
    /// Every node identical.
    pub identical: bool,
    pub nodes: Vec<ReplayNode>,
    /// Effects performed by the replay: always 0 (answers come from the recording).
    pub effects_performed: u64,
    /// How long the recorded run took and how long the replay took (ms).
    pub recorded_ms: u64,
    pub replay_ms: u64,
}
