//! Tests against a STUB HTTP server, only for what the real SmolLM2 server cannot produce:
//! tool calls (plain and streamed), 429 with Retry-After, 5xx, dropped connections, and
//! error-body mapping. Backoff sleeps go to a manual clock, so no test waits.

mod common;

use common::{Stub, StubReply};
use runloop_broker::config::{ProviderConfig, ProviderKind};
use runloop_broker::{
    Broker, BrokerError, CallContext, CompleteRequest, FinishReason, ManualClock, ModelsConfig,
    ProviderError, SecretResolver, SecretsConfig, ToolSpec,
};
use std::collections::HashMap;
use std::sync::Arc;

const SECRET: &str = "sk-very-secret-value";

fn broker(stub: &Stub, clock: &ManualClock) -> Broker {
    let mut config = ModelsConfig {
        default: "stub:m".into(),
        ..ModelsConfig::default()
    };
    config.broker.providers.push(ProviderConfig {
        id: "stub".into(),
        kind: ProviderKind::Http,
        base_url: Some(stub.base_url.clone()),
        secret_id: Some("runloop/models/stub".into()),
        records: None,
    });
    config.broker.cache.capacity = 0;
    let env = HashMap::from([("runloop/models/stub".to_owned(), SECRET.to_owned())]);
    Broker::new(
        config,
        &SecretResolver::with_env(SecretsConfig::default(), env),
        Arc::new(clock.clone()),
    )
    .unwrap()
}

fn ok_chat(content: &str) -> StubReply {
    let body = serde_json::json!({
        "model": "m", "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2}
    });
    StubReply::Http(200, vec![], body.to_string())
}

fn err(status: u16, body: &str) -> StubReply {
    StubReply::Http(status, vec![], body.to_owned())
}

async fn provider_error(replies: Vec<StubReply>) -> (ProviderError, ManualClock, Stub) {
    let stub = Stub::start(replies).await;
    let clock = ManualClock::new(0);
    let b = broker(&stub, &clock);
    match b
        .complete(
            CompleteRequest::prompt("m", "hi"),
            &CallContext::default(),
            None,
        )
        .await
    {
        Err(BrokerError::Provider { source, .. }) => (source, clock, stub),
        other => panic!("expected a provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn rate_limit_honours_retry_after_then_succeeds() {
    let stub = Stub::start(vec![
        StubReply::Http(
            429,
            vec![("retry-after".into(), "7".into())],
            r#"{"error":{"message":"slow down","type":"rate_limit"}}"#.into(),
        ),
        ok_chat("done"),
    ])
    .await;
    let clock = ManualClock::new(0);
    let b = broker(&stub, &clock);
    let a = b
        .complete(
            CompleteRequest::prompt("m", "hi"),
            &CallContext::default(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(a.response.content, "done");
    assert_eq!(
        clock.slept_ms(),
        vec![7_000],
        "Retry-After: 7 must wait exactly 7 s"
    );
    assert_eq!(stub.request_count(), 2);
    let sent = stub.requests.lock().unwrap()[0].to_lowercase();
    assert!(
        sent.contains(&format!("authorization: bearer {SECRET}")),
        "key from the secret store is sent: {sent}"
    );
}

#[tokio::test]
async fn rate_limit_gives_up_after_retries_with_backoff() {
    let (e, clock, stub) = provider_error(vec![err(429, r#"{"error":"busy"}"#)]).await;
    assert_eq!(
        e,
        ProviderError::RateLimited {
            retry_after_ms: None
        }
    );
    assert_eq!(
        clock.slept_ms(),
        vec![250, 500, 1000],
        "exponential backoff from the defaults"
    );
    assert_eq!(stub.request_count(), 4, "first attempt plus 3 retries");
}

#[tokio::test]
async fn server_error_is_retried_then_typed() {
    let (e, _, stub) = provider_error(vec![err(
        503,
        r#"{"error":{"message":"loading model","code":503}}"#,
    )])
    .await;
    assert!(
        matches!(e, ProviderError::Server { status: 503, ref message } if message == "loading model"),
        "{e:?}"
    );
    assert_eq!(stub.request_count(), 4);
}

#[tokio::test]
async fn dropped_connection_is_retried_then_recovers() {
    let stub = Stub::start(vec![
        StubReply::Drop,
        StubReply::Drop,
        ok_chat("after drops"),
    ])
    .await;
    let clock = ManualClock::new(0);
    let b = broker(&stub, &clock);
    let a = b
        .complete(
            CompleteRequest::prompt("m", "hi"),
            &CallContext::default(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(a.response.content, "after drops");
    assert_eq!(clock.slept_ms(), vec![250, 500]);
}

#[tokio::test]
async fn dropped_connection_every_time_is_a_network_error() {
    let (e, _, _) = provider_error(vec![StubReply::Drop]).await;
    assert!(matches!(e, ProviderError::Network { .. }), "{e:?}");
}

#[tokio::test]
async fn error_bodies_map_to_typed_errors_without_the_key() {
    type Check = fn(&ProviderError) -> bool;
    let cases: Vec<(StubReply, Check)> = vec![
        (
            err(
                401,
                r#"{"error":{"message":"Invalid API Key","type":"authentication_error"}}"#,
            ),
            |e| matches!(e, ProviderError::Auth { status: 401 }),
        ),
        (err(403, "{}"), |e| {
            matches!(e, ProviderError::Auth { status: 403 })
        }),
        (
            err(
                400,
                r#"{"error":{"code":400,"message":"the request exceeds the available context size","type":"exceed_context_size_error"}}"#,
            ),
            |e| matches!(e, ProviderError::ContextTooLong { .. }),
        ),
        (
            err(
                400,
                r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#,
            ),
            |e| matches!(e, ProviderError::ContextTooLong { .. }),
        ),
        (
            err(
                501,
                r#"{"error":{"message":"This server does not support embeddings","type":"not_supported_error"}}"#,
            ),
            |e| matches!(e, ProviderError::Unsupported { status: 501, .. }),
        ),
        (
            err(
                400,
                &format!(r#"{{"error":"bad temperature for key {SECRET}"}}"#),
            ),
            |e| matches!(e, ProviderError::BadRequest { status: 400, message } if message.contains("<redacted>")),
        ),
        (err(200, "not json"), |e| {
            matches!(e, ProviderError::Decode { .. })
        }),
    ];
    for (reply, check) in cases {
        let shown = format!("{reply:?}");
        let (e, _, _) = provider_error(vec![reply]).await;
        assert!(check(&e), "{shown} mapped to {e:?}");
        assert!(
            !format!("{e} {e:?}").contains(SECRET),
            "secret leaked in {e:?}"
        );
    }
}

fn tool_request() -> CompleteRequest {
    let tool = ToolSpec {
        name: "lookup_contact".into(),
        description: "Find a contact".into(),
        parameters: serde_json::json!({"type":"object","properties":{"name":{"type":"string"}}}),
    };
    CompleteRequest {
        tools: vec![tool],
        ..CompleteRequest::prompt("m", "email Ada")
    }
}

#[tokio::test]
async fn tool_calls_are_parsed() {
    let body = serde_json::json!({
        "model": "m",
        "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup_contact", "arguments": "{\"name\":\"Ada\"}"}}
        ]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 9}
    });
    let stub = Stub::start(vec![StubReply::Http(200, vec![], body.to_string())]).await;
    let clock = ManualClock::new(0);
    let a = broker(&stub, &clock)
        .complete(tool_request(), &CallContext::default(), None)
        .await
        .unwrap();
    assert_eq!(a.response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(a.response.tool_calls.len(), 1);
    assert_eq!(a.response.tool_calls[0].name, "lookup_contact");
    assert_eq!(a.response.tool_calls[0].arguments, r#"{"name":"Ada"}"#);
    let sent = stub.requests.lock().unwrap()[0].clone();
    let body: serde_json::Value =
        serde_json::from_str(&sent[sent.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "lookup_contact");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["properties"]["name"]["type"],
        "string"
    );
}

#[tokio::test]
async fn streamed_tool_calls_are_assembled() {
    let events = [
        r#"{"model":"m","choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_9","function":{"name":"lookup_contact","arguments":""}}]}}]}"#,
        r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"name\":"}}]}}]}"#,
        r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Ada\"}"}}]},"finish_reason":"tool_calls"}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":9}}"#,
    ];
    let mut sse: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    sse.push_str("data: [DONE]\n\n");
    let stub = Stub::start(vec![StubReply::Sse(sse)]).await;
    let clock = ManualClock::new(0);
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let a = broker(&stub, &clock)
        .complete(tool_request(), &CallContext::default(), Some(tx))
        .await
        .unwrap();
    assert_eq!(a.response.tool_calls[0].id, "call_9");
    assert_eq!(a.response.tool_calls[0].arguments, r#"{"name":"Ada"}"#);
    assert_eq!(a.response.usage.tokens_out, 9);
    assert!(!a.response.usage.estimated);
}

