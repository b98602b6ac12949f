//! Config v1 (`shared/specs/config-v1.md`): file → `RUNLOOP__SECTION__KEY` env → flags,
//! later wins; unknown keys are errors naming the key's path; a missing file is defaults.
//!
//! The layers are merged as YAML trees, the merged tree is checked against [`SCHEMA`]
//! (every key of config v1, and nothing else), and only then turned into the typed
//! [`Config`]. Each key remembers the layer it came from ([`Config::sources`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::{Mapping, Value};

mod read;
mod security;

use read::{boolean, count, leaf, origin_of, shown, text};

/// Largest config file read, in bytes.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "RUNLOOP__";
/// The only config version this loader reads.
pub const CONFIG_VERSION: u64 = 1;

/// The shape of a config tree: which keys exist and what they hold.
#[derive(Debug)]
pub enum Shape {
    Scalar,
    ScalarList,
    List(&'static Shape),
    Map(&'static [(&'static str, Shape)]),
}

const PROVIDER: Shape = Shape::Map(&[
    ("id", Shape::Scalar),
    ("kind", Shape::Scalar),
    ("base_url", Shape::Scalar),
    ("secret_id", Shape::Scalar),
]);
const ROUTE: Shape = Shape::Map(&[("pattern", Shape::Scalar), ("provider", Shape::Scalar)]);
/// One `security.trust_roots` entry (docs/trust.md).
const TRUST_ROOT: Shape = Shape::Map(&[
    ("key", Shape::Scalar),
    ("name", Shape::Scalar),
    ("scopes", Shape::ScalarList),
]);

/// Every key of config v1.
pub const SCHEMA: Shape = Shape::Map(&[
    ("version", Shape::Scalar),
    (
        "runtime",
        Shape::Map(&[
            ("base", Shape::Scalar),
            ("agent_container", Shape::Scalar),
            ("socket_path", Shape::Scalar),
            ("sockets_dir", Shape::Scalar),
            // Not in config v1's text (issue 16, docs/sandbox.md): refuse to start an agent
            // whose sandbox cannot have its own cgroup (default: true in system mode).
            ("require_cgroups", Shape::Scalar),
            // Not in config v1's text (docs/sandbox.md): most warm sandboxes kept ready
            // (default 32; 0: none).
            ("warm_sandboxes", Shape::Scalar),
        ]),
    ),
    (
        "models",
        Shape::Map(&[
            ("default", Shape::Scalar),
            (
                "broker",
                Shape::Map(&[
                    ("providers", Shape::List(&PROVIDER)),
                    ("route", Shape::List(&ROUTE)),
                    (
                        "cache",
                        Shape::Map(&[("ttl_ms", Shape::Scalar), ("capacity", Shape::Scalar)]),
                    ),
                    (
                        "budgets",
                        Shape::Map(&[
                            ("default_tokens", Shape::Scalar),
                            ("hard_cap_usd", Shape::Scalar),
                        ]),
                    ),
                ]),
            ),
        ]),
    ),
    (
        "kb",
        Shape::Map(&[
            ("root_dir", Shape::Scalar),
            ("events_db", Shape::Scalar),
            ("view_db", Shape::Scalar),
        ]),
    ),
    (
        "logging",
        Shape::Map(&[
            ("level", Shape::Scalar),
            ("format", Shape::Scalar),
            ("file", Shape::Scalar),
        ]),
    ),
    (
        "observability",
        Shape::Map(&[(
            "traces",
            Shape::Map(&[
                ("enabled", Shape::Scalar),
                ("otlp_endpoint", Shape::Scalar),
                ("sampling", Shape::Scalar),
                // Not in config v1's text: the OTLP transport (`grpc` | `http`) when the
                // endpoint's port or path does not say (docs/observability.md).
                ("protocol", Shape::Scalar),
            ]),
        )]),
    ),
    (
        "security",
        Shape::Map(&[
            ("confirm_external_actions", Shape::Scalar),
            // Not in config v1's text (issue 16, docs/trust.md): the keys trusted to sign
            // agent bundles beside the built-in project key, and whether unsigned or
            // untrusted bundles load anyway (with a warning on every load).
            ("trust_roots", Shape::List(&TRUST_ROOT)),
            ("allow_unsigned_agents", Shape::Scalar),
            // Not in config v1's text (issue 16, docs/trust.md): what `rlp cap grant` may
            // add to a bundle's policy (`extend`, op patterns) and its longest `max_ttl`.
            (
                "grants",
                Shape::Map(&[("extend", Shape::ScalarList), ("max_ttl", Shape::Scalar)]),
            ),
            (
                "secrets",
                Shape::Map(&[("provider", Shape::Scalar), ("root", Shape::Scalar)]),
            ),
        ]),
    ),
    (
        "router",
        Shape::Map(&[
            ("fastpath_shell", Shape::Scalar),
            ("default_opening", Shape::Scalar),
            ("allowlist", Shape::ScalarList),
            ("denylist", Shape::ScalarList),
            ("known_commands", Shape::ScalarList),
        ]),
    ),
    ("ui", Shape::Map(&[("theme", Shape::Scalar)])),
    // Where openings look for agent bundles after the opening's own `agents/` directory
    // (`openings-v0.md`); `~/` is the user's home.
    ("agents", Shape::Map(&[("search_dirs", Shape::ScalarList)])),
    // Effects (`effect.perform`): where mail goes (a Maildir outbox, or SMTP), the sender,
    // and how long a person has to answer a confirmation.
    (
        "effects",
        Shape::Map(&[
            ("outbox_dir", Shape::Scalar),
            ("mail_from", Shape::Scalar),
            ("confirm_timeout_ms", Shape::Scalar),
            (
                "smtp",
                Shape::Map(&[
                    ("host", Shape::Scalar),
                    ("port", Shape::Scalar),
                    ("security", Shape::Scalar),
                    ("username", Shape::Scalar),
                    ("password_env", Shape::Scalar),
                    ("timeout_ms", Shape::Scalar),
                ]),
            ),
        ]),
    ),
]);

