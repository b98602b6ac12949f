//! The bus: topics, publish/subscribe of RMP frames, with the delivery rules of RMP v0.
//!
//! Rules, as `shared/specs/rmp-v0.md` states them:
//!
//! - frames are validated on entry: bytes go through the full decoder (steps 1–9); a
//!   [`Frame`](runloop_proto::Frame) value is valid by construction and only its TTL is
//!   checked (step 8);
//! - a frame whose `created_at_ms + ttl_ms` has passed is dropped as `Expired` (the
//!   clock is read once per batch the drain takes from the ingress, and again after any
//!   wait for room, so a frame is never checked at a time older than its batch);
//! - each (topic, subscriber) pair has its own bounded [`DedupeCache`]: a `(trace_id,
//!   msg_id)` already delivered there is dropped as `Duplicate`;
//! - each subscriber has a bounded mailbox (a tokio mpsc of at most
//!   [`SUBSCRIBER_MAILBOX_FRAMES_MAX`] frames). When it is full the bus waits up to
//!   [`BusConfig::back_pressure_timeout_ms`], which slows the publishers (back-pressure),
//!   then drops the frame as `BackPressureTimeout` and marks the subscriber congested:
//!   while its mailbox stays full, further frames to it are dropped at once, so one stuck
//!   subscriber costs the bus one timeout, not one per frame;
//! - a frame published on a topic nobody subscribes to is dropped as `NoSubscriber`;
//! - every drop increments a counter per reason and publishes an `event.drop.v1` notice
//!   on [`DROPS_TOPIC`], at most [`BusConfig::notices_per_window_max`] per
//!   [`BusConfig::notice_window_ms`] (the rest are counted as suppressed). Notices are
//!   sent without waiting and are never themselves the subject of a notice.
//!
//! A subscriber is a mailbox ([`BusHandle::subscribe`]) or a [`DeliverySink`]
//! ([`BusHandle::subscribe_sink`]): a function the bus calls with each delivery during its
//! drain, after the same TTL check and dedupe and with the same counting, for a
//! subscriber whose handling is a few non-blocking steps (the kernel's reply routing
//! completes a waiting sender's oneshot) and would otherwise cost a task wake-up per frame.
//! A sink never fills, so it sees no back-pressure; it is unsubscribed the first time it
//! reports its owner gone.
//!
//! Unsubscribing is dropping the [`Subscription`]. The next delivery on its topic forgets
//! it, and so does a sweep: a subscribe that finds the table at twice the topics left by
//! the last sweep (at least [`SWEEP_TOPICS_MIN`]) first forgets every dropped
//! subscription and the topics left without one. Without the sweep a topic that never
//! sees another frame — the inbox of an agent of a finished run — kept its subscriber,
//! mailbox and dedupe cache, and one of the [`TOPICS_MAX`] slots, for good.
//!
//! Ingress (see [`ingress`]): a publish is one append to a bounded queue of
//! [`BUS_INGRESS_FRAMES_MAX`] frames owned by the bus's [`BusStore`]; a full queue makes
//! publishers wait (back-pressure) for as long as a bus instance runs. The bus actor is
//! woken by one [`BusMsg::Drain`] when the queue becomes non-empty, takes the whole queue
//! at once into its batch, and hands out at most [`INGRESS_DRAIN_FRAMES_MAX`] frames per
//! message, so requests (subscribe, stats) interleave; every request first handles the
//! frames queued before it. Before it sleeps, a drain that emptied the queue yields
//! [`DRAIN_LINGER_YIELDS_MAX`] times and looks again. The queue is FIFO and one actor
//! drains it, which is what makes per-publisher order hold per subscriber. Per frame a
//! publish costs one short mutex hold, not a ractor message.
//!
//! Lifecycle: the topic table, subscribers, dedupe caches, counters and the ingress live
//! in the [`BusStore`], created once outside the actor and handed in [`BusArgs`]; an
//! instance holds the store's lock from `pre_start` until it stops. A restarted bus
//! continues with the same subscribers and delivers, in order, every frame that waited in
//! the ingress (a publish while no instance runs is refused with `BusDown`). The one frame
//! an instance was delivering when it died may have reached only some of its subscribers;
//! the next instance counts it in [`BusStats::interrupted`]. Ractor's mailbox holds at
//! most one `Drain` plus the calls of waiting callers.

