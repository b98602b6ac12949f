//! RMP v0, the Runloop Message Protocol: every byte that crosses a process boundary.
//!
//! The normative text is `shared/specs/rmp-v0.md`; this crate is its only implementation.
//! A frame is `u32 frame_len | 64-byte header | MsgPack body {type, payload, meta?}`, all
//! integers big-endian. The pieces:
//!
//! - [`header`]: the fixed 64-byte header and its field checks (validation steps 2–8);
//! - [`body`]: the MsgPack body, its structure and canonical-encoding checks (step 9);
//! - [`frame`]: one whole frame, encode and one-shot decode in the spec's validation order;
//! - [`stream`]: a bounded streaming decoder for sockets and pipes;
//! - [`dedupe`]: the bounded `(trace_id, msg_id)` cache behind `Duplicate` (step 10);
//! - [`registry`]: every message kind the system uses, defined once;
//! - [`ids`] and [`clock`]: id newtypes and the injected clock.
//!
//! Invariant: decoding an accepted frame and encoding it again gives back the same bytes.
//! Decoding rejects every byte string for which that would not hold.

pub mod body;
pub mod clock;
pub mod dedupe;
pub mod error;
pub mod frame;
pub mod header;
pub mod idgen;
pub mod ids;
pub mod json;
pub mod payloads;
pub mod registry;
pub mod stream;

pub use body::{BODY_DEPTH_MAX, Body, VALUE_DEPTH_MAX, value_depth};
pub use clock::{Clock, ManualClock, SystemClock};
pub use dedupe::{DedupeCache, DedupeLimits};
pub use error::FrameError;
pub use frame::{DecodeError, Frame, Limits, decode_frame, encode_frame};
pub use header::{HEADER_LEN, Header};
pub use idgen::{IdSource, Ids, RunId, SeededIds};
pub use ids::{Family, MsgId, MsgIdGen, SchemaId, TraceId};
pub use registry::{Kind, KindPayload};
pub use stream::StreamDecoder;