/// User mode (`~/.runloop`) or system mode (`/etc/runloop`, `/var/lib/runloop`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    User { home: PathBuf },
    System,
}

impl Mode {
    /// User mode for `$HOME`.
    pub fn user_from_env() -> Result<Self, ConfigError> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or(ConfigError::NoHome)?;
        Ok(Mode::User {
            home: PathBuf::from(home),
        })
    }

    /// Where this mode's config file lives.
    pub fn config_file(&self) -> PathBuf {
        match self {
            Mode::User { home } => home.join(".runloop/config.yaml"),
            Mode::System => PathBuf::from("/etc/runloop/config.yaml"),
        }
    }

    /// State, POG and bundles.
    pub fn state_dir(&self) -> PathBuf {
        match self {
            Mode::User { home } => home.join(".runloop"),
            Mode::System => PathBuf::from("/var/lib/runloop"),
        }
    }

    /// `~` and `~/…` expanded against the user's home (system mode leaves them).
    pub fn expand(&self, path: &str) -> PathBuf {
        match (self, path.strip_prefix('~')) {
            (Mode::User { home }, Some("")) => home.clone(),
            (Mode::User { home }, Some(rest)) if rest.starts_with('/') => home.join(&rest[1..]),
            _ => PathBuf::from(path),
        }
    }
}

/// Where one key's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

/// Why the config could not be loaded; each names the failed step.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: $HOME is not set; user mode needs a home directory")]
    NoHome,
    #[error("config: read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config: {path} is {len} bytes, above the {CONFIG_FILE_BYTES_MAX}-byte limit")]
    TooLarge { path: PathBuf, len: u64 },
    #[error("config: parse {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("config: unknown key {path} (from {origin})")]
    UnknownKey { path: String, origin: String },
    #[error("config: {path} (from {origin}) must be {want}")]
    WrongShape {
        path: String,
        origin: String,
        want: &'static str,
    },
    #[error("config: {origin}: an override must look like SECTION__KEY=value or section.key=value")]
    BadOverride { origin: String },
    #[error("config: version {found} is not supported (this is config v{CONFIG_VERSION})")]
    Version { found: String },
    #[error("config: {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("config: {path} (from {origin}) must be {want}; {problem}")]
    BadValue {
        path: &'static str,
        origin: String,
        want: String,
        problem: String,
    },
}

