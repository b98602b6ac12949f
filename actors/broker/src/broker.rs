//! The broker core: validate → route → cache → budget reserve → provider → reconcile → account → record.
//!
//! Plain async Rust with one lock around cache, budgets and stats (never held across an await);
//! [`crate::actor`] wraps it as the singleton actor.

use crate::accounting::{NONE_KEY, Outcome, Stats};
use crate::budget::{BudgetError, Budgets, ReservationId, Spend};
use crate::cache::{CacheKey, ResponseCache};
use crate::clock::Timer;
use crate::config::{
    ConfigError, DETERMINISTIC_SEED, ModelsConfig, OFFLINE_PROVIDER_ID, ProviderKind,
    pattern_matches,
};
use crate::provider::http::{HttpBuildError, HttpProvider};
use crate::provider::offline::OfflineProvider;
use crate::provider::replay::{ReplayLoadError, ReplayProvider};
use crate::provider::{Provider, ProviderError, estimate_prompt_tokens, estimate_tokens};
use crate::secrets::SecretResolver;
use crate::types::{
    Answer, CallContext, CompleteRequest, CompleteResponse, EmbedRequest, EmbedResponse,
    ModelRequest, ModelResponse, Record, RequestError, ServedBy,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Provider id used when a broker is built for replay only.
pub const REPLAY_PROVIDER_ID: &str = "replay";

/// Why a request failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BrokerError {
    #[error("invalid request: {0}")]
    Invalid(#[from] RequestError),
    #[error("unknown provider {id:?}")]
    UnknownProvider { id: String },
    #[error("refused before the call: {0}")]
    Budget(#[from] BudgetError),
    #[error("provider {provider}: {source}")]
    Provider {
        provider: String,
        source: ProviderError,
    },
    #[error("broker busy: {max} requests already in flight")]
    Busy { max: usize },
    #[error("broker actor is not running")]
    Unavailable,
}

/// Why a broker could not be built from config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid models config: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Http(#[from] HttpBuildError),
    #[error("provider {provider}: {source}")]
    Replay {
        provider: String,
        source: ReplayLoadError,
    },
}

#[derive(Debug)]
struct State {
    cache: ResponseCache,
    budgets: Budgets,
    stats: Stats,
}

/// One configured provider as `rlp model ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProviderInfo {
    pub id: String,
    pub kind: ProviderKind,
}

/// The model broker.
#[derive(Debug)]
pub struct Broker {
    config: ModelsConfig,
    providers: BTreeMap<String, (ProviderKind, Arc<Provider>)>,
    replay_only: bool,
    state: Mutex<State>,
    clock: Arc<dyn Timer>,
}

impl Broker {
    /// Builds every configured provider (plus the built-in offline one); resolves API keys now.
    pub fn new(
        config: ModelsConfig,
        secrets: &SecretResolver,
        clock: Arc<dyn Timer>,
    ) -> Result<Self, BuildError> {
        config.validate()?;
        let mut providers = BTreeMap::new();
        providers.insert(
            OFFLINE_PROVIDER_ID.to_owned(),
            (
                ProviderKind::Offline,
                Arc::new(Provider::Offline(OfflineProvider::new(OFFLINE_PROVIDER_ID))),
            ),
        );
        for p in &config.broker.providers {
            let built = match p.kind {
                ProviderKind::Offline => Provider::Offline(OfflineProvider::new(&p.id)),
                ProviderKind::Http => match p.secret_id.as_deref().map(|id| secrets.resolve(id)) {
                    // A missing key disables only this provider: its calls fail naming the
                    // secret, and the broker (and every other provider) still starts.
                    Some(Err(e)) => Provider::Unavailable(e),
                    resolved => {
                        let key = resolved.map(|r| r.expect("error arm handled above"));
                        let url = p.base_url.as_deref().expect("validated: http has base_url");
                        Provider::Http(HttpProvider::new(
                            &p.id,
                            url,
                            key,
                            config.broker.http,
                            clock.clone(),
                        )?)
                    }
                },
                ProviderKind::Replay => {
                    let path = p.records.as_deref().expect("validated: replay has records");
                    let r =
                        ReplayProvider::from_jsonl(path).map_err(|source| BuildError::Replay {
                            provider: p.id.clone(),
                            source,
                        })?;
                    Provider::Replay(r)
                }
            };
            providers.insert(p.id.clone(), (p.kind, Arc::new(built)));
        }
        Self::assemble(config, providers, false, clock)
    }

