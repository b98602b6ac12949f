//! The control plane: `runloopd`'s Unix socket, speaking RMP frames only.
//!
//! Each connection is checked with SO_PEERCRED before any byte is read: the peer must run
//! as the daemon's uid or belong to the configured group. Then the peer sends
//! `control.request.v1` frames and gets one `control.reply.v1` frame for each, in order.
//! A frame that fails validation gets an `error.report.v1` frame whose `code` is the RMP
//! error name; a frame that breaks the stream (bad length, bad magic …) also ends the
//! connection. Requests are idempotent by `request_id`: the daemon remembers the last
//! [`REPLY_CACHE_ENTRIES_MAX`] answers per uid and answers a repeated id from there.
//!
//! Lifecycle of the server: [`serve`] accepts until the shutdown signal, then stops
//! accepting and waits up to [`DRAIN_TIMEOUT_MS`] for the connections in flight.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runloop_actors::names::AgentName;
use runloop_proto::frame::{Limits, encode_frame};
use runloop_proto::payloads::{
    ControlCommand, ControlOutcome, ControlReply, ControlRequest, ErrorReport, REQUEST_ID_BYTES_MAX,
};
use runloop_proto::{
    Body, Clock, Family, Frame, FrameError, Header, Kind, MsgId, MsgIdGen, StreamDecoder,
    SystemClock, TraceId,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};

use crate::kernel::Kernel;

/// Largest control frame body either side accepts, in bytes.
pub const CONTROL_BODY_BYTES_MAX: u32 = 1024 * 1024;
/// Most connections served at once; more wait in the listen backlog.
pub const CONTROL_CONNECTIONS_MAX: usize = 64;
/// A connection idle this long is closed.
pub const CONTROL_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Answers remembered for idempotency, per uid.
pub const REPLY_CACHE_ENTRIES_MAX: usize = 1_024;
/// How long shutdown waits for connections in flight.
pub const DRAIN_TIMEOUT_MS: u64 = 5_000;
/// Time to live of control frames.
pub const CONTROL_TTL_MS: u64 = 60_000;
/// How long a client waits for the daemon's answer.
pub const CLIENT_TIMEOUT_MS: u64 = 10_000;
/// Read buffer size, in bytes.
const READ_CHUNK_BYTES: usize = 64 * 1024;

fn limits() -> Limits {
    Limits::new(CONTROL_BODY_BYTES_MAX)
}

/// Who may talk to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPolicy {
    pub uid: u32,
    pub group: Option<u32>,
}

impl PeerPolicy {
    /// The daemon's own uid, no group.
    pub fn same_uid() -> io::Result<Self> {
        Ok(Self {
            uid: std::fs::metadata("/proc/self")?.uid(),
            group: None,
        })
    }

    fn allows(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        if uid == self.uid {
            return true;
        }
        let Some(group) = self.group else {
            return false;
        };
        gid == group || pid.is_some_and(|pid| supplementary_groups(pid).contains(&group))
    }
}

/// The peer's supplementary groups, from `/proc/<pid>/status` (empty when unreadable).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Answers remembered per (uid, request id), oldest forgotten first.
#[derive(Debug, Default)]
struct ReplyCache {
    replies: HashMap<(u32, String), ControlReply>,
    order: VecDeque<(u32, String)>,
}

impl ReplyCache {
    fn get(&self, uid: u32, id: &str) -> Option<ControlReply> {
        self.replies.get(&(uid, id.to_owned())).cloned()
    }

    fn put(&mut self, uid: u32, reply: ControlReply) {
        let key = (uid, reply.request_id.clone());
        if self.replies.insert(key.clone(), reply).is_none() {
            self.order.push_back(key);
        }
        let per_uid = self.order.iter().filter(|(u, _)| *u == uid).count();
        if per_uid > REPLY_CACHE_ENTRIES_MAX {
            let index = self
                .order
                .iter()
                .position(|(u, _)| *u == uid)
                .expect("counted");
            let old = self.order.remove(index).expect("index in range");
            self.replies.remove(&old);
        }
    }
}

/// The daemon's side: a kernel, a policy, the idempotency cache.
#[derive(Debug)]
pub struct ControlPlane {
    kernel: Arc<Kernel>,
    policy: PeerPolicy,
    cache: Mutex<ReplyCache>,
    ids: MsgIdGen,
    /// How many times a command was executed (not answered from the cache).
    executed: std::sync::atomic::AtomicU64,
}

impl ControlPlane {
    pub fn new(kernel: Arc<Kernel>, policy: PeerPolicy) -> Self {
        Self {
            kernel,
            policy,
            cache: Mutex::new(ReplyCache::default()),
            ids: MsgIdGen::default(),
            executed: Default::default(),
        }
    }

