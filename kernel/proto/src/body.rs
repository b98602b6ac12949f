//! The MsgPack body of a frame: `{type, payload, meta?}`, canonical and bounded.
//!
//! Canonical means: the map holds `type`, `payload` and optionally `meta`, in that order;
//! every integer, string, array and map uses its shortest MsgPack form; every string is
//! UTF-8. Decoding refuses anything else as `BodyDecodeError`, which is what makes
//! "decode then encode gives the same bytes" true for every accepted frame.

use rmpv::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::FrameError;
use crate::ids::Family;
use crate::registry::{Kind, KindPayload};

/// Deepest nesting accepted in a body, counted as [`value_depth`] counts (the body map
/// itself is one level, so a payload may nest `BODY_DEPTH_MAX - 1` deep). Each level costs
/// decoder stack, so a hostile peer must not choose it. Encoding and decoding apply the
/// same rule: the encoder never builds a body the decoder refuses.
pub const BODY_DEPTH_MAX: usize = 64;

/// Deepest an agent's input or output payload may nest. The envelopes around it (body,
/// invoke or output, delivery) take at most `BODY_DEPTH_MAX - VALUE_DEPTH_MAX` levels, so a
/// payload within this bound always fits a frame; a deeper one is refused where it enters
/// (a send to an agent, a guest's output or host call), with this bound named.
pub const VALUE_DEPTH_MAX: usize = 56;

/// The stack guard handed to `rmpv`, which counts more than one step per level (so its
/// own limit is looser); the rule itself is [`BODY_DEPTH_MAX`], checked after reading.
const RMPV_DEPTH_GUARD: usize = 4 * BODY_DEPTH_MAX;

/// How deep `value` nests: a scalar is 1, an array or map is one more than its deepest
/// element (keys count as elements). Stops counting past `BODY_DEPTH_MAX + 1`.
pub fn value_depth(value: &Value) -> usize {
    fn go(value: &Value, budget: usize) -> usize {
        if budget == 0 {
            return 1;
        }
        match value {
            Value::Array(items) => 1 + items.iter().map(|v| go(v, budget - 1)).max().unwrap_or(0),
            Value::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| go(k, budget - 1).max(go(v, budget - 1)))
                    .max()
                    .unwrap_or(0)
            }
            _ => 1,
        }
    }
    go(value, BODY_DEPTH_MAX + 1)
}

/// A decoded body: a registered kind, its payload and optional metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    kind: Kind,
    payload: Value,
    meta: Option<Vec<(Value, Value)>>,
}

impl Body {
    /// A body from an already-built MsgPack payload. Strings must be UTF-8 and nesting
    /// bounded, the same rules decoding applies.
    pub fn new(
        kind: Kind,
        payload: Value,
        meta: Option<Vec<(Value, Value)>>,
    ) -> Result<Self, FrameError> {
        // One level is the body map around them.
        check_value(&payload, BODY_DEPTH_MAX - 1)?;
        if let Some(meta) = &meta {
            for (k, v) in meta {
                check_value(k, BODY_DEPTH_MAX - 2)?;
                check_value(v, BODY_DEPTH_MAX - 2)?;
            }
        }
        Ok(Self {
            kind,
            payload,
            meta,
        })
    }

    /// A body carrying the typed payload `P`, encoded with named fields. For payloads
    /// that carry no agent values (their depth is fixed); see [`Body::try_from_payload`].
    pub fn from_payload<P: KindPayload + Serialize>(payload: &P) -> Self {
        Self::try_from_payload(payload).expect("a payload of fixed depth fits a body")
    }

    /// [`Body::from_payload`] for payloads that carry agent values, which may nest too
    /// deep: `BodyDecodeError` naming the bound instead of a frame no decoder accepts.
    pub fn try_from_payload<P: KindPayload + Serialize>(payload: &P) -> Result<Self, FrameError> {
        let bytes = rmp_serde::to_vec_named(payload).expect("payload types serialize");
        let value =
            rmpv::decode::read_value_with_max_depth(&mut bytes.as_slice(), RMPV_DEPTH_GUARD)
                .map_err(|_| {
                    FrameError::body(format!("nesting deeper than {BODY_DEPTH_MAX} levels"))
                })?;
        Self::new(P::KIND, value, None)
    }

    /// How many bytes [`Body::from_payload`]`(payload)` encodes to, counted by one
    /// serialization pass that builds nothing: a sender checks a size bound before paying
    /// for the body (a 1,000-agent status is ≈ 380 KB).
    pub fn encoded_len_of<P: KindPayload + Serialize>(payload: &P) -> usize {
        /// Counts what is written.
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        rmp_serde::encode::write_named(&mut count, payload).expect("payload types serialize");
        // The map, the `type` key and name and the `payload` key around it; `rmp-serde`
        // writes every number and length in its shortest form, as the body does.
        let mut envelope = Vec::new();
        write_parts(P::KIND.type_name(), &Value::Nil, None, &mut envelope);
        envelope.len() - 1 + count.0
    }

    /// The same body with `meta` attached.
    pub fn with_meta(mut self, meta: Vec<(Value, Value)>) -> Result<Self, FrameError> {
        for (k, v) in &meta {
            check_value(k, BODY_DEPTH_MAX - 2)?;
            check_value(v, BODY_DEPTH_MAX - 2)?;
        }
        self.meta = Some(meta);
        Ok(self)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn payload(&self) -> &Value {
        &self.payload
    }
    pub fn meta(&self) -> Option<&[(Value, Value)]> {
        self.meta.as_deref()
    }

    /// The payload as `P`: `BodyTypeMismatch` if the body is another kind,
    /// `BodyDecodeError` if its shape does not fit.
    pub fn payload_as<P: KindPayload + DeserializeOwned>(&self) -> Result<P, FrameError> {
        if self.kind != P::KIND {
            return Err(FrameError::type_mismatch(format!(
                "expected {}, found {}",
                P::KIND.type_name(),
                self.kind.type_name()
            )));
        }
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &self.payload).expect("writing to a Vec");
        rmp_serde::from_slice(&bytes).map_err(|e| {
            FrameError::body(format!(
                "payload of {} does not fit: {e}",
                self.kind.type_name()
            ))
        })
    }

