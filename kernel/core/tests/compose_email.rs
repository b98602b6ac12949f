//! compose_email end to end through real sandboxes, the real POG (sample data imported),
//! the offline model provider, the confirmation gate and the effects journal with its
//! Maildir outbox: approve → one message; deny, timeout → nothing sent; a decision bound to
//! another payload hash is refused; SIGKILL of the mailer's sandbox after the effect → one
//! message, not two; an effect kind outside the capabilities is denied and audited; every
//! effect kind of class send/delete/spend needs a recorded yes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use runloop_kernel::effects::AfterEffect;
use runloop_kernel::effects::gate::{AutoDecide, GateMsg};
use runloop_proto::payloads::{RunProgress, RunStatus};
use serde_json::{Value, json};

#[path = "compose_email/harness.rs"]
mod harness;

use harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_sends_exactly_one_cited_message_to_the_resolved_address() {
    let _one = ONE_POG.lock().await;
    let approve = AutoDecide::Approve {
        by: "flag --approve".into(),
    };
    let s = setup("ce-approve", approve, 60_000, vec![], None).await;
    let (report, _) = run(&s, no_answer).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let result = send_result(&report);
    assert_eq!(result["status"], "sent", "{result}");
    let messages = s.messages();
    assert_eq!(messages.len(), 1, "one message in the outbox");
    let msg = &messages[0];
    assert!(msg.contains("john.smith@example.com"), "{msg}");
    assert!(msg.contains("Subject:"), "{msg}");
    assert!(msg.contains("[1]"), "the body cites: {msg}");
    assert!(
        msg.contains(result["message_id"].as_str().unwrap()),
        "{msg}"
    );
    let events = run_events(&s.kernel, &report.trace_id).await;
    let requested = kinds(&events, "action.requested");
    let decided = kinds(&events, "action.decided");
    assert_eq!(requested.len(), 1);
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["decision"], "approved");
    assert_eq!(decided[0]["by"], "flag --approve");
    assert_eq!(decided[0]["payload_hash"], requested[0]["payload_hash"]);
    assert_eq!(kinds(&events, "effect.intent").len(), 1);
    assert_eq!(kinds(&events, "effect.result")[0]["status"], "performed");
    assert_eq!(kinds(&events, "email.sent").len(), 1);
    assert_nothing_held(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_timed_out_send_nothing_and_say_why() {
    let _one = ONE_POG.lock().await;
    let deny = AutoDecide::Deny {
        by: "no terminal".into(),
        reason: "rlp run is not on a terminal".into(),
    };
    let s = setup("ce-deny", deny, 60_000, vec![], None).await;
    let (report, _) = run(&s, no_answer).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    let result = send_result(&report);
    assert_eq!(result["status"], "declined", "{result}");
    let reason = result["reason"].as_str().unwrap();
    assert!(reason.contains("denied by no terminal"), "{reason}");
    assert!(s.messages().is_empty());
    let events = run_events(&s.kernel, &report.trace_id).await;
    assert!(kinds(&events, "effect.intent").is_empty());
    s.stop().await;

    // Nobody answers: denied at the timeout.
    let s = setup("ce-timeout", AutoDecide::Ask, 1_000, vec![], None).await;
    let (report, events) = run(&s, no_answer).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert!(
        events.iter().any(
            |e| matches!(e, RunProgress::NodeDecided { decision, .. } if decision == "timed_out")
        ),
        "{events:?}"
    );
    let result = send_result(&report);
    assert_eq!(result["status"], "declined", "{result}");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("not answered in time"),
        "{result}"
    );
    assert!(s.messages().is_empty());
    assert_nothing_held(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_for_another_payload_is_refused_and_the_shown_one_is_sent() {
    let _one = ONE_POG.lock().await;
    let s = setup("ce-stale", AutoDecide::Ask, 60_000, vec![], None).await;
    let gate = s.kernel.effects().unwrap().gate.get().unwrap();
    let decide = |request_id: String, hash: String| {
        let gate = gate.clone();
        async move {
            gate.call(
                |reply| GateMsg::Decide {
                    request_id,
                    approve: true,
                    payload_hash: hash,
                    by: "tty".into(),
                    reason: None,
                    reply,
                },
                None,
            )
            .await
            .unwrap()
            .unwrap()
        }
    };
    let (report, _) = run(&s, |e| {
        let decide = &decide;
        async move {
            let RunProgress::NodeWaiting {
                request_id,
                payload_hash,
                ..
            } = e
            else {
                return;
            };
            // The person saw another payload: refused, and the request still waits.
            let stale = decide(request_id.clone(), "0".repeat(64)).await;
            let e = stale.unwrap_err();
            assert!(e.to_string().contains("needs a new yes"), "{e}");
            decide(request_id, payload_hash).await.unwrap();
        }
    })
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(s.messages().len(), 1);
    s.stop().await;
}

/// The pid of this process's sandbox child that serves agent `node` (its cgroup is
/// `<run>.<node>-<generation>`).
fn sandbox_of(node: &str) -> Option<i32> {
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if pid.parse::<i32>().is_err() {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let after = stat.rsplit(')').next().unwrap_or("");
        let ppid = after.split_whitespace().nth(1).unwrap_or("");
        if ppid != me {
            continue;
        }
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        if cgroup.contains(&format!(".{node}-")) {
            return pid.parse().ok();
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_mailer_after_the_effect_sends_one_message_not_two() {
    let _one = ONE_POG.lock().await;
    let fired = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let hook: AfterEffect = {
        let (fired, killed) = (fired.clone(), killed.clone());
        Arc::new(move |site| {
            if fired.swap(true, Ordering::SeqCst) {
                return;
            }
            if let Some(pid) = sandbox_of(site.agent) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                killed.store(true, Ordering::SeqCst);
            }
        })
    };
    let approve = AutoDecide::Approve { by: "test".into() };
    let s = setup("ce-kill", approve, 60_000, vec![], Some(hook)).await;
    let (report, _) = run(&s, no_answer).await;
    assert!(
        killed.load(Ordering::SeqCst),
        "the hook found and killed the sandbox"
    );
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let result = send_result(&report);
    assert_eq!(result["status"], "sent");
    assert_eq!(
        result["recalled"], true,
        "the redelivered invoke got the recorded result"
    );
    assert_eq!(s.messages().len(), 1, "one message, not two");
    let events = run_events(&s.kernel, &report.trace_id).await;
    assert_eq!(kinds(&events, "effect.intent").len(), 1);
    assert_eq!(kinds(&events, "effect.result").len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_effect_kind_outside_the_capabilities_is_denied_and_audited() {
    let _one = ONE_POG.lock().await;
    // The mailer bundle with a policy that grants no effect.
    let agents = tempfile::tempdir().unwrap();
    let copy = agents.path().join("mailer");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(repo().join("agents/bundles/mailer")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    std::fs::write(copy.join("policy.caps"), "runloop-caps 1\nallow log\n").unwrap();
    common::sign(&copy);
    let approve = AutoDecide::Approve { by: "test".into() };
    let s = setup(
        "ce-caps",
        approve,
        60_000,
        vec![agents.path().to_owned()],
        None,
    )
    .await;
    let (report, _) = run(&s, no_answer).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    let send = report.nodes.iter().find(|n| n.id == "send").unwrap();
    let reason = send.reason.as_deref().unwrap_or("");
    assert!(reason.contains("effect.perform"), "{reason}");
    assert!(s.messages().is_empty());
    let events = run_events(&s.kernel, &report.trace_id).await;
    let audits = kinds(&events, "cap.audit");
    assert!(
        audits
            .iter()
            .any(|a| a["cap"] == "effect.perform" && a["decision"] == "deny"),
        "{audits:?}"
    );
    assert!(kinds(&events, "action.requested").is_empty());
    s.stop().await;
}

/// Every effect kind of class send/delete/spend, asked for directly through the effects
/// journal (as an agent's host call would be, after its capabilities allowed it): none is
/// performed without a recorded yes — declined by a "no", pending while nobody answered —
/// and a local kind runs without one. Walks `EffectKind::ALL`, so a new kind is covered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_send_delete_or_spend_effect_runs_without_a_recorded_yes() {
    use runloop_bundle::EffectKind;
    use runloop_proto::payloads::{HostErrorCode, HostReply};

    let _one = ONE_POG.lock().await;
    let deny = AutoDecide::Deny {
        by: "test".into(),
        reason: "walk".into(),
    };
    let s = setup("ce-walk", deny, 60_000, vec![], None).await;
    let effects = s.kernel.effects().unwrap().clone();
    let trace = runloop_proto::TraceId(0x7777_0000_0000_0000_0000_0000_0000_0001);
    register_run(&effects, trace);
    let mut external = 0;
    for (i, kind) in EffectKind::ALL.into_iter().enumerate() {
        for auto in [
            AutoDecide::Deny {
                by: "test".into(),
                reason: "walk".into(),
            },
            AutoDecide::Ask,
        ] {
            effects.shared.set_auto(auto.clone());
            let payload = runloop_kernel::effects::exec::example_payload(kind);
            let key = format!("walk-{i}-{}", matches!(auto, AutoDecide::Ask));
            let reply =
                perform_direct(&effects, trace, "walker", kind.name(), &payload, &key).await;
            match (kind.class().is_external(), &auto, reply) {
                (true, AutoDecide::Ask, HostReply::Err { code, .. }) => {
                    assert_eq!(code, HostErrorCode::ConfirmationPending, "{kind}");
                }
                (true, _, HostReply::Err { code, message }) => {
                    assert_eq!(code, HostErrorCode::Declined, "{kind}: {message}");
                }
                (false, _, HostReply::Ok(_)) => {}
                (_, _, other) => panic!("{kind} under {auto:?}: {other:?}"),
            }
        }
        external += usize::from(kind.class().is_external());
    }
    assert!(external >= 2, "mail.send and artifact.delete at least");
    let events = run_events(&s.kernel, &trace.to_string()).await;
    let intents = kinds(&events, "effect.intent");
    assert!(
        intents
            .iter()
            .all(|i| EffectKind::parse(i["effect"].as_str().unwrap())
                .is_some_and(|k| !k.class().is_external())),
        "only local effects were performed: {intents:?}"
    );
    s.stop().await;
}

/// An effect whose intent is in the journal without a result (the kernel died mid-effect)
/// is reported as `OutcomeUnknown` and not performed again; a key reused for another
/// payload is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_effect_with_an_unknown_outcome_is_reported_never_redone() {
    use runloop_bundle::EffectKind;
    use runloop_proto::payloads::{HostErrorCode, HostReply};

    let _one = ONE_POG.lock().await;
    let s = setup("ce-unknown", AutoDecide::Ask, 60_000, vec![], None).await;
    let effects = s.kernel.effects().unwrap().clone();
    let trace = runloop_proto::TraceId(0x5555_0000_0000_0000_0000_0000_0000_0002);
    let save = runloop_kernel::effects::exec::example_payload(EffectKind::ArtifactSave);
    let hash = runloop_kernel::effects::payload_hash(&save).unwrap();
    // What a crash between the intent and the result leaves.
    runloop_kernel::runs::record::Recorder::new(s.kernel.pog())
        .write(
            &trace.to_string(),
            runloop_pog::EventKind::EffectIntent,
            json!({
                "trace_id": trace.to_string(), "node_id": "saver", "agent": "saver",
                "effect": "artifact.save", "idempotency_key": "save-1", "payload_hash": hash,
            }),
        )
        .await
        .unwrap();
    let perform = |key: &'static str, payload: Value| {
        let effects = effects.clone();
        async move { perform_direct(&effects, trace, "saver", "artifact.save", &payload, key).await }
    };
    match perform("save-1", save.clone()).await {
        HostReply::Err { code, message } => {
            assert_eq!(code, HostErrorCode::OutcomeUnknown, "{message}");
            assert!(message.contains("not redone"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let artifact = s.state.path().join("runs").join(trace.to_string());
    assert!(!artifact.exists(), "not performed: {}", artifact.display());

    // A fresh key performs; the same key again recalls; the key with another payload is
    // refused.
    let HostReply::Ok(first) = perform("save-2", save.clone()).await else {
        panic!("save-2 performs");
    };
    let first = runloop_proto::json::msgpack_to_json(&first);
    assert_eq!(first["recalled"], false, "{first}");
    let HostReply::Ok(again) = perform("save-2", save.clone()).await else {
        panic!("save-2 recalls");
    };
    assert_eq!(
        runloop_proto::json::msgpack_to_json(&again)["recalled"],
        true
    );
    let other = json!({"name": "draft.txt", "content": "another draft"});
    match perform("save-2", other).await {
        HostReply::Err { code, message } => {
            assert_eq!(code, HostErrorCode::InvalidRequest, "{message}");
            assert!(message.contains("different"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_smtp_configured_the_approved_message_reaches_a_real_smtp_server_once() {
    let _one = ONE_POG.lock().await;
    let server = common::SmtpServer::start();
    let smtp = runloop_mail::SmtpConfig {
        host: "127.0.0.1".into(),
        port: server.port,
        security: runloop_mail::SmtpSecurity::None,
        username: None,
        password_env: None,
        timeout_ms: 10_000,
    };
    let approve = AutoDecide::Approve { by: "test".into() };
    let s = setup_with("ce-smtp", approve, 60_000, vec![], None, Some(smtp)).await;
    let (report, _) = run(&s, no_answer).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let result = send_result(&report);
    assert_eq!(result["status"], "sent", "{result}");
    let received = server.messages();
    assert_eq!(received.len(), 1, "one message reached the server");
    let message_id = result["message_id"].as_str().unwrap();
    assert!(received[0].contains(message_id), "{}", received[0]);
    assert!(received[0].contains("john.smith@example.com"));
    assert!(s.messages().is_empty(), "the outbox is not used with SMTP");
    s.stop().await;
}

/// A yes is bound to the payload it was given for: the same effect asked again with
/// another payload (same key) is a new request that needs its own yes, and nothing is
/// performed until it gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_payload_after_approval_needs_a_new_yes() {
    use runloop_bundle::EffectKind;
    use runloop_proto::payloads::{HostErrorCode, HostReply};

    let _one = ONE_POG.lock().await;
    let s = setup("ce-changed", AutoDecide::Ask, 60_000, vec![], None).await;
    let effects = s.kernel.effects().unwrap().clone();
    let trace = runloop_proto::TraceId(0x6666_0000_0000_0000_0000_0000_0000_0003);
    register_run(&effects, trace);
    let perform = |payload: Value| {
        let effects = effects.clone();
        async move { perform_direct(&effects, trace, "send", "mail.send", &payload, "mail-1").await }
    };
    let shown = runloop_kernel::effects::exec::example_payload(EffectKind::MailSend);
    let HostReply::Err { code, .. } = perform(shown.clone()).await else {
        panic!("waits for a yes");
    };
    assert_eq!(code, HostErrorCode::ConfirmationPending);
    let pending = effects.shared.subscribe().borrow().clone();
    assert_eq!(pending.len(), 1);
    let approved = pending[0].clone();
    let gate = effects.gate.get().unwrap();
    gate.call(
        |reply| GateMsg::Decide {
            request_id: approved.request_id.clone(),
            approve: true,
            payload_hash: approved.payload_hash.clone(),
            by: "tty".into(),
            reason: None,
            reply,
        },
        None,
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();

    // Another body under the same key: not covered by that yes.
    let mut changed = shown.clone();
    changed["body"] = json!("Hi John,\n\nSomething else entirely.\n");
    let HostReply::Err { code, message } = perform(changed).await else {
        panic!("a changed payload is not performed on the old yes");
    };
    assert_eq!(code, HostErrorCode::ConfirmationPending, "{message}");
    let pending = effects.shared.subscribe().borrow().clone();
    assert_eq!(pending.len(), 1, "a new request");
    assert_ne!(pending[0].request_id, approved.request_id);
    assert_ne!(pending[0].payload_hash, approved.payload_hash);
    assert!(s.messages().is_empty(), "nothing sent");

    // The payload the person approved goes through, once.
    let HostReply::Ok(_) = perform(shown).await else {
        panic!("the approved payload is sent");
    };
    assert_eq!(s.messages().len(), 1);
    s.stop().await;
}

/// Several contacts match: the resolver puts each to the person in turn (a question a
/// flag never answers); the person's yes to the second one decides the recipient, and the
/// send then waits for its own yes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_person_chooses_among_several_matching_contacts() {
    let _one = ONE_POG.lock().await;
    let s = setup("ce-choose", AutoDecide::Ask, 60_000, vec![], None).await;
    let gate = s.kernel.effects().unwrap().gate.get().unwrap();
    let asked = std::sync::Mutex::new(Vec::new());
    let (report, _) = run_with(&s, json!({"recipient": "Smith"}), |e| {
        let gate = gate.clone();
        let asked = &asked;
        async move {
            let RunProgress::NodeWaiting {
                request_id,
                payload_hash,
                summary,
                node,
                ..
            } = e
            else {
                return;
            };
            asked.lock().unwrap().push((node.clone(), summary.clone()));
            // No to John Smith, yes to Sam Smith, yes to the send.
            let approve = node == "send" || summary.contains("Sam Smith");
            gate.call(
                |reply| GateMsg::Decide {
                    request_id,
                    approve,
                    payload_hash,
                    by: "tty".into(),
                    reason: None,
                    reply,
                },
                None,
            )
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        }
    })
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let asked = asked.into_inner().unwrap();
    let nodes: Vec<&str> = asked.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes, ["contact", "contact", "send"], "{asked:?}");
    assert!(asked[0].1.contains("John Smith"), "{asked:?}");
    let sent = s.messages();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("sam.smith@example.com"), "{}", sent[0]);
    s.stop().await;

    // --approve does not answer the question: the resolver fails naming the candidates.
    let approve = AutoDecide::Approve {
        by: "flag --approve".into(),
    };
    let s = setup("ce-choose-flag", approve, 60_000, vec![], None).await;
    let (report, _) = run_with(&s, json!({"recipient": "Smith"}), no_answer).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    let contact = report.nodes.iter().find(|n| n.id == "contact").unwrap();
    let reason = contact.reason.as_deref().unwrap_or("");
    assert!(reason.contains("2 contacts match \"Smith\""), "{reason}");
    assert!(s.messages().is_empty());
    s.stop().await;
}

/// A sent email and a denied one replay identically from their recordings, node by node:
/// the outbox is unchanged afterwards (no effect is performed again), no person is asked,
/// and the ladder's data shows the gate and the effects journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_and_denied_runs_replay_identically_with_the_outbox_unchanged() {
    let _one = ONE_POG.lock().await;
    let approve = AutoDecide::Approve {
        by: "flag --approve".into(),
    };
    let s = setup("ce-replay", approve, 60_000, vec![], None).await;
    let (sent, _) = run(&s, no_answer).await;
    assert_eq!(send_result(&sent)["status"], "sent", "{sent:?}");
    s.kernel
        .effects()
        .unwrap()
        .shared
        .set_auto(AutoDecide::Deny {
            by: "flag --deny".into(),
            reason: "not today".into(),
        });
    let (denied, _) = run(&s, no_answer).await;
    assert_eq!(denied.status, RunStatus::Failed, "{denied:?}");
    let outbox_before = s.messages();
    assert_eq!(outbox_before.len(), 1);
    // Whatever a person would say now is not asked: replay answers from the record.
    s.kernel.effects().unwrap().shared.set_auto(AutoDecide::Ask);
    for report in [&sent, &denied] {
        let r = runloop_kernel::trace::replay(&s.engine, &report.trace_id)
            .await
            .unwrap();
        assert!(r.identical, "{r:#?}");
        assert_eq!(r.effects_performed, 0);
        let send = r.nodes.iter().find(|n| n.id == "send").unwrap();
        assert!(send.invokes >= 1 && send.host_calls >= 1, "{send:?}");
    }
    assert_eq!(s.messages(), outbox_before, "the outbox is unchanged");
    let events = run_events(&s.kernel, &sent.trace_id).await;
    assert_eq!(
        kinds(&events, "email.sent").len(),
        1,
        "no second email.sent"
    );
    let view = match runloop_kernel::trace::control::show(&s.engine, &sent.trace_id).await {
        runloop_proto::payloads::ControlOutcome::Trace { view } => view,
        other => panic!("{other:?}"),
    };
    let ids: Vec<&str> = view.participants.iter().map(|p| p.id.as_str()).collect();
    for want in [
        "rlp",
        "run",
        "agent:send",
        "broker",
        "pog",
        "gate",
        "effects",
    ] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    let kinds_seen: Vec<&str> = view.crossings.iter().map(|c| c.kind.as_str()).collect();
    for want in [
        "confirm.ask",
        "confirm.decision",
        "effect.perform",
        "kb.query",
    ] {
        assert!(
            kinds_seen.contains(&want),
            "{want} missing from {kinds_seen:?}"
        );
    }
    s.stop().await;
}
