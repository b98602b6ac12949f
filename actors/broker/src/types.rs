//! Request, response, usage and record types of the broker's public API, and the canonical request hash.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Most chat messages one completion request may carry.
pub const MESSAGES_MAX: usize = 512;
/// Most text bytes (all messages, tools, inputs) in one request.
pub const REQUEST_TEXT_BYTES_MAX: usize = 4 << 20;
/// Most inputs in one embedding request.
pub const EMBED_INPUTS_MAX: usize = 256;
/// Most tools one completion request may offer.
pub const TOOLS_MAX: usize = 64;
/// Largest `max_tokens` a request may ask for.
pub const MAX_TOKENS_MAX: u32 = 32_768;
/// `max_tokens` used when a request does not say.
pub const MAX_TOKENS_DEFAULT: u32 = 256;
/// Most stop sequences in one request.
pub const STOPS_MAX: usize = 8;
/// Version of the [`Record`] layout; bump on any change to the canonical request encoding.
pub const RECORD_VERSION: u32 = 1;

/// Domain separation for request hashes, so no other BLAKE3 use in Runloop can collide.
const REQUEST_HASH_DOMAIN: &[u8] = b"runloop.broker.request.v1\0";

/// Who wrote a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl std::str::FromStr for Role {
    type Err = RequestError;

    /// Parses the wire names `system`, `user`, `assistant`, `tool` (host-call arguments).
    fn from_str(s: &str) -> Result<Self, RequestError> {
        match s {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            "tool" => Ok(Role::Tool),
            _ => Err(RequestError::Role {
                role: s.chars().take(32).collect(),
            }),
        }
    }
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A tool (function) the model may call, in OpenAI's function-calling shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// A tool call the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// Arguments exactly as the model wrote them (JSON text, not validated).
    pub arguments: String,
}

/// A chat completion request as an agent makes it (`model.complete`).
///
/// `model` is the name the agent asks for; routes map it to a provider and target model.
/// An empty `model` means the configured default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompleteRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub seed: Option<u64>,
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
}

/// An embedding request (`model.embed`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbedRequest {
    pub model: String,
    pub inputs: Vec<String>,
}

/// Either kind of request; what a [`Record`] stores and what the request hash covers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ModelRequest {
    Complete(CompleteRequest),
    Embed(EmbedRequest),
}

/// Why a request was rejected before routing.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("request has no messages")]
    NoMessages,
    #[error("request has {count} messages, more than {max}")]
    TooManyMessages { count: usize, max: usize },
    #[error("request has {bytes} bytes of text, more than {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("max_tokens {value} is outside 1..={max}")]
    MaxTokens { value: u32, max: u32 },
    #[error("temperature must be a number in 0..=2")]
    Temperature,
    #[error("request has {count} stop sequences, more than {max}")]
    TooManyStops { count: usize, max: usize },
    #[error("request has {count} tools, more than {max}")]
    TooManyTools { count: usize, max: usize },
    #[error("unknown role {role:?} (system, user, assistant or tool)")]
    Role { role: String },
    #[error("embedding request has no inputs")]
    NoInputs,
    #[error("embedding request has {count} inputs, more than {max}")]
    TooManyInputs { count: usize, max: usize },
}

