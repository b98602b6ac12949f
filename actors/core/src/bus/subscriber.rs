//! Who receives what the bus delivers: a subscription's mailbox (a bounded channel the
//! subscriber reads) or a [`DeliverySink`] the bus calls during its drain.

use std::fmt;
use std::sync::Arc;

use runloop_proto::{DedupeCache, Frame};
use serde::Serialize;
use tokio::sync::mpsc;

use super::{
    BusState, SUBSCRIBER_MAILBOX_FRAMES_MAX, SUBSCRIBERS_PER_TOPIC_MAX, SubscribeError, TOPICS_MAX,
    Topic,
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
    pub(super) dedupe: DedupeCache,
    pub(super) congested: bool,
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
        if !core.topics.contains_key(&topic) && core.topics.len() == TOPICS_MAX {
            return Err(SubscribeError::TooManyTopics { topic });
        }
        let subscribers = core.topics.entry(topic.clone()).or_default();
        if subscribers.len() == SUBSCRIBERS_PER_TOPIC_MAX {
            return Err(SubscribeError::TooManySubscribers { topic });
        }
        let id = SubscriberId(core.next_subscriber);
        core.next_subscriber += 1;
        subscribers.push(Subscriber {
            mailbox,
            dedupe: DedupeCache::new(self.config.dedupe),
            congested: false,
        });
        Ok(id)
    }
}
