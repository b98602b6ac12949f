//! Running an agent natively in tests: a host that answers host calls from a function.
//!
//! This is a test harness for agent authors, not a sandbox: it runs the agent in the test
//! process. It exercises the same byte path as the wasm build (the input, every host call,
//! reply and output are encoded and decoded as MsgPack with named fields), so an agent
//! that passes here speaks the ABI's data correctly; the real sandbox-host still decides
//! limits and capabilities.

use runloop_proto::payloads::{AgentInput, AgentOutput, HostCall, HostErrorCode, HostReply};

use crate::Agent;
use crate::ctx::{Ctx, HostIo};
use crate::error::AgentError;

/// Answers one host call.
pub type Answer = Box<dyn FnMut(&HostCall) -> HostReply>;

/// A host for native tests: records outputs and host calls, answers with a function.
pub struct TestHost {
    answer: Answer,
    outputs: Vec<AgentOutput>,
    calls: Vec<HostCall>,
}

impl std::fmt::Debug for TestHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHost")
            .field("outputs", &self.outputs)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl TestHost {
    /// A host that answers every call with `answer`.
    pub fn new(answer: impl FnMut(&HostCall) -> HostReply + 'static) -> Self {
        Self {
            answer: Box::new(answer),
            outputs: Vec::new(),
            calls: Vec::new(),
        }
    }

    /// A host like `rlp agent invoke` without a kernel: every call is `NotAvailable`.
    pub fn not_available() -> Self {
        Self::new(|call| HostReply::Err {
            code: HostErrorCode::NotAvailable,
            message: format!("{} is not available in this mode", call.op()),
        })
    }

    /// Runs one invoke of `agent` on `input`, as the wasm glue would.
    pub fn invoke<A: Agent>(
        &mut self,
        agent: &mut A,
        input: &AgentInput,
    ) -> Result<(), AgentError> {
        let bytes = rmp_serde::to_vec_named(input).expect("an AgentInput always encodes");
        let decoded: AgentInput = rmp_serde::from_slice(&bytes)
            .map_err(|e| AgentError::new(format!("runloop_handle: decode input: {e}")))?;
        let mut ctx = Ctx::new(self);
        agent.handle(&mut ctx, decoded)
    }

    /// The outputs emitted so far, decoded.
    pub fn outputs(&self) -> &[AgentOutput] {
        &self.outputs
    }

    /// The host calls made so far, decoded.
    pub fn calls(&self) -> &[HostCall] {
        &self.calls
    }
}

impl HostIo for TestHost {
    fn output(&mut self, output: &[u8]) {
        let output: AgentOutput =
            rmp_serde::from_slice(output).expect("the SDK encodes outputs as AgentOutput");
        self.outputs.push(output);
    }

