//! The JSON form of MsgPack values, lossless in both directions, for tools and docs.
//!
//! Plain JSON covers most values. The MsgPack values JSON cannot say are tagged objects
//! with a single `$`-key: `{"$bin": "<hex>"}`, `{"$ext": {"type": i8, "data": "<hex>"}}`,
//! `{"$f32": number}`, non-finite floats as `{"$f64": "<16 hex digits of the bits>"}` or
//! `{"$f32": "<8 hex digits>"}`, and maps whose keys are not all distinct strings (or that
//! use a key starting with `$`) as `{"$map": [[key, value], …]}`. Map order is kept.

use rmpv::Value;
use serde_json::{Map, Number, Value as Json};

/// A JSON value that has no MsgPack meaning under this mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct JsonFormError {
    path: String,
    reason: String,
}

/// MsgPack → JSON. Total: every value has a JSON form.
pub fn msgpack_to_json(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::from(u),
            (None, Some(n)) => Json::from(n),
            (None, None) => unreachable!("MsgPack integers are u64 or i64"),
        },
        Value::F32(f) => match Number::from_f64(f64::from(*f)) {
            Some(n) if f.is_finite() => tagged("$f32", Json::Number(n)),
            _ => tagged("$f32", Json::String(format!("{:08x}", f.to_bits()))),
        },
        Value::F64(f) => match Number::from_f64(*f) {
            Some(n) if f.is_finite() => Json::Number(n),
            _ => tagged("$f64", Json::String(format!("{:016x}", f.to_bits()))),
        },
        Value::String(s) => Json::String(s.as_str().map_or_else(
            || String::from_utf8_lossy(s.as_bytes()).into_owned(),
            str::to_owned,
        )),
        Value::Binary(bytes) => tagged("$bin", Json::String(hex::encode(bytes))),
        Value::Array(items) => Json::Array(items.iter().map(msgpack_to_json).collect()),
        Value::Map(entries) => map_to_json(entries),
        Value::Ext(ty, data) => {
            let mut inner = Map::new();
            inner.insert("type".into(), Json::from(*ty));
            inner.insert("data".into(), Json::String(hex::encode(data)));
            tagged("$ext", Json::Object(inner))
        }
    }
}

fn tagged(tag: &str, value: Json) -> Json {
    let mut map = Map::new();
    map.insert(tag.into(), value);
    Json::Object(map)
}

fn map_to_json(entries: &[(Value, Value)]) -> Json {
    let mut object = Map::new();
    let plain = entries.iter().all(|(k, _)| {
        k.as_str().is_some_and(|key| !key.starts_with('$'))
            && object
                .insert(k.as_str().unwrap_or_default().to_owned(), Json::Null)
                .is_none()
    });
    if plain {
        let object = entries
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap_or_default().to_owned(),
                    msgpack_to_json(v),
                )
            })
            .collect();
        return Json::Object(object);
    }
    let pairs = entries
        .iter()
        .map(|(k, v)| Json::Array(vec![msgpack_to_json(k), msgpack_to_json(v)]))
        .collect();
    tagged("$map", Json::Array(pairs))
}

/// JSON → MsgPack, the inverse of [`msgpack_to_json`]. `path` names the place in the
/// document for error messages (e.g. `body.payload`).
pub fn json_to_msgpack(json: &Json, path: &str) -> Result<Value, JsonFormError> {
    let err = |reason: String| JsonFormError {
        path: path.to_owned(),
        reason,
    };
    Ok(match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::F64(
                    n.as_f64()
                        .ok_or_else(|| err(format!("number {n} is not representable")))?,
                )
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| json_to_msgpack(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(object) => object_to_msgpack(object, path)?,
    })
}

