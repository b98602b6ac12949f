//! The closed set of event kinds and their payload schemas, checked on every write.
//!
//! Schemas are data (one table per kind) so docs and errors come from the same source.

use std::fmt;

use serde_json::{Map, Value};

use crate::event::ValidationError;
use crate::ids::{EntityRef, parse_trace_id};

/// Largest integer accepted in a payload: JCS numbers are IEEE doubles (2^53 - 1).
pub const JSON_INT_MAX: u64 = (1 << 53) - 1;
/// Longest short string field (names, ids, subjects).
pub const SHORT_STR_BYTES_MAX: usize = 1024;
/// Longest text field (note bodies, rationales).
pub const TEXT_BYTES_MAX: usize = 256 * 1024;
/// Most items in a string list field.
pub const LIST_ITEMS_MAX: usize = 256;
/// Most dimensions of an embedding vector.
pub const VECTOR_DIM_MAX: usize = 4096;

/// Every kind of event the log accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A contact was created or changed (full record, last write wins).
    ContactUpserted,
    /// A contact was removed from the view (the log keeps its history).
    ContactRemoved,
    /// A note was added, optionally about an entity.
    NoteAdded,
    /// An artifact (file, blob) was produced.
    ArtifactCreated,
    /// An email left the machine (after human confirmation).
    EmailSent,
    /// A run of an opening began.
    RunStarted,
    /// An unfinished run was continued from its record (by which host and process).
    RunResumed,
    /// A run ended.
    RunFinished,
    /// An attempt of a node of a run began (durable runs: a started node without a
    /// finish runs again on resume).
    NodeStarted,
    /// A node of a run ended.
    NodeFinished,
    /// The result of one host call, recorded for deterministic replay.
    HostcallRecorded,
    /// A capability decision.
    CapAudit,
    /// A person granted an agent a capability (or took one away) until an expiry.
    CapGranted,
    /// A grant was revoked before its expiry.
    CapRevoked,
    /// An embedding vector for an entity (from the model broker, or the caller for now).
    EmbeddingSet,
    /// A side effect waits for a person's decision (the confirmation gate).
    ActionRequested,
    /// A person (or a flag, or the timeout) decided an action request.
    ActionDecided,
    /// The effects journal is about to perform an effect (written before it is performed).
    EffectIntent,
    /// What an effect's executor did (written after it was performed).
    EffectResult,
    /// One crossing of a run (an invoke, a host call, a record write, a retry, a person's
    /// decision) with its participants, size and times; invokes and host calls carry
    /// their exact request and reply, which replay answers from.
    CrossingRecorded,
}

/// The JSON type a field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Non-empty string up to `SHORT_STR_BYTES_MAX`.
    Str,
    /// String up to `TEXT_BYTES_MAX`.
    Text,
    /// Integer 0..=`JSON_INT_MAX`.
    U64,
    /// 64 lowercase hex digits (a BLAKE3 digest).
    Hex32,
    /// 32 lowercase hex digits.
    TraceId,
    /// An entity reference `<type>:<id>`.
    Entity,
    /// List of short strings.
    StrList,
    /// One of the listed strings.
    OneOf(&'static [&'static str]),
    /// A JSON object.
    Object,
    /// Any JSON value.
    Any,
    /// Non-empty list of finite numbers, at most `VECTOR_DIM_MAX`.
    Vector,
}

/// One field of a payload schema.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// JSON key.
    pub name: &'static str,
    /// Expected type.
    pub ty: FieldType,
    /// Whether the key must be present (and not null).
    pub required: bool,
}

