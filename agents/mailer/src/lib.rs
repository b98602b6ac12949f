//! `mailer` (compose_email): sends the reviewed draft through the kernel's `mail.send`
//! effect, once, after a person's yes.
//!
//! Input: a node invoke whose `inputs` are `draft` (the writer's `{to: [{name, email}],
//! subject, body, …}`) and `go` (the critic's `ok`, delivered only when the opening's
//! guard `review.ok == true` holds; anything but `true` is refused here too). A bare
//! `{draft, go}` map works as well. Output, on `result`: `{status: "sent", message_id,
//! path? | smtp?, recalled, idempotency_key}` or `{status: "declined", reason}`.
//!
//! The agent never touches the network or the disk: it asks the kernel
//! `effect.perform("mail.send", {to, cc: [], subject, body}, key)` — exactly that payload,
//! which the kernel's mail executor reads with unknown fields refused. The key is
//! `mail-` and the FNV-1a 64 hash of the recipients, subject and body
//! ([`idempotency_key`]): computed, never random, so a redelivered or resumed attempt asks
//! for the same effect and the kernel's effects journal answers it from the first
//! performance (`recalled: true`) instead of sending twice.
//!
//! The kernel's answers:
//! - ok → `result {status: "sent", …}` from the receipt (`message_id` and `path` for the
//!   Maildir outbox, or `smtp`);
//! - `ConfirmationPending` → the invoke fails with that error, as the SDK asks: the kernel
//!   ends the attempt and invokes the node again once the person has decided;
//! - `Declined` → `result {status: "declined", reason: <the kernel's message>}` and the
//!   node succeeds (a "no" is an answer, not a failure; the opening's success predicate
//!   `send.result.status == "sent"` then does not hold);
//! - anything else (`OutcomeUnknown` after a crash, a denial, a failed executor) → a
//!   failure with the kernel's message, never retried by the agent.

use runloop_agent_sdk::{
    Agent, AgentError, AgentInput, Ctx, HostCallError, HostErrorCode, LogLevel, Value,
    export_agent, from_payload,
};
use serde::{Deserialize, Serialize};

/// The effect this agent performs (its only grant).
const EFFECT_KIND: &str = "mail.send";
/// Most recipients of one mail.
const RECIPIENTS_MAX: usize = 20;
/// Longest subject, in bytes.
const SUBJECT_BYTES_MAX: usize = 1_000;
/// Longest body, in bytes.
const BODY_BYTES_MAX: usize = 64 * 1024;

/// The mailer; stateless (the effects journal, not the agent, remembers what was sent).
#[derive(Debug, Default)]
pub struct Mailer;

/// A recipient, as the writer emits it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
struct Address {
    name: String,
    email: String,
}

/// The draft fields the mail needs (the writer's other fields are ignored).
#[derive(Debug, Deserialize)]
struct Draft {
    to: Vec<Address>,
    subject: String,
    body: String,
}

/// The `mail.send` payload, exactly as the kernel's executor reads it.
#[derive(Debug, Serialize)]
struct MailSend<'a> {
    to: &'a [Address],
    cc: &'a [Address],
    subject: &'a str,
    body: &'a str,
}

/// What `result` carries.
#[derive(Debug, Serialize)]
struct Outcome {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    smtp: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recalled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn field<'a>(payload: &'a Value, key: &str) -> Option<&'a Value> {
    payload
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn bad(what: impl std::fmt::Display) -> AgentError {
    AgentError::new(format!("mailer: {what}"))
}

/// FNV-1a, 64 bit: small, stable across platforms and releases.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `mail-<16 hex>`: FNV-1a 64 over every recipient's address and name, the subject and the
/// body, each preceded by its length so no two drafts share an encoding.
fn idempotency_key(draft: &Draft) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut put = |bytes: &[u8]| {
        h = fnv1a(h, &(bytes.len() as u64).to_le_bytes());
        h = fnv1a(h, bytes);
    };
    put(&(draft.to.len() as u64).to_le_bytes());
    for a in &draft.to {
        put(a.email.as_bytes());
        put(a.name.as_bytes());
    }
    put(draft.subject.as_bytes());
    put(draft.body.as_bytes());
    format!("mail-{h:016x}")
}