    /// A broker that answers every request from `records` (deterministic replay of a run).
    pub fn replay(records: Vec<Record>, clock: Arc<dyn Timer>) -> Result<Self, BuildError> {
        let r = ReplayProvider::from_records(records).map_err(|source| BuildError::Replay {
            provider: REPLAY_PROVIDER_ID.into(),
            source,
        })?;
        let mut providers = BTreeMap::new();
        providers.insert(
            REPLAY_PROVIDER_ID.to_owned(),
            (ProviderKind::Replay, Arc::new(Provider::Replay(r))),
        );
        Self::assemble(ModelsConfig::default(), providers, true, clock)
    }

    fn assemble(
        config: ModelsConfig,
        providers: BTreeMap<String, (ProviderKind, Arc<Provider>)>,
        replay_only: bool,
        clock: Arc<dyn Timer>,
    ) -> Result<Self, BuildError> {
        let limits = config.broker.budgets.limits()?;
        let state = State {
            cache: ResponseCache::new(config.broker.cache.ttl_ms, config.broker.cache.capacity),
            budgets: Budgets::new(limits),
            stats: Stats::default(),
        };
        Ok(Self {
            config,
            providers,
            replay_only,
            state: Mutex::new(state),
            clock,
        })
    }

    pub fn config(&self) -> &ModelsConfig {
        &self.config
    }

