//! The client side of the control socket: one request per connection, answered by one
//! `control.reply.v1`; or a `subscribe` that keeps the connection and reads a stream of
//! `event.status.v1` / `event.status_delta.v1` / `event.run.v1` / `event.progress.v1`
//! frames. The stream's deltas are applied here: a subscriber sees whole snapshots.
//!
//! A daemon whose connection limits are reached refuses with an `error.report.v1` whose
//! code is [`BUSY_CODE`] before reading anything; [`request`] then tries again (same
//! request id, backing off from [`BUSY_RETRY_MS_MIN`] to [`BUSY_RETRY_MS_MAX`]) until
//! [`CLIENT_TIMEOUT_MS`] has passed since the first try.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runloop_proto::payloads::{
    ControlCommand, ControlOutcome, ControlReply, ControlRequest, DeltaError, ErrorReport,
    RunEvent, RunProgress, StatusDelta, StatusSnapshot,
};
use runloop_proto::{
    Body, Clock, Frame, FrameError, Kind, MsgId, StreamDecoder, SystemClock, TraceId,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::wire::{BUSY_CODE, READ_CHUNK_BYTES, frame_of, limits};

/// How long a client waits for the daemon's answer, busy retries included.
pub const CLIENT_TIMEOUT_MS: u64 = 10_000;
/// How long a client waits for commands that legitimately take long: `agent start`
/// compiles the agent's wasm (seconds on a loaded machine, more in a debug build), and
/// `agent send` waits for the agent, restarts and redeliveries included.
pub const CLIENT_LONG_TIMEOUT_MS: u64 = 180_000;

/// How long `run_watch` may wait for a run (a run's own timeout bounds it first).
pub const RUN_WATCH_WAIT_MS: u64 = 7 * 24 * 3_600_000;

/// How long to wait for the answer to `command`.
pub fn answer_wait_ms(command: &ControlCommand) -> u64 {
    match command {
        ControlCommand::AgentStart { .. }
        | ControlCommand::AgentSend { .. }
        | ControlCommand::RunSubmit { .. }
        | ControlCommand::RunResume { .. } => CLIENT_LONG_TIMEOUT_MS,
        // Waits for a whole run: its own timeout bounds it.
        ControlCommand::RunWatch { .. } => RUN_WATCH_WAIT_MS,
        _ => CLIENT_TIMEOUT_MS,
    }
}
/// First wait before trying a busy daemon again.
pub const BUSY_RETRY_MS_MIN: u64 = 20;
/// Longest wait between two tries of a busy daemon.
pub const BUSY_RETRY_MS_MAX: u64 = 250;

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("talk to {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("talk to {path}: no answer within {waited_ms} ms")]
    Timeout { path: PathBuf, waited_ms: u64 },
    #[error("talk to {path}: the daemon closed the connection without answering")]
    Closed { path: PathBuf },
    #[error("talk to {path}: bad frame from the daemon: {source}")]
    Frame { path: PathBuf, source: FrameError },
    #[error("talk to {path}: the daemon refused: {code}: {message}")]
    Refused {
        path: PathBuf,
        code: String,
        message: String,
    },
    #[error("talk to {path}: the daemon sent a {kind} frame where {wanted} belongs")]
    Unexpected {
        path: PathBuf,
        kind: &'static str,
        wanted: &'static str,
    },
    #[error("subscribe {path}: a status delta does not apply: {source}")]
    Delta { path: PathBuf, source: DeltaError },
    #[error("subscribe {path}: the daemon answered {outcome:?}")]
    NotSubscribed {
        path: PathBuf,
        outcome: Box<ControlOutcome>,
    },
}

impl ClientError {
    /// Whether the daemon was busy (or its listen queue full): nothing ran, try again.
    fn is_busy(&self) -> bool {
        match self {
            ClientError::Refused { code, .. } => code == BUSY_CODE,
            ClientError::Connect { source, .. } => source.kind() == io::ErrorKind::WouldBlock,
            // Only the request's write maps to `Io` with these: the daemon closed before
            // reading anything (it refused as busy and we wrote after its close).
            ClientError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            _ => false,
        }
    }
}

/// Sends one request over a fresh connection and waits for its answer, trying a busy
/// daemon again, up to [`answer_wait_ms`] of the command.
pub async fn request(
    path: &Path,
    request_id: &str,
    command: ControlCommand,
) -> Result<ControlReply, ClientError> {
    let waited_ms = answer_wait_ms(&command);
    let wait = Duration::from_millis(waited_ms);
    let tries = async {
        let mut backoff = BUSY_RETRY_MS_MIN;
        loop {
            match request_once(path, request_id, command.clone()).await {
                Err(err) if err.is_busy() => {
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                    backoff = (backoff * 2).min(BUSY_RETRY_MS_MAX);
                }
                other => return other,
            }
        }
    };
    tokio::time::timeout(wait, tries)
        .await
        .map_err(|_| ClientError::Timeout {
            path: path.to_owned(),
            waited_ms,
        })?
}

/// One connection, one request, one reply (no retry).
pub async fn request_once(
    path: &Path,
    request_id: &str,
    command: ControlCommand,
) -> Result<ControlReply, ClientError> {
    let mut conn = Conn::open(path, request_id, command).await?;
    match conn.next_frame().await? {
        Some(frame) => read_reply(path, &frame),
        None => Err(ClientError::Closed {
            path: path.to_owned(),
        }),
    }
}

/// An open connection with its decoder.
struct Conn {
    path: PathBuf,
    stream: UnixStream,
    decoder: StreamDecoder,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(
        path: &Path,
        request_id: &str,
        command: ControlCommand,
    ) -> Result<Conn, ClientError> {
        let mut stream =
            UnixStream::connect(path)
                .await
                .map_err(|source| ClientError::Connect {
                    path: path.to_owned(),
                    source,
                })?;
        let body = Body::from_payload(&ControlRequest {
            request_id: request_id.to_owned(),
            command,
        });
        let now_ms = SystemClock.now_ms();
        let trace = TraceId(u128::from(std::process::id()) << 64 | u128::from(now_ms));
        stream
            .write_all(&frame_of(body, now_ms, trace, MsgId(1)))
            .await
            .map_err(|source| ClientError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Conn {
            path: path.to_owned(),
            stream,
            decoder: StreamDecoder::new(limits()),
            buf: vec![0u8; READ_CHUNK_BYTES],
        })
    }

    /// The next whole frame, or `None` when the daemon closed the connection.
    async fn next_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            let frame = self
                .decoder
                .next_frame(SystemClock.now_ms())
                .map_err(|source| ClientError::Frame {
                    path: self.path.clone(),
                    source,
                })?;
            if let Some(frame) = frame {
                return Ok(Some(frame));
            }
            // The decoder's buffer holds a whole frame of the largest size, so there is room
            // whenever no frame is ready.
            let room = self.decoder.free_bytes().min(self.buf.len());
            assert!(room > 0, "a full decoder always has a frame ready");
            let n = match self.stream.read(&mut self.buf[..room]).await {
                Ok(n) => n,
                // A daemon that refuses (busy) may close before we read its report.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                Err(source) => {
                    return Err(ClientError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            };
            if n == 0 {
                return Ok(None);
            }
            let pushed = self.decoder.push(&self.buf[..n]);
            assert_eq!(pushed, n, "read no more than the decoder's free room");
        }
    }
}

