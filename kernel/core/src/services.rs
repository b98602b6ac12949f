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

/// The effects service from `effects` (defaults: the Maildir outbox `outbox/` and runs'
/// artifacts under the mode's state dir, sender `Runloop <runloop@localhost>`, 120 s to
/// answer a confirmation). A bad section is bad input.
pub fn effects_config(config: &Config) -> Result<crate::effects::EffectsConfig, ServiceError> {
    let bad = |message: String| ServiceError::Section {
        section: "effects",
        message,
    };
    let mut effects = crate::effects::EffectsConfig::in_state_dir(&config.mode.state_dir());
    let text = |key: &str| section(config.tree(), &["effects", key]).and_then(Value::as_str);
    if let Some(dir) = text("outbox_dir") {
        effects.outbox = config.mode.expand(dir);
    }
    if let Some(from) = text("mail_from") {
        let mailbox = runloop_mail::Mailbox::new(from);
        // The sender is checked as the one recipient of a probe message.
        let probe = runloop_mail::MailPayload {
            to: vec![mailbox.clone()],
            cc: Vec::new(),
            subject: "probe".into(),
            body: String::new(),
        };
        probe
            .validate()
            .map_err(|e| bad(format!("mail_from {from:?}: {e}")))?;
        effects.mail_from = mailbox;
    }
    if let Some(value) = section(config.tree(), &["effects", "confirm_timeout_ms"]) {
        let ms = value
            .as_u64()
            .filter(|ms| (1..=86_400_000).contains(ms))
            .ok_or_else(|| bad("confirm_timeout_ms: a number of ms in 1..=86400000".into()))?;
        effects.confirm_timeout_ms = ms;
    }
    if let Some(smtp) = section(config.tree(), &["effects", "smtp"]).cloned() {
        let smtp: runloop_mail::SmtpConfig =
            serde_norway::from_value(smtp).map_err(|e| bad(format!("smtp: {e}")))?;
        smtp.validate().map_err(|e| bad(format!("smtp: {e}")))?;
        effects.smtp = Some(smtp);
    }
    Ok(effects)
}