impl CompleteRequest {
    /// A one-message user prompt for `model`.
    pub fn prompt(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            messages: vec![ChatMessage::new(Role::User, prompt)],
            ..Self::default()
        }
    }

    /// Checks every bound; the broker calls this before routing.
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.messages.is_empty() {
            return Err(RequestError::NoMessages);
        }
        if self.messages.len() > MESSAGES_MAX {
            return Err(RequestError::TooManyMessages {
                count: self.messages.len(),
                max: MESSAGES_MAX,
            });
        }
        if let Some(value) = self.max_tokens
            && !(1..=MAX_TOKENS_MAX).contains(&value)
        {
            return Err(RequestError::MaxTokens {
                value,
                max: MAX_TOKENS_MAX,
            });
        }
        if let Some(t) = self.temperature
            && !(t.is_finite() && (0.0..=2.0).contains(&t))
        {
            return Err(RequestError::Temperature);
        }
        if self.stop.len() > STOPS_MAX {
            return Err(RequestError::TooManyStops {
                count: self.stop.len(),
                max: STOPS_MAX,
            });
        }
        if self.tools.len() > TOOLS_MAX {
            return Err(RequestError::TooManyTools {
                count: self.tools.len(),
                max: TOOLS_MAX,
            });
        }
        let bytes = self.text_bytes();
        if bytes > REQUEST_TEXT_BYTES_MAX {
            return Err(RequestError::TooLarge {
                bytes,
                max: REQUEST_TEXT_BYTES_MAX,
            });
        }
        Ok(())
    }

    /// Bytes of text the request carries (messages, stops, tool specs).
    pub fn text_bytes(&self) -> usize {
        let messages: usize = self.messages.iter().map(|m| m.content.len()).sum();
        let stops: usize = self.stop.iter().map(String::len).sum();
        let tools: usize = self
            .tools
            .iter()
            .map(|t| t.name.len() + t.description.len() + t.parameters.to_string().len())
            .sum();
        messages + stops + tools
    }

    /// `max_tokens` or the default.
    pub fn max_tokens_or_default(&self) -> u32 {
        self.max_tokens.unwrap_or(MAX_TOKENS_DEFAULT)
    }

    /// True when the same request always gets the same answer (temperature 0 or a fixed seed),
    /// which is when caching it is honest.
    pub fn is_deterministic(&self) -> bool {
        self.temperature == Some(0.0) || self.seed.is_some()
    }
}

impl EmbedRequest {
    /// Checks every bound; the broker calls this before routing.
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.inputs.is_empty() {
            return Err(RequestError::NoInputs);
        }
        if self.inputs.len() > EMBED_INPUTS_MAX {
            return Err(RequestError::TooManyInputs {
                count: self.inputs.len(),
                max: EMBED_INPUTS_MAX,
            });
        }
        let bytes: usize = self.inputs.iter().map(String::len).sum();
        if bytes > REQUEST_TEXT_BYTES_MAX {
            return Err(RequestError::TooLarge {
                bytes,
                max: REQUEST_TEXT_BYTES_MAX,
            });
        }
        Ok(())
    }
}

impl ModelRequest {
    /// The unambiguous byte encoding the hash covers: a domain tag, then MessagePack of the
    /// request with positional fields. MessagePack length-prefixes every string and array, so
    /// two different requests can never encode to the same bytes (no concatenation collisions).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = REQUEST_HASH_DOMAIN.to_vec();
        let body = match self {
            // JSON objects in tool schemas are re-keyed in sorted order first, so the hash does
            // not depend on key order (serde_json may preserve insertion order).
            ModelRequest::Complete(r) if !r.tools.is_empty() => {
                let mut canon = r.clone();
                canon
                    .tools
                    .iter_mut()
                    .for_each(|t| t.parameters = sorted_json(&t.parameters));
                rmp_serde::to_vec(&(0u8, canon))
            }
            ModelRequest::Complete(r) => rmp_serde::to_vec(&(0u8, r)),
            ModelRequest::Embed(r) => rmp_serde::to_vec(&(1u8, r)),
        };
        // Encoding plain structs of strings, numbers and JSON values cannot fail.
        out.extend(body.expect("canonical encoding of a request"));
        out
    }

    /// BLAKE3 of [`Self::canonical_bytes`].
    pub fn hash(&self) -> RequestHash {
        RequestHash(*blake3::hash(&self.canonical_bytes()).as_bytes())
    }

    /// The model name the request asked for.
    pub fn model(&self) -> &str {
        match self {
            ModelRequest::Complete(r) => &r.model,
            ModelRequest::Embed(r) => &r.model,
        }
    }
}

/// `v` with every object's keys inserted in sorted order.
fn sorted_json(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted_json(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted_json).collect()),
        other => other.clone(),
    }
}

/// BLAKE3 hash of a canonical request; printed and serialised as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestHash(pub [u8; 32]);

