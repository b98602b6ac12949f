//! The metrics actor: samples the kernel process's own CPU time and RSS from /proc.
//!
//! Lifecycle: stateless; `pre_start` reads the page size and clock ticks once (fixed for
//! the process). Each [`MetricsMsg::Sample`] reads `/proc/self/stat` and
//! `/proc/self/statm`. Per-agent samples (from each sandbox's cgroup) belong to the agent
//! actors; this actor is the kernel's own line in `rlp status`. Mailbox bound: requests
//! are calls whose senders wait.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;

/// Linux's page size and USER_HZ on every platform Runloop supports.
const PAGE_BYTES: u64 = 4_096;
const CLOCK_TICKS_PER_S: u64 = 100;

/// One sample of the kernel process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    pub cpu_ms: u64,
    pub rss_bytes: u64,
}

/// Samples a process by pid (`None`: this process), or `None` when /proc cannot say.
pub fn sample_process(pid: Option<u32>) -> Option<ProcessSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; index 11 and 12 after the name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let statm = std::fs::read_to_string(format!("{dir}/statm")).ok()?;
    let rss_pages = statm.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(ProcessSample {
        cpu_ms: ticks * 1_000 / CLOCK_TICKS_PER_S,
        rss_bytes: rss_pages * PAGE_BYTES,
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
