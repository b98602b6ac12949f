//! The `models` section of config v1 as plain serde structs, and its validation.
//!
//! Defaults give the built-in offline provider on a fresh machine: no providers, no routes,
//! `default: "offline:extractive-writer"`. The provider id `offline` is always available.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The built-in offline provider's id.
pub const OFFLINE_PROVIDER_ID: &str = "offline";
/// Most providers in config.
pub const PROVIDERS_MAX: usize = 64;
/// Most route rules in config.
pub const ROUTES_MAX: usize = 256;
/// Most price entries in config.
pub const PRICES_MAX: usize = 256;
/// Longest pattern, provider id or model name.
const NAME_BYTES_MAX: usize = 256;

/// `models:` in config v1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// `"<provider>:<model>"`, used when no route matches.
    pub default: String,
    pub broker: BrokerConfig,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            default: format!("{OFFLINE_PROVIDER_ID}:extractive-writer"),
            broker: BrokerConfig::default(),
        }
    }
}

/// `models.broker`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    pub providers: Vec<ProviderConfig>,
    pub route: Vec<RouteRule>,
    pub cache: CacheConfig,
    pub budgets: BudgetsConfig,
    /// Price table; the first entry whose pattern matches the served model wins; no match = free.
    pub prices: Vec<PriceEntry>,
    /// Force temperature 0 and seed [`DETERMINISTIC_SEED`] on every completion (tests, demos).
    pub deterministic: bool,
    pub http: HttpConfig,
    /// A local model server the broker starts and supervises (optional).
    pub local_server: Option<LocalServerConfig>,
}

/// Seed forced by deterministic mode.
pub const DETERMINISTIC_SEED: u64 = 42;

/// What kind of provider an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI-compatible HTTP API.
    Http,
    /// The deterministic offline writer and embedder.
    Offline,
    /// Answers from recorded responses (`records`: a JSON-lines file of records).
    Replay,
}

/// `models.broker.providers[]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub id: String,
    pub kind: ProviderKind,
    /// For `http`: scheme, host and port, with or without a trailing `/v1`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// For `http`: secret id of the API key; none = no `Authorization` header.
    #[serde(default)]
    pub secret_id: Option<String>,
    /// For `replay`: JSON-lines file of records.
    #[serde(default)]
    pub records: Option<PathBuf>,
}

/// `models.broker.route[]`: first match wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// `"*"`, `"prefix*"` or an exact model name.
    pub pattern: String,
    pub provider: String,
    /// Target model at the provider; none = the requested name.
    #[serde(default)]
    pub model: Option<String>,
}

/// `models.broker.cache`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub ttl_ms: u64,
    /// Most entries; 0 disables the cache.
    pub capacity: usize,
}

/// Hard ceiling on cache capacity whatever config says.
pub const CACHE_CAPACITY_MAX: usize = 1 << 20;

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl_ms: 600_000,
            capacity: 1024,
        }
    }
}

/// A limit in tokens and/or micro-USD; `None` = unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limit {
    pub tokens: Option<u64>,
    pub usd_micros: Option<u64>,
}

/// `models.broker.budgets`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// Config-v1 shorthand for `per_request.tokens`.
    pub default_tokens: Option<u64>,
    /// Config-v1 shorthand for `per_opening.usd_micros`, in dollars.
    pub hard_cap_usd: Option<f64>,
    pub per_request: Limit,
    pub per_node: Limit,
    pub per_opening: Limit,
    /// Per UTC day, across everything.
    pub per_day: Limit,
}

/// The budgets with shorthands folded in (explicit `per_*` values win).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetLimits {
    pub per_request: Limit,
    pub per_node: Limit,
    pub per_opening: Limit,
    pub per_day: Limit,
}

/// `models.broker.prices[]`: price of a model in micro-USD per million tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// Model pattern, same syntax as routes.
    pub pattern: String,
    pub input_usd_micros_per_mtok: u64,
    pub output_usd_micros_per_mtok: u64,
}

