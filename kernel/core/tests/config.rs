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
            "config: logging.level (from file ",
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

/// One bad-value case: file text, env, flags, the whole error message.
type ValueCase = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
    String,
);

#[test]
fn bad_values_name_the_key_the_layer_and_what_is_allowed() {
    let home = home("values");
    let file = home.join(".runloop/config.yaml");
    let levels = "one of error, warn, info, debug, trace";
    let cases: &[ValueCase] = &[
        (
            "logging:\n  level: nonsense\n",
            &[],
            &[],
            format!(
                "config: logging.level (from file {}) must be {levels}; got `nonsense`",
                file.display()
            ),
        ),
        (
            "logging:\n  level:\n",
            &[],
            &[],
            format!(
                "config: logging.level (from file {}) must be {levels}; got an empty value",
                file.display()
            ),
        ),
        (
            "",
            &[("RUNLOOP__LOGGING__LEVEL", "")],
            &[],
            format!(
                "config: logging.level (from env RUNLOOP__LOGGING__LEVEL) must be {levels}; got an empty value"
            ),
        ),
        (
            "",
            &[],
            &["logging.level=7"],
            format!("config: logging.level (from flag) must be {levels}; got `7`"),
        ),
        (
            "runtime:\n  socket_path: 8000\n",
            &[],
            &[],
            format!(
                "config: runtime.socket_path (from file {}) must be text; got `8000`",
                file.display()
            ),
        ),
    ];
    for (text, env, flags, want) in cases {
        let mut opts = options(&home, text);
        opts.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        opts.flags = flags.iter().map(|f| f.to_string()).collect();
        let err = load(&opts).unwrap_err();
        assert!(
            matches!(err, ConfigError::BadValue { .. }),
            "{text:?}: {err:?}"
        );
        assert_eq!(&err.to_string(), want, "{text:?}");
    }
    // Every level word loads.
    for word in ["error", "warn", "info", "debug", "trace"] {
        let config = load(&options(&home, &format!("logging:\n  level: {word}\n"))).unwrap();
        assert_eq!(Some(config.logging.level), LogLevel::parse(word));
    }
}

#[test]
fn kb_root_dir_must_be_a_directory() {
    let home = home("kbroot");
    let file = home.join(".runloop/config.yaml");
    let plain = home.join("plain-file");
    std::fs::write(&plain, "not a directory").unwrap();
    for root in [plain.clone(), plain.join("pog")] {
        let err = load(&options(
            &home,
            &format!("kb:\n  root_dir: {}\n", root.display()),
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "config: kb.root_dir (from file {}) must be a directory; {} is not a directory",
                file.display(),
                plain.display()
            )
        );
    }
    let mut opts = options(&home, "");
    opts.env = vec![("RUNLOOP__KB__ROOT_DIR".into(), plain.display().to_string())];
    let err = load(&opts).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "config: kb.root_dir (from env RUNLOOP__KB__ROOT_DIR) must be a directory"
        ),
        "{err}"
    );
    // A directory that does not exist yet is fine (the store creates it), under `~` too.
    load(&options(&home, "kb:\n  root_dir: ~/not/yet/pog\n")).unwrap();
    load(&options(
        &home,
        &format!("kb:\n  root_dir: {}\n", home.display()),
    ))
    .unwrap();
}

#[test]
fn an_endless_config_file_is_cut_at_the_limit() {
    let home = home("endless");
    // /dev/zero reports a size of 0 and never ends: the read itself must stop.
    let err = load(&LoadOptions {
        mode: Mode::User { home: home.clone() },
        file: Some(PathBuf::from("/dev/zero")),
        env: Vec::new(),
        flags: Vec::new(),
    })
    .unwrap_err();
    assert!(matches!(err, ConfigError::TooLarge { .. }), "{err}");
}

