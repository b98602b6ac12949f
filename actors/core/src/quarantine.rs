//! Quarantine: agents parked with a human-readable reason until a person releases them.
//!
//! An agent is parked when it keeps crashing past its supervisor's restart intensity, or
//! when it sends malformed frames. A parked agent is not restarted: whoever starts or
//! restarts agents asks [`QuarantineHandle::check`] first and refuses a parked one with the
//! record's reason. Only [`QuarantineHandle::release`] (`rlp agent release <name>`) unparks.
//!
//! Lifecycle: `pre_start` starts with no parked agents. The records are kept in the actor's
//! state only; the kernel persists them through the POG when that actor is wired in, so a
//! restart of this actor alone loses nothing the POG has. Mailbox bound: every request is a
//! call whose sender waits.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runloop_proto::Clock;
use serde::Serialize;

use crate::names::AgentName;

/// Most agents parked at once.
pub const QUARANTINE_ENTRIES_MAX: usize = 65_536;
/// Longest detail text kept in a reason, in bytes.
pub const REASON_DETAIL_BYTES_MAX: usize = 512;

/// Why an agent was parked (closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QuarantineReason {
    /// It crashed more often than its supervisor's intensity allows.
    CrashLoop {
        restarts: u32,
        period_ms: u64,
        last_error: String,
    },
    /// It sent a frame that failed validation (`error` is the RMP error name).
    MalformedFrame { error: String, detail: String },
}

impl fmt::Display for QuarantineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuarantineReason::CrashLoop {
                restarts,
                period_ms,
                last_error,
            } => write!(
                f,
                "crashed {restarts} times within {period_ms} ms, more than its supervisor allows; last error: {last_error}"
            ),
            QuarantineReason::MalformedFrame { error, detail } => {
                write!(f, "sent a malformed frame ({error}): {detail}")
            }
        }
    }
}

fn clip(mut text: String) -> String {
    if text.len() > REASON_DETAIL_BYTES_MAX {
        let mut cut = REASON_DETAIL_BYTES_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

impl QuarantineReason {
    fn clipped(self) -> Self {
        match self {
            QuarantineReason::CrashLoop {
                restarts,
                period_ms,
                last_error,
            } => QuarantineReason::CrashLoop {
                restarts,
                period_ms,
                last_error: clip(last_error),
            },
            QuarantineReason::MalformedFrame { error, detail } => {
                QuarantineReason::MalformedFrame {
                    error: clip(error),
                    detail: clip(detail),
                }
            }
        }
    }
}

/// One parked agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineRecord {
    pub agent: AgentName,
    pub reason: QuarantineReason,
    /// The reason as a sentence, for people.
    pub message: String,
    pub parked_at_ms: u64,
}

/// Why a quarantine request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuarantineError {
    #[error("agent {agent} is not quarantined")]
    NotQuarantined { agent: AgentName },
    #[error("quarantine already holds {QUARANTINE_ENTRIES_MAX} agents")]
    Full,
    #[error("quarantine actor is not running")]
    Down,
}

/// The quarantine actor's requests (closed).
#[derive(Debug)]
pub enum QuarantineMsg {
    /// Parks an agent; parking a parked agent keeps the first record.
    Park(
        AgentName,
        QuarantineReason,
        RpcReplyPort<Result<QuarantineRecord, QuarantineError>>,
    ),
    Release(
        AgentName,
        RpcReplyPort<Result<QuarantineRecord, QuarantineError>>,
    ),
    Check(AgentName, RpcReplyPort<Option<QuarantineRecord>>),
    List(RpcReplyPort<Vec<QuarantineRecord>>),
}

/// The quarantine actor's state.
pub struct QuarantineState {
    clock: Arc<dyn Clock>,
    parked: BTreeMap<AgentName, QuarantineRecord>,
}

impl fmt::Debug for QuarantineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuarantineState")
            .field("parked", &self.parked.len())
            .finish_non_exhaustive()
    }
}

/// The quarantine actor; started with the clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quarantine;

impl Actor for Quarantine {
    type Msg = QuarantineMsg;
    type State = QuarantineState;
    type Arguments = Arc<dyn Clock>;

    async fn pre_start(
        &self,
        _myself: ActorRef<QuarantineMsg>,
        clock: Arc<dyn Clock>,
    ) -> Result<QuarantineState, ActorProcessingErr> {
        Ok(QuarantineState {
            clock,
            parked: BTreeMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<QuarantineMsg>,
        message: QuarantineMsg,
        state: &mut QuarantineState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            QuarantineMsg::Park(agent, reason, reply) => {
                let result = if let Some(record) = state.parked.get(&agent) {
                    Ok(record.clone())
                } else if state.parked.len() == QUARANTINE_ENTRIES_MAX {
                    Err(QuarantineError::Full)
                } else {
                    let reason = reason.clipped();
                    let record = QuarantineRecord {
                        agent: agent.clone(),
                        message: format!("agent {agent} is quarantined: {reason}"),
                        reason,
                        parked_at_ms: state.clock.now_ms(),
                    };
                    state.parked.insert(agent, record.clone());
                    Ok(record)
                };
                let _ = reply.send(result);
            }
            QuarantineMsg::Release(agent, reply) => {
                let result = state
                    .parked
                    .remove(&agent)
                    .ok_or(QuarantineError::NotQuarantined { agent });
                let _ = reply.send(result);
            }
            QuarantineMsg::Check(agent, reply) => {
                let _ = reply.send(state.parked.get(&agent).cloned());
            }
            QuarantineMsg::List(reply) => {
                let _ = reply.send(state.parked.values().cloned().collect());
            }
        }
        Ok(())
    }
}

/// How long a caller waits for the quarantine actor.
pub const QUARANTINE_CALL_TIMEOUT_MS: u64 = 5_000;

/// A cloneable client of the quarantine actor.
#[derive(Debug, Clone)]
pub struct QuarantineHandle {
    actor: ActorRef<QuarantineMsg>,
}

impl QuarantineHandle {
    pub fn new(actor: ActorRef<QuarantineMsg>) -> Self {
        Self { actor }
    }

    pub fn actor(&self) -> &ActorRef<QuarantineMsg> {
        &self.actor
    }

    async fn ask<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> QuarantineMsg,
    ) -> Option<T> {
        let timeout = Some(Duration::from_millis(QUARANTINE_CALL_TIMEOUT_MS));
        match self.actor.call(msg, timeout).await {
            Ok(ractor::rpc::CallResult::Success(value)) => Some(value),
            _ => None,
        }
    }

    pub async fn park(
        &self,
        agent: &AgentName,
        reason: QuarantineReason,
    ) -> Result<QuarantineRecord, QuarantineError> {
        let agent = agent.clone();
        self.ask(|r| QuarantineMsg::Park(agent, reason, r))
            .await
            .unwrap_or(Err(QuarantineError::Down))
    }

    pub async fn release(&self, agent: &AgentName) -> Result<QuarantineRecord, QuarantineError> {
        let agent = agent.clone();
        self.ask(|r| QuarantineMsg::Release(agent, r))
            .await
            .unwrap_or(Err(QuarantineError::Down))
    }

    pub async fn check(
        &self,
        agent: &AgentName,
    ) -> Result<Option<QuarantineRecord>, QuarantineError> {
        let agent = agent.clone();
        self.ask(|r| QuarantineMsg::Check(agent, r))
            .await
            .ok_or(QuarantineError::Down)
    }

    pub async fn list(&self) -> Result<Vec<QuarantineRecord>, QuarantineError> {
        self.ask(QuarantineMsg::List)
            .await
            .ok_or(QuarantineError::Down)
    }
}
