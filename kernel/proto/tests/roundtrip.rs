//! Property tests: every frame the encoder makes decodes to itself and re-encodes to the
//! same bytes; the stream decoder yields the same frames however the bytes are split.

use proptest::prelude::*;
use rmpv::Value;
use runloop_proto::{
    Body, Frame, Header, Kind, Limits, MsgId, StreamDecoder, TraceId, decode_frame, encode_frame,
};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f32>().prop_map(Value::F32),
        any::<f64>().prop_map(Value::F64),
        ".{0,40}".prop_map(|s: String| Value::from(s.as_str())),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Binary),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(t, d)| Value::Ext(t, d)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..8).prop_map(Value::Map),
        ]
    })
}

fn meta() -> impl Strategy<Value = Option<Vec<(Value, Value)>>> {
    proptest::option::of(proptest::collection::vec(
        (
            "[a-z_]{1,12}".prop_map(|s: String| Value::from(s.as_str())),
            value(),
        ),
        0..4,
    ))
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        proptest::sample::select(Kind::ALL),
        any::<u64>(),
        1..u64::MAX,
        any::<u128>(),
        any::<u64>(),
        value(),
        meta(),
    )
        .prop_map(|(kind, created, ttl, trace, msg, payload, meta)| {
            // Keep the expiry inside u64 so the header is valid.
            let created = created.min(u64::MAX - ttl);
            let header =
                Header::new(kind.family(), created, ttl, TraceId(trace), MsgId(msg)).unwrap();
            Frame::new(header, Body::new(kind, payload, meta).unwrap()).unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_decode_encode_is_identity(frame in frame()) {
        let limits = Limits::default();
        let bytes = encode_frame(&frame, &limits).unwrap();
        let now = frame.header().created_at_ms();
        let (decoded, used) = decode_frame(&bytes, &limits, now).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(encode_frame(&decoded, &limits).unwrap(), bytes);
        prop_assert_eq!(decoded.header(), frame.header());
        prop_assert_eq!(decoded.body().kind(), frame.body().kind());
    }

    #[test]
    fn stream_splits_do_not_matter(frames in proptest::collection::vec(frame(), 1..5), cuts in proptest::collection::vec(1usize..97, 1..40)) {
        let limits = Limits::default();
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(encode_frame(f, &limits).unwrap());
        }
        let mut decoder = StreamDecoder::new(limits);
        let mut out = Vec::new();
        let mut rest = wire.as_slice();
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap()).min(rest.len());
            prop_assert_eq!(decoder.push(&rest[..n]), n);
            rest = &rest[n..];
            // Each frame is checked at its own creation time so none has expired.
            while let Some(f) = decoder.next_frame(frames[out.len()].header().created_at_ms()).unwrap() {
                out.push(f);
                if out.len() == frames.len() { break; }
            }
        }
        prop_assert_eq!(out.len(), frames.len());
        for (a, b) in out.iter().zip(&frames) {
            prop_assert_eq!(encode_frame(a, &limits).unwrap(), encode_frame(b, &limits).unwrap());
        }
        prop_assert_eq!(decoder.buffered_bytes(), 0);
    }
}