#[tokio::test]
async fn stream_cut_before_done_is_not_retried() {
    let sse = "data: {\"choices\":[{\"delta\":{\"content\":\"partial\"}}]}\n\n".to_owned();
    let stub = Stub::start(vec![StubReply::Sse(sse)]).await;
    let clock = ManualClock::new(0);
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let r = broker(&stub, &clock)
        .complete(
            CompleteRequest::prompt("m", "hi"),
            &CallContext::default(),
            Some(tx),
        )
        .await;
    assert!(
        matches!(
            r,
            Err(BrokerError::Provider {
                source: ProviderError::StreamDropped { .. },
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        stub.request_count(),
        1,
        "deltas were delivered, so no retry"
    );
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stub = Stub {
        base_url: format!("http://127.0.0.1:{port}"),
        requests: Default::default(),
    };
    let clock = ManualClock::new(0);
    let r = broker(&stub, &clock)
        .complete(
            CompleteRequest::prompt("m", "hi"),
            &CallContext::default(),
            None,
        )
        .await;
    assert!(
        matches!(
            r,
            Err(BrokerError::Provider {
                source: ProviderError::Connect { .. },
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn silent_server_times_out_without_retry() {
    let stub = Stub::start(vec![StubReply::Hang]).await;
    let clock = ManualClock::new(0);
    let mut config = ModelsConfig {
        default: "stub:m".into(),
        ..ModelsConfig::default()
    };
    config.broker.providers.push(ProviderConfig {
        id: "stub".into(),
        kind: ProviderKind::Http,
        base_url: Some(stub.base_url.clone()),
        secret_id: None,
        records: None,
    });
    config.broker.http.timeout_ms = 300;
    let b = Broker::new(
        config,
        &SecretResolver::with_env(SecretsConfig::default(), HashMap::new()),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let r = b
        .complete(
            CompleteRequest::prompt("m", "hi"),
            &CallContext::default(),
            None,
        )
        .await;
    assert!(
        matches!(
            r,
            Err(BrokerError::Provider {
                source: ProviderError::Timeout { timeout_ms: 300 },
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test]
async fn debug_output_never_shows_the_key() {
    let stub = Stub::start(vec![ok_chat("x")]).await;
    let b = broker(&stub, &ManualClock::new(0));
    let shown = format!("{b:?}");
    assert!(
        shown.contains("Secret(<redacted>)") && !shown.contains(SECRET),
        "{shown}"
    );
}
