//! Config v1 loader tests: real files in a temporary directory, env and flags as data.

use std::path::{Path, PathBuf};

/// One bad-input case: file text, env, flags, the error's start.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
    &'static str,
);

use runloop_kernel::config::{
    ConfigError, LoadOptions, LogLevel, Mode, Source, bind_path, load, socket_candidates,
};

fn home(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("runloop-config-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join(".runloop")).unwrap();
    dir
}

fn options(home: &Path, file: &str) -> LoadOptions {
    std::fs::write(home.join(".runloop/config.yaml"), file).unwrap();
    LoadOptions {
        mode: Mode::User {
            home: home.to_owned(),
        },
        file: None,
        env: Vec::new(),
        flags: Vec::new(),
    }
}

#[test]
fn a_missing_file_means_defaults() {
    let home = home("missing");
    let config = load(&LoadOptions {
        mode: Mode::User { home: home.clone() },
        file: None,
        env: vec![("PATH".into(), "/bin".into())],
        flags: Vec::new(),
    })
    .unwrap();
    assert_eq!(config.logging.level, LogLevel::Info);
    assert!(config.sources().is_empty());
    assert_eq!(bind_path(&config), home.join(".runloop/sock/rmp.sock"));
    assert_eq!(
        socket_candidates(&config),
        [
            home.join(".runloop/sock/rmp.sock"),
            PathBuf::from("/run/runloop/rmp.sock")
        ]
    );
}

#[test]
fn the_spec_example_loads() {
    let home = home("example");
    let example = r#"
version: 1
runtime:
  base: "debian"
  agent_container: "wasm32-wasip1"
models:
  default: "local:llama3.1-8b"
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
kb:
  root_dir: "~/.runloop/pog"
  events_db: "events.sqlite"
  view_db: "pog.sqlite"
logging:
  level: "info"
  format: "auto"
  file: ""
observability:
  traces:
    enabled: false
    otlp_endpoint: ""
    sampling: "parent"
security:
  confirm_external_actions: true
  secrets:
    provider: "os-keyring"
    root: "~/.runloop/secrets"
router:
  fastpath_shell: true
  default_opening: "compose_email"
  allowlist: []
  denylist: []
  known_commands: []
ui:
  theme: "mono"
"#;
    let config = load(&options(&home, example)).unwrap();
    assert_eq!(config.runtime.base.as_deref(), Some("debian"));
    let file = home.join(".runloop/config.yaml");
    assert_eq!(config.sources()["ui.theme"], Source::File(file));
}

#[test]
fn layers_apply_file_then_env_then_flags() {
    let home = home("layers");
    let mut opts = options(
        &home,
        "logging:\n  level: warn\n  format: text\nruntime:\n  sockets_dir: ~/socks\n",
    );
    opts.env = vec![
        ("RUNLOOP__LOGGING__LEVEL".into(), "debug".into()),
        ("RUNLOOP__LOGGING__FORMAT".into(), "json".into()),
    ];
    opts.flags = vec!["logging.level=trace".into()];
    let config = load(&opts).unwrap();
    assert_eq!(config.logging.level, LogLevel::Trace);
    assert_eq!(config.logging.format.as_deref(), Some("json"));
    assert_eq!(config.sources()["logging.level"], Source::Flag);
    assert_eq!(
        config.sources()["logging.format"],
        Source::Env("RUNLOOP__LOGGING__FORMAT".into())
    );
    // `~` expands to the user's home; discovery tries sockets_dir first.
    assert_eq!(bind_path(&config), home.join("socks/rmp.sock"));
    assert_eq!(socket_candidates(&config)[0], home.join("socks/rmp.sock"));
    assert_eq!(socket_candidates(&config).len(), 3);
}

#[test]
fn an_explicit_socket_path_short_circuits_discovery() {
    let home = home("explicit");
    let mut opts = options(&home, "runtime:\n  sockets_dir: /tmp/x\n");
    opts.flags = vec!["runtime.socket_path=/tmp/explicit.sock".into()];
    let config = load(&opts).unwrap();
    assert_eq!(
        socket_candidates(&config),
        [PathBuf::from("/tmp/explicit.sock")]
    );
    let system = load(&LoadOptions {
        mode: Mode::System,
        file: Some(home.join("none.yaml")),
        env: Vec::new(),
        flags: Vec::new(),
    })
    .unwrap();
    assert_eq!(bind_path(&system), PathBuf::from("/run/runloop/rmp.sock"));
    assert_eq!(Mode::System.state_dir(), PathBuf::from("/var/lib/runloop"));
}

#[test]
fn bad_input_names_the_key_and_the_layer() {
    let home = home("bad");
    let cases: &[Case] = &[
        (
            "runtime:\n  sokcet_path: /x\n",
            &[],
            &[],
            "config: unknown key runtime.sokcet_path (from file ",
        ),
        (
            "models:\n  broker:\n    providers:\n      - id: a\n        colour: red\n",
            &[],
            &[],
            "config: unknown key models.broker.providers[0].colour (from file ",
        ),
        (
            "",
            &[("RUNLOOP__LOGGING__LEVL", "debug")],
            &[],
            "config: unknown key logging.levl (from env RUNLOOP__LOGGING__LEVL)",
        ),
        (
            "",
            &[],
            &["ui.colour=red"],
            "config: unknown key ui.colour (from flag --set ui.colour=red)",
        ),
        (
            "",
            &[],
            &["ui"],
            "config: flag --set ui: an override must look like",
        ),
        ("logging: [1]\n", &[], &[], "config: logging (from file "),
        (
            "logging:\n  level: loud\n",
            &[],
            &[],
            "config: logging: unknown variant `loud`",
        ),
        (
            "version: 2\n",
            &[],
            &[],
            "config: version 2 is not supported (this is config v1)",
        ),
        ("logging: {\n", &[], &[], "config: parse file "),
    ];
    for (file, env, flags, want) in cases {
        let mut opts = options(&home, file);
        opts.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        opts.flags = flags.iter().map(|f| f.to_string()).collect();
        let err = load(&opts).unwrap_err();
        assert!(err.to_string().starts_with(want), "{file:?}: {err}");
    }
    // A config file that is a directory is a read error naming the path.
    let err = load(&LoadOptions {
        mode: Mode::User { home: home.clone() },
        file: Some(home.clone()),
        env: Vec::new(),
        flags: Vec::new(),
    })
    .unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}
