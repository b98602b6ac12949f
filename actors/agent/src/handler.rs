//! The kernel's answer to an agent's host calls: capabilities first, then the service.
//!
//! Every call is checked here, before any service sees it: against the newest capability
//! grant in force for its op (`rlp cap grant`, [`GrantBook`]), else the agent's
//! `policy.caps`. A denied call gets `CapabilityDenied` with the reason, the rule that
//! denied it (a grant or a policy line) and how to allow it, and leaves an audit
//! record: a `cap.audit` event in the POG when the POG actor runs, else a log line; either
//! way it is counted in the agent's metrics. Allowed calls go to: the injected clock and
//! random source (`clock.now`, `random.bytes`, `log`, via [`LocalHandler`]), the POG
//! actor (`kb.query`, `kb.write_event`), the model broker actor (`model.*`, see
//! [`crate::models`]), the kernel's confirmation gate (`confirm.request` and every
//! `confirm=required` grant: [`ConfirmGate`]; a kernel without it declines) or its effects
//! journal (`effect.perform`: [`EffectsJournal`]). A service whose actor is not running
//! answers `NotAvailable`. Every service is reached through the typed handles in [`Services`],
//! handed in at boot; nothing on this path looks an actor up by name.
//!
//! Runs on the agent's driver thread (see [`crate::driver`]); POG and broker calls are
//! awaited with the runtime handle captured when the driver started. The driver does not
//! use this handler bare: it asks the agent's [`crate::decorate::HandlerFactory`] to wrap
//! it (recording, replay, fault injection), and the capability check stays here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::ActorRef;
use runloop_actors::supervisor::Slot;
use runloop_broker::BrokerMsg;
use runloop_bundle::caps::{Policy, Verdict};
use runloop_bundle::grants::GrantBook;
use runloop_pog_actor::PogMsg;
use runloop_proto::json::{json_to_msgpack, msgpack_to_json};
use runloop_proto::payloads::{
    ConfirmResult, HostCall, HostErrorCode, HostReply, KbQueryResult, KbWriteEventResult,
};
use runloop_proto::{Clock, TraceId};
use runloop_sandbox::{CallSite, HostCallHandler, LocalHandler, RandomSource};
use serde_json::json;

use crate::metrics::AgentMetrics;

/// How long a host call waits for the POG actor.
pub const POG_CALL_TIMEOUT_MS: u64 = 5_000;

/// The injected clock, shared by every agent of a kernel.
#[derive(Debug, Clone)]
pub struct SharedClock(pub Arc<dyn Clock>);

impl Clock for SharedClock {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
}

/// The injected random source, shared by every agent of a kernel.
#[derive(Clone)]
pub struct SharedRandom(pub Arc<Mutex<dyn RandomSource + Send>>);

impl std::fmt::Debug for SharedRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedRandom")
    }
}

impl RandomSource for SharedRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).fill(buf);
    }
}

/// What the confirmation gate says about a host call that needs a person's yes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// A person said yes to exactly this call.
    Approved,
    /// Nobody has answered yet: the call answers `ConfirmationPending` with this text, and
    /// the run invokes the node again once a person decides.
    Pending(String),
    /// A person (or a flag, or the timeout) said no; the text says who and why.
    Declined(String),
}

