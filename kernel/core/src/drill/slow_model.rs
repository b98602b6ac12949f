//! The `slow-model` drill: a model provider on loopback that stalls and then fails; the
//! broker's timeout and retries must behave and every budget reservation be given back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::faults::Found;
use super::lab::{self, Lab, LabOptions};
use super::{Checks, Drill, DrillEnv, DrillReport, ms};

/// The slow-model drill's provider: answers nothing to its first [`STALLED_CALLS`]
/// requests (holds them open), then a 500 to every other one.
const STALLED_CALLS: u64 = 1;
/// The broker's per-request timeout and retries in this drill.
const MODEL_TIMEOUT_MS: u64 = 300;
const MODEL_RETRIES: u32 = 2;
/// The run: one node that makes one model call.
const SLOW_MODEL_OPENING: &str = "version: 0
name: slow_model_drill
policy: { budget_tokens: 8000 }
nodes:
  - id: ask
    use: agent:flaky
    with: { model_max_tokens: 64 }
";

/// A provider on loopback that stalls, then fails; counts the requests it got.
struct StallingProvider {
    port: u16,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl StallingProvider {
    async fn start() -> Result<Self, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind the stalling provider: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("its address: {e}"))?
            .port();
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(async move {
                    // Read the request head (and whatever body came with it).
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut got = 0;
                    while got < buf.len() {
                        match conn.read(&mut buf[got..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => got += k,
                        }
                        if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    if n <= STALLED_CALLS {
                        // Stall: hold the connection, say nothing.
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    let body = r#"{"error":{"message":"the drill's provider gave up","type":"server_error"}}"#;
                    let reply = format!(
                        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    // The broker may have given up already; nothing to do then.
                    if conn.write_all(reply.as_bytes()).await.is_ok() {
                        let _ = conn.shutdown().await;
                    }
                });
            }
        });
        Ok(Self {
            port,
            requests,
            task,
        })
    }

    fn models(&self) -> runloop_broker::ModelsConfig {
        use runloop_broker::config::{BrokerConfig, HttpConfig, ProviderConfig, ProviderKind};
        runloop_broker::ModelsConfig {
            default: "stall:slow-model".into(),
            broker: BrokerConfig {
                providers: vec![ProviderConfig {
                    id: "stall".into(),
                    kind: ProviderKind::Http,
                    base_url: Some(format!("http://127.0.0.1:{}", self.port)),
                    secret_id: None,
                    records: None,
                }],
                http: HttpConfig {
                    timeout_ms: MODEL_TIMEOUT_MS,
                    connect_timeout_ms: 1_000,
                    retries: MODEL_RETRIES,
                    backoff_base_ms: 20,
                    backoff_max_ms: 100,
                },
                ..BrokerConfig::default()
            },
        }
    }
}

impl Drop for StallingProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One slow-model run: its end, how long it took, the budget it held while it waited.
struct SlowRun {
    status: String,
    failed: bool,
    reason: String,
    took: Duration,
    held_tokens: u64,
}

async fn slow_run(lab: &Lab) -> Result<SlowRun, String> {
    let t0 = Instant::now();
    let submitted = lab.submit(SLOW_MODEL_OPENING).await?;
    // While the provider stalls or fails, the call holds its reservation.
    let broker = lab.broker.clone();
    let finished = lab::finish(&submitted);
    tokio::pin!(finished);
    let mut held_tokens = 0;
    let report = loop {
        tokio::select! {
            report = &mut finished => break report,
            _ = tokio::time::sleep(Duration::from_millis(1)) => {
                held_tokens = held_tokens.max(broker.reserved().1.tokens);
            }
        }
    };
    let took = t0.elapsed();
    let reason = report
        .as_ref()
        .and_then(|r| {
            r.nodes
                .iter()
                .find(|n| n.id == "ask")
                .and_then(|n| n.reason.clone())
                .or_else(|| r.reason.clone())
        })
        .unwrap_or_default();
    Ok(SlowRun {
        status: report
            .as_ref()
            .map(|r| r.status.as_str().to_owned())
            .unwrap_or_else(|| "unfinished".into()),
        failed: report
            .as_ref()
            .is_some_and(|r| r.status == runloop_proto::payloads::RunStatus::Failed),
        reason,
        took,
        held_tokens,
    })
}

