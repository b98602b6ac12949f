//! A sample kernel tree as `runloopd` reports it (system actors, one run with two agents,
//! the standalone agents' run with a parked agent), for the reducer's unit tests and the
//! golden snapshots of the screens.

use runloop_proto::payloads::{
    ActionInfo, ActorInfo, ActorKind, ActorNode, ActorRunState, AgentStatus, BusInfo, Crossing,
    CrossingStatus, NodeReport, NodeStatus, Participant, ParticipantKind, RunProgress, RunReport,
    RunStatus, SchedulerInfo, StatusSnapshot, SupervisorStrategy, TraceView, WarmInfo,
};

/// The sample run's trace id (the one [`trace_view`] and [`action`] belong to).
pub const RUN: &str = "3f9c2a7e5b1d4c8fa0e6b2d9c4f1a873";

pub fn snapshot(seq: u64, taken_at_ms: u64, tree: ActorNode) -> StatusSnapshot {
    StatusSnapshot {
        seq,
        taken_at_ms,
        usage_at_ms: 0,
        tree,
        agents_cut: 0,
    }
}

fn node(
    name: &str,
    kind: ActorKind,
    info: Option<ActorInfo>,
    children: Vec<ActorNode>,
) -> ActorNode {
    ActorNode {
        name: name.into(),
        kind,
        state: ActorRunState::Running,
        restarts: 0,
        last_error: None,
        info,
        children,
    }
}

fn sup(name: &str, children: Vec<ActorNode>) -> ActorNode {
    let strategy = SupervisorStrategy::OneForOne;
    node(
        name,
        ActorKind::Supervisor,
        Some(ActorInfo::Supervisor { strategy }),
        children,
    )
}

pub fn agent(name: &str, state: &str, cpu_ms: u64, rss_kb: u64) -> AgentStatus {
    AgentStatus {
        name: name.into(),
        bundle: format!("/srv/agents/{name}"),
        state: state.into(),
        sandbox_pid: (state == "running").then_some(4242),
        breaker: "closed".into(),
        cpu_ms,
        rss_kb,
        cgroup: Some(format!("runloop/agent-{name}")),
        messages_in: 12,
        messages_out: 11,
        ..AgentStatus::default()
    }
}

/// The sample tree; the writer's CPU counter is `writer_cpu_ms`, the kernel's
/// `kernel_cpu_ms`.
pub fn tree(writer_cpu_ms: u64, kernel_cpu_ms: u64) -> ActorNode {
    let w = |name: &str, info: Option<ActorInfo>| node(name, ActorKind::Worker, info, vec![]);
    let bus = BusInfo {
        topics: 9,
        subscribers: 7,
        published: 1_204,
        delivered: 1_199,
        dropped: 3,
        rejected: 2,
    };
    let sched = SchedulerInfo {
        running: 1,
        concurrency_max: 8,
        queued: 0,
        openings: 1,
    };
    let mut bus_node = w("bus", Some(ActorInfo::Bus(bus)));
    bus_node.restarts = 1;
    bus_node.last_error = Some("mailbox overflow on kernel/replies".into());
    let system = sup(
        "system",
        vec![
            bus_node,
            w("scheduler", Some(ActorInfo::Scheduler(sched))),
            w("breaker", None),
            w("quarantine", Some(ActorInfo::Quarantine { parked: 1 })),
            w(
                "metrics",
                Some(ActorInfo::Kernel {
                    cpu_ms: kernel_cpu_ms,
                    rss_kb: 51_200,
                    warm: Some(WarmInfo {
                        waiting: 3,
                        taken: 40,
                        missed: 5,
                        given: 38,
                        spares: 6,
                        expired: 1,
                        evicted: 2,
                        refused: 4,
                    }),
                }),
            ),
            w(
                "dead_letters",
                Some(ActorInfo::DeadLetters {
                    records: 2,
                    dropped: 0,
                }),
            ),
            w("pog", None),
            node(
                "broker",
                ActorKind::Slot,
                Some(ActorInfo::EmptySlot),
                vec![],
            ),
        ],
    );
    let mut writer = agent("writer", "running", writer_cpu_ms, 18_432);
    writer.messages_in = 40;
    writer.messages_out = 38;
    writer.errors = 1;
    writer.restarts = 1;
    writer.last_error = Some("model.complete: timed out after 1200ms".into());
    writer.tokens = 1_284;
    writer.usd_micros = 77;
    let critic = agent("critic", "starting", 4, 9_216);
    let mut parked = agent("scraper", "quarantined", 880, 0);
    parked.breaker = "open".into();
    parked.quarantine = Some("crash loop: 5 restarts in 60s".into());
    parked.errors = 7;
    parked.restarts = 5;
    let a = |s: AgentStatus| {
        node(
            &format!("agent-{}", s.name),
            ActorKind::Worker,
            Some(ActorInfo::Agent(s)),
            vec![],
        )
    };
    let runs = sup(
        "runs",
        vec![
            sup("run-r0000000000000001", vec![a(writer), a(critic)]),
            sup("run-agents", vec![a(parked)]),
        ],
    );
    sup("root", vec![system, runs])
}

