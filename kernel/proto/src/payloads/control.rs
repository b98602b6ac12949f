//! Control-plane payloads: what `rlp` and `agtop` ask `runloopd` over its socket, and the
//! answers. Requests carry a caller-chosen `request_id`; the daemon answers a repeated id
//! with the first answer instead of acting twice.

use serde::{Deserialize, Serialize};

use super::status::{ActorInfo, BusInfo, SupervisorStrategy};
use crate::registry::PayloadExample;

/// Longest `request_id`, in bytes.
pub const REQUEST_ID_BYTES_MAX: usize = 64;

/// `control.request.v1`: one request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    /// 1 to [`REQUEST_ID_BYTES_MAX`] bytes chosen by the caller; the idempotency key.
    pub request_id: String,
    pub command: ControlCommand,
}

/// What a control request asks for (closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlCommand {
    /// The supervisor tree with each actor's state.
    Status,
    /// Releases a quarantined agent.
    AgentRelease { agent: String },
    /// Every agent this kernel started, with its state and metrics.
    AgentList,
    /// Starts an agent from a bundle directory (a path the daemon can read).
    AgentStart {
        bundle: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Sends one message to a running agent and waits for its reply.
    AgentSend {
        agent: String,
        #[serde(default = "default_port")]
        port: String,
        /// The message as JSON text (the lossless JSON form of `rlp rmp`).
        input_json: String,
    },
    /// Stops an agent (its sandbox shut down, its cgroup removed).
    AgentStop { agent: String },
    /// Streams status: after a `subscribed` reply, one `event.status.v1` frame every
    /// `interval_ms` (clamped to [`SUBSCRIBE_INTERVAL_MS_MIN`]..=[`SUBSCRIBE_INTERVAL_MS_MAX`])
    /// and an `event.run.v1` frame for each change seen between two snapshots, until the
    /// client closes the connection. Never answered from the idempotency cache.
    Subscribe { interval_ms: u64 },
    /// Starts a run of an opening. `source` is the opening's YAML, `dir` the directory it
    /// was read from (its `agents/` is searched first), `params_json` a JSON object.
    /// Answered with `run_submitted`; with `watch`, `event.run_progress` frames follow
    /// on the same connection and the run's `run_finished` report ends the stream.
    RunSubmit {
        source: String,
        dir: String,
        params_json: String,
        watch: bool,
    },
    /// Waits for a run and answers its report (`run_finished`); with `watch`, its progress
    /// events first, as for `run_submit`.
    RunWatch { trace_id: String, watch: bool },
    /// Cancels a running run.
    RunCancel { trace_id: String },
    /// Recent and running runs (`runs`).
    RunList { limit: u32 },
    /// One run's progress so far, from its record, as the events `--events` would have
    /// written (`run_state`): for a monitor that starts while the run runs. Never waits.
    RunShow { trace_id: String },
    /// Continues an unfinished run from its record in the POG.
    RunResume { trace_id: String, watch: bool },
    /// One run's recorded crossings as a ladder's data (`trace`).
    TraceShow { trace_id: String },
    /// The most recent runs that have a record, newest first (`traces`).
    TraceList { limit: u32 },
    /// Re-executes every node of a recorded run in fresh sandboxes, answering each host
    /// call from the recording, and compares outputs (`replayed`). Performs no effect.
    RunReplay { trace_id: String },
    /// Appends an exported run's events (the NDJSON `rlp runs export` writes) to the POG
    /// the daemon owns (`imported`); events already there are not appended again.
    RunImport { ndjson: String },
    /// The actions waiting for a person's decision (`actions`).
    ConfirmList,
    /// One pending action with its exact payload (`action`).
    ConfirmShow { request_id: String },
    /// A person's decision on a pending action, bound to the payload hash they were shown
    /// (a different hash is refused: the payload changed). `by` names the UI peer.
    ConfirmDecide {
        request_id: String,
        approve: bool,
        payload_hash: String,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Grants `agent` (a bundle name) one capability line until `ttl_ms` from now on the
    /// kernel's clock (`cap_granted`); recorded in the POG before it takes effect.
    CapGrant {
        agent: String,
        capability: String,
        ttl_ms: u64,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The grants in force (`caps`).
    CapList,
    /// Takes a grant out of force before its expiry (`cap_revoked`).
    CapRevoke {
        grant_id: String,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// Whether a capability grant adds to or takes from what an op may do (closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantRule {
    Allow,
    Deny,
}

impl GrantRule {
    pub fn name(self) -> &'static str {
        match self {
            GrantRule::Allow => "allow",
            GrantRule::Deny => "deny",
        }
    }
}

/// How a grant relates to the bundle's own policy (closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantChange {
    /// Allows nothing the bundle does not (or denies): always admitted.
    Narrow,
    /// Allows more than the bundle: only as config's `security.grants.extend` says.
    Extend,
}

impl GrantChange {
    pub fn name(self) -> &'static str {
        match self {
            GrantChange::Narrow => "narrow",
            GrantChange::Extend => "extend",
        }
    }
}

