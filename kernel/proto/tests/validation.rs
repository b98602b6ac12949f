//! Table-driven tests of the spec's validation order: one case per error name and per
//! branch, each built by corrupting one field of a valid frame.

use rmpv::Value;
use runloop_proto::frame::LEN_PREFIX_LEN;
use runloop_proto::{
    Body, DecodeError, DedupeCache, DedupeLimits, Family, Frame, FrameError, Header, Kind, Limits,
    MsgId, TraceId, decode_frame, encode_frame,
};

const NOW_MS: u64 = 1_000_000;
const CREATED_MS: u64 = 999_000;
const TTL_MS: u64 = 60_000;

fn frame_bytes(kind: Kind, payload: Value) -> Vec<u8> {
    let header = Header::new(kind.family(), CREATED_MS, TTL_MS, TraceId(0xfeed), MsgId(9)).unwrap();
    let frame = Frame::new(header, Body::new(kind, payload, None).unwrap()).unwrap();
    encode_frame(&frame, &Limits::default()).unwrap()
}

fn valid() -> Vec<u8> {
    frame_bytes(Kind::Ping, Value::Map(vec![("seq".into(), 1.into())]))
}

/// Byte offsets of header fields within the encoded frame (after the 4-byte prefix).
mod at {
    pub const MAGIC: usize = 4;
    pub const VERSION: usize = 4 + 4;
    pub const HEADER_LEN: usize = 4 + 6;
    pub const FLAGS: usize = 4 + 8;
    pub const SCHEMA: usize = 4 + 12;
    pub const RESERVED2: usize = 4 + 14;
    pub const BODY_LEN: usize = 4 + 16;
    pub const CREATED: usize = 4 + 20;
    pub const TTL: usize = 4 + 28;
    pub const RESERVED4: usize = 4 + 60;
    pub const BODY: usize = 4 + 64;
}

fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
    bytes[at..at + value.len()].copy_from_slice(value);
}

fn with(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = valid();
    edit(&mut bytes);
    bytes
}

/// Replaces the body with raw MsgPack `body`, fixing both lengths.
fn with_body(body: &[u8]) -> Vec<u8> {
    with(|b| {
        b.truncate(at::BODY);
        b.extend_from_slice(body);
        let body_len = body.len() as u32;
        put(b, 0, &(body_len + 64).to_be_bytes());
        put(b, at::BODY_LEN, &body_len.to_be_bytes());
    })
}

fn msgpack(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).unwrap();
    out
}

fn body_map(entries: Vec<(&str, Value)>) -> Vec<u8> {
    msgpack(&Value::Map(
        entries.into_iter().map(|(k, v)| (k.into(), v)).collect(),
    ))
}

fn error_of(bytes: &[u8], limits: &Limits) -> String {
    match decode_frame(bytes, limits, NOW_MS) {
        Ok(_) => "ok".into(),
        Err(DecodeError::Incomplete { .. }) => "Incomplete".into(),
        Err(DecodeError::Frame(e)) => e.name().into(),
    }
}

