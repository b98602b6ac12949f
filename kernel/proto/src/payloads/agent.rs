//! The agent contract's data: what an agent receives, emits and asks the kernel for.
//!
//! These types are shared by three parties: the guest SDK (compiled to wasm), the
//! sandbox-host (which shuttles bytes between guest and kernel) and the kernel (which
//! checks capabilities and answers). Inside the guest ABI they travel as MsgPack with named
//! fields (see `docs/agent-abi.md`); between sandbox-host and kernel they ride in RMP frames.

use serde::{Deserialize, Serialize};

use crate::registry::PayloadExample;

/// Most bytes of one output payload, as a default limit.
pub const OUTPUT_BYTES_MAX_DEFAULT: u32 = 1024 * 1024;
/// Most bytes `random.bytes` returns per call.
pub const RANDOM_BYTES_MAX: u32 = 4096;
/// How an agent marks its failure worth another attempt: the message it hands to
/// `runloop.fail` starts with this (the SDK's `AgentError::retryable` writes it). Parsed
/// once, where the kernel classifies an invoke's error.
pub const RETRYABLE_PREFIX: &str = "retryable: ";

/// The message handed to an agent's `handle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    /// The input port the message arrived on (`in` by default).
    pub port: String,
    /// The message itself, any MsgPack value.
    pub payload: rmpv::Value,
}

impl PayloadExample for AgentInput {
    fn example() -> Self {
        AgentInput {
            port: "in".into(),
            payload: rmpv::Value::Map(vec![("text".into(), "hello".into())]),
        }
    }
}

/// One message an agent emits while handling an input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentOutput {
    /// The output port (`out` by default).
    pub port: String,
    pub payload: rmpv::Value,
}

impl PayloadExample for AgentOutput {
    fn example() -> Self {
        AgentOutput {
            port: "out".into(),
            payload: rmpv::Value::Map(vec![("text".into(), "hello".into())]),
        }
    }
}

/// A message to an agent as it crosses the kernel's bus, on the agent's inbox topic
/// (`agent/<run>/<name>/in`); the answer goes to `reply_topic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDelivery {
    pub input: AgentInput,
    pub reply_topic: String,
}

impl PayloadExample for AgentDelivery {
    fn example() -> Self {
        AgentDelivery {
            input: AgentInput::example(),
            reply_topic: "kernel/replies".into(),
        }
    }
}

/// Why an agent gave no outputs for a message (closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentFailureKind {
    BreakerOpen,
    Quarantined,
    Guest,
    AttemptsExhausted,
    Stopped,
    Refused,
    NoSuchAgent,
    NotRunning,
    Timeout,
}

/// An agent's failure as it crosses the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFailure {
    pub kind: AgentFailureKind,
    pub agent: String,
    pub message: String,
    /// Deliveries made (for `attempts_exhausted`), or the time waited in ms (`timeout`).
    pub count: u64,
    /// Another attempt may succeed (spec: guest trap, time limit, sandbox lost, or an
    /// error the agent marked retryable); capability denials, invalid input and a person's
    /// "no" are not.
    pub retryable: bool,
}

/// An agent's answer to one [`AgentDelivery`], published on its reply topic with the
/// delivery's trace id and message id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentAnswer {
    pub outputs: Vec<AgentOutput>,
    pub attempt: u32,
    pub round_trip_us: u64,
    pub stdout: String,
    pub stderr: String,
    pub failure: Option<AgentFailure>,
}

impl PayloadExample for AgentAnswer {
    fn example() -> Self {
        AgentAnswer {
            outputs: vec![AgentOutput::example()],
            attempt: 1,
            round_trip_us: 120,
            stdout: String::new(),
            stderr: String::new(),
            failure: None,
        }
    }
}

