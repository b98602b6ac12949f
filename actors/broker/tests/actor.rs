//! The broker as a ractor singleton: typed messages through `BrokerHandle`, singleton name,
//! stats, and a REAL supervised child process (python3's http.server standing in for a model
//! server's process: what is tested is start, health polling, restart after SIGKILL and stop).

use ractor::Actor;
use runloop_broker::actor::{BROKER_ACTOR_NAME, BrokerHandle};
use runloop_broker::config::LocalServerConfig;
use runloop_broker::local_server::{LocalServer, LocalServerStatus};
use runloop_broker::{
    BrokerActor, BrokerArgs, CallContext, CompleteRequest, EmbedRequest, SecretResolver,
    SecretsConfig, ServedBy, SystemClock,
};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singleton_actor_serves_typed_requests() {
    let args = BrokerArgs::Config {
        config: Box::default(),
        secrets: SecretResolver::with_env(SecretsConfig::default(), Default::default()),
        clock: Arc::new(SystemClock),
    };
    let (actor, join) = BrokerActor::spawn_singleton(args).await.unwrap();
    assert_eq!(
        ractor::registry::where_is(BROKER_ACTOR_NAME).map(|a| a.get_id()),
        Some(actor.get_id())
    );
    let again = BrokerArgs::Config {
        config: Box::default(),
        secrets: SecretResolver::with_env(SecretsConfig::default(), Default::default()),
        clock: Arc::new(SystemClock),
    };
    assert!(
        BrokerActor::spawn_singleton(again).await.is_err(),
        "a second broker must not start"
    );

    let h = BrokerHandle::new(actor.clone());
    let ctx = CallContext {
        opening: Some("o1".into()),
        agent: Some("writer".into()),
        ..CallContext::default()
    };
    let req = CompleteRequest {
        temperature: Some(0.0),
        ..CompleteRequest::prompt("", "The meeting moved to Tuesday. Tell Bob.")
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let a = h
        .complete(req.clone(), ctx.clone(), Some(tx))
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap(), a.response.content);
    assert_eq!(
        h.complete(req, ctx.clone(), None).await.unwrap().served_by,
        ServedBy::Cache
    );
    let e = h
        .embed(
            EmbedRequest {
                model: String::new(),
                inputs: vec!["x".into()],
            },
            ctx,
        )
        .await
        .unwrap();
    assert_eq!(e.response.vectors[0].len(), 256);
    let models = h.list_models(None).await.unwrap();
    assert_eq!(models[0].0, "offline");
    let stats = h.stats().await.unwrap();
    assert_eq!((stats.total.requests, stats.total.cache_hits), (3, 1));
    assert_eq!(stats.by_agent["writer"].requests, 3);
    assert_eq!(h.local_server().await.unwrap(), None);
    actor.stop(None);
    join.await.unwrap();
}

fn python_server(port: u16) -> LocalServerConfig {
    LocalServerConfig {
        command: [
            "python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ]
        .map(String::from)
        .to_vec(),
        health_url: format!("http://127.0.0.1:{port}/"),
        health_timeout_ms: 20_000,
        restarts_max: 1,
        restart_period_ms: 60_000,
    }
}

async fn wait_healthy(s: &LocalServer, not_pid: u32) -> u32 {
    for _ in 0..400 {
        if let LocalServerStatus::Healthy { pid, .. } = s.status()
            && pid != not_pid
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("local server never became healthy: {:?}", s.status());
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_server_is_restarted_after_sigkill_then_given_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = LocalServer::start(python_server(port), Arc::new(SystemClock));
    let first = wait_healthy(&s, 0).await;
    std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .unwrap();
    let second = wait_healthy(&s, first).await;
    assert_ne!(first, second);
    assert_eq!(
        s.status(),
        LocalServerStatus::Healthy {
            pid: second,
            restarts: 1
        }
    );
    // restarts_max = 1 within the period: the next crash makes the supervisor give up.
    std::process::Command::new("kill")
        .args(["-KILL", &second.to_string()])
        .status()
        .unwrap();
    for _ in 0..200 {
        if matches!(s.status(), LocalServerStatus::Failed { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        matches!(s.status(), LocalServerStatus::Failed { ref reason } if reason.contains("exited 2 times")),
        "{:?}",
        s.status()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_supervisor_kills_the_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = LocalServer::start(python_server(port), Arc::new(SystemClock));
    let pid = wait_healthy(&s, 0).await;
    s.stop().await;
    assert!(!alive(pid), "server process {pid} still running after stop");
}

#[tokio::test]
async fn missing_program_fails_with_its_name() {
    let mut cfg = python_server(1);
    cfg.command = vec!["/nonexistent/model-server".into()];
    let s = LocalServer::start(cfg, Arc::new(SystemClock));
    for _ in 0..100 {
        if matches!(s.status(), LocalServerStatus::Failed { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        matches!(s.status(), LocalServerStatus::Failed { ref reason } if reason.contains("/nonexistent/model-server"))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_supervises_the_configured_local_server_and_stops_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = runloop_broker::ModelsConfig::default();
    config.broker.local_server = Some(python_server(port));
    let args = BrokerArgs::Config {
        config: Box::new(config),
        secrets: SecretResolver::with_env(SecretsConfig::default(), Default::default()),
        clock: Arc::new(SystemClock),
    };
    // Unnamed: the singleton name is taken by the other test in this process.
    let (actor, join) = Actor::spawn(None, BrokerActor, args).await.unwrap();
    let h = BrokerHandle::new(actor.clone());
    let mut pid = 0;
    for _ in 0..400 {
        if let Some(LocalServerStatus::Healthy { pid: p, .. }) = h.local_server().await.unwrap() {
            pid = p;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pid > 0, "local server never healthy");
    actor.stop(None);
    join.await.unwrap();
    assert!(!alive(pid), "actor stop must stop its model server ({pid})");
}
