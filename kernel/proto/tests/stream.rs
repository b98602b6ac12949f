//! The streaming decoder: bounded buffering, early rejection, poison on framing errors,
//! one dropped frame (and no more) on per-frame errors.

use rmpv::Value;
use runloop_proto::frame::LEN_PREFIX_LEN;
use runloop_proto::{
    Body, Family, Frame, Header, Kind, Limits, MsgId, StreamDecoder, TraceId, encode_frame,
};

fn frame(msg: u64, ttl_ms: u64) -> Vec<u8> {
    let header = Header::new(Family::Control, 1_000, ttl_ms, TraceId(1), MsgId(msg)).unwrap();
    let body = Body::new(
        Kind::Ping,
        Value::Map(vec![("seq".into(), msg.into())]),
        None,
    )
    .unwrap();
    encode_frame(&Frame::new(header, body).unwrap(), &Limits::default()).unwrap()
}

#[test]
fn byte_by_byte_feeding_yields_each_frame_once() {
    let wire = [frame(1, 100), frame(2, 100)].concat();
    let mut d = StreamDecoder::new(Limits::default());
    let mut got = Vec::new();
    for byte in &wire {
        assert_eq!(d.push(std::slice::from_ref(byte)), 1);
        while let Some(f) = d.next_frame(1_000).unwrap() {
            got.push(f.header().msg_id());
        }
    }
    assert_eq!(got, vec![MsgId(1), MsgId(2)]);
    assert_eq!(d.buffered_bytes(), 0);
}

#[test]
fn oversized_frame_len_is_refused_before_the_body_arrives() {
    let mut d = StreamDecoder::new(Limits::new(1024));
    // Only the 4-byte prefix announcing 1 MiB is sent; the decoder must refuse now.
    d.push(&(1024 * 1024u32).to_be_bytes());
    let err = d.next_frame(0).unwrap_err();
    assert_eq!(err.name(), "BodyTooLarge");
    assert!(d.is_poisoned());
    assert_eq!(d.buffered_bytes(), 0, "nothing of a refused stream is kept");
    // Poisoned for good: even a valid frame afterwards is not decoded.
    d.push(&frame(1, 100));
    assert_eq!(d.next_frame(1_000).unwrap_err().name(), "BodyTooLarge");
}

#[test]
fn bad_magic_poisons_as_soon_as_the_header_is_in() {
    let mut bad = frame(1, 100);
    bad[LEN_PREFIX_LEN] = b'X';
    let mut d = StreamDecoder::new(Limits::default());
    d.push(&bad[..LEN_PREFIX_LEN + 64]);
    assert_eq!(d.next_frame(1_000).unwrap_err().name(), "InvalidMagic");
}

#[test]
fn an_expired_frame_is_dropped_and_the_stream_goes_on() {
    let wire = [frame(1, 5), frame(2, 100)].concat();
    let mut d = StreamDecoder::new(Limits::default());
    d.push(&wire);
    assert_eq!(d.next_frame(1_010).unwrap_err().name(), "Expired");
    assert!(!d.is_poisoned());
    let next = d.next_frame(1_010).unwrap().unwrap();
    assert_eq!(next.header().msg_id(), MsgId(2));
}

#[test]
fn a_length_mismatch_drops_one_frame() {
    let mut bad = frame(1, 100);
    bad[LEN_PREFIX_LEN + 16..LEN_PREFIX_LEN + 20].copy_from_slice(&1u32.to_be_bytes());
    let wire = [bad, frame(2, 100)].concat();
    let mut d = StreamDecoder::new(Limits::default());
    d.push(&wire);
    assert_eq!(d.next_frame(1_000).unwrap_err().name(), "LengthMismatch");
    assert_eq!(
        d.next_frame(1_000).unwrap().unwrap().header().msg_id(),
        MsgId(2)
    );
}

#[test]
fn buffer_is_bounded_and_push_takes_only_what_fits() {
    let limits = Limits::new(128);
    let mut d = StreamDecoder::new(limits);
    let cap = d.capacity_bytes();
    let wire: Vec<u8> = std::iter::repeat_n(frame(1, 100), 2_000)
        .flatten()
        .collect();
    assert!(wire.len() > cap);
    let taken = d.push(&wire);
    assert_eq!(taken, cap);
    assert_eq!(d.free_bytes(), 0);
    assert_eq!(d.push(&wire[taken..]), 0);
    // Draining frames makes room again.
    d.next_frame(1_000).unwrap().unwrap();
    assert!(d.push(&wire[taken..]) > 0);
}
