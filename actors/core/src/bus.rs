//! The bus: topics, publish/subscribe of RMP frames, with the delivery rules of RMP v0.
//!
//! Rules, as `shared/specs/rmp-v0.md` states them:
//!
//! - frames are validated on entry: bytes go through the full decoder (steps 1–9); a
//!   [`Frame`] value is valid by construction and only its TTL is checked (step 8);
//! - a frame whose `created_at_ms + ttl_ms` has passed is dropped as `Expired`;
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
//! Lifecycle: `pre_start` builds an empty topic table; the bus then serves [`BusMsg`]s one
//! at a time, in arrival order, which is what makes per-publisher order hold per
//! subscriber. Stopping the bus drops every subscriber's sender, so subscribers see their
//! mailbox close. The bus holds no state worth keeping across a restart: subscribers
//! re-subscribe when their receiver closes.
//!
//! Mailbox bound: a [`BusHandle`] takes one permit of a semaphore of
//! [`BUS_INGRESS_FRAMES_MAX`] per frame before it casts to the bus, and the permit is
//! released when the bus has handled the frame; so at most that many publishes wait in
//! the ractor mailbox, and publishers wait when the bus is behind.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runloop_proto::frame::{Limits, decode_frame};
use runloop_proto::payloads::{DropNotice, DropReason};
use runloop_proto::{
    Body, Clock, DedupeCache, DedupeLimits, Family, Frame, FrameError, Header, MsgIdGen,
};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Frames that may wait in the bus's ractor mailbox (publish permits).
pub const BUS_INGRESS_FRAMES_MAX: usize = 4_096;
/// Largest mailbox a subscriber may ask for, in frames.
pub const SUBSCRIBER_MAILBOX_FRAMES_MAX: usize = 65_536;
/// Mailbox size a subscriber gets when it does not say, in frames.
pub const SUBSCRIBER_MAILBOX_FRAMES_DEFAULT: usize = 1_024;
/// Most topics the bus holds.
pub const TOPICS_MAX: usize = 16_384;
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

/// A topic name: 1 to [`TOPIC_BYTES_MAX`] bytes of printable ASCII, `/`-separated
/// non-empty segments (e.g. `agent/writer/in`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

/// A bad topic name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "topic {topic:?} is invalid: it must be 1 to {TOPIC_BYTES_MAX} bytes of printable ASCII in non-empty '/'-separated segments"
)]
pub struct TopicError {
    topic: String,
}

impl Topic {
    pub fn new(topic: &str) -> Result<Self, TopicError> {
        let ok = !topic.is_empty()
            && topic.len() <= TOPIC_BYTES_MAX
            && topic.bytes().all(|b| b.is_ascii_graphic())
            && topic.split('/').all(|segment| !segment.is_empty());
        if !ok {
            return Err(TopicError {
                topic: topic.chars().take(TOPIC_BYTES_MAX).collect(),
            });
        }
        Ok(Self(topic.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SubscriberId(u64);

/// One frame handed to one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: Topic,
    pub frame: Arc<Frame>,
}

/// A live subscription: read deliveries from `rx`; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    pub id: SubscriberId,
    pub topic: Topic,
    pub rx: mpsc::Receiver<Delivery>,
}

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
    Publish {
        topic: Topic,
        frames: Vec<Arc<Frame>>,
        permit: OwnedSemaphorePermit,
    },
    PublishBytes {
        topic: Topic,
        bytes: Vec<u8>,
        permit: OwnedSemaphorePermit,
        reply: RpcReplyPort<Result<Published, PublishError>>,
    },
    Subscribe {
        topic: Topic,
        mailbox_frames: usize,
        reply: RpcReplyPort<Result<Subscription, SubscribeError>>,
    },
    Stats(RpcReplyPort<BusStats>),
}

/// What the bus is started with.
#[derive(Clone)]
pub struct BusArgs {
    pub config: BusConfig,
    pub clock: Arc<dyn Clock>,
}

impl fmt::Debug for BusArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusArgs")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

struct Subscriber {
    tx: mpsc::Sender<Delivery>,
    dedupe: DedupeCache,
    congested: bool,
}

/// The bus's state.
pub struct BusState {
    config: BusConfig,
    clock: Arc<dyn Clock>,
    topics: HashMap<Topic, Vec<Subscriber>>,
    next_subscriber: u64,
    notice_ids: MsgIdGen,
    window_start_ms: u64,
    notices_in_window: u32,
    stats: BusStats,
}

impl fmt::Debug for BusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusState")
            .field("stats", &self.stats)
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
        _myself: ActorRef<BusMsg>,
        args: BusArgs,
    ) -> Result<BusState, ActorProcessingErr> {
        Ok(BusState {
            config: args.config,
            clock: args.clock,
            topics: HashMap::new(),
            next_subscriber: 1,
            notice_ids: MsgIdGen::default(),
            window_start_ms: 0,
            notices_in_window: 0,
            stats: BusStats::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<BusMsg>,
        message: BusMsg,
        state: &mut BusState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            BusMsg::Publish {
                topic,
                frames,
                permit,
            } => {
                for frame in frames {
                    state.publish(&topic, frame).await;
                }
                drop(permit);
            }
            BusMsg::PublishBytes {
                topic,
                bytes,
                permit,
                reply,
            } => {
                let result = state.publish_bytes(&topic, &bytes).await;
                drop(permit);
                let _ = reply.send(result);
            }
            BusMsg::Subscribe {
                topic,
                mailbox_frames,
                reply,
            } => {
                let _ = reply.send(state.subscribe(topic, mailbox_frames));
            }
            BusMsg::Stats(reply) => {
                let mut stats = state.stats;
                stats.topics = state.topics.len();
                stats.subscribers = state.topics.values().map(Vec::len).sum();
                let _ = reply.send(stats);
            }
        }
        Ok(())
    }
}

