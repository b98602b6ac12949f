//! Config, secrets, canonical hashing, records and cache: table-driven and property tests.

use proptest::prelude::*;
use runloop_broker::cache::{CacheKey, ResponseCache};
use runloop_broker::config::{ConfigError, ProviderConfig, ProviderKind, RouteRule};
use runloop_broker::secrets::{Secret, SecretError, SecretProvider, upper_snake};
use runloop_broker::{
    ChatMessage, CompleteRequest, EmbedRequest, ModelRequest, ModelResponse, ModelsConfig, Record,
    Role, SecretResolver, SecretsConfig, ServedBy,
};
use std::collections::HashMap;

const CONFIG_V1_MODELS: &str = r#"
default: "openai:gpt-4o-mini"
broker:
  providers:
    - id: "openai"
      kind: "http"
      base_url: "https://api.openai.com"
      secret_id: "runloop/models/openai"
  route:
    - pattern: "*"
      provider: "openai"
  cache:
    ttl_ms: 600000
    capacity: 1024
  budgets:
    default_tokens: 8000
    hard_cap_usd: 0.50
  prices:
    - pattern: "gpt-4o-mini*"
      input_usd_micros_per_mtok: 150000
      output_usd_micros_per_mtok: 600000
"#;

#[test]
fn config_v1_models_section_parses_and_validates() {
    let c: ModelsConfig = serde_norway::from_str(CONFIG_V1_MODELS).unwrap();
    c.validate().unwrap();
    let limits = c.broker.budgets.limits().unwrap();
    assert_eq!(limits.per_request.tokens, Some(8000));
    assert_eq!(limits.per_opening.usd_micros, Some(500_000));
    assert_eq!(
        c.broker
            .cost_usd_micros("gpt-4o-mini-2024", 1_000_000, 1_000_000),
        750_000
    );
    assert_eq!(
        c.broker.cost_usd_micros("gpt-4o-mini", 1, 0),
        1,
        "cost rounds up"
    );
    assert_eq!(c.broker.cost_usd_micros("other", 1_000_000, 0), 0);
}

#[test]
fn default_config_is_the_offline_provider() {
    let c = ModelsConfig::default();
    c.validate().unwrap();
    assert_eq!(
        c.default_target().unwrap(),
        ("offline", "extractive-writer")
    );
    let empty: ModelsConfig = serde_norway::from_str("{}").unwrap();
    assert_eq!(empty, c);
}

#[test]
fn unknown_keys_are_errors() {
    let e = serde_norway::from_str::<ModelsConfig>("broker:\n  cache:\n    ttl: 5\n").unwrap_err();
    assert!(e.to_string().contains("unknown field `ttl`"), "{e}");
}

fn http(id: &str) -> ProviderConfig {
    ProviderConfig {
        id: id.into(),
        kind: ProviderKind::Http,
        base_url: Some("http://127.0.0.1:1".into()),
        secret_id: None,
        records: None,
    }
}

