//! At-least-once delivery building blocks: the in-flight ledger that survives an actor's
//! restart, and the dead-letter actor where undeliverable messages end with a reason.
//!
//! The agent actor records each invoke in its [`InFlight`] ledger before handing it to its
//! sandbox and completes it when the reply is out. The ledger is created once per agent
//! (outside the actor, captured by its child spec), so when the sandbox dies mid-invoke
//! and the supervisor restarts the actor, the new instance's `pre_start` calls
//! [`InFlight::redeliver`] and hands the same invokes to the fresh sandbox. Keys are the
//! frames' `(trace_id, msg_id)`; a key whose reply already went out is remembered and
//! refused ([`InFlightError::AlreadyDone`]), so a redelivered message never gets a second
//! reply. An invoke charged more than `attempts_max` deliveries (charged: it was running
//! when its sandbox died) is given up and returned for the dead-letter record; nothing is
//! dropped silently.
//!
//! Dead-letter actor lifecycle: `pre_start` starts with no records; it keeps the last
//! [`DEAD_LETTERS_MAX`] records (oldest dropped first, counted). Requests are casts of one
//! record (bounded by the ledger bounds of their senders) or calls whose senders wait.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runloop_proto::{Clock, DedupeCache, DedupeLimits, MsgId, TraceId};
use serde::Serialize;

use crate::names::AgentName;

/// Most invokes in flight per agent.
pub const IN_FLIGHT_MAX: usize = 1_024;
/// Most dead-letter records kept.
pub const DEAD_LETTERS_MAX: usize = 4_096;

/// An invoke's key: its frame's `(trace_id, msg_id)`.
pub type Key = (TraceId, MsgId);

/// Why an invoke could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InFlightError {
    #[error("agent {agent}: {IN_FLIGHT_MAX} invokes already in flight")]
    Full { agent: AgentName },
    #[error("agent {agent}: invoke {trace_id}/{msg_id} is already in flight")]
    AlreadyInFlight {
        agent: AgentName,
        trace_id: TraceId,
        msg_id: MsgId,
    },
    #[error("agent {agent}: invoke {trace_id}/{msg_id} was already answered")]
    AlreadyDone {
        agent: AgentName,
        trace_id: TraceId,
        msg_id: MsgId,
    },
}

struct Entry<T> {
    key: Key,
    item: T,
    attempts: u32,
}

struct Ledger<T> {
    entries: VecDeque<Entry<T>>,
    keys: HashSet<Key>,
    done: DedupeCache,
}

/// One agent's invokes in flight; cheap to clone, shared by the agent's instances.
pub struct InFlight<T> {
    agent: AgentName,
    attempts_max: u32,
    clock: Arc<dyn Clock>,
    ledger: Arc<Mutex<Ledger<T>>>,
}

impl<T> Clone for InFlight<T> {
    fn clone(&self) -> Self {
        Self {
            agent: self.agent.clone(),
            attempts_max: self.attempts_max,
            clock: self.clock.clone(),
            ledger: self.ledger.clone(),
        }
    }
}

impl<T> fmt::Debug for InFlight<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("agent", &self.agent)
            .field("attempts_max", &self.attempts_max)
            .finish_non_exhaustive()
    }
}

/// What [`InFlight::redeliver`] hands back.
#[derive(Debug)]
pub struct Redelivery<T> {
    /// Invokes to hand to the fresh sandbox again, oldest first, with their attempt count.
    pub again: Vec<(TraceId, MsgId, T, u32)>,
    /// Invokes that used up their attempts: record them as dead letters.
    pub exhausted: Vec<(TraceId, MsgId, T)>,
}