/// Severity of a `log` host call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// One chat message for `model.complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// A request from the guest to the kernel. Closed: the `op` tag names the host call.
/// The kernel, never the sandbox, decides whether the agent's capabilities allow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "args", deny_unknown_fields)]
pub enum HostCall {
    /// The current time in Unix epoch milliseconds (recorded for replay).
    #[serde(rename = "clock.now")]
    ClockNow,
    /// `len` random bytes, at most [`RANDOM_BYTES_MAX`] (recorded for replay).
    #[serde(rename = "random.bytes")]
    RandomBytes { len: u32 },
    /// A log line, counted against the agent's log byte limit.
    #[serde(rename = "log")]
    Log { level: LogLevel, message: String },
    /// A chat completion through the model broker.
    #[serde(rename = "model.complete")]
    ModelComplete {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        messages: Vec<ChatMessage>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_tokens: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        temperature: Option<f32>,
    },
    /// Embeddings through the model broker, one vector per input text.
    #[serde(rename = "model.embed")]
    ModelEmbed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        input: Vec<String>,
    },
    /// Read-only SQL against the POG.
    #[serde(rename = "kb.query")]
    KbQuery {
        sql: String,
        #[serde(default)]
        params: Vec<rmpv::Value>,
    },
    /// Appends one event to the POG.
    #[serde(rename = "kb.write_event")]
    KbWriteEvent {
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        payload: rmpv::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// Asks a person to confirm an action; blocks until they answer or time runs out.
    #[serde(rename = "confirm.request")]
    ConfirmRequest { action: String, summary: String },
    /// A side effect performed by the kernel through one of its executors (`mail.send`,
    /// `artifact.save`, …), exactly once per `(run, node, idempotency_key)`. Effects of
    /// class send/delete/spend wait for a person's yes bound to the payload's hash.
    #[serde(rename = "effect.perform")]
    EffectPerform {
        kind: String,
        payload: rmpv::Value,
        idempotency_key: String,
    },
}

impl HostCall {
    /// The op name, as capabilities and traces name it.
    pub fn op(&self) -> &'static str {
        match self {
            HostCall::ClockNow => "clock.now",
            HostCall::RandomBytes { .. } => "random.bytes",
            HostCall::Log { .. } => "log",
            HostCall::ModelComplete { .. } => "model.complete",
            HostCall::ModelEmbed { .. } => "model.embed",
            HostCall::KbQuery { .. } => "kb.query",
            HostCall::KbWriteEvent { .. } => "kb.write_event",
            HostCall::ConfirmRequest { .. } => "confirm.request",
            HostCall::EffectPerform { .. } => "effect.perform",
        }
    }
}

impl PayloadExample for HostCall {
    fn example() -> Self {
        HostCall::KbQuery {
            sql: "SELECT name, email FROM contacts WHERE name = ?1".into(),
            params: vec!["Ada".into()],
        }
    }
}

/// Why a host call failed (closed; the guest SDK turns it into a typed error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HostErrorCode {
    /// The agent's capabilities do not allow this call.
    CapabilityDenied,
    /// No service can answer in this mode (e.g. `rlp agent invoke` without a kernel).
    NotAvailable,
    /// The request was malformed or out of bounds.
    InvalidRequest,
    /// A per-invoke limit (host calls, log bytes) was reached.
    LimitExceeded,
    /// The service tried and failed.
    Failed,
    /// The person declined or did not answer in time.
    Declined,
    /// The call waits for a person's decision: the kernel ends this attempt and invokes the
    /// node again once the person has answered (the agent needs to do nothing special;
    /// returning the error is enough).
    ConfirmationPending,
    /// An effect was started before a crash and its outcome is not known; it is never
    /// redone silently (see the effects journal).
    OutcomeUnknown,
}

/// The kernel's answer to a [`HostCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum HostReply {
    /// The call's result; its shape depends on the op (see `docs/agent-abi.md`).
    #[serde(rename = "ok")]
    Ok(rmpv::Value),
    #[serde(rename = "err")]
    Err {
        code: HostErrorCode,
        message: String,
    },
}

impl PayloadExample for HostReply {
    fn example() -> Self {
        HostReply::Err {
            code: HostErrorCode::NotAvailable,
            message: "kb.query is not available in this mode (no kernel)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_calls_are_tagged_by_op() {
        let call = HostCall::RandomBytes { len: 16 };
        let bytes = rmp_serde::to_vec_named(&call).unwrap();
        let value = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
        let map = value.as_map().unwrap();
        assert_eq!(map[0].0.as_str(), Some("op"));
        assert_eq!(map[0].1.as_str(), Some("random.bytes"));
        let back: HostCall = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, call);
        assert_eq!(back.op(), "random.bytes");

        let unit = rmp_serde::to_vec_named(&HostCall::ClockNow).unwrap();
        assert_eq!(
            rmp_serde::from_slice::<HostCall>(&unit).unwrap(),
            HostCall::ClockNow
        );
    }

    #[test]
    fn unknown_ops_are_refused() {
        let value = rmpv::Value::Map(vec![
            ("op".into(), "fs.read".into()),
            ("args".into(), rmpv::Value::Map(vec![])),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        assert!(rmp_serde::from_slice::<HostCall>(&bytes).is_err());
    }
}