pub(super) async fn slow_model(env: &DrillEnv) -> Result<DrillReport, String> {
    let provider = StallingProvider::start().await?;
    let lab = Lab::boot(
        env,
        LabOptions {
            models: Some(provider.models()),
            ..LabOptions::default()
        },
    )
    .await?;
    // Run 1 meets the stall, run 2 the failures.
    let stalled = slow_run(&lab).await?;
    let after_stall = provider.requests.load(Ordering::SeqCst);
    let failing = slow_run(&lab).await?;
    let (open_after, spend_after) = lab.broker.reserved();
    let requests = provider.requests.load(Ordering::SeqCst);
    let errors = lab.broker.stats().total.errors;
    lab.stop().await;
    let mut checks = Checks::default();
    checks.expect(
        stalled.failed
            && stalled
                .reason
                .contains(&format!("timed out after {MODEL_TIMEOUT_MS} ms")),
        format!(
            "the stalled call: run {} with {:?}, want failed naming the {MODEL_TIMEOUT_MS} ms \
             timeout",
            stalled.status, stalled.reason
        ),
    );
    checks.expect(
        after_stall == STALLED_CALLS,
        format!("a stalled call was sent {after_stall} times, want once (a stall is not retried: the provider may still be working on it)"),
    );
    checks.expect(
        stalled.took >= Duration::from_millis(MODEL_TIMEOUT_MS),
        format!(
            "the stalled run ended after {:.1} ms, before the timeout",
            ms(stalled.took)
        ),
    );
    checks.expect(
        failing.failed && failing.reason.contains("500"),
        format!(
            "the failing call: run {} with {:?}, want failed naming the 500",
            failing.status, failing.reason
        ),
    );
    let retried = requests - after_stall;
    checks.expect(
        retried == u64::from(MODEL_RETRIES) + 1,
        format!(
            "the failing call was sent {retried} times, want {} (once and {MODEL_RETRIES} retries)",
            MODEL_RETRIES + 1
        ),
    );
    checks.expect(
        stalled.held_tokens > 0 && failing.held_tokens > 0,
        "no budget was held while a call waited",
    );
    checks.expect(
        open_after == 0 && spend_after.tokens == 0,
        format!(
            "budgets not released: {open_after} reservations open, {} tokens counted today",
            spend_after.tokens
        ),
    );
    Ok(Found {
        drill: Drill::SlowModel,
        injected: format!(
            "a model provider on loopback that holds its first request open and answers 500 \
             after; the broker's timeout {MODEL_TIMEOUT_MS} ms, {MODEL_RETRIES} retries"
        ),
        detect: Some(stalled.took),
        restore: Some(failing.took),
        lost: 0,
        duplicated: 0,
        runs_ok: u64::from(stalled.failed) + u64::from(failing.failed),
        runs_total: 2,
        story: format!(
            "the first run's call timed out after {MODEL_TIMEOUT_MS} ms and was not retried \
             (the provider may still be working on it); its run ended {} after {:.1} ms \
             (detect) with {:?}; the second run's call got a 500, was retried {} times and \
             ended {} after {:.1} ms (restore) with {:?}; {} and {} token(s) were reserved \
             while they waited, {open_after} reservations and {} tokens are left after; the \
             broker counted {errors} failed call(s); a run that ends failed with the \
             provider's error named counts as correct here",
            stalled.status,
            ms(stalled.took),
            stalled.reason,
            retried.saturating_sub(1),
            failing.status,
            ms(failing.took),
            failing.reason,
            stalled.held_tokens,
            failing.held_tokens,
            spend_after.tokens,
        ),
        checks,
    }
    .report())
}
