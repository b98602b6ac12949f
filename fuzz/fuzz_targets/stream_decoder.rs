//! Fuzzes the streaming decoder with untrusted bytes split at fuzzer-chosen points.
//!
//! Oracles: nothing panics; the stream decoder and the one-shot decoder agree on every
//! frame and error; every accepted frame re-encodes to exactly the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runloop_proto::frame::LEN_PREFIX_LEN;
use runloop_proto::{DecodeError, Limits, StreamDecoder, decode_frame, encode_frame};

const NOW_MS: u64 = 1_000_000;

#[derive(Debug, PartialEq)]
enum Item {
    Frame(Vec<u8>),
    Error(&'static str),
}

/// Decodes frame after frame with the one-shot decoder, skipping frames whose errors leave
/// the framing intact, as the stream decoder does.
fn one_shot(mut bytes: &[u8], limits: &Limits) -> Vec<Item> {
    let mut items = Vec::new();
    loop {
        match decode_frame(bytes, limits, NOW_MS) {
            Ok((frame, used)) => {
                let again = encode_frame(&frame, limits).expect("accepted frames re-encode");
                assert_eq!(
                    again,
                    &bytes[..used],
                    "decode then encode changed the bytes"
                );
                items.push(Item::Frame(again));
                bytes = &bytes[used..];
            }
            Err(DecodeError::Incomplete { .. }) => return items,
            Err(DecodeError::Frame(err)) => {
                items.push(Item::Error(err.name()));
                if err.is_fatal_for_stream() {
                    return items;
                }
                let frame_len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
                bytes = &bytes[LEN_PREFIX_LEN + frame_len..];
            }
        }
    }
}

fn streamed(bytes: &[u8], chunk: usize, limits: &Limits) -> Vec<Item> {
    let mut decoder = StreamDecoder::new(*limits);
    let mut items = Vec::new();
    let mut rest = bytes;
    loop {
        let n = rest.len().min(chunk);
        let taken = decoder.push(&rest[..n]);
        rest = &rest[taken..];
        loop {
            match decoder.next_frame(NOW_MS) {
                Ok(Some(frame)) => items.push(Item::Frame(encode_frame(&frame, limits).unwrap())),
                Ok(None) => break,
                Err(err) => {
                    items.push(Item::Error(err.name()));
                    if decoder.is_poisoned() {
                        return items;
                    }
                }
            }
        }
        if rest.is_empty() {
            return items;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(knobs & 0x3f) + 1;
    // A small cap exercises BodyTooLarge; the default one everything else.
    let limits = if knobs & 0x40 != 0 {
        Limits::new(256)
    } else {
        Limits::default()
    };
    assert_eq!(one_shot(bytes, &limits), streamed(bytes, chunk, &limits));
});