/// The draft and `go` of a node invoke, or of a bare `{draft, go}` map.
fn parse(payload: &Value) -> Result<(Draft, Option<Value>), AgentError> {
    let inputs = field(payload, "inputs").unwrap_or(payload);
    let draft = field(inputs, "draft").ok_or_else(|| bad("inputs.draft is missing"))?;
    let draft: Draft = from_payload(draft).map_err(|e| bad(format_args!("draft: {e}")))?;
    if draft.to.is_empty() || draft.to.len() > RECIPIENTS_MAX {
        return Err(bad(format_args!(
            "the draft must have 1..={RECIPIENTS_MAX} recipients, has {}",
            draft.to.len()
        )));
    }
    if draft.subject.len() > SUBJECT_BYTES_MAX || draft.body.len() > BODY_BYTES_MAX {
        return Err(bad(format_args!(
            "the draft is too large (subject ≤ {SUBJECT_BYTES_MAX} bytes, body ≤ {BODY_BYTES_MAX})"
        )));
    }
    Ok((draft, field(inputs, "go").cloned()))
}

fn receipt_text(receipt: &Value, key: &str) -> Option<String> {
    field(receipt, key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

impl Agent for Mailer {
    fn handle(&mut self, ctx: &mut Ctx<'_>, input: AgentInput) -> Result<(), AgentError> {
        let (draft, go) = parse(&input.payload)?;
        if go != Some(Value::Boolean(true)) {
            let shown = go.map_or_else(|| "missing".to_owned(), |v| v.to_string());
            return Err(bad(format_args!(
                "the review did not pass (go is {shown}); nothing was sent"
            )));
        }
        let key = idempotency_key(&draft);
        // `effect_perform` encodes with named fields: the executor reads a map by name.
        let payload = MailSend {
            to: &draft.to,
            cc: &[],
            subject: &draft.subject,
            body: &draft.body,
        };
        let outcome = match ctx.effect_perform(EFFECT_KIND, &payload, &key) {
            Ok(done) => {
                let message_id = receipt_text(&done.receipt, "message_id").ok_or_else(|| {
                    bad(format_args!(
                        "mail.send answered without a message_id: {}",
                        done.receipt
                    ))
                })?;
                let to: Vec<&str> = draft.to.iter().map(|a| a.email.as_str()).collect();
                // The mail is sent: a refused log line must not turn that into a failure
                // (a retry would only be answered from the journal, but the node would
                // report an error for a send that happened).
                let _ = ctx.log(
                    LogLevel::Info,
                    format!(
                        "mailer: {} {message_id} to {}",
                        if done.recalled { "recalled" } else { "sent" },
                        to.join(", ")
                    ),
                );
                Outcome {
                    status: "sent",
                    path: receipt_text(&done.receipt, "path"),
                    smtp: field(&done.receipt, "smtp").cloned(),
                    message_id: Some(message_id),
                    recalled: Some(done.recalled),
                    idempotency_key: Some(done.idempotency_key),
                    reason: None,
                }
            }
            Err(HostCallError::Refused {
                code: HostErrorCode::Declined,
                message,
                ..
            }) => Outcome {
                status: "declined",
                reason: Some(message),
                message_id: None,
                path: None,
                smtp: None,
                recalled: None,
                idempotency_key: None,
            },
            // ConfirmationPending included: returned as it is, the kernel re-invokes the
            // node once the person has decided.
            Err(
                e @ HostCallError::Refused {
                    code: HostErrorCode::ConfirmationPending,
                    ..
                },
            ) => return Err(e.into()),
            Err(e) => return Err(bad(e)),
        };
        ctx.emit("result", &outcome)?;
        Ok(())
    }
}

export_agent!(Mailer);

#[cfg(test)]
mod tests;
