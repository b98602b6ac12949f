//! The control socket's server: admission, the whole-frame deadline, `subscribe` streams
//! and the drain on shutdown.
//!
//! Admission (checked right after `accept`, before any byte is read): the peer passes
//! SO_PEERCRED, then takes a connection slot. At most [`ControlLimits::connections_max`]
//! connections are served at once; [`ControlLimits::owner_reserved`] of them only the
//! daemon's own uid may take, and any other uid holds at most
//! [`ControlLimits::per_uid_max`]. A peer past a limit gets an `error.report.v1` `Busy` at
//! once and is closed, so the listen queue keeps draining and a flood of connections
//! costs the daemon no more than the slots it has; the client tries again.
//!
//! Deadline: every request frame must arrive whole within
//! [`ControlLimits::frame_deadline_ms`] of the connection's accept or of the previous
//! answer — one deadline for the whole frame, not per read, so a client dribbling a byte
//! at a time cannot keep its slot (it gets `FrameDeadline` and is closed). Writes to a
//! client that does not read are bounded by the same deadline.
//!
//! Lifecycle: [`serve`] accepts until the shutdown signal, then stops accepting; open
//! connections and streams see the same signal between frames and close, and shutdown
//! waits up to [`DRAIN_TIMEOUT_MS`] for answers still being computed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runloop_client::wire::{
    BUSY_CODE, CONTROL_BODY_BYTES_MAX, FRAME_DEADLINE_CODE, READ_CHUNK_BYTES, limits,
};
use runloop_proto::payloads::{ActorInfo, StatusSnapshot};
use runloop_proto::{Body, StreamDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::sampler::{Sampler, Tick};
use super::{ControlPlane, Step};

/// Most connections served at once (subscribers included).
pub const CONTROL_CONNECTIONS_MAX: usize = 64;
/// Connection slots only the daemon's own uid may take.
pub const CONTROL_OWNER_RESERVED: usize = 8;
/// Most connections one uid other than the daemon's may hold.
pub const CONTROL_PER_UID_MAX: usize = 16;
/// How long a request frame may take to arrive whole, from accept or the previous answer.
pub const CONTROL_FRAME_DEADLINE_MS: u64 = 2_000;
/// How long shutdown waits for the answers in flight.
pub const DRAIN_TIMEOUT_MS: u64 = 5_000;
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next one.
pub const ACCEPT_ERROR_BACKOFF_MS: u64 = 10;
/// How long one streamed frame may wait for a subscriber that does not read, before the
/// stream is ended.
pub const STREAM_WRITE_TIMEOUT_MS: u64 = 10_000;
/// Largest read a subscriber's connection is watched with (it should send nothing).
const SUBSCRIBER_READ_BYTES: usize = 64;

/// The socket's limits; [`Default`] is the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLimits {
    pub connections_max: usize,
    pub owner_reserved: usize,
    pub per_uid_max: usize,
    pub frame_deadline_ms: u64,
}

impl Default for ControlLimits {
    fn default() -> Self {
        Self {
            connections_max: CONTROL_CONNECTIONS_MAX,
            owner_reserved: CONTROL_OWNER_RESERVED,
            per_uid_max: CONTROL_PER_UID_MAX,
            frame_deadline_ms: CONTROL_FRAME_DEADLINE_MS,
        }
    }
}

impl ControlLimits {
    /// Crashes on limits that would lock everyone out.
    pub(crate) fn check(&self) {
        assert!(self.owner_reserved >= 1, "the owner keeps a slot");
        assert!(
            self.connections_max > self.owner_reserved,
            "others get a slot"
        );
        assert!(self.per_uid_max >= 1 && self.frame_deadline_ms >= 1);
    }

    fn frame_deadline(&self) -> Duration {
        Duration::from_millis(self.frame_deadline_ms)
    }
}

/// Connection slots in use, in total and per uid.
#[derive(Debug)]
struct Admission {
    limits: ControlLimits,
    owner: u32,
    held: Mutex<(usize, HashMap<u32, usize>)>,
}

