//! Bus tests: a real bus actor, real bounded mailboxes, a manual clock for TTL and the
//! notice rate limit, tokio's paused clock for the back-pressure timeout. No sleeps.

use std::sync::Arc;

use ractor::Actor;
use runloop_actors::bus::{
    Bus, BusArgs, BusConfig, BusHandle, BusStore, DROPS_TOPIC, Delivery, DeliverySink,
    PublishError, SWEEP_TOPICS_MIN, SubscribeError, Subscription, TOPICS_MAX, Topic, spawn_bus,
};
use runloop_proto::frame::{Limits, encode_frame};
use runloop_proto::payloads::{DropNotice, DropReason, Ping};
use runloop_proto::{Body, Family, Frame, Header, ManualClock, MsgId, TraceId};

const NOW_MS: u64 = 1_763_766_000_000;

fn frame(msg_id: u64, created_at_ms: u64, ttl_ms: u64) -> Arc<Frame> {
    let header = Header::new(
        Family::Control,
        created_at_ms,
        ttl_ms,
        TraceId(7),
        MsgId(msg_id),
    )
    .unwrap();
    Arc::new(Frame::new(header, Body::from_payload(&Ping { seq: msg_id })).unwrap())
}

fn fresh(msg_id: u64) -> Arc<Frame> {
    frame(msg_id, NOW_MS, 60_000)
}

async fn bus(config: BusConfig) -> (BusHandle, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let handle = spawn_bus(
        BusArgs {
            config,
            clock: clock.clone(),
            store: BusStore::new(),
        },
        None,
    )
    .await
    .unwrap();
    (handle, clock)
}

fn topic(name: &str) -> Topic {
    Topic::new(name).unwrap()
}

async fn recv(sub: &mut Subscription) -> Delivery {
    sub.rx.recv().await.expect("a delivery")
}

async fn notice(drops: &mut Subscription) -> DropNotice {
    let delivery = recv(drops).await;
    assert_eq!(delivery.topic.as_str(), DROPS_TOPIC);
    delivery.frame.body().payload_as::<DropNotice>().unwrap()
}

/// A stats round trip orders after every publish sent before it.
async fn settle(bus: &BusHandle) -> runloop_actors::bus::BusStats {
    bus.stats().await.unwrap()
}

#[tokio::test]
async fn every_subscriber_gets_each_frame_once_in_order() {
    let (bus, _) = bus(BusConfig::default()).await;
    let t = topic("agent/writer/in");
    let mut a = bus.subscribe(&t, 16).await.unwrap();
    let mut b = bus.subscribe(&t, 16).await.unwrap();
    let mut other = bus.subscribe(&topic("agent/critic/in"), 16).await.unwrap();
    for m in 1..=3 {
        bus.publish(&t, fresh(m)).await.unwrap();
    }
    for sub in [&mut a, &mut b] {
        for m in 1..=3 {
            assert_eq!(recv(sub).await.frame.header().msg_id(), MsgId(m));
        }
    }
    let stats = settle(&bus).await;
    assert_eq!((stats.published, stats.delivered), (3, 6));
    assert!(other.rx.try_recv().is_err());
    assert_eq!(stats.dropped.total(), 0);
}

#[tokio::test]
async fn expired_frames_are_dropped_with_a_notice() {
    let (bus, clock) = bus(BusConfig::default()).await;
    let t = topic("agent/writer/in");
    let mut drops = bus.subscribe(&topic(DROPS_TOPIC), 16).await.unwrap();
    let mut sub = bus.subscribe(&t, 16).await.unwrap();
    bus.publish(&t, frame(1, NOW_MS, 50)).await.unwrap();
    assert_eq!(recv(&mut sub).await.frame.header().msg_id(), MsgId(1));
    clock.advance_ms(49);
    bus.publish(&t, frame(2, NOW_MS, 50)).await.unwrap();
    assert_eq!(recv(&mut sub).await.frame.header().msg_id(), MsgId(2));
    // At created_at + ttl exactly the frame is expired (`now >= expiry`).
    clock.advance_ms(1);
    bus.publish(&t, frame(3, NOW_MS, 50)).await.unwrap();
    let n = notice(&mut drops).await;
    assert_eq!(n.reason, DropReason::Expired);
    assert_eq!(n.topic, "agent/writer/in");
    assert_eq!((n.trace_id, n.msg_id), (TraceId(7), MsgId(3)));
    assert_eq!(n.expires_at_ms, Some(NOW_MS + 50));
    let stats = settle(&bus).await;
    assert_eq!(stats.dropped.expired, 1);
    assert!(sub.rx.try_recv().is_err());
}