const fn req(name: &'static str, ty: FieldType) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}
const fn opt(name: &'static str, ty: FieldType) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

const RUN_STATUS: &[&str] = &["ok", "succeeded", "failed", "cancelled", "timed_out"];
const NODE_STATUS: &[&str] = &[
    "ok",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
    "timed_out",
];
const RUN_HOST: &[&str] = &["daemon", "embedded"];
const DECISION: &[&str] = &["allow", "deny"];
const ACTION_DECISION: &[&str] = &["approved", "denied", "timed_out"];
const EFFECT_STATUS: &[&str] = &["performed", "failed"];

use FieldType as T;

const CONTACT_UPSERTED: &[Field] = &[
    req("contact_id", T::Str),
    req("name", T::Str),
    opt("email", T::Str),
    opt("phone", T::Str),
    opt("org", T::Str),
    opt("tags", T::StrList),
    opt("notes", T::Text),
];
const CONTACT_REMOVED: &[Field] = &[req("contact_id", T::Str), opt("reason", T::Text)];
const NOTE_ADDED: &[Field] = &[
    req("note_id", T::Str),
    req("text", T::Text),
    opt("about", T::Entity),
    opt("tags", T::StrList),
];
const ARTIFACT_CREATED: &[Field] = &[
    req("artifact_id", T::Str),
    req("name", T::Str),
    req("media_type", T::Str),
    req("digest", T::Hex32),
    req("size_bytes", T::U64),
    opt("uri", T::Str),
    opt("trace_id", T::TraceId),
];
const EMAIL_SENT: &[Field] = &[
    req("message_id", T::Str),
    req("to", T::StrList),
    req("subject", T::Str),
    opt("body_digest", T::Hex32),
    opt("contact_id", T::Str),
    opt("trace_id", T::TraceId),
];
// A run's start holds everything needed to continue it: the opening's source and digest,
// the directory its agents resolve from, params, the RNG seed and the run id.
const RUN_STARTED: &[Field] = &[
    req("trace_id", T::TraceId),
    req("opening", T::Str),
    opt("params", T::Object),
    opt("run_id", T::Str),
    opt("digest", T::Hex32),
    opt("source", T::Text),
    opt("dir", T::Str),
    opt("seed", T::Str),
    opt("host", T::OneOf(RUN_HOST)),
    opt("owner_pid", T::U64),
];
const RUN_RESUMED: &[Field] = &[
    req("trace_id", T::TraceId),
    opt("run_id", T::Str),
    opt("host", T::OneOf(RUN_HOST)),
    opt("owner_pid", T::U64),
];
const RUN_FINISHED: &[Field] = &[
    req("trace_id", T::TraceId),
    req("status", T::OneOf(RUN_STATUS)),
    opt("error", T::Text),
    opt("duration_ms", T::U64),
    opt("result_hash", T::Hex32),
];
const NODE_STARTED: &[Field] = &[
    req("trace_id", T::TraceId),
    req("node_id", T::Str),
    req("agent", T::Str),
    req("attempt", T::U64),
];
const NODE_FINISHED: &[Field] = &[
    req("trace_id", T::TraceId),
    req("node_id", T::Str),
    req("agent", T::Str),
    req("status", T::OneOf(NODE_STATUS)),
    opt("output_hash", T::Hex32),
    opt("duration_ms", T::U64),
    opt("attempt", T::U64),
    // `[[port, payload], …]` in emission order (payloads in the lossless JSON form).
    opt("outputs", T::Any),
    opt("error", T::Text),
];
const HOSTCALL_RECORDED: &[Field] = &[
    req("trace_id", T::TraceId),
    req("node_id", T::Str),
    req("call_seq", T::U64),
    req("call", T::Str),
    req("request_hash", T::Hex32),
    req("result", T::Any),
];
const CAP_AUDIT: &[Field] = &[
    req("agent", T::Str),
    req("cap", T::Str),
    req("decision", T::OneOf(DECISION)),
    opt("request", T::Text),
    opt("reason", T::Text),
    opt("trace_id", T::TraceId),
];
const GRANT_RULE: &[&str] = &["allow", "deny"];
const GRANT_CHANGE: &[&str] = &["narrow", "extend"];
const CAP_GRANTED: &[Field] = &[
    req("grant_id", T::Str),
    req("agent", T::Str),
    // The capability line (`allow …` / `deny …`, the policy.caps grammar).
    req("capability", T::Str),
    req("rule", T::OneOf(GRANT_RULE)),
    req("change", T::OneOf(GRANT_CHANGE)),
    // On the kernel's clock: the grant stops working at `expires_ms`.
    req("granted_ms", T::U64),
    req("expires_ms", T::U64),
    req("by", T::Str),
    opt("reason", T::Text),
];
const CAP_REVOKED: &[Field] = &[
    req("grant_id", T::Str),
    req("agent", T::Str),
    // The revoked grant's expiry (readers skip both events once it passed).
    req("expires_ms", T::U64),
    req("by", T::Str),
    opt("reason", T::Text),
];
const EMBEDDING_SET: &[Field] = &[
    req("entity", T::Entity),
    req("model", T::Str),
    req("vector", T::Vector),
];

// The confirmation gate and the effects journal. A request is keyed by its id (derived from
// run, node, idempotency key and payload hash); `payload` is the exact payload shown.
const ACTION_REQUESTED: &[Field] = &[
    req("request_id", T::Str),
    req("trace_id", T::TraceId),
    req("node_id", T::Str),
    req("agent", T::Str),
    req("effect", T::Str),
    req("idempotency_key", T::Str),
    req("summary", T::Text),
    req("payload_hash", T::Hex32),
    opt("payload", T::Any),
    req("expires_ms", T::U64),
];
const ACTION_DECIDED: &[Field] = &[
    req("request_id", T::Str),
    req("trace_id", T::TraceId),
    req("node_id", T::Str),
    req("decision", T::OneOf(ACTION_DECISION)),
    req("by", T::Str),
    req("payload_hash", T::Hex32),
    opt("reason", T::Text),
];
const EFFECT_INTENT: &[Field] = &[
    req("trace_id", T::TraceId),
    req("node_id", T::Str),
    req("agent", T::Str),
    req("effect", T::Str),
    req("idempotency_key", T::Str),
    req("payload_hash", T::Hex32),
];
const EFFECT_RESULT: &[Field] = &[
    req("trace_id", T::TraceId),
    req("node_id", T::Str),
    req("effect", T::Str),
    req("idempotency_key", T::Str),
    req("status", T::OneOf(EFFECT_STATUS)),
    opt("receipt", T::Any),
    opt("error", T::Text),
];
const CROSSING_STATUS: &[&str] = &["ok", "error"];
const CROSSING_RECORDED: &[Field] = &[
    req("trace_id", T::TraceId),
    req("seq", T::U64),
    req("from", T::Str),
    req("to", T::Str),
    req("kind", T::Str),
    opt("node_id", T::Str),
    // Which invoke of the node (0-based) and which host call within it (the sandbox's
    // call id, from 0).
    opt("invoke", T::U64),
    opt("call", T::U64),
    req("bytes", T::U64),
    opt("reply_bytes", T::U64),
    req("start_ms", T::U64),
    req("end_ms", T::U64),
    req("status", T::OneOf(CROSSING_STATUS)),
    opt("detail", T::Text),
    // The exact message and answer in the lossless JSON form (invokes and host calls).
    opt("request", T::Any),
    opt("reply", T::Any),
    opt("request_hash", T::Hex32),
    // The agent's bundle as it ran (invokes): its wasm digest and directory.
    opt("bundle_digest", T::Hex32),
    opt("bundle", T::Text),
];

impl EventKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EventKind; 20] = [
        EventKind::ContactUpserted,
        EventKind::ContactRemoved,
        EventKind::NoteAdded,
        EventKind::ArtifactCreated,
        EventKind::EmailSent,
        EventKind::RunStarted,
        EventKind::RunResumed,
        EventKind::RunFinished,
        EventKind::NodeStarted,
        EventKind::NodeFinished,
        EventKind::HostcallRecorded,
        EventKind::CapAudit,
        EventKind::CapGranted,
        EventKind::CapRevoked,
        EventKind::EmbeddingSet,
        EventKind::ActionRequested,
        EventKind::ActionDecided,
        EventKind::EffectIntent,
        EventKind::EffectResult,
        EventKind::CrossingRecorded,
    ];

    /// The wire / log name, e.g. `contact.upserted`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ContactUpserted => "contact.upserted",
            EventKind::ContactRemoved => "contact.removed",
            EventKind::NoteAdded => "note.added",
            EventKind::ArtifactCreated => "artifact.created",
            EventKind::EmailSent => "email.sent",
            EventKind::RunStarted => "run.started",
            EventKind::RunResumed => "run.resumed",
            EventKind::RunFinished => "run.finished",
            EventKind::NodeStarted => "node.started",
            EventKind::NodeFinished => "node.finished",
            EventKind::HostcallRecorded => "hostcall.recorded",
            EventKind::CapAudit => "cap.audit",
            EventKind::CapGranted => "cap.granted",
            EventKind::CapRevoked => "cap.revoked",
            EventKind::EmbeddingSet => "embedding.set",
            EventKind::ActionRequested => "action.requested",
            EventKind::ActionDecided => "action.decided",
            EventKind::EffectIntent => "effect.intent",
            EventKind::EffectResult => "effect.result",
            EventKind::CrossingRecorded => "crossing.recorded",
        }
    }

    /// Parses a kind name; unknown names are a validation error on field `kind`.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                ValidationError::new(
                    "kind",
                    format!("unknown kind {s:?} (known: {})", known.join(", ")),
                )
            })
    }

    /// The payload schema of this kind.
    pub fn schema(self) -> &'static [Field] {
        match self {
            EventKind::ContactUpserted => CONTACT_UPSERTED,
            EventKind::ContactRemoved => CONTACT_REMOVED,
            EventKind::NoteAdded => NOTE_ADDED,
            EventKind::ArtifactCreated => ARTIFACT_CREATED,
            EventKind::EmailSent => EMAIL_SENT,
            EventKind::RunStarted => RUN_STARTED,
            EventKind::RunResumed => RUN_RESUMED,
            EventKind::RunFinished => RUN_FINISHED,
            EventKind::NodeStarted => NODE_STARTED,
            EventKind::NodeFinished => NODE_FINISHED,
            EventKind::HostcallRecorded => HOSTCALL_RECORDED,
            EventKind::CapAudit => CAP_AUDIT,
            EventKind::CapGranted => CAP_GRANTED,
            EventKind::CapRevoked => CAP_REVOKED,
            EventKind::EmbeddingSet => EMBEDDING_SET,
            EventKind::ActionRequested => ACTION_REQUESTED,
            EventKind::ActionDecided => ACTION_DECIDED,
            EventKind::EffectIntent => EFFECT_INTENT,
            EventKind::EffectResult => EFFECT_RESULT,
            EventKind::CrossingRecorded => CROSSING_RECORDED,
        }
    }

    /// Checks `payload` against the schema: an object, required keys present, every key
    /// known, every value of its type. Errors name the field as `payload.<name>`.
    pub fn validate(self, payload: &Value) -> Result<(), ValidationError> {
        let Value::Object(map) = payload else {
            return Err(ValidationError::new("payload", "must be a JSON object"));
        };
        let schema = self.schema();
        if let Some(key) = map
            .keys()
            .find(|k| !schema.iter().any(|f| f.name == k.as_str()))
        {
            let known: Vec<&str> = schema.iter().map(|f| f.name).collect();
            let msg = format!(
                "unknown field for {} (known: {})",
                self.as_str(),
                known.join(", ")
            );
            return Err(ValidationError::new(format!("payload.{key}"), msg));
        }
        for field in schema {
            check_field(map, field)?;
        }
        Ok(())
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn check_field(map: &Map<String, Value>, field: &Field) -> Result<(), ValidationError> {
    let path = format!("payload.{}", field.name);
    match map.get(field.name) {
        None | Some(Value::Null) if field.required => {
            Err(ValidationError::new(path, "is required"))
        }
        None | Some(Value::Null) => Ok(()),
        Some(v) => check_type(&path, field.ty, v),
    }
}

/// Checks one value against a field type; `path` names it in the error.
pub fn check_type(path: &str, ty: FieldType, v: &Value) -> Result<(), ValidationError> {
    let fail = |msg: String| Err(ValidationError::new(path, msg));
    match ty {
        T::Str => match v.as_str() {
            Some("") => fail("must not be empty".into()),
            Some(s) if s.len() > SHORT_STR_BYTES_MAX => {
                fail(format!("longer than {SHORT_STR_BYTES_MAX} bytes"))
            }
            Some(_) => Ok(()),
            None => fail("expected a string".into()),
        },
        T::Text => match v.as_str() {
            Some(s) if s.len() > TEXT_BYTES_MAX => {
                fail(format!("longer than {TEXT_BYTES_MAX} bytes"))
            }
            Some(_) => Ok(()),
            None => fail("expected a string".into()),
        },
        T::U64 => match v.as_u64() {
            Some(n) if n <= JSON_INT_MAX => Ok(()),
            Some(_) => fail(format!(
                "above {JSON_INT_MAX}, which JSON numbers cannot hold exactly"
            )),
            None => fail("expected a non-negative integer".into()),
        },
        T::Hex32 => match v.as_str() {
            Some(s)
                if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Ok(())
            }
            _ => fail("expected 64 lowercase hex digits".into()),
        },
        T::TraceId => match v.as_str().map(parse_trace_id) {
            Some(Ok(_)) => Ok(()),
            _ => fail("expected a trace id of 32 lowercase hex digits".into()),
        },
        T::Entity => match v.as_str().map(EntityRef::parse) {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => fail(e.to_string()),
            None => fail("expected an entity reference string".into()),
        },
        T::StrList => check_str_list(path, v),
        T::OneOf(allowed) => match v.as_str() {
            Some(s) if allowed.contains(&s) => Ok(()),
            _ => fail(format!("expected one of: {}", allowed.join(", "))),
        },
        T::Object => match v {
            Value::Object(_) => Ok(()),
            _ => fail("expected an object".into()),
        },
        T::Any => Ok(()),
        T::Vector => check_vector(path, v),
    }
}

