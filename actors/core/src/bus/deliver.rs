//! The delivery pass of the bus actor: taking frames from the ingress in batches, the TTL
//! check and dedupe per subscriber, handing each frame to the topic's subscribers (a
//! full mailbox waits for room up to the back-pressure timeout), and counting every drop
//! with its rate-limited notice. The rules are in the parent module's doc.

use std::sync::Arc;
use std::time::Duration;

use runloop_proto::frame::decode_frame;
use runloop_proto::payloads::{DropNotice, DropReason};
use runloop_proto::{Frame, FrameError, Header};
use tokio::sync::mpsc;

use super::ingress::{BytesIngress, Ingress};
use super::subscriber::Mailbox;
use super::{BusState, DROP_NOTICE_TTL_MS, DROPS_TOPIC, Delivery, PublishError, Published, Topic};

/// Where a delivery pass stopped.
enum Step {
    /// Every subscriber was handled.
    Done,
    /// Nobody subscribes to the topic.
    NoSubscriber,
    /// The subscriber before `next` dropped the frame.
    Dropped { reason: DropReason, next: usize },
    /// Subscriber `at` has a full mailbox and is not congested: wait for room.
    Full { at: usize, delivery: Delivery },
}

/// What waiting for room in one subscriber's mailbox came to.
enum Outcome {
    Delivered,
    Dropped(DropReason),
    /// The subscriber is gone; the delivery comes back.
    Gone(Delivery),
}

/// Puts a delivery that came back into `spare` when `spare` was the one handed out.
fn restore(spare: &mut Option<Delivery>, delivery: Delivery) {
    if spare.is_none() {
        *spare = Some(delivery);
    }
}

impl BusState {
    /// Handles up to `frames_max` frames from the ingress; returns how many.
    pub(super) async fn drain(&mut self, frames_max: usize) -> usize {
        // A batch left over from an earlier drain is checked at today's time.
        self.batch_now_ms = None;
        let mut handled = 0;
        while handled < frames_max {
            let core = &mut *self.core;
            if core.batch.is_empty() {
                if self.store.take(&mut core.batch, false) == 0 {
                    break;
                }
                self.batch_now_ms = None;
            }
            let item = core.batch.pop_front().expect("a non-empty batch");
            self.store.set_batched(core.batch.len());
            handled += 1;
            match item {
                Ingress::Frame { topic, frame } => self.publish(topic, frame).await,
                Ingress::Bytes(bytes) => {
                    let BytesIngress {
                        topic,
                        bytes,
                        reply,
                    } = *bytes;
                    let result = self.publish_bytes(&topic, &bytes).await;
                    let _ = reply.send(result);
                }
            }
        }
        handled
    }

    /// Handles the frames queued before a request, so the request sees them.
    pub(super) async fn drain_queued(&mut self) {
        let queued = self.core.batch.len() + self.store.queue_len();
        self.drain(queued).await;
    }