/// `runtime:` — the parts the kernel reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Runtime {
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default)]
    pub agent_container: Option<String>,
    #[serde(default)]
    pub socket_path: Option<String>,
    #[serde(default)]
    pub sockets_dir: Option<String>,
    /// `runtime.require_cgroups` as set; [`Config::require_cgroups`] applies the default.
    #[serde(default)]
    pub require_cgroups: Option<bool>,
    /// `runtime.warm_sandboxes` as set; [`Config::warm_sandboxes`] applies the default.
    #[serde(default)]
    pub warm_sandboxes: Option<u64>,
}

/// `logging.level`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// Every level with the word config v1 spells it with, quietest first.
    pub const ALL: [(&'static str, LogLevel); 5] = [
        ("error", LogLevel::Error),
        ("warn", LogLevel::Warn),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("trace", LogLevel::Trace),
    ];

    /// The level `word` names, if any.
    pub fn parse(word: &str) -> Option<LogLevel> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == word)
            .map(|(_, level)| *level)
    }
}

/// `logging:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Logging {
    #[serde(default)]
    pub level: LogLevel,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
}

/// The loaded config: typed sections the kernel uses, the whole checked tree for the
/// others, and each key's source.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub runtime: Runtime,
    pub logging: Logging,
    /// `security.trust_roots` and `security.allow_unsigned_agents`, with the built-in
    /// project key: what every bundle load is checked against.
    pub trust: runloop_bundle::TrustPolicy,
    /// `security.grants`: what capability grants may extend, and for how long.
    pub grants: runloop_bundle::grants::GrantRules,
    tree: Value,
    sources: BTreeMap<String, Source>,
}

impl Config {
    /// The checked, merged tree (for sections other crates type).
    pub fn tree(&self) -> &Value {
        &self.tree
    }

    /// `agents.search_dirs`, in order, with a leading `~/` made the home directory (user
    /// mode); empty when unset.
    pub fn agent_search_dirs(&self) -> Vec<PathBuf> {
        let Some(Value::Sequence(items)) =
            self.tree.get("agents").and_then(|a| a.get("search_dirs"))
        else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .map(|dir| match (&self.mode, dir.strip_prefix("~/")) {
                (Mode::User { home }, Some(rest)) => home.join(rest),
                _ => PathBuf::from(dir),
            })
            .collect()
    }

    /// `runtime.require_cgroups`: refuse to start an agent whose sandbox cannot have its
    /// own cgroup. Unset: true in system mode, false in user mode (a desktop without a
    /// delegated cgroup tree still runs agents, with a notice).
    pub fn require_cgroups(&self) -> bool {
        self.runtime
            .require_cgroups
            .unwrap_or(matches!(self.mode, Mode::System))
    }

    /// `runtime.warm_sandboxes`: most sandboxes kept ready for agent starts and restarts
    /// (0: none, every start spawns). Unset: `runloop_agent_actor::warm::WARM_MAX_DEFAULT`.
    pub fn warm_sandboxes(&self) -> usize {
        self.runtime
            .warm_sandboxes
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(runloop_agent_actor::warm::WARM_MAX_DEFAULT)
    }

    /// Each key path that was set, and by which layer.
    pub fn sources(&self) -> &BTreeMap<String, Source> {
        &self.sources
    }
}

/// The inputs of one load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub mode: Mode,
    /// A config file other than the mode's default.
    pub file: Option<PathBuf>,
    /// Environment variables (all of them; those starting with [`ENV_PREFIX`] are used).
    pub env: Vec<(String, String)>,
    /// `section.key=value` overrides from the command line.
    pub flags: Vec<String>,
}

