//! One whole frame: encoding, and one-shot decoding in the spec's validation order.
//!
//! The checks are split at the points a stream decoder needs them: [`check_prefix`]
//! (steps 2–3, with only `frame_len` read), [`check_fixed_header`] (step 4, once the
//! header is buffered) and [`finish_frame`] (steps 5–9, once the whole frame is there).
//! Step 10 (`Duplicate`) belongs to delivery; see [`crate::dedupe`].

use crate::body::Body;
use crate::error::FrameError;
use crate::header::{HEADER_LEN, Header, RawHeader};
use crate::ids::{MsgId, TraceId};
use crate::registry::KindPayload;

/// Bytes of the `frame_len` prefix.
pub const LEN_PREFIX_LEN: usize = 4;
/// The default body cap of the spec: 8 MiB.
pub const BODY_BYTES_MAX_DEFAULT: u32 = 8 * 1024 * 1024;

/// A receiver's (and sender's) size limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    body_bytes_max: u32,
}

impl Limits {
    /// Limits with a body cap of `body_bytes_max` bytes. The cap must leave room for the
    /// header inside a u32 `frame_len`.
    pub fn new(body_bytes_max: u32) -> Self {
        assert!(
            u64::from(body_bytes_max) + HEADER_LEN as u64 <= u64::from(u32::MAX),
            "body cap leaves no room for the header in frame_len"
        );
        Self { body_bytes_max }
    }

    pub fn body_bytes_max(&self) -> u32 {
        self.body_bytes_max
    }

    /// The largest acceptable `frame_len`: header plus body cap.
    pub fn frame_len_max(&self) -> u32 {
        self.body_bytes_max + HEADER_LEN as u32
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(BODY_BYTES_MAX_DEFAULT)
    }
}

/// A valid frame: a valid header and a body of the header's family.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    header: Header,
    body: Body,
}

impl Frame {
    /// A frame, refusing a body whose kind is not in the header's family.
    pub fn new(header: Header, body: Body) -> Result<Self, FrameError> {
        if body.kind().family() != header.family() {
            return Err(FrameError::type_mismatch(format!(
                "type {:?} is not in family {} (schema_id {})",
                body.kind().type_name(),
                header.family(),
                header.schema_id()
            )));
        }
        Ok(Self { header, body })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }
    pub fn body(&self) -> &Body {
        &self.body
    }
    pub fn into_parts(self) -> (Header, Body) {
        (self.header, self.body)
    }
}

/// Why bytes did not decode into one frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the frame does; not an RMP error, the frame is incomplete.
    #[error("incomplete frame: have {have} bytes, need {need}")]
    Incomplete { have: usize, need: usize },
    /// The frame is invalid.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Appends `frame_len | header | body` to `out`. Refuses a body above the cap with
/// `BodyTooLarge`, so a sender never emits what its peer must reject.
pub fn encode_frame_into(
    frame: &Frame,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX_LEN + HEADER_LEN]);
    frame.body.encode(out);
    let body_len = out.len() - start - LEN_PREFIX_LEN - HEADER_LEN;
    if body_len > limits.body_bytes_max() as usize {
        out.truncate(start);
        return Err(FrameError::BodyTooLarge {
            what: "body_len",
            len: body_len as u64,
            limit: u64::from(limits.body_bytes_max()),
        });
    }
    let body_len = u32::try_from(body_len).expect("bounded by the u32 cap");
    let frame_len = body_len + HEADER_LEN as u32;
    let mut header = Vec::with_capacity(HEADER_LEN);
    frame.header.write(body_len, &mut header);
    out[start..start + LEN_PREFIX_LEN].copy_from_slice(&frame_len.to_be_bytes());
    out[start + LEN_PREFIX_LEN..start + LEN_PREFIX_LEN + HEADER_LEN].copy_from_slice(&header);
    Ok(())
}

/// The bytes of `frame`, prefix included.
pub fn encode_frame(frame: &Frame, limits: &Limits) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_frame_into(frame, limits, &mut out)?;
    Ok(out)
}

/// Steps 2–3: `frame_len` must hold a header and stay within the cap, checked before any
/// body byte is read or buffered.
pub fn check_prefix(frame_len: u32, limits: &Limits) -> Result<(), FrameError> {
    if (frame_len as usize) < HEADER_LEN {
        return Err(FrameError::TruncatedHeader { frame_len });
    }
    if frame_len > limits.frame_len_max() {
        return Err(FrameError::BodyTooLarge {
            what: "frame_len",
            len: u64::from(frame_len),
            limit: u64::from(limits.frame_len_max()),
        });
    }
    Ok(())
}