#[tokio::test]
async fn duplicates_are_dropped_per_topic_and_subscriber() {
    let (bus, _) = bus(BusConfig::default()).await;
    let (t1, t2) = (topic("a/in"), topic("b/in"));
    let mut drops = bus.subscribe(&topic(DROPS_TOPIC), 16).await.unwrap();
    let mut s1 = bus.subscribe(&t1, 16).await.unwrap();
    let mut s2 = bus.subscribe(&t2, 16).await.unwrap();
    bus.publish(&t1, fresh(1)).await.unwrap();
    bus.publish(&t1, fresh(1)).await.unwrap();
    // The same key on another topic is a different (topic, subscriber) pair.
    bus.publish(&t2, fresh(1)).await.unwrap();
    recv(&mut s1).await;
    recv(&mut s2).await;
    let n = notice(&mut drops).await;
    assert_eq!(
        (n.reason, n.topic.as_str()),
        (DropReason::Duplicate, "a/in")
    );
    assert_eq!(n.expires_at_ms, None);
    // A subscriber that joins later has its own cache and gets the key once.
    let mut late = bus.subscribe(&t1, 16).await.unwrap();
    bus.publish(&t1, fresh(1)).await.unwrap();
    assert_eq!(recv(&mut late).await.frame.header().msg_id(), MsgId(1));
    let stats = settle(&bus).await;
    assert_eq!(stats.dropped.duplicate, 2);
    assert!(s1.rx.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_full_mailbox_waits_then_drops_and_notices() {
    let config = BusConfig {
        back_pressure_timeout_ms: 100,
        ..BusConfig::default()
    };
    let (bus, _) = bus(config).await;
    let t = topic("agent/slow/in");
    let mut drops = bus.subscribe(&topic(DROPS_TOPIC), 16).await.unwrap();
    let mut slow = bus.subscribe(&t, 2).await.unwrap();
    let before = tokio::time::Instant::now();
    for m in 1..=3 {
        bus.publish(&t, fresh(m)).await.unwrap();
    }
    let n = notice(&mut drops).await;
    assert_eq!(n.reason, DropReason::BackPressureTimeout);
    assert_eq!(n.msg_id, MsgId(3));
    // The bus waited the whole timeout for room before dropping.
    assert_eq!(before.elapsed().as_millis(), 100);
    // Congested: the next frame is dropped without another wait.
    bus.publish(&t, fresh(4)).await.unwrap();
    assert_eq!(notice(&mut drops).await.msg_id, MsgId(4));
    assert_eq!(before.elapsed().as_millis(), 100);
    // Once the subscriber reads, frames flow again.
    assert_eq!(recv(&mut slow).await.frame.header().msg_id(), MsgId(1));
    assert_eq!(recv(&mut slow).await.frame.header().msg_id(), MsgId(2));
    bus.publish(&t, fresh(5)).await.unwrap();
    assert_eq!(recv(&mut slow).await.frame.header().msg_id(), MsgId(5));
    let stats = settle(&bus).await;
    assert_eq!(stats.dropped.back_pressure_timeout, 2);
    assert_eq!(stats.delivered, 3);
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_within_the_timeout_loses_nothing() {
    let (bus, _) = bus(BusConfig::default()).await;
    let t = topic("agent/slowish/in");
    let mut sub = bus.subscribe(&t, 1).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            got.push(sub.rx.recv().await.unwrap().frame.header().msg_id().0);
        }
        got
    });
    for m in 1..=20 {
        bus.publish(&t, fresh(m)).await.unwrap();
    }
    assert_eq!(reader.await.unwrap(), (1..=20).collect::<Vec<_>>());
    assert_eq!(settle(&bus).await.dropped.total(), 0);
}

