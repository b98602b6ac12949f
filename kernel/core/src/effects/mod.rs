//! Effects with a person's confirmation, exactly once: the kernel side of `effect.perform`.
//!
//! An agent asks `effect.perform {kind, payload, idempotency_key}`; its `policy.caps` must
//! allow the kind (`allow effect kind=mail.send confirm=required`), checked before this
//! module sees the call. [`Effects::perform`] then:
//!
//! 1. checks the payload with the kind's executor ([`exec::prepare`]), which also writes
//!    the summary a person is shown, and hashes the exact payload (BLAKE3 of its JCS form);
//! 2. reads the run's journal from the POG (its events): a recorded result for this run,
//!    node and idempotency key is answered again (`recalled: true`) and never performed
//!    again; an intent without a result (a crash mid-effect) is reported as
//!    `OutcomeUnknown`, never redone;
//! 3. when the effect needs a yes — its grant says `confirm=required`, its class is
//!    send/delete/spend while the run's `confirm_external` holds (always, outside a run),
//!    or its node says `require_human_confirm` — asks the [`gate`] for a decision bound to
//!    the payload hash: pending → `ConfirmationPending` (the run invokes the node again
//!    once a person decides), denied or timed out → `Declined`;
//! 4. records `effect.intent` (durable), performs ([`exec::perform`]), records
//!    `effect.result` and what the world saw (`email.sent`, `artifact.created`).
//!
//! Effects that need a yes run only inside an opening: a standalone agent's message has
//! no run to resume once a person has answered, so it is declined with that reason.

pub mod control;
pub mod exec;
pub mod gate;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use runloop_actors::supervisor::Slot;
use runloop_agent_actor::{ConfirmGate, Confirmation, EffectsJournal};
use runloop_bundle::EffectKind;
use runloop_mail::{Mailbox, SmtpConfig};
use runloop_pog::{Event, EventKind};
use runloop_pog_actor::PogMsg;
use runloop_proto::json::msgpack_to_json;
use runloop_proto::payloads::{EffectPerformResult, HostCall, HostErrorCode, HostReply};
use runloop_proto::{Clock, TraceId};
use runloop_sandbox::CallSite;
use serde_json::{Value, json};

use self::exec::ExecCtx;
use self::gate::{ActionRequest, Decision, GateMsg, GateShared};
use crate::runs::record::Recorder;

/// Longest idempotency key.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;
/// How long a call waits for the gate actor.
const GATE_CALL_TIMEOUT_MS: u64 = 10_000;

/// Where effects land and how mail leaves.
#[derive(Debug, Clone)]
pub struct EffectsConfig {
    /// The Maildir outbox `mail.send` delivers to when no SMTP server is configured.
    pub outbox: PathBuf,
    /// Runs' state: `<runs_dir>/<trace>/artifacts/` holds a run's saved artifacts.
    pub runs_dir: PathBuf,
    /// Send mail over SMTP instead of the outbox.
    pub smtp: Option<SmtpConfig>,
    /// The sender of every message (never the agent's choice).
    pub mail_from: Mailbox,
    /// The domain of derived Message-IDs.
    pub mail_domain: String,
    /// How long a person has to answer a confirmation.
    pub confirm_timeout_ms: u64,
}

