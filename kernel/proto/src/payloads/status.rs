//! Typed status: what each actor of a kernel is doing, as data. `rlp status` and agtop turn
//! it into text at the edge; the kernel never formats it. Streamed by the control plane's
//! `subscribe` command as `event.status.v1` (a whole snapshot), `event.status_delta.v1`
//! (the next snapshot as what changed, [`super::StatusDelta`]) and `event.run.v1` (one
//! change seen between two snapshots).

use serde::{Deserialize, Serialize};

use super::control::{ActorKind, ActorNode, ActorRunState, AgentStatus};
use crate::registry::PayloadExample;

/// An actor's own figures, by what the actor is (closed).
// A wire payload: one per actor in a snapshot, read once and dropped; boxing the agent
// variant would cost an allocation per agent per snapshot to save stack space nobody uses.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActorInfo {
    /// A supervisor and its restart strategy.
    Supervisor { strategy: SupervisorStrategy },
    /// The bus's counters.
    Bus(BusInfo),
    /// The scheduler's permits and queue.
    Scheduler(SchedulerInfo),
    /// How many agents are parked.
    Quarantine { parked: u64 },
    /// The dead-letter records kept, and how many older ones were dropped.
    DeadLetters { records: u64, dropped: u64 },
    /// The kernel process itself (the `metrics` actor's sample), and its warm sandbox
    /// pool when it keeps one.
    Kernel {
        cpu_ms: u64,
        rss_kb: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warm: Option<WarmInfo>,
    },
    /// An agent: state, sandbox pid, CPU, RSS, messages, errors, restarts, breaker,
    /// quarantine.
    Agent(AgentStatus),
    /// A slot this kernel leaves empty (embedded mode: `runloopd` starts the POG and the
    /// broker).
    EmptySlot,
}

/// A supervisor's restart strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupervisorStrategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

/// The bus's counters since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusInfo {
    pub topics: u64,
    pub subscribers: u64,
    pub published: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub rejected: u64,
}

/// The warm sandbox pool (`runtime.warm_sandboxes`): waiting now, and what happened to
/// starts and sandboxes since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmInfo {
    /// Sandboxes waiting now.
    pub waiting: u64,
    /// Agent starts that took a waiting sandbox.
    pub taken: u64,
    /// Agent starts that found none for their bundle (a sandbox was spawned).
    pub missed: u64,
    /// Sandboxes given back by instances that stopped.
    pub given: u64,
    /// Spares spawned in the background.
    pub spares: u64,
    /// Ended unused after their idle time, or found dead or busy when taken.
    pub expired: u64,
    /// Ended to give their room to a bundle with fewer waiting.
    pub evicted: u64,
    /// Ended for want of room: given back, or spawned as a spare, while the pool was full
    /// (of its own bundle's). Growing together with `missed`, it says the pool is smaller
    /// than the load needs (`runtime.warm_sandboxes`).
    pub refused: u64,
}

impl WarmInfo {
    /// Every counter with the label `rlp status` and agtop print it under, in their order.
    pub fn counters(&self) -> [(&'static str, u64); 8] {
        [
            ("waiting", self.waiting),
            ("taken", self.taken),
            ("missed", self.missed),
            ("given back", self.given),
            ("spares", self.spares),
            ("expired", self.expired),
            ("evicted", self.evicted),
            ("refused", self.refused),
        ]
    }

    /// The counters as `label n`, joined by `sep` (agtop: two spaces, `rlp status`: ", ").
    pub fn summary(&self, sep: &str) -> String {
        let parts: Vec<String> = self
            .counters()
            .iter()
            .map(|(label, n)| format!("{label} {n}"))
            .collect();
        parts.join(sep)
    }
}

/// The scheduler's permits in use, its bound, its queue and how many openings it tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerInfo {
    pub running: u64,
    pub concurrency_max: u64,
    pub queued: u64,
    pub openings: u64,
}

