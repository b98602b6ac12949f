//! The bus's ingress: the bounded queue publishers push frames into, the store that
//! outlives one bus instance, and the [`BusHandle`] publishers and subscribers use.
//!
//! A publish is one push into a bounded tokio mpsc of [`BUS_INGRESS_FRAMES_MAX`] entries
//! that the bus actor drains; the actor is woken by one [`BusMsg::Drain`] when the queue
//! may have gone from empty to non-empty, not by one ractor message per frame. The wake
//! protocol is a flag (`wake_pending`) with a store–load fence on each side:
//!
//! - publisher: push the frame, fence, then if the flag was clear, set it and cast `Drain`;
//! - bus: after a drain that emptied the queue, clear the flag, fence, and if the queue is
//!   not empty after all, set the flag again (if nobody else did) and cast `Drain` to itself.
//!
//! Either the bus sees the frame or the publisher sees the clear flag, so no frame waits
//! without a `Drain` on its way, and at most one `Drain` is outstanding per instance.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::ActorRef;
use runloop_proto::Frame;
use tokio::sync::{mpsc, oneshot};

use super::{
    BUS_INGRESS_FRAMES_MAX, BusCore, BusMsg, BusStats, PUBLISH_BATCH_FRAMES_MAX, PublishError,
    Published, SubscribeError, Subscription, Topic,
};

/// How long a handle waits for the bus to answer a request.
pub const BUS_CALL_TIMEOUT_MS: u64 = 5_000;
/// While the ingress is full, a publisher re-checks this often that a bus instance is
/// still running (a stopped bus never drains, so waiting on it would never end).
pub const INGRESS_WAIT_SLICE_MS: u64 = 50;

/// One entry of the ingress queue.
#[derive(Debug)]
pub(crate) enum Ingress {
    Frame { topic: Topic, frame: Arc<Frame> },
    Bytes(Box<BytesIngress>),
}

/// Bytes to validate on entry, with the publisher waiting for the outcome.
#[derive(Debug)]
pub(crate) struct BytesIngress {
    pub(crate) topic: Topic,
    pub(crate) bytes: Vec<u8>,
    pub(crate) reply: oneshot::Sender<Result<Published, PublishError>>,
}

struct Shared {
    tx: mpsc::Sender<Ingress>,
    wake_pending: AtomicBool,
    /// The running instance's number; 0 while no instance runs.
    instance: AtomicU64,
    next_instance: AtomicU64,
    current: Mutex<Option<ActorRef<BusMsg>>>,
    core: Arc<tokio::sync::Mutex<BusCore>>,
}

/// What outlives one bus instance: the ingress queue, the topic table with its
/// subscribers and dedupe caches, and the counters. Create it once (the kernel does,
/// outside the supervisor's child spec) and hand it to every instance in [`super::BusArgs`].
#[derive(Clone)]
pub struct BusStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BusStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusStore")
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl Default for BusStore {
    fn default() -> Self {
        Self::new()
    }
}

impl BusStore {
    /// A store with an ingress of [`BUS_INGRESS_FRAMES_MAX`] frames.
    pub fn new() -> Self {
        Self::with_ingress_frames(BUS_INGRESS_FRAMES_MAX)
    }

    /// A store with an ingress of `frames` (1..=[`BUS_INGRESS_FRAMES_MAX`]).
    pub fn with_ingress_frames(frames: usize) -> Self {
        assert!((1..=BUS_INGRESS_FRAMES_MAX).contains(&frames));
        let (tx, rx) = mpsc::channel(frames);
        Self {
            shared: Arc::new(Shared {
                tx,
                wake_pending: AtomicBool::new(false),
                instance: AtomicU64::new(0),
                next_instance: AtomicU64::new(1),
                current: Mutex::new(None),
                core: Arc::new(tokio::sync::Mutex::new(BusCore::new(rx))),
            }),
        }
    }

    /// Frames waiting in the ingress.
    pub fn queued(&self) -> usize {
        self.shared.tx.max_capacity() - self.shared.tx.capacity()
    }

    pub(crate) fn core(&self) -> Arc<tokio::sync::Mutex<BusCore>> {
        self.shared.core.clone()
    }

    /// Marks `bus` as the running instance and queues it a `Drain` for whatever waited
    /// in the ingress while no instance ran. Returns the instance's number.
    pub(crate) fn begin_instance(&self, bus: &ActorRef<BusMsg>) -> u64 {
        let id = self.shared.next_instance.fetch_add(1, Ordering::Relaxed);
        // `current` and `instance` change together under the lock, so an ending instance
        // can never clear the fields its successor just set.
        let mut current = self.shared.current.lock().expect("bus current lock");
        *current = Some(bus.clone());
        self.shared.wake_pending.store(true, Ordering::SeqCst);
        self.shared.instance.store(id, Ordering::SeqCst);
        drop(current);
        let _ = bus.cast(BusMsg::Drain);
        id
    }

    /// Forgets instance `id` when it stops (it may already be replaced).
    pub(crate) fn end_instance(&self, id: u64) {
        let mut current = self.shared.current.lock().expect("bus current lock");
        if self.shared.instance.load(Ordering::SeqCst) == id {
            self.shared.instance.store(0, Ordering::SeqCst);
            *current = None;
        }
    }

    fn running(&self) -> bool {
        self.shared.instance.load(Ordering::Acquire) != 0
    }

