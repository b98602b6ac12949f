//! The status sampler: one status snapshot per period for every `subscribe` stream, not
//! one per stream.
//!
//! Lifecycle: the first stream to join starts the sampler's task; the task builds a
//! [`Tick`] (the snapshot, cut to fit one frame; the delta from the tick before and the
//! agent events between them, each encoded once) every period — the shortest interval
//! any open stream asked for — and publishes it on a `watch` channel. When the last
//! stream leaves, the task ends and the last tick is dropped. Joining and the task's exit
//! check take the same lock, so no stream is left without a sampler.
//!
//! Each stream sends what its subscriber lacks: the whole snapshot first (encoded once
//! per tick, by the first stream that needs it), then per tick the shared agent events
//! and delta. A stream slower than the sampler (a longer interval, or a subscriber that
//! fell behind) computes its own events and delta from the tick it sent last; a delta
//! that would not fit one frame is sent as the whole snapshot instead. Shared frames are
//! the same bytes on every stream, message id included (one message, many readers).
//!
//! The task keeps the supervision tree's last walk (the kernel's `TreeCache`) and walks
//! it again only when a supervisor changed its children, and every agent's last status
//! (the kernel's `StatusCache`), built again only when what it shows moved (its metrics'
//! change stamp, breaker, quarantine or spend; each checked every tick). The system
//! actors' details are read every tick. A changed actor shows in the next tick either way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use runloop_proto::payloads::{
    ActorInfo, ActorNode, AgentStatus, RunEvent, StatusDelta, StatusSnapshot,
};
use runloop_proto::{Body, TraceId};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::ControlPlane;
use super::server::{SNAPSHOT_BODY_BYTES_MAX, fitted};

/// One period's status, shared by every stream.
#[derive(Debug)]
pub(crate) struct Tick {
    /// As streamed (cut to fit one frame); `seq` counts the sampler's ticks.
    pub(crate) snapshot: StatusSnapshot,
    /// The sampler's period when it was built.
    pub(crate) period_ms: u64,
    /// The whole snapshot's frame, encoded by the first stream that sends it.
    full: OnceLock<Vec<u8>>,
    /// The delta from the tick before (`None`: the first tick, or it does not fit a frame).
    delta: Option<Vec<u8>>,
    /// The agent events between the tick before and this one, as frames.
    events: Vec<Vec<u8>>,
}

impl Tick {
    /// The frames a stream sends for this tick after having sent `last` (`None`: nothing
    /// yet): the agent events since `last`, then the delta from it or the whole snapshot.
    pub(crate) fn frames_after(&self, plane: &ControlPlane, last: Option<&Tick>) -> Vec<Vec<u8>> {
        let Some(last) = last else {
            return vec![self.full(plane).clone()];
        };
        if last.snapshot.seq + 1 == self.snapshot.seq {
            let mut frames = self.events.clone();
            frames.push(match &self.delta {
                Some(delta) => delta.clone(),
                None => self.full(plane).clone(),
            });
            return frames;
        }
        // This stream skipped ticks: its own events and delta, from the tick it sent.
        let mut frames = event_frames(plane, &last.snapshot, &self.snapshot);
        frames.push(match delta_frame(plane, &last.snapshot, &self.snapshot) {
            Some(delta) => delta,
            None => self.full(plane).clone(),
        });
        frames
    }

    fn full(&self, plane: &ControlPlane) -> &Vec<u8> {
        self.full
            .get_or_init(|| plane.frame(Body::from_payload(&self.snapshot), TraceId(0)))
    }
}

/// The streams' intervals and the task's state.
#[derive(Debug, Default)]
struct Members {
    /// Each open stream's interval, by its id.
    intervals: BTreeMap<u64, u64>,
    next_id: u64,
    running: bool,
}

/// The shared sampler of a control plane.
#[derive(Debug)]
pub(crate) struct Sampler {
    members: Mutex<Members>,
    ticks: watch::Sender<Option<Arc<Tick>>>,
    /// A stream joined (it may ask a shorter period) or left (it may be the last).
    members_changed: Notify,
}

impl Default for Sampler {
    fn default() -> Self {
        Self {
            members: Mutex::new(Members::default()),
            ticks: watch::Sender::new(None),
            members_changed: Notify::new(),
        }
    }
}

