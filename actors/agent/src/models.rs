//! `model.complete` and `model.embed` host calls, answered by the model broker singleton
//! (its slot in [`crate::Services`]) when it runs in the kernel's tree; `NotAvailable`
//! otherwise.
//!
//! The broker enforces budgets, caches and accounts per agent; the call context names the
//! agent so `rlp broker stats` can attribute the cost, and carries the run's budgets when
//! the call comes from a node of a run ([`crate::budgets`]).

use std::time::Duration;

use ractor::ActorRef;
use ractor::rpc::CallResult;
use runloop_broker::{
    BrokerError, BrokerMsg, CallContext, ChatMessage, CompleteRequest, EmbedRequest, Role,
};
use runloop_proto::payloads::{
    self, HostErrorCode, HostReply, ModelCompleteResult, ModelEmbedResult,
};
use tokio::runtime::Handle;

use crate::handler::{err, ok};

/// How long a host call waits for the broker (a real model may take a while).
pub const MODEL_CALL_TIMEOUT_MS: u64 = 120_000;

fn broker(op: &str, slot: Option<ActorRef<BrokerMsg>>) -> Result<ActorRef<BrokerMsg>, HostReply> {
    slot.ok_or_else(|| {
        err(
            HostErrorCode::NotAvailable,
            format!("{op} is not available: the model broker is not running in this kernel"),
        )
    })
}

/// The broker's error as the agent sees it (the mapping of `docs/broker.md`).
fn code_of(e: &BrokerError) -> HostErrorCode {
    match e {
        BrokerError::Invalid(_) | BrokerError::UnknownProvider { .. } => {
            HostErrorCode::InvalidRequest
        }
        BrokerError::Budget(_) => HostErrorCode::LimitExceeded,
        BrokerError::Provider { .. } => HostErrorCode::Failed,
        BrokerError::Busy { .. } | BrokerError::Unavailable => HostErrorCode::NotAvailable,
    }
}

/// Answers `model.complete` through the broker.
pub(crate) fn complete(
    runtime: &Handle,
    slot: Option<ActorRef<BrokerMsg>>,
    ctx: CallContext,
    model: Option<String>,
    messages: Vec<payloads::ChatMessage>,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
) -> HostReply {
    let broker = match broker("model.complete", slot) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let mut chat = Vec::with_capacity(messages.len());
    for m in messages {
        match m.role.parse::<Role>() {
            Ok(role) => chat.push(ChatMessage::new(role, m.content)),
            Err(e) => {
                return err(
                    HostErrorCode::InvalidRequest,
                    format!("model.complete: {e}"),
                );
            }
        }
    }
    let req = CompleteRequest {
        model: model.unwrap_or_default(),
        messages: chat,
        max_tokens,
        temperature,
        ..CompleteRequest::default()
    };
    let timeout = Some(Duration::from_millis(MODEL_CALL_TIMEOUT_MS));
    let answer = runtime.block_on(broker.call(
        |reply| BrokerMsg::Complete {
            req,
            ctx,
            stream: None,
            reply,
        },
        timeout,
    ));
    match answer {
        Ok(CallResult::Success(Ok(a))) => ok(&ModelCompleteResult {
            text: a.response.content,
            provider: a.response.provider.to_string(),
            model: a.response.model,
            tokens_in: u32::try_from(a.response.usage.tokens_in).unwrap_or(u32::MAX),
            tokens_out: u32::try_from(a.response.usage.tokens_out).unwrap_or(u32::MAX),
        }),
        Ok(CallResult::Success(Err(e))) => err(code_of(&e), format!("model.complete: {e}")),
        _ => err(
            HostErrorCode::Failed,
            "model.complete: the model broker did not answer".into(),
        ),
    }
}

/// Answers `model.embed` through the broker.
pub(crate) fn embed(
    runtime: &Handle,
    slot: Option<ActorRef<BrokerMsg>>,
    ctx: CallContext,
    model: Option<String>,
    input: Vec<String>,
) -> HostReply {
    let broker = match broker("model.embed", slot) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let req = EmbedRequest {
        model: model.unwrap_or_default(),
        inputs: input,
    };
    let timeout = Some(Duration::from_millis(MODEL_CALL_TIMEOUT_MS));
    let answer =
        runtime.block_on(broker.call(|reply| BrokerMsg::Embed { req, ctx, reply }, timeout));
    match answer {
        Ok(CallResult::Success(Ok(a))) => ok(&ModelEmbedResult {
            vectors: a.response.vectors,
            provider: a.response.provider.to_string(),
            model: a.response.model,
        }),
        Ok(CallResult::Success(Err(e))) => err(code_of(&e), format!("model.embed: {e}")),
        _ => err(
            HostErrorCode::Failed,
            "model.embed: the model broker did not answer".into(),
        ),
    }
}
