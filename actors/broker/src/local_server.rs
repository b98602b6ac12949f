//! Supervises a local model-server process (command and health URL from config) as the broker's child.
//!
//! Start → poll the health URL until 2xx → wait for exit → restart with backoff, unless it has
//! restarted more than `restarts_max` times within `restart_period_ms`, then give up and report
//! `Failed` (the same intensity rule as the kernel's supervisors). The process is killed when the
//! supervisor stops or is dropped.

use crate::clock::Timer;
use crate::config::LocalServerConfig;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Interval between health polls.
const HEALTH_POLL_MS: u64 = 100;
/// Delay before a restart.
const RESTART_BACKOFF_MS: u64 = 200;

/// What the supervised server is doing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LocalServerStatus {
    Starting { restarts: u32 },
    Healthy { pid: u32, restarts: u32 },
    Failed { reason: String },
}

/// Handle to the supervising task.
#[derive(Debug)]
pub struct LocalServer {
    status: Arc<Mutex<LocalServerStatus>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl LocalServer {
    /// Starts the process and its supervisor on the current tokio runtime.
    pub fn start(config: LocalServerConfig, clock: Arc<dyn Timer>) -> Self {
        let status = Arc::new(Mutex::new(LocalServerStatus::Starting { restarts: 0 }));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(config, clock, status.clone(), stop_rx));
        Self { status, stop, task }
    }

    pub fn status(&self) -> LocalServerStatus {
        self.status.lock().expect("status lock").clone()
    }

    /// Kills the process and waits for the supervisor to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn set(status: &Mutex<LocalServerStatus>, s: LocalServerStatus) {
    *status.lock().expect("status lock") = s;
}

async fn healthy(client: &reqwest::Client, url: &str) -> bool {
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn supervise(
    config: LocalServerConfig,
    clock: Arc<dyn Timer>,
    status: Arc<Mutex<LocalServerStatus>>,
    mut stop: watch::Receiver<bool>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(2_000))
        .build()
        .expect("plain http client builds");
    let mut exits: VecDeque<u64> = VecDeque::new();
    let mut restarts = 0u32;
    loop {
        set(&status, LocalServerStatus::Starting { restarts });
        let mut child: Child = match Command::new(&config.command[0])
            .args(&config.command[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                return set(
                    &status,
                    LocalServerStatus::Failed {
                        reason: format!("spawn {}: {e}", config.command[0]),
                    },
                );
            }
        };
        let pid = child.id().unwrap_or(0);
        let deadline = clock.now_ms().saturating_add(config.health_timeout_ms);
        let mut up = false;
        while clock.now_ms() < deadline {
            if healthy(&client, &config.health_url).await {
                up = true;
                break;
            }
            if child.try_wait().ok().flatten().is_some() || *stop.borrow() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(HEALTH_POLL_MS)).await;
        }
        if up {
            set(&status, LocalServerStatus::Healthy { pid, restarts });
        }
        tokio::select! {
            _ = child.wait() => {}
            _ = stop.changed() => {
                let _ = child.kill().await;
                return;
            }
        }
        if *stop.borrow() {
            let _ = child.kill().await;
            return;
        }
        let now = clock.now_ms();
        exits.push_back(now);
        while exits
            .front()
            .is_some_and(|t| now.saturating_sub(*t) > config.restart_period_ms)
        {
            exits.pop_front();
        }
        if exits.len() > config.restarts_max as usize {
            let reason = format!(
                "exited {} times within {} ms",
                exits.len(),
                config.restart_period_ms
            );
            return set(&status, LocalServerStatus::Failed { reason });
        }
        restarts += 1;
        clock.sleep(RESTART_BACKOFF_MS).await;
    }
}