/// Loads file → env → flags.
pub fn load(options: &LoadOptions) -> Result<Config, ConfigError> {
    let mut tree = Value::Mapping(Mapping::new());
    let mut sources = BTreeMap::new();
    let path = options
        .file
        .clone()
        .unwrap_or_else(|| options.mode.config_file());
    if let Some(text) = read_file(&path)? {
        let origin = format!("file {}", path.display());
        let file: Value = serde_norway::from_str(&text).map_err(|e| ConfigError::Parse {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        let file = match file {
            Value::Null => Value::Mapping(Mapping::new()),
            other => other,
        };
        check(&file, &SCHEMA, "", &origin)?;
        merge(
            &mut tree,
            file,
            "",
            &Source::File(path.clone()),
            &mut sources,
        );
    }
    for (var, value) in &options.env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let origin = format!("env {var}");
        apply_override(
            &mut tree,
            &keys,
            value,
            &origin,
            Source::Env(var.clone()),
            &mut sources,
        )?;
    }
    for flag in &options.flags {
        let origin = format!("flag --set {flag}");
        let (key, value) = flag
            .split_once('=')
            .ok_or_else(|| ConfigError::BadOverride {
                origin: origin.clone(),
            })?;
        let keys: Vec<String> = key.split('.').map(str::to_owned).collect();
        apply_override(&mut tree, &keys, value, &origin, Source::Flag, &mut sources)?;
    }
    typed(options.mode.clone(), tree, sources)
}

fn read_file(path: &Path) -> Result<Option<String>, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    if meta.len() > CONFIG_FILE_BYTES_MAX {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            len: meta.len(),
        });
    }
    // The size above is only a hint (a FIFO or /dev/zero says 0): the read itself is cut.
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| {
            use std::io::Read;
            file.take(CONFIG_FILE_BYTES_MAX + 1)
                .read_to_string(&mut text)
        })
        .map_err(read_err)?;
    if text.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            len: text.len() as u64,
        });
    }
    Ok(Some(text))
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Checks `value` against `shape`; the first unknown key or wrong shape is the error.
fn check(value: &Value, shape: &Shape, path: &str, origin: &str) -> Result<(), ConfigError> {
    let wrong = |want| ConfigError::WrongShape {
        path: if path.is_empty() {
            "(top level)".into()
        } else {
            path.to_owned()
        },
        origin: origin.to_owned(),
        want,
    };
    match shape {
        Shape::Scalar => match value {
            Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_) => {
                Err(wrong("a single value"))
            }
            _ => Ok(()),
        },
        Shape::ScalarList => match value {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| check(v, &Shape::Scalar, &format!("{path}[{i}]"), origin)),
            Value::Null => Ok(()),
            _ => Err(wrong("a list of values")),
        },
        Shape::List(item) => match value {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| check(v, item, &format!("{path}[{i}]"), origin)),
            Value::Null => Ok(()),
            _ => Err(wrong("a list")),
        },
        Shape::Map(fields) => {
            let map = match value {
                Value::Mapping(map) => map,
                Value::Null => return Ok(()),
                _ => return Err(wrong("a map")),
            };
            for (key, child) in map {
                let Some(key) = key.as_str() else {
                    return Err(ConfigError::UnknownKey {
                        path: join(path, &format!("{key:?}")),
                        origin: origin.to_owned(),
                    });
                };
                let Some((_, child_shape)) = fields.iter().find(|(name, _)| *name == key) else {
                    return Err(ConfigError::UnknownKey {
                        path: join(path, key),
                        origin: origin.to_owned(),
                    });
                };
                check(child, child_shape, &join(path, key), origin)?;
            }
            Ok(())
        }
    }
}

/// Merges `layer` into `tree`: maps key by key, anything else replaced whole.
fn merge(
    tree: &mut Value,
    layer: Value,
    path: &str,
    source: &Source,
    sources: &mut BTreeMap<String, Source>,
) {
    if layer.is_mapping() && !tree.is_mapping() {
        // A map replaces a scalar key by key, so each leaf records its own source.
        *tree = Value::Mapping(Mapping::new());
    }
    match (tree, layer) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                let child_path = join(path, key.as_str().unwrap_or_default());
                let slot = base.entry(key).or_insert(Value::Null);
                merge(slot, value, &child_path, source, sources);
            }
        }
        (slot, value) => {
            *slot = value;
            sources.insert(path.to_owned(), source.clone());
        }
    }
}

fn apply_override(
    tree: &mut Value,
    keys: &[String],
    raw: &str,
    origin: &str,
    source: Source,
    sources: &mut BTreeMap<String, Source>,
) -> Result<(), ConfigError> {
    if keys.is_empty() || keys.iter().any(String::is_empty) {
        return Err(ConfigError::BadOverride {
            origin: origin.to_owned(),
        });
    }
    // The value is read as YAML so that `true`, `8000` and `[a, b]` get their types; text
    // that is not valid YAML is taken as a plain string.
    let value: Value = serde_norway::from_str(raw).unwrap_or_else(|_| Value::String(raw.into()));
    let mut layer = value;
    for key in keys.iter().rev() {
        let mut map = Mapping::new();
        map.insert(Value::String(key.clone()), layer);
        layer = Value::Mapping(map);
    }
    check(&layer, &SCHEMA, "", origin)?;
    merge(tree, layer, "", &source, sources);
    Ok(())
}

