//! The broker as a ractor singleton actor (`runloop.broker`) in the kernel's supervision tree.
//!
//! Lifecycle: `pre_start` builds the [`Broker`] from config (resolving API keys) and, when
//! configured, starts the supervised local model server; a build failure fails the start and
//! the supervisor decides. Each request message is served on its own tokio task so a slow
//! provider never blocks the mailbox; at most [`IN_FLIGHT_MAX`] run at once and further
//! requests are refused at once with [`BrokerError::Busy`] (back-pressure, no hidden queue).
//! `post_stop` stops the local model server (its process is killed with the actor).

use crate::accounting::Stats;
use crate::broker::{Broker, BrokerError, BuildError};
use crate::clock::Timer;
use crate::config::ModelsConfig;
use crate::local_server::{LocalServer, LocalServerStatus};
use crate::provider::ProviderError;
use crate::secrets::SecretResolver;
use crate::types::{
    Answer, CallContext, CompleteRequest, CompleteResponse, EmbedRequest, EmbedResponse,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};

/// Registered name of the singleton; a second spawn with this name fails.
pub const BROKER_ACTOR_NAME: &str = "runloop.broker";
/// Most requests served concurrently.
pub const IN_FLIGHT_MAX: usize = 64;
/// Bound on one request through [`BrokerHandle`] (covers HTTP timeouts plus retries).
pub const CALL_TIMEOUT_MS: u64 = 600_000;

/// Models per provider, or that provider's error.
pub type ModelList = Vec<(String, Result<Vec<String>, ProviderError>)>;

/// Messages the broker actor accepts.
#[derive(Debug)]
pub enum BrokerMsg {
    /// `model.complete`; text deltas go to `stream` when given.
    Complete {
        req: CompleteRequest,
        ctx: CallContext,
        stream: Option<mpsc::Sender<String>>,
        reply: RpcReplyPort<Result<Answer<CompleteResponse>, BrokerError>>,
    },
    /// `model.embed`.
    Embed {
        req: EmbedRequest,
        ctx: CallContext,
        reply: RpcReplyPort<Result<Answer<EmbedResponse>, BrokerError>>,
    },
    /// Models of one provider or all.
    ListModels {
        provider: Option<String>,
        reply: RpcReplyPort<Result<ModelList, BrokerError>>,
    },
    /// Accounting snapshot (actor metrics for agtop and `rlp broker stats`).
    Stats(RpcReplyPort<Stats>),
    /// State of the supervised local model server, if configured.
    LocalServer(RpcReplyPort<Option<LocalServerStatus>>),
    /// Forget a finished opening's budgets.
    CloseOpening(String),
    /// Forget a finished run's budgets (keyed by its trace id).
    CloseRun(String),
}

/// How the actor gets its broker.
#[derive(Debug)]
pub enum BrokerArgs {
    /// Build from the `models` config section in `pre_start`.
    Config {
        config: Box<ModelsConfig>,
        secrets: SecretResolver,
        clock: Arc<dyn Timer>,
    },
    /// Use a broker built elsewhere (e.g. [`Broker::replay`]).
    Prebuilt(Arc<Broker>),
}

/// Actor state.
#[derive(Debug)]
pub struct BrokerState {
    broker: Arc<Broker>,
    permits: Arc<Semaphore>,
    local: Option<LocalServer>,
}

/// The broker actor.
#[derive(Debug, Default, Clone, Copy)]
pub struct BrokerActor;

impl BrokerActor {
    /// Spawns the singleton under [`BROKER_ACTOR_NAME`].
    pub async fn spawn_singleton(
        args: BrokerArgs,
    ) -> Result<(ActorRef<BrokerMsg>, tokio::task::JoinHandle<()>), ractor::SpawnErr> {
        Actor::spawn(Some(BROKER_ACTOR_NAME.to_owned()), BrokerActor, args).await
    }
}