#[tokio::test]
async fn notices_are_rate_limited_per_window() {
    let config = BusConfig {
        notices_per_window_max: 3,
        notice_window_ms: 1_000,
        ..BusConfig::default()
    };
    let (bus, clock) = bus(config).await;
    let t = topic("nobody/listens");
    let mut drops = bus.subscribe(&topic(DROPS_TOPIC), 64).await.unwrap();
    for m in 1..=10 {
        bus.publish(&t, fresh(m)).await.unwrap();
    }
    let stats = settle(&bus).await;
    assert_eq!(stats.dropped.no_subscriber, 10);
    assert_eq!((stats.notices_sent, stats.notices_suppressed), (3, 7));
    for m in 1..=3 {
        let n = notice(&mut drops).await;
        assert_eq!((n.reason, n.msg_id), (DropReason::NoSubscriber, MsgId(m)));
    }
    assert!(drops.rx.try_recv().is_err());
    clock.advance_ms(1_000);
    bus.publish(&t, fresh(11)).await.unwrap();
    assert_eq!(notice(&mut drops).await.msg_id, MsgId(11));
}

#[tokio::test]
async fn bytes_are_validated_on_entry() {
    let (bus, clock) = bus(BusConfig::default()).await;
    let t = topic("agent/writer/in");
    let mut sub = bus.subscribe(&t, 16).await.unwrap();
    let good = encode_frame(&fresh(1), &Limits::default()).unwrap();
    let published = bus.publish_bytes(&t, good.clone()).await.unwrap();
    assert_eq!((published.delivered, published.dropped), (1, 0));
    assert_eq!(recv(&mut sub).await.frame.header().msg_id(), MsgId(1));

    let mut bad_magic = good.clone();
    bad_magic[4] = b'X';
    let mut bad_flags = good.clone();
    bad_flags[4 + 8] = 1;
    let mut bad_ttl = encode_frame(&fresh(2), &Limits::default()).unwrap();
    bad_ttl[4 + 28..4 + 36].copy_from_slice(&0u64.to_be_bytes());
    let cases: [(&str, Vec<u8>); 3] = [
        ("InvalidMagic", bad_magic),
        ("InvalidHeaderFlags", bad_flags),
        ("InvalidTtl", bad_ttl),
    ];
    for (name, bytes) in cases {
        match bus.publish_bytes(&t, bytes).await {
            Err(PublishError::Invalid { source, .. }) => assert_eq!(source.name(), name),
            other => panic!("{name}: {other:?}"),
        }
    }
    let err = bus
        .publish_bytes(&t, good[..10].to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Incomplete { .. }), "{err}");
    let mut two = good.clone();
    two.extend_from_slice(&good);
    let err = bus.publish_bytes(&t, two).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "publish to agent/writer/in: {} bytes after the frame",
            good.len()
        )
    );
    // An expired frame is a drop (counted, noticed), not a rejection.
    clock.advance_ms(60_000);
    let published = bus.publish_bytes(&t, good).await.unwrap();
    assert_eq!((published.delivered, published.dropped), (0, 1));
    let stats = settle(&bus).await;
    assert_eq!((stats.rejected, stats.dropped.expired), (5, 1));
    assert!(sub.rx.try_recv().is_err());
}