mod deliver;
mod ingress;
mod subscriber;
mod topic;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runloop_proto::frame::Limits;
use runloop_proto::payloads::DropReason;
use runloop_proto::{Clock, DedupeLimits, FrameError, MsgIdGen};
use serde::Serialize;
use tokio::sync::OwnedMutexGuard;

use ingress::Ingress;
pub use ingress::{BUS_CALL_TIMEOUT_MS, BusHandle, BusStore, INGRESS_WAIT_SLICE_MS};
pub use subscriber::{Delivery, DeliverySink, SubscriberId, Subscription};
use subscriber::{Mailbox, Subscriber};
pub use topic::{Topic, TopicError};

/// Frames that may wait in the bus's ingress queue (and as many again in the batch the
/// bus took from it).
pub const BUS_INGRESS_FRAMES_MAX: usize = 4_096;
/// Most ingress frames the bus handles per [`BusMsg::Drain`] before it lets a request in.
pub const INGRESS_DRAIN_FRAMES_MAX: usize = 1_024;
/// Times a drain that emptied the ingress yields and looks again before it sleeps.
pub const DRAIN_LINGER_YIELDS_MAX: u32 = 32;
/// How long a starting bus waits for the previous instance to let go of the store.
pub const BUS_STORE_LOCK_MS: u64 = 1_000;
/// Largest mailbox a subscriber may ask for, in frames.
pub const SUBSCRIBER_MAILBOX_FRAMES_MAX: usize = 65_536;
/// Mailbox size a subscriber gets when it does not say, in frames.
pub const SUBSCRIBER_MAILBOX_FRAMES_DEFAULT: usize = 1_024;
/// Most topics the bus holds.
pub const TOPICS_MAX: usize = 16_384;
/// Topics the bus may hold before a subscribe first sweeps out dropped subscriptions;
/// after a sweep the next one comes at twice the topics left, never below this.
pub const SWEEP_TOPICS_MIN: usize = 64;
const _: () = assert!(SWEEP_TOPICS_MIN <= TOPICS_MAX);
/// Most subscribers of one topic.
pub const SUBSCRIBERS_PER_TOPIC_MAX: usize = 1_024;
/// Longest topic name, in bytes.
pub const TOPIC_BYTES_MAX: usize = 256;
/// Most frames in one batch publish.
pub const PUBLISH_BATCH_FRAMES_MAX: usize = 1_024;
/// The topic drop notices go to.
pub const DROPS_TOPIC: &str = "rlp/sys/drops";
/// Time to live of a drop notice.
pub const DROP_NOTICE_TTL_MS: u64 = 60_000;
/// Default back-pressure timeout.
pub const BACK_PRESSURE_TIMEOUT_MS_DEFAULT: u64 = 100;

/// The bus's limits and rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusConfig {
    pub back_pressure_timeout_ms: u64,
    pub notices_per_window_max: u32,
    pub notice_window_ms: u64,
    pub dedupe: DedupeLimits,
    pub frame_limits: Limits,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            back_pressure_timeout_ms: BACK_PRESSURE_TIMEOUT_MS_DEFAULT,
            notices_per_window_max: 100,
            notice_window_ms: 1_000,
            dedupe: DedupeLimits::default(),
            frame_limits: Limits::default(),
        }
    }
}

/// Drops per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DropCounts {
    pub expired: u64,
    pub duplicate: u64,
    pub back_pressure_timeout: u64,
    pub no_subscriber: u64,
}

impl DropCounts {
    fn count(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::Expired => &mut self.expired,
            DropReason::Duplicate => &mut self.duplicate,
            DropReason::BackPressureTimeout => &mut self.back_pressure_timeout,
            DropReason::NoSubscriber => &mut self.no_subscriber,
        };
        *counter += 1;
    }

    pub fn total(&self) -> u64 {
        self.expired + self.duplicate + self.back_pressure_timeout + self.no_subscriber
    }
}