#[test]
fn invalid_configs_name_the_key() {
    type Edit = fn(&mut ModelsConfig);
    let cases: Vec<(Edit, ConfigError)> = vec![
        (
            |c| c.default = "nocolon".into(),
            ConfigError::Default {
                value: "nocolon".into(),
            },
        ),
        (
            |c| c.default = "ghost:m".into(),
            ConfigError::DefaultProvider {
                provider: "ghost".into(),
            },
        ),
        (
            |c| c.broker.providers = vec![http("a"), http("a")],
            ConfigError::ProviderId {
                index: 1,
                id: "a".into(),
            },
        ),
        (
            |c| c.broker.providers = vec![http("offline")],
            ConfigError::ProviderId {
                index: 0,
                id: "offline".into(),
            },
        ),
        (
            |c| {
                c.broker.providers = vec![ProviderConfig {
                    base_url: None,
                    ..http("a")
                }]
            },
            ConfigError::Provider {
                index: 0,
                id: "a".into(),
                reason: "kind http needs base_url",
            },
        ),
        (
            |c| {
                c.broker.providers = vec![ProviderConfig {
                    base_url: Some("ftp://x".into()),
                    ..http("a")
                }]
            },
            ConfigError::Provider {
                index: 0,
                id: "a".into(),
                reason: "base_url must start with http:// or https://",
            },
        ),
        (
            |c| {
                c.broker.providers = vec![ProviderConfig {
                    kind: ProviderKind::Replay,
                    ..http("r")
                }]
            },
            ConfigError::Provider {
                index: 0,
                id: "r".into(),
                reason: "kind replay needs records",
            },
        ),
        (
            |c| {
                c.broker.route = vec![RouteRule {
                    pattern: "a*b".into(),
                    provider: "offline".into(),
                    model: None,
                }]
            },
            ConfigError::Pattern {
                index: 0,
                pattern: "a*b".into(),
            },
        ),
        (
            |c| {
                c.broker.route = vec![RouteRule {
                    pattern: "*".into(),
                    provider: "ghost".into(),
                    model: None,
                }]
            },
            ConfigError::RouteProvider {
                index: 0,
                provider: "ghost".into(),
            },
        ),
        (
            |c| c.broker.cache.capacity = usize::MAX,
            ConfigError::CacheCapacity {
                value: usize::MAX,
                max: 1 << 20,
            },
        ),
        (
            |c| c.broker.http.retries = 11,
            ConfigError::Retries { value: 11, max: 10 },
        ),
        (
            |c| c.broker.budgets.hard_cap_usd = Some(-1.0),
            ConfigError::HardCap,
        ),
    ];
    for (edit, want) in cases {
        let mut c = ModelsConfig::default();
        edit(&mut c);
        assert_eq!(c.validate(), Err(want));
    }
}

