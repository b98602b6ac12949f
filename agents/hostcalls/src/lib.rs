//! `hostcalls` (test agent): makes each host-call op once and emits every reply.
//!
//! One output per op on `out`: `{op: <name>, ok: <value>}` or
//! `{op: <name>, err: {code: <HostErrorCode>, message: <text>}}`, in the ABI's op order.
//! The invoke itself succeeds whatever the replies, so a test sees all eight.

use runloop_agent_sdk::{
    Agent, AgentError, AgentInput, ChatMessage, Ctx, HostCall, LogLevel, Value, export_agent,
};

/// The host-call prober; stateless.
#[derive(Debug, Default)]
pub struct HostCalls;

/// Every op once, with small valid arguments.
fn every_op() -> Vec<HostCall> {
    vec![
        HostCall::ClockNow,
        HostCall::RandomBytes { len: 8 },
        HostCall::Log {
            level: LogLevel::Info,
            message: "hostcalls: hello".into(),
        },
        HostCall::ModelComplete {
            model: None,
            messages: vec![ChatMessage {
                role: "user".into(),
                content: "say hi".into(),
            }],
            max_tokens: Some(8),
            temperature: Some(0.0),
        },
        HostCall::ModelEmbed {
            model: None,
            input: vec!["hello".into()],
        },
        HostCall::KbQuery {
            sql: "SELECT 1".into(),
            params: vec![],
        },
        HostCall::KbWriteEvent {
            kind: "test.hostcalls".into(),
            scope: None,
            payload: Value::Map(vec![("n".into(), 1.into())]),
            idempotency_key: Some("hostcalls-1".into()),
        },
        HostCall::ConfirmRequest {
            action: "test".into(),
            summary: "hostcalls asks".into(),
        },
    ]
}

impl Agent for HostCalls {
    fn handle(&mut self, ctx: &mut Ctx<'_>, _input: AgentInput) -> Result<(), AgentError> {
        for call in every_op() {
            let op: Value = call.op().into();
            let entry = match ctx.call(&call) {
                Ok(value) => vec![("op".into(), op), ("ok".into(), value)],
                Err(error) => {
                    let code = error
                        .code()
                        .map_or_else(|| "BadReply".to_string(), |c| format!("{c:?}"));
                    let detail = Value::Map(vec![
                        ("code".into(), code.into()),
                        ("message".into(), error.to_string().into()),
                    ]);
                    vec![("op".into(), op), ("err".into(), detail)]
                }
            };
            ctx.emit("out", &Value::Map(entry))?;
        }
        Ok(())
    }
}

export_agent!(HostCalls);

#[cfg(test)]
mod tests {
    use super::*;
    use runloop_agent_sdk::testing::TestHost;

    #[test]
    fn emits_one_reply_per_op() {
        let mut host = TestHost::not_available();
        let input = AgentInput {
            port: "in".into(),
            payload: Value::Nil,
        };
        host.invoke(&mut HostCalls, &input).unwrap();
        assert_eq!(host.calls().len(), 8);
        assert_eq!(host.outputs().len(), 8);
        let last = host.outputs()[7].payload.as_map().unwrap();
        assert_eq!(last[0].1.as_str(), Some("confirm.request"));
        assert_eq!(last[1].0.as_str(), Some("err"));
    }
}