    /// Appends the canonical MsgPack encoding of the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        write_parts(self.kind.type_name(), &self.payload, self.meta(), out);
    }

    /// Decodes a body for a frame of `family`: structure and canonical form first
    /// (`BodyDecodeError`), then the `type` against the family and registry
    /// (`BodyTypeMismatch`).
    pub fn decode(bytes: &[u8], family: Family) -> Result<Self, FrameError> {
        let mut rest = bytes;
        let value =
            rmpv::decode::read_value_with_max_depth(&mut rest, RMPV_DEPTH_GUARD).map_err(|e| {
                match e {
                    rmpv::decode::Error::DepthLimitExceeded => {
                        FrameError::body(format!("nesting deeper than {BODY_DEPTH_MAX} levels"))
                    }
                    e => FrameError::body(format!("not MsgPack: {e}")),
                }
            })?;
        if !rest.is_empty() {
            return Err(FrameError::body(format!(
                "{} trailing bytes after the body map",
                rest.len()
            )));
        }
        check_value(&value, BODY_DEPTH_MAX)?;
        let (type_name, payload, meta) = split_body(value)?;
        let mut canonical = Vec::with_capacity(bytes.len());
        write_parts(&type_name, &payload, meta.as_deref(), &mut canonical);
        if canonical != bytes {
            return Err(FrameError::body(
                "not canonical MsgPack (keys must be type, payload, meta in that order, \
                 numbers and lengths in their shortest form)",
            ));
        }
        let kind = check_type(&type_name, family)?;
        Ok(Body {
            kind,
            payload,
            meta,
        })
    }
}

/// The one canonical byte form of a body. Writing into a Vec cannot fail.
fn write_parts(
    type_name: &str,
    payload: &Value,
    meta: Option<&[(Value, Value)]>,
    out: &mut Vec<u8>,
) {
    let len = if meta.is_some() { 3 } else { 2 };
    rmp::encode::write_map_len(out, len).expect("vec write");
    rmp::encode::write_str(out, "type").expect("vec write");
    rmp::encode::write_str(out, type_name).expect("vec write");
    rmp::encode::write_str(out, "payload").expect("vec write");
    rmpv::encode::write_value(out, payload).expect("vec write");
    if let Some(meta) = meta {
        rmp::encode::write_str(out, "meta").expect("vec write");
        let meta_len = u32::try_from(meta.len()).expect("meta is bounded by the body cap");
        rmp::encode::write_map_len(out, meta_len).expect("vec write");
        for (k, v) in meta {
            rmpv::encode::write_value(out, k).expect("vec write");
            rmpv::encode::write_value(out, v).expect("vec write");
        }
    }
}

type Parts = (String, Value, Option<Vec<(Value, Value)>>);

/// Splits the top-level map into its three parts, in the one order allowed.
fn split_body(value: Value) -> Result<Parts, FrameError> {
    let Value::Map(entries) = value else {
        return Err(FrameError::body("body is not a map"));
    };
    if !(2..=3).contains(&entries.len()) {
        return Err(FrameError::body(format!(
            "body map has {} entries, expected type, payload and optional meta",
            entries.len()
        )));
    }
    let mut entries = entries.into_iter();
    let (k, type_value) = entries.next().expect("length checked");
    if k.as_str() != Some("type") {
        return Err(FrameError::body("first body key must be \"type\""));
    }
    let Some(type_name) = type_value.as_str().map(str::to_owned) else {
        return Err(FrameError::body("\"type\" must be a string"));
    };
    let (k, payload) = entries.next().expect("length checked");
    if k.as_str() != Some("payload") {
        return Err(FrameError::body("second body key must be \"payload\""));
    }
    let meta = match entries.next() {
        None => None,
        Some((k, v)) => {
            if k.as_str() != Some("meta") {
                return Err(FrameError::body("third body key must be \"meta\""));
            }
            let Value::Map(meta) = v else {
                return Err(FrameError::body("\"meta\" must be a map"));
            };
            Some(meta)
        }
    };
    Ok((type_name, payload, meta))
}

/// `<family>.<kind>.v<N>`, whose family is the header's and whose kind is registered.
fn check_type(type_name: &str, family: Family) -> Result<Kind, FrameError> {
    let first = type_name.split('.').next().unwrap_or_default();
    if first != family.name() {
        return Err(FrameError::type_mismatch(format!(
            "type {type_name:?} is not in family {family} (schema_id {})",
            family.schema_id()
        )));
    }
    Kind::from_type_name(type_name).ok_or_else(|| {
        FrameError::type_mismatch(format!("type {type_name:?} is not a registered kind"))
    })
}

/// Every string UTF-8, nesting within `depth_left`.
fn check_value(value: &Value, depth_left: usize) -> Result<(), FrameError> {
    if depth_left == 0 {
        return Err(FrameError::body(format!(
            "nesting deeper than {BODY_DEPTH_MAX} levels"
        )));
    }
    match value {
        Value::String(s) if s.as_str().is_none() => {
            Err(FrameError::body("a string is not valid UTF-8"))
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| check_value(v, depth_left - 1)),
        Value::Map(entries) => entries.iter().try_for_each(|(k, v)| {
            check_value(k, depth_left - 1)?;
            check_value(v, depth_left - 1)
        }),
        _ => Ok(()),
    }
}