/// `event.status.v1`: one whole status snapshot of a kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusSnapshot {
    /// The daemon's count of the snapshots it took for its `subscribe` streams (shared
    /// by all of them, from 1 when the first stream starts the sampler): it goes up along
    /// a stream, by one per snapshot or more where the stream skipped some.
    pub seq: u64,
    /// When it was taken, by the kernel's clock (ms since the Unix epoch).
    pub taken_at_ms: u64,
    /// When the agents' CPU and RSS in it were read from `/proc`, by the same clock: the
    /// kernel reads them at most once per sampling period (1 s) and reuses them in the
    /// snapshots between, so CPU % is a rate between two different `usage_at_ms`. 0: the
    /// same as `taken_at_ms` (a sender that does not say).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage_at_ms: u64,
    /// The supervisor tree, each node with its typed [`ActorInfo`].
    pub tree: ActorNode,
    /// Agents left out of `tree` so the snapshot fits one control frame (1 MiB).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub agents_cut: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PayloadExample for StatusSnapshot {
    fn example() -> Self {
        StatusSnapshot {
            seq: 3,
            agents_cut: 0,
            taken_at_ms: 1_763_766_000_000,
            usage_at_ms: 1_763_766_000_000,
            tree: ActorNode {
                name: "metrics".into(),
                kind: ActorKind::Worker,
                state: ActorRunState::Running,
                restarts: 0,
                last_error: None,
                info: Some(ActorInfo::Kernel {
                    cpu_ms: 120,
                    rss_kb: 51_200,
                    warm: Some(WarmInfo {
                        waiting: 4,
                        taken: 120,
                        missed: 9,
                        given: 118,
                        spares: 11,
                        expired: 2,
                        evicted: 1,
                        refused: 3,
                    }),
                }),
                children: vec![],
            },
        }
    }
}

/// `event.run.v1`: one change in what a kernel runs, seen between two snapshots (closed).
///
/// There are no runs (openings) yet, so these are the agent lifecycle changes that exist
/// today; run-level events join this enum when runs do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// An agent appeared.
    AgentStarted { agent: String },
    /// An agent is gone (stopped, or its kernel forgot it).
    AgentStopped { agent: String },
    /// An agent's sandbox was restarted; `restarts` is its new total.
    AgentRestarted { agent: String, restarts: u64 },
    /// An agent was parked in quarantine.
    AgentQuarantined { agent: String, reason: String },
    /// A quarantined agent was released.
    AgentReleased { agent: String },
}

impl PayloadExample for RunEvent {
    fn example() -> Self {
        RunEvent::AgentRestarted {
            agent: "writer".into(),
            restarts: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;

    /// `counters` names every field once, each with its own value.
    #[test]
    fn warm_counters_cover_every_field() {
        let w = WarmInfo {
            waiting: 1,
            taken: 2,
            missed: 3,
            given: 4,
            spares: 5,
            expired: 6,
            evicted: 7,
            refused: 8,
        };
        let values: Vec<u64> = w.counters().iter().map(|(_, n)| *n).collect();
        assert_eq!(values, (1..=8).collect::<Vec<u64>>());
        assert_eq!(
            w.summary(", "),
            "waiting 1, taken 2, missed 3, given back 4, spares 5, expired 6, evicted 7, \
             refused 8"
        );
        let json = serde_json::to_value(w).unwrap();
        assert_eq!(json.as_object().unwrap().len(), w.counters().len());
    }

    /// Every info variant, the agent's nested struct included, survives the wire.
    #[test]
    fn typed_status_round_trips_through_bodies() {
        let agent = AgentStatus {
            name: "writer".into(),
            bundle: "/b".into(),
            state: "running".into(),
            sandbox_pid: Some(42),
            restarts: 1,
            breaker: "closed".into(),
            cpu_ms: 3,
            rss_kb: 4,
            messages_in: 5,
            messages_out: 6,
            errors: 7,
            ..AgentStatus::default()
        };
        let infos = [
            ActorInfo::Supervisor {
                strategy: SupervisorStrategy::RestForOne,
            },
            ActorInfo::Quarantine { parked: 2 },
            ActorInfo::DeadLetters {
                records: 1,
                dropped: 9,
            },
            ActorInfo::Scheduler(SchedulerInfo {
                running: 1,
                concurrency_max: 8,
                queued: 0,
                openings: 1,
            }),
            ActorInfo::Agent(agent),
            ActorInfo::EmptySlot,
        ];
        for info in infos {
            let mut snapshot = StatusSnapshot::example();
            snapshot.tree.info = Some(info);
            let body = Body::from_payload(&snapshot);
            assert_eq!(body.payload_as::<StatusSnapshot>().unwrap(), snapshot);
        }
        let event = RunEvent::AgentQuarantined {
            agent: "writer".into(),
            reason: "crash loop".into(),
        };
        let body = Body::from_payload(&event);
        assert_eq!(body.payload_as::<RunEvent>().unwrap(), event);
    }
}