/// A pending `mail.send` as the gate lists it.
pub fn action() -> ActionInfo {
    ActionInfo {
        request_id: "cf-7a1e".into(),
        trace_id: "3f9c2a7e5b1d4c8fa0e6b2d9c4f1a873".into(),
        node_id: "send".into(),
        agent: "mailer".into(),
        effect: "mail.send".into(),
        idempotency_key: "3f9c2a7e:send:1".into(),
        summary: "mail to ada@analytical.example: \"Notes on the engine\"".into(),
        payload_hash: "9b2f0c4d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c".into(),
        payload_json: r#"{"to":["ada@analytical.example"],"subject":"Notes on the engine","body":"Dear Ada,\nthe notes are attached.\nCharles"}"#.into(),
        expires_ms: 1_763_766_300_000,
    }
}

/// compose_email's progress so far: contact and context done, the draft retried once,
/// review passed, and send waiting for a person's yes.
pub fn progress() -> Vec<RunProgress> {
    let t = 1_763_766_000_000;
    let trace_id = || RUN.to_owned();
    let done = |node: &str, at: u64, attempts: u32, ms: u64| RunProgress::NodeFinished {
        ts_ms: t + at,
        trace_id: trace_id(),
        node: node.into(),
        status: NodeStatus::Succeeded,
        attempts,
        duration_ms: ms,
        output_hash: Some("5e".repeat(32)),
        reason: None,
    };
    let start = |node: &str, at: u64, attempt: u32| RunProgress::NodeStarted {
        ts_ms: t + at,
        trace_id: trace_id(),
        node: node.into(),
        attempt,
    };
    let pair = |a: &str, b: &str| [a.to_owned(), b.to_owned()];
    vec![
        RunProgress::RunStarted {
            ts_ms: t,
            trace_id: trace_id(),
            run_id: "r0000000000000001".into(),
            opening: "compose_email".into(),
            nodes: ["contact", "context", "draft", "review", "send"]
                .map(String::from)
                .into(),
            edges: vec![
                pair("contact", "draft"),
                pair("context", "draft"),
                pair("draft", "review"),
                pair("draft", "send"),
                pair("review", "send"),
            ],
            resumed: false,
        },
        start("contact", 2, 1),
        start("context", 2, 1),
        done("contact", 40, 1, 38),
        done("context", 61, 1, 59),
        start("draft", 62, 1),
        RunProgress::NodeRetrying {
            ts_ms: t + 1_262,
            trace_id: trace_id(),
            node: "draft".into(),
            attempt: 1,
            delay_ms: 200,
            error: "model.complete: timed out after 1200ms".into(),
        },
        start("draft", 1_462, 2),
        done("draft", 3_700, 2, 3_638),
        start("review", 3_701, 1),
        done("review", 3_760, 1, 59),
        start("send", 3_761, 1),
        RunProgress::NodeWaiting {
            ts_ms: t + 3_790,
            trace_id: trace_id(),
            node: "send".into(),
            request_id: "cf-7a1e".into(),
            effect: "mail.send".into(),
            summary: "mail to ada@analytical.example: \"Notes on the engine\"".into(),
            payload_hash: action().payload_hash,
            expires_ms: t + 300_000,
        },
    ]
}