#[test]
fn runloopd_refuses_a_kb_root_dir_that_is_a_file_before_booting() {
    let home = home("kbroot-daemon");
    let plain = home.join("plain-file");
    std::fs::write(&plain, "not a directory").unwrap();
    std::fs::write(
        home.join(".runloop/config.yaml"),
        format!(
            "kb:\n  root_dir: {}\nruntime:\n  socket_path: {}\n",
            plain.display(),
            home.join("rmp.sock").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runloopd"))
        .env("HOME", &home)
        .env_remove("RUNLOOP__KB__ROOT_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A daemon that got past the config would boot and listen: give it 20 s, then kill it.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("runloopd started with kb.root_dir pointing at a file");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "config: kb.root_dir (from file {}) must be a directory; {} is not a directory",
            home.join(".runloop/config.yaml").display(),
            plain.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!home.join("rmp.sock").exists(), "no socket was bound");
}

#[test]
fn agents_search_dirs_expand_home_and_must_be_a_list() {
    let home = home("search-dirs");
    let config = load(&options(
        &home,
        "version: 1\nagents:\n  search_dirs: [\"~/my-agents\", /opt/agents]\n",
    ))
    .unwrap();
    assert_eq!(
        config.agent_search_dirs(),
        [home.join("my-agents"), PathBuf::from("/opt/agents")]
    );
    let unset = load(&options(&home, "version: 1\n")).unwrap();
    assert!(unset.agent_search_dirs().is_empty());
    let err = load(&options(
        &home,
        "version: 1\nagents:\n  search_dirs: /opt\n",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("agents.search_dirs"), "{err}");
    let err = load(&options(&home, "version: 1\nagents:\n  dirs: []\n")).unwrap_err();
    assert!(err.to_string().contains("agents.dirs"), "{err}");
}

#[test]
fn the_effects_section_defaults_under_the_state_dir_and_refuses_bad_values() {
    use runloop_kernel::services::effects_config;
    let home = home("effects");
    let defaults = effects_config(&load(&options(&home, "")).unwrap()).unwrap();
    assert_eq!(defaults.outbox, home.join(".runloop/outbox"));
    assert_eq!(defaults.runs_dir, home.join(".runloop/runs"));
    assert!(defaults.smtp.is_none());
    assert_eq!(defaults.confirm_timeout_ms, 120_000);

    let set = "effects:\n  outbox_dir: ~/mail/out\n  mail_from: me@example.org\n  \
               confirm_timeout_ms: 5000\n  smtp: { host: 127.0.0.1, port: 2525, security: none }\n";
    let config = effects_config(&load(&options(&home, set)).unwrap()).unwrap();
    assert_eq!(config.outbox, home.join("mail/out"));
    assert_eq!(config.mail_from.email, "me@example.org");
    assert_eq!(config.confirm_timeout_ms, 5000);
    assert_eq!(config.smtp.unwrap().port, 2525);

    for (bad, needle) in [
        ("effects:\n  mail_from: not-an-address\n", "mail_from"),
        ("effects:\n  confirm_timeout_ms: 0\n", "confirm_timeout_ms"),
        (
            "effects:\n  smtp: { host: h, port: 25, security: plaintext }\n",
            "smtp",
        ),
        (
            "effects:\n  smtp: { host: h, port: 25, security: none, username: u, password_env: P }\n",
            "smtp",
        ),
    ] {
        let e = effects_config(&load(&options(&home, bad)).unwrap()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("effects") && text.contains(needle),
            "{bad}: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn require_cgroups_defaults_by_mode_and_refuses_non_booleans() {
    let home = home("require-cgroups");
    let user = load(&options(&home, "version: 1\n")).unwrap();
    assert!(!user.require_cgroups(), "user mode: off unless asked");
    let system = load(&LoadOptions {
        mode: Mode::System,
        file: Some(home.join("absent.yaml")),
        env: Vec::new(),
        flags: Vec::new(),
    })
    .unwrap();
    assert!(
        system.require_cgroups(),
        "system mode: on unless turned off"
    );
    let on = load(&options(&home, "runtime:\n  require_cgroups: true\n")).unwrap();
    assert!(on.require_cgroups());
    let mut off = options(&home, "");
    off.mode = Mode::System;
    off.file = Some(home.join(".runloop/config.yaml"));
    off.flags = vec!["runtime.require_cgroups=false".into()];
    assert!(!load(&off).unwrap().require_cgroups());
    let err = load(&options(&home, "runtime:\n  require_cgroups: maybe\n")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("runtime.require_cgroups") && text.contains("true or false"),
        "{text}"
    );
}

#[test]
fn warm_sandboxes_default_to_thirty_two_and_refuse_what_is_not_a_count() {
    let home = home("warm-sandboxes");
    let unset = load(&options(&home, "version: 1\n")).unwrap();
    assert_eq!(unset.warm_sandboxes(), 32);
    let off = load(&options(&home, "runtime:\n  warm_sandboxes: 0\n")).unwrap();
    assert_eq!(off.warm_sandboxes(), 0);
    let mut flagged = options(&home, "");
    flagged.flags = vec!["runtime.warm_sandboxes=12".into()];
    assert_eq!(load(&flagged).unwrap().warm_sandboxes(), 12);
    for bad in ["-1", "many", "257", "1.5"] {
        let err = load(&options(
            &home,
            &format!("runtime:\n  warm_sandboxes: {bad}\n"),
        ))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("runtime.warm_sandboxes") && text.contains("from 0 to 256"),
            "{bad}: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&home);
}
