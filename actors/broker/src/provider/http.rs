//! OpenAI-compatible HTTP provider (llama.cpp server, Ollama, vLLM, OpenAI): chat, streaming, embeddings, model list.
//!
//! Retries 429, 5xx and dropped connections with exponential backoff (injected clock), honouring
//! `Retry-After` in seconds. Error bodies (`{"error":{code,message,type}}` or `{"error":"…"}`)
//! map to typed [`ProviderError`]s. The API key never appears in errors: any echo of it in a
//! server message is redacted.

use super::{ProviderError, estimate_prompt_tokens, estimate_tokens};
use crate::clock::Timer;
use crate::config::HttpConfig;
use crate::secrets::Secret;
use crate::types::{
    CompleteRequest, CompleteResponse, EmbedRequest, EmbedResponse, EngineKind, FinishReason,
    ProviderLabel, ToolCall, Usage,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Largest response body read (non-streamed) or accumulated (streamed).
pub const RESPONSE_BYTES_MAX: usize = 16 << 20;
/// Longest error message kept from a server.
const ERROR_MESSAGE_BYTES_MAX: usize = 512;
/// Longest `Retry-After` honoured.
pub const RETRY_AFTER_MS_MAX: u64 = 60_000;
/// Most tool calls accepted in one answer.
const TOOL_CALLS_MAX: usize = 64;
/// Most models listed.
const MODELS_MAX: usize = 4096;

/// An OpenAI-compatible endpoint.
pub struct HttpProvider {
    id: String,
    base: String,
    key: Option<Secret>,
    client: reqwest::Client,
    config: HttpConfig,
    clock: Arc<dyn Timer>,
}

impl std::fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProvider")
            .field("id", &self.id)
            .field("base", &self.base)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("build http client for provider {id}: {message}")]
pub struct HttpBuildError {
    pub id: String,
    pub message: String,
}

/// What one attempt produced.
enum Attempt<T> {
    Done(T),
    Retry {
        error: ProviderError,
        retry_after_ms: Option<u64>,
    },
}