#[test]
fn each_error_name_at_its_step() {
    let ping = || Value::Map(vec![("seq".into(), 1.into())]);
    let small = Limits::new(16);
    let cases: Vec<(&str, Vec<u8>, Limits, &str)> = vec![
        ("valid frame", valid(), Limits::default(), "ok"),
        (
            "1: fewer than 4 bytes",
            vec![0, 0, 0],
            Limits::default(),
            "Incomplete",
        ),
        (
            "1: header cut short",
            valid()[..40].to_vec(),
            Limits::default(),
            "Incomplete",
        ),
        (
            "1: body cut short",
            {
                let v = valid();
                v[..v.len() - 1].to_vec()
            },
            Limits::default(),
            "Incomplete",
        ),
        (
            "2: frame_len 63",
            with(|b| put(b, 0, &63u32.to_be_bytes())),
            Limits::default(),
            "TruncatedHeader",
        ),
        (
            "2: frame_len 0",
            vec![0, 0, 0, 0],
            Limits::default(),
            "TruncatedHeader",
        ),
        (
            "3: frame_len above cap, no body bytes sent",
            (64u32 + 17).to_be_bytes().to_vec(),
            small,
            "BodyTooLarge",
        ),
        (
            "3: frame_len u32::MAX",
            u32::MAX.to_be_bytes().to_vec(),
            Limits::default(),
            "BodyTooLarge",
        ),
        (
            "4: magic",
            with(|b| put(b, at::MAGIC, b"RMP1")),
            Limits::default(),
            "InvalidMagic",
        ),
        (
            "4: header_version",
            with(|b| put(b, at::VERSION, &1u16.to_be_bytes())),
            Limits::default(),
            "UnsupportedVersion",
        ),
        (
            "4: header_len",
            with(|b| put(b, at::HEADER_LEN, &65u16.to_be_bytes())),
            Limits::default(),
            "UnsupportedVersion",
        ),
        (
            "4: flags",
            with(|b| put(b, at::FLAGS, &1u32.to_be_bytes())),
            Limits::default(),
            "InvalidHeaderFlags",
        ),
        (
            "4: reserved2",
            with(|b| put(b, at::RESERVED2, &1u16.to_be_bytes())),
            Limits::default(),
            "InvalidHeaderFlags",
        ),
        (
            "4: reserved4",
            with(|b| put(b, at::RESERVED4, &1u32.to_be_bytes())),
            Limits::default(),
            "InvalidHeaderFlags",
        ),
        (
            "5: body_len one short",
            with(|b| {
                let n = u32::from_be_bytes(b[at::BODY_LEN..at::BODY_LEN + 4].try_into().unwrap());
                put(b, at::BODY_LEN, &(n - 1).to_be_bytes())
            }),
            Limits::default(),
            "LengthMismatch",
        ),
        (
            "5: body_len huge",
            with(|b| put(b, at::BODY_LEN, &u32::MAX.to_be_bytes())),
            Limits::default(),
            "LengthMismatch",
        ),
        (
            "7: schema_id 0 reserved",
            with(|b| put(b, at::SCHEMA, &0u16.to_be_bytes())),
            Limits::default(),
            "UnknownSchema",
        ),
        (
            "7: schema_id 0x000B",
            with(|b| put(b, at::SCHEMA, &0x000Bu16.to_be_bytes())),
            Limits::default(),
            "UnknownSchema",
        ),
        (
            "7: schema_id 0x1000",
            with(|b| put(b, at::SCHEMA, &0x1000u16.to_be_bytes())),
            Limits::default(),
            "UnknownSchema",
        ),
        (
            "8: ttl 0",
            with(|b| put(b, at::TTL, &0u64.to_be_bytes())),
            Limits::default(),
            "InvalidTtl",
        ),
        (
            "8: expiry overflows u64",
            with(|b| {
                put(b, at::CREATED, &u64::MAX.to_be_bytes());
                put(b, at::TTL, &1u64.to_be_bytes())
            }),
            Limits::default(),
            "InvalidExpiry",
        ),
        (
            "8: expired exactly now",
            with(|b| {
                put(b, at::CREATED, &(NOW_MS - 10).to_be_bytes());
                put(b, at::TTL, &10u64.to_be_bytes())
            }),
            Limits::default(),
            "Expired",
        ),
        (
            "8: one ms before expiry",
            with(|b| {
                put(b, at::CREATED, &(NOW_MS - 10).to_be_bytes());
                put(b, at::TTL, &11u64.to_be_bytes())
            }),
            Limits::default(),
            "ok",
        ),
        (
            "9: body not MsgPack",
            with_body(&[0xc1]),
            Limits::default(),
            "BodyDecodeError",
        ),
        (
            "9: body not a map",
            with_body(&msgpack(&Value::from(3))),
            Limits::default(),
            "BodyDecodeError",
        ),
        (
            "9: body missing payload",
            with_body(&body_map(vec![("type", "control.ping.v1".into())])),
            Limits::default(),
            "BodyDecodeError",
        ),
        (
            "9: type not a string",
            with_body(&body_map(vec![("type", 1.into()), ("payload", Value::Nil)])),
            Limits::default(),
            "BodyDecodeError",
        ),
        (
            "9: keys out of order",
            with_body(&body_map(vec![
                ("payload", ping()),
                ("type", "control.ping.v1".into()),
            ])),
            Limits::default(),
            "BodyDecodeError",
        ),
        (
            "9: unknown top-level key",
            with_body(&body_map(vec![
                ("type", "control.ping.v1".into()),
                ("payload", ping()),
                ("extra", Value::Nil),
            ])),
            Limits::default(),
            "BodyDecodeError",
        ),
        (
            "9: meta not a map",
            with_body(&body_map(vec![
                ("type", "control.ping.v1".into()),
                ("payload", ping()),
                ("meta", 1.into()),
            ])),
            Limits::default(),
            "BodyDecodeError",
        ),
        (
            "9: trailing bytes in body",
            with_body(
                &[
                    body_map(vec![
                        ("type", "control.ping.v1".into()),
                        ("payload", ping()),
                    ]),
                    vec![0xc0],
                ]
                .concat(),
            ),
            Limits::default(),
            "BodyDecodeError",
        ),
        (
            "9: canonical integer payload",
            with_body(&payload_raw(&[0x01])),
            Limits::default(),
            "ok",
        ),
        (
            "9: non-canonical integer payload",
            with_body(&payload_raw(&[0xcd, 0x00, 0x01])),
            Limits::default(),
            "BodyDecodeError",
        ),
        (
            "9: non-canonical map length",
            with_body(&[&[0xde, 0x00, 0x02][..], &payload_raw(&[0x01])[1..]].concat()),
            Limits::default(),
            "BodyDecodeError",
        ),
        (
            "9: invalid UTF-8 string",
            with_body(&[
                0x82, 0xa4, b't', b'y', b'p', b'e', 0xaf, b'c', b'o', b'n', b't', b'r', b'o', b'l',
                b'.', b'p', b'i', b'n', b'g', b'.', b'v', b'1', 0xa7, b'p', b'a', b'y', b'l', b'o',
                b'a', b'd', 0xa1, 0xff,
            ]),
            Limits::default(),
            "BodyDecodeError",
        ),
        (
            "9: nesting too deep",
            with_body(&body_map(vec![
                ("type", "control.ping.v1".into()),
                (
                    "payload",
                    (0..100).fold(Value::Nil, |v, _| Value::Array(vec![v])),
                ),
            ])),
            Limits::default(),
            "BodyDecodeError",
        ),
        (
            "9: type of another family",
            frame_with_schema(Family::Event),
            Limits::default(),
            "BodyTypeMismatch",
        ),
        (
            "9: unregistered type",
            with_body(&body_map(vec![
                ("type", "control.nope.v1".into()),
                ("payload", Value::Nil),
            ])),
            Limits::default(),
            "BodyTypeMismatch",
        ),
    ];
    let mut failures = Vec::new();
    for (name, bytes, limits, want) in &cases {
        let got = error_of(bytes, limits);
        if got != *want {
            failures.push(format!("{name}: want {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A body `{type: "control.ping.v1", payload: <raw bytes>}` with the payload spelled as given.
fn payload_raw(payload: &[u8]) -> Vec<u8> {
    let mut out = body_map(vec![("type", "control.ping.v1".into())]);
    out[0] = 0x82;
    out.push(0xa7);
    out.extend_from_slice(b"payload");
    out.extend_from_slice(payload);
    out
}

fn frame_with_schema(family: Family) -> Vec<u8> {
    with(|b| put(b, at::SCHEMA, &family.schema_id().0.to_be_bytes()))
}

#[test]
fn earlier_steps_win_when_several_fields_are_bad() {
    // Every later field broken too: the first failing step in the spec's order is reported.
    let all_bad = |b: &mut Vec<u8>| {
        put(b, at::SCHEMA, &0u16.to_be_bytes());
        put(b, at::TTL, &0u64.to_be_bytes());
        put(b, at::BODY_LEN, &0u32.to_be_bytes());
        put(b, at::FLAGS, &1u32.to_be_bytes());
        put(b, at::VERSION, &3u16.to_be_bytes());
        put(b, at::MAGIC, b"XXXX");
    };
    let order = [
        ("InvalidMagic", None),
        ("UnsupportedVersion", Some(at::MAGIC)),
        ("InvalidHeaderFlags", Some(at::VERSION)),
        ("LengthMismatch", Some(at::FLAGS)),
        ("UnknownSchema", Some(at::BODY_LEN)),
        ("InvalidTtl", Some(at::SCHEMA)),
    ];
    let good = valid();
    let mut bytes = with(all_bad);
    for (want, repair) in order {
        if let Some(at) = repair {
            let width = match at {
                at::MAGIC | at::FLAGS | at::BODY_LEN => 4,
                _ => 2,
            };
            bytes[at..at + width].copy_from_slice(&good[at..at + width]);
        }
        assert_eq!(error_of(&bytes, &Limits::default()), want);
    }
    // A frame_len above the cap is refused before the header is even looked at.
    let mut huge = bytes.clone();
    put(&mut huge, 0, &(64u32 + 9).to_be_bytes());
    assert_eq!(error_of(&huge, &Limits::new(8)), "BodyTooLarge");
    let _ = LEN_PREFIX_LEN;
}

#[test]
fn duplicate_is_reported_at_delivery() {
    let (frame, _) = decode_frame(&valid(), &Limits::default(), NOW_MS).unwrap();
    let mut seen = DedupeCache::new(DedupeLimits::default());
    let h = frame.header();
    seen.check_and_insert(h.trace_id(), h.msg_id(), NOW_MS)
        .unwrap();
    let err = seen
        .check_and_insert(h.trace_id(), h.msg_id(), NOW_MS)
        .unwrap_err();
    assert_eq!(err.name(), "Duplicate");
}

#[test]
fn every_normative_name_is_covered() {
    let names: Vec<&str> = FrameError::NAMES.to_vec();
    for name in [
        "InvalidMagic",
        "UnsupportedVersion",
        "TruncatedHeader",
        "InvalidHeaderFlags",
        "LengthMismatch",
        "UnknownSchema",
        "BodyTooLarge",
        "InvalidTtl",
        "InvalidExpiry",
        "Expired",
        "Duplicate",
        "BodyDecodeError",
        "BodyTypeMismatch",
    ] {
        assert!(names.contains(&name), "{name}");
    }
    assert_eq!(names.len(), 13);
}

#[test]
fn encoder_refuses_what_receivers_reject() {
    assert_eq!(
        Header::new(Family::Control, 1, 0, TraceId(1), MsgId(1))
            .unwrap_err()
            .name(),
        "InvalidTtl"
    );
    assert_eq!(
        Header::new(Family::Control, u64::MAX, 1, TraceId(1), MsgId(1))
            .unwrap_err()
            .name(),
        "InvalidExpiry"
    );
    let big = Body::new(Kind::Ping, Value::Binary(vec![0; 100]), None).unwrap();
    let header = Header::new(Family::Control, 1, 1, TraceId(1), MsgId(1)).unwrap();
    let frame = Frame::new(header, big).unwrap();
    assert_eq!(
        encode_frame(&frame, &Limits::new(50)).unwrap_err().name(),
        "BodyTooLarge"
    );
    let event_header = Header::new(Family::Event, 1, 1, TraceId(1), MsgId(1)).unwrap();
    let ping = Body::new(Kind::Ping, Value::Nil, None).unwrap();
    assert_eq!(
        Frame::new(event_header, ping).unwrap_err().name(),
        "BodyTypeMismatch"
    );
}

#[test]
fn errors_print_their_exact_name_first() {
    let err = decode_frame(
        &with(|b| put(b, at::MAGIC, b"ABCD")),
        &Limits::default(),
        NOW_MS,
    )
    .unwrap_err();
    let DecodeError::Frame(err) = err else {
        panic!("{err}")
    };
    assert!(err.to_string().starts_with("InvalidMagic: "), "{err}");
    assert_eq!(err.detail(), "magic is [41, 42, 43, 44], expected \"RMP0\"");
}

/// A payload nested `depth` deep (counted as `value_depth` counts: the innermost scalar is 1).
fn nested(depth: usize) -> Value {
    (1..depth).fold(Value::from(1), |v, _| Value::Map(vec![("a".into(), v)]))
}

#[test]
fn the_encoder_and_the_decoder_agree_on_the_depth_bound() {
    use runloop_proto::{BODY_DEPTH_MAX, value_depth};
    let deepest = BODY_DEPTH_MAX - 1;
    assert_eq!(value_depth(&nested(deepest)), deepest);
    // The deepest payload a body may carry encodes and decodes …
    let bytes = frame_bytes(Kind::Ping, nested(deepest));
    let (frame, _) = decode_frame(&bytes, &Limits::default(), NOW_MS).unwrap();
    assert_eq!(frame.body().payload(), &nested(deepest));
    // … one level more is refused by the encoder, naming the bound, and by the decoder.
    let err = Body::new(Kind::Ping, nested(deepest + 1), None).unwrap_err();
    assert!(
        err.to_string().contains("nesting deeper than 64 levels"),
        "{err}"
    );
    let too_deep = with_body(&body_map(vec![
        ("type", "control.ping.v1".into()),
        ("payload", nested(deepest + 1)),
    ]));
    assert_eq!(error_of(&too_deep, &Limits::default()), "BodyDecodeError");
    // Typed payloads carrying agent values are refused, not a panic.
    let deep_input = runloop_proto::payloads::Invoke {
        invoke_id: 1,
        input: runloop_proto::payloads::AgentInput {
            port: "in".into(),
            payload: nested(BODY_DEPTH_MAX),
        },
    };
    let err = Frame::of(&deep_input, CREATED_MS, TTL_MS, TraceId(1), MsgId(1)).unwrap_err();
    assert!(err.to_string().contains("nesting deeper than"), "{err}");
    let fits = runloop_proto::payloads::Invoke {
        invoke_id: 1,
        input: runloop_proto::payloads::AgentInput {
            port: "in".into(),
            payload: nested(runloop_proto::VALUE_DEPTH_MAX),
        },
    };
    let frame = Frame::of(&fits, CREATED_MS, TTL_MS, TraceId(1), MsgId(1)).unwrap();
    let bytes = encode_frame(&frame, &Limits::default()).unwrap();
    decode_frame(&bytes, &Limits::default(), NOW_MS).unwrap();
}
