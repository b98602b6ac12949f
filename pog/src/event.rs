//! Events: what a writer submits (`NewEvent`, validated on construction), what the log holds
//! (`Event`), and provenance.

use std::fmt;

use serde_json::{Map, Value, json};

use crate::canon::{canonical, jcs};
use crate::ids::{ActorName, IdempotencyKey, Scope, TraceId, parse_trace_id};
use crate::kind::{EventKind, FieldType, SHORT_STR_BYTES_MAX, TEXT_BYTES_MAX, check_type};

/// Most evidence references one event may carry.
pub const EVIDENCE_ITEMS_MAX: usize = 64;
/// Largest canonical payload of one event.
pub const PAYLOAD_BYTES_MAX: usize = 1024 * 1024;

/// A BLAKE3 digest; stored as `BLOB(32)`, shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// Lowercase hex for display.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// From a 32-byte slice (a BLOB column); `None` for any other length.
    pub fn from_slice(b: &[u8]) -> Option<Hash32> {
        <[u8; 32]>::try_from(b).ok().map(Hash32)
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

/// A bad event, naming the field (`payload.email`, `provenance.trace_id`, `kind`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// Dotted path of the offending field.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ValidationError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Why an event exists: which run, which opening, which agent, from which inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The run's trace id (32 lowercase hex on the wire).
    pub trace_id: TraceId,
    /// The opening that ran (`compose_email`, `cli.write`, ...).
    pub opening_id: String,
    /// The agent (or tool) that produced the event.
    pub agent: String,
    /// BLAKE3 of the inputs the agent saw, 64 hex.
    pub inputs_hash: String,
    /// Optional human-readable reason.
    pub rationale: Option<String>,
    /// Earlier events (by seq) this one is based on; each must exist when written.
    pub evidence: Vec<u64>,
}

const PROVENANCE_KEYS: &[&str] = &[
    "trace_id",
    "opening_id",
    "agent",
    "inputs_hash",
    "rationale",
    "evidence",
];

impl Provenance {
    /// Parses and validates provenance JSON; errors name `provenance.<field>`.
    pub fn from_json(v: &Value) -> Result<Self, ValidationError> {
        let Value::Object(map) = v else {
            return Err(ValidationError::new("provenance", "must be a JSON object"));
        };
        if let Some(k) = map.keys().find(|k| !PROVENANCE_KEYS.contains(&k.as_str())) {
            return Err(ValidationError::new(
                format!("provenance.{k}"),
                "unknown field",
            ));
        }
        let s = |name: &str, ty: FieldType| -> Result<Option<String>, ValidationError> {
            let path = format!("provenance.{name}");
            match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => check_type(&path, ty, v).map(|()| v.as_str().map(str::to_owned)),
            }
        };
        let need = |name: &str, v: Option<String>| {
            v.ok_or_else(|| ValidationError::new(format!("provenance.{name}"), "is required"))
        };
        let trace = need("trace_id", s("trace_id", FieldType::TraceId)?)?;
        let trace_id = parse_trace_id(&trace)
            .map_err(|e| ValidationError::new("provenance.trace_id", e.to_string()))?;
        Ok(Provenance {
            trace_id,
            opening_id: need("opening_id", s("opening_id", FieldType::Str)?)?,
            agent: need("agent", s("agent", FieldType::Str)?)?,
            inputs_hash: need("inputs_hash", s("inputs_hash", FieldType::Hex32)?)?,
            rationale: s("rationale", FieldType::Text)?,
            evidence: parse_evidence(map)?,
        })
    }

    /// The JSON form (what is canonicalised and hashed).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("trace_id".into(), json!(self.trace_id.to_string()));
        m.insert("opening_id".into(), json!(self.opening_id));
        m.insert("agent".into(), json!(self.agent));
        m.insert("inputs_hash".into(), json!(self.inputs_hash));
        if let Some(r) = &self.rationale {
            m.insert("rationale".into(), json!(r));
        }
        if !self.evidence.is_empty() {
            m.insert("evidence".into(), json!(self.evidence));
        }
        Value::Object(m)
    }
}

