//! A bounded streaming decoder: feed it whatever a socket or pipe returned, take frames out.
//!
//! Undecoded bytes are bounded by one largest frame plus [`READ_CHUNK_BYTES`]
//! ([`StreamDecoder::push`] accepts only what fits), and the buffer, which is compacted once
//! half of it is consumed, by twice that. `frame_len` is checked against the cap before any
//! body byte is kept. Errors that leave the frame boundaries in doubt (`TruncatedHeader`,
//! `BodyTooLarge` on `frame_len`, `InvalidMagic`, `UnsupportedVersion`,
//! `InvalidHeaderFlags`) poison the decoder: it returns the same error from then on and the
//! owner must close the connection. Errors after the frame is framed (`LengthMismatch`
//! and steps 6–9) drop that one frame and the stream goes on.

use crate::error::FrameError;
use crate::frame::{self, Frame, LEN_PREFIX_LEN, Limits};
use crate::header::HEADER_LEN;

/// Slack above one largest frame, so a reader can always hand over a whole read.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Decodes a byte stream into frames, one bounded buffer.
#[derive(Debug)]
pub struct StreamDecoder {
    limits: Limits,
    buf: Vec<u8>,
    /// Start of the undecoded bytes in `buf`.
    pos: usize,
    /// Set once a stream-fatal error is seen.
    poisoned: Option<FrameError>,
}

impl StreamDecoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buf: Vec::new(),
            pos: 0,
            poisoned: None,
        }
    }

    /// Most bytes the decoder ever holds.
    pub fn capacity_bytes(&self) -> usize {
        LEN_PREFIX_LEN + self.limits.frame_len_max() as usize + READ_CHUNK_BYTES
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// How many more bytes [`push`](Self::push) would accept now.
    pub fn free_bytes(&self) -> usize {
        self.capacity_bytes() - self.buffered_bytes()
    }

    /// Whether a stream-fatal error has been seen.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Buffers as much of `data` as fits and returns how many bytes were taken. The rest
    /// must be pushed again after [`next_frame`](Self::next_frame) has made room.
    pub fn push(&mut self, data: &[u8]) -> usize {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let take = data.len().min(self.free_bytes());
        self.buf.extend_from_slice(&data[..take]);
        take
    }

    /// The next frame at `now_ms`: `Ok(None)` until one is complete.
    pub fn next_frame(&mut self, now_ms: u64) -> Result<Option<Frame>, FrameError> {
        if let Some(err) = &self.poisoned {
            return Err(err.clone());
        }
        let pending = &self.buf[self.pos..];
        let Some(prefix) = pending.first_chunk::<LEN_PREFIX_LEN>() else {
            return Ok(None);
        };
        let frame_len = u32::from_be_bytes(*prefix);
        if let Err(err) = frame::check_prefix(frame_len, &self.limits) {
            return Err(self.poison(err));
        }
        let Some(header) = pending[LEN_PREFIX_LEN..].first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let raw = match frame::check_fixed_header(header) {
            Ok(raw) => raw,
            Err(err) => return Err(self.poison(err)),
        };
        let total = LEN_PREFIX_LEN + frame_len as usize;
        if pending.len() < total {
            return Ok(None);
        }
        let body = &pending[LEN_PREFIX_LEN + HEADER_LEN..total];
        let result = frame::finish_frame(frame_len, raw, body, &self.limits, now_ms);
        // The frame is consumed whether it was valid or not: its boundaries were sound.
        self.pos += total;
        result.map(Some)
    }

    fn poison(&mut self, err: FrameError) -> FrameError {
        assert!(
            err.is_fatal_for_stream(),
            "only framing errors poison: {err}"
        );
        self.poisoned = Some(err.clone());
        self.buf = Vec::new();
        self.pos = 0;
        err
    }
}