#[test]
fn secrets_resolve_env_exact_then_upper_snake_then_file() {
    let dir = std::env::temp_dir().join(format!("runloop-broker-secrets-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("runloop/models")).unwrap();
    std::fs::write(dir.join("runloop/models/file"), "from-file\n").unwrap();
    let cfg = SecretsConfig {
        provider: SecretProvider::Stub,
        root: dir.clone(),
    };
    let env = HashMap::from([
        ("runloop/models/exact".to_owned(), "exact".to_owned()),
        ("RUNLOOP_MODELS_EXACT".to_owned(), "loses".to_owned()),
        ("RUNLOOP_MODELS_SNAKE".to_owned(), "snake".to_owned()),
    ]);
    let r = SecretResolver::with_env(cfg.clone(), env);
    assert_eq!(r.resolve("runloop/models/exact").unwrap().expose(), "exact");
    assert_eq!(r.resolve("runloop/models/snake").unwrap().expose(), "snake");
    assert_eq!(
        r.resolve("runloop/models/file").unwrap().expose(),
        "from-file"
    );
    assert!(
        matches!(r.resolve("runloop/models/none"), Err(SecretError::NotFound { env, .. }) if env == "RUNLOOP_MODELS_NONE")
    );
    for bad in ["", "../etc/passwd", "a//b", "a/./b", "sp ace"] {
        assert_eq!(r.resolve(bad), Err(SecretError::BadId { id: bad.into() }));
    }
    let keyring = SecretResolver::with_env(
        SecretsConfig {
            provider: SecretProvider::OsKeyring,
            root: dir.clone(),
        },
        HashMap::new(),
    );
    assert!(matches!(
        keyring.resolve("runloop/models/file"),
        Err(SecretError::StoreNotImplemented {
            store: "os-keyring",
            ..
        })
    ));
    assert_eq!(
        upper_snake("runloop/models/gemini"),
        "RUNLOOP_MODELS_GEMINI"
    );
    assert_eq!(
        format!("{:?}", Secret::new("hunter2")),
        "Secret(<redacted>)"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn chat(parts: &[&str]) -> ModelRequest {
    ModelRequest::Complete(CompleteRequest {
        messages: parts
            .iter()
            .map(|p| ChatMessage::new(Role::User, *p))
            .collect(),
        ..CompleteRequest::default()
    })
}

#[test]
fn canonical_hash_has_no_concatenation_collisions() {
    assert_ne!(chat(&["ab", "c"]).hash(), chat(&["a", "bc"]).hash());
    assert_ne!(chat(&["abc"]).hash(), chat(&["ab", "c"]).hash());
    let embed = ModelRequest::Embed(EmbedRequest {
        model: String::new(),
        inputs: vec!["ab".into(), "c".into()],
    });
    assert_ne!(embed.hash(), chat(&["ab", "c"]).hash());
    let mut sys = CompleteRequest::prompt("", "x");
    sys.messages[0].role = Role::System;
    assert_ne!(
        ModelRequest::Complete(sys).hash(),
        ModelRequest::Complete(CompleteRequest::prompt("", "x")).hash()
    );
    assert_eq!(chat(&["same"]).hash(), chat(&["same"]).hash());
    let tool = |schema: &str| {
        let parameters = serde_json::from_str(schema).unwrap();
        let t = runloop_broker::ToolSpec {
            name: "t".into(),
            description: String::new(),
            parameters,
        };
        ModelRequest::Complete(CompleteRequest {
            tools: vec![t],
            ..CompleteRequest::prompt("", "x")
        })
        .hash()
    };
    assert_eq!(
        tool(r#"{"a":1,"b":{"c":2,"d":3}}"#),
        tool(r#"{"b":{"d":3,"c":2},"a":1}"#),
        "key order must not matter"
    );
    assert_ne!(tool(r#"{"a":1}"#), tool(r#"{"a":2}"#));
}

#[test]
fn cache_evicts_least_recently_used_and_expires() {
    use runloop_broker::{EmbedResponse, EngineKind, ProviderLabel, Usage};
    let value = |n: f32| {
        ModelResponse::Embed(EmbedResponse {
            vectors: vec![vec![n]],
            provider: ProviderLabel {
                id: "p".into(),
                engine: EngineKind::OfflineHashingEmbedder,
            },
            model: "m".into(),
            usage: Usage::default(),
        })
    };
    let key = |s: &str| CacheKey::new(chat(&[s]).hash(), "p", "m");
    let mut c = ResponseCache::new(1000, 2);
    c.insert(key("a"), value(1.0), 0);
    c.insert(key("b"), value(2.0), 0);
    assert!(c.get(&key("a"), 10).is_some()); // a is now most recent
    c.insert(key("c"), value(3.0), 10);
    assert!(c.get(&key("b"), 10).is_none(), "b was least recently used");
    assert_eq!(c.len(), 2);
    assert!(c.get(&key("a"), 999).is_some());
    assert!(c.get(&key("a"), 1000).is_none(), "expired at ttl");
    assert_ne!(
        CacheKey::new(chat(&["a"]).hash(), "ab", "c"),
        CacheKey::new(chat(&["a"]).hash(), "a", "bc")
    );
}

prop_compose! {
    fn arb_request()(
        model in "[a-z0-9:-]{0,12}",
        msgs in proptest::collection::vec(("[ -~]{0,20}", 0u8..4), 1..5),
        max_tokens in proptest::option::of(1u32..4096),
        temperature in proptest::option::of(0.0f32..2.0),
        seed in proptest::option::of(any::<u64>()),
    ) -> CompleteRequest {
        let role = |r: u8| [Role::System, Role::User, Role::Assistant, Role::Tool][r as usize];
        CompleteRequest {
            model,
            messages: msgs.into_iter().map(|(c, r)| ChatMessage::new(role(r), c)).collect(),
            max_tokens, temperature, seed, stop: vec![], tools: vec![],
        }
    }
}

proptest! {
    #[test]
    fn records_round_trip_and_hashes_separate(a in arb_request(), b in arb_request()) {
        let offline = runloop_broker::provider::offline::OfflineProvider::new("offline");
        let response = ModelResponse::Complete(offline.complete(&a));
        let record = Record::new(ModelRequest::Complete(a.clone()), response, ServedBy::Provider);
        let json: Record = serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        prop_assert_eq!(&json, &record);
        let mp: Record = rmp_serde::from_slice(&rmp_serde::to_vec_named(&record).unwrap()).unwrap();
        prop_assert_eq!(&mp, &record);
        prop_assert!(json.is_consistent());
        let (ra, rb) = (ModelRequest::Complete(a), ModelRequest::Complete(b));
        prop_assert_eq!(ra == rb, ra.canonical_bytes() == rb.canonical_bytes());
    }
}

#[test]
fn roles_parse_from_wire_names() {
    use runloop_broker::RequestError;
    assert_eq!("assistant".parse::<Role>(), Ok(Role::Assistant));
    assert_eq!(
        "System".parse::<Role>(),
        Err(RequestError::Role {
            role: "System".into()
        })
    );
}