impl RequestHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Display for RequestHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RequestHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestHash({})", self.to_hex())
    }
}

impl Serialize for RequestHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for RequestHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("request hash must be 64 hex digits"))
    }
}

/// What kind of engine answered; offline engines say plainly that they are not models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// An OpenAI-compatible HTTP server (llama.cpp, Ollama, vLLM, OpenAI …).
    OpenaiHttp,
    /// Deterministic extractive/template writer; not a language model.
    OfflineExtractiveWriter,
    /// Deterministic feature-hashing embedder; not a language model.
    OfflineHashingEmbedder,
}

/// Who produced a response: the provider id from config plus what kind of engine it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderLabel {
    pub id: String,
    pub engine: EngineKind,
}

impl fmt::Display for ProviderLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.engine {
            EngineKind::OpenaiHttp => "openai-compatible http",
            EngineKind::OfflineExtractiveWriter => {
                "offline extractive writer, not a language model"
            }
            EngineKind::OfflineHashingEmbedder => "offline hashing embedder, not a language model",
        };
        write!(f, "{} ({what})", self.id)
    }
}

/// Tokens and cost of one answered request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Cost from the configured price table, in millionths of a US dollar.
    pub cost_usd_micros: u64,
    /// True when the provider did not report usage and the broker estimated it.
    pub estimated: bool,
}

/// Why a completion stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    Other,
}

/// The answer to a [`CompleteRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompleteResponse {
    pub content: String,
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub provider: ProviderLabel,
    /// The model that served, as the provider names it.
    pub model: String,
    pub usage: Usage,
}

/// The answer to an [`EmbedRequest`]: one vector per input, in input order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbedResponse {
    pub vectors: Vec<Vec<f32>>,
    pub provider: ProviderLabel,
    pub model: String,
    pub usage: Usage,
}

/// Either kind of response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ModelResponse {
    Complete(CompleteResponse),
    Embed(EmbedResponse),
}

/// How the broker obtained a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServedBy {
    Provider,
    Cache,
    Replay,
}

/// Everything needed to replay one answered request; the kernel persists it in the POG as
/// `hostcall.recorded`, and a [`crate::provider::replay::ReplayProvider`] is built from a set of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub request_hash: RequestHash,
    pub request: ModelRequest,
    pub response: ModelResponse,
    pub served_by: ServedBy,
}

impl Record {
    /// Builds a record; the hash is always computed from the request, never passed in.
    pub fn new(request: ModelRequest, response: ModelResponse, served_by: ServedBy) -> Self {
        Self {
            version: RECORD_VERSION,
            request_hash: request.hash(),
            request,
            response,
            served_by,
        }
    }

    /// True when the stored hash matches the stored request (a tampered or stale record does not).
    pub fn is_consistent(&self) -> bool {
        self.version == RECORD_VERSION && self.request.hash() == self.request_hash
    }

    pub fn usage(&self) -> Usage {
        match &self.response {
            ModelResponse::Complete(r) => r.usage,
            ModelResponse::Embed(r) => r.usage,
        }
    }
}

/// Who is asking: used for budgets and accounting, never part of the request hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallContext {
    pub opening: Option<String>,
    pub node: Option<String>,
    pub agent: Option<String>,
    /// Force this provider id, bypassing the route table (the CLI's `--provider`).
    pub provider: Option<String>,
    /// The run's own budgets, when the call comes from a node of an opening's run.
    pub run: Option<RunBudget>,
}

/// A run's own budgets: the opening's `policy.budget_tokens`/`budget_usd_micros` for the
/// whole run and the node's `budget_tokens`, tracked per run (and per node of the run) on
/// top of the configured scopes, so two runs of one opening never share a budget.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBudget {
    /// The run's key (its trace id).
    pub run: String,
    /// The node making the call.
    pub node: String,
    pub run_limit: crate::config::Limit,
    pub node_limit: crate::config::Limit,
}

/// A response together with its replay record and how it was served.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer<T> {
    pub response: T,
    pub record: Record,
    pub served_by: ServedBy,
    pub latency_ms: u64,
}
