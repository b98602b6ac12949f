//! `contact_resolver` (compose_email): turns `with.recipient`, a name or an address, into
//! exactly one contact of the POG's `contacts` view, or fails saying why.
//!
//! Input: a node invoke (`{node, attempt, with, inputs, goals}`, `docs/openings.md`) whose
//! `with` is `{recipient: str}`; a bare `{recipient}` map (`rlp agent send`) works too.
//! Output, on `contact`: `{contact_id, name, email, matched_by}`.
//!
//! Tiers, tried in order; the first tier with any candidate decides, so a better kind of
//! match is never made ambiguous by a worse one. Removed contacts never match.
//!
//! 1. `exact`: the whole name or the address, case-insensitive (SQL).
//! 2. `name`: the recipient is one whole word of the name — a first or last name — or the
//!    address's local part (guest, over the contacts read once). This is why `John`
//!    resolves to John Smith even when another contact is a Jon or a Johanna, or a note
//!    field mentions John.
//! 3. `full_text`: every word of the recipient in the contact's search document (name,
//!    address, org, phone, notes, tags) through `docs_fts`, words quoted.
//! 4. `close`: the recipient is the prefix (≥ 3 chars) of a name word, or within one edit
//!    (two for more than five chars; a transposition is one edit) of a name word or the
//!    whole name.
//!
//! One candidate → emitted. Several → the person is asked, one candidate at a time (at most
//! five, best first), through `confirm.request` (`choose.recipient`: "is the recipient
//! Sam Smith <…>?"); the first yes is emitted with `matched_by: "chosen"`. While nobody
//! has answered, the call answers `ConfirmationPending` and the resolver returns it (the
//! run invokes it again once the person decided). When nobody can be asked (no terminal,
//! a flag — `--approve` never answers a question —, no gate) or every candidate got a no:
//! a non-retryable failure naming them (`2 contacts match "Smith": John Smith <…>, Sam
//! Smith <…>; name one exactly`). None → a failure naming the recipient. A single match
//! without an address fails too: there is nobody to write to.

mod matching;

use matching::{Contact, ambiguity, fts_query, is_close_match, is_name_word_match, normalise};
use runloop_agent_sdk::{
    Agent, AgentError, AgentInput, Ctx, HostErrorCode, KbQueryResult, Value, export_agent,
    from_payload,
};
use serde::{Deserialize, Serialize};

/// Longest recipient accepted, in bytes.
const RECIPIENT_BYTES_MAX: usize = 256;
/// Most contacts read for the guest-side tiers (name word, close spelling).
const CONTACTS_SCAN_MAX: u64 = 5_000;
/// Most rows the SQL tiers return: enough to show an ambiguity, never the whole table.
const SQL_MATCHES_MAX: u64 = 50;

const EXACT_SQL: &str = "SELECT contact_id, name, email FROM contacts \
     WHERE removed = 0 AND (lower(name) = lower(?1) OR lower(email) = lower(?1)) \
     ORDER BY name, contact_id LIMIT ?2";
const SCAN_SQL: &str = "SELECT contact_id, name, email FROM contacts \
     WHERE removed = 0 ORDER BY name, contact_id LIMIT ?1";
const FTS_SQL: &str = "SELECT c.contact_id, c.name, c.email FROM docs_fts \
     JOIN docs d ON d.id = docs_fts.rowid \
     JOIN contacts c ON d.entity = 'contact:' || c.contact_id \
     WHERE docs_fts MATCH ?1 AND d.kind = 'contact.upserted' AND c.removed = 0 \
     ORDER BY bm25(docs_fts), c.contact_id LIMIT ?2";

/// The resolver; stateless.
#[derive(Debug, Default)]
pub struct ContactResolver;

/// The node's `with`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct With {
    recipient: String,
}

/// What `contact` carries.
#[derive(Debug, Serialize)]
struct ContactOut<'a> {
    contact_id: &'a str,
    name: &'a str,
    email: &'a str,
    matched_by: &'static str,
}

/// The invoke's `with`, or the whole payload when it is not a node invoke.
fn with_of(payload: &Value) -> &Value {
    let entries = payload.as_map().map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("with"))
        .map_or(payload, |(_, v)| v)
}

fn rows(result: &KbQueryResult) -> Result<Vec<Contact>, AgentError> {
    result
        .rows
        .iter()
        .map(|row| match row.as_slice() {
            [Value::String(id), Value::String(name), email] => Ok(Contact {
                contact_id: id.as_str().unwrap_or_default().to_owned(),
                name: name.as_str().unwrap_or_default().to_owned(),
                email: email.as_str().map(str::to_owned),
            }),
            other => Err(AgentError::new(format!(
                "contact_resolver: unexpected contacts row {other:?}"
            ))),
        })
        .collect()
}