    fn host_call(&mut self, request: &[u8]) -> Vec<u8> {
        let call: HostCall =
            rmp_serde::from_slice(request).expect("the SDK encodes requests as HostCall");
        let reply = (self.answer)(&call);
        self.calls.push(call);
        rmp_serde::to_vec_named(&reply).expect("a HostReply always encodes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CompleteRequest, HostCallError, KbEvent, LogLevel};
    use rmpv::Value;

    #[derive(Default)]
    struct Probe {
        seen: u32,
    }

    impl Agent for Probe {
        fn handle(&mut self, ctx: &mut Ctx<'_>, input: AgentInput) -> Result<(), AgentError> {
            self.seen += 1;
            let now = ctx.now_ms()?;
            ctx.emit("out", &Value::Map(vec![("now_ms".into(), now.into())]))?;
            ctx.emit(&input.port, &input.payload)?;
            Ok(())
        }
    }

    fn input(text: &str) -> AgentInput {
        AgentInput {
            port: "in".into(),
            payload: Value::Map(vec![("text".into(), text.into())]),
        }
    }

    fn ok(value: Value) -> HostReply {
        HostReply::Ok(value)
    }

    #[test]
    fn outputs_and_calls_cross_as_bytes() {
        let mut host = TestHost::new(|_| ok(Value::Map(vec![("now_ms".into(), 42u64.into())])));
        let mut agent = Probe::default();
        host.invoke(&mut agent, &input("a")).unwrap();
        host.invoke(&mut agent, &input("b")).unwrap();
        assert_eq!(agent.seen, 2);
        assert_eq!(host.calls(), &[HostCall::ClockNow, HostCall::ClockNow]);
        assert_eq!(host.outputs().len(), 4);
        assert_eq!(host.outputs()[1].port, "in");
        assert_eq!(host.outputs()[3].payload, input("b").payload);
    }

    #[test]
    fn refused_calls_carry_the_kernel_code() {
        let mut host = TestHost::not_available();
        let mut agent = Probe::default();
        let err = host.invoke(&mut agent, &input("a")).unwrap_err();
        assert_eq!(
            err.message(),
            "clock.now: NotAvailable: clock.now is not available in this mode"
        );
        assert!(host.outputs().is_empty());
    }

    /// An agent that makes one host call chosen by the test and keeps its result.
    #[derive(Default)]
    struct OneCall {
        result: Option<Result<String, HostCallError>>,
        which: &'static str,
    }

    impl Agent for OneCall {
        fn handle(&mut self, ctx: &mut Ctx<'_>, _input: AgentInput) -> Result<(), AgentError> {
            let result = match self.which {
                "random" => ctx.random_bytes(4).map(|b| format!("{b:?}")),
                "random_big" => ctx.random_bytes(5000).map(|b| format!("{b:?}")),
                "log" => ctx.log(LogLevel::Info, "hi").map(|()| "logged".into()),
                "complete" => ctx
                    .model_complete(CompleteRequest::user("hi"))
                    .map(|r| r.text),
                "embed" => ctx
                    .model_embed(None, vec!["a".into()])
                    .map(|r| format!("{:?}", r.vectors)),
                "query" => ctx
                    .kb_query("SELECT 1", vec![])
                    .map(|r| format!("{:?}", r.columns)),
                "write" => ctx
                    .kb_write_event(KbEvent {
                        kind: "note".into(),
                        scope: None,
                        payload: Value::Nil,
                        idempotency_key: None,
                    })
                    .map(|r| r.seq.to_string()),
                "confirm" => ctx.confirm("send", "an email").map(|b| b.to_string()),
                other => panic!("unknown call {other}"),
            };
            self.result = Some(result);
            Ok(())
        }
    }

    fn one_call(which: &'static str, reply: HostReply) -> Result<String, HostCallError> {
        let mut host = TestHost::new(move |_| reply.clone());
        let mut agent = OneCall {
            result: None,
            which,
        };
        host.invoke(&mut agent, &input("x")).unwrap();
        agent.result.unwrap()
    }

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn typed_results_decode() {
        assert_eq!(
            one_call("random", ok(Value::Binary(vec![1, 2, 3, 4]))).unwrap(),
            "[1, 2, 3, 4]"
        );
        assert_eq!(one_call("log", ok(Value::Nil)).unwrap(), "logged");
        let completion = map(&[
            ("text", "hello".into()),
            ("provider", "offline".into()),
            ("model", "m".into()),
            ("tokens_in", 1.into()),
            ("tokens_out", 2.into()),
        ]);
        assert_eq!(one_call("complete", ok(completion)).unwrap(), "hello");
        let vectors = map(&[
            (
                "vectors",
                Value::Array(vec![Value::Array(vec![Value::F32(0.5)])]),
            ),
            ("provider", "offline".into()),
            ("model", "m".into()),
        ]);
        assert_eq!(one_call("embed", ok(vectors)).unwrap(), "[[0.5]]");
        let table = map(&[
            ("columns", Value::Array(vec!["one".into()])),
            ("rows", Value::Array(vec![])),
        ]);
        assert_eq!(one_call("query", ok(table)).unwrap(), "[\"one\"]");
        let written = map(&[("seq", 7.into()), ("hash", "ab".into())]);
        assert_eq!(one_call("write", ok(written)).unwrap(), "7");
        let approved = map(&[("approved", true.into())]);
        assert_eq!(one_call("confirm", ok(approved)).unwrap(), "true");
    }

    #[test]
    fn bad_replies_are_typed_errors() {
        let short = one_call("random", ok(Value::Binary(vec![1]))).unwrap_err();
        assert!(matches!(
            short,
            HostCallError::BadReply {
                op: "random.bytes",
                ..
            }
        ));
        let wrong_shape = one_call("complete", ok(Value::Nil)).unwrap_err();
        assert!(matches!(
            wrong_shape,
            HostCallError::BadReply {
                op: "model.complete",
                ..
            }
        ));
        let too_many = one_call("random_big", ok(Value::Nil)).unwrap_err();
        assert!(matches!(
            too_many,
            HostCallError::Encode {
                op: "random.bytes",
                ..
            }
        ));
        let declined = one_call(
            "confirm",
            HostReply::Err {
                code: HostErrorCode::Declined,
                message: "no".into(),
            },
        )
        .unwrap_err();
        assert_eq!(declined.code(), Some(HostErrorCode::Declined));
        assert_eq!(declined.op(), "confirm.request");
    }

    #[test]
    fn empty_port_is_refused() {
        #[derive(Default)]
        struct NoPort;
        impl Agent for NoPort {
            fn handle(&mut self, ctx: &mut Ctx<'_>, _input: AgentInput) -> Result<(), AgentError> {
                ctx.emit("", &Value::Nil)?;
                Ok(())
            }
        }
        let err = TestHost::not_available()
            .invoke(&mut NoPort, &input("x"))
            .unwrap_err();
        assert_eq!(err.message(), "emit: empty port name");
    }
}