fn refused(path: &Path, frame: &Frame) -> Result<ClientError, ClientError> {
    let report: ErrorReport = frame
        .body()
        .payload_as()
        .map_err(|source| ClientError::Frame {
            path: path.to_owned(),
            source,
        })?;
    Ok(ClientError::Refused {
        path: path.to_owned(),
        code: report.code,
        message: report.message,
    })
}

fn read_reply(path: &Path, frame: &Frame) -> Result<ControlReply, ClientError> {
    match frame.body().kind() {
        Kind::ErrorReport => Err(refused(path, frame)?),
        _ => frame
            .body()
            .payload_as::<ControlReply>()
            .map_err(|source| ClientError::Frame {
                path: path.to_owned(),
                source,
            }),
    }
}

/// One item of a status stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusItem {
    /// The whole snapshot, sent whole or rebuilt from a delta. The subscription keeps
    /// its own reference as the next delta's base; drop this one before the next
    /// [`Subscription::next`] and the rebuild moves it instead of copying it.
    Snapshot(Arc<StatusSnapshot>),
    /// An agent started, stopped, restarted, was parked or released.
    Event(RunEvent),
    /// A run's progress (any run of the daemon), as it happens.
    Progress(Box<RunProgress>),
}

/// A status stream from `subscribe`; dropping it closes the connection, which ends the
/// daemon's side of the subscription.
#[derive(Debug)]
pub struct Subscription {
    conn: Conn,
    interval_ms: u64,
    /// The last snapshot: the next delta's base.
    last: Option<Arc<StatusSnapshot>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The interval the daemon accepted (after clamping), in milliseconds.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// The next snapshot or event; `Ok(None)` when the daemon ended the stream.
    pub async fn next(&mut self) -> Result<Option<StatusItem>, ClientError> {
        let Some(frame) = self.conn.next_frame().await? else {
            return Ok(None);
        };
        let bad = |source| ClientError::Frame {
            path: self.conn.path.clone(),
            source,
        };
        match frame.body().kind() {
            Kind::StatusSnapshot => {
                let snapshot: Arc<StatusSnapshot> =
                    Arc::new(frame.body().payload_as().map_err(bad)?);
                self.last = Some(snapshot.clone());
                Ok(Some(StatusItem::Snapshot(snapshot)))
            }
            Kind::StatusDelta => {
                let delta: StatusDelta = frame.body().payload_as().map_err(bad)?;
                let snapshot = Arc::new(self.rebuild(delta)?);
                self.last = Some(snapshot.clone());
                Ok(Some(StatusItem::Snapshot(snapshot)))
            }
            Kind::RunEvent => Ok(Some(StatusItem::Event(
                frame.body().payload_as().map_err(bad)?,
            ))),
            Kind::RunProgress => Ok(Some(StatusItem::Progress(Box::new(
                frame.body().payload_as().map_err(bad)?,
            )))),
            Kind::ErrorReport => Err(refused(&self.conn.path, &frame)?),
            other => Err(ClientError::Unexpected {
                path: self.conn.path.clone(),
                kind: other.type_name(),
                wanted: "a status snapshot or delta, an agent event or run progress",
            }),
        }
    }

