//! `flaky` (test agent): fails the first attempts of a node, then succeeds; for the
//! openings engine's retry tests and the retry example.
//!
//! It reads a node invoke (`{node, attempt, with, inputs, goals}`, see
//! `docs/agent-abi.md`). While `attempt <= with.fail_attempts` it fails with a retryable
//! error; otherwise it emits `{node, attempt, inputs}` on `out`. `with.spin` (a count,
//! at most `SPIN_MAX`) busy-loops first, so a node takes measurable time without a clock
//! (guest clocks are frozen). `with.model_max_tokens` makes one `model.complete` call
//! with that many tokens at most (for the engine's budget tests) and adds its `tokens_out`
//! to the output; a refused call fails the invoke (not retryably) with the broker's reason.
//! Any other input is echoed on `out` unchanged.

use runloop_agent_sdk::{Agent, AgentError, AgentInput, CompleteRequest, Ctx, Value, export_agent};

/// Most spin iterations one invoke may ask for.
const SPIN_MAX: u64 = 2_000_000_000;

/// The flaky agent; stateless (the attempt number comes in the input).
#[derive(Debug, Default)]
pub struct Flaky;

fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn spin(count: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..count.min(SPIN_MAX) {
        acc = std::hint::black_box(acc.wrapping_mul(31).wrapping_add(i));
    }
    acc
}

impl Agent for Flaky {
    fn handle(&mut self, ctx: &mut Ctx<'_>, input: AgentInput) -> Result<(), AgentError> {
        let payload = input.payload;
        let (Some(attempt), Some(with)) = (
            field(&payload, "attempt").and_then(Value::as_u64),
            field(&payload, "with"),
        ) else {
            ctx.emit("out", &payload)?;
            return Ok(());
        };
        spin(field(with, "spin").and_then(Value::as_u64).unwrap_or(0));
        let fail_attempts = field(with, "fail_attempts")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if attempt <= fail_attempts {
            return Err(AgentError::retryable(format!(
                "flaky: attempt {attempt} of the first {fail_attempts} fails"
            )));
        }
        let mut model_tokens = Value::Nil;
        if let Some(max) = field(with, "model_max_tokens").and_then(Value::as_u64) {
            let request = CompleteRequest {
                max_tokens: Some(u32::try_from(max).unwrap_or(u32::MAX)),
                temperature: Some(0.0),
                // Node and attempt in the prompt: each call is its own request, not a
                // cache hit of another node's.
                ..CompleteRequest::user(format!(
                    "flaky: node {}, attempt {attempt}: say something short",
                    field(&payload, "node")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                ))
            };
            let answer = ctx
                .model_complete(request)
                .map_err(|e| AgentError::new(format!("flaky: {e}")))?;
            model_tokens = answer.tokens_out.into();
        }
        let out = Value::Map(vec![
            (
                "node".into(),
                field(&payload, "node").cloned().unwrap_or(Value::Nil),
            ),
            ("model_tokens_out".into(), model_tokens),
            ("attempt".into(), attempt.into()),
            (
                "inputs".into(),
                field(&payload, "inputs").cloned().unwrap_or(Value::Nil),
            ),
        ]);
        ctx.emit("out", &out)?;
        Ok(())
    }
}

export_agent!(Flaky);

#[cfg(test)]
mod tests {
    use super::*;
    use runloop_agent_sdk::HostCall;
    use runloop_agent_sdk::testing::TestHost;

    fn invoke(attempt: u64, fail_attempts: u64) -> AgentInput {
        AgentInput {
            port: "in".into(),
            payload: Value::Map(vec![
                ("node".into(), "n".into()),
                ("attempt".into(), attempt.into()),
                (
                    "with".into(),
                    Value::Map(vec![("fail_attempts".into(), fail_attempts.into())]),
                ),
                ("inputs".into(), Value::Map(vec![])),
                ("goals".into(), Value::Array(vec![])),
            ]),
        }
    }

    #[test]
    fn fails_retryably_then_succeeds() {
        let mut host = TestHost::not_available();
        let err = host.invoke(&mut Flaky, &invoke(1, 2)).unwrap_err();
        assert_eq!(
            err.message(),
            "retryable: flaky: attempt 1 of the first 2 fails"
        );
        let mut host = TestHost::not_available();
        host.invoke(&mut Flaky, &invoke(3, 2)).unwrap();
        let out = &host.outputs()[0];
        assert_eq!(out.port, "out");
        assert_eq!(
            field(&out.payload, "attempt").and_then(Value::as_u64),
            Some(3)
        );
    }

    #[test]
    fn a_refused_model_call_fails_the_invoke_with_the_reason() {
        let mut host = TestHost::not_available();
        let mut input = invoke(1, 0);
        if let Value::Map(entries) = &mut input.payload
            && let Some((_, Value::Map(with))) =
                entries.iter_mut().find(|(k, _)| k.as_str() == Some("with"))
        {
            with.push(("model_max_tokens".into(), 64.into()));
        }
        let err = host.invoke(&mut Flaky, &input).unwrap_err();
        assert!(err.message().starts_with("flaky: "), "{}", err.message());
        assert!(!err.message().starts_with("retryable: "));
        assert!(matches!(
            host.calls()[0],
            HostCall::ModelComplete {
                max_tokens: Some(64),
                ..
            }
        ));
    }

    #[test]
    fn other_inputs_are_echoed() {
        let mut host = TestHost::not_available();
        let message = AgentInput {
            port: "in".into(),
            payload: "plain".into(),
        };
        host.invoke(&mut Flaky, &message).unwrap();
        assert_eq!(host.outputs()[0].payload, message.payload);
    }
}
