//! `writer` (compose_email): drafts the email from the resolved contact and the gathered
//! passages with one `model.complete` call, keeping every fact's citation.
//!
//! Input: a node invoke whose `inputs` are `contact` (`{contact_id?, name, email}`, or an
//! array of them: one recipient each) and optionally `context` (the gatherer's passages,
//! `[{id, seq?, text, score?}]`), and whose `with` is `{topic: str, tone?: str (default
//! "neutral-friendly"), max_tokens?: int (default 400, at most 1024, the policy's grant),
//! model?: str, sender?: str}`. Output, on `draft`:
//! `{to: [{name, email}], subject, body, citations: [id], passages_offered, model:
//! {provider, model, tokens_in, tokens_out}}`.
//!
//! The prompt is built for the offline extractive writer (the default provider) as much as
//! for a language model. The system message holds the instructions, the recipient and the
//! topic; the **last user message holds only the facts**, one sentence per line, each
//! sentence ending in its passage's marker (`… 480k [2].`). The offline writer returns the
//! best-scoring half of that message's sentences, so its text is made of facts that each
//! carry their marker; a model is told to keep the markers. The markers in the text are
//! then renumbered in order of use (markers naming no passage are dropped), `citations`
//! lists the cited passages' POG ids in that order, and the body gets a greeting, a
//! sign-off and a `Sources:` footer (`[1] note:q4-plan-goals`) a reader can check with
//! `rlp kb why`. Without passages the last message asks for a short follow-up instead and
//! the draft has no citations.
//!
//! `max_tokens` is always passed, so the broker reserves it against the node's and the
//! run's token budgets before the call; a refused or failed call fails the node (a
//! provider failure or a busy broker retryably, a budget or a denial not).

mod compose;

use compose::{body, fact_lines, greeting, renumber, subject, without_greeting};
use runloop_agent_sdk::{
    Agent, AgentError, AgentInput, ChatMessage, CompleteRequest, Ctx, HostErrorCode, Value,
    export_agent, from_payload,
};
use serde::{Deserialize, Serialize};

/// Tokens asked of the model when `with.max_tokens` is absent.
const MAX_TOKENS_DEFAULT: u32 = 400;
/// Most tokens one call may ask for: `policy.caps`' `max_tokens` (keep them equal).
const MAX_TOKENS_MAX: u32 = 1024;
/// Most passages used; the gatherer's own cap is 20, its default 5.
const PASSAGES_MAX: usize = 12;
/// Characters of one passage put in the prompt.
const PASSAGE_CHARS_MAX: usize = 2_000;
/// Most recipients of one draft.
const RECIPIENTS_MAX: usize = 20;
/// Longest topic, tone or sender, in bytes.
const WITH_TEXT_BYTES_MAX: usize = 512;
/// Sampling temperature: low, a draft should read the same when it is retried.
const TEMPERATURE: f32 = 0.2;

/// The writer; stateless.
#[derive(Debug, Default)]
pub struct Writer;

/// The node's `with`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct With {
    topic: String,
    tone: Option<String>,
    max_tokens: Option<u32>,
    model: Option<String>,
    sender: Option<String>,
}

/// A recipient, as the resolver emits it (extra fields ignored).
#[derive(Debug, Clone, Deserialize, Serialize)]
struct Recipient {
    name: String,
    email: String,
}

/// A passage, as the gatherer emits it (extra fields ignored).
#[derive(Debug, Clone, Deserialize)]
struct Passage {
    id: String,
    text: String,
}

/// One value or several (a port fed by more than one edge receives an array).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The node's `inputs`.
#[derive(Debug, Deserialize)]
struct Inputs {
    contact: Option<OneOrMany<Recipient>>,
    context: Option<OneOrMany<Vec<Passage>>>,
}

#[derive(Debug, Serialize)]
struct ModelInfo {
    provider: String,
    model: String,
    tokens_in: u32,
    tokens_out: u32,
}

/// What `draft` carries.
#[derive(Debug, Serialize)]
struct Draft {
    to: Vec<Recipient>,
    subject: String,
    body: String,
    citations: Vec<String>,
    passages_offered: usize,
    model: ModelInfo,
}

fn field<'a>(payload: &'a Value, key: &str) -> Option<&'a Value> {
    payload
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn bad(what: impl std::fmt::Display) -> AgentError {
    AgentError::new(format!("writer: {what}"))
}