fn object_to_msgpack(object: &Map<String, Json>, path: &str) -> Result<Value, JsonFormError> {
    let err = |reason: String| JsonFormError {
        path: path.to_owned(),
        reason,
    };
    let tag = object.keys().find(|k| k.starts_with('$'));
    let Some(tag) = tag else {
        let entries = object
            .iter()
            .map(|(k, v)| {
                Ok((
                    Value::from(k.as_str()),
                    json_to_msgpack(v, &format!("{path}.{k}"))?,
                ))
            })
            .collect::<Result<_, JsonFormError>>()?;
        return Ok(Value::Map(entries));
    };
    if object.len() != 1 {
        return Err(err(format!(
            "key {tag:?} starts with '$', which marks a tagged value and must stand alone; \
             write maps with such keys as {{\"$map\": [[key, value], ...]}}"
        )));
    }
    let inner = &object[tag];
    let inner_path = format!("{path}.{tag}");
    match tag.as_str() {
        "$bin" => Ok(Value::Binary(hex_field(inner, &inner_path)?)),
        "$f32" => {
            tagged_float32(inner).ok_or_else(|| err("$f32 takes a number or 8 hex digits".into()))
        }
        "$f64" => tagged_float64(inner)
            .ok_or_else(|| err("$f64 takes 16 hex digits of a non-finite float".into())),
        "$ext" => {
            let ty = inner
                .get("type")
                .and_then(Json::as_i64)
                .and_then(|t| i8::try_from(t).ok());
            let data = inner
                .get("data")
                .map(|d| hex_field(d, &format!("{inner_path}.data")));
            match (ty, data, inner.as_object().map(Map::len)) {
                (Some(ty), Some(data), Some(2)) => Ok(Value::Ext(ty, data?)),
                _ => Err(err(
                    "$ext takes {\"type\": -128..127, \"data\": \"<hex>\"}".into()
                )),
            }
        }
        "$map" => {
            let Some(pairs) = inner.as_array() else {
                return Err(err("$map takes an array of [key, value] pairs".into()));
            };
            let entries = pairs
                .iter()
                .enumerate()
                .map(|(i, pair)| match pair.as_array().map(Vec::as_slice) {
                    Some([k, v]) => Ok((
                        json_to_msgpack(k, &format!("{inner_path}[{i}][0]"))?,
                        json_to_msgpack(v, &format!("{inner_path}[{i}][1]"))?,
                    )),
                    _ => Err(JsonFormError {
                        path: format!("{inner_path}[{i}]"),
                        reason: "expected a [key, value] pair".into(),
                    }),
                })
                .collect::<Result<_, _>>()?;
            Ok(Value::Map(entries))
        }
        other => Err(err(format!(
            "unknown tag {other:?} (known: $bin, $ext, $f32, $f64, $map)"
        ))),
    }
}

fn hex_field(json: &Json, path: &str) -> Result<Vec<u8>, JsonFormError> {
    json.as_str()
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| JsonFormError {
            path: path.to_owned(),
            reason: "expected a string of hex digit pairs".into(),
        })
}

fn tagged_float32(json: &Json) -> Option<Value> {
    if let Some(f) = json.as_f64() {
        // Only values that came from an f32 convert back exactly.
        let narrow = f as f32;
        return (f64::from(narrow) == f).then_some(Value::F32(narrow));
    }
    let bits = u32::from_str_radix(json.as_str()?, 16).ok()?;
    let f = f32::from_bits(bits);
    (!f.is_finite() && json.as_str()?.len() == 8).then_some(Value::F32(f))
}

fn tagged_float64(json: &Json) -> Option<Value> {
    let text = json.as_str()?;
    let f = f64::from_bits(u64::from_str_radix(text, 16).ok()?);
    (!f.is_finite() && text.len() == 16).then_some(Value::F64(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(value: Value) {
        let json = msgpack_to_json(&value);
        let back = json_to_msgpack(&json, "v").unwrap();
        // Compare bytes: NaN != NaN as a value, but its bits must survive.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        rmpv::encode::write_value(&mut a, &value).unwrap();
        rmpv::encode::write_value(&mut b, &back).unwrap();
        assert_eq!(a, b, "{json}");
    }

    #[test]
    fn every_msgpack_kind_survives_the_json_form() {
        round_trip(Value::Nil);
        round_trip(Value::from(u64::MAX));
        round_trip(Value::from(i64::MIN));
        round_trip(Value::F64(-0.0));
        round_trip(Value::F64(1.0));
        round_trip(Value::F64(f64::NAN));
        round_trip(Value::F64(f64::from_bits(0x7ff0_0000_0000_0001)));
        round_trip(Value::F32(1.5));
        round_trip(Value::F32(f32::NEG_INFINITY));
        round_trip(Value::Binary(vec![0, 255]));
        round_trip(Value::Ext(-3, vec![1, 2]));
        round_trip(Value::Map(vec![(Value::from(1), Value::from("one"))]));
        round_trip(Value::Map(vec![(Value::from("$bin"), Value::Nil)]));
        round_trip(Value::Map(vec![
            (Value::from("a"), Value::from(1)),
            (Value::from("a"), Value::from(2)),
        ]));
        round_trip(Value::Map(vec![
            (Value::from("z"), Value::from(1)),
            (Value::from("a"), Value::Array(vec![Value::Boolean(true)])),
        ]));
    }

    #[test]
    fn bad_json_forms_name_the_place() {
        let cases = [
            (
                r#"{"$bin": "xyz"}"#,
                "v.$bin: expected a string of hex digit pairs",
            ),
            (
                r#"{"$bin": "00", "x": 1}"#,
                "v: key \"$bin\" starts with '$'",
            ),
            (r#"{"$what": 1}"#, "v: unknown tag \"$what\""),
            (r#"{"$f32": 0.1}"#, "v: $f32 takes"),
            (
                r#"{"$map": [[1]]}"#,
                "v.$map[0]: expected a [key, value] pair",
            ),
            (
                r#"{"a": [{"$ext": {"type": 300, "data": ""}}]}"#,
                "v.a[0]: $ext takes",
            ),
        ];
        for (input, want) in cases {
            let json: Json = serde_json::from_str(input).unwrap();
            let err = json_to_msgpack(&json, "v").unwrap_err().to_string();
            assert!(err.starts_with(want), "{input}: {err}");
        }
    }
}