/// `models.broker.http`: timeouts and retries for HTTP providers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Retries after the first attempt on 429, 5xx and dropped connections.
    pub retries: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

/// Ceiling on retries whatever config says.
pub const HTTP_RETRIES_MAX: u32 = 10;

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 120_000,
            connect_timeout_ms: 5_000,
            retries: 3,
            backoff_base_ms: 250,
            backoff_max_ms: 8_000,
        }
    }
}

/// `models.broker.local_server`: a model server process the broker supervises.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalServerConfig {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Polled until it answers 2xx.
    pub health_url: String,
    #[serde(default = "default_health_timeout_ms")]
    pub health_timeout_ms: u64,
    /// Restarts allowed within `restart_period_ms` before the broker gives up on it.
    #[serde(default = "default_restarts")]
    pub restarts_max: u32,
    #[serde(default = "default_restart_period_ms")]
    pub restart_period_ms: u64,
}

fn default_health_timeout_ms() -> u64 {
    60_000
}
fn default_restarts() -> u32 {
    3
}
fn default_restart_period_ms() -> u64 {
    60_000
}

/// Why the `models` section is invalid; names the offending key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("models.default {value:?} must be \"<provider>:<model>\"")]
    Default { value: String },
    #[error("models.default names unknown provider {provider:?}")]
    DefaultProvider { provider: String },
    #[error("models.broker.providers[{index}].id {id:?} is empty, too long or repeated")]
    ProviderId { index: usize, id: String },
    #[error("models.broker.providers[{index}] ({id}): {reason}")]
    Provider {
        index: usize,
        id: String,
        reason: &'static str,
    },
    #[error("models.broker.route[{index}].pattern {pattern:?}: '*' may only end a pattern")]
    Pattern { index: usize, pattern: String },
    #[error("models.broker.route[{index}].provider {provider:?} is not a configured provider")]
    RouteProvider { index: usize, provider: String },
    #[error("models.broker.prices[{index}].pattern {pattern:?}: '*' may only end a pattern")]
    PricePattern { index: usize, pattern: String },
    #[error("models.broker.{key} has {count} entries, more than {max}")]
    TooMany {
        key: &'static str,
        count: usize,
        max: usize,
    },
    #[error("models.broker.cache.capacity {value} is more than {max}")]
    CacheCapacity { value: usize, max: usize },
    #[error("models.broker.http.retries {value} is more than {max}")]
    Retries { value: u32, max: u32 },
    #[error("models.broker.budgets.hard_cap_usd must be a finite number >= 0")]
    HardCap,
    #[error("models.broker.local_server: {reason}")]
    LocalServer { reason: &'static str },
}

/// True when `pattern` is `*`, `prefix*` or exact, with `*` nowhere else.
pub fn pattern_is_valid(pattern: &str) -> bool {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    !body.contains('*') && pattern.len() <= NAME_BYTES_MAX
}

/// Matches a model name against a route or price pattern.
pub fn pattern_matches(pattern: &str, model: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => model.starts_with(prefix),
        None => pattern == model,
    }
}

impl ModelsConfig {
    /// `(provider, model)` of `default`.
    pub fn default_target(&self) -> Result<(&str, &str), ConfigError> {
        match self.default.split_once(':') {
            Some((p, m)) if !p.is_empty() && !m.is_empty() => Ok((p, m)),
            _ => Err(ConfigError::Default {
                value: self.default.clone(),
            }),
        }
    }