/// One capability grant, as recorded (`cap.granted`) and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantInfo {
    pub grant_id: String,
    /// The bundle name the grant holds for (every instance of it).
    pub agent: String,
    /// The capability line (`allow …` / `deny …`, the `policy.caps` grammar).
    pub capability: String,
    pub rule: GrantRule,
    pub change: GrantChange,
    /// When it was granted and when it stops working (Unix ms, the kernel's clock).
    pub granted_ms: u64,
    pub expires_ms: u64,
    /// Who granted it.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One action waiting for a person, as UI peers show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionInfo {
    pub request_id: String,
    pub trace_id: String,
    pub node_id: String,
    pub agent: String,
    /// The effect kind (`mail.send`) or host call (`confirm.request`) asked for.
    pub effect: String,
    pub idempotency_key: String,
    /// The kernel's one-line description of the payload.
    pub summary: String,
    /// BLAKE3 of the exact payload (its JCS form); a decision names it.
    pub payload_hash: String,
    /// The exact payload as JSON text.
    pub payload_json: String,
    /// When the request is denied unanswered (Unix ms, the kernel's clock).
    pub expires_ms: u64,
}

/// Shortest interval between two streamed snapshots, in milliseconds.
pub const SUBSCRIBE_INTERVAL_MS_MIN: u64 = 100;
/// Longest interval between two streamed snapshots, in milliseconds.
pub const SUBSCRIBE_INTERVAL_MS_MAX: u64 = 60_000;

fn default_port() -> String {
    "in".into()
}

impl PayloadExample for ControlRequest {
    fn example() -> Self {
        ControlRequest {
            request_id: "6b1d3f0a9c2e4d11".into(),
            command: ControlCommand::Status,
        }
    }
}

/// `control.reply.v1`: the answer to one request, echoing its `request_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlReply {
    pub request_id: String,
    pub outcome: ControlOutcome,
}

/// How a control request ended (closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ControlOutcome {
    Status {
        tree: ActorNode,
    },
    Released {
        agent: String,
        reason: String,
    },
    Agents {
        agents: Vec<AgentStatus>,
    },
    AgentStarted {
        agent: AgentStatus,
    },
    /// An agent's reply to `agent_send`.
    AgentReplied {
        agent: String,
        /// The outputs as JSON text (`[{"port": .., "payload": ..}, ..]`).
        outputs_json: String,
        /// 1 for a first delivery; more when redelivered after its sandbox died.
        attempt: u32,
        round_trip_us: u64,
    },
    AgentStopped {
        agent: String,
    },
    /// A `subscribe` was accepted; snapshots follow every `interval_ms` (after clamping).
    Subscribed {
        interval_ms: u64,
    },
    /// A run was accepted (submitted or resumed).
    RunSubmitted {
        trace_id: String,
        run_id: String,
    },
    /// A run's final report.
    RunFinished {
        report: super::run::RunReport,
    },
    /// A cancel was delivered.
    RunCancelled {
        trace_id: String,
    },
    Runs {
        runs: Vec<super::run::RunSummary>,
    },
    /// A run's progress so far (`run.started` with its nodes and edges, each node's
    /// latest attempt started or finished, `run.finished` once it ended).
    RunState {
        events: Vec<super::run::RunProgress>,
    },
    /// A run's crossings.
    Trace {
        view: super::trace::TraceView,
    },
    /// Recent traces, newest first.
    Traces {
        traces: Vec<super::trace::TraceSummary>,
    },
    /// A replay's verdict.
    Replayed {
        report: super::trace::ReplayReport,
    },
    /// An import's counts and the runs (trace ids) the file started.
    Imported {
        rows: u64,
        appended: u64,
        duplicates: u64,
        runs: Vec<String>,
    },
    /// One progress event of a watched run (streamed; never cached).
    RunProgress {
        event: super::run::RunProgress,
    },
    /// The pending actions, oldest first.
    Actions {
        actions: Vec<ActionInfo>,
    },
    /// One pending action.
    Action {
        action: ActionInfo,
    },
    /// A decision was recorded.
    Decided {
        request_id: String,
        /// `approved` or `denied`.
        decision: String,
        by: String,
    },
    /// A grant was recorded and is in force; `now_ms` is the kernel's clock.
    CapGranted {
        grant: GrantInfo,
        now_ms: u64,
    },
    /// The grants in force, oldest first; `now_ms` is the kernel's clock.
    Caps {
        grants: Vec<GrantInfo>,
        now_ms: u64,
    },
    /// A grant was revoked.
    CapRevoked {
        grant: GrantInfo,
    },
    /// The request failed; `code` is a stable name (e.g. `NotQuarantined`).
    Failed {
        code: String,
        message: String,
    },
}

