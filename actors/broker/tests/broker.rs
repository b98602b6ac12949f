//! Broker behaviour with real parts: budgets (refusal before any network traffic, checked with
//! a counting stub), cache, replay of a recorded run, records, routing and accounting.

mod common;

use common::{Stub, StubReply};
use runloop_broker::budget::{BudgetError, Scope};
use runloop_broker::config::{Limit, PriceEntry, ProviderConfig, ProviderKind, RouteRule};
use runloop_broker::provider::replay::ReplayLoadError;
use runloop_broker::{
    Broker, BrokerError, BuildError, CallContext, CompleteRequest, EmbedRequest, EngineKind,
    ManualClock, ModelRequest, ModelsConfig, ProviderError, Record, RunBudget, SecretResolver,
    SecretsConfig, ServedBy,
};
use std::sync::Arc;

fn offline_broker(config: ModelsConfig, clock: &ManualClock) -> Broker {
    Broker::new(
        config,
        &SecretResolver::with_env(SecretsConfig::default(), Default::default()),
        Arc::new(clock.clone()),
    )
    .unwrap()
}

fn stub_config(stub: &Stub) -> ModelsConfig {
    let mut config = ModelsConfig {
        default: "stub:m".into(),
        ..ModelsConfig::default()
    };
    config.broker.providers.push(ProviderConfig {
        id: "stub".into(),
        kind: ProviderKind::Http,
        base_url: Some(stub.base_url.clone()),
        secret_id: None,
        records: None,
    });
    config.broker.prices.push(PriceEntry {
        pattern: "m".into(),
        input_usd_micros_per_mtok: 1_000_000,
        output_usd_micros_per_mtok: 2_000_000,
    });
    config
}

fn ok_chat(tokens_in: u64, tokens_out: u64) -> StubReply {
    let body = serde_json::json!({
        "model": "m", "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}
    });
    StubReply::Http(200, vec![], body.to_string())
}

fn opening(o: &str, n: &str) -> CallContext {
    CallContext {
        opening: Some(o.into()),
        node: Some(n.into()),
        agent: Some("writer".into()),
        ..CallContext::default()
    }
}

fn in_run(run: &str, node: &str, run_tokens: u64, node_tokens: u64) -> CallContext {
    CallContext {
        agent: Some(node.into()),
        run: Some(RunBudget {
            run: run.into(),
            node: node.into(),
            run_limit: Limit {
                tokens: Some(run_tokens),
                usd_micros: None,
            },
            node_limit: Limit {
                tokens: Some(node_tokens),
                usd_micros: None,
            },
        }),
        ..CallContext::default()
    }
}

