//! Signed bundles in a real kernel: a bundle tampered with after it was signed (and
//! installed) is refused at start and by the openings' catalog; an unsigned one is refused
//! by default and runs, with a warning, when the trust policy allows unsigned agents.
//! Needs `cargo build -p runloop-sandbox-host`.

use std::path::Path;

use runloop_kernel::Kernel;
use runloop_kernel::runs::catalog::BundleCatalog;
use runloop_openings::AgentRef;

mod common;
use common::{bundle, options, send_empty};

fn copy_bundle(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(bundle(name)).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn echo_ref() -> AgentRef {
    AgentRef {
        name: "echo".into(),
        variant: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_installed_bundle_is_refused_at_start_and_by_the_catalog() {
    // An installed copy of the project-signed echo bundle, as `rlp agent install` leaves
    // it, whose policy someone widened afterwards.
    let agents = tempfile::tempdir().unwrap();
    let dir = agents.path().join("echo");
    copy_bundle("echo", &dir);
    let kernel = Kernel::boot(options("trust-tamper")).await.unwrap();
    // Untouched, it starts.
    kernel.start_bundle(&dir, Some("honest")).await.unwrap();
    let caps = dir.join("policy.caps");
    let mut text = std::fs::read_to_string(&caps).unwrap();
    text.push_str("allow random.bytes\n");
    std::fs::write(&caps, text).unwrap();
    let err = kernel
        .start_bundle(&dir, Some("tampered"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BadBundle");
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains("changed after signing"), "{err}");
    let catalog = BundleCatalog::new(vec![agents.path().to_owned()], kernel.trust().clone());
    let refusal = catalog.resolve(&echo_ref()).unwrap_err().to_string();
    assert!(refusal.contains("fails verification"), "{refusal}");
    assert!(refusal.contains("changed after signing"), "{refusal}");
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_agents_start_only_when_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("echo");
    copy_bundle("echo", &dir);
    std::fs::remove_file(dir.join(runloop_bundle::SIGNATURE_FILE)).unwrap();

    let kernel = Kernel::boot(options("trust-unsigned")).await.unwrap();
    let err = kernel.start_bundle(&dir, None).await.unwrap_err();
    assert!(err.to_string().contains("not signed"), "{err}");
    assert!(
        err.to_string().contains("security.allow_unsigned_agents"),
        "{err}"
    );
    kernel.shutdown().await;

    let mut allowing = options("trust-unsigned-allowed");
    allowing.agents.trust = common::test_trust().allowing_unsigned(true);
    let kernel = Kernel::boot(allowing).await.unwrap();
    kernel.start_bundle(&dir, None).await.unwrap();
    let outputs = send_empty(&kernel, "echo").await;
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    kernel.shutdown().await;
}
