//! The singleton services `runloopd` starts in the system supervisor's slots, built from
//! config v1: the POG (section `kb`) and the model broker (sections `models` and
//! `security.secrets`). Embedded `rlp` commands start neither.

use std::sync::Arc;

use runloop_broker::{Broker, ModelsConfig, SecretResolver, SecretsConfig};
use runloop_pog::PogConfig;
use serde_norway::Value;

use crate::config::Config;
use crate::kernel::PogService;

/// Pooled read connections of the daemon's POG.
const POG_READ_CONNS: usize = 4;

/// Why a service could not be built from the config.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("config {section}: {message}")]
    Section {
        section: &'static str,
        message: String,
    },
    #[error("model broker: {0}")]
    Broker(#[from] runloop_broker::BuildError),
}

fn section<'a>(tree: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(tree, |value, key| value.get(*key))
}

/// The POG under `kb.root_dir` (default: the mode's state dir + `pog`), with the
/// configured file names.
pub fn pog_service(config: &Config) -> PogService {
    let text = |key: &str| section(config.tree(), &["kb", key]).and_then(Value::as_str);
    let root_dir = text("root_dir")
        .map(|p| config.mode.expand(p))
        .unwrap_or_else(|| config.mode.state_dir().join("pog"));
    let mut pog = PogConfig::in_dir(root_dir);
    if let Some(events) = text("events_db") {
        pog.events_db = events.into();
    }
    if let Some(views) = text("view_db") {
        pog.view_db = views.into();
    }
    PogService {
        config: pog,
        read_conns: POG_READ_CONNS,
    }
}

/// Where `runloopd` keeps parked agents across restarts: `quarantine.msgpack` in the
/// mode's state dir (`~/.runloop/` or `/var/lib/runloop/`).
pub fn quarantine_file(config: &Config) -> std::path::PathBuf {
    config.mode.state_dir().join("quarantine.msgpack")
}

/// The model broker from `models` (absent: the offline provider only) with secrets
/// resolved from the environment first, then `security.secrets`; it reads time from the
/// kernel's injected `clock`.
pub fn broker(
    config: &Config,
    clock: Arc<dyn runloop_proto::Clock>,
) -> Result<Arc<Broker>, ServiceError> {
    let models: ModelsConfig = match section(config.tree(), &["models"]).cloned() {
        Some(value) => serde_norway::from_value(value).map_err(|e| ServiceError::Section {
            section: "models",
            message: e.to_string(),
        })?,
        None => ModelsConfig::default(),
    };
    let secrets: SecretsConfig = match section(config.tree(), &["security", "secrets"]).cloned() {
        Some(value) => serde_norway::from_value(value).map_err(|e| ServiceError::Section {
            section: "security.secrets",
            message: e.to_string(),
        })?,
        None => SecretsConfig::default(),
    };
    let resolver = SecretResolver::from_process_env(secrets);
    let timer = Arc::new(runloop_broker::KernelTimer(clock));
    Ok(Arc::new(Broker::new(models, &resolver, timer)?))
}