/// A stream's place in the sampler; leaving when dropped.
#[derive(Debug)]
pub(crate) struct Member<'a> {
    sampler: &'a Sampler,
    id: u64,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        let mut members = self.sampler.members.lock().expect("sampler lock");
        members.intervals.remove(&self.id);
        drop(members);
        self.sampler.members_changed.notify_one();
    }
}

impl Sampler {
    /// Joins a stream that wants a snapshot every `interval_ms`, starting the sampler if
    /// it is not running. The receiver sees the latest tick at once, if there is one.
    pub(crate) fn join(
        plane: &Arc<ControlPlane>,
        interval_ms: u64,
    ) -> (Member<'_>, watch::Receiver<Option<Arc<Tick>>>) {
        let sampler = &plane.sampler;
        let mut members = sampler.members.lock().expect("sampler lock");
        let id = members.next_id;
        members.next_id += 1;
        members.intervals.insert(id, interval_ms);
        if !members.running {
            members.running = true;
            tokio::spawn(run(Arc::downgrade(plane), sampler.clone()));
        }
        drop(members);
        sampler.members_changed.notify_one();
        let mut ticks = sampler.ticks.subscribe();
        ticks.mark_changed();
        (Member { sampler, id }, ticks)
    }

    /// The shortest interval asked for; `None` (and the sampler marked stopped, its last
    /// tick dropped) when no stream is open.
    fn period_ms(&self) -> Option<u64> {
        let mut members = self.members.lock().expect("sampler lock");
        let period = members.intervals.values().min().copied();
        if period.is_none() {
            members.running = false;
            self.ticks.send_replace(None);
        }
        period
    }
}

/// The sampler's task: a tick per period while any stream is open. It holds the plane
/// (and so the kernel) only while it builds a tick, and ends as soon as the last stream
/// leaves, so a daemon shutting down is not kept waiting for it.
async fn run(plane: Weak<ControlPlane>, sampler: Arc<Sampler>) {
    let mut last: Option<Arc<Tick>> = None;
    // The tree's last walk (`kernel::status::TreeCache`, named by its use below) and
    // every agent's last status.
    let mut walked = Default::default();
    let mut agents = crate::agents::StatusCache::default();
    // Ticks keep to a schedule (the next one a period after the last one was due, not
    // after it woke), so timer lateness does not add up into a slower rate.
    let mut started = Instant::now();
    while let Some(period_ms) = sampler.period_ms() {
        let Some(plane) = plane.upgrade() else {
            return;
        };
        let seq = last.as_ref().map_or(1, |t| t.snapshot.seq + 1);
        // `Kernel::status_cached`'s steps, with the agents' statuses kept across ticks.
        let (mut tree, usage_at) = plane.kernel.walked(&mut walked).await;
        plane
            .kernel
            .add_agent_details(&mut tree, usage_at, &mut agents)
            .await;
        plane.kernel.add_system_details(&mut tree).await;
        let status = (tree, usage_at);
        let tick = Arc::new(build(&plane, status, last.as_deref(), seq, period_ms));
        drop(plane);
        sampler.ticks.send_replace(Some(tick.clone()));
        last = Some(tick);
        // Until the period is over; a stream joining may shorten it.
        loop {
            let Some(period_ms) = sampler.period_ms() else {
                return;
            };
            let due = started + Duration::from_millis(period_ms);
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {
                    // A tick that overran its period starts the schedule again from now.
                    let slack = Duration::from_millis(period_ms / 2);
                    started = due.max(Instant::now().checked_sub(slack).unwrap_or(due));
                    break;
                }
                _ = sampler.members_changed.notified() => {}
            }
        }
    }
}

/// One tick: the kernel's status (its tree, and when its CPU and RSS were read), cut to
/// fit a frame, and what changed since `last`.
fn build(
    plane: &ControlPlane,
    (tree, usage_at_ms): (ActorNode, u64),
    last: Option<&Tick>,
    seq: u64,
    period_ms: u64,
) -> Tick {
    let mut snapshot = StatusSnapshot {
        seq,
        taken_at_ms: plane.kernel.clock.now_ms(),
        usage_at_ms,
        tree,
        agents_cut: 0,
    };
    fitted(&mut snapshot);
    let (delta, events) = match last {
        Some(last) => (
            delta_frame(plane, &last.snapshot, &snapshot),
            event_frames(plane, &last.snapshot, &snapshot),
        ),
        None => (None, Vec::new()),
    };
    Tick {
        snapshot,
        period_ms,
        full: OnceLock::new(),
        delta,
        events,
    }
}