/// Step 4 on the 64 header bytes.
pub(crate) fn check_fixed_header(header: &[u8; HEADER_LEN]) -> Result<RawHeader, FrameError> {
    let raw = RawHeader::read(header);
    raw.check_fixed_fields()?;
    Ok(raw)
}

/// Steps 5–9 on a frame whose prefix and fixed header fields passed. `body` is exactly
/// the `frame_len - 64` bytes after the header.
pub(crate) fn finish_frame(
    frame_len: u32,
    raw: RawHeader,
    body: &[u8],
    limits: &Limits,
    now_ms: u64,
) -> Result<Frame, FrameError> {
    if u64::from(frame_len) != HEADER_LEN as u64 + u64::from(raw.body_len) {
        return Err(FrameError::LengthMismatch {
            frame_len,
            body_len: raw.body_len,
        });
    }
    // Implied by steps 3 and 5 for a well-formed cap, kept so the order stays literal.
    if raw.body_len > limits.body_bytes_max() {
        return Err(FrameError::BodyTooLarge {
            what: "body_len",
            len: u64::from(raw.body_len),
            limit: u64::from(limits.body_bytes_max()),
        });
    }
    assert_eq!(body.len(), raw.body_len as usize);
    let header = raw.to_header()?;
    header.check_expiry(now_ms)?;
    let body = Body::decode(body, header.family())?;
    Ok(Frame { header, body })
}

/// Decodes the single frame at the start of `bytes` at time `now_ms`, returning it and the
/// number of bytes it took. Steps 1–9 in order; `Incomplete` when the bytes run out first.
pub fn decode_frame(
    bytes: &[u8],
    limits: &Limits,
    now_ms: u64,
) -> Result<(Frame, usize), DecodeError> {
    let Some(prefix) = bytes.first_chunk::<LEN_PREFIX_LEN>() else {
        return Err(DecodeError::Incomplete {
            have: bytes.len(),
            need: LEN_PREFIX_LEN,
        });
    };
    let frame_len = u32::from_be_bytes(*prefix);
    check_prefix(frame_len, limits)?;
    let rest = &bytes[LEN_PREFIX_LEN..];
    let Some(header) = rest.first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::Incomplete {
            have: bytes.len(),
            need: LEN_PREFIX_LEN + frame_len as usize,
        });
    };
    let raw = check_fixed_header(header)?;
    let total = LEN_PREFIX_LEN + frame_len as usize;
    if bytes.len() < total {
        return Err(DecodeError::Incomplete {
            have: bytes.len(),
            need: total,
        });
    }
    let body = &bytes[LEN_PREFIX_LEN + HEADER_LEN..total];
    let frame = finish_frame(frame_len, raw, body, limits, now_ms)?;
    Ok((frame, total))
}

impl Frame {
    /// A frame carrying `payload` in its kind's family (so it cannot mismatch); refused
    /// for a zero TTL or an expiry past `u64::MAX` (see [`Header::new`]), and for a payload
    /// nesting deeper than a body may ([`BODY_DEPTH_MAX`](crate::BODY_DEPTH_MAX)).
    pub fn of<P: KindPayload>(
        payload: &P,
        created_at_ms: u64,
        ttl_ms: u64,
        trace_id: TraceId,
        msg_id: MsgId,
    ) -> Result<Self, FrameError> {
        let header = Header::new(P::KIND.family(), created_at_ms, ttl_ms, trace_id, msg_id)?;
        Ok(Self {
            header,
            body: Body::try_from_payload(payload)?,
        })
    }
}

#[cfg(test)]
mod of_tests {
    use super::*;
    use crate::payloads::Ping;

    #[test]
    fn a_frame_of_a_payload_takes_its_kinds_family_and_refuses_a_zero_ttl() {
        let frame = Frame::of(&Ping { seq: 3 }, 1_000, 60_000, TraceId(7), MsgId(1)).unwrap();
        assert_eq!(frame.header().family(), crate::Kind::Ping.family());
        assert_eq!(frame.body().kind(), crate::Kind::Ping);
        let err = Frame::of(&Ping { seq: 3 }, 1_000, 0, TraceId(7), MsgId(1)).unwrap_err();
        assert_eq!(err.name(), "InvalidTtl");
    }
}