    /// The snapshot `delta` makes of the last one (moved out when no one else holds it).
    fn rebuild(&mut self, delta: StatusDelta) -> Result<StatusSnapshot, ClientError> {
        let failed = |source| ClientError::Delta {
            path: self.conn.path.clone(),
            source,
        };
        let Some(last) = self.last.take() else {
            return Err(failed(DeltaError::Base {
                want: delta.base_seq,
                have: 0,
            }));
        };
        let base = Arc::try_unwrap(last).unwrap_or_else(|shared| (*shared).clone());
        delta.apply(base).map_err(failed)
    }
}

/// A watched run: its progress replies, then its report; dropping it closes the
/// connection (the run goes on).
#[derive(Debug)]
pub struct RunStream {
    conn: Conn,
    /// The first reply (`run_submitted`, or a failure).
    pub first: ControlOutcome,
}

impl RunStream {
    /// The next reply (`run_progress` or the final `run_finished`); `Ok(None)` when the
    /// daemon closed the stream.
    pub async fn next(&mut self) -> Result<Option<ControlOutcome>, ClientError> {
        let Some(frame) = self.conn.next_frame().await? else {
            return Ok(None);
        };
        Ok(Some(read_reply(&self.conn.path, &frame)?.outcome))
    }
}

/// Sends a `run_submit`, `run_resume` or `run_watch` with `watch: true` and returns the
/// stream of its answers. Waits up to [`CLIENT_LONG_TIMEOUT_MS`] for the first.
pub async fn watch(
    path: &Path,
    request_id: &str,
    command: ControlCommand,
) -> Result<RunStream, ClientError> {
    let wait = Duration::from_millis(CLIENT_LONG_TIMEOUT_MS);
    let open = async {
        let mut conn = Conn::open(path, request_id, command).await?;
        let Some(frame) = conn.next_frame().await? else {
            return Err(ClientError::Closed {
                path: path.to_owned(),
            });
        };
        let first = read_reply(path, &frame)?.outcome;
        Ok(RunStream { conn, first })
    };
    tokio::time::timeout(wait, open)
        .await
        .map_err(|_| ClientError::Timeout {
            path: path.to_owned(),
            waited_ms: CLIENT_LONG_TIMEOUT_MS,
        })?
}

/// Subscribes to status snapshots every `interval_ms` (the daemon clamps it) and to run
/// events. Waits up to [`CLIENT_TIMEOUT_MS`] for the `subscribed` answer.
pub async fn subscribe(
    path: &Path,
    request_id: &str,
    interval_ms: u64,
) -> Result<Subscription, ClientError> {
    let wait = Duration::from_millis(CLIENT_TIMEOUT_MS);
    let open = async {
        let command = ControlCommand::Subscribe { interval_ms };
        let mut conn = Conn::open(path, request_id, command).await?;
        let Some(frame) = conn.next_frame().await? else {
            return Err(ClientError::Closed {
                path: path.to_owned(),
            });
        };
        let reply = read_reply(path, &frame)?;
        match reply.outcome {
            ControlOutcome::Subscribed { interval_ms } => Ok(Subscription {
                conn,
                interval_ms,
                last: None,
            }),
            outcome => Err(ClientError::NotSubscribed {
                path: path.to_owned(),
                outcome: Box::new(outcome),
            }),
        }
    };
    tokio::time::timeout(wait, open)
        .await
        .map_err(|_| ClientError::Timeout {
            path: path.to_owned(),
            waited_ms: CLIENT_TIMEOUT_MS,
        })?
}