#[tokio::test]
async fn run_budgets_are_per_run_and_per_node_of_the_run() {
    // Each call really uses 50 + 50 tokens; the estimate reserves max_tokens (100) and more.
    let stub = Stub::start(vec![ok_chat(50, 50)]).await;
    let clock = ManualClock::new(0);
    let b = offline_broker(stub_config(&stub), &clock);
    let req = || CompleteRequest {
        max_tokens: Some(100),
        ..CompleteRequest::prompt("m", "hi")
    };
    b.complete(req(), &in_run("r1", "a", 250, 150), None)
        .await
        .unwrap();
    // Node a's 150: 100 used, the next estimate does not fit.
    match b.complete(req(), &in_run("r1", "a", 250, 150), None).await {
        Err(BrokerError::Budget(
            e @ BudgetError::Exceeded {
                scope: Scope::RunNode,
                unit: "tokens",
                used: 100,
                limit: 150,
                ..
            },
        )) => assert!(e.to_string().starts_with("node budget: needs "), "{e}"),
        other => panic!("expected the node's budget to refuse, got {other:?}"),
    }
    b.complete(req(), &in_run("r1", "b", 250, 150), None)
        .await
        .unwrap();
    // The run's 250: 200 used by a and b.
    match b.complete(req(), &in_run("r1", "c", 250, 150), None).await {
        Err(BrokerError::Budget(
            e @ BudgetError::Exceeded {
                scope: Scope::Run,
                used: 200,
                limit: 250,
                ..
            },
        )) => assert!(e.to_string().starts_with("run budget: needs "), "{e}"),
        other => panic!("expected the run's budget to refuse, got {other:?}"),
    }
    assert_eq!(stub.request_count(), 2, "refused calls reach no server");
    // Another run of the same opening has its own budget; closing r1 forgets it.
    b.complete(req(), &in_run("r2", "a", 250, 150), None)
        .await
        .unwrap();
    b.close_run("r1");
    b.complete(req(), &in_run("r1", "a", 250, 150), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn budget_refuses_before_any_network_traffic() {
    let stub = Stub::start(vec![ok_chat(10, 10)]).await;
    let mut config = stub_config(&stub);
    config.broker.budgets.default_tokens = Some(100);
    let clock = ManualClock::new(0);
    let b = offline_broker(config, &clock);
    let req = CompleteRequest {
        max_tokens: Some(500),
        ..CompleteRequest::prompt("m", "hello")
    };
    match b.complete(req, &CallContext::default(), None).await {
        Err(BrokerError::Budget(BudgetError::Exceeded {
            scope: Scope::Request,
            unit: "tokens",
            limit: 100,
            ..
        })) => {}
        other => panic!("expected per-request refusal, got {other:?}"),
    }
    assert_eq!(
        stub.request_count(),
        0,
        "refused request must not reach the server"
    );
    assert_eq!(b.stats().by_provider["stub"].errors, 1);
}

#[tokio::test]
async fn opening_budget_in_usd_reserves_then_reconciles() {
    // Each call reports 1000 in + 1000 out = 1000 + 2000 = 3000 micro-USD at the configured prices.
    let stub = Stub::start(vec![ok_chat(1000, 1000)]).await;
    let mut config = stub_config(&stub);
    config.broker.budgets.hard_cap_usd = Some(0.007);
    let clock = ManualClock::new(0);
    let b = offline_broker(config, &clock);
    let req = || CompleteRequest {
        max_tokens: Some(100),
        ..CompleteRequest::prompt("m", "hello")
    };
    let a = b
        .complete(req(), &opening("run-1", "writer"), None)
        .await
        .unwrap();
    assert_eq!(a.response.usage.cost_usd_micros, 3000);
    b.complete(req(), &opening("run-1", "critic"), None)
        .await
        .unwrap();
    // 6000 spent; the estimate of a third call fits (≈ 200 micro-USD) but the spend so far is real usage.
    b.complete(req(), &opening("run-1", "mailer"), None)
        .await
        .unwrap();
    match b.complete(req(), &opening("run-1", "writer"), None).await {
        Err(BrokerError::Budget(BudgetError::Exceeded {
            scope: Scope::Opening,
            unit: "usd_micros",
            used: 9000,
            limit: 7000,
            ..
        })) => {}
        other => panic!("expected opening refusal, got {other:?}"),
    }
    assert_eq!(stub.request_count(), 3);
    // Another opening is unaffected; closing the first frees its state.
    b.complete(req(), &opening("run-2", "writer"), None)
        .await
        .unwrap();
    b.close_opening("run-1");
    b.complete(req(), &opening("run-1", "writer"), None)
        .await
        .unwrap();
    let stats = b.stats();
    assert_eq!(stats.by_opening["run-1"].requests, 5);
    assert_eq!(stats.by_opening["run-1"].errors, 1);
    assert_eq!(stats.by_agent["writer"].cost_usd_micros, 5 * 3000);
}

#[tokio::test]
async fn node_and_day_budgets_and_day_rollover() {
    let stub = Stub::start(vec![ok_chat(50, 50)]).await;
    let mut config = stub_config(&stub);
    config.broker.budgets.per_node = Limit {
        tokens: Some(250),
        usd_micros: None,
    };
    config.broker.budgets.per_day = Limit {
        tokens: Some(400),
        usd_micros: None,
    };
    let clock = ManualClock::new(10 * 86_400_000 + 1000);
    let b = offline_broker(config, &clock);
    let req = || CompleteRequest {
        max_tokens: Some(100),
        ..CompleteRequest::prompt("m", "hi")
    };
    b.complete(req(), &opening("o", "a"), None).await.unwrap();
    b.complete(req(), &opening("o", "a"), None).await.unwrap();
    let e = b
        .complete(req(), &opening("o", "a"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            BrokerError::Budget(BudgetError::Exceeded {
                scope: Scope::Node,
                ..
            })
        ),
        "{e:?}"
    );
    b.complete(req(), &opening("o", "b"), None).await.unwrap();
    let e = b
        .complete(req(), &opening("o", "c"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            BrokerError::Budget(BudgetError::Exceeded {
                scope: Scope::Day,
                used: 300,
                ..
            })
        ),
        "{e:?}"
    );
    clock.advance(86_400_000);
    b.complete(req(), &opening("o", "c"), None).await.unwrap();
}

#[tokio::test]
async fn failed_call_releases_its_reservation() {
    let stub = Stub::start(vec![
        StubReply::Http(400, vec![], r#"{"error":"nope"}"#.into()),
        ok_chat(10, 10),
    ])
    .await;
    let mut config = stub_config(&stub);
    config.broker.budgets.per_day = Limit {
        tokens: Some(150),
        usd_micros: None,
    };
    let clock = ManualClock::new(0);
    let b = offline_broker(config, &clock);
    let req = || CompleteRequest {
        max_tokens: Some(100),
        ..CompleteRequest::prompt("m", "hi")
    };
    assert!(
        b.complete(req(), &CallContext::default(), None)
            .await
            .is_err()
    );
    b.complete(req(), &CallContext::default(), None)
        .await
        .expect("the failed call's reservation was released");
}

#[tokio::test]
async fn repeated_deterministic_request_hits_the_cache() {
    let stub = Stub::start(vec![ok_chat(10, 2)]).await;
    let clock = ManualClock::new(0);
    let b = offline_broker(stub_config(&stub), &clock);
    let req = CompleteRequest {
        temperature: Some(0.0),
        ..CompleteRequest::prompt("m", "hello")
    };
    let ctx = CallContext::default();
    let first = b.complete(req.clone(), &ctx, None).await.unwrap();
    let second = b.complete(req.clone(), &ctx, None).await.unwrap();
    assert_eq!(
        (first.served_by, second.served_by),
        (ServedBy::Provider, ServedBy::Cache)
    );
    assert_eq!(first.response, second.response);
    assert_eq!(first.record.request_hash, second.record.request_hash);
    assert_eq!(stub.request_count(), 1);
    assert_eq!(b.stats().by_provider["stub"].cache_hits, 1);
    // TTL (default 600 s): expired entries go back to the provider.
    clock.advance(600_000);
    assert_eq!(
        b.complete(req, &ctx, None).await.unwrap().served_by,
        ServedBy::Provider
    );
    // Sampling without a seed is not cached: the same request may rightly answer differently.
    let hot = CompleteRequest {
        temperature: Some(0.8),
        ..CompleteRequest::prompt("m", "hello")
    };
    b.complete(hot.clone(), &ctx, None).await.unwrap();
    assert_eq!(
        b.complete(hot, &ctx, None).await.unwrap().served_by,
        ServedBy::Provider
    );
    assert_eq!(stub.request_count(), 4);
}

#[tokio::test]
async fn deterministic_mode_pins_temperature_and_seed() {
    let stub = Stub::start(vec![ok_chat(10, 2)]).await;
    let mut config = stub_config(&stub);
    config.broker.deterministic = true;
    let clock = ManualClock::new(0);
    let b = offline_broker(config, &clock);
    let hot = CompleteRequest {
        temperature: Some(0.9),
        ..CompleteRequest::prompt("m", "hello")
    };
    b.complete(hot.clone(), &CallContext::default(), None)
        .await
        .unwrap();
    assert_eq!(
        b.complete(hot, &CallContext::default(), None)
            .await
            .unwrap()
            .served_by,
        ServedBy::Cache
    );
    let sent = stub.requests.lock().unwrap()[0].clone();
    assert!(
        sent.contains(r#""temperature":0.0"#) && sent.contains(r#""seed":42"#),
        "{sent}"
    );
}

#[tokio::test]
async fn replay_reproduces_a_recorded_run() {
    let clock = ManualClock::new(0);
    let live = offline_broker(ModelsConfig::default(), &clock);
    let ctx = CallContext::default();
    let mut records = Vec::new();
    let mut outputs = Vec::new();
    for prompt in [
        "Ada asked for the report. It is due Friday. Send it to her.",
        "Summarise: the cat sat.",
    ] {
        let a = live
            .complete(CompleteRequest::prompt("", prompt), &ctx, None)
            .await
            .unwrap();
        outputs.push(serde_json::to_string(&a.response).unwrap());
        records.push(a.record);
    }
    let e = live
        .embed(
            EmbedRequest {
                model: String::new(),
                inputs: vec!["hello world".into()],
            },
            &ctx,
        )
        .await
        .unwrap();
    outputs.push(serde_json::to_string(&e.response).unwrap());
    records.push(e.record);
    // Persist as JSON lines (what the POG stores) and read back.
    let text: String = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    let restored: Vec<Record> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(restored, records);

    let replay = Broker::replay(restored, Arc::new(clock.clone())).unwrap();
    let mut replayed = Vec::new();
    for prompt in [
        "Ada asked for the report. It is due Friday. Send it to her.",
        "Summarise: the cat sat.",
    ] {
        let a = replay
            .complete(CompleteRequest::prompt("", prompt), &ctx, None)
            .await
            .unwrap();
        assert_eq!(a.served_by, ServedBy::Replay);
        replayed.push(serde_json::to_string(&a.response).unwrap());
    }
    let e = replay
        .embed(
            EmbedRequest {
                model: String::new(),
                inputs: vec!["hello world".into()],
            },
            &ctx,
        )
        .await
        .unwrap();
    replayed.push(serde_json::to_string(&e.response).unwrap());
    assert_eq!(replayed, outputs, "replay must be byte-identical");

    let unknown = CompleteRequest::prompt("", "never asked");
    let hash = ModelRequest::Complete(unknown.clone()).hash();
    match replay.complete(unknown, &ctx, None).await {
        Err(
            e @ BrokerError::Provider {
                source: ProviderError::ReplayMiss { .. },
                ..
            },
        ) => {
            assert!(
                e.to_string().contains(&hash.to_hex()),
                "error must name the hash: {e}"
            );
        }
        other => panic!("expected replay miss, got {other:?}"),
    }
}

#[test]
fn tampered_record_is_refused() {
    let clock = ManualClock::new(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let live = offline_broker(ModelsConfig::default(), &clock);
    let mut record = rt
        .block_on(live.complete(
            CompleteRequest::prompt("", "a. b."),
            &CallContext::default(),
            None,
        ))
        .unwrap()
        .record;
    if let ModelRequest::Complete(r) = &mut record.request {
        r.messages[0].content.push('!');
    }
    match Broker::replay(vec![record], Arc::new(clock)) {
        Err(BuildError::Replay {
            source: ReplayLoadError::Inconsistent { index: 0, .. },
            ..
        }) => {}
        other => panic!("expected inconsistent record, got {other:?}"),
    }
}

#[tokio::test]
async fn fresh_machine_uses_the_honest_offline_provider() {
    let clock = ManualClock::new(0);
    let b = offline_broker(ModelsConfig::default(), &clock);
    let ctx = CallContext::default();
    let prompt = "Write to Ada about the report. The report is late. Ada needs the report numbers. Weather is nice.";
    let a = b
        .complete(
            CompleteRequest {
                max_tokens: Some(12),
                ..CompleteRequest::prompt("gpt-4o", prompt)
            },
            &ctx,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        a.response.provider.engine,
        EngineKind::OfflineExtractiveWriter
    );
    assert!(
        a.response
            .provider
            .to_string()
            .contains("not a language model")
    );
    assert!(
        a.response.content.contains("report"),
        "{}",
        a.response.content
    );
    assert!(
        !a.response.content.contains("Weather"),
        "low-scoring sentence dropped: {}",
        a.response.content
    );
    assert_eq!(a.response.usage.cost_usd_micros, 0);
    let again = b
        .complete(
            CompleteRequest {
                max_tokens: Some(12),
                ..CompleteRequest::prompt("gpt-4o", prompt)
            },
            &ctx,
            None,
        )
        .await
        .unwrap();
    assert_eq!(again.response.content, a.response.content);

    let texts = [
        "the cat sat on the mat",
        "a cat sat on a mat",
        "quarterly corporate tax deadlines",
    ];
    let e = b
        .embed(
            EmbedRequest {
                model: String::new(),
                inputs: texts.map(String::from).to_vec(),
            },
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(
        e.response.provider.engine,
        EngineKind::OfflineHashingEmbedder
    );
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>();
    let v = &e.response.vectors;
    assert!(
        dot(&v[0], &v[1]) > dot(&v[0], &v[2]) + 0.2,
        "{} vs {}",
        dot(&v[0], &v[1]),
        dot(&v[0], &v[2])
    );
    assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-5);
}

#[tokio::test]
async fn routes_first_match_wins_then_default() {
    let stub = Stub::start(vec![ok_chat(1, 1)]).await;
    let mut config = stub_config(&stub);
    config.default = "offline:extractive-writer".into();
    config.broker.route = vec![
        RouteRule {
            pattern: "gpt-4*".into(),
            provider: "stub".into(),
            model: Some("m".into()),
        },
        RouteRule {
            pattern: "*".into(),
            provider: "offline".into(),
            model: None,
        },
    ];
    let clock = ManualClock::new(0);
    let b = offline_broker(config, &clock);
    let ctx = CallContext::default();
    assert_eq!(
        b.route("gpt-4o", &ctx).unwrap(),
        ("stub".into(), "m".into())
    );
    assert_eq!(
        b.route("llama", &ctx).unwrap(),
        ("offline".into(), "llama".into())
    );
    assert_eq!(
        b.route("", &ctx).unwrap(),
        ("offline".into(), "extractive-writer".into())
    );
    let forced = CallContext {
        provider: Some("stub".into()),
        ..CallContext::default()
    };
    assert_eq!(b.route("x", &forced).unwrap(), ("stub".into(), "x".into()));
    let bad = CallContext {
        provider: Some("nope".into()),
        ..CallContext::default()
    };
    assert_eq!(
        b.route("x", &bad),
        Err(BrokerError::UnknownProvider { id: "nope".into() })
    );
}

#[tokio::test]
async fn invalid_requests_are_refused_with_specific_errors() {
    use runloop_broker::RequestError;
    let clock = ManualClock::new(0);
    let b = offline_broker(ModelsConfig::default(), &clock);
    let ctx = CallContext::default();
    let cases = [
        (CompleteRequest::default(), RequestError::NoMessages),
        (
            CompleteRequest {
                max_tokens: Some(0),
                ..CompleteRequest::prompt("", "x")
            },
            RequestError::MaxTokens {
                value: 0,
                max: 32_768,
            },
        ),
        (
            CompleteRequest {
                temperature: Some(f32::NAN),
                ..CompleteRequest::prompt("", "x")
            },
            RequestError::Temperature,
        ),
        (
            CompleteRequest {
                stop: vec![String::new(); 9],
                ..CompleteRequest::prompt("", "x")
            },
            RequestError::TooManyStops { count: 9, max: 8 },
        ),
    ];
    for (req, want) in cases {
        assert_eq!(
            b.complete(req, &ctx, None).await.unwrap_err(),
            BrokerError::Invalid(want)
        );
    }
    let e = b.embed(EmbedRequest::default(), &ctx).await.unwrap_err();
    assert_eq!(e, BrokerError::Invalid(RequestError::NoInputs));
}

#[tokio::test]
async fn offline_writer_cuts_an_overlong_sentence_to_the_budget() {
    let clock = ManualClock::new(0);
    let b = offline_broker(ModelsConfig::default(), &clock);
    let long = "report ".repeat(200);
    let req = CompleteRequest {
        max_tokens: Some(10),
        ..CompleteRequest::prompt("", long)
    };
    let a = b
        .complete(req, &CallContext::default(), None)
        .await
        .unwrap();
    assert!(
        !a.response.content.is_empty() && a.response.content.len() <= 40,
        "{:?}",
        a.response.content
    );
    assert_eq!(
        a.response.finish_reason,
        runloop_broker::FinishReason::Length
    );
}

#[tokio::test]
async fn replay_provider_from_config_and_bad_records_file() {
    let dir = std::env::temp_dir().join(format!("runloop-broker-replaycfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = ManualClock::new(0);
    let live = offline_broker(ModelsConfig::default(), &clock);
    let a = live
        .complete(
            CompleteRequest::prompt("recorded-model", "One fact. Another fact."),
            &CallContext::default(),
            None,
        )
        .await
        .unwrap();
    let path = dir.join("run.jsonl");
    std::fs::write(&path, serde_json::to_string(&a.record).unwrap() + "\n").unwrap();
    let mut config = ModelsConfig::default();
    config.broker.providers.push(ProviderConfig {
        id: "last".into(),
        kind: ProviderKind::Replay,
        base_url: None,
        secret_id: None,
        records: Some(path.clone()),
    });
    config.broker.route.push(RouteRule {
        pattern: "recorded-*".into(),
        provider: "last".into(),
        model: None,
    });
    let b = offline_broker(config.clone(), &clock);
    let r = b
        .complete(
            CompleteRequest::prompt("recorded-model", "One fact. Another fact."),
            &CallContext::default(),
            None,
        )
        .await
        .unwrap();
    assert_eq!((r.served_by, r.response), (ServedBy::Replay, a.response));
    std::fs::write(&path, "{not json}\n").unwrap();
    let e = Broker::new(
        config,
        &SecretResolver::with_env(SecretsConfig::default(), Default::default()),
        Arc::new(clock),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            BuildError::Replay {
                source: ReplayLoadError::Parse { line: 1, .. },
                ..
            }
        ),
        "{e:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn missing_key_disables_only_its_provider() {
    let mut config = ModelsConfig::default();
    config.broker.providers.push(ProviderConfig {
        id: "keyless".into(),
        kind: ProviderKind::Http,
        base_url: Some("http://127.0.0.1:9".into()),
        secret_id: Some("runloop/models/absent".into()),
        records: None,
    });
    let clock = ManualClock::new(0);
    let b = offline_broker(config, &clock);
    let forced = CallContext {
        provider: Some("keyless".into()),
        ..CallContext::default()
    };
    let e = b
        .complete(CompleteRequest::prompt("", "x"), &forced, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            BrokerError::Provider {
                source: ProviderError::Secret(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("RUNLOOP_MODELS_ABSENT"), "{e}");
    b.complete(
        CompleteRequest::prompt("", "x"),
        &CallContext::default(),
        None,
    )
    .await
    .expect("offline still works");
}
