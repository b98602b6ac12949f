//! Shared helpers: the real sandbox-host binary, compiled WAT fixtures, real cgroups.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use runloop_compile::Compiler;
use runloop_proto::payloads::{AgentInput, SandboxLimits};
use runloop_sandbox::{AgentCgroup, CgroupLimits, Sandbox, SpawnConfig};

/// The binary under test: `$RUNLOOP_SANDBOX_HOST` when set (e.g. the lean release
/// build), else the one cargo built for these tests.
pub fn program() -> PathBuf {
    match std::env::var_os(runloop_sandbox::SANDBOX_HOST_ENV) {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_runloop-sandbox-host")),
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Compiles a fixture into a per-process cache directory.
pub fn cwasm(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("runloop-sbx-test-{}", std::process::id()));
    let compiler = Compiler::new(dir).expect("cache dir");
    compiler
        .compile_file(&fixture(name))
        .expect("fixture compiles")
        .path
}

/// Compiles WAT text made by a test into the per-process cache directory.
pub fn cwasm_of(wat: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("runloop-sbx-test-{}", std::process::id()));
    let compiler = Compiler::new(dir).expect("cache dir");
    compiler
        .compile_bytes(wat.as_bytes())
        .unwrap_or_else(|e| panic!("test module compiles: {e}\n{wat}"))
        .path
}

pub fn limits() -> SandboxLimits {
    SandboxLimits {
        memory_bytes_max: 16 * 1024 * 1024,
        invoke_wall_ms_max: 300,
        invoke_fuel_max: None,
        output_bytes_max: 1024 * 1024,
        outputs_max: 16,
        host_calls_max: 32,
        log_bytes_max: 4096,
        frame_body_bytes_max: 2 * 1024 * 1024,
    }
}

pub fn config(fixture_name: &str, limits: SandboxLimits) -> SpawnConfig {
    SpawnConfig {
        program: program(),
        extra_args: Vec::new(),
        agent: fixture_name.trim_end_matches(".wat").to_owned(),
        module_path: cwasm(fixture_name),
        limits,
    }
}

pub fn input(text: &str) -> AgentInput {
    AgentInput {
        port: "in".into(),
        payload: rmpv::Value::Map(vec![("text".into(), text.into())]),
    }
}

/// A real cgroup under `runloop-test-<pid>-<tag>`, removed (with its parent) on drop.
pub struct TestCgroup {
    parent: String,
    group: Option<AgentCgroup>,
}

impl TestCgroup {
    pub fn new(tag: &str, limits: &CgroupLimits) -> Self {
        let parent = format!("runloop-test-{}-{tag}", std::process::id());
        let group = AgentCgroup::create(&parent, "agent", limits).expect("cgroups work here");
        Self {
            parent,
            group: Some(group),
        }
    }

    pub fn group(&self) -> &AgentCgroup {
        self.group.as_ref().expect("present until drop")
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            group.remove().expect("remove agent cgroup");
        }
        runloop_sandbox::cgroup::remove_parent(&self.parent).expect("remove parent cgroup");
    }
}

/// Spawns a fixture's sandbox inside a fresh test cgroup. The cgroup comes first so that
/// `let (_cg, sandbox) = spawn(..)` drops (kills and reaps) the sandbox before removing it.
pub fn spawn(fixture_name: &str, limits: SandboxLimits, tag: &str) -> (TestCgroup, Sandbox) {
    let cg = TestCgroup::new(
        tag,
        &CgroupLimits {
            memory_bytes_max: Some(256 * 1024 * 1024),
            cpu_percent_max: Some(100),
            pids_max: Some(16),
        },
    );
    let sandbox = Sandbox::spawn(&config(fixture_name, limits), Some(cg.group())).expect("spawn");
    (cg, sandbox)
}
