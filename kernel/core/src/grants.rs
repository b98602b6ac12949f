//! Capability grants on the kernel's side: `rlp cap grant|ls|revoke` through the control
//! plane, recorded in the POG, loaded back at boot.
//!
//! A grant is admitted against the bundle's own `policy.caps` (a running instance's, else
//! the bundle the agent search path resolves) and config's `security.grants`
//! ([`runloop_bundle::grants`] says what narrows and what extends). It is written to the
//! POG as `cap.granted` *before* it takes effect in the kernel's [`GrantBook`], and a
//! revocation as `cap.revoked` before the grant leaves it, so a restarted kernel puts back
//! exactly the grants in force ([`load`]); a kernel without a POG refuses grants rather
//! than keep them only in memory. Expiry is read from the kernel's injected clock on every
//! host call, so a grant stops working at its `expires_ms` with no timer to miss.

use std::time::Duration;

use ractor::ActorRef;
use runloop_bundle::grants::{Capability, GrantBook, GrantError, GrantRecord, check_text};
use runloop_pog_actor::PogMsg;
use runloop_proto::payloads::ControlOutcome;
use serde_json::{Value, json};

use crate::kernel::Kernel;

/// How long a grant waits for the POG to record it.
const POG_TIMEOUT_MS: u64 = 5_000;

/// Grants and revocations of this process one at a time (they are rare), so "is there
/// room", "record it" and "put it in force" cannot interleave with another's.
static CHANGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Why the grants in the POG could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("read grants from the POG: {0}")]
    Query(String),
    #[error("grant {grant_id} in the POG: {source}")]
    Bad {
        grant_id: String,
        source: GrantError,
    },
}

/// The grants of the POG still in force at `now_ms`, put into `book`; how many.
pub async fn load(
    pog: &ActorRef<PogMsg>,
    book: &GrantBook,
    now_ms: u64,
) -> Result<usize, LoadError> {
    // Both kinds carry the grant's expiry, so expired history is never read back.
    let sql = "SELECT kind, payload FROM main.events \
               WHERE kind IN ('cap.granted', 'cap.revoked') \
               AND json_extract(payload, '$.expires_ms') > ?1 ORDER BY seq";
    let params = vec![json!(now_ms)];
    let timeout = Some(Duration::from_millis(POG_TIMEOUT_MS));
    let result = match pog
        .call(|r| PogMsg::Query(sql.into(), params, None, r), timeout)
        .await
    {
        Ok(ractor::rpc::CallResult::Success(Ok(result))) => result,
        Ok(ractor::rpc::CallResult::Success(Err(e))) => {
            return Err(LoadError::Query(e.to_string()));
        }
        _ => return Err(LoadError::Query("the POG actor did not answer".into())),
    };
    if result.truncated {
        return Err(LoadError::Query(
            "more grants in force than one query returns".into(),
        ));
    }
    for row in &result.rows {
        let (Some(Value::String(kind)), Some(Value::String(payload))) = (row.first(), row.get(1))
        else {
            return Err(LoadError::Query(format!("unexpected row {row:?}")));
        };
        let payload: Value = serde_json::from_str(payload)
            .map_err(|e| LoadError::Query(format!("payload of a {kind} event: {e}")))?;
        if kind == "cap.revoked" {
            let id = payload["grant_id"].as_str().unwrap_or_default();
            book.remove(id, now_ms);
            continue;
        }
        let record: GrantRecord = serde_json::from_value(payload)
            .map_err(|e| LoadError::Query(format!("payload of a cap.granted event: {e}")))?;
        let grant_id = record.grant_id.clone();
        book.restore(record, now_ms)
            .map_err(|source| LoadError::Bad { grant_id, source })?;
    }
    Ok(book.list(now_ms).len())
}

fn failed(code: &str, message: String) -> ControlOutcome {
    ControlOutcome::Failed {
        code: code.into(),
        message,
    }
}

fn refusal(e: GrantError) -> ControlOutcome {
    let code = match e {
        GrantError::Empty | GrantError::TooLong { .. } | GrantError::Syntax(_) => "BadCapability",
        GrantError::DenyOptions { .. } => "BadCapability",
        GrantError::ExtendNotAllowed { .. } => "ExtendNotAllowed",
        GrantError::BadTtl { .. } => "BadTtl",
        GrantError::TooMany => "TooManyGrants",
        GrantError::BadText { .. } => "BadText",
        GrantError::NoSuchGrant { .. } => "NoSuchGrant",
    };
    failed(code, e.to_string())
}

/// One `rlp cap grant`.
#[derive(Debug, Clone)]
pub struct GrantAsk {
    pub agent: String,
    pub capability: String,
    pub ttl_ms: u64,
    pub by: String,
    pub reason: Option<String>,
}

