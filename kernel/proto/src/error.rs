//! The normative error taxonomy of RMP v0.
//!
//! Each variant is one of the spec's error names, and [`FrameError::name`] returns exactly
//! that name; tools print it verbatim. `Display` is `"<Name>: <detail>"`.

use crate::ids::{MsgId, TraceId};

/// Why a frame was rejected, named as `shared/specs/rmp-v0.md` names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// `magic` is not ASCII `"RMP0"`.
    #[error("InvalidMagic: magic is {found:02x?}, expected \"RMP0\"")]
    InvalidMagic { found: [u8; 4] },
    /// `header_version` is not 0 or `header_len` is not 64.
    #[error(
        "UnsupportedVersion: header_version {header_version}, header_len {header_len} (v0 needs 0 and 64)"
    )]
    UnsupportedVersion {
        header_version: u16,
        header_len: u16,
    },
    /// `frame_len` is too small to hold the header.
    #[error("TruncatedHeader: frame_len {frame_len} is below the 64-byte header")]
    TruncatedHeader { frame_len: u32 },
    /// `flags`, `reserved2` or `reserved4` is not zero.
    #[error(
        "InvalidHeaderFlags: flags {flags:#x}, reserved2 {reserved2:#x}, reserved4 {reserved4:#x} (all must be 0)"
    )]
    InvalidHeaderFlags {
        flags: u32,
        reserved2: u16,
        reserved4: u32,
    },
    /// `frame_len` is not `64 + body_len`.
    #[error("LengthMismatch: frame_len {frame_len} != 64 + body_len {body_len}")]
    LengthMismatch { frame_len: u32, body_len: u32 },
    /// `schema_id` selects no registered family.
    #[error("UnknownSchema: schema_id 0x{schema_id:04X} is not registered")]
    UnknownSchema { schema_id: u16 },
    /// The frame or its body is above the receiver's cap.
    #[error("BodyTooLarge: {what} {len} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        what: &'static str,
        len: u64,
        limit: u64,
    },
    /// `ttl_ms` is zero.
    #[error("InvalidTtl: ttl_ms must be above 0")]
    InvalidTtl,
    /// `created_at_ms + ttl_ms` does not fit in a u64.
    #[error("InvalidExpiry: created_at_ms {created_at_ms} + ttl_ms {ttl_ms} overflows u64")]
    InvalidExpiry { created_at_ms: u64, ttl_ms: u64 },
    /// The frame expired before it was received.
    #[error("Expired: expired at {expires_at_ms} ms, now is {now_ms} ms")]
    Expired { expires_at_ms: u64, now_ms: u64 },
    /// The `(trace_id, msg_id)` pair was already delivered to this subscriber on this topic.
    #[error("Duplicate: trace_id {trace_id} msg_id {msg_id} was already delivered")]
    Duplicate { trace_id: TraceId, msg_id: MsgId },
    /// The body is not a canonical MsgPack map `{type, payload, meta?}`.
    #[error("BodyDecodeError: {reason}")]
    BodyDecodeError { reason: String },
    /// The body's `type` does not belong to the header's family or is not registered.
    #[error("BodyTypeMismatch: {reason}")]
    BodyTypeMismatch { reason: String },
}

impl FrameError {
    /// Every normative error name, in the order the spec lists them.
    pub const NAMES: [&'static str; 13] = [
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
    ];

    /// The normative name of this error, exactly as the spec spells it.
    pub fn name(&self) -> &'static str {
        match self {
            FrameError::InvalidMagic { .. } => "InvalidMagic",
            FrameError::UnsupportedVersion { .. } => "UnsupportedVersion",
            FrameError::TruncatedHeader { .. } => "TruncatedHeader",
            FrameError::InvalidHeaderFlags { .. } => "InvalidHeaderFlags",
            FrameError::LengthMismatch { .. } => "LengthMismatch",
            FrameError::UnknownSchema { .. } => "UnknownSchema",
            FrameError::BodyTooLarge { .. } => "BodyTooLarge",
            FrameError::InvalidTtl => "InvalidTtl",
            FrameError::InvalidExpiry { .. } => "InvalidExpiry",
            FrameError::Expired { .. } => "Expired",
            FrameError::Duplicate { .. } => "Duplicate",
            FrameError::BodyDecodeError { .. } => "BodyDecodeError",
            FrameError::BodyTypeMismatch { .. } => "BodyTypeMismatch",
        }
    }

    /// The human detail after the name (the `Display` text without the `"<Name>: "` prefix).
    pub fn detail(&self) -> String {
        let text = self.to_string();
        let prefix_len = self.name().len() + 2;
        text.get(prefix_len..).unwrap_or_default().to_owned()
    }

    /// Whether the byte stream can no longer be trusted after this error: the frame's
    /// boundaries themselves are in doubt, so a stream decoder stops rather than guess.
    pub fn is_fatal_for_stream(&self) -> bool {
        matches!(
            self,
            FrameError::TruncatedHeader { .. }
                | FrameError::BodyTooLarge { .. }
                | FrameError::InvalidMagic { .. }
                | FrameError::UnsupportedVersion { .. }
                | FrameError::InvalidHeaderFlags { .. }
        )
    }

    pub(crate) fn body(reason: impl Into<String>) -> Self {
        FrameError::BodyDecodeError {
            reason: reason.into(),
        }
    }

    pub(crate) fn type_mismatch(reason: impl Into<String>) -> Self {
        FrameError::BodyTypeMismatch {
            reason: reason.into(),
        }
    }
}
