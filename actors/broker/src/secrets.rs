//! Secret resolution for provider API keys: environment first, then the file-based `stub` store.
//!
//! Order (config-v1): the exact `secret_id` as an environment variable, then its upper-snake
//! form (`runloop/models/openai` → `RUNLOOP_MODELS_OPENAI`), then the store named by
//! `security.secrets.provider`. Only the `stub` store (one file per secret under
//! `security.secrets.root`, path = secret id) is implemented; `os-keyring` and `age` are not,
//! and say so when the environment does not have the secret. A [`Secret`] never prints.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Largest secret file read.
const SECRET_FILE_BYTES_MAX: u64 = 16 * 1024;
/// Longest secret id.
const SECRET_ID_BYTES_MAX: usize = 256;

/// A secret value; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Which secret store backs `security.secrets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SecretProvider {
    /// Files under `root`, one per secret id (for tests and simple setups).
    #[default]
    Stub,
    /// Not implemented.
    OsKeyring,
    /// Not implemented.
    Age,
}

/// The `security.secrets` section of config v1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    pub provider: SecretProvider,
    pub root: PathBuf,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            provider: SecretProvider::Stub,
            root: PathBuf::from("~/.runloop/secrets"),
        }
    }
}

/// Why a secret could not be resolved. Never contains the secret.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secret id {id:?} is not valid (segments of [A-Za-z0-9._-], separated by '/')")]
    BadId { id: String },
    #[error("secret {id:?} not found: set {env} or write it to {path}")]
    NotFound {
        id: String,
        env: String,
        path: String,
    },
    #[error(
        "secret {id:?} not in the environment ({env}) and secret store {store} is not implemented"
    )]
    StoreNotImplemented {
        id: String,
        env: String,
        store: &'static str,
    },
    #[error("read secret {id:?} from {path}: {reason}")]
    Read {
        id: String,
        path: String,
        reason: String,
    },
}

/// Looks up environment variables; injected so tests need not touch the process environment.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Resolves secret ids to [`Secret`]s.
#[derive(Clone)]
pub struct SecretResolver {
    config: SecretsConfig,
    env: EnvLookup,
}

impl fmt::Debug for SecretResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretResolver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `runloop/models/openai` → `RUNLOOP_MODELS_OPENAI`.
pub fn upper_snake(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= SECRET_ID_BYTES_MAX
        && id.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
}

fn expand_home(path: &std::path::Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

impl SecretResolver {
    /// A resolver reading the real process environment.
    pub fn from_process_env(config: SecretsConfig) -> Self {
        Self {
            config,
            env: Arc::new(|name| std::env::var(name).ok()),
        }
    }

    /// A resolver with a fixed environment (tests).
    pub fn with_env(config: SecretsConfig, vars: HashMap<String, String>) -> Self {
        Self {
            config,
            env: Arc::new(move |name| vars.get(name).cloned()),
        }
    }

    pub fn resolve(&self, id: &str) -> Result<Secret, SecretError> {
        if !valid_id(id) {
            return Err(SecretError::BadId { id: id.to_owned() });
        }
        let env_name = upper_snake(id);
        if let Some(v) = (self.env)(id).or_else(|| (self.env)(&env_name)) {
            return Ok(Secret::new(v.trim().to_owned()));
        }
        let store = match self.config.provider {
            SecretProvider::Stub => return self.read_file(id, &env_name),
            SecretProvider::OsKeyring => "os-keyring",
            SecretProvider::Age => "age",
        };
        Err(SecretError::StoreNotImplemented {
            id: id.to_owned(),
            env: env_name,
            store,
        })
    }

    fn read_file(&self, id: &str, env_name: &str) -> Result<Secret, SecretError> {
        use std::io::Read;
        let path = expand_home(&self.config.root).join(id);
        let shown = path.display().to_string();
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SecretError::NotFound {
                    id: id.to_owned(),
                    env: env_name.to_owned(),
                    path: shown,
                });
            }
            Err(e) => {
                return Err(SecretError::Read {
                    id: id.to_owned(),
                    path: shown,
                    reason: e.to_string(),
                });
            }
        };
        let mut text = String::new();
        file.take(SECRET_FILE_BYTES_MAX)
            .read_to_string(&mut text)
            .map_err(|e| SecretError::Read {
                id: id.to_owned(),
                path: shown,
                reason: e.to_string(),
            })?;
        Ok(Secret::new(text.trim().to_owned()))
    }
}