    /// After a push: wakes the bus unless a `Drain` is already on its way.
    fn wake(&self) {
        fence(Ordering::SeqCst);
        let flag = &self.shared.wake_pending;
        if flag.load(Ordering::Relaxed) || flag.swap(true, Ordering::SeqCst) {
            return;
        }
        // No instance (or a dead one): the flag stays set and the next instance's
        // `begin_instance` drains.
        if let Some(bus) = self
            .shared
            .current
            .lock()
            .expect("bus current lock")
            .as_ref()
        {
            let _ = bus.cast(BusMsg::Drain);
        }
    }

    /// Called by the bus after a drain that found the queue empty.
    pub(crate) fn rearm(&self, core: &BusCore, bus: &ActorRef<BusMsg>) {
        let flag = &self.shared.wake_pending;
        flag.store(false, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !core.ingress_is_empty() && !flag.swap(true, Ordering::SeqCst) {
            let _ = bus.cast(BusMsg::Drain);
        }
    }

    /// Pushes one entry, waiting while the ingress is full and a bus instance runs.
    async fn push(&self, mut item: Ingress, topic: &Topic) -> Result<(), PublishError> {
        let down = || PublishError::BusDown {
            topic: topic.clone(),
        };
        if !self.running() {
            return Err(down());
        }
        match self.shared.tx.try_send(item) {
            Ok(()) => {
                self.wake();
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Full(back)) => item = back,
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(down()),
        }
        let slice = Duration::from_millis(INGRESS_WAIT_SLICE_MS);
        loop {
            match self.shared.tx.send_timeout(item, slice).await {
                Ok(()) => {
                    self.wake();
                    return Ok(());
                }
                Err(mpsc::error::SendTimeoutError::Timeout(back)) if self.running() => {
                    item = back;
                }
                Err(_) => return Err(down()),
            }
        }
    }

    /// Pushes `frames` in order, reserving room for all of them at once (or for as many
    /// as the ingress holds, when it is smaller than the batch), so that other publishers'
    /// frames do not land in between.
    async fn push_batch(&self, topic: &Topic, frames: Vec<Arc<Frame>>) -> Result<(), PublishError> {
        let down = || PublishError::BusDown {
            topic: topic.clone(),
        };
        let slice = Duration::from_millis(INGRESS_WAIT_SLICE_MS);
        for chunk in frames.chunks(self.shared.tx.max_capacity()) {
            if !self.running() {
                return Err(down());
            }
            let permits = loop {
                match tokio::time::timeout(slice, self.shared.tx.reserve_many(chunk.len())).await {
                    Ok(Ok(permits)) => break permits,
                    Ok(Err(_)) => return Err(down()),
                    Err(_) if self.running() => {}
                    Err(_) => return Err(down()),
                }
            };
            for (permit, frame) in permits.zip(chunk) {
                permit.send(Ingress::Frame {
                    topic: topic.clone(),
                    frame: frame.clone(),
                });
            }
            self.wake();
        }
        Ok(())
    }
}

/// A cheap, cloneable way to talk to the bus: publishes go through the store's bounded
/// ingress, subscribe and stats are calls to the bus actor.
#[derive(Debug, Clone)]
pub struct BusHandle {
    bus: ActorRef<BusMsg>,
    store: BusStore,
}

impl BusHandle {
    /// A handle on `bus`, which must have been started with `store`.
    pub fn new(bus: ActorRef<BusMsg>, store: BusStore) -> Self {
        Self { bus, store }
    }

    pub fn actor(&self) -> &ActorRef<BusMsg> {
        &self.bus
    }

    pub fn store(&self) -> &BusStore {
        &self.store
    }

    /// Publishes one frame; waits only while the ingress is full (the bus is
    /// [`BUS_INGRESS_FRAMES_MAX`] frames behind). Drops are reported on
    /// [`super::DROPS_TOPIC`], not here.
    pub async fn publish(&self, topic: &Topic, frame: Arc<Frame>) -> Result<(), PublishError> {
        let item = Ingress::Frame {
            topic: topic.clone(),
            frame,
        };
        self.store.push(item, topic).await
    }

    /// Publishes up to [`PUBLISH_BATCH_FRAMES_MAX`] frames, in order.
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
        self.store.push_batch(topic, frames).await
    }

    /// Validates `bytes` as one whole RMP frame and publishes it; waits for the outcome.
    /// `BusDown` here may also mean the bus stopped while the frame was being delivered.
    pub async fn publish_bytes(
        &self,
        topic: &Topic,
        bytes: Vec<u8>,
    ) -> Result<Published, PublishError> {
        let (reply, outcome) = oneshot::channel();
        let item = Ingress::Bytes(Box::new(BytesIngress {
            topic: topic.clone(),
            bytes,
            reply,
        }));
        self.store.push(item, topic).await?;
        let timeout = Duration::from_millis(BUS_CALL_TIMEOUT_MS);
        match tokio::time::timeout(timeout, outcome).await {
            Ok(Ok(result)) => result,
            _ => Err(PublishError::BusDown {
                topic: topic.clone(),
            }),
        }
    }

    /// Subscribes to `topic`; frames queued in the ingress before this call are not
    /// delivered to the new subscriber.
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

    /// The counters, or `None` when the bus does not answer. They count every frame
    /// queued in the ingress before this call.
    pub async fn stats(&self) -> Option<BusStats> {
        let timeout = Some(Duration::from_millis(BUS_CALL_TIMEOUT_MS));
        match self.bus.call(BusMsg::Stats, timeout).await {
            Ok(ractor::rpc::CallResult::Success(stats)) => Some(stats),
            _ => None,
        }
    }
}