/// A person's yes or no for a host call that needs one (`confirm.request`, grants with
/// `confirm=required`), from the kernel's confirmation gate.
pub trait ConfirmGate: Send + Sync + std::fmt::Debug {
    /// The decision on `call`, made at `site` (asking for one when there is none yet).
    fn decide(&self, site: &CallSite<'_>, call: &HostCall) -> Confirmation;
}

/// Exactly-once side effects (intent before, result after), through the kernel's
/// executors and, where the effect needs it, the confirmation gate.
pub trait EffectsJournal: Send + Sync + std::fmt::Debug {
    /// Performs (or recalls the recorded result of) one `effect.perform` asked for at
    /// `site`; `grant_confirms` when the agent's grant says `confirm=required`.
    fn perform(&self, site: &CallSite<'_>, call: &HostCall, grant_confirms: bool) -> HostReply;
}

/// Every service a host call can reach, as typed handles handed in at boot: the kernel's
/// injected clock and randomness, the POG and broker singletons' slots (empty when the
/// kernel runs without them), and the seams of the confirmation gate and effects journal.
#[derive(Debug, Clone)]
pub struct Services {
    pub clock: SharedClock,
    pub random: SharedRandom,
    pub pog: Slot<PogMsg>,
    pub broker: Slot<BrokerMsg>,
    /// The budgets of the runs in progress, for `model.*` calls.
    pub budgets: crate::budgets::RunBudgets,
    pub confirm: Option<Arc<dyn ConfirmGate>>,
    pub effects: Option<Arc<dyn EffectsJournal>>,
    /// The capability grants in force (`rlp cap grant`), checked before each bundle's
    /// own policy on every call.
    pub grants: GrantBook,
}

impl Services {
    /// Clock and randomness only; every other service empty.
    pub fn local(clock: SharedClock, random: SharedRandom) -> Self {
        Self {
            clock,
            random,
            pog: Slot::default(),
            broker: Slot::default(),
            budgets: crate::budgets::RunBudgets::default(),
            confirm: None,
            effects: None,
            grants: GrantBook::default(),
        }
    }
}

/// Answers one agent's host calls.
#[derive(Debug)]
pub struct KernelHandler<'a> {
    /// The bundle's name: what capability grants are keyed by.
    pub bundle: &'a str,
    pub policy: &'a Policy,
    pub services: &'a Services,
    pub metrics: &'a AgentMetrics,
    pub runtime: tokio::runtime::Handle,
    pub local: LocalHandler<SharedClock, SharedRandom>,
}

pub(crate) fn err(code: HostErrorCode, message: String) -> HostReply {
    HostReply::Err { code, message }
}

pub(crate) fn ok<T: serde::Serialize>(value: &T) -> HostReply {
    let bytes = rmp_serde::to_vec_named(value).expect("result structs serialise");
    let value = rmpv::decode::read_value(&mut bytes.as_slice()).expect("just encoded");
    HostReply::Ok(value)
}

impl HostCallHandler for KernelHandler<'_> {
    fn handle(&mut self, site: &CallSite<'_>, call: HostCall) -> HostReply {
        let op = call.op();
        let agent = site.agent;
        let trace_hex = trace_text(site.trace_id);
        // The newest grant in force for this op decides, else the bundle's policy.caps.
        let policy: &Policy = self.policy;
        let now_ms = self.services.clock.now_ms();
        match self
            .services
            .grants
            .check(self.bundle, policy, &call, now_ms)
        {
            Err(refusal) => {
                let reason = refusal.to_string();
                self.audit_denied(agent, op, &reason, &trace_hex);
                err(
                    HostErrorCode::CapabilityDenied,
                    format!("{op} denied for agent {agent}: {reason}"),
                )
            }
            Ok((verdict, _)) if matches!(call, HostCall::EffectPerform { .. }) => {
                match &self.services.effects {
                    Some(effects) => {
                        effects.perform(site, &call, verdict == Verdict::AllowedAfterConfirm)
                    }
                    None => err(
                        HostErrorCode::NotAvailable,
                        "effect.perform is not available: this kernel runs without the \
                         effects service (it needs the POG)"
                            .into(),
                    ),
                }
            }
            Ok((Verdict::AllowedAfterConfirm, effective)) => match self.confirmation(site, &call) {
                Confirmation::Approved => self.allowed(site, call, effective.policy(), &trace_hex),
                Confirmation::Pending(message) => err(HostErrorCode::ConfirmationPending, message),
                Confirmation::Declined(message) => {
                    err(HostErrorCode::Declined, format!("{op} declined: {message}"))
                }
            },
            Ok((Verdict::Allowed, effective)) => {
                self.allowed(site, call, effective.policy(), &trace_hex)
            }
        }
    }
}

fn trace_text(trace: TraceId) -> String {
    if trace == TraceId::default() {
        String::new()
    } else {
        trace.to_string()
    }
}

