//! The control plane: `runloopd`'s Unix socket, speaking RMP frames only.
//!
//! Each connection is checked with SO_PEERCRED before any byte is read: the peer must run
//! as the daemon's uid or belong to the configured group. Then the peer sends
//! `control.request.v1` frames and gets one `control.reply.v1` frame for each, in order.
//! A frame that fails validation gets an `error.report.v1` frame whose `code` is the RMP
//! error name; a frame that breaks the stream (bad length, bad magic …) also ends the
//! connection. Requests are idempotent by `request_id` ([`cache`]): an id is claimed
//! before its command runs, so duplicates — even ones arriving at the same time on other
//! connections — get the first answer and the command runs once.
//!
//! [`ControlPlane::respond`] is the one entry point from bytes to answers (the socket
//! server and the fuzz target both drive it); [`server`] owns the socket: connection
//! limits with slots reserved for the owner, the whole-frame deadline, `subscribe`
//! streams, and the drain on shutdown; [`sampler`] builds the status snapshots all
//! `subscribe` streams share. The client half lives in `runloop-client`.

mod cache;
pub mod holders;
mod sampler;
pub mod server;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use runloop_actors::names::AgentName;
use runloop_client::wire::frame_of;
use runloop_proto::payloads::{
    ControlCommand, ControlOutcome, ControlReply, ControlRequest, ErrorReport,
    REQUEST_ID_BYTES_MAX, SUBSCRIBE_INTERVAL_MS_MAX, SUBSCRIBE_INTERVAL_MS_MIN,
};
use runloop_proto::{Body, Frame, FrameError, MsgId, MsgIdGen, StreamDecoder, TraceId};

use crate::control::cache::{Lookup, ReplyCache};
use crate::kernel::Kernel;

pub use self::cache::REPLY_CACHE_ENTRIES_MAX;
pub use self::server::{ControlLimits, serve};
pub use runloop_client::wire::CONTROL_BODY_BYTES_MAX;

/// The superuser's uid.
const ROOT_UID: u32 = 0;

/// Who may talk to the daemon: its own uid, the members of `group`, and root when `root`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPolicy {
    pub uid: u32,
    pub group: Option<u32>,
    /// Let uid 0 in too. The system daemon does (`runloopd --system`): root can read its
    /// state and memory anyway, so refusing it protects nothing, and `sudo rlp status`
    /// should work.
    pub root: bool,
}

impl PeerPolicy {
    /// The daemon's own uid, no group.
    pub fn same_uid() -> io::Result<Self> {
        Ok(Self {
            uid: std::fs::metadata("/proc/self")?.uid(),
            group: None,
            root: false,
        })
    }