fn query(ctx: &mut Ctx<'_>, sql: &str, params: Vec<Value>) -> Result<Vec<Contact>, AgentError> {
    let result = ctx
        .kb_query(sql, params)
        .map_err(|e| AgentError::new(format!("contact_resolver: {e}")))?;
    rows(&result)
}

/// Runs the tiers in order; returns the first non-empty tier's candidates and its name.
fn candidates(
    ctx: &mut Ctx<'_>,
    recipient: &str,
) -> Result<(&'static str, Vec<Contact>), AgentError> {
    let limit = Value::from(SQL_MATCHES_MAX);
    let exact = query(ctx, EXACT_SQL, vec![recipient.into(), limit.clone()])?;
    if !exact.is_empty() {
        return Ok(("exact", exact));
    }
    let normalised = normalise(recipient);
    let all = query(ctx, SCAN_SQL, vec![CONTACTS_SCAN_MAX.into()])?;
    let by_word: Vec<Contact> = all
        .iter()
        .filter(|c| is_name_word_match(&normalised, c))
        .cloned()
        .collect();
    if !by_word.is_empty() {
        return Ok(("name", by_word));
    }
    if let Some(text) = fts_query(recipient) {
        let by_text = query(ctx, FTS_SQL, vec![text.into(), limit])?;
        if !by_text.is_empty() {
            return Ok(("full_text", by_text));
        }
    }
    let close: Vec<Contact> = all
        .into_iter()
        .filter(|c| is_close_match(&normalised, c))
        .collect();
    Ok(("close", close))
}

/// Asks the person about each candidate (with an address, at most five) in turn; the
/// first yes wins. `Ok(None)`: every answer was no, or nobody can be asked.
fn choose<'c>(
    ctx: &mut Ctx<'_>,
    recipient: &str,
    several: &'c [Contact],
) -> Result<Option<&'c Contact>, AgentError> {
    let asked: Vec<&Contact> = several
        .iter()
        .filter(|c| c.email.as_deref().is_some_and(|e| !e.is_empty()))
        .take(matching::CANDIDATES_SHOWN_MAX)
        .collect();
    for (i, candidate) in asked.iter().enumerate() {
        let question = format!(
            "{} contacts match {recipient:?}; is the recipient {}? (candidate {} of {})",
            several.len(),
            candidate.display(),
            i + 1,
            asked.len()
        );
        match ctx.confirm("choose.recipient", question) {
            Ok(true) => return Ok(Some(candidate)),
            Ok(false) => continue,
            Err(e)
                if matches!(
                    e.code(),
                    Some(HostErrorCode::NotAvailable | HostErrorCode::CapabilityDenied)
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

impl Agent for ContactResolver {
    fn handle(&mut self, ctx: &mut Ctx<'_>, input: AgentInput) -> Result<(), AgentError> {
        let with: With = from_payload(with_of(&input.payload))
            .map_err(|e| AgentError::new(format!("contact_resolver: with: {e}")))?;
        let recipient = with.recipient.trim();
        if recipient.is_empty() {
            return Err(AgentError::new(
                "contact_resolver: with.recipient is empty; give a name or an address",
            ));
        }
        if recipient.len() > RECIPIENT_BYTES_MAX {
            return Err(AgentError::new(format!(
                "contact_resolver: with.recipient is {} bytes, at most {RECIPIENT_BYTES_MAX}",
                recipient.len()
            )));
        }
        let (mut tier, found) = candidates(ctx, recipient)?;
        let contact = match found.as_slice() {
            [] => {
                return Err(AgentError::new(format!(
                    "no contact matches {recipient:?} (by name or address, first or last \
                     name, full text, or a close spelling)"
                )));
            }
            [one] => one,
            several => match choose(ctx, recipient, several)? {
                Some(chosen) => {
                    tier = "chosen";
                    chosen
                }
                None => return Err(AgentError::new(ambiguity(recipient, several))),
            },
        };
        let Some(email) = contact.email.as_deref().filter(|e| !e.is_empty()) else {
            return Err(AgentError::new(format!(
                "contact {} ({}) matches {recipient:?} but has no email address",
                contact.contact_id, contact.name
            )));
        };
        ctx.emit(
            "contact",
            &ContactOut {
                contact_id: &contact.contact_id,
                name: &contact.name,
                email,
                matched_by: tier,
            },
        )?;
        Ok(())
    }
}

export_agent!(ContactResolver);

#[cfg(test)]
mod tests;
