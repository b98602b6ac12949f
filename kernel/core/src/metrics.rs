//! The metrics actor: samples the kernel process's own CPU time and RSS from /proc.
//!
//! Lifecycle: stateless. Each [`MetricsMsg::Sample`] reads `/proc/self/stat` through the
//! same `procfs` sampler the agents use
//! ([`runloop_agent_actor::metrics::proc_usage`]). Per-agent samples (from each sandbox's cgroup) belong to the agent
//! actors; this actor is the kernel's own line in `rlp status`. Mailbox bound: requests
//! are calls whose senders wait.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;

/// One sample of the kernel process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    pub cpu_ms: u64,
    pub rss_bytes: u64,
}

/// Samples a process by pid (`None`: this process), or `None` when /proc cannot say.
pub fn sample_process(pid: Option<u32>) -> Option<ProcessSample> {
    let (rss_kb, cpu_us) = runloop_agent_actor::metrics::proc_usage(pid)?;
    Some(ProcessSample {
        cpu_ms: cpu_us / 1_000,
        rss_bytes: rss_kb * 1024,
    })
}

/// The metrics actor's requests (closed).
#[derive(Debug)]
pub enum MetricsMsg {
    Sample(RpcReplyPort<Option<ProcessSample>>),
}

/// The metrics actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics;

impl Actor for Metrics {
    type Msg = MetricsMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<MetricsMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<MetricsMsg>,
        message: MetricsMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MetricsMsg::Sample(reply) => {
                let _ = reply.send(sample_process(None));
            }
        }
        Ok(())
    }
}