/// The delta from `base` to `new` as a frame; `None` when it would not fit one.
fn delta_frame(
    plane: &ControlPlane,
    base: &StatusSnapshot,
    new: &StatusSnapshot,
) -> Option<Vec<u8>> {
    let delta = StatusDelta::between(base, new);
    if Body::encoded_len_of(&delta) > SNAPSHOT_BODY_BYTES_MAX {
        return None;
    }
    Some(plane.frame(Body::from_payload(&delta), TraceId(0)))
}

fn event_frames(plane: &ControlPlane, base: &StatusSnapshot, new: &StatusSnapshot) -> Vec<Vec<u8>> {
    agent_events(&base.tree, &new.tree)
        .iter()
        .map(|event| plane.frame(Body::from_payload(event), TraceId(0)))
        .collect()
}

/// The agents of a status tree in preorder (the order a walk of the same tree gives
/// every time).
pub(crate) fn agents_in_order(tree: &ActorNode) -> Vec<&AgentStatus> {
    let mut out = Vec::new();
    let mut stack = vec![tree];
    while let Some(node) = stack.pop() {
        if let Some(ActorInfo::Agent(agent)) = &node.info {
            out.push(agent);
        }
        stack.extend(node.children.iter().rev());
    }
    out
}

/// What changed between two status trees' agents, in name order (one agent's events in
/// the order restarted, then quarantined or released). Between two ticks the tree rarely
/// changes shape, so the agents are first paired in order while their names agree (no
/// hashing); only the agents after the first disagreement are matched by name (two maps
/// of a thousand agents per tick were ≈ 8% of the daemon's CPU per status stream).
pub(crate) fn agent_events(base: &ActorNode, new: &ActorNode) -> Vec<RunEvent> {
    let before = agents_in_order(base);
    let after = agents_in_order(new);
    let paired = before
        .iter()
        .zip(&after)
        .take_while(|(old, new)| old.name == new.name)
        .count();
    let mut events = Vec::new();
    for (old, new) in before.iter().zip(&after).take(paired) {
        changes(old, new, &mut events);
    }
    fn by_name<'a>(agents: &[&'a AgentStatus]) -> HashMap<&'a str, &'a AgentStatus> {
        agents.iter().map(|a| (a.name.as_str(), *a)).collect()
    }
    events.extend(named_events(
        &by_name(&before[paired..]),
        &by_name(&after[paired..]),
    ));
    in_name_order(events)
}

/// One agent's events between two statuses of it: restarted, then quarantined or released.
fn changes<'a>(old: &AgentStatus, new: &'a AgentStatus, events: &mut Vec<(&'a str, RunEvent)>) {
    let name = new.name.as_str();
    let agent = || name.to_owned();
    if new.restarts > old.restarts {
        events.push((
            name,
            RunEvent::AgentRestarted {
                agent: agent(),
                restarts: new.restarts,
            },
        ));
    }
    match (&old.quarantine, &new.quarantine) {
        (None, Some(reason)) => events.push((
            name,
            RunEvent::AgentQuarantined {
                agent: agent(),
                reason: reason.clone(),
            },
        )),
        (Some(_), None) => events.push((name, RunEvent::AgentReleased { agent: agent() })),
        _ => {}
    }
}

/// What changed between two snapshots' agents, each event with its agent's name, unsorted
/// (one agent's events in the order started or restarted, then quarantined or released;
/// or stopped).
fn named_events<'a>(
    before: &HashMap<&'a str, &'a AgentStatus>,
    after: &HashMap<&'a str, &'a AgentStatus>,
) -> Vec<(&'a str, RunEvent)> {
    let mut events = Vec::new();
    for (&name, new) in after {
        match before.get(name) {
            Some(old) => changes(old, new, &mut events),
            None => events.push((
                name,
                RunEvent::AgentStarted {
                    agent: name.to_owned(),
                },
            )),
        }
    }
    for &name in before.keys() {
        if !after.contains_key(name) {
            let agent = name.to_owned();
            events.push((name, RunEvent::AgentStopped { agent }));
        }
    }
    events
}

