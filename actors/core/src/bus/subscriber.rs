//! Who receives what the bus delivers: a subscription's mailbox (a bounded channel the
//! subscriber reads) or a [`DeliverySink`] the bus calls during its drain.

use std::fmt;
use std::sync::Arc;

use runloop_proto::{DedupeCache, Frame};
use serde::Serialize;
use tokio::sync::mpsc;

use super::{
    BusCore, BusState, SUBSCRIBER_MAILBOX_FRAMES_MAX, SUBSCRIBERS_PER_TOPIC_MAX, SWEEP_TOPICS_MIN,
    SubscribeError, TOPICS_MAX, Topic,
};

/// Identifies one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SubscriberId(pub(super) u64);

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

/// A subscriber the bus calls during its drain with each delivery ([the bus](super)).
/// It must return promptly without blocking; `false` says its owner is gone, and the bus
/// unsubscribes it (that delivery counts as not delivered).
#[derive(Clone)]
pub struct DeliverySink(Arc<dyn Fn(&Delivery) -> bool + Send + Sync>);

impl DeliverySink {
    pub fn new(sink: impl Fn(&Delivery) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(sink))
    }

    pub(super) fn deliver(&self, delivery: &Delivery) -> bool {
        (self.0)(delivery)
    }
}

impl fmt::Debug for DeliverySink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeliverySink")
    }
}

/// Where a subscriber's deliveries go.
pub(super) enum Mailbox {
    Channel(mpsc::Sender<Delivery>),
    Sink(DeliverySink),
}

/// One subscriber of a topic: where its deliveries go, its own dedupe cache, and whether
/// its mailbox was last found full.
pub(super) struct Subscriber {
    pub(super) mailbox: Mailbox,
    pub(super) dedupe: DedupeCache<foldhash::fast::RandomState>,
    pub(super) congested: bool,
}

impl Subscriber {
    /// Whether someone may still read this subscriber's deliveries: a mailbox whose
    /// [`Subscription`] was dropped is gone; a sink says so only when called.
    fn is_open(&self) -> bool {
        match &self.mailbox {
            Mailbox::Channel(tx) => !tx.is_closed(),
            Mailbox::Sink(_) => true,
        }
    }
}

impl BusCore {
    /// Forgets every subscriber whose [`Subscription`] was dropped, and the topics left
    /// with none, then sets the table size of the next sweep to twice what is left (at
    /// least [`SWEEP_TOPICS_MIN`]). A delivery notices a dropped subscription too, but a
    /// topic that sees no more frames — the inbox of an agent of a finished run — would
    /// otherwise keep its subscriber, mailbox and dedupe cache, and its slot of
    /// [`TOPICS_MAX`], for good. Sweeping at a doubling keeps the cost per subscribe
    /// constant (amortised) and the table within twice its live topics.
    pub(super) fn sweep_gone(&mut self) {
        self.topics.retain(|_, subscribers| {
            subscribers.retain(Subscriber::is_open);
            !subscribers.is_empty()
        });
        self.sweep_at_topics = (2 * self.topics.len()).max(SWEEP_TOPICS_MIN);
    }
}

impl BusState {
    /// A subscription with a mailbox of `mailbox_frames`.
    pub(super) fn subscribe_channel(
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
        let (tx, rx) = mpsc::channel(mailbox_frames);
        let id = self.subscribe(topic.clone(), Mailbox::Channel(tx))?;
        Ok(Subscription { id, topic, rx })
    }

    /// Adds a subscriber to `topic`, within the topic and per-topic bounds.
    pub(super) fn subscribe(
        &mut self,
        topic: Topic,
        mailbox: Mailbox,
    ) -> Result<SubscriberId, SubscribeError> {
        let core = &mut *self.core;
        if core.topics.len() >= core.sweep_at_topics {
            core.sweep_gone();
        }
        if !core.topics.contains_key(&topic) && core.topics.len() == TOPICS_MAX {
            return Err(SubscribeError::TooManyTopics { topic });
        }
        let subscribers = core.topics.entry(topic.clone()).or_default();
        // The topic's own dropped subscriptions go first, so they never count against its
        // bound.
        subscribers.retain(Subscriber::is_open);
        if subscribers.len() == SUBSCRIBERS_PER_TOPIC_MAX {
            return Err(SubscribeError::TooManySubscribers { topic });
        }
        let id = SubscriberId(core.next_subscriber);
        core.next_subscriber += 1;
        subscribers.push(Subscriber {
            mailbox,
            dedupe: DedupeCache::with_hasher(self.config.dedupe),
            congested: false,
        });
        Ok(id)
    }
}