enum Outcome {
    Delivered,
    Dropped,
    Gone,
}

impl BusState {
    fn subscribe(
        &mut self,
        topic: Topic,
        mailbox_frames: usize,
    ) -> Result<Subscription, SubscribeError> {
        if mailbox_frames == 0 || mailbox_frames > SUBSCRIBER_MAILBOX_FRAMES_MAX {
            return Err(SubscribeError::MailboxSize {
                topic,
                frames: mailbox_frames,
            });
        }
        if !self.topics.contains_key(&topic) && self.topics.len() == TOPICS_MAX {
            return Err(SubscribeError::TooManyTopics { topic });
        }
        let subscribers = self.topics.entry(topic.clone()).or_default();
        if subscribers.len() == SUBSCRIBERS_PER_TOPIC_MAX {
            return Err(SubscribeError::TooManySubscribers { topic });
        }
        let id = SubscriberId(self.next_subscriber);
        self.next_subscriber += 1;
        let (tx, rx) = mpsc::channel(mailbox_frames);
        subscribers.push(Subscriber {
            tx,
            dedupe: DedupeCache::new(self.config.dedupe),
            congested: false,
        });
        Ok(Subscription { id, topic, rx })
    }

    async fn publish_bytes(
        &mut self,
        topic: &Topic,
        bytes: &[u8],
    ) -> Result<Published, PublishError> {
        let now_ms = self.clock.now_ms();
        let frame = match decode_frame(bytes, &self.config.frame_limits, now_ms) {
            Ok((frame, used)) if used == bytes.len() => frame,
            Ok((_, used)) => {
                self.stats.rejected += 1;
                return Err(PublishError::TrailingBytes {
                    topic: topic.clone(),
                    extra: bytes.len() - used,
                });
            }
            Err(runloop_proto::DecodeError::Frame(FrameError::Expired { .. })) => {
                // Expired is a drop, not a rejection: count it and notice it like any
                // other expired frame. The header is intact, so read it for the notice.
                let before = self.stats.dropped.total();
                self.drop_expired_bytes(topic, bytes, now_ms);
                let dropped = usize::from(self.stats.dropped.total() > before);
                return Ok(Published {
                    delivered: 0,
                    dropped,
                });
            }
            Err(err) => {
                self.stats.rejected += 1;
                let topic = topic.clone();
                return Err(match err {
                    runloop_proto::DecodeError::Frame(source) => {
                        PublishError::Invalid { topic, source }
                    }
                    runloop_proto::DecodeError::Incomplete { have, need } => {
                        PublishError::Incomplete { topic, have, need }
                    }
                });
            }
        };
        let before = (self.stats.delivered, self.stats.dropped.total());
        self.publish(topic, Arc::new(frame)).await;
        Ok(Published {
            delivered: usize::try_from(self.stats.delivered - before.0).unwrap_or(usize::MAX),
            dropped: usize::try_from(self.stats.dropped.total() - before.1).unwrap_or(usize::MAX),
        })
    }

    fn drop_expired_bytes(&mut self, topic: &Topic, bytes: &[u8], now_ms: u64) {
        // An expired frame passed every check before step 8, so its fixed fields are
        // readable at their offsets.
        let field = |at: usize, len: usize| &bytes[4 + at..4 + at + len];
        let be_u64 = |at| u64::from_be_bytes(field(at, 8).try_into().expect("8 bytes"));
        let trace = u128::from_be_bytes(field(36, 16).try_into().expect("16 bytes"));
        let msg = be_u64(52);
        let expires_at_ms = be_u64(20).saturating_add(be_u64(28));
        debug_assert!(now_ms >= expires_at_ms);
        self.dropped(
            DropReason::Expired,
            topic,
            runloop_proto::TraceId(trace),
            runloop_proto::MsgId(msg),
            Some(expires_at_ms),
        );
    }