    fn allows(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        if uid == self.uid || (self.root && uid == ROOT_UID) {
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

/// The daemon's side: a kernel, a policy, the idempotency cache, the socket's limits.
#[derive(Debug)]
pub struct ControlPlane {
    kernel: Arc<Kernel>,
    /// Runs of openings.
    engine: Arc<crate::runs::Engine>,
    policy: PeerPolicy,
    limits: ControlLimits,
    cache: std::sync::Mutex<ReplyCache>,
    ids: MsgIdGen,
    /// How many times a command was executed (not answered from the cache).
    executed: AtomicU64,
    /// `subscribe` streams open now.
    subscribers: AtomicUsize,
    /// The status snapshots every `subscribe` stream shares.
    sampler: Arc<sampler::Sampler>,
}

/// What one request frame asks the connection to do next.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes (a reply or an error report); the connection goes on.
    Reply(Vec<u8>),
    /// Send these bytes (an error report), then close: the stream cannot go on.
    Close(Vec<u8>),
    /// Send the `subscribed` reply, then stream status every `interval_ms`.
    Subscribe { reply: Vec<u8>, interval_ms: u64 },
    /// Send the reply, then the run's progress events and its final report.
    Watch {
        reply: Vec<u8>,
        trace_id: String,
        events: tokio::sync::broadcast::Receiver<runloop_proto::payloads::RunProgress>,
    },
}

impl ControlPlane {
    pub fn new(kernel: Arc<Kernel>, policy: PeerPolicy) -> Self {
        Self::with_limits(kernel, policy, ControlLimits::default())
    }

    /// A plane whose socket uses `limits` (tests shorten the frame deadline).
    pub fn with_limits(kernel: Arc<Kernel>, policy: PeerPolicy, limits: ControlLimits) -> Self {
        let engine = crate::runs::Engine::new(
            kernel.clone(),
            crate::runs::EngineConfig {
                search_dirs: Vec::new(),
                host: crate::runs::RunHost::Daemon,
            },
        );
        Self::with_engine(engine, policy, limits)
    }

    /// A plane over an engine built by the caller (and its kernel).
    pub fn with_engine(
        engine: Arc<crate::runs::Engine>,
        policy: PeerPolicy,
        limits: ControlLimits,
    ) -> Self {
        limits.check();
        Self {
            kernel: engine.kernel().clone(),
            engine,
            policy,
            limits,
            cache: std::sync::Mutex::new(ReplyCache::default()),
            ids: MsgIdGen::default(),
            executed: AtomicU64::new(0),
            subscribers: AtomicUsize::new(0),
            sampler: Arc::new(sampler::Sampler::default()),
        }
    }

    /// The openings engine behind the run commands.
    pub fn engine(&self) -> &Arc<crate::runs::Engine> {
        &self.engine
    }

    pub fn executed(&self) -> u64 {
        self.executed.load(Ordering::Relaxed)
    }

    /// `subscribe` streams open now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    pub fn limits(&self) -> ControlLimits {
        self.limits
    }

    /// Answers one request: from the cache when its id was answered before, by waiting
    /// for the first one when a duplicate runs now, else by running it (once).
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
        if matches!(request.command, ControlCommand::Subscribe { .. }) {
            return ControlReply {
                request_id: id,
                outcome: failed(
                    "StreamOnly",
                    "subscribe streams over the daemon's control socket".into(),
                ),
            };
        }
        loop {
            let lookup = self.cache.lock().expect("cache lock").lookup(uid, &id);
            match lookup {
                Lookup::Answered(reply) => return *reply,
                Lookup::Wait(mut rx) => match rx.wait_for(Option::is_some).await {
                    Ok(reply) => return reply.clone().expect("waited for an answer"),
                    // The first runner was dropped before answering: claim again.
                    Err(_) => continue,
                },
                Lookup::Claimed(claim) => {
                    let mut guard = ClaimGuard {
                        plane: self,
                        uid,
                        id: &id,
                        claim: Some(claim),
                    };
                    self.executed.fetch_add(1, Ordering::Relaxed);
                    let outcome = execute(self, request.command).await;
                    let reply = ControlReply {
                        request_id: id.clone(),
                        outcome,
                    };
                    let claim = guard.claim.take().expect("finished once");
                    self.cache
                        .lock()
                        .expect("cache lock")
                        .finish(uid, claim, reply.clone());
                    return reply;
                }
            }
        }
    }

    /// Takes the next frame out of `decoder` and answers it; `None` when no whole frame
    /// is buffered. The single entry point from bytes to answers.
    pub async fn respond(&self, uid: u32, decoder: &mut StreamDecoder) -> Option<Step> {
        let now_ms = self.kernel.clock.now_ms();
        match decoder.next_frame(now_ms) {
            Ok(None) => None,
            Ok(Some(frame)) => Some(self.answer_frame(uid, frame).await),
            Err(err) => {
                let bytes = self.error_frame(&err);
                if err.is_fatal_for_stream() || decoder.is_poisoned() {
                    Some(Step::Close(bytes))
                } else {
                    Some(Step::Reply(bytes))
                }
            }
        }
    }