impl Actor for BrokerActor {
    type Msg = BrokerMsg;
    type State = BrokerState;
    type Arguments = BrokerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: BrokerArgs,
    ) -> Result<BrokerState, ActorProcessingErr> {
        let (broker, clock) = match args {
            BrokerArgs::Config {
                config,
                secrets,
                clock,
            } => (
                Arc::new(Broker::new(*config, &secrets, clock.clone())?),
                clock,
            ),
            BrokerArgs::Prebuilt(b) => (b, Arc::new(crate::clock::SystemClock) as Arc<dyn Timer>),
        };
        let local = broker
            .config()
            .broker
            .local_server
            .clone()
            .map(|cfg| LocalServer::start(cfg, clock));
        Ok(BrokerState {
            broker,
            permits: Arc::new(Semaphore::new(IN_FLIGHT_MAX)),
            local,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut BrokerState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(local) = state.local.take() {
            local.stop().await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: BrokerMsg,
        state: &mut BrokerState,
    ) -> Result<(), ActorProcessingErr> {
        let broker = state.broker.clone();
        match msg {
            BrokerMsg::Complete {
                req,
                ctx,
                stream,
                reply,
            } => match state.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(async move {
                        let result = broker.complete(req, &ctx, stream).await;
                        // The caller may have given up; nothing else to do then.
                        let _ = reply.send(result);
                        drop(permit);
                    });
                }
                Err(_) => {
                    let _ = reply.send(Err(BrokerError::Busy { max: IN_FLIGHT_MAX }));
                }
            },
            BrokerMsg::Embed { req, ctx, reply } => match state.permits.clone().try_acquire_owned()
            {
                Ok(permit) => {
                    tokio::spawn(async move {
                        let _ = reply.send(broker.embed(req, &ctx).await);
                        drop(permit);
                    });
                }
                Err(_) => {
                    let _ = reply.send(Err(BrokerError::Busy { max: IN_FLIGHT_MAX }));
                }
            },
            BrokerMsg::ListModels { provider, reply } => {
                tokio::spawn(async move {
                    let _ = reply.send(broker.list_models(provider.as_deref()).await);
                });
            }
            BrokerMsg::Stats(reply) => {
                let _ = reply.send(broker.stats());
            }
            BrokerMsg::LocalServer(reply) => {
                let _ = reply.send(state.local.as_ref().map(LocalServer::status));
            }
            BrokerMsg::CloseOpening(opening) => broker.close_opening(&opening),
            BrokerMsg::CloseRun(run) => broker.close_run(&run),
        }
        Ok(())
    }
}

/// Typed client of the broker actor: what the kernel's host-call handlers use.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    actor: ActorRef<BrokerMsg>,
}

fn gone<E>(_: E) -> BrokerError {
    BrokerError::Unavailable
}

impl BrokerHandle {
    pub fn new(actor: ActorRef<BrokerMsg>) -> Self {
        Self { actor }
    }

    pub async fn complete(
        &self,
        req: CompleteRequest,
        ctx: CallContext,
        stream: Option<mpsc::Sender<String>>,
    ) -> Result<Answer<CompleteResponse>, BrokerError> {
        ractor::call_t!(
            self.actor,
            |reply| BrokerMsg::Complete {
                req,
                ctx,
                stream,
                reply
            },
            CALL_TIMEOUT_MS
        )
        .map_err(gone)?
    }

    pub async fn embed(
        &self,
        req: EmbedRequest,
        ctx: CallContext,
    ) -> Result<Answer<EmbedResponse>, BrokerError> {
        ractor::call_t!(
            self.actor,
            |reply| BrokerMsg::Embed { req, ctx, reply },
            CALL_TIMEOUT_MS
        )
        .map_err(gone)?
    }

    pub async fn list_models(&self, provider: Option<String>) -> Result<ModelList, BrokerError> {
        ractor::call_t!(
            self.actor,
            |reply| BrokerMsg::ListModels { provider, reply },
            CALL_TIMEOUT_MS
        )
        .map_err(gone)?
    }

    pub async fn stats(&self) -> Result<Stats, BrokerError> {
        ractor::call_t!(self.actor, BrokerMsg::Stats, CALL_TIMEOUT_MS).map_err(gone)
    }

    pub async fn local_server(&self) -> Result<Option<LocalServerStatus>, BrokerError> {
        ractor::call_t!(self.actor, BrokerMsg::LocalServer, CALL_TIMEOUT_MS).map_err(gone)
    }
}

/// Keeps [`BuildError`] in the public surface next to the actor that reports it.
pub type ActorBuildError = BuildError;
