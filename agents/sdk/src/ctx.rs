//! The handle context: emitting outputs and the typed host calls, over a [`HostIo`].
//!
//! Every call is encoded as a `HostCall` (MsgPack, named fields), handed to the host, and
//! its `HostReply` decoded; `HostReply::Err` becomes [`HostCallError::Refused`] with the
//! kernel's code. The op-specific `ok` value is decoded into the op's result type.

use runloop_proto::payloads::{
    ChatMessage, ClockNowResult, ConfirmResult, EffectPerformResult, HostCall, HostReply,
    KbQueryResult, KbWriteEventResult, LogLevel, ModelCompleteResult, ModelEmbedResult,
    RANDOM_BYTES_MAX,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{EmitError, HostCallError};

/// The host side of the ABI, as bytes: the wasm build talks to the `runloop` imports,
/// tests talk to [`crate::testing::TestHost`].
pub trait HostIo {
    /// Hands one encoded `AgentOutput` to the host.
    fn output(&mut self, output: &[u8]);
    /// Sends one encoded `HostCall`, returns the encoded `HostReply`.
    fn host_call(&mut self, request: &[u8]) -> Vec<u8>;
}

/// An `AgentOutput` borrowed, so emitting does not copy the payload into a `Value`.
#[derive(Serialize)]
struct OutputRef<'a, T: ?Sized> {
    port: &'a str,
    payload: &'a T,
}

/// A `model.complete` request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompleteRequest {
    /// The model by name; `None` lets the broker choose its default.
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

impl CompleteRequest {
    /// A request with one user message and the broker's defaults.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            messages: vec![ChatMessage {
                role: "user".into(),
                content: content.into(),
            }],
            ..Self::default()
        }
    }
}

/// A `kb.write_event` request.
#[derive(Debug, Clone, PartialEq)]
pub struct KbEvent {
    pub kind: String,
    pub scope: Option<String>,
    pub payload: rmpv::Value,
    /// Makes a retried write land once.
    pub idempotency_key: Option<String>,
}

/// What `handle` works with: outputs and host calls for the current invoke.
pub struct Ctx<'h> {
    io: &'h mut dyn HostIo,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").finish_non_exhaustive()
    }
}

impl<'h> Ctx<'h> {
    /// A context over `io`; the export glue and the test host build it.
    pub fn new(io: &'h mut dyn HostIo) -> Self {
        Self { io }
    }

    /// Emits `payload` on output `port`. The host enforces the output limits and traps the
    /// guest when one is crossed.
    pub fn emit<T: Serialize + ?Sized>(
        &mut self,
        port: &str,
        payload: &T,
    ) -> Result<(), EmitError> {
        if port.is_empty() {
            return Err(EmitError::EmptyPort);
        }
        let bytes = rmp_serde::to_vec_named(&OutputRef { port, payload })
            .map_err(|e| EmitError::Encode(e.to_string()))?;
        self.io.output(&bytes);
        Ok(())
    }

    /// Makes one host call and returns the reply's untyped `ok` value.
    pub fn call(&mut self, call: &HostCall) -> Result<rmpv::Value, HostCallError> {
        let op = call.op();
        let request = rmp_serde::to_vec_named(call).map_err(|e| HostCallError::Encode {
            op,
            reason: e.to_string(),
        })?;
        let reply_bytes = self.io.host_call(&request);
        let reply: HostReply =
            rmp_serde::from_slice(&reply_bytes).map_err(|e| HostCallError::BadReply {
                op,
                reason: e.to_string(),
            })?;
        match reply {
            HostReply::Ok(value) => Ok(value),
            HostReply::Err { code, message } => Err(HostCallError::Refused { op, code, message }),
        }
    }

    fn call_typed<T: DeserializeOwned>(&mut self, call: &HostCall) -> Result<T, HostCallError> {
        let op = call.op();
        let value = self.call(call)?;
        rmpv::ext::from_value(value).map_err(|e| HostCallError::BadReply {
            op,
            reason: e.to_string(),
        })
    }