/// A taken slot; given back when dropped.
#[derive(Debug)]
struct Slot {
    admission: Arc<Admission>,
    uid: u32,
}

impl Admission {
    fn try_take(self: &Arc<Self>, uid: u32) -> Option<Slot> {
        let mut held = self.held.lock().expect("admission lock");
        let (total, per_uid) = &mut *held;
        let mine = per_uid.get(&uid).copied().unwrap_or(0);
        let room = if uid == self.owner {
            *total < self.limits.connections_max
        } else {
            *total < self.limits.connections_max - self.limits.owner_reserved
                && mine < self.limits.per_uid_max
        };
        if !room {
            return None;
        }
        *total += 1;
        per_uid.insert(uid, mine + 1);
        Some(Slot {
            admission: self.clone(),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.admission.held.lock().expect("admission lock");
        let (total, per_uid) = &mut *held;
        *total -= 1;
        let mine = per_uid.get_mut(&self.uid).expect("taken before");
        *mine -= 1;
        if *mine == 0 {
            per_uid.remove(&self.uid);
        }
    }
}

/// Accepts connections until `shutdown` turns true, then drains.
pub async fn serve(
    listener: UnixListener,
    plane: Arc<ControlPlane>,
    mut shutdown: watch::Receiver<bool>,
) {
    let admission = Arc::new(Admission {
        limits: plane.limits,
        owner: plane.policy.uid,
        held: Mutex::new((0, HashMap::new())),
    });
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                continue;
            }
        };
        let Some((uid, slot)) = admit(&stream, &plane, &admission) else {
            continue;
        };
        let plane = plane.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _ = serve_connection(stream, &plane, uid, shutdown).await;
            drop(slot);
        });
    }
    drop(listener);
    let drain = Duration::from_millis(DRAIN_TIMEOUT_MS);
    let _ = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
}

/// Checks the peer and takes a slot; a refused peer gets its report (written without
/// waiting: it fits in an empty socket buffer) and is closed.
fn admit(
    stream: &UnixStream,
    plane: &ControlPlane,
    admission: &Arc<Admission>,
) -> Option<(u32, Slot)> {
    let cred = stream.peer_cred().ok()?;
    if !plane.policy.allows(cred.uid(), cred.gid(), cred.pid()) {
        let message = format!(
            "uid {} may not use this socket (it needs uid {}{})",
            cred.uid(),
            plane.policy.uid,
            plane
                .policy
                .group
                .map(|g| format!(" or group {g}"))
                .unwrap_or_default()
        );
        let _ = stream.try_write(&plane.report("PermissionDenied", message));
        return None;
    }
    match admission.try_take(cred.uid()) {
        Some(slot) => Some((cred.uid(), slot)),
        None => {
            let limits = admission.limits;
            let message = format!(
                "the control socket serves {} connections at once ({} kept for the daemon's \
                 owner, {} per other uid); try again",
                limits.connections_max, limits.owner_reserved, limits.per_uid_max
            );
            let _ = stream.try_write(&plane.report(BUSY_CODE, message));
            None
        }
    }
}

/// Why a connection ended early (all of them just close it).
#[derive(Debug)]
enum Ended {
    Io,
    Deadline,
    Shutdown,
}

async fn write_within(
    stream: &mut UnixStream,
    bytes: &[u8],
    deadline: Duration,
) -> Result<(), Ended> {
    match tokio::time::timeout(deadline, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Ended::Io),
        Err(_) => Err(Ended::Deadline),
    }
}

