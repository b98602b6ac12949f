//! The sandbox's end of the kernel socket: RMP v0 frames in and out, nothing else.
//!
//! Frames from the kernel go through the same bounded [`StreamDecoder`] the kernel uses,
//! so a confused kernel cannot make the sandbox buffer without bound either.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use runloop_proto::frame::encode_frame_into;
use runloop_proto::{
    Body, Clock, Frame, FrameError, Header, KindPayload, Limits, MsgIdGen, StreamDecoder,
    SystemClock, TraceId,
};
use serde::Serialize;

/// Time to live of every frame the sandbox sends; delivery is immediate on a socket pair.
pub const FRAME_TTL_MS: u64 = 60_000;
/// Bytes read from the socket per `read` call.
const READ_BUF_BYTES: usize = 64 * 1024;

/// Why the conversation with the kernel broke.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("kernel socket closed")]
    Closed,
    #[error("read kernel socket: {0}")]
    Read(io::Error),
    #[error("write kernel socket: {0}")]
    Write(io::Error),
    #[error("frame from kernel: {0}")]
    Frame(FrameError),
    #[error("encode frame: {0}")]
    Encode(FrameError),
    #[error("unexpected {got} from kernel while waiting for {want}")]
    Unexpected {
        got: &'static str,
        want: &'static str,
    },
}

/// One framed connection to the kernel.
#[derive(Debug)]
pub struct Conn {
    stream: UnixStream,
    decoder: StreamDecoder,
    limits: Limits,
    ids: MsgIdGen,
    buf: Box<[u8]>,
    out: Vec<u8>,
}

impl Conn {
    /// Wraps the inherited socket; `limits` bound frames both ways.
    pub fn new(stream: UnixStream, limits: Limits) -> Self {
        Self {
            stream,
            decoder: StreamDecoder::new(limits),
            limits,
            ids: MsgIdGen::starting_at(1),
            buf: vec![0; READ_BUF_BYTES].into_boxed_slice(),
            out: Vec::new(),
        }
    }

    /// Replaces the frame limits (after the hello named them); buffered bytes are kept.
    pub fn set_limits(&mut self, limits: Limits) {
        assert_eq!(
            self.decoder.buffered_bytes(),
            0,
            "limits change between frames"
        );
        self.limits = limits;
        self.decoder = StreamDecoder::new(limits);
    }

    /// The next valid frame from the kernel, blocking.
    pub fn recv(&mut self) -> Result<Frame, ConnError> {
        loop {
            if let Some(frame) = self
                .decoder
                .next_frame(SystemClock.now_ms())
                .map_err(ConnError::Frame)?
            {
                return Ok(frame);
            }
            let n = match self.stream.read(&mut self.buf) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(ConnError::Read(err)),
            };
            let mut taken = 0;
            while taken < n {
                taken += self.decoder.push(&self.buf[taken..n]);
                if taken < n {
                    // Full: hand out a frame to make room. A full decoder always holds one.
                    if let Some(frame) = self
                        .decoder
                        .next_frame(SystemClock.now_ms())
                        .map_err(ConnError::Frame)?
                    {
                        // Put the rest back in front of the next read by recursing once:
                        // simplest is to keep it in the decoder, which now has room.
                        taken += self.decoder.push(&self.buf[taken..n]);
                        assert_eq!(taken, n, "a decoder with room takes a whole read");
                        return Ok(frame);
                    }
                }
            }
        }
    }

    /// Sends one typed payload in trace `trace`.
    pub fn send<P: KindPayload + Serialize>(
        &mut self,
        trace: TraceId,
        payload: &P,
    ) -> Result<(), ConnError> {
        let header = Header::new(
            P::KIND.family(),
            SystemClock.now_ms(),
            FRAME_TTL_MS,
            trace,
            self.ids.next_id(),
        )
        .map_err(ConnError::Encode)?;
        let frame = Frame::new(header, Body::from_payload(payload)).map_err(ConnError::Encode)?;
        self.out.clear();
        encode_frame_into(&frame, &self.limits, &mut self.out).map_err(ConnError::Encode)?;
        self.stream.write_all(&self.out).map_err(ConnError::Write)
    }
}
