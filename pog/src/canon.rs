//! Canonical JSON (RFC 8785 JCS) and the BLAKE3 hash chain over events.

use serde_json::Value;

use crate::event::Hash32;

/// BLAKE3 key-derivation context: hashes from other uses of BLAKE3 can never collide with ours.
const EVENT_HASH_CONTEXT: &str = "runloop pog event v1";

/// The hash that the first event's `prev_hash` points at.
pub const GENESIS_HASH: Hash32 = Hash32([0; 32]);

/// Largest integer magnitude written as its digits: beyond 2^53 JCS writes the nearest
/// double, which the library works out.
const EXACT_INT_MAX: u64 = 1 << 53;

/// JCS-canonical text of a JSON value. Fails only on numbers JCS cannot represent.
///
/// What the POG hashes is nearly always ASCII keys, strings and small integers: those are
/// written here directly (the same bytes, checked against the library in the tests); a
/// value with a float, an integer beyond 2^53 or a non-ASCII key (JCS orders keys by
/// UTF-16 code units) goes to `serde_json_canonicalizer` whole.
pub fn jcs(value: &Value) -> Result<String, serde_json::Error> {
    let mut out = String::with_capacity(256);
    if write_simple(value, &mut out) {
        Ok(out)
    } else {
        serde_json_canonicalizer::to_string(value)
    }
}

/// JCS-canonical text of `value`, and the value that text says: for a simple value (see
/// [`jcs`]) that is `value` with every object's keys sorted (byte order, which for ASCII
/// keys is JCS's order; its integers already read back the same), with no parse; any other
/// value is parsed back from the text (a float `1.0` becomes `1`, an integer beyond 2^53
/// its nearest double).
pub fn canonical(mut value: Value) -> Result<(String, Value), serde_json::Error> {
    let mut text = String::with_capacity(256);
    if write_simple(&value, &mut text) {
        sort_keys_deep(&mut value);
        return Ok((text, value));
    }
    let text = serde_json_canonicalizer::to_string(&value)?;
    let value = serde_json::from_str(&text)?;
    Ok((text, value))
}

/// Sorts the keys of every object in `value`, at every depth.
fn sort_keys_deep(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort_keys_deep);
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys_deep),
        _ => {}
    }
}

/// Writes `value` canonically if it is simple (see [`jcs`]); `false` (with `out` partly
/// written) when it is not.
fn write_simple(value: &Value, out: &mut String) -> bool {
    use std::fmt::Write as _;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > EXACT_INT_MAX {
                    return false;
                }
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                if u > EXACT_INT_MAX {
                    return false;
                }
                let _ = write!(out, "{u}");
            } else {
                return false;
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !write_simple(item, out) {
                    return false;
                }
            }
            out.push(']');
        }
        Value::Object(map) => {
            if !map.keys().all(|k| k.is_ascii()) {
                return false;
            }
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                if !write_simple(item, out) {
                    return false;
                }
            }
            out.push('}');
        }
    }
    true
}

/// A JSON string as ECMAScript's `JSON.stringify` writes it (what JCS requires): `"` and
/// `\` escaped, the five short control escapes, other controls as lower-case `\u00xx`,
/// everything else as it is.
fn write_string(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if short.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(short);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
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

    /// The direct writer against the library, on the edges and on many generated values.
    #[test]
    fn the_direct_writer_gives_the_library_s_bytes() {
        let edges = [
            r#"{"z":1,"a":{"y":[true,false,null],"b":"x"},"A":-9007199254740992}"#,
            r#"{"big":9007199254740993,"neg":-9007199254740993,"u":18446744073709551615}"#,
            r#"{"f":1.5,"e":1e30,"small":1e-7,"int_float":2.0}"#,
            r#"{"ctl":"a\u0000b\u001fc\u007fd\b\f\n\r\t\"\\/","uni":"é💡\u2028"}"#,
            r#"{"é":1,"e":2,"\u20ac":3,"\ud83d\ude00":4,"\uffff":5}"#,
            r#"[[],{},"",0,-0,[[[1]]]]"#,
        ];
        for text in edges {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                jcs(&v).unwrap(),
                serde_json_canonicalizer::to_string(&v).unwrap(),
                "{text}"
            );
            same_as_a_reparse(v);
        }
        // A small deterministic generator (an LCG): nested objects, arrays, strings with
        // escapes and non-ASCII, integers around 2^53, floats.
        fn value(next: &mut dyn FnMut() -> u64, depth: u32) -> Value {
            const PIECES: [&str; 10] = ["a", "B", "\n", "\"", "é", "\u{1}", "z9", "💡", "_", " "];
            let text = |next: &mut dyn FnMut() -> u64| -> String {
                (0..next() % 4)
                    .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                    .collect()
            };
            match next() % if depth > 3 { 5 } else { 7 } {
                0 => Value::Null,
                1 => Value::Bool(next().is_multiple_of(2)),
                2 => {
                    let base = (1u64 << 53) - 2 + next() % 5;
                    if next().is_multiple_of(2) {
                        serde_json::json!(base)
                    } else {
                        serde_json::json!(-(base as i64))
                    }
                }
                3 => serde_json::json!(next() as f64 / 7.0),
                4 => Value::String(text(next)),
                5 => Value::Array((0..next() % 4).map(|_| value(next, depth + 1)).collect()),
                _ => Value::Object(
                    (0..next() % 5)
                        .map(|_| (text(next), value(next, depth + 1)))
                        .collect(),
                ),
            }
        }
        let mut seed: u64 = 0x5eed;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        for _ in 0..2_000 {
            let v = value(&mut next, 0);
            assert_eq!(
                jcs(&v).unwrap(),
                serde_json_canonicalizer::to_string(&v).unwrap(),
                "{v}"
            );
            same_as_a_reparse(v);
        }
    }

    /// `canonical` gives the library's text and, key order included, the value a parse of
    /// that text gives.
    fn same_as_a_reparse(v: Value) {
        let want_text = serde_json_canonicalizer::to_string(&v).unwrap();
        let want: Value = serde_json::from_str(&want_text).unwrap();
        let (text, value) = canonical(v).unwrap();
        assert_eq!(text, want_text);
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "{want_text}"
        );
    }

    #[test]
    fn a_simple_value_comes_back_sorted_without_a_parse() {
        let v: Value =
            serde_json::from_str(r#"{"z":{"b":[{"d":1,"c":2}],"a":null},"y":"x"}"#).unwrap();
        let (text, value) = canonical(v).unwrap();
        assert_eq!(text, r#"{"y":"x","z":{"a":null,"b":[{"c":2,"d":1}]}}"#);
        assert_eq!(serde_json::to_string(&value).unwrap(), text);
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
