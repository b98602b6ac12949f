//! Canonical JSON (RFC 8785 JCS) and the BLAKE3 hash chain over events.

use serde_json::Value;

use crate::event::Hash32;

/// BLAKE3 key-derivation context: hashes from other uses of BLAKE3 can never collide with ours.
const EVENT_HASH_CONTEXT: &str = "runloop pog event v1";

/// The hash that the first event's `prev_hash` points at.
pub const GENESIS_HASH: Hash32 = Hash32([0; 32]);

/// JCS-canonical text of a JSON value. Fails only on numbers JCS cannot represent.
pub fn jcs(value: &Value) -> Result<String, serde_json::Error> {
    serde_json_canonicalizer::to_string(value)
}

/// The fields an event hash covers, in the one order that matters (JCS sorts keys anyway).
#[derive(Debug, Clone, Copy)]
pub struct HashInput<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Timestamp.
    pub ts_ms: u64,
    /// Event kind name.
    pub kind: &'a str,
    /// Writer.
    pub actor: &'a str,
    /// Scope.
    pub scope: &'a str,
    /// Canonical payload text.
    pub payload_jcs: &'a str,
    /// Canonical provenance text.
    pub provenance_jcs: &'a str,
    /// Idempotency key, if any.
    pub idempotency_key: Option<&'a str>,
}

/// hash = BLAKE3-derive-key(ctx, prev_hash ‖ JCS(record)); the record embeds the canonical
/// payload and provenance as strings so that their exact bytes, not a re-parse, are covered.
pub fn event_hash(prev: &Hash32, input: &HashInput<'_>) -> Hash32 {
    let record = serde_json::json!({
        "seq": input.seq,
        "ts_ms": input.ts_ms,
        "kind": input.kind,
        "actor": input.actor,
        "scope": input.scope,
        "payload": input.payload_jcs,
        "provenance": input.provenance_jcs,
        "idempotency_key": input.idempotency_key,
    });
    // Strings and u64s below 2^53 are always representable, so this cannot fail.
    let text = jcs(&record).expect("hash record is canonicalisable");
    let mut hasher = blake3::Hasher::new_derive_key(EVENT_HASH_CONTEXT);
    hasher.update(&prev.0);
    hasher.update(text.as_bytes());
    Hash32(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jcs_sorts_keys_and_normalises_numbers() {
        let v: Value =
            serde_json::from_str(r#"{"b": 1.0, "a": [1e2, "x"], "c": {"z": null, "y": true}}"#)
                .unwrap();
        assert_eq!(
            jcs(&v).unwrap(),
            r#"{"a":[100,"x"],"b":1,"c":{"y":true,"z":null}}"#
        );
    }

    #[test]
    fn hash_changes_with_every_field_and_the_previous_hash() {
        let base = HashInput {
            seq: 1,
            ts_ms: 2,
            kind: "note.added",
            actor: "user",
            scope: "default",
            payload_jcs: "{}",
            provenance_jcs: "{}",
            idempotency_key: None,
        };
        let h = event_hash(&GENESIS_HASH, &base);
        assert_ne!(h, event_hash(&Hash32([1; 32]), &base));
        assert_ne!(h, event_hash(&GENESIS_HASH, &HashInput { seq: 2, ..base }));
        assert_ne!(
            h,
            event_hash(&GENESIS_HASH, &HashInput { ts_ms: 3, ..base })
        );
        assert_ne!(
            h,
            event_hash(
                &GENESIS_HASH,
                &HashInput {
                    payload_jcs: "{\"a\":1}",
                    ..base
                }
            )
        );
        assert_ne!(
            h,
            event_hash(
                &GENESIS_HASH,
                &HashInput {
                    idempotency_key: Some("k"),
                    ..base
                }
            )
        );
        assert_eq!(h, event_hash(&GENESIS_HASH, &base));
    }
}