fn parse_evidence(map: &Map<String, Value>) -> Result<Vec<u64>, ValidationError> {
    let Some(v) = map.get("evidence").filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = v else {
        return Err(ValidationError::new(
            "provenance.evidence",
            "expected a list of event seqs",
        ));
    };
    if items.len() > EVIDENCE_ITEMS_MAX {
        return Err(ValidationError::new(
            "provenance.evidence",
            format!("more than {EVIDENCE_ITEMS_MAX} items"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                ValidationError::new(
                    format!("provenance.evidence[{i}]"),
                    "expected an event seq (integer >= 1)",
                )
            })
        })
        .collect()
}

/// An event to append, already validated against its kind's schema and canonicalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    kind: EventKind,
    actor: ActorName,
    scope: Scope,
    payload: Value,
    payload_jcs: String,
    provenance: Provenance,
    provenance_jcs: String,
    idempotency_key: Option<IdempotencyKey>,
}

impl NewEvent {
    /// Validates `payload` for `kind` and canonicalises payload and provenance.
    pub fn new(
        kind: EventKind,
        actor: ActorName,
        scope: Scope,
        payload: Value,
        provenance: Provenance,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Result<Self, ValidationError> {
        kind.validate(&payload)?;
        // The value kept is exactly what the canonical text says (e.g. 1.0 -> 1, keys in
        // JCS order).
        let (payload_jcs, payload) = canonical(payload)
            .map_err(|e| ValidationError::new("payload", format!("not canonicalisable: {e}")))?;
        if payload_jcs.len() > PAYLOAD_BYTES_MAX {
            return Err(ValidationError::new(
                "payload",
                format!("canonical form is over {PAYLOAD_BYTES_MAX} bytes"),
            ));
        }
        let provenance_jcs =
            jcs(&provenance.to_json()).expect("provenance holds only strings and small ints");
        Ok(NewEvent {
            kind,
            actor,
            scope,
            payload,
            payload_jcs,
            provenance,
            provenance_jcs,
            idempotency_key,
        })
    }

    /// Parses the JSON form `{kind, actor?, scope?, payload, provenance, idempotency_key?}`
    /// (host calls, NDJSON import). Missing actor/scope take the given defaults.
    pub fn from_json(
        v: &Value,
        default_actor: &ActorName,
        default_scope: &Scope,
    ) -> Result<Self, ValidationError> {
        let Value::Object(map) = v else {
            return Err(ValidationError::new("event", "must be a JSON object"));
        };
        const KEYS: &[&str] = &[
            "kind",
            "actor",
            "scope",
            "payload",
            "provenance",
            "idempotency_key",
            "seq",
            "ts_ms",
            "prev_hash",
            "hash",
        ];
        if let Some(k) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(ValidationError::new(k.clone(), "unknown field"));
        }
        let text = |k: &str| map.get(k).and_then(Value::as_str);
        let kind = EventKind::parse(
            text("kind").ok_or_else(|| ValidationError::new("kind", "is required"))?,
        )?;
        let actor = match text("actor") {
            Some(a) => {
                ActorName::new(a).map_err(|e| ValidationError::new("actor", e.to_string()))?
            }
            None => default_actor.clone(),
        };
        let scope = match text("scope") {
            Some(s) => Scope::new(s).map_err(|e| ValidationError::new("scope", e.to_string()))?,
            None => default_scope.clone(),
        };
        let key = match map.get("idempotency_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(
                IdempotencyKey::new(k)
                    .map_err(|e| ValidationError::new("idempotency_key", e.to_string()))?,
            ),
            Some(_) => return Err(ValidationError::new("idempotency_key", "expected a string")),
        };
        let payload = map
            .get("payload")
            .cloned()
            .ok_or_else(|| ValidationError::new("payload", "is required"))?;
        let prov = Provenance::from_json(
            map.get("provenance")
                .ok_or_else(|| ValidationError::new("provenance", "is required"))?,
        )?;
        NewEvent::new(kind, actor, scope, payload, prov, key)
    }

    /// The kind.
    pub fn kind(&self) -> EventKind {
        self.kind
    }
    /// The writer.
    pub fn actor(&self) -> &ActorName {
        &self.actor
    }
    /// The scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The validated payload.
    pub fn payload(&self) -> &Value {
        &self.payload
    }
    /// Canonical payload text.
    pub fn payload_jcs(&self) -> &str {
        &self.payload_jcs
    }
    /// Provenance.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }
    /// Canonical provenance text.
    pub fn provenance_jcs(&self) -> &str {
        &self.provenance_jcs
    }
    /// The idempotency key, if any.
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.idempotency_key.as_ref()
    }
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the log, from 1, contiguous.
    pub seq: u64,
    /// When the writer appended it.
    pub ts_ms: u64,
    /// Kind.
    pub kind: EventKind,
    /// Writer.
    pub actor: String,
    /// Scope.
    pub scope: String,
    /// Payload.
    pub payload: Value,
    /// Provenance JSON.
    pub provenance: Value,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Hash of the previous event (zeros for seq 1).
    pub prev_hash: Hash32,
    /// This event's hash.
    pub hash: Hash32,
}

