//! Providers behind one closed interface: OpenAI-compatible HTTP, the offline default, and replay.

pub mod http;
pub mod offline;
pub mod replay;

use crate::types::{CompleteRequest, CompleteResponse, EmbedRequest, EmbedResponse, RequestHash};
use tokio::sync::mpsc;

/// Typed provider failures; messages never contain secrets.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    #[error("authentication failed (http {status}): check the provider's secret")]
    Auth { status: u16 },
    #[error("rate limited after retries (retry-after {retry_after_ms:?} ms)")]
    RateLimited { retry_after_ms: Option<u64> },
    #[error("request too long for the model's context: {message}")]
    ContextTooLong { message: String },
    #[error("not supported by this provider (http {status}): {message}")]
    Unsupported { status: u16, message: String },
    #[error("server error (http {status}) after retries: {message}")]
    Server { status: u16, message: String },
    #[error("request rejected (http {status}): {message}")]
    BadRequest { status: u16, message: String },
    #[error("timed out after {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("connection failed or dropped after retries: {message}")]
    Network { message: String },
    #[error("stream dropped mid-answer (not retried, deltas were already delivered): {message}")]
    StreamDropped { message: String },
    #[error("response could not be decoded: {message}")]
    Decode { message: String },
    #[error("response larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("replay has no recorded response for request {hash}")]
    ReplayMiss { hash: RequestHash },
    #[error("replay record for request {hash} is a different kind of response")]
    ReplayKind { hash: RequestHash },
    #[error("provider unavailable: {0}")]
    Secret(crate::secrets::SecretError),
    #[error("{what} is not supported by the {provider} provider")]
    NotOffered {
        provider: &'static str,
        what: &'static str,
    },
}

/// Rough token count: 4 bytes a token, at least 1 per non-empty text.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// Estimated prompt tokens of a completion request (content plus 4 per message for framing).
pub fn estimate_prompt_tokens(req: &CompleteRequest) -> u64 {
    let tools: u64 = req
        .tools
        .iter()
        .map(|t| estimate_tokens(&t.parameters.to_string()) + estimate_tokens(&t.description))
        .sum();
    req.messages
        .iter()
        .map(|m| estimate_tokens(&m.content) + 4)
        .sum::<u64>()
        + tools
}

/// One configured provider. A closed enum: the broker never dispatches on strings.
#[derive(Debug)]
pub enum Provider {
    Http(http::HttpProvider),
    Offline(offline::OfflineProvider),
    Replay(replay::ReplayProvider),
    /// An HTTP provider whose API key could not be resolved; every call fails with the reason.
    Unavailable(crate::secrets::SecretError),
}

impl Provider {
    /// Chat completion; streamed text deltas go to `stream` when given.
    pub async fn complete(
        &self,
        req: &CompleteRequest,
        model: &str,
        stream: Option<&mpsc::Sender<String>>,
    ) -> Result<CompleteResponse, ProviderError> {
        match self {
            Provider::Http(p) => p.complete(req, model, stream).await,
            Provider::Offline(p) => {
                let r = p.complete(req);
                if let Some(tx) = stream {
                    // A closed receiver only means nobody watches the stream.
                    let _ = tx.send(r.content.clone()).await;
                }
                Ok(r)
            }
            Provider::Unavailable(e) => Err(ProviderError::Secret(e.clone())),
            Provider::Replay(p) => {
                let r = p.complete(req)?;
                if let Some(tx) = stream {
                    let _ = tx.send(r.content.clone()).await;
                }
                Ok(r)
            }
        }
    }

    pub async fn embed(
        &self,
        req: &EmbedRequest,
        model: &str,
    ) -> Result<EmbedResponse, ProviderError> {
        match self {
            Provider::Http(p) => p.embed(req, model).await,
            Provider::Offline(p) => Ok(p.embed(req)),
            Provider::Replay(p) => p.embed(req),
            Provider::Unavailable(e) => Err(ProviderError::Secret(e.clone())),
        }
    }

    pub async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        match self {
            Provider::Http(p) => p.list_models().await,
            Provider::Offline(_) => Ok(offline::MODELS.iter().map(|m| (*m).to_owned()).collect()),
            Provider::Replay(p) => Ok(p.models()),
            Provider::Unavailable(e) => Err(ProviderError::Secret(e.clone())),
        }
    }

    /// True for providers that answer from records and so cost nothing.
    pub fn is_replay(&self) -> bool {
        matches!(self, Provider::Replay(_))
    }
}