    async fn publish_bytes(
        &mut self,
        topic: &Topic,
        bytes: &[u8],
    ) -> Result<Published, PublishError> {
        let now_ms = self.batch_now_ms();
        let frame = match decode_frame(bytes, &self.config.frame_limits, now_ms) {
            Ok((frame, used)) if used == bytes.len() => frame,
            Ok((_, used)) => {
                self.core.stats.rejected += 1;
                return Err(PublishError::TrailingBytes {
                    topic: topic.clone(),
                    extra: bytes.len() - used,
                });
            }
            Err(runloop_proto::DecodeError::Frame(FrameError::Expired { .. })) => {
                // Expired is a drop, not a rejection: count it and notice it like any
                // other expired frame. The header is intact, so read it for the notice.
                let before = self.core.stats.dropped.total();
                self.drop_expired_bytes(topic, bytes, now_ms);
                let dropped = usize::from(self.core.stats.dropped.total() > before);
                return Ok(Published {
                    delivered: 0,
                    dropped,
                });
            }
            Err(err) => {
                self.core.stats.rejected += 1;
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
        let before = (self.core.stats.delivered, self.core.stats.dropped.total());
        self.publish(topic.clone(), Arc::new(frame)).await;
        Ok(Published {
            delivered: usize::try_from(self.core.stats.delivered - before.0).unwrap_or(usize::MAX),
            dropped: usize::try_from(self.core.stats.dropped.total() - before.1)
                .unwrap_or(usize::MAX),
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

    /// The time the frames of this batch are checked at (see `batch_now_ms`).
    fn batch_now_ms(&mut self) -> u64 {
        *self.batch_now_ms.get_or_insert_with(|| self.clock.now_ms())
    }

    async fn publish(&mut self, topic: Topic, frame: Arc<Frame>) {
        self.core.stats.published += 1;
        let now_ms = self.batch_now_ms();
        let header = *frame.header();
        if header.check_expiry(now_ms).is_err() {
            self.drop_frame(DropReason::Expired, &topic, &header);
            return;
        }
        // Each subscriber but the last gets a clone of this delivery and the last gets it
        // itself, which saves two reference-count updates per frame in the common case
        // of one subscriber.
        let mut spare = Some(Delivery { topic, frame });
        let topic = spare.as_ref().expect("just made").topic.clone();
        // The subscribers stay in the table while the frame goes out, so an instance
        // that dies mid-delivery leaves them subscribed for the next one.
        self.core.delivering = true;
        let mut from = 0;
        loop {
            match self.deliver_from(&topic, from, &mut spare, &header, now_ms) {
                Step::Done => break,
                Step::NoSubscriber => {
                    self.drop_frame(DropReason::NoSubscriber, &topic, &header);
                    break;
                }
                Step::Dropped { reason, next } => {
                    self.drop_frame(reason, &topic, &header);
                    from = next;
                }
                Step::Full { at, delivery } => {
                    from = at + 1;
                    self.batch_now_ms = None;
                    match self.wait_for_room(&topic, at, delivery).await {
                        Outcome::Delivered => {}
                        Outcome::Dropped(reason) => self.drop_frame(reason, &topic, &header),
                        Outcome::Gone(delivery) => {
                            restore(&mut spare, delivery);
                            self.remove_subscriber(&topic, at);
                            from = at;
                        }
                    }
                }
            }
        }
        self.core.delivering = false;
    }

    /// Hands the frame in `spare` to the subscribers of `topic` from index `from` on,
    /// without waiting; stops at the first drop or full mailbox. One table lookup per pass.
    fn deliver_from(
        &mut self,
        topic: &Topic,
        from: usize,
        spare: &mut Option<Delivery>,
        header: &Header,
        now_ms: u64,
    ) -> Step {
        let core = &mut *self.core;
        let Some(subscribers) = core.topics.get_mut(topic) else {
            return if from == 0 {
                Step::NoSubscriber
            } else {
                Step::Done
            };
        };
        let mut index = from;
        let step = loop {
            let last = index + 1 == subscribers.len();
            let Some(sub) = subscribers.get_mut(index) else {
                break if index == 0 {
                    Step::NoSubscriber
                } else {
                    Step::Done
                };
            };
            if sub
                .dedupe
                .check_and_insert(header.trace_id(), header.msg_id(), now_ms)
                .is_err()
            {
                break Step::Dropped {
                    reason: DropReason::Duplicate,
                    next: index + 1,
                };
            }
            let delivery = if last { spare.take() } else { spare.clone() };
            let delivery = delivery.expect("the spare is kept until the last subscriber");
            let tx = match &sub.mailbox {
                Mailbox::Channel(tx) => tx,
                Mailbox::Sink(sink) => {
                    if sink.deliver(&delivery) {
                        core.stats.delivered += 1;
                        index += 1;
                    } else {
                        restore(spare, delivery);
                        subscribers.swap_remove(index);
                    }
                    continue;
                }
            };
            match tx.try_send(delivery) {
                Ok(()) => {
                    sub.congested = false;
                    core.stats.delivered += 1;
                    index += 1;
                }
                Err(mpsc::error::TrySendError::Closed(delivery)) => {
                    restore(spare, delivery);
                    subscribers.swap_remove(index);
                }
                Err(mpsc::error::TrySendError::Full(_)) if sub.congested => {
                    break Step::Dropped {
                        reason: DropReason::BackPressureTimeout,
                        next: index + 1,
                    };
                }
                Err(mpsc::error::TrySendError::Full(delivery)) => {
                    break Step::Full {
                        at: index,
                        delivery,
                    };
                }
            }
        };
        if subscribers.is_empty() {
            core.topics.remove(topic);
        }
        step
    }

    /// Waits up to the back-pressure timeout for room in subscriber `at`'s mailbox;
    /// a timeout marks it congested.
    async fn wait_for_room(&mut self, topic: &Topic, at: usize, delivery: Delivery) -> Outcome {
        let Mailbox::Channel(tx) =
            &self.core.topics.get(topic).expect("a subscribed topic")[at].mailbox
        else {
            unreachable!("only a mailbox can be full");
        };
        let tx = tx.clone();
        let wait = Duration::from_millis(self.config.back_pressure_timeout_ms);
        match tx.send_timeout(delivery, wait).await {
            Ok(()) => {
                self.core.stats.delivered += 1;
                Outcome::Delivered
            }
            Err(mpsc::error::SendTimeoutError::Closed(delivery)) => Outcome::Gone(delivery),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                let subscribers = self.core.topics.get_mut(topic).expect("a subscribed topic");
                subscribers[at].congested = true;
                Outcome::Dropped(DropReason::BackPressureTimeout)
            }
        }
    }

    fn remove_subscriber(&mut self, topic: &Topic, at: usize) {
        let subscribers = self.core.topics.get_mut(topic).expect("a subscribed topic");
        subscribers.swap_remove(at);
        if subscribers.is_empty() {
            self.core.topics.remove(topic);
        }
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
        let core = &mut *self.core;
        core.stats.dropped.count(reason);
        if topic.as_str() == DROPS_TOPIC {
            return;
        }
        let now_ms = self.clock.now_ms();
        if now_ms.saturating_sub(core.window_start_ms) >= self.config.notice_window_ms {
            core.window_start_ms = now_ms;
            core.notices_in_window = 0;
        }
        if core.notices_in_window >= self.config.notices_per_window_max {
            core.stats.notices_suppressed += 1;
            return;
        }
        core.notices_in_window += 1;
        let notice = DropNotice {
            reason,
            topic: topic.to_string(),
            trace_id,
            msg_id,
            expires_at_ms,
        };
        let frame = Frame::of(
            &notice,
            now_ms,
            DROP_NOTICE_TTL_MS,
            trace_id,
            core.notice_ids.next_id(),
        );
        // A clock near u64::MAX is the only way this fails; then no notice can be valid.
        let Ok(frame) = frame else {
            core.stats.notices_lost += 1;
            return;
        };
        core.stats.notices_sent += 1;
        let drops = Topic::new(DROPS_TOPIC).expect("a valid topic");
        let frame = Arc::new(frame);
        let Some(subscribers) = core.topics.get_mut(&drops) else {
            return;
        };
        subscribers.retain(|sub| {
            let delivery = Delivery {
                topic: drops.clone(),
                frame: frame.clone(),
            };
            let tx = match &sub.mailbox {
                Mailbox::Channel(tx) => tx,
                Mailbox::Sink(sink) => return sink.deliver(&delivery),
            };
            match tx.try_send(delivery) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    core.stats.notices_lost += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
}