fn runtime(tree: &Value, sources: &BTreeMap<String, Source>) -> Result<Runtime, ConfigError> {
    Ok(Runtime {
        base: text(tree, sources, "runtime.base")?,
        agent_container: text(tree, sources, "runtime.agent_container")?,
        socket_path: text(tree, sources, "runtime.socket_path")?,
        sockets_dir: text(tree, sources, "runtime.sockets_dir")?,
        require_cgroups: boolean(tree, sources, "runtime.require_cgroups")?,
        warm_sandboxes: count(
            tree,
            sources,
            "runtime.warm_sandboxes",
            runloop_agent_actor::warm::WARM_MAX_LIMIT as u64,
        )?,
    })
}

fn logging(tree: &Value, sources: &BTreeMap<String, Source>) -> Result<Logging, ConfigError> {
    const PATH: &str = "logging.level";
    let level = match leaf(tree, PATH) {
        None => LogLevel::default(),
        Some(value) => value.as_str().and_then(LogLevel::parse).ok_or_else(|| {
            let names: Vec<&str> = LogLevel::ALL.iter().map(|(name, _)| *name).collect();
            ConfigError::BadValue {
                path: PATH,
                origin: origin_of(sources, PATH),
                want: format!("one of {}", names.join(", ")),
                problem: format!("got {}", shown(value)),
            }
        })?,
    };
    Ok(Logging {
        level,
        format: text(tree, sources, "logging.format")?,
        file: text(tree, sources, "logging.file")?,
    })
}

/// `kb.root_dir` must name a directory or a place one can be made: the nearest part of
/// the path that exists must be a directory. Checked here so a daemon with a bad store
/// path stops with the key's name before any actor starts.
fn check_kb_root(
    mode: &Mode,
    tree: &Value,
    sources: &BTreeMap<String, Source>,
) -> Result<(), ConfigError> {
    const PATH: &str = "kb.root_dir";
    let Some(root) = text(tree, sources, PATH)? else {
        return Ok(());
    };
    let dir = mode.expand(&root);
    for part in dir.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::metadata(part) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(ConfigError::BadValue {
                    path: PATH,
                    origin: origin_of(sources, PATH),
                    want: "a directory".into(),
                    problem: format!("{} is not a directory", part.display()),
                });
            }
            // Missing, or under a file (ENOTDIR): the walk up finds the culprit.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            // Unreadable (permissions): opening the store reports it with its path.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

fn typed(
    mode: Mode,
    tree: Value,
    sources: BTreeMap<String, Source>,
) -> Result<Config, ConfigError> {
    if let Some(version) = tree.get("version")
        && version.as_u64() != Some(CONFIG_VERSION)
    {
        let found = serde_norway::to_string(version).unwrap_or_default();
        return Err(ConfigError::Version {
            found: found.trim().to_owned(),
        });
    }
    check_kb_root(&mode, &tree, &sources)?;
    Ok(Config {
        runtime: runtime(&tree, &sources)?,
        logging: logging(&tree, &sources)?,
        trust: security::trust(&tree, &sources)?,
        grants: security::grants(&tree, &sources)?,
        mode,
        tree,
        sources,
    })
}

/// The socket places this config names, expanded (for `runloop_client::discovery`).
pub fn socket_places(config: &Config) -> runloop_client::SocketPlaces {
    let mode = &config.mode;
    runloop_client::SocketPlaces {
        socket_path: config
            .runtime
            .socket_path
            .as_deref()
            .map(|p| mode.expand(p)),
        sockets_dir: config
            .runtime
            .sockets_dir
            .as_deref()
            .map(|d| mode.expand(d)),
        user_home: match mode {
            Mode::User { home } => Some(home.clone()),
            Mode::System => None,
        },
    }
}

/// Where `rlp` looks for the daemon's socket, in order (config v1 "Socket discovery").
/// `runtime.socket_path`, when set, is the only candidate (and must answer).
pub fn socket_candidates(config: &Config) -> Vec<PathBuf> {
    socket_places(config).candidates()
}

/// Where `runloopd` binds: system mode `/run/runloop/rmp.sock`; user mode the first
/// configured place, else `~/.runloop/sock/rmp.sock`.
pub fn bind_path(config: &Config) -> PathBuf {
    socket_places(config).bind_path()
}
