//! `echo`: emits every input back on `out`, unchanged.
//!
//! When the input map has `log: true` it also exercises two host calls: it logs the
//! input's `text` at info level and adds `logged_at_ms` (from `clock.now`) to the echoed
//! map. A refused host call fails the invoke with the kernel's reason.

use runloop_agent_sdk::{Agent, AgentError, AgentInput, Ctx, LogLevel, Value, export_agent};

/// The echo agent; stateless.
#[derive(Debug, Default)]
pub struct Echo;

fn field<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

impl Agent for Echo {
    fn handle(&mut self, ctx: &mut Ctx<'_>, input: AgentInput) -> Result<(), AgentError> {
        let mut payload = input.payload;
        if let Value::Map(entries) = &mut payload
            && field(entries, "log").and_then(Value::as_bool) == Some(true)
        {
            let text = field(entries, "text").and_then(Value::as_str).unwrap_or("");
            ctx.log(LogLevel::Info, format!("echo: {text}"))?;
            let now_ms = ctx.now_ms()?;
            entries.push(("logged_at_ms".into(), now_ms.into()));
        }
        ctx.emit("out", &payload)?;
        Ok(())
    }
}

export_agent!(Echo);

#[cfg(test)]
mod tests {
    use super::*;
    use runloop_agent_sdk::testing::TestHost;
    use runloop_agent_sdk::{HostCall, HostReply};

    fn input(entries: Vec<(&str, Value)>) -> AgentInput {
        AgentInput {
            port: "in".into(),
            payload: Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect()),
        }
    }

    #[test]
    fn echoes_without_host_calls() {
        let mut host = TestHost::not_available();
        let message = input(vec![("text", "hi".into())]);
        host.invoke(&mut Echo, &message).unwrap();
        assert_eq!(host.outputs().len(), 1);
        assert_eq!(host.outputs()[0].port, "out");
        assert_eq!(host.outputs()[0].payload, message.payload);
        assert!(host.calls().is_empty());
    }

    #[test]
    fn logs_and_stamps_when_asked() {
        let mut host = TestHost::new(|call| match call {
            HostCall::ClockNow => HostReply::Ok(Value::Map(vec![("now_ms".into(), 5u64.into())])),
            _ => HostReply::Ok(Value::Nil),
        });
        host.invoke(
            &mut Echo,
            &input(vec![("text", "hi".into()), ("log", true.into())]),
        )
        .unwrap();
        assert_eq!(host.calls().len(), 2);
        assert!(matches!(&host.calls()[0], HostCall::Log { message, .. } if message == "echo: hi"));
        let out = host.outputs()[0].payload.as_map().unwrap();
        assert_eq!(field(out, "logged_at_ms").and_then(Value::as_u64), Some(5));
    }

    #[test]
    fn a_refused_log_fails_the_invoke() {
        let mut host = TestHost::not_available();
        let err = host
            .invoke(
                &mut Echo,
                &input(vec![("text", "hi".into()), ("log", true.into())]),
            )
            .unwrap_err();
        assert_eq!(
            err.message(),
            "log: NotAvailable: log is not available in this mode"
        );
        assert!(host.outputs().is_empty());
    }
}