    async fn answer_frame(&self, uid: u32, frame: Frame) -> Step {
        let trace_id = frame.header().trace_id();
        let request = match frame.body().payload_as::<ControlRequest>() {
            Ok(request) => request,
            Err(err) => return Step::Reply(self.error_frame(&err)),
        };
        let valid_id =
            !request.request_id.is_empty() && request.request_id.len() <= REQUEST_ID_BYTES_MAX;
        if let (ControlCommand::Subscribe { interval_ms }, true) = (&request.command, valid_id) {
            let interval_ms =
                (*interval_ms).clamp(SUBSCRIBE_INTERVAL_MS_MIN, SUBSCRIBE_INTERVAL_MS_MAX);
            let reply = ControlReply {
                request_id: request.request_id,
                outcome: ControlOutcome::Subscribed { interval_ms },
            };
            let reply = self.frame(Body::from_payload(&reply), trace_id);
            return Step::Subscribe { reply, interval_ms };
        }
        // Subscribed before the run starts, so the stream misses none of its events.
        let events = self.engine.progress();
        let watch = match &request.command {
            ControlCommand::RunSubmit { watch: true, .. }
            | ControlCommand::RunResume { watch: true, .. } => true,
            ControlCommand::RunWatch {
                watch: true,
                trace_id,
            } => {
                // Answered at once; the report ends the stream.
                let reply = ControlReply {
                    request_id: request.request_id.clone(),
                    outcome: ControlOutcome::RunSubmitted {
                        trace_id: trace_id.clone(),
                        run_id: String::new(),
                    },
                };
                let trace = trace_id.clone();
                let reply = self.frame(Body::from_payload(&reply), trace_id_of(&trace));
                return Step::Watch {
                    reply,
                    trace_id: trace,
                    events,
                };
            }
            _ => false,
        };
        let reply = self.answer(uid, request).await;
        let bytes = self.frame(Body::from_payload(&reply), trace_id);
        match (&reply.outcome, watch) {
            (ControlOutcome::RunSubmitted { trace_id, .. }, true) => Step::Watch {
                reply: bytes,
                trace_id: trace_id.clone(),
                events,
            },
            _ => Step::Reply(bytes),
        }
    }

    /// One frame from the daemon, stamped by the kernel's clock.
    fn frame(&self, body: Body, trace_id: TraceId) -> Vec<u8> {
        frame_of(
            body,
            self.kernel.clock.now_ms(),
            trace_id,
            self.next_msg_id(),
        )
    }

    fn next_msg_id(&self) -> MsgId {
        self.ids.next_id()
    }

    fn error_frame(&self, err: &FrameError) -> Vec<u8> {
        self.report(err.name(), err.to_string())
    }

    /// An `error.report.v1` frame.
    fn report(&self, code: &str, message: String) -> Vec<u8> {
        let report = ErrorReport {
            code: code.into(),
            message,
        };
        self.frame(Body::from_payload(&report), TraceId(0))
    }
}

/// A claimed request id; withdrawn if its runner is dropped before answering (its
/// connection task was cancelled), so duplicates waiting on it claim again.
struct ClaimGuard<'a> {
    plane: &'a ControlPlane,
    uid: u32,
    id: &'a str,
    claim: Option<tokio::sync::watch::Sender<Option<ControlReply>>>,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if self.claim.is_some()
            && let Ok(mut cache) = self.plane.cache.lock()
        {
            cache.withdraw(self.uid, self.id);
        }
    }
}

fn failed(code: &str, message: String) -> ControlOutcome {
    ControlOutcome::Failed {
        code: code.into(),
        message,
    }
}

pub(crate) fn runs_refusal(e: &crate::runs::SubmitError) -> ControlOutcome {
    crate::runs::control::refusal(e)
}

fn trace_id_of(hex: &str) -> TraceId {
    hex.parse().unwrap_or(TraceId(0))
}