/// One agent as `rlp agent ls` shows it. `Default` is the empty status (no name, no
/// state, every count 0), for building one up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentStatus {
    pub name: String,
    /// The bundle directory it was started from.
    pub bundle: String,
    /// `starting`, `running`, `restarting`, `quarantined` or `stopped`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_pid: Option<u32>,
    pub restarts: u64,
    /// `closed`, `open`, `half-open` (or `unknown` when the breaker actor is down).
    pub breaker: String,
    /// The quarantine reason, when parked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    pub cpu_ms: u64,
    pub rss_kb: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    pub messages_in: u64,
    pub messages_out: u64,
    pub errors: u64,
    pub denied: u64,
    pub redelivered: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Model tokens (in + out) the broker accounted to agents of this name.
    #[serde(default)]
    pub tokens: u64,
    /// What those calls cost, in millionths of a US dollar.
    #[serde(default)]
    pub usd_micros: u64,
}

/// An actor in the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorNode {
    pub name: String,
    pub kind: ActorKind,
    pub state: ActorRunState,
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The actor's own figures (e.g. the bus's counters, an agent's metrics), typed;
    /// only the edge (`rlp status`, agtop) turns them into text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<ActorInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ActorNode>,
}

/// Whether a node supervises others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Supervisor,
    Worker,
    /// A slot reserved for an actor another part of the system provides (POG, broker).
    Slot,
}

/// An actor's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorRunState {
    Running,
    Restarting,
    Stopped,
    /// A slot with nothing in it yet.
    Empty,
}

impl PayloadExample for ControlReply {
    fn example() -> Self {
        ControlReply {
            request_id: "6b1d3f0a9c2e4d11".into(),
            outcome: ControlOutcome::Status {
                tree: ActorNode {
                    name: "root".into(),
                    kind: ActorKind::Supervisor,
                    state: ActorRunState::Running,
                    restarts: 0,
                    last_error: None,
                    info: Some(ActorInfo::Supervisor {
                        strategy: SupervisorStrategy::OneForOne,
                    }),
                    children: vec![ActorNode {
                        name: "bus".into(),
                        kind: ActorKind::Worker,
                        state: ActorRunState::Running,
                        restarts: 1,
                        last_error: Some("boom".into()),
                        info: Some(ActorInfo::Bus(BusInfo {
                            topics: 2,
                            subscribers: 2,
                            published: 10,
                            delivered: 10,
                            dropped: 0,
                            rejected: 0,
                        })),
                        children: vec![],
                    }],
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;

    #[test]
    fn control_payloads_round_trip_through_bodies() {
        let request = ControlRequest {
            request_id: "r1".into(),
            command: ControlCommand::AgentRelease {
                agent: "writer".into(),
            },
        };
        let body = Body::from_payload(&request);
        let mut bytes = Vec::new();
        body.encode(&mut bytes);
        let decoded = Body::decode(&bytes, crate::Family::Control).unwrap();
        assert_eq!(decoded.payload_as::<ControlRequest>().unwrap(), request);
        let reply = ControlReply::example();
        let body = Body::from_payload(&reply);
        assert_eq!(body.payload_as::<ControlReply>().unwrap(), reply);
        // A request is not a reply.
        assert_eq!(
            body.payload_as::<ControlRequest>().unwrap_err().name(),
            "BodyTypeMismatch"
        );
    }
}