impl<T: Clone> InFlight<T> {
    /// A ledger for `agent`; an invoke is delivered at most `attempts_max` times.
    pub fn new(agent: AgentName, attempts_max: u32, clock: Arc<dyn Clock>) -> Self {
        assert!(
            attempts_max >= 1,
            "an invoke must be delivered at least once"
        );
        Self {
            agent,
            attempts_max,
            clock,
            ledger: Arc::new(Mutex::new(Ledger {
                entries: VecDeque::new(),
                keys: HashSet::new(),
                done: DedupeCache::new(DedupeLimits::default()),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger<T>> {
        // A panic while holding the lock cannot leave the ledger half-updated (each
        // method finishes its changes before any call that could panic), so a poisoned
        // lock is still consistent.
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an invoke before its first delivery.
    pub fn begin(&self, trace_id: TraceId, msg_id: MsgId, item: T) -> Result<(), InFlightError> {
        let mut ledger = self.lock();
        let key = (trace_id, msg_id);
        if ledger.keys.contains(&key) {
            return Err(InFlightError::AlreadyInFlight {
                agent: self.agent.clone(),
                trace_id,
                msg_id,
            });
        }
        if ledger.entries.len() >= IN_FLIGHT_MAX {
            return Err(InFlightError::Full {
                agent: self.agent.clone(),
            });
        }
        // `done` remembers every key ever begun (bounded in size and age); `keys` says
        // which of them are still in flight. A key seen before and no longer in flight was
        // answered (or ended as a dead letter): never deliver it again.
        let now_ms = self.clock.now_ms();
        if ledger
            .done
            .check_and_insert(trace_id, msg_id, now_ms)
            .is_err()
        {
            return Err(InFlightError::AlreadyDone {
                agent: self.agent.clone(),
                trace_id,
                msg_id,
            });
        }
        ledger.keys.insert(key);
        ledger.entries.push_back(Entry {
            key,
            item,
            attempts: 1,
        });
        Ok(())
    }

    /// The reply for this invoke is out: forget it (its key stays remembered as done).
    pub fn complete(&self, trace_id: TraceId, msg_id: MsgId) {
        let mut ledger = self.lock();
        let key = (trace_id, msg_id);
        if ledger.keys.remove(&key) {
            // Answers come mostly in arrival order: the oldest entry is the usual one.
            if ledger.entries.front().is_some_and(|e| e.key == key) {
                ledger.entries.pop_front();
            } else {
                ledger.entries.retain(|e| e.key != key);
            }
        }
    }

    /// After a restart: every invoke still in flight, to deliver again, oldest first. Only
    /// the entries `charged` picks (those the dead sandbox was running) are charged an
    /// attempt, and those past their attempts are removed and returned as exhausted: with
    /// invokes pipelined, the ones merely queued behind a crashing message were never
    /// tried, and must not run out of attempts because of it.
    pub fn redeliver(&self, charged: impl Fn(Key) -> bool) -> Redelivery<T> {
        let mut ledger = self.lock();
        let mut out = Redelivery {
            again: Vec::new(),
            exhausted: Vec::new(),
        };
        let attempts_max = self.attempts_max;
        let mut kept = VecDeque::with_capacity(ledger.entries.len());
        while let Some(mut entry) = ledger.entries.pop_front() {
            if charged(entry.key) {
                if entry.attempts >= attempts_max {
                    out.exhausted.push((entry.key.0, entry.key.1, entry.item));
                    continue;
                }
                entry.attempts += 1;
            }
            out.again
                .push((entry.key.0, entry.key.1, entry.item.clone(), entry.attempts));
            kept.push_back(entry);
        }
        for (trace_id, msg_id, _) in &out.exhausted {
            ledger.keys.remove(&(*trace_id, *msg_id));
        }
        ledger.entries = kept;
        out
    }

    /// Removes and returns every invoke still in flight (the agent will not run them:
    /// it was quarantined or stopped). Their keys stay remembered as done.
    pub fn drain(&self) -> Vec<(TraceId, MsgId, T)> {
        let mut ledger = self.lock();
        let entries: Vec<_> = ledger.entries.drain(..).collect();
        ledger.keys.clear();
        entries
            .into_iter()
            .map(|e| (e.key.0, e.key.1, e.item))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a message ended undelivered (closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// Redelivered `attempts` times; the sandbox died every time.
    AttemptsExhausted { attempts: u32, last_error: String },
    /// The agent is quarantined.
    Quarantined { message: String },
    /// The agent's circuit breaker is open.
    BreakerOpen { message: String },
    /// The agent was stopped with the message still queued.
    AgentStopped,
    /// The message's TTL passed before it could be delivered.
    Expired { expires_at_ms: u64 },
}

/// One message that could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub agent: AgentName,
    #[serde(serialize_with = "display")]
    pub trace_id: TraceId,
    #[serde(serialize_with = "display")]
    pub msg_id: MsgId,
    pub reason: DeadLetterReason,
    pub at_ms: u64,
}

fn display<S: serde::Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The dead-letter actor's requests (closed).
#[derive(Debug)]
pub enum DeadLetterMsg {
    Record(DeadLetter),
    /// The records kept (oldest first) and how many older ones were dropped.
    List(RpcReplyPort<(Vec<DeadLetter>, u64)>),
}

/// The dead-letter actor's state.
#[derive(Debug, Default)]
pub struct DeadLetterState {
    records: VecDeque<DeadLetter>,
    dropped: u64,
}

/// The dead-letter actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadLetters;

impl Actor for DeadLetters {
    type Msg = DeadLetterMsg;
    type State = DeadLetterState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<DeadLetterMsg>,
        _: (),
    ) -> Result<DeadLetterState, ActorProcessingErr> {
        Ok(DeadLetterState::default())
    }

    async fn handle(
        &self,
        _: ActorRef<DeadLetterMsg>,
        message: DeadLetterMsg,
        state: &mut DeadLetterState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            DeadLetterMsg::Record(record) => {
                if state.records.len() == DEAD_LETTERS_MAX {
                    state.records.pop_front();
                    state.dropped += 1;
                }
                state.records.push_back(record);
            }
            DeadLetterMsg::List(reply) => {
                let _ = reply.send((state.records.iter().cloned().collect(), state.dropped));
            }
        }
        Ok(())
    }
}