/// The bus's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BusStats {
    pub published: u64,
    pub delivered: u64,
    /// Byte frames refused by validation on entry.
    pub rejected: u64,
    pub dropped: DropCounts,
    pub notices_sent: u64,
    pub notices_suppressed: u64,
    /// Notices that found a drops subscriber's mailbox full.
    pub notices_lost: u64,
    /// Frames whose delivery was cut short by the bus instance stopping.
    pub interrupted: u64,
    /// Times the bus was woken to drain the ingress (one ractor message each).
    pub wakes: u64,
    pub topics: usize,
    pub subscribers: usize,
}

/// Why a subscribe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error(
        "subscribe {topic}: mailbox of {frames} frames is outside 1..={SUBSCRIBER_MAILBOX_FRAMES_MAX}"
    )]
    MailboxSize { topic: Topic, frames: usize },
    #[error("subscribe {topic}: the topic already has {SUBSCRIBERS_PER_TOPIC_MAX} subscribers")]
    TooManySubscribers { topic: Topic },
    #[error("subscribe {topic}: the bus already holds {TOPICS_MAX} topics")]
    TooManyTopics { topic: Topic },
    #[error("subscribe {topic}: the bus is not running")]
    BusDown { topic: Topic },
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The frame failed validation on entry; `.name()` of the source is the RMP name.
    #[error("publish to {topic}: {source}")]
    Invalid { topic: Topic, source: FrameError },
    #[error("publish to {topic}: incomplete frame: have {have} bytes, need {need}")]
    Incomplete {
        topic: Topic,
        have: usize,
        need: usize,
    },
    #[error("publish to {topic}: {extra} bytes after the frame")]
    TrailingBytes { topic: Topic, extra: usize },
    #[error("publish to {topic}: the bus is not running")]
    BusDown { topic: Topic },
    #[error(
        "publish to {topic}: batch of {frames} frames is outside 1..={PUBLISH_BATCH_FRAMES_MAX}"
    )]
    BatchSize { topic: Topic, frames: usize },
}

/// What a publish of bytes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub delivered: usize,
    pub dropped: usize,
}

/// The bus's requests (closed).
#[derive(Debug)]
pub enum BusMsg {
    /// Handle frames waiting in the ingress (sent by the wake protocol, at most one
    /// outstanding).
    Drain,
    Subscribe {
        topic: Topic,
        mailbox_frames: usize,
        reply: RpcReplyPort<Result<Subscription, SubscribeError>>,
    },
    /// Subscribes a [`DeliverySink`].
    SubscribeSink {
        topic: Topic,
        sink: DeliverySink,
        reply: RpcReplyPort<Result<SubscriberId, SubscribeError>>,
    },
    Stats(RpcReplyPort<BusStats>),
}

/// What the bus is started with.
#[derive(Clone)]
pub struct BusArgs {
    pub config: BusConfig,
    pub clock: Arc<dyn Clock>,
    /// The state every instance of this bus shares.
    pub store: BusStore,
}

impl fmt::Debug for BusArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusArgs")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What a bus keeps across restarts (inside its [`BusStore`]).
pub(crate) struct BusCore {
    /// Frames taken from the ingress queue, handed out in order.
    batch: VecDeque<Ingress>,
    topics: HashMap<Topic, Vec<Subscriber>, foldhash::fast::RandomState>,
    /// A subscribe that finds this many topics first sweeps out dropped subscriptions
    /// ([`BusCore::sweep_gone`]).
    sweep_at_topics: usize,
    next_subscriber: u64,
    notice_ids: MsgIdGen,
    window_start_ms: u64,
    notices_in_window: u32,
    stats: BusStats,
    /// Set while a frame is being delivered; found set by a starting instance when the
    /// previous one died mid-delivery.
    delivering: bool,
}

impl BusCore {
    fn new(ingress_frames: usize) -> Self {
        Self {
            batch: VecDeque::with_capacity(ingress_frames),
            topics: HashMap::default(),
            sweep_at_topics: SWEEP_TOPICS_MIN,
            next_subscriber: 1,
            notice_ids: MsgIdGen::default(),
            window_start_ms: 0,
            notices_in_window: 0,
            stats: BusStats::default(),
            delivering: false,
        }
    }
}

/// Marks the instance stopped in the store when its state is dropped, however it ends.
struct InstanceGuard {
    store: BusStore,
    id: u64,
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        self.store.end_instance(self.id);
    }
}