impl HttpProvider {
    pub fn new(
        id: &str,
        base_url: &str,
        key: Option<Secret>,
        config: HttpConfig,
        clock: Arc<dyn Timer>,
    ) -> Result<Self, HttpBuildError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .build()
            .map_err(|e| HttpBuildError {
                id: id.to_owned(),
                message: e.to_string(),
            })?;
        let trimmed = base_url.trim_end_matches('/');
        let base = if trimmed.ends_with("/v1") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/v1")
        };
        Ok(Self {
            id: id.to_owned(),
            base,
            key,
            client,
            config,
            clock,
        })
    }

    fn label(&self) -> ProviderLabel {
        ProviderLabel {
            id: self.id.clone(),
            engine: EngineKind::OpenaiHttp,
        }
    }

    fn redact(&self, text: &str) -> String {
        let mut out = match &self.key {
            Some(k) if !k.expose().is_empty() => text.replace(k.expose(), "<redacted>"),
            _ => text.to_owned(),
        };
        if out.len() > ERROR_MESSAGE_BYTES_MAX {
            let mut cut = ERROR_MESSAGE_BYTES_MAX;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.client.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => rb.bearer_auth(k.expose()),
            None => rb,
        }
    }

    fn map_send_error(&self, e: &reqwest::Error) -> ProviderError {
        if e.is_timeout() {
            ProviderError::Timeout {
                timeout_ms: self.config.timeout_ms,
            }
        } else if e.is_connect() {
            ProviderError::Connect {
                url: self.base.clone(),
                message: self.redact(&error_chain(e)),
            }
        } else {
            ProviderError::Network {
                message: self.redact(&error_chain(e)),
            }
        }
    }

    /// Maps a non-2xx status and body to a typed error.
    fn map_status(&self, status: u16, body: &[u8], retry_after_ms: Option<u64>) -> ProviderError {
        let (message, code) = error_message(body);
        let message = self.redact(&message);
        let lower = format!("{message} {code}").to_lowercase();
        match status {
            401 | 403 => ProviderError::Auth { status },
            429 => ProviderError::RateLimited { retry_after_ms },
            400 | 413 | 422
                if lower.contains("context")
                    || lower.contains("too long")
                    || lower.contains("maximum") =>
            {
                ProviderError::ContextTooLong { message }
            }
            404 | 405 | 501 => ProviderError::Unsupported { status, message },
            500..=599 => ProviderError::Server { status, message },
            _ => ProviderError::BadRequest { status, message },
        }
    }

    /// Sends `body` to `path` with retries; `finish` turns a 2xx response into a value.
    async fn call<T, F, Fut>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        finish: F,
    ) -> Result<T, ProviderError>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let mut attempt: u32 = 0;
        loop {
            let result = self.attempt(method.clone(), path, body, &finish).await;
            let (error, retry_after_ms) = match result {
                Ok(Attempt::Done(v)) => return Ok(v),
                Ok(Attempt::Retry {
                    error,
                    retry_after_ms,
                }) => (error, retry_after_ms),
                Err(e) => return Err(e),
            };
            if attempt >= self.config.retries {
                return Err(error);
            }
            let backoff = self
                .config
                .backoff_base_ms
                .saturating_mul(1u64 << attempt.min(20))
                .min(self.config.backoff_max_ms);
            let delay = retry_after_ms.map_or(backoff, |ms| ms.min(RETRY_AFTER_MS_MAX));
            self.clock.sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt<T, F, Fut>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        finish: &F,
    ) -> Result<Attempt<T>, ProviderError>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let mut rb = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                let error = self.map_send_error(&e);
                // A refused connection or timeout is not worth hammering; a dropped one is.
                return match error {
                    ProviderError::Network { .. } => Ok(Attempt::Retry {
                        error,
                        retry_after_ms: None,
                    }),
                    _ => Err(error),
                };
            }
        };
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return match finish(resp).await {
                Ok(v) => Ok(Attempt::Done(v)),
                Err(error @ ProviderError::Network { .. }) => Ok(Attempt::Retry {
                    error,
                    retry_after_ms: None,
                }),
                Err(e) => Err(e),
            };
        }
        let retry_after_ms = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|s| s.saturating_mul(1000));
        let body = read_limited(resp).await.unwrap_or_default();
        let error = self.map_status(status, &body, retry_after_ms);
        match error {
            ProviderError::RateLimited { .. } | ProviderError::Server { .. } => {
                Ok(Attempt::Retry {
                    error,
                    retry_after_ms,
                })
            }
            _ => Err(error),
        }
    }

    fn chat_body(req: &CompleteRequest, model: &str, stream: bool) -> Value {
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        let mut body = json!({"model": model, "messages": messages, "max_tokens": req.max_tokens_or_default(), "stream": stream});
        let obj = body.as_object_mut().expect("json object literal");
        if let Some(t) = req.temperature {
            obj.insert("temperature".into(), json!(t));
        }
        if let Some(s) = req.seed {
            obj.insert("seed".into(), json!(s));
        }
        if !req.stop.is_empty() {
            obj.insert("stop".into(), json!(req.stop));
        }
        if !req.tools.is_empty() {
            let tools: Vec<Value> = req
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect();
            obj.insert("tools".into(), Value::Array(tools));
        }
        if stream {
            obj.insert("stream_options".into(), json!({"include_usage": true}));
        }
        body
    }

    /// Chat completion, streamed when `stream` is given (deltas are sent as they arrive).
    pub async fn complete(
        &self,
        req: &CompleteRequest,
        model: &str,
        stream: Option<&mpsc::Sender<String>>,
    ) -> Result<CompleteResponse, ProviderError> {
        let body = Self::chat_body(req, model, stream.is_some());
        let mut resp = match stream {
            None => {
                self.call(
                    reqwest::Method::POST,
                    "/chat/completions",
                    Some(&body),
                    |r| async move { parse_chat(&read_json(r).await?) },
                )
                .await?
            }
            Some(tx) => {
                self.call(
                    reqwest::Method::POST,
                    "/chat/completions",
                    Some(&body),
                    |r| read_sse(r, tx.clone()),
                )
                .await?
            }
        };
        if resp.model.is_empty() {
            resp.model = model.to_owned();
        }
        if resp.usage.estimated {
            resp.usage.tokens_in = estimate_prompt_tokens(req);
            resp.usage.tokens_out = estimate_tokens(&resp.content);
        }
        resp.provider = self.label();
        Ok(resp)
    }

    pub async fn embed(
        &self,
        req: &EmbedRequest,
        model: &str,
    ) -> Result<EmbedResponse, ProviderError> {
        let body = json!({"model": model, "input": req.inputs, "encoding_format": "float"});
        let v = self
            .call(
                reqwest::Method::POST,
                "/embeddings",
                Some(&body),
                |r| async move { read_json(r).await },
            )
            .await?;
        let data = v
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| decode("embeddings: no data array"))?;
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; req.inputs.len()];
        for (pos, item) in data.iter().enumerate() {
            let index = item
                .get("index")
                .and_then(Value::as_u64)
                .map_or(pos, |i| i as usize);
            let emb = item
                .get("embedding")
                .and_then(Value::as_array)
                .ok_or_else(|| decode("embeddings: item without embedding"))?;
            let vec: Option<Vec<f32>> = emb.iter().map(|x| x.as_f64().map(|f| f as f32)).collect();
            let slot = vectors
                .get_mut(index)
                .ok_or_else(|| decode("embeddings: index out of range"))?;
            *slot = Some(vec.ok_or_else(|| decode("embeddings: non-numeric value"))?);
        }
        let vectors: Vec<Vec<f32>> = vectors
            .into_iter()
            .collect::<Option<_>>()
            .ok_or_else(|| decode("embeddings: missing vectors"))?;
        let (tokens_in, estimated) = match v.pointer("/usage/prompt_tokens").and_then(Value::as_u64)
        {
            Some(t) => (t, false),
            None => (req.inputs.iter().map(|t| estimate_tokens(t)).sum(), true),
        };
        let model_out = v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(model)
            .to_owned();
        Ok(EmbedResponse {
            vectors,
            provider: self.label(),
            model: model_out,
            usage: Usage {
                tokens_in,
                tokens_out: 0,
                cost_usd_micros: 0,
                estimated,
            },
        })
    }

    pub async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        let v = self
            .call(reqwest::Method::GET, "/models", None, |r| async move {
                read_json(r).await
            })
            .await?;
        let data = v
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| decode("models: no data array"))?;
        Ok(data
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str))
            .take(MODELS_MAX)
            .map(str::to_owned)
            .collect())
    }
}