    /// Checks every key; the broker refuses to start on an invalid section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let b = &self.broker;
        for (key, count, max) in [
            ("providers", b.providers.len(), PROVIDERS_MAX),
            ("route", b.route.len(), ROUTES_MAX),
            ("prices", b.prices.len(), PRICES_MAX),
        ] {
            if count > max {
                return Err(ConfigError::TooMany { key, count, max });
            }
        }
        let mut ids: Vec<&str> = vec![OFFLINE_PROVIDER_ID];
        for (index, p) in b.providers.iter().enumerate() {
            let builtin_offline = p.id == OFFLINE_PROVIDER_ID && p.kind == ProviderKind::Offline;
            let bad_id = p.id.is_empty() || p.id.len() > NAME_BYTES_MAX || p.id.contains(':');
            if bad_id || (ids.contains(&p.id.as_str()) && !builtin_offline) {
                return Err(ConfigError::ProviderId {
                    index,
                    id: p.id.clone(),
                });
            }
            let reason = match p.kind {
                ProviderKind::Http if p.base_url.is_none() => Some("kind http needs base_url"),
                ProviderKind::Http
                    if !p
                        .base_url
                        .as_deref()
                        .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://")) =>
                {
                    Some("base_url must start with http:// or https://")
                }
                ProviderKind::Replay if p.records.is_none() => Some("kind replay needs records"),
                _ => None,
            };
            if let Some(reason) = reason {
                return Err(ConfigError::Provider {
                    index,
                    id: p.id.clone(),
                    reason,
                });
            }
            ids.push(&p.id);
        }
        for (index, r) in b.route.iter().enumerate() {
            if !pattern_is_valid(&r.pattern) {
                return Err(ConfigError::Pattern {
                    index,
                    pattern: r.pattern.clone(),
                });
            }
            if !ids.contains(&r.provider.as_str()) {
                return Err(ConfigError::RouteProvider {
                    index,
                    provider: r.provider.clone(),
                });
            }
        }
        for (index, p) in b.prices.iter().enumerate() {
            if !pattern_is_valid(&p.pattern) {
                return Err(ConfigError::PricePattern {
                    index,
                    pattern: p.pattern.clone(),
                });
            }
        }
        let (provider, _) = self.default_target()?;
        if !ids.contains(&provider) {
            return Err(ConfigError::DefaultProvider {
                provider: provider.to_owned(),
            });
        }
        if b.cache.capacity > CACHE_CAPACITY_MAX {
            return Err(ConfigError::CacheCapacity {
                value: b.cache.capacity,
                max: CACHE_CAPACITY_MAX,
            });
        }
        if b.http.retries > HTTP_RETRIES_MAX {
            return Err(ConfigError::Retries {
                value: b.http.retries,
                max: HTTP_RETRIES_MAX,
            });
        }
        b.budgets.limits()?;
        if let Some(ls) = &b.local_server {
            if ls.command.is_empty() {
                return Err(ConfigError::LocalServer {
                    reason: "command is empty",
                });
            }
            if !ls.health_url.starts_with("http://") {
                return Err(ConfigError::LocalServer {
                    reason: "health_url must start with http://",
                });
            }
        }
        Ok(())
    }
}

impl BudgetsConfig {
    /// Folds the config-v1 shorthands into the per-scope limits.
    pub fn limits(&self) -> Result<BudgetLimits, ConfigError> {
        let mut per_request = self.per_request;
        per_request.tokens = per_request.tokens.or(self.default_tokens);
        let mut per_opening = self.per_opening;
        if let Some(usd) = self.hard_cap_usd {
            if !(usd.is_finite() && usd >= 0.0) {
                return Err(ConfigError::HardCap);
            }
            // Rounded down: a cap never grows by conversion.
            let micros = (usd * 1_000_000.0).floor() as u64;
            per_opening.usd_micros = per_opening.usd_micros.or(Some(micros));
        }
        Ok(BudgetLimits {
            per_request,
            per_node: self.per_node,
            per_opening,
            per_day: self.per_day,
        })
    }
}

impl BrokerConfig {
    /// Micro-USD for `tokens_in`/`tokens_out` of `model`, rounded up; 0 when no price matches.
    pub fn cost_usd_micros(&self, model: &str, tokens_in: u64, tokens_out: u64) -> u64 {
        let Some(p) = self
            .prices
            .iter()
            .find(|p| pattern_matches(&p.pattern, model))
        else {
            return 0;
        };
        let micro_mtok = u128::from(tokens_in) * u128::from(p.input_usd_micros_per_mtok)
            + u128::from(tokens_out) * u128::from(p.output_usd_micros_per_mtok);
        u64::try_from(micro_mtok.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}