impl Event {
    /// JSON for `--json` output and NDJSON export; hashes as hex.
    pub fn to_json(&self) -> Value {
        json!({
            "seq": self.seq,
            "ts_ms": self.ts_ms,
            "kind": self.kind.as_str(),
            "actor": self.actor,
            "scope": self.scope,
            "payload": self.payload,
            "provenance": self.provenance,
            "idempotency_key": self.idempotency_key,
            "prev_hash": self.prev_hash.to_hex(),
            "hash": self.hash.to_hex(),
        })
    }
}

/// Short strings in provenance share the payload limit.
const _: () = assert!(SHORT_STR_BYTES_MAX < TEXT_BYTES_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    fn prov() -> Value {
        json!({"trace_id": "0123456789abcdef0123456789abcdef", "opening_id": "o", "agent": "a", "inputs_hash": "ab".repeat(32)})
    }

    #[test]
    fn provenance_errors_name_the_field() {
        assert!(Provenance::from_json(&prov()).is_ok());
        let mut p = prov();
        p["trace_id"] = json!("0123");
        assert_eq!(
            Provenance::from_json(&p).unwrap_err().field,
            "provenance.trace_id"
        );
        let mut p = prov();
        p.as_object_mut().unwrap().remove("agent");
        assert_eq!(
            Provenance::from_json(&p).unwrap_err().field,
            "provenance.agent"
        );
        let mut p = prov();
        p["evidence"] = json!([1, 0]);
        assert_eq!(
            Provenance::from_json(&p).unwrap_err().field,
            "provenance.evidence[1]"
        );
        let mut p = prov();
        p["who"] = json!("x");
        assert_eq!(
            Provenance::from_json(&p).unwrap_err().field,
            "provenance.who"
        );
    }

    #[test]
    fn new_event_from_json_canonicalises() {
        let v = json!({"kind": "note.added", "payload": {"text": "hi", "note_id": "n1"}, "provenance": prov()});
        let e = NewEvent::from_json(
            &v,
            &ActorName::new("user").unwrap(),
            &Scope::default_scope(),
        )
        .unwrap();
        assert_eq!(e.payload_jcs(), r#"{"note_id":"n1","text":"hi"}"#);
        assert_eq!(e.scope().as_str(), "default");
        let bad = json!({"kind": "note.added", "payload": {"note_id": "n1"}, "provenance": prov()});
        let err = NewEvent::from_json(
            &bad,
            &ActorName::new("user").unwrap(),
            &Scope::default_scope(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "payload.text: is required");
    }
}
