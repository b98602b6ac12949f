//! Runs of openings as they cross the control socket and the `--events` stream: the final
//! report of a run, one line of `rlp runs`, and the run-level events.
//!
//! Node outputs travel as JSON text in the lossless form of `rlp rmp` (the CLI prints
//! them; nothing below it parses them).

use serde::{Deserialize, Serialize};

/// How a run ended, or that it has not (closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    /// Left unfinished by a process that is gone (an embedded `rlp run` killed, a daemon
    /// that did not come back yet); `rlp resume <trace-id>` continues it.
    Interrupted,
}

impl RunStatus {
    /// The word people and the POG see.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// Parses [`RunStatus::as_str`] (and the POG's older `ok`).
    pub fn parse(word: &str) -> Option<RunStatus> {
        Some(match word {
            "running" => RunStatus::Running,
            "succeeded" | "ok" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            "timed_out" => RunStatus::TimedOut,
            "interrupted" => RunStatus::Interrupted,
            _ => return None,
        })
    }
}

/// How a node ended, or where it is (closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Waiting,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl NodeStatus {
    /// The word people and the POG see.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Waiting => "waiting",
            NodeStatus::Running => "running",
            NodeStatus::Succeeded => "succeeded",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Cancelled => "cancelled",
        }
    }
}

/// One node in a [`RunReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeReport {
    pub id: String,
    pub status: NodeStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// 64 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_hash: Option<String>,
    /// `[[port, payload], …]` as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_json: Option<String>,
    /// Why it failed, was skipped or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A run as `rlp run --json` prints it at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunReport {
    /// 32 hex digits.
    pub trace_id: String,
    pub run_id: String,
    pub opening: String,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub started_at_ms: u64,
    pub duration_ms: u64,
    /// 64 hex digits; empty while running.
    pub result_hash: String,
    pub nodes: Vec<NodeReport>,
}

/// One line of `rlp runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSummary {
    pub trace_id: String,
    pub opening: String,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// A run-level event: what `rlp run --events` writes (one NDJSON line each) and what the
/// live progress display reads (closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum RunProgress {
    #[serde(rename = "run.started")]
    RunStarted {
        ts_ms: u64,
        trace_id: String,
        run_id: String,
        opening: String,
        nodes: Vec<String>,
        /// The DAG's edges as `[from, to]` node ids, in the opening's order (one per
        /// distinct pair); absent from files written before edges were reported.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        edges: Vec<[String; 2]>,
        /// Continued from the log after a restart.
        resumed: bool,
    },
    #[serde(rename = "node.started")]
    NodeStarted {
        ts_ms: u64,
        trace_id: String,
        node: String,
        attempt: u32,
    },
    #[serde(rename = "node.retrying")]
    NodeRetrying {
        ts_ms: u64,
        trace_id: String,
        node: String,
        /// The attempt that failed.
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    /// The node's effect waits for a person's yes (`rlp confirm approve <request_id>`).
    #[serde(rename = "node.waiting")]
    NodeWaiting {
        ts_ms: u64,
        trace_id: String,
        node: String,
        request_id: String,
        effect: String,
        summary: String,
        payload_hash: String,
        expires_ms: u64,
    },
    /// A person (or a flag, or the timeout) decided; the node runs again.
    #[serde(rename = "node.decided")]
    NodeDecided {
        ts_ms: u64,
        trace_id: String,
        node: String,
        request_id: String,
        /// `approved`, `denied` or `timed_out`.
        decision: String,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    #[serde(rename = "node.skipped")]
    NodeSkipped {
        ts_ms: u64,
        trace_id: String,
        node: String,
        reason: String,
    },
    #[serde(rename = "node.finished")]
    NodeFinished {
        ts_ms: u64,
        trace_id: String,
        node: String,
        status: NodeStatus,
        attempts: u32,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_hash: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    #[serde(rename = "run.finished")]
    RunFinished {
        ts_ms: u64,
        trace_id: String,
        status: RunStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        duration_ms: u64,
        result_hash: String,
    },
}

impl crate::registry::PayloadExample for RunProgress {
    fn example() -> Self {
        RunProgress::NodeFinished {
            ts_ms: 1_763_766_000_450,
            trace_id: "3f9c2a7e5b1d4c8fa0e6b2d9c4f1a873".into(),
            node: "draft".into(),
            status: NodeStatus::Succeeded,
            attempts: 1,
            duration_ms: 42,
            output_hash: Some("9b".repeat(32)),
            reason: None,
        }
    }
}

impl RunProgress {
    /// The run the event belongs to.
    pub fn trace_id(&self) -> &str {
        match self {
            RunProgress::RunStarted { trace_id, .. }
            | RunProgress::NodeStarted { trace_id, .. }
            | RunProgress::NodeRetrying { trace_id, .. }
            | RunProgress::NodeWaiting { trace_id, .. }
            | RunProgress::NodeDecided { trace_id, .. }
            | RunProgress::NodeSkipped { trace_id, .. }
            | RunProgress::NodeFinished { trace_id, .. }
            | RunProgress::RunFinished { trace_id, .. } => trace_id,
        }
    }
}