/// The sample run's final report, after the person said yes and the mail went out.
pub fn report() -> RunReport {
    let t = 1_763_766_000_000;
    let node = |id: &str, attempts: u32, at: u64, ms: u64, outputs: &str| NodeReport {
        id: id.into(),
        status: NodeStatus::Succeeded,
        attempts,
        started_at_ms: Some(t + at),
        duration_ms: Some(ms),
        output_hash: Some("5e".repeat(32)),
        outputs_json: Some(outputs.into()),
        reason: None,
    };
    RunReport {
        trace_id: RUN.into(),
        run_id: "r0000000000000001".into(),
        opening: "compose_email".into(),
        status: RunStatus::Succeeded,
        reason: None,
        started_at_ms: t,
        duration_ms: 9_950,
        result_hash: "77".repeat(32),
        nodes: vec![
            node(
                "contact",
                1,
                2,
                38,
                r#"[["contact",{"name":"Ada Lovelace","email":"ada@analytical.example"}]]"#,
            ),
            node(
                "context",
                1,
                2,
                59,
                r#"[["passages",["The engine weaves algebraic patterns."]]]"#,
            ),
            node(
                "draft",
                2,
                62,
                3_638,
                r#"[["draft",{"subject":"Notes on the engine","body":"Dear Ada,\nthe notes are attached.\nCharles"}]]"#,
            ),
            node("review", 1, 3_701, 59, r#"[["ok",true]]"#),
            node(
                "send",
                1,
                3_761,
                6_180,
                r#"[["sent",{"message_id":"<r0000000000000001.send@runloop>"}]]"#,
            ),
        ],
    }
}

/// A short recorded run: the writer asks the broker twice (the first call times out), then
/// the mailer's `mail.send` waits for a person.
pub fn trace_view() -> TraceView {
    use CrossingStatus::{Error, Ok};
    use ParticipantKind as K;
    let started = 1_763_766_000_000;
    let participants = [
        ("rlp", K::Cli, "rlp"),
        ("run", K::Run, "run compose_email"),
        ("agent:draft", K::Agent, "writer"),
        ("agent:send", K::Agent, "mailer"),
        ("broker", K::Broker, "broker"),
        ("gate", K::Gate, "gate"),
    ]
    .map(|(id, kind, label)| Participant {
        id: id.into(),
        kind,
        label: label.into(),
    });
    #[rustfmt::skip]
    let rows = [
        ("rlp", "run", "run.submit", None, 0, 3, Ok, None),
        ("run", "agent:draft", "agent.invoke", Some("draft"), 5, 1_230, Error, Some("model.complete: timed out after 1200ms")),
        ("agent:draft", "broker", "model.complete", Some("draft"), 8, 1_210, Error, Some("timed out after 1200ms")),
        ("run", "agent:draft", "agent.invoke", Some("draft"), 1_480, 3_700, Ok, None),
        ("agent:draft", "broker", "model.complete", Some("draft"), 1_484, 3_690, Ok, None),
        ("run", "agent:send", "agent.invoke", Some("send"), 3_710, 9_940, Ok, None),
        ("agent:send", "gate", "confirm.ask", Some("send"), 3_720, 9_800, Ok, Some("approved")),
        ("run", "rlp", "run.report", None, 9_950, 9_950, Ok, None),
    ];
    let crossings = rows
        .iter()
        .enumerate()
        .map(
            |(seq, &(from, to, kind, node, t0, t1, status, detail))| Crossing {
                seq: seq as u64,
                from: from.into(),
                to: to.into(),
                kind: kind.into(),
                node: node.map(Into::into),
                bytes: 200,
                reply_bytes: Some(100),
                start_ms: started + t0,
                end_ms: started + t1,
                status,
                detail: detail.map(Into::into),
            },
        )
        .collect();
    TraceView {
        trace_id: "3f9c2a7e5b1d4c8fa0e6b2d9c4f1a873".into(),
        opening: "compose_email".into(),
        status: "succeeded".into(),
        started_ms: started,
        participants: participants.into(),
        crossings,
    }
}
