//! Capability grants end to end on a real kernel: a real POG file, a real sandbox running
//! the `hostcalls` test agent (every op once), the control plane's `cap_*` commands, and
//! an injected clock that decides when a grant stops working. Needs
//! `cargo build -p runloop-sandbox-host`.

use std::path::Path;
use std::sync::Arc;

use runloop_kernel::control::{ControlLimits, ControlPlane, PeerPolicy};
use runloop_kernel::runs::{Engine, EngineConfig, RunHost};
use runloop_kernel::{Kernel, KernelOptions, PogService};
use runloop_pog::PogConfig;
use runloop_proto::ManualClock;
use runloop_proto::payloads::{
    ControlCommand, ControlOutcome, ControlRequest, GrantChange, GrantInfo,
};
use serde_json::Value;

mod common;
use common::{bundle, options, send_empty};

const T0: u64 = 1_800_000_000_000;

/// `hostcalls` with a narrow policy: only clock.now, log and an unscoped kb.query.
fn narrow_bundle(dir: &Path) {
    for file in ["manifest.toml", "agent.wasm"] {
        std::fs::copy(bundle("hostcalls").join(file), dir.join(file)).unwrap();
    }
    std::fs::write(
        dir.join("policy.caps"),
        "runloop-caps 1\nallow clock.now\nallow log\nallow kb.query\n",
    )
    .unwrap();
    common::sign(dir);
}

fn kernel_options(pog: &Path, clock: Arc<ManualClock>) -> KernelOptions {
    let mut options = options("grants");
    options.clock = clock;
    options.pog = Some(PogService {
        config: PogConfig::in_dir(pog),
        read_conns: 2,
    });
    options
}

struct Rig {
    plane: ControlPlane,
    kernel: Arc<Kernel>,
    n: u32,
}

impl Rig {
    async fn boot(pog: &Path, clock: Arc<ManualClock>, agents_dir: &Path) -> Self {
        let kernel = Arc::new(Kernel::boot(kernel_options(pog, clock)).await.unwrap());
        let engine = Engine::new(
            kernel.clone(),
            EngineConfig {
                search_dirs: vec![agents_dir.to_owned()],
                host: RunHost::Embedded,
            },
        );
        let policy = PeerPolicy::same_uid().unwrap();
        let plane = ControlPlane::with_engine(engine, policy, ControlLimits::default());
        Self {
            plane,
            kernel,
            n: 0,
        }
    }

    async fn ask(&mut self, command: ControlCommand) -> ControlOutcome {
        self.n += 1;
        let request = ControlRequest {
            request_id: format!("cap-test-{}", self.n),
            command,
        };
        self.plane.answer(0, request).await.outcome
    }

    async fn grant(&mut self, agent: &str, capability: &str, ttl_ms: u64) -> ControlOutcome {
        self.ask(ControlCommand::CapGrant {
            agent: agent.into(),
            capability: capability.into(),
            ttl_ms,
            by: "test".into(),
            reason: Some("cap_grants test".into()),
        })
        .await
    }

    async fn granted(&mut self, agent: &str, capability: &str, ttl_ms: u64) -> GrantInfo {
        match self.grant(agent, capability, ttl_ms).await {
            ControlOutcome::CapGranted { grant, .. } => grant,
            other => panic!("{capability}: {other:?}"),
        }
    }

    async fn list(&mut self) -> Vec<GrantInfo> {
        match self.ask(ControlCommand::CapList).await {
            ControlOutcome::Caps { grants, .. } => grants,
            other => panic!("{other:?}"),
        }
    }

    async fn shutdown(self) {
        drop(self.plane);
        if let Ok(kernel) = Arc::try_unwrap(self.kernel) {
            kernel.shutdown().await;
        }
    }
}

/// The reply the agent got for `op`.
fn reply<'a>(outs: &'a [Value], op: &str) -> &'a Value {
    outs.iter()
        .find(|o| o["op"] == op)
        .unwrap_or_else(|| panic!("no {op} in {outs:?}"))
}

fn denial(outs: &[Value], op: &str) -> String {
    let r = reply(outs, op);
    assert_eq!(r["err"]["code"], "CapabilityDenied", "{op}: {r}");
    r["err"]["message"].as_str().unwrap().to_owned()
}