#[tokio::test]
async fn bad_topics_and_subscriptions_are_refused() {
    for bad in ["", "a//b", "/a", "a/", "a b", "é"] {
        let err = Topic::new(bad).unwrap_err();
        assert!(err.to_string().starts_with("topic "), "{err}");
    }
    Topic::new(&"a".repeat(257)).unwrap_err();
    let (bus, _) = bus(BusConfig::default()).await;
    let err = bus.subscribe(&topic("x"), 0).await.unwrap_err();
    assert!(
        matches!(err, SubscribeError::MailboxSize { frames: 0, .. }),
        "{err}"
    );
    let err = bus.publish_batch(&topic("x"), vec![]).await.unwrap_err();
    assert!(
        matches!(err, PublishError::BatchSize { frames: 0, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_closed_subscriber_is_forgotten() {
    let (bus, _) = bus(BusConfig::default()).await;
    let t = topic("agent/gone/in");
    let sub = bus.subscribe(&t, 4).await.unwrap();
    assert_eq!(settle(&bus).await.subscribers, 1);
    drop(sub);
    bus.publish(&t, fresh(1)).await.unwrap();
    let stats = settle(&bus).await;
    assert_eq!(
        (stats.subscribers, stats.topics, stats.delivered),
        (0, 0, 0)
    );
}

/// The inbox of an agent of a finished run sees no frame after its subscription is
/// dropped: without the subscribe-time sweep each such topic stayed for good, and after
/// `TOPICS_MAX` of them every subscribe failed. More subscribe-and-drop cycles than the
/// table has slots all succeed, and the table stays within its sweep bound.
#[tokio::test]
async fn dropped_subscriptions_to_quiet_topics_are_swept() {
    let (bus, _) = bus(BusConfig::default()).await;
    let cycles = TOPICS_MAX + SWEEP_TOPICS_MIN;
    let mut most = 0;
    for i in 0..cycles {
        let sub = bus.subscribe(&topic(&format!("agent/{i}/a/in")), 4).await;
        drop(sub.expect("a dropped subscription's topic leaves room"));
        if i % 1_000 == 0 {
            most = most.max(settle(&bus).await.topics);
        }
    }
    let stats = settle(&bus).await;
    most = most.max(stats.topics);
    assert!(
        most <= SWEEP_TOPICS_MIN,
        "{most} topics held with none live (bound {SWEEP_TOPICS_MIN})"
    );
    assert_eq!(stats.delivered, 0, "nothing was published");
}

/// Live subscriptions stay through sweeps (and get their frames); the dropped ones around
/// them are forgotten, so the table holds at most twice the live topics.
#[tokio::test]
async fn a_sweep_keeps_live_subscriptions() {
    let (bus, _) = bus(BusConfig::default()).await;
    let live_n = 100;
    let mut live = Vec::new();
    for i in 0..live_n {
        live.push(
            bus.subscribe(&topic(&format!("live/{i}")), 4)
                .await
                .unwrap(),
        );
    }
    let bound = (2 * (live_n + 1)).max(SWEEP_TOPICS_MIN);
    for i in 0..10 * bound {
        drop(
            bus.subscribe(&topic(&format!("gone/{i}")), 4)
                .await
                .unwrap(),
        );
        let topics = settle(&bus).await.topics;
        assert!(topics <= bound, "{topics} topics held, {live_n} live");
    }
    for (i, sub) in live.iter_mut().enumerate() {
        bus.publish(&topic(&format!("live/{i}")), fresh(i as u64 + 1))
            .await
            .unwrap();
        assert_eq!(recv(sub).await.frame.header().msg_id(), MsgId(i as u64 + 1));
    }
}

fn traced(trace: u128, msg_id: u64) -> Arc<Frame> {
    let header = Header::new(
        Family::Control,
        NOW_MS,
        60_000,
        TraceId(trace),
        MsgId(msg_id),
    )
    .unwrap();
    Arc::new(Frame::new(header, Body::from_payload(&Ping { seq: msg_id })).unwrap())
}

/// A bus that waits (practically) forever for room in a subscriber's mailbox, so a test
/// can hold it mid-delivery; started with `Actor::spawn` so the test can kill it.
async fn stuck_bus(
    store: &BusStore,
    clock: &Arc<ManualClock>,
) -> (BusHandle, tokio::task::JoinHandle<()>) {
    let args = BusArgs {
        config: BusConfig {
            back_pressure_timeout_ms: 3_600_000,
            ..BusConfig::default()
        },
        clock: clock.clone(),
        store: store.clone(),
    };
    let (actor, join) = Actor::spawn(None, Bus, args).await.unwrap();
    (BusHandle::new(actor, store.clone()), join)
}

/// Yields until `store` holds `frames` queued frames (bounded; no sleeping).
async fn until_queued(store: &BusStore, frames: usize) {
    for _ in 0..10_000 {
        if store.queued() == frames {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the ingress holds {} frames, not {frames}", store.queued());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_publishers_keep_their_order_per_subscriber() {
    const PUBLISHERS: u128 = 4;
    const FRAMES: u64 = 5_000;
    let (bus, _) = bus(BusConfig::default()).await;
    let t = topic("agent/many/in");
    let mut sub = bus.subscribe(&t, 64).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut last = [0u64; PUBLISHERS as usize];
        for _ in 0..PUBLISHERS as u64 * FRAMES {
            let delivery = sub.rx.recv().await.unwrap();
            let header = delivery.frame.header();
            let slot = &mut last[usize::try_from(header.trace_id().0).unwrap()];
            assert_eq!(header.msg_id().0, *slot + 1, "publisher order kept");
            *slot = header.msg_id().0;
        }
        last
    });
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (bus, t) = (bus.clone(), t.clone());
        publishers.push(tokio::spawn(async move {
            for m in 1..=FRAMES {
                if m % 7 == 0 {
                    let batch = vec![traced(p, m)];
                    bus.publish_batch(&t, batch).await.unwrap();
                } else {
                    bus.publish(&t, traced(p, m)).await.unwrap();
                }
            }
        }));
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    assert_eq!(reader.await.unwrap(), [FRAMES; PUBLISHERS as usize]);
    let stats = settle(&bus).await;
    assert_eq!(stats.delivered, PUBLISHERS as u64 * FRAMES);
    assert_eq!(stats.dropped.total(), 0);
}

#[tokio::test]
async fn a_full_ingress_makes_publishers_wait() {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let store = BusStore::with_ingress_frames(2);
    let (bus, _join) = stuck_bus(&store, &clock).await;
    let t = topic("agent/behind/in");
    let mut sub = bus.subscribe(&t, 1).await.unwrap();
    // 1 fills the mailbox, the bus waits for room to hand over 2, 3 and 4 fill the ingress.
    for m in 1..=4 {
        bus.publish(&t, fresh(m)).await.unwrap();
    }
    until_queued(&store, 2).await;
    let waiting = tokio::spawn({
        let (bus, t) = (bus.clone(), t.clone());
        async move { bus.publish(&t, fresh(5)).await }
    });
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "the fifth publish waits for room");
    // Reading makes room all the way back to the publisher; nothing is lost or reordered.
    for m in 1..=5 {
        assert_eq!(recv(&mut sub).await.frame.header().msg_id(), MsgId(m));
    }
    waiting.await.unwrap().unwrap();
    // A batch larger than the whole ingress goes in ingress-sized pieces, in order.
    let batch: Vec<_> = (6..=10).map(fresh).collect();
    let publisher = tokio::spawn({
        let (bus, t) = (bus.clone(), t.clone());
        async move { bus.publish_batch(&t, batch).await }
    });
    for m in 6..=10 {
        assert_eq!(recv(&mut sub).await.frame.header().msg_id(), MsgId(m));
    }
    publisher.await.unwrap().unwrap();
    let stats = settle(&bus).await;
    assert_eq!((stats.delivered, stats.dropped.total()), (10, 0));
}

#[tokio::test]
async fn a_restarted_bus_keeps_subscribers_and_queued_frames() {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let store = BusStore::new();
    let (bus, join) = stuck_bus(&store, &clock).await;
    let t = topic("agent/restart/in");
    let mut sub = bus.subscribe(&t, 1).await.unwrap();
    for m in 1..=4 {
        bus.publish(&t, fresh(m)).await.unwrap();
    }
    // 1 is in the mailbox, 2 is being handed over, 3 and 4 wait in the ingress.
    until_queued(&store, 2).await;
    bus.actor().kill();
    join.await.unwrap();
    // No instance runs: a publish is refused, not queued for nobody.
    let err = bus.publish(&t, fresh(9)).await.unwrap_err();
    assert!(matches!(err, PublishError::BusDown { .. }), "{err}");

    let (bus, _join) = stuck_bus(&store, &clock).await;
    // The subscription outlived the instance: no re-subscribe, the queued frames arrive
    // in order; 2, cut short by the kill, is counted as interrupted.
    for m in [1, 3, 4] {
        assert_eq!(recv(&mut sub).await.frame.header().msg_id(), MsgId(m));
    }
    bus.publish(&t, fresh(5)).await.unwrap();
    assert_eq!(recv(&mut sub).await.frame.header().msg_id(), MsgId(5));
    let stats = settle(&bus).await;
    assert_eq!(
        (stats.published, stats.delivered, stats.interrupted),
        (5, 4, 1)
    );
    assert_eq!(stats.subscribers, 1);
    // The dedupe caches survived too: 3 again is a duplicate, and so is 2, which had
    // passed the subscriber's dedupe check when the kill cut its hand-over short.
    bus.publish(&t, fresh(3)).await.unwrap();
    bus.publish(&t, fresh(2)).await.unwrap();
    assert_eq!(settle(&bus).await.dropped.duplicate, 2);
}

#[tokio::test]
async fn a_publisher_waiting_on_a_killed_bus_gets_bus_down() {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let store = BusStore::with_ingress_frames(1);
    let (bus, join) = stuck_bus(&store, &clock).await;
    let t = topic("agent/dead/in");
    let _sub = bus.subscribe(&t, 1).await.unwrap();
    for m in 1..=3 {
        bus.publish(&t, fresh(m)).await.unwrap();
    }
    until_queued(&store, 1).await;
    let waiting = tokio::spawn({
        let (bus, t) = (bus.clone(), t.clone());
        async move { bus.publish(&t, fresh(4)).await }
    });
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "the publish waits for room");
    bus.actor().kill();
    join.await.unwrap();
    let err = waiting.await.unwrap().unwrap_err();
    assert!(matches!(err, PublishError::BusDown { .. }), "{err}");
}

/// A sink that records the message ids it is handed while `open` holds.
fn recording_sink() -> (
    DeliverySink,
    Arc<std::sync::Mutex<Vec<u64>>>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sink = DeliverySink::new({
        let (seen, open) = (seen.clone(), open.clone());
        move |delivery: &Delivery| {
            if !open.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            seen.lock()
                .unwrap()
                .push(delivery.frame.header().msg_id().0);
            true
        }
    });
    (sink, seen, open)
}

#[tokio::test]
async fn a_sink_gets_frames_after_the_ttl_check_and_dedupe_like_a_mailbox() {
    let (bus, clock) = bus(BusConfig::default()).await;
    let t = topic("kernel/replies");
    let mut drops = bus.subscribe(&topic(DROPS_TOPIC), 16).await.unwrap();
    let (sink, seen, open) = recording_sink();
    bus.subscribe_sink(&t, sink).await.unwrap();
    let mut mailbox = bus.subscribe(&t, 16).await.unwrap();
    bus.publish(&t, fresh(1)).await.unwrap();
    bus.publish(&t, fresh(1)).await.unwrap();
    bus.publish(&t, frame(2, NOW_MS, 50)).await.unwrap();
    settle(&bus).await;
    clock.advance_ms(50);
    bus.publish(&t, frame(3, NOW_MS, 50)).await.unwrap();
    let stats = settle(&bus).await;
    // Delivered once each to the sink and the mailbox; the duplicate dropped once per
    // subscriber, the expired frame once.
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
    assert_eq!(recv(&mut mailbox).await.frame.header().msg_id(), MsgId(1));
    assert_eq!(recv(&mut mailbox).await.frame.header().msg_id(), MsgId(2));
    assert_eq!(
        (
            stats.delivered,
            stats.dropped.duplicate,
            stats.dropped.expired
        ),
        (4, 2, 1)
    );
    assert_eq!(notice(&mut drops).await.reason, DropReason::Duplicate);
    // A sink whose owner is gone is unsubscribed at its next frame.
    open.store(false, std::sync::atomic::Ordering::SeqCst);
    bus.publish(&t, fresh(4)).await.unwrap();
    let stats = settle(&bus).await;
    assert_eq!(
        stats.subscribers, 2,
        "the drops mailbox and the topic's mailbox"
    );
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
    assert_eq!(recv(&mut mailbox).await.frame.header().msg_id(), MsgId(4));
}

#[tokio::test]
async fn drop_notices_reach_a_sink_on_the_drops_topic() {
    let (bus, _) = bus(BusConfig::default()).await;
    let (sink, seen, _open) = recording_sink();
    bus.subscribe_sink(&topic(DROPS_TOPIC), sink).await.unwrap();
    bus.publish(&topic("nobody/in"), fresh(9)).await.unwrap();
    let stats = settle(&bus).await;
    assert_eq!((stats.dropped.no_subscriber, stats.notices_sent), (1, 1));
    assert_eq!(seen.lock().unwrap().len(), 1);
}