impl KernelHandler<'_> {
    fn confirmation(&self, site: &CallSite<'_>, call: &HostCall) -> Confirmation {
        match &self.services.confirm {
            Some(gate) => gate.decide(site, call),
            None => Confirmation::Declined(format!(
                "{} needs a person's yes and this kernel runs without the confirmation \
                 gate (it needs the POG)",
                call.op()
            )),
        }
    }

    fn pog(&self) -> Option<ActorRef<PogMsg>> {
        self.services.pog.get()
    }

    /// Who makes a model call, for the broker's accounting and budgets: the agent, and the
    /// run's budgets when the call belongs to a node of a run that has some.
    fn call_context(&self, site: &CallSite<'_>) -> runloop_broker::CallContext {
        runloop_broker::CallContext {
            agent: Some(site.agent.to_owned()),
            run: self.services.budgets.for_call(site.trace_id, site.agent),
            ..runloop_broker::CallContext::default()
        }
    }

    /// Answers an allowed call; `policy` is the one that allowed it (a grant's line or
    /// the bundle's), which also bounds what a `kb.query` may read.
    fn allowed(
        &mut self,
        site: &CallSite<'_>,
        call: HostCall,
        policy: &Policy,
        trace_hex: &str,
    ) -> HostReply {
        let agent = site.agent;
        match call {
            HostCall::ClockNow | HostCall::RandomBytes { .. } | HostCall::Log { .. } => {
                self.local.handle(site, call)
            }
            HostCall::ModelComplete {
                model,
                messages,
                max_tokens,
                temperature,
            } => crate::models::complete(
                &self.runtime,
                self.services.broker.get(),
                self.call_context(site),
                model,
                messages,
                max_tokens,
                temperature,
            ),
            HostCall::ModelEmbed { model, input } => crate::models::embed(
                &self.runtime,
                self.services.broker.get(),
                self.call_context(site),
                model,
                input,
            ),
            // The person's answer is the result: asked through the gate, `approved: false`
            // when they (or the timeout) said no.
            HostCall::ConfirmRequest { .. } => match self.confirmation(site, &call) {
                Confirmation::Approved => ok(&ConfirmResult { approved: true }),
                Confirmation::Declined(_) => ok(&ConfirmResult { approved: false }),
                Confirmation::Pending(message) => err(HostErrorCode::ConfirmationPending, message),
            },
            HostCall::EffectPerform { .. } => err(
                HostErrorCode::NotAvailable,
                "effect.perform is answered by the effects service".into(),
            ),
            HostCall::KbQuery { sql, params } => self.kb_query(sql, params, policy),
            HostCall::KbWriteEvent {
                kind,
                scope,
                payload,
                idempotency_key,
            } => self.kb_write(agent, &kind, scope, &payload, idempotency_key, trace_hex),
        }
    }

    fn kb_query(&self, sql: String, params: Vec<rmpv::Value>, policy: &Policy) -> HostReply {
        let Some(pog) = self.pog() else {
            return err(
                HostErrorCode::NotAvailable,
                "kb.query is not available: the POG actor is not running".into(),
            );
        };
        // `allow kb.query scopes=…` limits the rows the POG lets the query see.
        let scopes = match policy.kb_query_scopes() {
            Ok(None) => None,
            Ok(Some(names)) => match names.iter().map(|s| runloop_pog::Scope::new(s)).collect() {
                Ok(scopes) => Some(scopes),
                Err(e) => return err(HostErrorCode::Failed, format!("kb.query: policy: {e}")),
            },
            Err(denied) => return err(HostErrorCode::CapabilityDenied, denied.to_string()),
        };
        let params = params.iter().map(msgpack_to_json).collect();
        let timeout = Some(Duration::from_millis(POG_CALL_TIMEOUT_MS));
        let answer = self
            .runtime
            .block_on(pog.call(|r| PogMsg::Query(sql, params, scopes, r), timeout));
        match answer {
            Ok(ractor::rpc::CallResult::Success(Ok(result))) => {
                let rows = result
                    .rows
                    .iter()
                    .map(|row| {
                        row.iter()
                            .map(|v| json_to_msgpack(v, "row").unwrap_or(rmpv::Value::Nil))
                            .collect()
                    })
                    .collect();
                ok(&KbQueryResult {
                    columns: result.columns,
                    rows,
                })
            }
            Ok(ractor::rpc::CallResult::Success(Err(e))) => {
                err(HostErrorCode::InvalidRequest, format!("kb.query: {e}"))
            }
            _ => err(
                HostErrorCode::Failed,
                "kb.query: the POG actor did not answer".into(),
            ),
        }
    }

    fn kb_write(
        &self,
        agent: &str,
        kind: &str,
        scope: Option<String>,
        payload: &rmpv::Value,
        idempotency_key: Option<String>,
        trace_hex: &str,
    ) -> HostReply {
        let Some(pog) = self.pog() else {
            return err(
                HostErrorCode::NotAvailable,
                "kb.write_event is not available: the POG actor is not running".into(),
            );
        };
        let event = match self.new_event(agent, kind, scope, payload, idempotency_key, trace_hex) {
            Ok(event) => event,
            Err(message) => return err(HostErrorCode::InvalidRequest, message),
        };
        let timeout = Some(Duration::from_millis(POG_CALL_TIMEOUT_MS));
        let answer = self
            .runtime
            .block_on(pog.call(|r| PogMsg::Write(vec![event], r), timeout));
        match answer {
            Ok(ractor::rpc::CallResult::Success(Ok(mut written))) if written.len() == 1 => {
                let event = written.remove(0).event;
                ok(&KbWriteEventResult {
                    seq: event.seq,
                    hash: hex::encode(event.hash.0),
                })
            }
            Ok(ractor::rpc::CallResult::Success(Err(e))) => {
                err(HostErrorCode::Failed, format!("kb.write_event: {e}"))
            }
            _ => err(
                HostErrorCode::Failed,
                "kb.write_event: the POG actor did not answer".into(),
            ),
        }
    }

    fn new_event(
        &self,
        agent: &str,
        kind: &str,
        scope: Option<String>,
        payload: &rmpv::Value,
        idempotency_key: Option<String>,
        trace_hex: &str,
    ) -> Result<runloop_pog::NewEvent, String> {
        let kind = runloop_pog::EventKind::parse(kind).map_err(|e| e.to_string())?;
        let actor =
            runloop_pog::ActorName::new(&format!("agent:{agent}")).map_err(|e| e.to_string())?;
        let scope = match scope {
            Some(s) => runloop_pog::Scope::new(&s).map_err(|e| e.to_string())?,
            None => runloop_pog::Scope::default_scope(),
        };
        let key = idempotency_key
            .map(|k| runloop_pog::IdempotencyKey::new(&k).map_err(|e| e.to_string()))
            .transpose()?;
        runloop_pog::NewEvent::new(
            kind,
            actor,
            scope,
            msgpack_to_json(payload),
            provenance(agent, trace_hex)?,
            key,
        )
        .map_err(|e| e.to_string())
    }

    /// Audit of a denied call: a `cap.audit` event when the POG runs, else a log line.
    fn audit_denied(&self, agent: &str, op: &str, reason: &str, trace_hex: &str) {
        self.metrics.denied(op, reason);
        let recorded = self.pog().is_some_and(|pog| {
            let payload = json!({
                "agent": agent,
                "cap": op,
                "decision": "deny",
                "reason": reason,
                "trace_id": trace_hex,
            });
            let Ok(provenance) = provenance(agent, trace_hex) else {
                return false;
            };
            let Ok(actor) = runloop_pog::ActorName::new("kernel") else {
                return false;
            };
            let Ok(event) = runloop_pog::NewEvent::new(
                runloop_pog::EventKind::CapAudit,
                actor,
                runloop_pog::Scope::default_scope(),
                payload,
                provenance,
                None,
            ) else {
                return false;
            };
            let timeout = Some(Duration::from_millis(POG_CALL_TIMEOUT_MS));
            matches!(
                self.runtime
                    .block_on(pog.call(|r| PogMsg::Write(vec![event], r), timeout)),
                Ok(ractor::rpc::CallResult::Success(Ok(_)))
            )
        });
        if !recorded {
            tracing::warn!(
                agent,
                cap = op,
                decision = "deny",
                reason,
                trace_id = trace_hex,
                "cap.audit"
            );
        }
    }
}

fn provenance(agent: &str, trace_hex: &str) -> Result<runloop_pog::Provenance, String> {
    runloop_pog::Provenance::from_json(&json!({
        "trace_id": trace_hex,
        "opening_id": "agent.invoke",
        "agent": agent,
        "inputs_hash": blake3_zero(),
    }))
    .map_err(|e| e.to_string())
}

/// The inputs hash of a host-call audit (the kernel does not hash agent inputs yet).
fn blake3_zero() -> String {
    "0".repeat(64)
}
