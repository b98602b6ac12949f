//! Shared fixtures of the kernel's agent tests: the committed bundles, a kernel whose
//! agents run on the real sandbox-host binary, and outputs as JSON.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use runloop_kernel::KernelOptions;
use runloop_kernel::agents::AgentOptions;
use runloop_proto::payloads::AgentOutput;

pub mod servers;

use servers::Started;

/// A committed bundle under `agents/bundles/`.
pub fn bundle(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../agents/bundles")
        .join(name)
}

/// The sandbox-host binary the agents run in.
pub fn sandbox_host() -> PathBuf {
    runloop_sandbox::locate_sandbox_host()
        .expect("build it first: cargo build -p runloop-sandbox-host")
}

/// The key the tests sign the bundles they edit with (a fixed seed: not a secret).
pub fn test_signer() -> runloop_bundle::SecretKey {
    runloop_bundle::SecretKey::from_seed([0x5e; 32])
}

/// The trust roots of the tests' kernels: the project key (the committed bundles) and
/// the tests' key (the bundles they edit); unsigned bundles are refused, as by default.
pub fn test_trust() -> runloop_bundle::TrustPolicy {
    let root = runloop_bundle::TrustRoot::new(test_signer().public(), Some("tests".into()), vec![])
        .unwrap();
    runloop_bundle::TrustPolicy::with_roots(vec![root], false).unwrap()
}

/// Signs a bundle a test wrote or edited with the tests' key (its old signature no longer
/// covers it).
pub fn sign(dir: &Path) {
    runloop_bundle::sign::sign(dir, &test_signer()).unwrap();
}

/// Kernel options whose agents use the real sandbox-host and a per-test `.cwasm` cache,
/// trusting [`test_trust`].
pub fn options(tag: &str) -> KernelOptions {
    let cwasm =
        std::env::temp_dir().join(format!("runloop-agent-test-{}-{tag}", std::process::id()));
    KernelOptions {
        agents: AgentOptions {
            sandbox_host: Some(sandbox_host()),
            cwasm_dir: Some(cwasm),
            trust: test_trust(),
            ..AgentOptions::default()
        },
        ..KernelOptions::default()
    }
}

/// Sends `agent` an empty map on port `in` and returns its outputs as JSON.
pub async fn send_empty(kernel: &runloop_kernel::Kernel, agent: &str) -> Vec<serde_json::Value> {
    let input = runloop_proto::payloads::AgentInput {
        port: "in".into(),
        payload: rmpv::Value::Map(vec![]),
    };
    let name = runloop_actors::names::AgentName::new(agent).unwrap();
    let reply = kernel.send(&name, input).await.unwrap();
    outputs_json(&reply.outputs)
}

/// An invoke's outputs in the JSON form, for assertions.
pub fn outputs_json(outputs: &[AgentOutput]) -> Vec<serde_json::Value> {
    outputs
        .iter()
        .map(|o| runloop_proto::json::msgpack_to_json(&o.payload))
        .collect()
}

/// Imports the sample contacts and notes (`examples/pog/sample.ndjson`) into a fresh POG
/// in `dir`, as `rlp kb import` would.
pub fn seed_sample_pog(dir: &Path) {
    runloop_kernel::drill::seed_sample_pog(dir).unwrap();
}

/// A real SMTP server (aiosmtpd on loopback, `packaging/scripts/smtp-server.sh`), stopped
/// by its pid when dropped.
pub struct SmtpServer {
    pub server: Started,
    pub port: u16,
    pub received: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let received = dir.path().join("received");
        let server = Started::start("smtp-server.sh", &received);
        Self {
            port: server.port("port="),
            server,
            received,
            _dir: dir,
        }
    }

    pub fn messages(&self) -> Vec<String> {
        let maildir = runloop_mail::Maildir::open(&self.received).unwrap();
        maildir
            .messages()
            .unwrap()
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}
