//! The groundwork under runs, with real sandboxes: messages cross the bus and take a
//! scheduler permit; a greedy opening cannot starve another; the same bundle in two runs
//! gives two instances; the recording decorator sees every host call in order with its
//! reply; ids come from the injected generator.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{bundle, options, outputs_json};
use runloop_actors::names::{AgentName, OpeningId};
use runloop_actors::scheduler::SchedulerConfig;
use runloop_agent_actor::{MemorySink, RecordingHandlers};
use runloop_kernel::Kernel;
use runloop_kernel::agents::StartOptions;
use runloop_proto::payloads::{AgentInput, HostCall, HostReply};
use runloop_proto::{Ids, ManualClock, RunId};

fn input(text: &str) -> AgentInput {
    AgentInput {
        port: "in".into(),
        payload: rmpv::Value::Map(vec![("text".into(), text.into())]),
    }
}

fn name(n: &str) -> AgentName {
    AgentName::new(n).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_and_answer_crosses_the_bus_under_a_scheduler_permit() {
    let kernel = Kernel::boot(options("bus-path")).await.unwrap();
    kernel.start_bundle(&bundle("echo"), None).await.unwrap();
    let bus = kernel.bus().unwrap();
    let before = bus.stats().await.unwrap();
    for i in 0..10 {
        let reply = kernel
            .send(&name("echo"), input(&format!("m{i}")))
            .await
            .unwrap();
        assert_eq!(outputs_json(&reply.outputs).len(), 1);
    }
    let after = bus.stats().await.unwrap();
    // One delivery frame and one answer frame per message, each delivered once.
    assert_eq!(after.published - before.published, 20, "{after:?}");
    assert_eq!(after.delivered - before.delivered, 20, "{after:?}");
    assert_eq!(after.dropped.total(), before.dropped.total());
    let sched = kernel.scheduler().unwrap().snapshot().await.unwrap();
    let agents = sched
        .openings
        .iter()
        .find(|o| o.opening.as_str() == "agents")
        .expect("the standalone opening took permits");
    assert_eq!(agents.granted_total, 10, "{sched:?}");
    assert_eq!(sched.running, 0, "every permit was given back: {sched:?}");
    // A message to no agent never reaches the bus.
    let err = kernel.send(&name("nobody"), input("x")).await.unwrap_err();
    assert_eq!(err.code(), "NoSuchAgent");
    assert_eq!(bus.stats().await.unwrap().published, after.published);
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greedy_opening_cannot_starve_another() {
    let mut opts = options("fair-share");
    opts.scheduler = SchedulerConfig {
        concurrency_max: 1,
        opening_queue_max: 1_024,
    };
    let kernel = Arc::new(Kernel::boot(opts).await.unwrap());
    let (greedy, modest) = (
        OpeningId::new("greedy").unwrap(),
        OpeningId::new("modest").unwrap(),
    );
    let (run_a, run_b) = (kernel.ids().run_id(), kernel.ids().run_id());
    kernel.start_run(run_a, &greedy).await.unwrap();
    kernel.start_run(run_b, &modest).await.unwrap();
    for run in [run_a, run_b] {
        kernel
            .start_bundle_in(run, &bundle("echo"), StartOptions::default())
            .await
            .unwrap();
    }
    const GREEDY: usize = 300;
    let finished = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..GREEDY {
        let (k, g, f) = (kernel.clone(), greedy.clone(), finished.clone());
        tasks.push(tokio::spawn(async move {
            k.send_in(run_a, &g, &name("echo"), input(&i.to_string()))
                .await
                .unwrap();
            f.fetch_add(1, Ordering::SeqCst);
        }));
    }
    // Wait until the greedy opening has a long queue, then ask once for the other.
    let scheduler = kernel.scheduler().unwrap();
    loop {
        let snap = scheduler.snapshot().await.unwrap();
        if snap.queued >= 100 {
            break;
        }
        assert!(
            finished.load(Ordering::SeqCst) < GREEDY,
            "queue never built up"
        );
        tokio::task::yield_now().await;
    }
    kernel
        .send_in(run_b, &modest, &name("echo"), input("me too"))
        .await
        .unwrap();
    let done_before_modest = finished.load(Ordering::SeqCst);
    // FIFO would have served every queued greedy message first; fair share serves the
    // modest opening at the next free slot.
    assert!(
        done_before_modest < GREEDY / 2,
        "the modest opening waited for {done_before_modest} greedy messages"
    );
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(kernel).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bundle_in_two_runs_is_two_instances() {
    let kernel = Kernel::boot(options("two-runs")).await.unwrap();
    let opening = OpeningId::new("twice").unwrap();
    let (one, two) = (kernel.ids().run_id(), kernel.ids().run_id());
    assert_ne!(one, two);
    let mut pids = Vec::new();
    for run in [one, two] {
        kernel.start_run(run, &opening).await.unwrap();
        kernel
            .start_bundle_in(run, &bundle("echo"), StartOptions::default())
            .await
            .unwrap();
        let reply = kernel
            .send_in(run, &opening, &name("echo"), input("hi"))
            .await
            .unwrap();
        assert_eq!(outputs_json(&reply.outputs).len(), 1);
        let snap = kernel
            .run_agent_metrics(run, &name("echo"))
            .unwrap()
            .snapshot();
        pids.push(snap.sandbox_pid.unwrap());
        if let Some(cgroup) = snap.cgroup {
            assert!(cgroup.contains(&format!("{run}.echo-")), "{cgroup}");
        }
    }
    assert_ne!(pids[0], pids[1], "two sandboxes");
    // The status tree shows each run's own instance with its own figures (agtop's rows).
    let tree = kernel.status().await;
    let runs = tree.children.iter().find(|c| c.name == "runs").unwrap();
    for (run, pid) in [one, two].iter().zip(&pids) {
        let sup = runs
            .children
            .iter()
            .find(|c| c.name == format!("run-{run}"))
            .unwrap_or_else(|| panic!("run-{run} in {runs:?}"));
        let echo = sup
            .children
            .iter()
            .find(|c| c.name == "agent-echo")
            .unwrap();
        match &echo.info {
            Some(runloop_proto::payloads::ActorInfo::Agent(a)) => {
                assert_eq!(a.sandbox_pid, Some(*pid), "{a:?}");
                assert_eq!(a.messages_in, 1, "{a:?}");
            }
            other => panic!("no agent details for run {run}: {other:?}"),
        }
    }
    // The standalone run does not see them.
    assert!(kernel.agents().await.is_empty());
    let err = kernel.send(&name("echo"), input("x")).await.unwrap_err();
    assert_eq!(err.code(), "NoSuchAgent");
    kernel.stop_agent_in(one, &name("echo")).await.unwrap();
    let still = kernel
        .send_in(two, &opening, &name("echo"), input("still here"))
        .await
        .unwrap();
    assert_eq!(outputs_json(&still.outputs).len(), 1);
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recording_decorator_sees_every_host_call_in_order_with_its_reply() {
    let clock = Arc::new(ManualClock::new(5_000));
    let mut opts = options("recording");
    opts.clock = clock.clone();
    opts.ids = Ids::seeded(42);
    let kernel = Kernel::boot(opts).await.unwrap();
    let sink = Arc::new(MemorySink::new(64));
    let handlers = Arc::new(RecordingHandlers {
        sink: sink.clone(),
        clock: clock.clone(),
    });
    let start = StartOptions {
        handlers: Some(handlers),
        ..StartOptions::default()
    };
    kernel
        .start_bundle_in(RunId::STANDALONE, &bundle("hostcalls"), start)
        .await
        .unwrap();
    let reply = kernel.send(&name("hostcalls"), input("go")).await.unwrap();
    let outputs = outputs_json(&reply.outputs);
    let (calls, let_go) = sink.calls();
    assert_eq!(let_go, 0);
    let ops: Vec<&str> = calls.iter().map(|c| c.call.op()).collect();
    assert_eq!(
        ops,
        [
            "clock.now",
            "random.bytes",
            "log",
            "model.complete",
            "model.embed",
            "kb.query",
            "kb.write_event",
            "confirm.request"
        ]
    );
    for (i, (call, out)) in calls.iter().zip(&outputs).enumerate() {
        assert_eq!(call.call_id, u32::try_from(i).unwrap());
        assert_eq!(call.agent, "hostcalls");
        // The agent emitted exactly the reply the decorator recorded.
        match &call.reply {
            HostReply::Ok(_) => assert!(out.get("ok").is_some(), "{i}: {out}"),
            HostReply::Err { message, .. } => {
                let seen = out["err"]["message"].as_str().unwrap();
                assert!(seen.ends_with(message.as_str()), "{i}: {seen} / {message}")
            }
        }
    }
    assert_eq!(
        calls[0].reply,
        HostReply::Ok(rmpv::Value::Map(vec![("now_ms".into(), 5_000.into())]))
    );
    assert!(matches!(calls[1].call, HostCall::RandomBytes { len: 8 }));
    // Every call carries the trace id of the message, the one the seeded generator gave.
    let expected = Ids::seeded(42).trace_id();
    assert!(
        calls.iter().all(|c| c.trace_id == expected),
        "{:?}",
        calls[0].trace_id
    );
    kernel.shutdown().await;
}
