//! The control socket's framing, shared by the daemon and its clients.

use runloop_proto::frame::{Limits, encode_frame};
use runloop_proto::{Body, Frame, Header, MsgId, TraceId};

/// Largest control frame body either side accepts, in bytes.
pub const CONTROL_BODY_BYTES_MAX: u32 = 1024 * 1024;
/// Time to live of control frames, in milliseconds.
pub const CONTROL_TTL_MS: u64 = 60_000;
/// Read buffer size of either side, in bytes.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// The `error.report.v1` code of a connection refused because the daemon's connection
/// limits are reached; nothing ran, and the client may try again.
pub const BUSY_CODE: &str = "Busy";
/// The `error.report.v1` code of a connection closed because its frame did not arrive
/// whole within the daemon's frame deadline.
pub const FRAME_DEADLINE_CODE: &str = "FrameDeadline";

/// The decoder and encoder limits of control frames.
pub fn limits() -> Limits {
    Limits::new(CONTROL_BODY_BYTES_MAX)
}

/// One encoded control frame carrying `body`.
pub fn frame_of(body: Body, now_ms: u64, trace_id: TraceId, msg_id: MsgId) -> Vec<u8> {
    let header = Header::new(
        body.kind().family(),
        now_ms,
        CONTROL_TTL_MS,
        trace_id,
        msg_id,
    )
    .expect("a clock far from u64::MAX");
    let frame = Frame::new(header, body).expect("the body's own family");
    encode_frame(&frame, &limits()).expect("control payloads stay under the cap")
}