impl EffectsConfig {
    /// Defaults under a state directory: `outbox/` and `runs/`.
    pub fn in_state_dir(state: &std::path::Path) -> Self {
        Self {
            outbox: state.join("outbox"),
            runs_dir: state.join("runs"),
            smtp: None,
            mail_from: exec::default_from(),
            mail_domain: "runloop.localhost".into(),
            confirm_timeout_ms: gate::CONFIRM_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// Called right after an effect's result is recorded, before the agent hears of it (a
/// test's crash point).
pub type AfterEffect = Arc<dyn Fn(&CallSite<'_>) + Send + Sync>;

/// The effects journal and the confirmation seam, as the kernel's handlers see them.
#[derive(Clone)]
pub struct Effects {
    pub config: Arc<EffectsConfig>,
    pub shared: Arc<GateShared>,
    pub gate: Slot<GateMsg>,
    pub pog: Slot<PogMsg>,
    pub clock: Arc<dyn Clock>,
    pub runtime: tokio::runtime::Handle,
    pub after_effect: Option<AfterEffect>,
}

impl std::fmt::Debug for Effects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Effects")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn err(code: HostErrorCode, message: String) -> HostReply {
    HostReply::Err { code, message }
}

/// What the journal holds for one (run, node, key).
#[derive(Debug, Default)]
struct Journal {
    intent: Option<(u64, String)>,
    result: Option<Value>,
    /// The request recorded for a request id, and its decision.
    requested: Option<ActionRequest>,
    decided: Option<gate::ActionDecision>,
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

impl Journal {
    fn scan(events: &[Event], node: &str, key: &str, request_id: &str) -> Self {
        let mut j = Journal::default();
        for e in events {
            let p = &e.payload;
            match e.kind {
                EventKind::EffectIntent
                    if str_of(p, "node_id") == node && str_of(p, "idempotency_key") == key =>
                {
                    j.intent = Some((e.seq, str_of(p, "payload_hash").to_owned()));
                }
                EventKind::EffectResult
                    if str_of(p, "node_id") == node && str_of(p, "idempotency_key") == key =>
                {
                    j.result = Some(p.clone());
                }
                EventKind::ActionRequested if str_of(p, "request_id") == request_id => {
                    j.requested = serde_json::from_value(p.clone()).ok();
                }
                EventKind::ActionDecided if str_of(p, "request_id") == request_id => {
                    j.decided = Some(gate::ActionDecision {
                        request_id: request_id.to_owned(),
                        decision: Decision::parse(str_of(p, "decision"))
                            .unwrap_or(Decision::Denied),
                        by: str_of(p, "by").to_owned(),
                        payload_hash: str_of(p, "payload_hash").to_owned(),
                        reason: p.get("reason").and_then(Value::as_str).map(str::to_owned),
                    });
                }
                _ => {}
            }
        }
        j
    }
}

/// The id of the request for one effect: run, node, key and the exact payload's hash,
/// so the same effect asked again finds its request and a changed payload makes a new one.
pub fn request_id(trace: &str, node: &str, key: &str, payload_hash: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [trace, node, key, payload_hash] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex()[..16].to_owned()
}

/// BLAKE3 of a payload's canonical (JCS) JSON form.
pub fn payload_hash(payload: &Value) -> Result<String, String> {
    let text = runloop_pog::canon::jcs(payload).map_err(|e| e.to_string())?;
    Ok(blake3::hash(text.as_bytes()).to_hex().to_string())
}

fn check_key(key: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "._:-/".contains(c);
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX || !key.chars().all(ok) {
        return Err(format!(
            "idempotency_key {key:?}: 1 to {IDEMPOTENCY_KEY_BYTES_MAX} of A-Z a-z 0-9 . _ : - /"
        ));
    }
    Ok(())
}

/// One thing a person is asked about.
struct Ask<'a> {
    trace: &'a str,
    node: &'a str,
    agent: &'a str,
    what: &'a str,
    key: &'a str,
    summary: String,
    payload: Value,
    payload_hash: String,
}

impl Effects {
    fn recorder(&self) -> Recorder {
        Recorder::new(self.pog.get())
    }

    fn events(&self, trace: &str) -> Result<Vec<Event>, String> {
        self.runtime
            .block_on(self.recorder().run_events(trace))
            .map_err(|e| e.to_string())
    }

    fn write(&self, trace: &str, kind: EventKind, payload: Value) -> Result<(), String> {
        self.runtime
            .block_on(self.recorder().write(trace, kind, payload))
            .map_err(|e| e.to_string())
    }

    /// The decision on one ask: recorded, made now, or pending.
    fn ask(&self, ask: Ask<'_>, events: &[Event]) -> Confirmation {
        let id = request_id(ask.trace, ask.node, ask.key, &ask.payload_hash);
        let journal = Journal::scan(events, ask.node, ask.key, &id);
        if let Some(decided) = journal.decided {
            return match decided.decision {
                Decision::Approved => Confirmation::Approved,
                _ => Confirmation::Declined(decided.describe()),
            };
        }
        if self.shared.run_policy(ask.trace).is_none() {
            return Confirmation::Declined(format!(
                "{} needs a person's yes, and effects that need one run only inside an \
                 opening (`rlp run`), where the run continues once the person answers",
                ask.what
            ));
        }
        let recorded = journal.requested.is_some();
        let request = journal.requested.unwrap_or_else(|| ActionRequest {
            request_id: id.clone(),
            trace_id: ask.trace.to_owned(),
            node_id: ask.node.to_owned(),
            agent: ask.agent.to_owned(),
            effect: ask.what.to_owned(),
            idempotency_key: ask.key.to_owned(),
            summary: ask.summary.clone(),
            payload_hash: ask.payload_hash.clone(),
            payload: ask.payload.clone(),
            expires_ms: self.clock.now_ms() + self.shared.timeout_ms,
        });
        let Some(gate) = self.gate.get() else {
            return Confirmation::Declined("the confirmation gate is not running".into());
        };
        let timeout = Some(Duration::from_millis(GATE_CALL_TIMEOUT_MS));
        let asked = self.runtime.block_on(gate.call(
            |reply| GateMsg::Request {
                request,
                recorded,
                reply,
            },
            timeout,
        ));
        match asked {
            Ok(ractor::rpc::CallResult::Success(Ok(Some(decided)))) => {
                self.shared
                    .note_decided(ask.trace, ask.node, decided.clone());
                match decided.decision {
                    Decision::Approved => Confirmation::Approved,
                    _ => Confirmation::Declined(decided.describe()),
                }
            }
            Ok(ractor::rpc::CallResult::Success(Ok(None))) => {
                self.shared.mark_waiting(ask.trace, ask.node, &id);
                Confirmation::Pending(format!(
                    "{} waits for a person's yes: action request {id} ({}); approve with \
                     `rlp confirm approve {id}`",
                    ask.what, ask.summary
                ))
            }
            Ok(ractor::rpc::CallResult::Success(Err(e))) => Confirmation::Declined(e.to_string()),
            Ok(_) | Err(_) => Confirmation::Declined("the confirmation gate did not answer".into()),
        }
    }

    fn needs_yes(&self, trace: &str, node: &str, kind: EffectKind, grant_confirms: bool) -> bool {
        if grant_confirms {
            return true;
        }
        match self.shared.run_policy(trace) {
            Some(policy) => {
                (policy.confirm_external && kind.class().is_external())
                    || policy.confirm_nodes.contains(node)
            }
            None => kind.class().is_external(),
        }
    }

    fn perform_inner(
        &self,
        site: &CallSite<'_>,
        call: &HostCall,
        grant_confirms: bool,
    ) -> Result<HostReply, (HostErrorCode, String)> {
        let invalid = |m: String| (HostErrorCode::InvalidRequest, m);
        let failed = |m: String| (HostErrorCode::Failed, m);
        let HostCall::EffectPerform {
            kind,
            payload,
            idempotency_key: key,
        } = call
        else {
            return Err(invalid("not an effect.perform call".into()));
        };
        let kind = EffectKind::parse(kind)
            .ok_or_else(|| invalid(format!("{kind:?} is not an effect kind")))?;
        check_key(key).map_err(invalid)?;
        if site.trace_id == TraceId::default() {
            return Err(invalid("effects need the message's trace id".into()));
        }
        let trace = site.trace_id.to_string();
        let node = site.agent;
        let json = msgpack_to_json(payload);
        let (prepared, summary) = exec::prepare(kind, &json).map_err(invalid)?;
        let hash = payload_hash(&json).map_err(invalid)?;
        let events = self.events(&trace).map_err(failed)?;
        let journal = Journal::scan(&events, node, key, "");
        if let Some(result) = journal.result {
            if journal.intent.as_ref().is_some_and(|(_, h)| *h != hash) {
                return Err(invalid(format!(
                    "idempotency key {key:?} was used for a different {kind} payload in this \
                     run; use a new key for a new effect"
                )));
            }
            return match str_of(&result, "status") {
                "performed" => Ok(ok_result(kind, key, true, result.get("receipt"))),
                _ => Err(failed(format!(
                    "{kind} (key {key:?}) failed before and is not retried: {}",
                    str_of(&result, "error")
                ))),
            };
        }
        if let Some((seq, _)) = journal.intent {
            return Err((
                HostErrorCode::OutcomeUnknown,
                format!(
                    "{kind} (key {key:?}) was started (journal event {seq}) and its outcome \
                     was never recorded: the kernel stopped mid-effect. It is not redone; \
                     check the outbox or the receiving side (`rlp kb why run:{trace}`)"
                ),
            ));
        }
        if self.needs_yes(&trace, node, kind, grant_confirms) {
            let ask = Ask {
                trace: &trace,
                node,
                agent: site.agent,
                what: kind.name(),
                key,
                summary,
                payload: json.clone(),
                payload_hash: hash.clone(),
            };
            match self.ask(ask, &events) {
                Confirmation::Approved => {}
                Confirmation::Pending(m) => return Err((HostErrorCode::ConfirmationPending, m)),
                Confirmation::Declined(m) => {
                    return Err((HostErrorCode::Declined, format!("{kind} declined: {m}")));
                }
            }
        }
        let intent = json!({
            "trace_id": trace, "node_id": node, "agent": site.agent, "effect": kind.name(),
            "idempotency_key": key, "payload_hash": hash,
        });
        self.write(&trace, EventKind::EffectIntent, intent)
            .map_err(|e| failed(format!("record the intent of {kind}: {e}; not performed")))?;
        let ctx = ExecCtx {
            config: &self.config,
            trace_id: &trace,
            node_id: node,
            idempotency_key: key,
            now_ms: self.clock.now_ms(),
        };
        let outcome = exec::perform(&prepared, &ctx);
        let mut result = json!({
            "trace_id": trace, "node_id": node, "effect": kind.name(),
            "idempotency_key": key,
        });
        match &outcome {
            Ok(done) => {
                result["status"] = json!("performed");
                result["receipt"] = done.receipt.clone();
            }
            Err(e) => {
                result["status"] = json!("failed");
                result["error"] = json!(e);
            }
        }
        self.write(&trace, EventKind::EffectResult, result)
            .map_err(|e| failed(format!("record the result of {kind}: {e}")))?;
        let done = outcome.map_err(|e| failed(format!("{kind}: {e}")))?;
        for (event_kind, payload) in done.events {
            if let Err(e) = self.write(&trace, event_kind, payload) {
                tracing::warn!(trace_id = %trace, "record {event_kind}: {e}");
            }
        }
        if let Some(hook) = &self.after_effect {
            hook(site);
        }
        Ok(ok_result(kind, key, false, Some(&done.receipt)))
    }
}

fn ok_result(kind: EffectKind, key: &str, recalled: bool, receipt: Option<&Value>) -> HostReply {
    let receipt = receipt
        .and_then(|r| runloop_proto::json::json_to_msgpack(r, "receipt").ok())
        .unwrap_or(rmpv::Value::Nil);
    let result = EffectPerformResult {
        kind: kind.name().to_owned(),
        idempotency_key: key.to_owned(),
        recalled,
        receipt,
    };
    let bytes = rmp_serde::to_vec_named(&result).expect("result structs serialise");
    HostReply::Ok(rmpv::decode::read_value(&mut bytes.as_slice()).expect("just encoded"))
}

impl EffectsJournal for Effects {
    fn perform(&self, site: &CallSite<'_>, call: &HostCall, grant_confirms: bool) -> HostReply {
        match self.perform_inner(site, call, grant_confirms) {
            Ok(reply) => reply,
            Err((code, message)) => err(code, message),
        }
    }
}

impl ConfirmGate for Effects {
    fn decide(&self, site: &CallSite<'_>, call: &HostCall) -> Confirmation {
        if site.trace_id == TraceId::default() {
            return Confirmation::Declined("a confirmation needs the message's trace id".into());
        }
        let trace = site.trace_id.to_string();
        let json = match rmp_serde::to_vec_named(call)
            .ok()
            .and_then(|b| rmpv::decode::read_value(&mut b.as_slice()).ok())
        {
            Some(value) => msgpack_to_json(&value),
            None => return Confirmation::Declined("the call does not encode".into()),
        };
        let Ok(hash) = payload_hash(&json) else {
            return Confirmation::Declined("the call has no canonical form".into());
        };
        let summary = match call {
            HostCall::ConfirmRequest { action, summary } => format!("{action}: {summary}"),
            HostCall::KbWriteEvent { kind, scope, .. } => format!(
                "write a {kind} event into the knowledge base (scope {})",
                scope.as_deref().unwrap_or("default")
            ),
            other => format!("{} call", other.op()),
        };
        let key = format!("{}-{}", call.op(), &hash[..16]);
        let events = match self.events(&trace) {
            Ok(events) => events,
            Err(e) => return Confirmation::Declined(format!("read the run's journal: {e}")),
        };
        let ask = Ask {
            trace: &trace,
            node: site.agent,
            agent: site.agent,
            what: call.op(),
            key: &key,
            summary,
            payload: json,
            payload_hash: hash,
        };
        self.ask(ask, &events)
    }
}