    pub fn executed(&self) -> u64 {
        self.executed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Answers one request, from the cache when its id was seen before.
    pub async fn answer(&self, uid: u32, request: ControlRequest) -> ControlReply {
        let id = request.request_id.clone();
        if id.is_empty() || id.len() > REQUEST_ID_BYTES_MAX {
            return ControlReply {
                request_id: id,
                outcome: failed(
                    "BadRequestId",
                    format!("request_id must be 1 to {REQUEST_ID_BYTES_MAX} bytes"),
                ),
            };
        }
        if let Some(reply) = self.cache.lock().expect("cache lock").get(uid, &id) {
            return reply;
        }
        self.executed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let outcome = execute(&self.kernel, request.command).await;
        let reply = ControlReply {
            request_id: id,
            outcome,
        };
        self.cache
            .lock()
            .expect("cache lock")
            .put(uid, reply.clone());
        reply
    }
}

fn failed(code: &str, message: String) -> ControlOutcome {
    ControlOutcome::Failed {
        code: code.into(),
        message,
    }
}

async fn execute(kernel: &Kernel, command: ControlCommand) -> ControlOutcome {
    match command {
        ControlCommand::Status => ControlOutcome::Status {
            tree: kernel.status().await,
        },
        ControlCommand::AgentRelease { agent } => {
            let agent = match AgentName::new(&agent) {
                Ok(agent) => agent,
                Err(e) => return failed("InvalidName", e.to_string()),
            };
            match kernel.release(&agent).await {
                Ok(record) => ControlOutcome::Released {
                    agent: agent.to_string(),
                    reason: record.message,
                },
                Err(e @ runloop_actors::quarantine::QuarantineError::NotQuarantined { .. }) => {
                    failed("NotQuarantined", e.to_string())
                }
                Err(e) => failed("Unavailable", e.to_string()),
            }
        }
        ControlCommand::AgentList => ControlOutcome::Agents {
            agents: kernel.agents().await,
        },
        ControlCommand::AgentStart { bundle, name } => {
            match kernel
                .start_bundle(std::path::Path::new(&bundle), name.as_deref())
                .await
            {
                Ok(agent) => ControlOutcome::AgentStarted { agent },
                Err(e) => failed(e.code(), e.to_string()),
            }
        }
        ControlCommand::AgentSend {
            agent,
            port,
            input_json,
        } => agent_send(kernel, &agent, port, &input_json).await,
        ControlCommand::AgentStop { agent } => {
            let agent = match AgentName::new(&agent) {
                Ok(agent) => agent,
                Err(e) => return failed("InvalidName", e.to_string()),
            };
            match kernel.stop_agent(&agent).await {
                Ok(()) => ControlOutcome::AgentStopped {
                    agent: agent.to_string(),
                },
                Err(e) => failed(e.code(), e.to_string()),
            }
        }
    }
}

async fn agent_send(
    kernel: &Kernel,
    agent: &str,
    port: String,
    input_json: &str,
) -> ControlOutcome {
    let agent = match AgentName::new(agent) {
        Ok(agent) => agent,
        Err(e) => return failed("InvalidName", e.to_string()),
    };
    let json: serde_json::Value = match serde_json::from_str(input_json) {
        Ok(json) => json,
        Err(e) => return failed("BadInput", format!("--input is not JSON: {e}")),
    };
    let payload = match runloop_proto::json::json_to_msgpack(&json, "input") {
        Ok(payload) => payload,
        Err(e) => return failed("BadInput", e.to_string()),
    };
    let input = runloop_proto::payloads::AgentInput { port, payload };
    match kernel.send(&agent, input).await {
        Ok(reply) => {
            let outputs: Vec<serde_json::Value> = reply
                .outputs
                .iter()
                .map(|o| {
                    serde_json::json!({
                        "port": o.port,
                        "payload": runloop_proto::json::msgpack_to_json(&o.payload),
                    })
                })
                .collect();
            ControlOutcome::AgentReplied {
                agent: agent.to_string(),
                outputs_json: serde_json::Value::Array(outputs).to_string(),
                attempt: reply.attempt,
                round_trip_us: reply.round_trip_us,
            }
        }
        Err(e) => failed(e.code(), e.to_string()),
    }
}

fn frame_of(body: Body, trace_id: TraceId, msg_id: MsgId) -> Vec<u8> {
    let header = Header::new(
        body.kind().family(),
        SystemClock.now_ms(),
        CONTROL_TTL_MS,
        trace_id,
        msg_id,
    )
    .expect("the system clock is far from u64::MAX");
    let frame = Frame::new(header, body).expect("the body's own family");
    encode_frame(&frame, &limits()).expect("control payloads stay under the cap")
}

fn error_frame(err: &FrameError, msg_id: MsgId) -> Vec<u8> {
    let report = ErrorReport {
        code: err.name().into(),
        message: err.to_string(),
    };
    frame_of(Body::from_payload(&report), TraceId(0), msg_id)
}

/// Accepts connections until `shutdown` turns true, then drains.
pub async fn serve(
    listener: UnixListener,
    plane: Arc<ControlPlane>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(CONTROL_CONNECTIONS_MAX));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("never closed"),
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let plane = plane.clone();
        tokio::spawn(async move {
            let _ = serve_connection(stream, &plane).await;
            drop(permit);
        });
    }
    drop(listener);
    let drain = Duration::from_millis(DRAIN_TIMEOUT_MS);
    let all = u32::try_from(CONTROL_CONNECTIONS_MAX).expect("small");
    let _ = tokio::time::timeout(drain, slots.acquire_many(all)).await;
}