/// One bus instance's state: its config and clock, and the store it holds locked.
pub struct BusState {
    // Fields drop in order: the instance is marked ended before the store's lock is let
    // go, so the next instance never starts while this one still counts as running.
    _instance: InstanceGuard,
    config: BusConfig,
    clock: Arc<dyn Clock>,
    /// The clock as read for the frames of the batch being handed out: read once when a
    /// batch is taken from the ingress, and again after a wait for room.
    batch_now_ms: Option<u64>,
    core: OwnedMutexGuard<BusCore>,
    store: BusStore,
}

impl fmt::Debug for BusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusState")
            .field("stats", &self.core.stats)
            .finish_non_exhaustive()
    }
}

/// The bus actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bus;

impl Actor for Bus {
    type Msg = BusMsg;
    type State = BusState;
    type Arguments = BusArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<BusMsg>,
        args: BusArgs,
    ) -> Result<BusState, ActorProcessingErr> {
        let wait = Duration::from_millis(BUS_STORE_LOCK_MS);
        let mut core = tokio::time::timeout(wait, args.store.core().lock_owned())
            .await
            .map_err(|_| {
                format!("bus store is still held by another instance after {BUS_STORE_LOCK_MS} ms")
            })?;
        if core.delivering {
            core.delivering = false;
            core.stats.interrupted += 1;
        }
        let id = args.store.begin_instance(&myself);
        Ok(BusState {
            config: args.config,
            clock: args.clock,
            batch_now_ms: None,
            core,
            store: args.store.clone(),
            _instance: InstanceGuard {
                store: args.store,
                id,
            },
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<BusMsg>,
        message: BusMsg,
        state: &mut BusState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            BusMsg::Drain => {
                let mut handled = state.drain(INGRESS_DRAIN_FRAMES_MAX).await;
                // A publisher in a loop is usually a moment from its next push: look again
                // a few times before going to sleep, since a wake costs a ractor message.
                let mut lingers = 0;
                while handled < INGRESS_DRAIN_FRAMES_MAX && lingers < DRAIN_LINGER_YIELDS_MAX {
                    tokio::task::yield_now().await;
                    lingers += 1;
                    let more = state.drain(INGRESS_DRAIN_FRAMES_MAX - handled).await;
                    if more > 0 {
                        handled += more;
                        lingers = 0;
                    }
                }
                let core = &mut *state.core;
                // Stay awake (behind whatever requests wait) while there may be more; with
                // nothing queued, `take` clears `draining` so the next publish wakes us.
                if handled == INGRESS_DRAIN_FRAMES_MAX
                    || !core.batch.is_empty()
                    || state.store.take(&mut core.batch, true) > 0
                {
                    state.store.set_batched(core.batch.len());
                    let _ = myself.cast(BusMsg::Drain);
                }
            }
            BusMsg::Subscribe {
                topic,
                mailbox_frames,
                reply,
            } => {
                state.drain_queued().await;
                let _ = reply.send(state.subscribe_channel(topic, mailbox_frames));
            }
            BusMsg::SubscribeSink { topic, sink, reply } => {
                state.drain_queued().await;
                let _ = reply.send(state.subscribe(topic, Mailbox::Sink(sink)));
            }
            BusMsg::Stats(reply) => {
                state.drain_queued().await;
                let mut stats = state.core.stats;
                stats.wakes = state.store.wakes();
                stats.topics = state.core.topics.len();
                stats.subscribers = state.core.topics.values().map(Vec::len).sum();
                let _ = reply.send(stats);
            }
        }
        Ok(())
    }
}

/// Spawns a bus on `args.store`, linked to `supervisor` (or unlinked with `None`).
pub async fn spawn_bus(
    args: BusArgs,
    supervisor: Option<ractor::ActorCell>,
) -> Result<BusHandle, ractor::SpawnErr> {
    let store = args.store.clone();
    let (bus, _join) = match supervisor {
        Some(parent) => Actor::spawn_linked(None, Bus, args, parent).await?,
        None => Actor::spawn(None, Bus, args).await?,
    };
    Ok(BusHandle::new(bus, store))
}