async fn serve_connection(
    mut stream: UnixStream,
    plane: &Arc<ControlPlane>,
    uid: u32,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Ended> {
    let frame_deadline = plane.limits.frame_deadline();
    let mut decoder = StreamDecoder::new(limits());
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut deadline = Instant::now() + frame_deadline;
    loop {
        while let Some(step) = plane.respond(uid, &mut decoder).await {
            match step {
                Step::Reply(bytes) => write_within(&mut stream, &bytes, frame_deadline).await?,
                Step::Close(bytes) => {
                    return write_within(&mut stream, &bytes, frame_deadline).await;
                }
                Step::Subscribe { reply, interval_ms } => {
                    write_within(&mut stream, &reply, frame_deadline).await?;
                    return stream_status(stream, plane, interval_ms, shutdown).await;
                }
                Step::Watch {
                    reply,
                    trace_id,
                    events,
                } => {
                    write_within(&mut stream, &reply, frame_deadline).await?;
                    return stream_run(stream, plane, &trace_id, events, shutdown).await;
                }
            }
            deadline = Instant::now() + frame_deadline;
        }
        let room = decoder.free_bytes().min(buf.len());
        assert!(room > 0, "a full decoder always has a frame ready");
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, stream.read(&mut buf[..room])) => read,
            _ = shutdown.changed() => return Err(Ended::Shutdown),
        };
        let n = match read {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(Ended::Io),
            Ok(Ok(n)) => n,
            Err(_) => {
                let message = format!(
                    "a request frame must arrive whole within {} ms",
                    plane.limits.frame_deadline_ms
                );
                let _ = stream.try_write(&plane.report(FRAME_DEADLINE_CODE, message));
                return Err(Ended::Deadline);
            }
        };
        let pushed = decoder.push(&buf[..n]);
        assert_eq!(pushed, n, "pushed no more than the free room");
    }
}

