//! Payloads of the protocol's own kinds: error reports, drop notices, ping/pong.

use serde::{Deserialize, Serialize};

use crate::ids::{MsgId, TraceId};
use crate::registry::PayloadExample;

/// `error.report.v1`: a failure returned to the peer in place of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReport {
    /// A stable, machine-readable name (e.g. an RMP error name or `CapabilityDenied`).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

impl PayloadExample for ErrorReport {
    fn example() -> Self {
        ErrorReport {
            code: "CapabilityDenied".into(),
            message: "agent writer may not call kb.write_event".into(),
        }
    }
}

/// Why a frame was dropped (closed: each is counted separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DropReason {
    Expired,
    Duplicate,
    BackPressureTimeout,
    NoSubscriber,
}

/// `event.drop.v1`: the notice published on `rlp/sys/drops` for every (rate-limited) drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropNotice {
    pub reason: DropReason,
    pub topic: String,
    #[serde(with = "hex_trace_id")]
    pub trace_id: TraceId,
    #[serde(with = "hex_msg_id")]
    pub msg_id: MsgId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

impl PayloadExample for DropNotice {
    fn example() -> Self {
        DropNotice {
            reason: DropReason::Expired,
            topic: "agent/writer/in".into(),
            trace_id: TraceId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            msg_id: MsgId(7),
            expires_at_ms: Some(1_763_766_000_000),
        }
    }
}

/// `control.ping.v1`: a liveness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    pub seq: u64,
}

impl PayloadExample for Ping {
    fn example() -> Self {
        Ping { seq: 1 }
    }
}

/// `control.pong.v1`: the answer to a ping, echoing its `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pong {
    pub seq: u64,
}

impl PayloadExample for Pong {
    fn example() -> Self {
        Pong { seq: 1 }
    }
}

/// Serde for a [`TraceId`] as 32 lowercase hex digits.
pub mod hex_trace_id {
    use super::TraceId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(id: &TraceId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TraceId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

/// Serde for a [`MsgId`] as 16 lowercase hex digits.
pub mod hex_msg_id {
    use super::MsgId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(id: &MsgId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MsgId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}
