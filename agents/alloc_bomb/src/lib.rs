//! `alloc_bomb` (test agent): grows a heap allocation until the host's memory limit stops
//! it. The expected end is a trap (allocation failure aborts), never an output.

use runloop_agent_sdk::{Agent, AgentError, AgentInput, Ctx, Value, export_agent};

/// Bytes added per step.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Most steps: 8 GiB in total, twice wasm32's whole address space, so the loop always
/// meets a limit before it ends.
const CHUNKS_MAX: usize = 8 * 1024;

/// The allocating agent; keeps what it allocated so nothing is freed early.
#[derive(Debug, Default)]
pub struct AllocBomb {
    held: Vec<Vec<u8>>,
}

impl Agent for AllocBomb {
    fn handle(&mut self, ctx: &mut Ctx<'_>, _input: AgentInput) -> Result<(), AgentError> {
        for step in 0..CHUNKS_MAX {
            // Touch every page so the memory is really committed, not just reserved.
            self.held
                .push(vec![u8::try_from(step % 251).unwrap_or(0); CHUNK_BYTES]);
        }
        let held = u64::try_from(self.held.len()).unwrap_or(u64::MAX);
        ctx.emit("out", &Value::Map(vec![("chunks".into(), held.into())]))?;
        Ok(())
    }
}

export_agent!(AllocBomb);