/// Admits, records and puts in force one grant.
pub async fn grant(engine: &crate::runs::Engine, ask: GrantAsk) -> ControlOutcome {
    let kernel = engine.kernel();
    if let Err(e) = runloop_bundle::Name::parse("agent", &ask.agent) {
        return failed("InvalidName", e.to_string());
    }
    let capability = match Capability::parse(&ask.capability) {
        Ok(capability) => capability,
        Err(e) => return refusal(e),
    };
    for (field, text) in [("by", Some(&ask.by)), ("reason", ask.reason.as_ref())] {
        if let Some(text) = text
            && let Err(e) = check_text(field, text)
        {
            return refusal(e);
        }
    }
    let policy = match kernel.running_policy(&ask.agent) {
        Some(policy) => policy,
        None => match engine
            .installed_catalog()
            .resolve(&runloop_openings::AgentRef {
                name: ask.agent.clone(),
                variant: None,
            }) {
            Ok((_, bundle)) => bundle.policy().clone(),
            Err(e) => {
                return failed(
                    "NoSuchAgent",
                    format!("no bundle for agent {}: {e}", ask.agent),
                );
            }
        },
    };
    let book = &kernel.services.grants;
    let change = match book
        .rules()
        .admit(&ask.agent, &capability, &policy, ask.ttl_ms)
    {
        Ok(change) => change,
        Err(e) => return refusal(e),
    };
    let Some(pog) = kernel.pog() else {
        return failed(
            "Unavailable",
            "grants are recorded in the POG and this kernel runs without one".into(),
        );
    };
    let _one_at_a_time = CHANGES.lock().await;
    let now_ms = kernel.clock().now_ms();
    if !book.has_room(now_ms) {
        return refusal(GrantError::TooMany);
    }
    let record = GrantRecord {
        grant_id: format!("cap-{:016x}", kernel.ids().run_id().0),
        agent: ask.agent,
        capability: capability.text().to_owned(),
        rule: capability.rule,
        change,
        granted_ms: now_ms,
        expires_ms: now_ms.saturating_add(ask.ttl_ms),
        by: ask.by,
        reason: ask.reason,
    };
    let payload = serde_json::to_value(&record).expect("a grant record is JSON");
    if let Err(e) = record_event(kernel, &pog, runloop_pog::EventKind::CapGranted, payload).await {
        return failed("Unavailable", format!("record the grant: {e}"));
    }
    if let Err(e) = book.insert(record.clone(), now_ms) {
        return refusal(e);
    }
    ControlOutcome::CapGranted {
        grant: record,
        now_ms,
    }
}

/// The grants in force.
pub fn list(kernel: &Kernel) -> ControlOutcome {
    let now_ms = kernel.clock().now_ms();
    ControlOutcome::Caps {
        grants: kernel.services.grants.list(now_ms),
        now_ms,
    }
}

/// Records a revocation, then takes the grant out of force.
pub async fn revoke(
    kernel: &Kernel,
    grant_id: &str,
    by: &str,
    reason: Option<String>,
) -> ControlOutcome {
    for (field, text) in [("by", Some(by)), ("reason", reason.as_deref())] {
        if let Some(text) = text
            && let Err(e) = check_text(field, text)
        {
            return refusal(e);
        }
    }
    let book = &kernel.services.grants;
    let _one_at_a_time = CHANGES.lock().await;
    let now_ms = kernel.clock().now_ms();
    let Some(record) = book.get(grant_id, now_ms) else {
        return refusal(GrantError::NoSuchGrant {
            id: grant_id.to_owned(),
        });
    };
    let Some(pog) = kernel.pog() else {
        return failed(
            "Unavailable",
            "grants are recorded in the POG and this kernel runs without one".into(),
        );
    };
    let mut payload = json!({
        "grant_id": record.grant_id,
        "agent": record.agent,
        "expires_ms": record.expires_ms,
        "by": by,
    });
    if let Some(reason) = reason {
        payload["reason"] = reason.into();
    }
    if let Err(e) = record_event(kernel, &pog, runloop_pog::EventKind::CapRevoked, payload).await {
        return failed("Unavailable", format!("record the revocation: {e}"));
    }
    book.remove(grant_id, now_ms);
    ControlOutcome::CapRevoked { grant: record }
}

/// Appends one grant event (its own trace) and waits for the commit.
async fn record_event(
    kernel: &Kernel,
    pog: &ActorRef<PogMsg>,
    kind: runloop_pog::EventKind,
    payload: Value,
) -> Result<(), String> {
    let agent = payload["agent"].as_str().unwrap_or_default().to_owned();
    let provenance = runloop_pog::Provenance::from_json(&json!({
        "trace_id": kernel.ids().trace_id().to_string(),
        "opening_id": "cap.grant",
        "agent": agent,
        "inputs_hash": "0".repeat(64),
    }))
    .map_err(|e| e.to_string())?;
    let actor = runloop_pog::ActorName::new("kernel").map_err(|e| e.to_string())?;
    let event = runloop_pog::NewEvent::new(
        kind,
        actor,
        runloop_pog::Scope::default_scope(),
        payload,
        provenance,
        None,
    )
    .map_err(|e| e.to_string())?;
    let timeout = Some(Duration::from_millis(POG_TIMEOUT_MS));
    match pog.call(|r| PogMsg::Write(vec![event], r), timeout).await {
        Ok(ractor::rpc::CallResult::Success(Ok(_))) => Ok(()),
        Ok(ractor::rpc::CallResult::Success(Err(e))) => Err(e.to_string()),
        _ => Err("the POG actor did not answer".into()),
    }
}
