//! The sandbox's end of the kernel socket: RMP v0 frames in and out, nothing else.
//!
//! Frames from the kernel go through the same bounded [`StreamDecoder`] the kernel uses,
//! so a confused kernel cannot make the sandbox buffer without bound either.
//!
//! Writes are coalesced: [`Conn::queue`] encodes a frame into the outgoing buffer, and the
//! buffer goes out in one `write` when the sandbox is about to wait for the kernel
//! ([`Conn::recv`] flushes before it blocks), at the end of each invoke
//! ([`Conn::flush`]), or once it holds [`OUT_FLUSH_BYTES`]. So an invoke's outputs and its
//! outcome usually cost one system call.
//!
//! Invokes the kernel pipelines ahead arrive while the current one is still running (its
//! host calls read the socket); [`Conn::recv_reply`] sets them aside, in order, in a queue
//! bounded by [`PIPELINE_INVOKES_MAX`], and [`Conn::next_request`] hands them out first.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use runloop_proto::frame::encode_frame_into;
use runloop_proto::payloads::PIPELINE_INVOKES_MAX;
use runloop_proto::{
    Clock, Frame, FrameError, Kind, KindPayload, Limits, MsgIdGen, StreamDecoder, SystemClock,
    TraceId,
};
use serde::Serialize;

/// Time to live of every frame the sandbox sends; delivery is immediate on a socket pair.
pub const FRAME_TTL_MS: u64 = 60_000;
/// Bytes read from the socket per `read` call.
const READ_BUF_BYTES: usize = 64 * 1024;
/// Queued outgoing bytes that trigger a write without waiting for the next flush point.
pub const OUT_FLUSH_BYTES: usize = 64 * 1024;

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
    #[error("kernel pipelined more than {PIPELINE_INVOKES_MAX} invokes")]
    PipelineFull,
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
    /// Invokes that arrived while another one ran, oldest first.
    early: VecDeque<Frame>,
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
            early: VecDeque::new(),
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
            // About to wait for the kernel: whatever is queued must be out first.
            self.flush()?;
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

    /// The next request to serve: an invoke set aside earlier, else the next frame.
    pub fn next_request(&mut self) -> Result<Frame, ConnError> {
        match self.early.pop_front() {
            Some(frame) => Ok(frame),
            None => self.recv(),
        }
    }

    /// The next frame that is not an invoke; invokes pipelined meanwhile are set aside.
    pub fn recv_reply(&mut self) -> Result<Frame, ConnError> {
        loop {
            let frame = self.recv()?;
            if frame.body().kind() != Kind::Invoke {
                return Ok(frame);
            }
            // The invoke running now counts against the pipeline too.
            if self.early.len() + 1 >= PIPELINE_INVOKES_MAX {
                return Err(ConnError::PipelineFull);
            }
            self.early.push_back(frame);
        }
    }

    /// Sends one typed payload in trace `trace` now (with anything queued before it).
    pub fn send<P: KindPayload + Serialize>(
        &mut self,
        trace: TraceId,
        payload: &P,
    ) -> Result<(), ConnError> {
        self.queue(trace, payload)?;
        self.flush()
    }

    /// Writes every queued byte.
    pub fn flush(&mut self) -> Result<(), ConnError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.out).map_err(ConnError::Write);
        self.out.clear();
        result
    }

    /// Queues one typed payload in trace `trace`; it goes out at the next flush point.
    pub fn queue<P: KindPayload + Serialize>(
        &mut self,
        trace: TraceId,
        payload: &P,
    ) -> Result<(), ConnError> {
        let frame = Frame::of(
            payload,
            SystemClock.now_ms(),
            FRAME_TTL_MS,
            trace,
            self.ids.next_id(),
        )
        .map_err(ConnError::Encode)?;
        // A refused frame leaves nothing queued (`encode_frame_into` takes its bytes back).
        encode_frame_into(&frame, &self.limits, &mut self.out).map_err(ConnError::Encode)?;
        if self.out.len() >= OUT_FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }
}
