//! Ending a kernel: [`Kernel::shutdown`] (the tree stopped and waited for, the warm
//! sandboxes ended, OpenTelemetry flushed), [`Kernel::shutdown_shared`] for a kernel other
//! tasks may still hold for a moment, and the warm pool's sweeper that ends idle sandboxes
//! while the kernel runs.

use std::sync::Arc;
use std::time::Duration;

use super::{Kernel, SHUTDOWN_TIMEOUT_MS};

impl Kernel {
    /// [`Kernel::shutdown`] for a kernel other tasks may still hold for a moment (a
    /// finished run's last attempt task, a timer): waits up to `wait` for them to let go.
    /// Past it, stops the tree, ends the warm sandboxes and flushes the export without
    /// waiting for the tree (returns `false`); the rest ends with the last holder.
    pub async fn shutdown_shared(kernel: Arc<Kernel>, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        let mut kernel = kernel;
        loop {
            match Arc::try_unwrap(kernel) {
                Ok(owned) => {
                    owned.shutdown().await;
                    return true;
                }
                Err(shared) if tokio::time::Instant::now() < deadline => {
                    kernel = shared;
                    tokio::time::sleep(Duration::from_millis(SHUTDOWN_HOLDERS_POLL_MS)).await;
                }
                Err(shared) => {
                    shared.root.stop(Some("kernel shutdown".into()));
                    shared.close_warm().await;
                    if let Some(otel) = &shared.otel {
                        otel.shutdown_async().await;
                    }
                    return false;
                }
            }
        }
    }

    /// Closes the warm sandbox pool (blocking work, off the async threads).
    async fn close_warm(&self) {
        if let Some(pool) = self.warm.clone()
            && let Err(e) = tokio::task::spawn_blocking(move || pool.close()).await
        {
            tracing::error!("close the warm sandboxes: {e}");
        }
    }

    /// Stops the whole tree and waits for it, then flushes OpenTelemetry export.
    pub async fn shutdown(self) {
        if let Some(task) = &self.router_task {
            task.abort();
        }
        if let Some(task) = &self.warm_sweeper {
            task.abort();
        }
        if let Some(task) = &self.trimmer {
            task.abort();
        }
        // Closed first: the agents stopping below shut their sandboxes down instead of
        // giving them back, and no spare is left to outlive the parent group.
        self.close_warm().await;
        for entry in self.agents.lock().expect("agents lock").values() {
            entry.stop_pump();
        }
        let timeout = Duration::from_millis(SHUTDOWN_TIMEOUT_MS);
        self.root.stop(Some("kernel shutdown".into()));
        let _ = tokio::time::timeout(timeout, self.join).await;
        // Each agent removed its own group as its actor stopped; the parent goes last.
        if matches!(
            runloop_sandbox::cgroup::detect(),
            runloop_sandbox::cgroup::CgroupSupport::V1 | runloop_sandbox::cgroup::CgroupSupport::V2
        ) {
            let _ = runloop_sandbox::cgroup::remove_parent(&self.cgroup_parent);
        }
        if let Some(otel) = &self.otel {
            otel.shutdown_async().await;
        }
    }
}

/// How often [`Kernel::shutdown_shared`] looks whether the kernel is let go.
const SHUTDOWN_HOLDERS_POLL_MS: u64 = 10;

/// Ends warm sandboxes idle past `runloop_agent_actor::warm::IDLE_MS` even when no agent starts
/// or stops to sweep them; ends with the pool.
pub(super) fn spawn_warm_sweeper(
    pool: runloop_agent_actor::warm::WeakWarmPool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let period = Duration::from_millis(runloop_agent_actor::warm::IDLE_MS / 2);
        loop {
            tokio::time::sleep(period).await;
            let Some(pool) = pool.upgrade() else {
                return;
            };
            // Teardown goes to threads of its own; this only takes the lock.
            pool.sweep();
        }
    })
}