    async fn publish(&mut self, topic: &Topic, frame: Arc<Frame>) {
        self.stats.published += 1;
        let now_ms = self.clock.now_ms();
        let header = *frame.header();
        if header.check_expiry(now_ms).is_err() {
            self.drop_frame(DropReason::Expired, topic, &header);
            return;
        }
        let Some(mut subscribers) = self.topics.remove(topic) else {
            self.drop_frame(DropReason::NoSubscriber, topic, &header);
            return;
        };
        if subscribers.is_empty() {
            self.drop_frame(DropReason::NoSubscriber, topic, &header);
        }
        let mut index = 0;
        while index < subscribers.len() {
            match self
                .deliver(&mut subscribers[index], topic, &frame, now_ms)
                .await
            {
                Outcome::Delivered | Outcome::Dropped => index += 1,
                Outcome::Gone => {
                    subscribers.swap_remove(index);
                }
            }
        }
        if !subscribers.is_empty() {
            self.topics.insert(topic.clone(), subscribers);
        }
    }

    async fn deliver(
        &mut self,
        sub: &mut Subscriber,
        topic: &Topic,
        frame: &Arc<Frame>,
        now_ms: u64,
    ) -> Outcome {
        let header = frame.header();
        if sub
            .dedupe
            .check_and_insert(header.trace_id(), header.msg_id(), now_ms)
            .is_err()
        {
            self.drop_frame(DropReason::Duplicate, topic, header);
            return Outcome::Dropped;
        }
        let delivery = Delivery {
            topic: topic.clone(),
            frame: frame.clone(),
        };
        let delivery = match sub.tx.try_send(delivery) {
            Ok(()) => {
                sub.congested = false;
                self.stats.delivered += 1;
                return Outcome::Delivered;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Outcome::Gone,
            Err(mpsc::error::TrySendError::Full(delivery)) => delivery,
        };
        if !sub.congested {
            let wait = Duration::from_millis(self.config.back_pressure_timeout_ms);
            match sub.tx.send_timeout(delivery, wait).await {
                Ok(()) => {
                    self.stats.delivered += 1;
                    return Outcome::Delivered;
                }
                Err(mpsc::error::SendTimeoutError::Closed(_)) => return Outcome::Gone,
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => sub.congested = true,
            }
        }
        self.drop_frame(DropReason::BackPressureTimeout, topic, header);
        Outcome::Dropped
    }

    fn drop_frame(&mut self, reason: DropReason, topic: &Topic, header: &Header) {
        let expires_at_ms = (reason == DropReason::Expired).then(|| header.expires_at_ms());
        self.dropped(
            reason,
            topic,
            header.trace_id(),
            header.msg_id(),
            expires_at_ms,
        );
    }

    /// Counts a drop and publishes its notice, within the rate limit.
    fn dropped(
        &mut self,
        reason: DropReason,
        topic: &Topic,
        trace_id: runloop_proto::TraceId,
        msg_id: runloop_proto::MsgId,
        expires_at_ms: Option<u64>,
    ) {
        self.stats.dropped.count(reason);
        if topic.as_str() == DROPS_TOPIC {
            return;
        }
        let now_ms = self.clock.now_ms();
        if now_ms.saturating_sub(self.window_start_ms) >= self.config.notice_window_ms {
            self.window_start_ms = now_ms;
            self.notices_in_window = 0;
        }
        if self.notices_in_window >= self.config.notices_per_window_max {
            self.stats.notices_suppressed += 1;
            return;
        }
        self.notices_in_window += 1;
        let notice = DropNotice {
            reason,
            topic: topic.to_string(),
            trace_id,
            msg_id,
            expires_at_ms,
        };
        let header = Header::new(
            Family::Event,
            now_ms,
            DROP_NOTICE_TTL_MS,
            trace_id,
            self.notice_ids.next_id(),
        );
        // A clock near u64::MAX is the only way this fails; then no notice can be valid.
        let Ok(header) = header else {
            self.stats.notices_lost += 1;
            return;
        };
        let frame = Frame::new(header, Body::from_payload(&notice))
            .expect("a drop notice is an event-family kind");
        self.stats.notices_sent += 1;
        let drops = Topic::new(DROPS_TOPIC).expect("a valid topic");
        let frame = Arc::new(frame);
        let Some(subscribers) = self.topics.get_mut(&drops) else {
            return;
        };
        subscribers.retain(|sub| {
            let delivery = Delivery {
                topic: drops.clone(),
                frame: frame.clone(),
            };
            match sub.tx.try_send(delivery) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.stats.notices_lost += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
}

/// A cheap, cloneable way to talk to the bus with bounded ingress.
#[derive(Debug, Clone)]
pub struct BusHandle {
    bus: ActorRef<BusMsg>,
    permits: Arc<Semaphore>,
}

/// How long a handle waits for the bus to answer a request.
pub const BUS_CALL_TIMEOUT_MS: u64 = 5_000;

impl BusHandle {
    pub fn new(bus: ActorRef<BusMsg>) -> Self {
        Self {
            bus,
            permits: Arc::new(Semaphore::new(BUS_INGRESS_FRAMES_MAX)),
        }
    }

    /// A handle sharing `permits` with others, so that the ingress bound holds across a
    /// restart of the bus (a new instance, the same bound).
    pub fn with_permits(bus: ActorRef<BusMsg>, permits: Arc<Semaphore>) -> Self {
        Self { bus, permits }
    }

    pub fn actor(&self) -> &ActorRef<BusMsg> {
        &self.bus
    }

    /// Publishes one frame; waits only when the bus is [`BUS_INGRESS_FRAMES_MAX`] frames
    /// behind. Drops are reported on [`DROPS_TOPIC`], not here.
    pub async fn publish(&self, topic: &Topic, frame: Arc<Frame>) -> Result<(), PublishError> {
        self.publish_batch(topic, vec![frame]).await
    }

    /// Publishes up to [`PUBLISH_BATCH_FRAMES_MAX`] frames in one bus message.
    pub async fn publish_batch(
        &self,
        topic: &Topic,
        frames: Vec<Arc<Frame>>,
    ) -> Result<(), PublishError> {
        if frames.is_empty() || frames.len() > PUBLISH_BATCH_FRAMES_MAX {
            return Err(PublishError::BatchSize {
                topic: topic.clone(),
                frames: frames.len(),
            });
        }
        let down = || PublishError::BusDown {
            topic: topic.clone(),
        };
        let n = u32::try_from(frames.len()).expect("bounded by the batch maximum");
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| down())?;
        self.bus
            .cast(BusMsg::Publish {
                topic: topic.clone(),
                frames,
                permit,
            })
            .map_err(|_| down())
    }

    /// Validates `bytes` as one whole RMP frame and publishes it.
    pub async fn publish_bytes(
        &self,
        topic: &Topic,
        bytes: Vec<u8>,
    ) -> Result<Published, PublishError> {
        let down = || PublishError::BusDown {
            topic: topic.clone(),
        };
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| down())?;
        let timeout = Some(Duration::from_millis(BUS_CALL_TIMEOUT_MS));
        let topic_owned = topic.clone();
        match self
            .bus
            .call(
                |reply| BusMsg::PublishBytes {
                    topic: topic_owned,
                    bytes,
                    permit,
                    reply,
                },
                timeout,
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            _ => Err(down()),
        }
    }

    pub async fn subscribe(
        &self,
        topic: &Topic,
        mailbox_frames: usize,
    ) -> Result<Subscription, SubscribeError> {
        let timeout = Some(Duration::from_millis(BUS_CALL_TIMEOUT_MS));
        let topic_owned = topic.clone();
        match self
            .bus
            .call(
                |reply| BusMsg::Subscribe {
                    topic: topic_owned,
                    mailbox_frames,
                    reply,
                },
                timeout,
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            _ => Err(SubscribeError::BusDown {
                topic: topic.clone(),
            }),
        }
    }

    /// The counters, or `None` when the bus does not answer.
    pub async fn stats(&self) -> Option<BusStats> {
        let timeout = Some(Duration::from_millis(BUS_CALL_TIMEOUT_MS));
        match self.bus.call(BusMsg::Stats, timeout).await {
            Ok(ractor::rpc::CallResult::Success(stats)) => Some(stats),
            _ => None,
        }
    }
}

/// Spawns a bus linked to `supervisor` (or unlinked with `None`).
pub async fn spawn_bus(
    args: BusArgs,
    supervisor: Option<ractor::ActorCell>,
) -> Result<BusHandle, ractor::SpawnErr> {
    let (bus, _join) = match supervisor {
        Some(parent) => Actor::spawn_linked(None, Bus, args, parent).await?,
        None => Actor::spawn(None, Bus, args).await?,
    };
    Ok(BusHandle::new(bus))
}