/// Streams one run's progress events, then its report, then closes. A client that goes
/// away ends the stream, not the run.
async fn stream_run(
    mut stream: UnixStream,
    plane: &ControlPlane,
    trace_id: &str,
    mut events: tokio::sync::broadcast::Receiver<runloop_proto::payloads::RunProgress>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Ended> {
    use runloop_proto::payloads::ControlOutcome;
    let _counted = Subscribed::new(plane);
    let write_timeout = Duration::from_millis(STREAM_WRITE_TIMEOUT_MS);
    let mut report = match plane.engine().watch(trace_id).await {
        Ok(rx) => rx,
        Err(e) => {
            let bytes = super::watch_frame(plane, super::runs_refusal(&e), trace_id);
            return write_within(&mut stream, &bytes, write_timeout).await;
        }
    };
    let mut probe = [0u8; SUBSCRIBER_READ_BYTES];
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = report.wait_for(Option::is_some) => break,
            _ = stream.read(&mut probe) => return Err(Ended::Io),
            _ = shutdown.changed() => return Err(Ended::Shutdown),
        };
        match event {
            Ok(event) if event.trace_id() == trace_id => {
                let bytes =
                    super::watch_frame(plane, ControlOutcome::RunProgress { event }, trace_id);
                write_within(&mut stream, &bytes, write_timeout).await?;
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
    // Events already sent before the finish: pass on what is buffered for this run.
    while let Ok(event) = events.try_recv() {
        if event.trace_id() == trace_id {
            let bytes = super::watch_frame(plane, ControlOutcome::RunProgress { event }, trace_id);
            write_within(&mut stream, &bytes, write_timeout).await?;
        }
    }
    let report = report.borrow().clone();
    if let Some(report) = report {
        let bytes = super::watch_frame(plane, ControlOutcome::RunFinished { report }, trace_id);
        write_within(&mut stream, &bytes, write_timeout).await?;
    }
    Ok(())
}

/// Counts an open stream while it lives.
struct Subscribed<'a>(&'a ControlPlane);

impl<'a> Subscribed<'a> {
    fn new(plane: &'a ControlPlane) -> Self {
        plane
            .subscribers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(plane)
    }
}

impl Drop for Subscribed<'_> {
    fn drop(&mut self) {
        self.0
            .subscribers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Streams the shared sampler's status every `interval_ms` ([`super::sampler`]): the
/// whole snapshot first, then per snapshot the agent events seen since the one before and
/// a delta (`event.status_delta.v1`) the client rebuilds the next snapshot from; and every
/// run's progress events (`event.progress.v1`) as they happen. Until the client closes
/// (or sends anything), a write fails or stalls past [`STREAM_WRITE_TIMEOUT_MS`], or the
/// daemon shuts down. A subscriber too slow for the progress events misses some (the
/// broadcast lags), never a snapshot's changes.
async fn stream_status(
    mut stream: UnixStream,
    plane: &Arc<ControlPlane>,
    interval_ms: u64,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Ended> {
    use tokio::sync::broadcast::error::RecvError;
    let _counted = Subscribed::new(plane);
    let write_timeout = Duration::from_millis(STREAM_WRITE_TIMEOUT_MS);
    let interval = Duration::from_millis(interval_ms);
    let (_member, mut ticks) = Sampler::join(plane, interval_ms);
    let mut sent: Option<(Arc<Tick>, Instant)> = None;
    let mut probe = [0u8; SUBSCRIBER_READ_BYTES];
    let mut progress = plane.engine().progress();
    let mut progress_open = true;
    loop {
        tokio::select! {
            changed = ticks.changed() => {
                if changed.is_err() {
                    return Err(Ended::Shutdown);
                }
            }
            event = progress.recv(), if progress_open => {
                match event {
                    Ok(event) => {
                        let trace = super::trace_id_of(event.trace_id());
                        let bytes = plane.frame(Body::from_payload(&event), trace);
                        write_within(&mut stream, &bytes, write_timeout).await?;
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => progress_open = false,
                }
                continue;
            }
            // A subscriber sends nothing after `subscribe`: EOF, an error or stray bytes
            // all end the stream.
            _ = stream.read(&mut probe) => return Err(Ended::Io),
            _ = shutdown.changed() => return Err(Ended::Shutdown),
        }
        let Some(tick) = ticks.borrow_and_update().clone() else {
            continue;
        };
        if let Some((last, at)) = &sent {
            // A stream slower than the sampler takes the tick closest to its interval.
            let half_period = Duration::from_millis(tick.period_ms / 2);
            if tick.snapshot.seq <= last.snapshot.seq
                || Instant::now() + half_period < *at + interval
            {
                continue;
            }
        }
        let frames = tick.frames_after(plane, sent.as_ref().map(|(last, _)| &**last));
        for bytes in frames {
            write_within(&mut stream, &bytes, write_timeout).await?;
        }
        sent = Some((tick, Instant::now()));
    }
}

/// Largest snapshot body streamed: the control body cap less room for the frame's own
/// envelope.
pub(crate) const SNAPSHOT_BODY_BYTES_MAX: usize = CONTROL_BODY_BYTES_MAX as usize - 4_096;
/// Most rounds of cutting a snapshot down to size.
const FIT_ROUNDS_MAX: usize = 16;

/// Cuts the snapshot to fit one control frame: while its body is too big, each run's
/// agents are cut to the share that fits (the last ones first) and `agents_cut` says how
/// many are missing. Thousands of agents with long paths would otherwise make a frame
/// over the cap (≈ 380 B per agent: the cap is reached near 2,700 agents). The size is
/// counted without building the body ([`Body::encoded_len_of`]); the body is built once,
/// when a stream sends it.
pub(crate) fn fitted(snapshot: &mut StatusSnapshot) {
    for _ in 0..FIT_ROUNDS_MAX {
        let len = Body::encoded_len_of(&*snapshot);
        if len <= SNAPSHOT_BODY_BYTES_MAX {
            return;
        }
        // Keep a bit less than the share that fits, so few rounds are needed.
        let keep = SNAPSHOT_BODY_BYTES_MAX as f64 / len as f64 * 0.9;
        let mut cut = 0u64;
        let mut stack = vec![&mut snapshot.tree];
        while let Some(node) = stack.pop() {
            let agents = node
                .children
                .iter()
                .filter(|c| matches!(c.info, Some(ActorInfo::Agent(_))))
                .count();
            if agents > 0 {
                let kept = ((agents as f64 * keep) as usize).min(agents.saturating_sub(1));
                let mut seen = 0usize;
                let before = node.children.len();
                node.children.retain(|c| {
                    if !matches!(c.info, Some(ActorInfo::Agent(_))) {
                        return true;
                    }
                    seen += 1;
                    seen <= kept
                });
                cut += (before - node.children.len()) as u64;
            }
            stack.extend(node.children.iter_mut());
        }
        snapshot.agents_cut += cut;
    }
    assert!(
        Body::encoded_len_of(&*snapshot) <= SNAPSHOT_BODY_BYTES_MAX,
        "a snapshot cut {FIT_ROUNDS_MAX} times fits a frame"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use runloop_proto::TraceId;

    fn admission() -> Arc<Admission> {
        Arc::new(Admission {
            limits: ControlLimits {
                connections_max: 6,
                owner_reserved: 2,
                per_uid_max: 3,
                frame_deadline_ms: 1,
            },
            owner: 1,
            held: Mutex::new((0, HashMap::new())),
        })
    }

    /// 4,000 agents with long bundle paths do not fit one control frame: the snapshot is
    /// cut to fit, says how many agents are missing, and encodes into a frame.
    #[test]
    fn a_snapshot_too_big_for_a_frame_is_cut_to_fit_and_says_so() {
        use runloop_proto::payloads::{ActorKind, ActorNode, ActorRunState, AgentStatus};
        let node = |name: String, info: Option<ActorInfo>, children| ActorNode {
            name,
            kind: ActorKind::Worker,
            state: ActorRunState::Running,
            restarts: 0,
            last_error: None,
            info,
            children,
        };
        let agent = |i: usize| {
            let name = format!("agent-{i}");
            node(
                name.clone(),
                Some(ActorInfo::Agent(AgentStatus {
                    name,
                    bundle: format!("/home/someone/projects/agents/bundles/{i:0>200}"),
                    state: "running".into(),
                    sandbox_pid: Some(4_000 + i as u32),
                    breaker: "closed".into(),
                    cpu_ms: 1,
                    rss_kb: 2,
                    cgroup: Some(format!("runloop/agent-{i}")),
                    ..AgentStatus::default()
                })),
                vec![],
            )
        };
        let runs = (0..4)
            .map(|r| {
                node(
                    format!("run-{r}"),
                    None,
                    (0..1_000).map(|i| agent(r * 1_000 + i)).collect(),
                )
            })
            .collect();
        let mut snapshot = StatusSnapshot {
            seq: 1,
            taken_at_ms: 1,
            usage_at_ms: 0,
            tree: node("root".into(), None, vec![node("runs".into(), None, runs)]),
            agents_cut: 0,
        };
        assert!(Body::encoded_len_of(&snapshot) > SNAPSHOT_BODY_BYTES_MAX);
        fitted(&mut snapshot);
        let body = Body::from_payload(&snapshot);
        let mut encoded = Vec::new();
        body.encode(&mut encoded);
        assert!(encoded.len() <= SNAPSHOT_BODY_BYTES_MAX);
        let kept = super::super::sampler::agents_in_order(&snapshot.tree).len() as u64;
        assert!(snapshot.agents_cut > 0 && kept > 1_000, "kept {kept}");
        assert_eq!(kept + snapshot.agents_cut, 4_000);
        assert_eq!(body.payload_as::<StatusSnapshot>().unwrap(), snapshot);
        // It goes into a control frame (frame_of panics over the cap).
        let _ = runloop_client::wire::frame_of(body, 1, TraceId(0), runloop_proto::MsgId(1));
        // A snapshot that fits is left whole.
        let mut small = <StatusSnapshot as runloop_proto::registry::PayloadExample>::example();
        let whole = small.clone();
        fitted(&mut small);
        assert_eq!(small, whole);
    }

    /// Other uids can fill neither their own cap nor the owner's reserved slots.
    #[test]
    fn the_owner_keeps_reserved_slots_and_other_uids_are_capped() {
        let a = admission();
        let mut slots: Vec<Slot> = (0..3).map(|_| a.try_take(2).unwrap()).collect();
        assert!(a.try_take(2).is_none(), "uid 2 is at its cap");
        slots.push(a.try_take(3).unwrap());
        assert!(a.try_take(4).is_none(), "the rest is the owner's");
        slots.push(a.try_take(1).unwrap());
        slots.push(a.try_take(1).unwrap());
        assert!(a.try_take(1).is_none(), "all taken");
        slots.truncate(1);
        assert!(a.try_take(2).is_some(), "slots come back when dropped");
    }
}