fn check_str_list(path: &str, v: &Value) -> Result<(), ValidationError> {
    let Value::Array(items) = v else {
        return Err(ValidationError::new(path, "expected a list of strings"));
    };
    if items.len() > LIST_ITEMS_MAX {
        return Err(ValidationError::new(
            path,
            format!("more than {LIST_ITEMS_MAX} items"),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        check_type(&format!("{path}[{i}]"), T::Str, item)?;
    }
    Ok(())
}

fn check_vector(path: &str, v: &Value) -> Result<(), ValidationError> {
    let Value::Array(items) = v else {
        return Err(ValidationError::new(path, "expected a list of numbers"));
    };
    if items.is_empty() || items.len() > VECTOR_DIM_MAX {
        return Err(ValidationError::new(
            path,
            format!("must have 1..={VECTOR_DIM_MAX} numbers"),
        ));
    }
    if let Some(i) = items
        .iter()
        .position(|x| !x.as_f64().is_some_and(f64::is_finite))
    {
        return Err(ValidationError::new(
            format!("{path}[{i}]"),
            "expected a finite number",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_round_trip_by_name() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()).unwrap(), k);
        }
        assert_eq!(
            EventKind::parse("contact.deleted").unwrap_err().field,
            "kind"
        );
    }

    #[test]
    fn each_bad_payload_names_its_field() {
        let k = EventKind::ContactUpserted;
        assert!(
            k.validate(&json!({"contact_id": "ada", "name": "Ada"}))
                .is_ok()
        );
        let cases = [
            (json!([]), "payload"),
            (json!({"name": "Ada"}), "payload.contact_id"),
            (json!({"contact_id": "ada", "name": ""}), "payload.name"),
            (json!({"contact_id": "ada", "name": 7}), "payload.name"),
            (
                json!({"contact_id": "ada", "name": "A", "tags": ["x", 1]}),
                "payload.tags[1]",
            ),
            (
                json!({"contact_id": "ada", "name": "A", "shoe": 1}),
                "payload.shoe",
            ),
        ];
        for (payload, field) in cases {
            assert_eq!(k.validate(&payload).unwrap_err().field, field, "{payload}");
        }
    }

    #[test]
    fn typed_fields_check_their_formats() {
        let run = EventKind::RunFinished;
        let t = "0123456789abcdef0123456789abcdef";
        assert!(
            run.validate(&json!({"trace_id": t, "status": "ok"}))
                .is_ok()
        );
        assert_eq!(
            run.validate(&json!({"trace_id": t, "status": "meh"}))
                .unwrap_err()
                .field,
            "payload.status"
        );
        assert_eq!(
            run.validate(&json!({"trace_id": "xyz", "status": "ok"}))
                .unwrap_err()
                .field,
            "payload.trace_id"
        );
        let big = json!({"trace_id": t, "status": "ok", "duration_ms": JSON_INT_MAX + 1});
        assert_eq!(run.validate(&big).unwrap_err().field, "payload.duration_ms");
        let emb = EventKind::EmbeddingSet;
        assert!(
            emb.validate(&json!({"entity": "note:a", "model": "m", "vector": [0.1, 2]}))
                .is_ok()
        );
        assert_eq!(
            emb.validate(&json!({"entity": "note:a", "model": "m", "vector": [0.1, "x"]}))
                .unwrap_err()
                .field,
            "payload.vector[1]"
        );
        assert_eq!(
            emb.validate(&json!({"entity": "nope", "model": "m", "vector": [1]}))
                .unwrap_err()
                .field,
            "payload.entity"
        );
    }
}