/// The events sorted by agent name; stable, so an agent's own events keep their order.
fn in_name_order(mut events: Vec<(&str, RunEvent)>) -> Vec<RunEvent> {
    events.sort_by(|a, b| a.0.cmp(b.0));
    events.into_iter().map(|(_, event)| event).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, restarts: u64, quarantine: Option<&str>) -> AgentStatus {
        AgentStatus {
            name: name.into(),
            bundle: "/b".into(),
            state: "running".into(),
            sandbox_pid: Some(7),
            restarts,
            breaker: "closed".into(),
            quarantine: quarantine.map(str::to_owned),
            ..AgentStatus::default()
        }
    }

    /// The events matched by name alone: what [`agent_events`] must give.
    fn run_events(
        before: &HashMap<&str, &AgentStatus>,
        after: &HashMap<&str, &AgentStatus>,
    ) -> Vec<RunEvent> {
        in_name_order(named_events(before, after))
    }

    fn by_name(agents: &[AgentStatus]) -> HashMap<&str, &AgentStatus> {
        agents.iter().map(|a| (a.name.as_str(), a)).collect()
    }

    /// A tree of one run supervisor over `agents`, in that order.
    fn tree(agents: &[AgentStatus]) -> ActorNode {
        let node = |name: String, info: Option<ActorInfo>, children| ActorNode {
            name,
            kind: runloop_proto::payloads::ActorKind::Worker,
            state: runloop_proto::payloads::ActorRunState::Running,
            restarts: 0,
            last_error: None,
            info,
            children,
        };
        let agents = agents
            .iter()
            .map(|a| {
                node(
                    format!("agent-{}", a.name),
                    Some(ActorInfo::Agent(a.clone())),
                    Vec::new(),
                )
            })
            .collect();
        node(
            "runs".into(),
            None,
            vec![node("run-0".into(), None, agents)],
        )
    }

    #[test]
    fn events_paired_in_order_are_the_events_matched_by_name() {
        let fleet: Vec<AgentStatus> = (0..40)
            .map(|i| agent(&format!("a{i:02}"), 0, None))
            .collect();
        let mut changed = fleet.clone();
        changed[3].restarts = 2;
        changed[17].quarantine = Some("crash loop".into());
        let mut released = changed.clone();
        released[17].quarantine = None;
        let mut inserted = fleet.clone();
        inserted.insert(0, agent("a-first", 0, None));
        inserted[10].restarts = 1;
        let mut removed = changed.clone();
        removed.remove(20);
        let mut reordered = fleet.clone();
        reordered.swap(5, 30);
        reordered[31].restarts = 4;
        let cases = [
            (&fleet, &fleet),
            (&fleet, &changed),
            (&changed, &released),
            (&fleet, &inserted),
            (&inserted, &fleet),
            (&changed, &removed),
            (&fleet, &reordered),
            (&fleet, &Vec::new()),
            (&Vec::new(), &fleet),
        ];
        for (i, (before, after)) in cases.into_iter().enumerate() {
            let want = run_events(&by_name(before), &by_name(after));
            assert_eq!(agent_events(&tree(before), &tree(after)), want, "case {i}");
        }
        // The cases are not all empty: the pairing is tested on real events.
        assert_eq!(agent_events(&tree(&fleet), &tree(&changed)).len(), 2);
        assert_eq!(agent_events(&tree(&fleet), &tree(&inserted)).len(), 2);
    }

    #[test]
    fn events_come_in_name_order_and_one_agents_in_a_fixed_order() {
        let before = [
            agent("a-same", 0, None),
            agent("b-gone", 0, None),
            agent("d-parked", 1, None),
            agent("e-released", 0, Some("boom")),
        ];
        let after = [
            agent("a-same", 0, None),
            agent("c-new", 0, None),
            agent("d-parked", 3, Some("crash loop")),
            agent("e-released", 0, None),
        ];
        let events = run_events(&by_name(&before), &by_name(&after));
        let agent = |s: &str| s.to_owned();
        assert_eq!(
            events,
            vec![
                RunEvent::AgentStopped {
                    agent: agent("b-gone")
                },
                RunEvent::AgentStarted {
                    agent: agent("c-new")
                },
                RunEvent::AgentRestarted {
                    agent: agent("d-parked"),
                    restarts: 3
                },
                RunEvent::AgentQuarantined {
                    agent: agent("d-parked"),
                    reason: "crash loop".into()
                },
                RunEvent::AgentReleased {
                    agent: agent("e-released")
                },
            ]
        );
        assert!(run_events(&by_name(&after), &by_name(&after)).is_empty());
    }
}