    /// Configured providers, by id.
    pub fn providers(&self) -> Vec<ProviderInfo> {
        self.providers
            .iter()
            .map(|(id, (kind, _))| ProviderInfo {
                id: id.clone(),
                kind: *kind,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("broker state lock poisoned")
    }

    /// `(provider id, target model)` for a requested model: forced provider, first matching route, or the default.
    pub fn route(&self, model: &str, ctx: &CallContext) -> Result<(String, String), BrokerError> {
        let (default_provider, default_model) =
            self.config.default_target().expect("validated at build");
        if self.replay_only {
            return Ok((REPLAY_PROVIDER_ID.to_owned(), model.to_owned()));
        }
        let target = |m: &str| {
            if m.is_empty() {
                default_model.to_owned()
            } else {
                m.to_owned()
            }
        };
        if let Some(p) = &ctx.provider {
            if !self.providers.contains_key(p) {
                return Err(BrokerError::UnknownProvider { id: p.clone() });
            }
            return Ok((p.clone(), target(model)));
        }
        if !model.is_empty()
            && let Some(rule) = self
                .config
                .broker
                .route
                .iter()
                .find(|r| pattern_matches(&r.pattern, model))
        {
            return Ok((
                rule.provider.clone(),
                rule.model.clone().unwrap_or_else(|| model.to_owned()),
            ));
        }
        Ok((default_provider.to_owned(), default_model.to_owned()))
    }

    /// `model.complete`: streamed deltas go to `stream` when given.
    pub async fn complete(
        &self,
        req: CompleteRequest,
        ctx: &CallContext,
        stream: Option<mpsc::Sender<String>>,
    ) -> Result<Answer<CompleteResponse>, BrokerError> {
        let a = self.serve(ModelRequest::Complete(req), ctx, stream).await?;
        match a.response {
            ModelResponse::Complete(response) => Ok(Answer {
                response,
                record: a.record,
                served_by: a.served_by,
                latency_ms: a.latency_ms,
            }),
            ModelResponse::Embed(_) => unreachable!("complete request served an embedding"),
        }
    }

    /// `model.embed`.
    pub async fn embed(
        &self,
        req: EmbedRequest,
        ctx: &CallContext,
    ) -> Result<Answer<EmbedResponse>, BrokerError> {
        let a = self.serve(ModelRequest::Embed(req), ctx, None).await?;
        match a.response {
            ModelResponse::Embed(response) => Ok(Answer {
                response,
                record: a.record,
                served_by: a.served_by,
                latency_ms: a.latency_ms,
            }),
            ModelResponse::Complete(_) => unreachable!("embed request served a completion"),
        }
    }

    /// Models each provider offers (one provider, or all).
    pub async fn list_models(
        &self,
        provider: Option<&str>,
    ) -> Result<Vec<(String, Result<Vec<String>, ProviderError>)>, BrokerError> {
        let chosen: Vec<(&String, &Arc<Provider>)> = match provider {
            Some(id) => {
                let (key, (_, p)) = self
                    .providers
                    .get_key_value(id)
                    .ok_or_else(|| BrokerError::UnknownProvider { id: id.to_owned() })?;
                vec![(key, p)]
            }
            None => self.providers.iter().map(|(k, (_, p))| (k, p)).collect(),
        };
        let mut out = Vec::new();
        for (id, p) in chosen {
            out.push((id.clone(), p.list_models().await));
        }
        Ok(out)
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// Number of cached responses.
    pub fn cache_len(&self) -> usize {
        self.lock().cache.len()
    }

    /// Model calls holding a budget reservation now, and today's spend with what they
    /// reserved (a drill checks a failed call gave its reservation back).
    pub fn reserved(&self) -> (usize, crate::budget::Spend) {
        let inner = self.lock();
        (inner.budgets.reservations_open(), inner.budgets.day_spend())
    }

    /// Forgets a finished run's budgets.
    pub fn close_run(&self, run: &str) {
        self.lock().budgets.close_run(run);
    }

    /// Forgets a finished opening's budgets.
    pub fn close_opening(&self, opening: &str) {
        self.lock().budgets.close_opening(opening);
    }

    fn account(&self, provider: &str, ctx: &CallContext, outcome: &Outcome) {
        self.lock().stats.record(
            provider,
            ctx.opening.as_deref(),
            ctx.agent.as_deref(),
            outcome,
        );
    }

    fn estimate(&self, req: &ModelRequest, model: &str) -> Spend {
        let (tin, tout) = match req {
            ModelRequest::Complete(r) => (
                estimate_prompt_tokens(r),
                u64::from(r.max_tokens_or_default()),
            ),
            ModelRequest::Embed(r) => (r.inputs.iter().map(|t| estimate_tokens(t)).sum(), 0),
        };
        Spend {
            tokens: tin + tout,
            usd_micros: self.config.broker.cost_usd_micros(model, tin, tout),
        }
    }

    /// The request actually sent: deterministic mode pins temperature and seed.
    fn effective(&self, req: &ModelRequest) -> ModelRequest {
        let mut eff = req.clone();
        if self.config.broker.deterministic
            && let ModelRequest::Complete(r) = &mut eff
        {
            r.temperature = Some(0.0);
            r.seed = Some(DETERMINISTIC_SEED);
        }
        eff
    }

    fn fail(&self, provider: &str, ctx: &CallContext, latency_ms: u64) {
        let outcome = Outcome {
            error: true,
            latency_ms,
            ..Outcome::default()
        };
        self.account(provider, ctx, &outcome);
    }

    /// Validates and routes; failures are accounted under no provider.
    fn admit(&self, req: &ModelRequest, ctx: &CallContext) -> Result<Route, BrokerError> {
        let checked = match req {
            ModelRequest::Complete(r) => r.validate(),
            ModelRequest::Embed(r) => r.validate(),
        };
        let routed = checked
            .map_err(BrokerError::from)
            .and_then(|()| self.route(req.model(), ctx));
        let (id, model) = routed.inspect_err(|_| self.fail(NONE_KEY, ctx, 0))?;
        let provider = self
            .providers
            .get(&id)
            .map(|(_, p)| p.clone())
            .expect("route returns configured providers");
        Ok(Route {
            id,
            model,
            provider,
        })
    }

    /// Reserves the estimate in every budget scope; replays reserve nothing.
    fn reserve(
        &self,
        route: &Route,
        eff: &ModelRequest,
        ctx: &CallContext,
        now_ms: u64,
    ) -> Result<Option<ReservationId>, BrokerError> {
        if route.provider.is_replay() {
            return Ok(None);
        }
        let need = self.estimate(eff, &route.model);
        let reserved = self.lock().budgets.reserve(ctx, need, now_ms);
        reserved.map(Some).map_err(|e| {
            self.fail(&route.id, ctx, 0);
            e.into()
        })
    }

    async fn serve(
        &self,
        req: ModelRequest,
        ctx: &CallContext,
        stream: Option<mpsc::Sender<String>>,
    ) -> Result<Answer<ModelResponse>, BrokerError> {
        let started_ms = self.clock.now_ms();
        let route = self.admit(&req, ctx)?;
        let eff = self.effective(&req);
        let cacheable = !route.provider.is_replay()
            && match &eff {
                ModelRequest::Complete(r) => r.is_deterministic(),
                ModelRequest::Embed(_) => true,
            };
        let key = CacheKey::new(req.hash(), &route.id, &route.model);
        let hit = if cacheable {
            self.lock().cache.get(&key, started_ms)
        } else {
            None
        };
        if let Some(hit) = hit {
            if let (Some(tx), ModelResponse::Complete(c)) = (&stream, &hit) {
                // A closed receiver only means nobody watches the stream.
                let _ = tx.send(c.content.clone()).await;
            }
            let latency_ms = self.clock.now_ms().saturating_sub(started_ms);
            self.account(
                &route.id,
                ctx,
                &Outcome {
                    cache_hit: true,
                    latency_ms,
                    ..Outcome::default()
                },
            );
            let record = Record::new(req, hit.clone(), ServedBy::Cache);
            return Ok(Answer {
                record,
                response: hit,
                served_by: ServedBy::Cache,
                latency_ms,
            });
        }
        let reservation = self.reserve(&route, &eff, ctx, started_ms)?;
        let result = match &eff {
            ModelRequest::Complete(r) => route
                .provider
                .complete(r, &route.model, stream.as_ref())
                .await
                .map(ModelResponse::Complete),
            ModelRequest::Embed(r) => route
                .provider
                .embed(r, &route.model)
                .await
                .map(ModelResponse::Embed),
        };
        let now_ms = self.clock.now_ms();
        let latency_ms = now_ms.saturating_sub(started_ms);
        let response = match result {
            Ok(r) => r,
            Err(source) => {
                if let Some(id) = reservation {
                    self.lock().budgets.release(id, now_ms);
                }
                self.fail(&route.id, ctx, latency_ms);
                return Err(BrokerError::Provider {
                    provider: route.id,
                    source,
                });
            }
        };
        let settled = Settled {
            reservation,
            cacheable,
            key,
            now_ms,
            latency_ms,
        };
        let response = self.settle(&route, ctx, response, settled);
        let served_by = if route.provider.is_replay() {
            ServedBy::Replay
        } else {
            ServedBy::Provider
        };
        Ok(Answer {
            record: Record::new(req, response.clone(), served_by),
            response,
            served_by,
            latency_ms,
        })
    }

    /// Prices the answer, reconciles its reservation, caches and accounts it.
    fn settle(
        &self,
        route: &Route,
        ctx: &CallContext,
        mut response: ModelResponse,
        s: Settled,
    ) -> ModelResponse {
        let usage = match &mut response {
            ModelResponse::Complete(r) => &mut r.usage,
            ModelResponse::Embed(r) => &mut r.usage,
        };
        // Replayed answers keep their recorded cost but cost nothing now.
        let cost_now = if s.reservation.is_some() {
            usage.cost_usd_micros =
                self.config
                    .broker
                    .cost_usd_micros(&route.model, usage.tokens_in, usage.tokens_out);
            usage.cost_usd_micros
        } else {
            0
        };
        let usage = *usage;
        let mut st = self.lock();
        if let Some(id) = s.reservation {
            let spent = Spend {
                tokens: usage.tokens_in + usage.tokens_out,
                usd_micros: usage.cost_usd_micros,
            };
            st.budgets.reconcile(id, spent, s.now_ms);
        }
        if s.cacheable {
            st.cache.insert(s.key, response.clone(), s.now_ms);
        }
        let outcome = Outcome {
            tokens_in: usage.tokens_in,
            tokens_out: usage.tokens_out,
            cost_usd_micros: cost_now,
            latency_ms: s.latency_ms,
            ..Outcome::default()
        };
        st.stats.record(
            &route.id,
            ctx.opening.as_deref(),
            ctx.agent.as_deref(),
            &outcome,
        );
        drop(st);
        response
    }
}

/// Where a request goes.
struct Route {
    id: String,
    model: String,
    provider: Arc<Provider>,
}

/// What [`Broker::settle`] needs besides the response.
struct Settled {
    reservation: Option<ReservationId>,
    cacheable: bool,
    key: CacheKey,
    now_ms: u64,
    latency_ms: u64,
}