/// `with` and `inputs` of a node invoke; a bare map serves as both.
fn parse(payload: &Value) -> Result<(With, Inputs), AgentError> {
    let is_invoke = field(payload, "with").is_some() || field(payload, "inputs").is_some();
    let (with, inputs) = if is_invoke {
        let empty = Value::Map(vec![]);
        (
            field(payload, "with").cloned().unwrap_or(empty.clone()),
            field(payload, "inputs").cloned().unwrap_or(empty),
        )
    } else {
        let bare: Vec<(Value, Value)> = payload.as_map().cloned().unwrap_or_default();
        let (inputs, with): (Vec<_>, Vec<_>) = bare
            .into_iter()
            .partition(|(k, _)| matches!(k.as_str(), Some("contact" | "context")));
        (Value::Map(with), Value::Map(inputs))
    };
    let with: With = from_payload(&with).map_err(|e| bad(format_args!("with: {e}")))?;
    let inputs: Inputs = from_payload(&inputs).map_err(|e| bad(format_args!("inputs: {e}")))?;
    for (name, text) in [
        ("topic", Some(&with.topic)),
        ("tone", with.tone.as_ref()),
        ("sender", with.sender.as_ref()),
    ] {
        if text.is_some_and(|t| t.len() > WITH_TEXT_BYTES_MAX) {
            return Err(bad(format_args!(
                "with.{name} is over {WITH_TEXT_BYTES_MAX} bytes"
            )));
        }
    }
    if with.topic.trim().is_empty() {
        return Err(bad("with.topic is empty"));
    }
    Ok((with, inputs))
}

fn truncated(text: &str) -> String {
    text.chars().take(PASSAGE_CHARS_MAX).collect()
}

/// The system message: everything but the facts.
fn instructions(names: &str, topic: &str, tone: &str, max_tokens: u32, facts: bool) -> String {
    let source = if facts {
        "Use only the facts in the last message. End every sentence that uses a fact with \
         that fact's marker, exactly as given, such as [1]. Do not add facts."
    } else {
        "There are no notes on this topic: write a short, friendly note proposing to talk \
         it through."
    };
    format!(
        "You write the body of an email to {names} about {topic}. Tone: {tone}. {source} \
         Do not write a greeting, a sign-off or a subject: they are added for you. Plain \
         text, at most {max_tokens} tokens."
    )
}

impl Agent for Writer {
    fn handle(&mut self, ctx: &mut Ctx<'_>, input: AgentInput) -> Result<(), AgentError> {
        let (with, inputs) = parse(&input.payload)?;
        let to: Vec<Recipient> = inputs.contact.map(OneOrMany::into_vec).unwrap_or_default();
        if to.is_empty() || to.len() > RECIPIENTS_MAX {
            return Err(bad(format_args!(
                "inputs.contact must name 1..={RECIPIENTS_MAX} recipients, got {}",
                to.len()
            )));
        }
        let passages: Vec<Passage> = inputs
            .context
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .filter(|p| p.text.chars().any(char::is_alphanumeric))
            .take(PASSAGES_MAX)
            .collect();
        let max_tokens = with.max_tokens.unwrap_or(MAX_TOKENS_DEFAULT);
        if max_tokens == 0 || max_tokens > MAX_TOKENS_MAX {
            return Err(bad(format_args!(
                "with.max_tokens {max_tokens} is outside 1..={MAX_TOKENS_MAX} (the policy's grant)"
            )));
        }
        let topic = with.topic.trim();
        let tone = with.tone.as_deref().unwrap_or("neutral-friendly");
        let names: Vec<&str> = to.iter().map(|r| r.name.as_str()).collect();
        let texts: Vec<String> = passages.iter().map(|p| truncated(&p.text)).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let last = if passages.is_empty() {
            format!(
                "I would like to go through the {topic} with you.\nCould we find half an hour \
                 this week to talk it over?"
            )
        } else {
            fact_lines(&texts)
        };
        let request = CompleteRequest {
            model: with.model.clone(),
            messages: vec![
                ChatMessage {
                    role: "system".into(),
                    content: instructions(
                        &names.join(", "),
                        topic,
                        tone,
                        max_tokens,
                        !passages.is_empty(),
                    ),
                },
                ChatMessage {
                    role: "user".into(),
                    content: last,
                },
            ],
            max_tokens: Some(max_tokens),
            temperature: Some(TEMPERATURE),
        };
        let answer = ctx.model_complete(request).map_err(|e| match e.code() {
            Some(HostErrorCode::Failed | HostErrorCode::NotAvailable) => {
                AgentError::retryable(format!("writer: {e}"))
            }
            _ => bad(e),
        })?;
        let (text, cited) = renumber(without_greeting(&answer.text), passages.len());
        let text = text.trim();
        if !text.chars().any(char::is_alphanumeric) {
            return Err(AgentError::retryable(format!(
                "writer: the model ({}) returned no text",
                answer.model
            )));
        }
        let citations: Vec<String> = cited.iter().map(|&i| passages[i].id.clone()).collect();
        let draft = Draft {
            subject: subject(topic),
            body: body(&greeting(&names), text, with.sender.as_deref(), &citations),
            to,
            citations,
            passages_offered: passages.len(),
            model: ModelInfo {
                provider: answer.provider,
                model: answer.model,
                tokens_in: answer.tokens_in,
                tokens_out: answer.tokens_out,
            },
        };
        ctx.emit("draft", &draft)?;
        Ok(())
    }
}

export_agent!(Writer);

#[cfg(test)]
mod tests;