    /// The current time in Unix epoch milliseconds (recorded for replay).
    pub fn now_ms(&mut self) -> Result<u64, HostCallError> {
        let result: ClockNowResult = self.call_typed(&HostCall::ClockNow)?;
        Ok(result.now_ms)
    }

    /// `len` random bytes (at most `RANDOM_BYTES_MAX`; recorded for replay).
    pub fn random_bytes(&mut self, len: u32) -> Result<Vec<u8>, HostCallError> {
        let op = "random.bytes";
        if len > RANDOM_BYTES_MAX {
            return Err(HostCallError::Encode {
                op,
                reason: format!("{len} bytes asked, at most {RANDOM_BYTES_MAX}"),
            });
        }
        match self.call(&HostCall::RandomBytes { len })? {
            rmpv::Value::Binary(bytes) if bytes.len() == len as usize => Ok(bytes),
            other => Err(HostCallError::BadReply {
                op,
                reason: format!("expected {len} bytes, got {other}"),
            }),
        }
    }

    /// Writes one log line, counted against the agent's log byte limit.
    pub fn log(
        &mut self,
        level: LogLevel,
        message: impl Into<String>,
    ) -> Result<(), HostCallError> {
        self.call(&HostCall::Log {
            level,
            message: message.into(),
        })?;
        Ok(())
    }

    /// A chat completion through the model broker.
    pub fn model_complete(
        &mut self,
        request: CompleteRequest,
    ) -> Result<ModelCompleteResult, HostCallError> {
        self.call_typed(&HostCall::ModelComplete {
            model: request.model,
            messages: request.messages,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
        })
    }

    /// One embedding vector per text in `input`.
    pub fn model_embed(
        &mut self,
        model: Option<&str>,
        input: Vec<String>,
    ) -> Result<ModelEmbedResult, HostCallError> {
        self.call_typed(&HostCall::ModelEmbed {
            model: model.map(str::to_owned),
            input,
        })
    }

    /// Read-only SQL against the knowledge base.
    pub fn kb_query(
        &mut self,
        sql: impl Into<String>,
        params: Vec<rmpv::Value>,
    ) -> Result<KbQueryResult, HostCallError> {
        self.call_typed(&HostCall::KbQuery {
            sql: sql.into(),
            params,
        })
    }

    /// Appends one event to the knowledge base.
    pub fn kb_write_event(&mut self, event: KbEvent) -> Result<KbWriteEventResult, HostCallError> {
        self.call_typed(&HostCall::KbWriteEvent {
            kind: event.kind,
            scope: event.scope,
            payload: event.payload,
            idempotency_key: event.idempotency_key,
        })
    }

    /// Asks a person to confirm `action`; `Ok(true)` only when they approved.
    pub fn confirm(
        &mut self,
        action: impl Into<String>,
        summary: impl Into<String>,
    ) -> Result<bool, HostCallError> {
        let result: ConfirmResult = self.call_typed(&HostCall::ConfirmRequest {
            action: action.into(),
            summary: summary.into(),
        })?;
        Ok(result.approved)
    }

    /// Asks the kernel to perform one side effect (`mail.send`, `artifact.save`, …) with
    /// `payload`, exactly once per run, node and `idempotency_key`. An effect that needs a
    /// person's yes answers `ConfirmationPending` until they decide (return the error: the
    /// kernel invokes the node again once they have), then the result or `Declined`.
    pub fn effect_perform<T: Serialize + ?Sized>(
        &mut self,
        kind: &str,
        payload: &T,
        idempotency_key: &str,
    ) -> Result<EffectPerformResult, HostCallError> {
        let op = "effect.perform";
        // Named fields: executors read the payload as a map (`to`, `subject`, …).
        let encode = |reason: String| HostCallError::Encode { op, reason };
        let bytes = rmp_serde::to_vec_named(payload).map_err(|e| encode(e.to_string()))?;
        let payload =
            rmpv::decode::read_value(&mut bytes.as_slice()).map_err(|e| encode(e.to_string()))?;
        self.call_typed(&HostCall::EffectPerform {
            kind: kind.to_owned(),
            payload,
            idempotency_key: idempotency_key.to_owned(),
        })
    }
}