async fn serve_connection(mut stream: UnixStream, plane: &ControlPlane) -> io::Result<()> {
    let cred = stream.peer_cred()?;
    if !plane.policy.allows(cred.uid(), cred.gid(), cred.pid()) {
        let err = ErrorReport {
            code: "PermissionDenied".into(),
            message: format!(
                "uid {} may not use this socket (it needs uid {}{})",
                cred.uid(),
                plane.policy.uid,
                plane
                    .policy
                    .group
                    .map(|g| format!(" or group {g}"))
                    .unwrap_or_default()
            ),
        };
        let bytes = frame_of(Body::from_payload(&err), TraceId(0), plane.ids.next_id());
        stream.write_all(&bytes).await?;
        return Ok(());
    }
    let mut decoder = StreamDecoder::new(limits());
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let idle = Duration::from_millis(CONTROL_IDLE_TIMEOUT_MS);
    loop {
        loop {
            match decoder.next_frame(SystemClock.now_ms()) {
                Ok(Some(frame)) => {
                    let bytes = reply_to(frame, cred.uid(), plane).await;
                    stream.write_all(&bytes).await?;
                }
                Ok(None) => break,
                Err(err) => {
                    stream
                        .write_all(&error_frame(&err, plane.ids.next_id()))
                        .await?;
                    if err.is_fatal_for_stream() || decoder.is_poisoned() {
                        return Ok(());
                    }
                }
            }
        }
        let room = decoder.free_bytes().min(buf.len());
        if room == 0 {
            return Ok(());
        }
        let n = match tokio::time::timeout(idle, stream.read(&mut buf[..room])).await {
            Ok(read) => read?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        let pushed = decoder.push(&buf[..n]);
        assert_eq!(pushed, n, "pushed no more than the free room");
    }
}

async fn reply_to(frame: Frame, uid: u32, plane: &ControlPlane) -> Vec<u8> {
    let trace_id = frame.header().trace_id();
    let request = match frame.body().payload_as::<ControlRequest>() {
        Ok(request) => request,
        Err(err) => return error_frame(&err, plane.ids.next_id()),
    };
    let reply = plane.answer(uid, request).await;
    frame_of(Body::from_payload(&reply), trace_id, plane.ids.next_id())
}

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("talk to {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("talk to {path}: no answer within {CLIENT_TIMEOUT_MS} ms")]
    Timeout { path: PathBuf },
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
}

/// Sends one request over a fresh connection and waits for its answer.
pub async fn request(
    path: &Path,
    request_id: &str,
    command: ControlCommand,
) -> Result<ControlReply, ClientError> {
    let wait = Duration::from_millis(CLIENT_TIMEOUT_MS);
    tokio::time::timeout(wait, request_inner(path, request_id, command))
        .await
        .map_err(|_| ClientError::Timeout {
            path: path.to_owned(),
        })?
}

async fn request_inner(
    path: &Path,
    request_id: &str,
    command: ControlCommand,
) -> Result<ControlReply, ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
    let body = Body::from_payload(&ControlRequest {
        request_id: request_id.to_owned(),
        command,
    });
    let trace = TraceId(u128::from(std::process::id()) << 64 | u128::from(SystemClock.now_ms()));
    stream
        .write_all(&frame_of(body, trace, MsgId(1)))
        .await
        .map_err(io)?;
    let mut decoder = StreamDecoder::new(limits());
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let frame =
            decoder
                .next_frame(SystemClock.now_ms())
                .map_err(|source| ClientError::Frame {
                    path: path.to_owned(),
                    source,
                })?;
        if let Some(frame) = frame {
            return read_reply(path, &frame);
        }
        let room = decoder.free_bytes().min(buf.len());
        let n = stream.read(&mut buf[..room.max(1)]).await.map_err(io)?;
        if n == 0 {
            return Err(ClientError::Closed {
                path: path.to_owned(),
            });
        }
        decoder.push(&buf[..n]);
    }
}

fn read_reply(path: &Path, frame: &Frame) -> Result<ControlReply, ClientError> {
    let bad = |source| ClientError::Frame {
        path: path.to_owned(),
        source,
    };
    match frame.body().kind() {
        Kind::ErrorReport => {
            let report: ErrorReport = frame.body().payload_as().map_err(bad)?;
            Err(ClientError::Refused {
                path: path.to_owned(),
                code: report.code,
                message: report.message,
            })
        }
        _ => frame.body().payload_as::<ControlReply>().map_err(bad),
    }
}

/// The family control frames travel in (for callers building raw frames).
pub const CONTROL_FAMILY: Family = Family::Control;