fn decode(message: &str) -> ProviderError {
    ProviderError::Decode {
        message: message.to_owned(),
    }
}

/// The error and its sources, so "error sending request" says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `(message, code/type)` of an OpenAI-style or Ollama-style error body.
fn error_message(body: &[u8]) -> (String, String) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (
            String::from_utf8_lossy(body).trim().to_owned(),
            String::new(),
        );
    };
    match v.get("error") {
        Some(Value::String(s)) => (s.clone(), String::new()),
        Some(e) => {
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let code = [e.get("code"), e.get("type")]
                .iter()
                .flatten()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            (message, code)
        }
        None => (v.to_string(), String::new()),
    }
}

async fn read_limited(resp: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ProviderError::Network {
            message: error_chain(&e),
        })?;
        if out.len() + chunk.len() > RESPONSE_BYTES_MAX {
            return Err(ProviderError::TooLarge {
                max: RESPONSE_BYTES_MAX,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn read_json(resp: reqwest::Response) -> Result<Value, ProviderError> {
    let bytes = read_limited(resp).await?;
    serde_json::from_slice(&bytes).map_err(|e| decode(&format!("invalid json: {e}")))
}

fn finish_reason(v: Option<&Value>) -> FinishReason {
    match v.and_then(Value::as_str) {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls") | Some("function_call") => FinishReason::ToolCalls,
        _ => FinishReason::Other,
    }
}

fn usage_of(v: &Value) -> Usage {
    match (
        v.pointer("/usage/prompt_tokens").and_then(Value::as_u64),
        v.pointer("/usage/completion_tokens")
            .and_then(Value::as_u64),
    ) {
        (Some(tokens_in), Some(tokens_out)) => Usage {
            tokens_in,
            tokens_out,
            cost_usd_micros: 0,
            estimated: false,
        },
        _ => Usage {
            estimated: true,
            ..Usage::default()
        },
    }
}

fn tool_calls_of(v: Option<&Value>) -> Vec<ToolCall> {
    let Some(calls) = v.and_then(Value::as_array) else {
        return Vec::new();
    };
    calls
        .iter()
        .take(TOOL_CALLS_MAX)
        .map(|c| ToolCall {
            id: c.get("id").and_then(Value::as_str).unwrap_or("").to_owned(),
            name: c
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            arguments: c
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        })
        .collect()
}

fn parse_chat(v: &Value) -> Result<CompleteResponse, ProviderError> {
    let choice = v
        .pointer("/choices/0")
        .ok_or_else(|| decode("chat: no choices"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| decode("chat: choice without message"))?;
    Ok(CompleteResponse {
        content: message
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        tool_calls: tool_calls_of(message.get("tool_calls")),
        finish_reason: finish_reason(choice.get("finish_reason")),
        provider: ProviderLabel {
            id: String::new(),
            engine: EngineKind::OpenaiHttp,
        },
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        usage: usage_of(v),
    })
}

/// Accumulates a server-sent-events chat stream, forwarding content deltas.
async fn read_sse(
    resp: reqwest::Response,
    tx: mpsc::Sender<String>,
) -> Result<CompleteResponse, ProviderError> {
    let mut acc = CompleteResponse {
        content: String::new(),
        tool_calls: Vec::new(),
        finish_reason: FinishReason::Other,
        provider: ProviderLabel {
            id: String::new(),
            engine: EngineKind::OpenaiHttp,
        },
        model: String::new(),
        usage: Usage {
            estimated: true,
            ..Usage::default()
        },
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let mut done = false;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        // Not retried: deltas already went to the caller, and a retry would repeat them.
        let chunk = chunk.map_err(|e| ProviderError::StreamDropped {
            message: error_chain(&e),
        })?;
        total += chunk.len();
        if total > RESPONSE_BYTES_MAX {
            return Err(ProviderError::TooLarge {
                max: RESPONSE_BYTES_MAX,
            });
        }
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let v: Value =
                serde_json::from_str(data).map_err(|e| decode(&format!("stream event: {e}")))?;
            apply_event(&mut acc, &v, &tx).await;
        }
    }
    if !done && acc.finish_reason == FinishReason::Other {
        return Err(ProviderError::StreamDropped {
            message: "stream ended before [DONE]".into(),
        });
    }
    Ok(acc)
}

async fn apply_event(acc: &mut CompleteResponse, v: &Value, tx: &mpsc::Sender<String>) {
    if let Some(m) = v.get("model").and_then(Value::as_str) {
        acc.model = m.to_owned();
    }
    if v.get("usage").is_some_and(|u| !u.is_null()) {
        acc.usage = usage_of(v);
    }
    let Some(choice) = v.pointer("/choices/0") else {
        return;
    };
    if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str)
        && !text.is_empty()
    {
        acc.content.push_str(text);
        // A closed receiver only means nobody is watching the stream.
        let _ = tx.send(text.to_owned()).await;
    }
    if let Some(calls) = choice
        .pointer("/delta/tool_calls")
        .and_then(Value::as_array)
    {
        for c in calls {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if index >= TOOL_CALLS_MAX {
                continue;
            }
            while acc.tool_calls.len() <= index {
                acc.tool_calls.push(ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
            }
            let call = &mut acc.tool_calls[index];
            if let Some(id) = c.get("id").and_then(Value::as_str) {
                call.id = id.to_owned();
            }
            if let Some(name) = c.pointer("/function/name").and_then(Value::as_str) {
                call.name.push_str(name);
            }
            if let Some(args) = c.pointer("/function/arguments").and_then(Value::as_str) {
                call.arguments.push_str(args);
            }
        }
    }
    if let Some(r) = choice.get("finish_reason").filter(|r| !r.is_null()) {
        acc.finish_reason = finish_reason(Some(r));
    }
}
