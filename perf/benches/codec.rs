//! RMP v0 codec throughput: encode and decode at 64 B, 1 KiB and 64 KiB payloads.
//!
//! Run: `cargo bench -p runloop-proto --bench codec`. Criterion reports time per frame and
//! bytes/s (throughput is set to the frame's byte length); frames/s is 1 / time. The
//! `memcpy` group is the baseline measured in the same run: copying the same bytes once.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rmpv::Value;
use runloop_proto::{
    Body, Family, Frame, Header, Kind, Limits, MsgId, StreamDecoder, TraceId, decode_frame,
    encode_frame,
};

const SIZES_BYTES: [usize; 3] = [64, 1024, 64 * 1024];
const NOW_MS: u64 = 1_000;

fn frame_with_payload(size: usize) -> Frame {
    // A binary payload of `size` bytes: the body is `size` plus a few bytes of framing.
    let body = Body::new(Kind::Ping, Value::Binary(vec![0xA5; size]), None).unwrap();
    let header = Header::new(Family::Control, NOW_MS, 60_000, TraceId(7), MsgId(1)).unwrap();
    Frame::new(header, body).unwrap()
}

fn codec(c: &mut Criterion) {
    let limits = Limits::default();
    for size in SIZES_BYTES {
        let frame = frame_with_payload(size);
        let bytes = encode_frame(&frame, &limits).unwrap();
        let mut group = c.benchmark_group("rmp");
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("encode", size), &frame, |b, f| {
            b.iter(|| encode_frame(black_box(f), &limits).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("decode", size), &bytes, |b, bytes| {
            b.iter(|| decode_frame(black_box(bytes), &limits, NOW_MS).unwrap())
        });
        group.bench_with_input(
            BenchmarkId::new("stream_decode", size),
            &bytes,
            |b, bytes| {
                let mut decoder = StreamDecoder::new(limits);
                b.iter(|| {
                    assert_eq!(decoder.push(black_box(bytes)), bytes.len());
                    decoder.next_frame(NOW_MS).unwrap().unwrap()
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("memcpy", size), &bytes, |b, bytes| {
            b.iter(|| black_box(bytes).to_vec())
        });
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
