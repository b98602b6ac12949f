//! `panicker` (test agent): panics on every input, so tests see a guest trap and the
//! panic message the SDK reports through `runloop.fail` before aborting.

use runloop_agent_sdk::{Agent, AgentError, AgentInput, Ctx, export_agent};

/// The panicking agent.
#[derive(Debug, Default)]
pub struct Panicker;

impl Agent for Panicker {
    fn handle(&mut self, _ctx: &mut Ctx<'_>, input: AgentInput) -> Result<(), AgentError> {
        panic!("panicker: deliberate panic on port {}", input.port);
    }
}

export_agent!(Panicker);