fn failed_code(outcome: &ControlOutcome) -> (&str, &str) {
    match outcome {
        ControlOutcome::Failed { code, message } => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_widen_and_narrow_until_they_expire_and_survive_a_restart() {
    let pog = tempfile::tempdir().unwrap();
    let agents = tempfile::tempdir().unwrap();
    let dir = agents.path().join("hostcalls");
    std::fs::create_dir(&dir).unwrap();
    narrow_bundle(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    let mut rig = Rig::boot(pog.path(), clock.clone(), agents.path()).await;
    // The instance has its own name; grants are keyed by the bundle's (`hostcalls`).
    rig.kernel.start_bundle(&dir, Some("probe")).await.unwrap();

    // Denied by default, with the rule and the command that would allow it.
    let outs = send_empty(&rig.kernel, "probe").await;
    let message = denial(&outs, "random.bytes");
    assert!(
        message.contains("[rule: policy.caps (no line allows it"),
        "{message}"
    );
    assert!(
        message.contains("rlp cap grant hostcalls 'random.bytes max_len=8' --ttl 1h"),
        "{message}"
    );
    let message = denial(&outs, "model.complete");
    assert!(
        message.contains("(config must list \"model.complete\" in security.grants.extend first)"),
        "an extension config does not allow says so: {message}"
    );
    assert_eq!(
        reply(&outs, "clock.now")["ok"]["now_ms"],
        T0,
        "the injected clock"
    );

    // Extend (random.bytes is in the default security.grants.extend) for one minute.
    let random = rig
        .granted("hostcalls", "random.bytes max_len=8", 60_000)
        .await;
    assert_eq!(random.change, GrantChange::Extend);
    assert_eq!(random.capability, "allow random.bytes max_len=8");
    assert_eq!((random.granted_ms, random.expires_ms), (T0, T0 + 60_000));
    // Narrow: a deny is always admitted, for two minutes.
    let deny = rig.granted("hostcalls", "deny kb.query", 120_000).await;
    assert_eq!(deny.change, GrantChange::Narrow);
    // Within the bundle's own line: narrowing too.
    let scoped = rig
        .granted("hostcalls", "kb.query scopes=work", 30_000)
        .await;
    assert_eq!(scoped.change, GrantChange::Narrow);
    // Refusals, each with its code: extension config does not allow, bad ttl, bad line,
    // unknown agent.
    let refused = rig
        .grant("hostcalls", "effect kind=mail.send", 60_000)
        .await;
    let (code, message) = failed_code(&refused);
    assert_eq!(code, "ExtendNotAllowed", "{message}");
    assert!(message.contains("effect:mail.send"), "{message}");
    let refused = rig.grant("hostcalls", "log", 25 * 3_600_000).await;
    assert_eq!(failed_code(&refused).0, "BadTtl");
    let refused = rig.grant("hostcalls", "allow frob", 1_000).await;
    assert_eq!(failed_code(&refused).0, "BadCapability");
    let refused = rig.grant("nosuch", "log", 1_000).await;
    assert_eq!(failed_code(&refused).0, "NoSuchAgent");
    let refused = rig.grant("Bad-Name", "log", 1_000).await;
    assert_eq!(failed_code(&refused).0, "InvalidName");

    // In force: random.bytes answers; kb.query is denied by the newest governing grant
    // (the scoped one was granted after the deny, so it decides: allowed, scope-limited).
    let outs = send_empty(&rig.kernel, "probe").await;
    assert!(reply(&outs, "random.bytes").get("ok").is_some(), "{outs:?}");
    assert!(
        reply(&outs, "kb.query")["ok"]["columns"].is_array(),
        "{outs:?}"
    );

    // 30 s later the scoped grant is gone and the deny decides.
    clock.advance_ms(30_000);
    let outs = send_empty(&rig.kernel, "probe").await;
    let message = denial(&outs, "kb.query");
    assert!(
        message.contains(&format!("[rule: grant {} \"deny kb.query\"", deny.grant_id)),
        "{message}"
    );
    assert!(
        message.contains(&format!("rlp cap revoke {}", deny.grant_id)),
        "{message}"
    );
    assert!(reply(&outs, "random.bytes").get("ok").is_some(), "{outs:?}");

    // At the minute the extension stops working: expiry is the injected clock's.
    clock.set_ms(T0 + 60_000);
    let outs = send_empty(&rig.kernel, "probe").await;
    denial(&outs, "random.bytes");
    let listed = rig.list().await;
    assert_eq!(
        listed
            .iter()
            .map(|g| g.grant_id.as_str())
            .collect::<Vec<_>>(),
        [deny.grant_id.as_str()],
        "only the deny is left"
    );
    rig.shutdown().await;

    // A restarted kernel on the same POG puts back exactly the grants in force.
    let mut rig = Rig::boot(pog.path(), clock.clone(), agents.path()).await;
    let listed = rig.list().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0], deny);
    rig.kernel.start_bundle(&dir, Some("probe")).await.unwrap();
    let outs = send_empty(&rig.kernel, "probe").await;
    denial(&outs, "kb.query");

    // Revoked: the bundle's own line decides again, and the revocation outlives a restart.
    let revoked = rig
        .ask(ControlCommand::CapRevoke {
            grant_id: deny.grant_id.clone(),
            by: "test".into(),
            reason: None,
        })
        .await;
    assert!(
        matches!(revoked, ControlOutcome::CapRevoked { .. }),
        "{revoked:?}"
    );
    let outs = send_empty(&rig.kernel, "probe").await;
    assert!(
        reply(&outs, "kb.query")["ok"]["columns"].is_array(),
        "{outs:?}"
    );
    let again = rig
        .ask(ControlCommand::CapRevoke {
            grant_id: deny.grant_id.clone(),
            by: "test".into(),
            reason: None,
        })
        .await;
    assert_eq!(failed_code(&again).0, "NoSuchGrant");
    rig.shutdown().await;
    let mut rig = Rig::boot(pog.path(), clock.clone(), agents.path()).await;
    assert!(rig.list().await.is_empty());
    rig.shutdown().await;

    // Every grant and revocation is in the real log, with who and when.
    let db = rusqlite::Connection::open(PogConfig::in_dir(pog.path()).events_path()).unwrap();
    let rows: Vec<(String, String)> = db
        .prepare(
            "SELECT kind, json_extract(payload, '$.grant_id') FROM events \
             WHERE kind IN ('cap.granted', 'cap.revoked') ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected = [
        ("cap.granted", &random.grant_id),
        ("cap.granted", &deny.grant_id),
        ("cap.granted", &scoped.grant_id),
        ("cap.revoked", &deny.grant_id),
    ]
    .map(|(k, id)| (k.to_owned(), id.clone()));
    assert_eq!(rows, expected);
    // The denials' audit records name the rule.
    let audit: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'cap.audit' \
             AND json_extract(payload, '$.reason') LIKE '%[rule: grant cap-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(audit >= 2, "audited with the grant as the rule: {audit}");
}
