//! The bus's ingress: the bounded queue publishers push frames into, the store that
//! outlives one bus instance, and the [`BusHandle`] publishers and subscribers use.
//!
//! The queue is a `VecDeque` of at most its capacity ([`BUS_INGRESS_FRAMES_MAX`] by
//! default) under a mutex. A publish locks it, appends and unlocks; the bus takes the whole
//! queue at once by swapping it with its own empty batch (one lock per batch, not per
//! frame), and hands the frames out from that batch, which lives in the store too. So at
//! most twice the capacity waits: the queue, and the batch the bus took.
//!
//! Waking the bus: the queue carries a `draining` flag, set by the publish that finds it
//! clear (that publisher casts one [`BusMsg::Drain`]) and cleared by the bus, under the same
//! lock, when it finds the queue empty. So no frame waits without a `Drain` on its way and
//! at most one `Drain` is outstanding. A publisher that finds the queue full registers on
//! a `Notify` (with a `waiting` flag, also under the lock) that the bus fires when it takes
//! a batch, and re-checks every [`INGRESS_WAIT_SLICE_MS`] that a bus instance still runs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};
use runloop_proto::Frame;
use tokio::sync::{Notify, oneshot};

use super::{
    BUS_INGRESS_FRAMES_MAX, BusCore, BusMsg, BusStats, DeliverySink, PUBLISH_BATCH_FRAMES_MAX,
    PublishError, Published, SubscribeError, SubscriberId, Subscription, Topic,
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

struct Queue {
    items: VecDeque<Ingress>,
    capacity: usize,
    /// A `Drain` is on its way or the bus is draining.
    draining: bool,
    /// A publisher waits for room.
    waiting: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    room: Notify,
    /// `Drain` messages sent because the queue became non-empty.
    wakes: AtomicU64,
    /// Frames in the batch the bus took and has not handed out yet.
    batched: AtomicUsize,
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

/// What a push into the queue came to.
enum Pushed {
    /// Everything is in; `wake` says whether this push must send the `Drain`.
    All { wake: bool },
    /// The queue filled up first; `wake` as above.
    Some { wake: bool },
}

impl BusStore {
    /// A store with an ingress of [`BUS_INGRESS_FRAMES_MAX`] frames.
    pub fn new() -> Self {
        Self::with_ingress_frames(BUS_INGRESS_FRAMES_MAX)
    }

    /// A store with an ingress of `frames` (1..=[`BUS_INGRESS_FRAMES_MAX`]).
    pub fn with_ingress_frames(frames: usize) -> Self {
        assert!((1..=BUS_INGRESS_FRAMES_MAX).contains(&frames));
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    items: VecDeque::with_capacity(frames),
                    capacity: frames,
                    draining: false,
                    waiting: false,
                }),
                room: Notify::new(),
                wakes: AtomicU64::new(0),
                batched: AtomicUsize::new(0),
                instance: AtomicU64::new(0),
                next_instance: AtomicU64::new(1),
                current: Mutex::new(None),
                core: Arc::new(tokio::sync::Mutex::new(BusCore::new(frames))),
            }),
        }
    }

    /// Frames waiting for the bus: in the queue and in the batch it took.
    pub fn queued(&self) -> usize {
        self.lock_queue().items.len() + self.shared.batched.load(Ordering::Relaxed)
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // Every change to the queue is a push, a swap or a flag: none leaves it half made.
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `Drain` wake-ups sent so far.
    pub(crate) fn wakes(&self) -> u64 {
        self.shared.wakes.load(Ordering::Relaxed)
    }

    pub(crate) fn core(&self) -> Arc<tokio::sync::Mutex<BusCore>> {
        self.shared.core.clone()
    }

    /// Marks `bus` as the running instance and queues it a `Drain` for whatever waited
    /// while no instance ran. Returns the instance's number.
    pub(crate) fn begin_instance(&self, bus: &ActorRef<BusMsg>) -> u64 {
        let id = self.shared.next_instance.fetch_add(1, Ordering::Relaxed);
        // `current` and `instance` change together under the lock, so an ending instance
        // can never clear the fields its successor just set.
        let mut current = self.shared.current.lock().expect("bus current lock");
        *current = Some(bus.clone());
        self.shared.instance.store(id, Ordering::SeqCst);
        drop(current);
        self.lock_queue().draining = true;
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

    /// Sends the `Drain` a push was the first to need.
    fn wake(&self) {
        // No instance (or a dead one): `draining` stays set and the next instance's
        // `begin_instance` drains.
        let current = self.shared.current.lock().expect("bus current lock");
        if let Some(bus) = current.as_ref() {
            self.shared.wakes.fetch_add(1, Ordering::Relaxed);
            let _ = bus.cast(BusMsg::Drain);
        }
    }

    /// For the bus: swaps the queue's frames into `batch` (which must be empty) and lets
    /// waiting publishers know there is room. With nothing queued and `sleep`, clears
    /// `draining` (the next publish wakes the bus). Returns how many frames it took.
    pub(crate) fn take(&self, batch: &mut VecDeque<Ingress>, sleep: bool) -> usize {
        assert!(batch.is_empty());
        let mut queue = self.lock_queue();
        if queue.items.is_empty() {
            if sleep {
                queue.draining = false;
            }
            return 0;
        }
        std::mem::swap(&mut queue.items, batch);
        let waiting = std::mem::replace(&mut queue.waiting, false);
        drop(queue);
        if waiting {
            self.shared.room.notify_waiters();
        }
        batch.len()
    }

    /// For the bus: how many frames its batch still holds.
    pub(crate) fn set_batched(&self, frames: usize) {
        self.shared.batched.store(frames, Ordering::Relaxed);
    }

    /// Frames in the queue (not yet taken by the bus).
    pub(crate) fn queue_len(&self) -> usize {
        self.lock_queue().items.len()
    }

    /// Appends from `items` while there is room; marks `waiting` when it fills up.
    fn push_some(&self, items: &mut impl Iterator<Item = Ingress>, left: &mut usize) -> Pushed {
        let mut queue = self.lock_queue();
        while *left > 0 && queue.items.len() < queue.capacity {
            let item = items.next().expect("`left` counts the items");
            queue.items.push_back(item);
            *left -= 1;
        }
        let wake = !queue.items.is_empty() && !std::mem::replace(&mut queue.draining, true);
        if *left == 0 {
            Pushed::All { wake }
        } else {
            queue.waiting = true;
            Pushed::Some { wake }
        }
    }

    /// [`Self::push_some`], then the `Drain` if this push is the one to send it; whether
    /// everything is in.
    fn push_and_wake(&self, items: &mut impl Iterator<Item = Ingress>, left: &mut usize) -> bool {
        let (done, wake) = match self.push_some(items, left) {
            Pushed::All { wake } => (true, wake),
            Pushed::Some { wake } => (false, wake),
        };
        if wake {
            self.wake();
        }
        done
    }

    /// Pushes `count` entries in order, waiting for room while a bus instance runs.
    async fn push(
        &self,
        topic: &Topic,
        count: usize,
        mut items: impl Iterator<Item = Ingress>,
    ) -> Result<(), PublishError> {
        let down = || PublishError::BusDown {
            topic: topic.clone(),
        };
        let slice = Duration::from_millis(INGRESS_WAIT_SLICE_MS);
        let mut left = count;
        loop {
            if !self.running() {
                return Err(down());
            }
            if self.push_and_wake(&mut items, &mut left) {
                return Ok(());
            }
            // Full. Register for the bus's notice, then look again: room made between
            // the first look and the registration is not missed.
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.push_and_wake(&mut items, &mut left) {
                return Ok(());
            }
            let _ = tokio::time::timeout(slice, room).await;
        }
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
        self.store.push(topic, 1, std::iter::once(item)).await
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
        let count = frames.len();
        let items = frames.into_iter().map(|frame| Ingress::Frame {
            topic: topic.clone(),
            frame,
        });
        self.store.push(topic, count, items).await
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
        self.store.push(topic, 1, std::iter::once(item)).await?;
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
        self.subscribe_call(topic, |topic, reply| BusMsg::Subscribe {
            topic,
            mailbox_frames,
            reply,
        })
        .await
    }

    /// Subscribes `sink` to `topic` (see [`DeliverySink`]); frames queued in the ingress
    /// before this call are not delivered to it.
    pub async fn subscribe_sink(
        &self,
        topic: &Topic,
        sink: DeliverySink,
    ) -> Result<SubscriberId, SubscribeError> {
        self.subscribe_call(topic, |topic, reply| BusMsg::SubscribeSink {
            topic,
            sink,
            reply,
        })
        .await
    }

    /// One subscribe request to the bus; `BusDown` when it does not answer in time.
    async fn subscribe_call<T: Send + 'static>(
        &self,
        topic: &Topic,
        msg: impl FnOnce(Topic, RpcReplyPort<Result<T, SubscribeError>>) -> BusMsg,
    ) -> Result<T, SubscribeError> {
        let timeout = Some(Duration::from_millis(BUS_CALL_TIMEOUT_MS));
        let topic_owned = topic.clone();
        match self
            .bus
            .call(|reply| msg(topic_owned, reply), timeout)
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