/// A progress event or the final report as a frame of a watched run.
pub(crate) fn watch_frame(plane: &ControlPlane, outcome: ControlOutcome, trace: &str) -> Vec<u8> {
    let reply = ControlReply {
        request_id: "watch".into(),
        outcome,
    };
    plane.frame(Body::from_payload(&reply), trace_id_of(trace))
}

async fn execute(plane: &ControlPlane, command: ControlCommand) -> ControlOutcome {
    let kernel = &*plane.kernel;
    match command {
        ControlCommand::RunSubmit {
            source,
            dir,
            params_json,
            watch: _,
        } => crate::runs::control::submit(&plane.engine, &source, &dir, &params_json).await,
        ControlCommand::RunResume { trace_id, watch: _ } => {
            crate::runs::control::resume(&plane.engine, &trace_id).await
        }
        ControlCommand::RunWatch { trace_id, watch: _ } => {
            crate::runs::control::wait(&plane.engine, &trace_id).await
        }
        ControlCommand::TraceShow { trace_id } => {
            crate::trace::control::show(&plane.engine, &trace_id).await
        }
        ControlCommand::TraceList { limit } => {
            crate::trace::control::list(&plane.engine, limit as usize).await
        }
        ControlCommand::RunReplay { trace_id } => {
            crate::trace::control::replay(&plane.engine, &trace_id).await
        }
        ControlCommand::RunImport { ndjson } => {
            crate::trace::control::import(&plane.engine, &ndjson).await
        }
        ControlCommand::ConfirmList => crate::effects::control::list(kernel).await,
        ControlCommand::ConfirmShow { request_id } => {
            crate::effects::control::show(kernel, &request_id).await
        }
        ControlCommand::ConfirmDecide {
            request_id,
            approve,
            payload_hash,
            by,
            reason,
        } => {
            let decision = crate::effects::control::Decide {
                request_id,
                approve,
                payload_hash,
                by,
                reason,
            };
            crate::effects::control::decide(kernel, decision).await
        }
        ControlCommand::CapGrant {
            agent,
            capability,
            ttl_ms,
            by,
            reason,
        } => {
            let ask = crate::grants::GrantAsk {
                agent,
                capability,
                ttl_ms,
                by,
                reason,
            };
            crate::grants::grant(&plane.engine, ask).await
        }
        ControlCommand::CapList => crate::grants::list(kernel),
        ControlCommand::CapRevoke {
            grant_id,
            by,
            reason,
        } => crate::grants::revoke(kernel, &grant_id, &by, reason).await,
        ControlCommand::RunCancel { trace_id } => match plane.engine.cancel(&trace_id) {
            Ok(()) => ControlOutcome::RunCancelled { trace_id },
            Err(e) => failed("NoSuchRun", e.to_string()),
        },
        ControlCommand::RunShow { trace_id } => {
            crate::runs::control::state(&plane.engine, &trace_id).await
        }
        ControlCommand::RunList { limit } => match plane.engine.list(limit as usize).await {
            Ok(runs) => ControlOutcome::Runs { runs },
            Err(e) => failed("Unavailable", e.to_string()),
        },
        ControlCommand::Subscribe { .. } => {
            unreachable!("answer() turns subscribe away before executing")
        }
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

#[cfg(test)]
mod tests {
    use super::PeerPolicy;

    #[test]
    fn root_is_let_in_only_when_the_policy_says() {
        let user = PeerPolicy {
            uid: 1000,
            group: None,
            root: false,
        };
        assert!(user.allows(1000, 1000, None));
        assert!(!user.allows(0, 0, None), "user mode refuses root");
        assert!(!user.allows(1001, 1001, None));
        let system = PeerPolicy {
            uid: 998,
            group: Some(998),
            root: true,
        };
        assert!(system.allows(0, 0, None), "system mode lets root in");
        assert!(
            system.allows(1000, 998, None),
            "a member of the daemon's group"
        );
        assert!(!system.allows(1000, 1000, None), "anyone else is refused");
    }
}
