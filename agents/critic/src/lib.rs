//! `critic` (compose_email): reviews a draft before it may be sent.
//!
//! Input: a node invoke whose `inputs.draft` is the writer's draft (`{to: [{name, email}],
//! subject, body, citations: [id], passages_offered?}`) and whose `with` is
//! `{model_review?: bool (default false), model?: str}`; a bare draft map works too.
//! Outputs: `ok` (a bool, on `ok`, what the opening's guard `review.ok == true` reads) and
//! `review` (`{ok, problems: [{rule, message}], model_review?}`).
//!
//! The rules (`rules.rs`), all run, each finding one problem: `recipient` (at least one,
//! each with a valid-looking address), `subject` (non-empty, one line, ≤ 200 chars),
//! `body_length` (20..=5000 chars), `placeholder` (`TODO`, `{{`, `lorem ipsum`, `XXX`,
//! `<first name>`, `[Your Name]`, …) and `citation` (every `[n]` names a listed citation,
//! every citation is a POG entity, used in the text and listed under `Sources:`, and a
//! draft that was offered passages cites at least one). `ok` is true when there is no
//! problem.
//!
//! With `with.model_review: true` (for a configured language model; the offline writer
//! would only echo the draft back) the critic also asks `model.complete` for a short
//! review and adds its text as `model_review`. It is advice for the person who confirms
//! the send, not a rule: it never changes `ok`. A refused review call fails the node.

mod rules;

use rules::{DraftView, Problem, check};
use runloop_agent_sdk::{
    Agent, AgentError, AgentInput, ChatMessage, CompleteRequest, Ctx, HostErrorCode, Value,
    export_agent, from_payload,
};
use serde::{Deserialize, Serialize};

/// Tokens the review may take: `policy.caps`' `max_tokens` (keep them equal).
const REVIEW_MAX_TOKENS_MAX: u32 = 256;
/// Characters of the body shown to the reviewing model.
const REVIEW_BODY_CHARS_MAX: usize = 6_000;

/// The critic; stateless.
#[derive(Debug, Default)]
pub struct Critic;

/// The node's `with`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct With {
    #[serde(default)]
    model_review: bool,
    model: Option<String>,
}

/// What `review` carries.
#[derive(Debug, Serialize)]
struct Review {
    ok: bool,
    problems: Vec<Problem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_review: Option<String>,
}

fn field<'a>(payload: &'a Value, key: &str) -> Option<&'a Value> {
    payload
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// Reads the draft leniently: wrong or missing fields become empty ones, which the rules
/// then report.
fn view(draft: &Value) -> DraftView {
    let to = match field(draft, "to") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|r| (text(field(r, "name")), text(field(r, "email"))))
            .collect(),
        _ => Vec::new(),
    };
    let citations = match field(draft, "citations") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    DraftView {
        to,
        subject: text(field(draft, "subject")),
        body: text(field(draft, "body")),
        citations,
        passages_offered: field(draft, "passages_offered").and_then(Value::as_u64),
    }
}

/// The draft and `with` of a node invoke; a bare map is the draft itself.
fn parse(payload: &Value) -> Result<(Value, With), AgentError> {
    let is_invoke = field(payload, "with").is_some() || field(payload, "inputs").is_some();
    if !is_invoke {
        return Ok((payload.clone(), With::default()));
    }
    let with: With = match field(payload, "with") {
        Some(w) => from_payload(w).map_err(|e| AgentError::new(format!("critic: with: {e}")))?,
        None => With::default(),
    };
    let draft = field(payload, "inputs")
        .and_then(|i| field(i, "draft"))
        .cloned()
        .ok_or_else(|| AgentError::new("critic: inputs.draft is missing"))?;
    Ok((draft, with))
}

/// Asks the model for a short review of the draft.
fn model_review(ctx: &mut Ctx<'_>, with: &With, d: &DraftView) -> Result<String, AgentError> {
    let to: Vec<String> =
        d.to.iter()
            .map(|(n, e)| {
                format!(
                    "{} <{}>",
                    n.as_deref().unwrap_or(""),
                    e.as_deref().unwrap_or("")
                )
            })
            .collect();
    let body: String = d
        .body
        .as_deref()
        .unwrap_or("")
        .chars()
        .take(REVIEW_BODY_CHARS_MAX)
        .collect();
    let request = CompleteRequest {
        model: with.model.clone(),
        messages: vec![
            ChatMessage {
                role: "system".into(),
                content: "You review email drafts before a person approves sending them. In \
                          at most three short sentences, say what should be fixed (tone, \
                          clarity, claims without a [n] source), or say it is ready to send."
                    .into(),
            },
            ChatMessage {
                role: "user".into(),
                content: format!(
                    "To: {}\nSubject: {}\n\n{body}",
                    to.join(", "),
                    d.subject.as_deref().unwrap_or("")
                ),
            },
        ],
        max_tokens: Some(REVIEW_MAX_TOKENS_MAX),
        temperature: Some(0.0),
    };
    match ctx.model_complete(request) {
        Ok(answer) => Ok(answer.text.trim().to_owned()),
        Err(e)
            if matches!(
                e.code(),
                Some(HostErrorCode::Failed | HostErrorCode::NotAvailable)
            ) =>
        {
            Err(AgentError::retryable(format!("critic: model review: {e}")))
        }
        Err(e) => Err(AgentError::new(format!("critic: model review: {e}"))),
    }
}

impl Agent for Critic {
    fn handle(&mut self, ctx: &mut Ctx<'_>, input: AgentInput) -> Result<(), AgentError> {
        let (draft, with) = parse(&input.payload)?;
        if draft.as_map().is_none() {
            return Err(AgentError::new(format!(
                "critic: the draft is not a map: {draft}"
            )));
        }
        let d = view(&draft);
        let problems = check(&d);
        let model_review = if with.model_review {
            Some(model_review(ctx, &with, &d)?)
        } else {
            None
        };
        let ok = problems.is_empty();
        ctx.emit("ok", &ok)?;
        ctx.emit(
            "review",
            &Review {
                ok,
                problems,
                model_review,
            },
        )?;
        Ok(())
    }
}

export_agent!(Critic);

#[cfg(test)]
mod tests;
