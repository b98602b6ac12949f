//! Agents with the POG actor running (its own test binary: the POG is a process-wide
//! singleton): denied host calls leave `cap.audit` events in the real SQLite log, and
//! allowed `kb.query` calls are answered by the POG, scope-limited ones (`allow kb.query
//! scopes=…`) through its scoped reader. Needs `cargo build -p runloop-sandbox-host`.

use runloop_kernel::{Kernel, PogService};
use runloop_pog::PogConfig;

mod common;
use common::{bundle, options, send_empty};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_are_audited_in_the_pog_and_kb_query_reaches_it() {
    let pog_dir = tempfile::tempdir().unwrap();
    let narrow = tempfile::tempdir().unwrap();
    for file in ["manifest.toml", "agent.wasm"] {
        std::fs::copy(bundle("hostcalls").join(file), narrow.path().join(file)).unwrap();
    }
    std::fs::write(
        narrow.path().join("policy.caps"),
        "runloop-caps 1\nallow clock.now\nallow log\nallow kb.query\n",
    )
    .unwrap();
    common::sign(narrow.path());
    let scoped = tempfile::tempdir().unwrap();
    for file in ["manifest.toml", "agent.wasm"] {
        std::fs::copy(bundle("hostcalls").join(file), scoped.path().join(file)).unwrap();
    }
    std::fs::write(
        scoped.path().join("policy.caps"),
        "runloop-caps 1\nallow kb.query scopes=work,personal\n",
    )
    .unwrap();
    common::sign(scoped.path());
    // The POG singleton in the kernel's slot, as runloopd starts it: agents reach it
    // through `Services`, not by its registered name.
    let mut options = options("pog");
    options.pog = Some(PogService {
        config: PogConfig::in_dir(pog_dir.path()),
        read_conns: 2,
    });
    let kernel = Kernel::boot(options).await.unwrap();
    kernel
        .start_bundle(narrow.path(), Some("narrow"))
        .await
        .unwrap();
    kernel
        .start_bundle(scoped.path(), Some("scoped"))
        .await
        .unwrap();
    // The agent's query (`SELECT 1`) runs on the POG's scoped reader: its filtered views
    // are built and the answer comes back as from an unrestricted one. (Which rows a
    // scoped query sees is tested on a real store in pog/tests/scoped.rs: the committed
    // test agents only ever send `SELECT 1`.)
    let outs = send_empty(&kernel, "scoped").await;
    let kb = outs.iter().find(|o| o["op"] == "kb.query").unwrap();
    assert_eq!(kb["ok"]["rows"], serde_json::json!([[1]]), "{kb}");
    let outs = send_empty(&kernel, "narrow").await;
    let kb = outs.iter().find(|o| o["op"] == "kb.query").unwrap();
    assert!(kb["ok"]["columns"].is_array(), "answered by the POG: {kb}");
    let denied: Vec<_> = outs
        .iter()
        .filter(|o| o["err"]["code"] == "CapabilityDenied")
        .map(|o| o["op"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(denied.len(), 5, "{outs:?}");
    kernel.shutdown().await;

    // The audit records, read from the real log file.
    let db = rusqlite::Connection::open(PogConfig::in_dir(pog_dir.path()).events_path()).unwrap();
    let mut stmt = db
        .prepare("SELECT json_extract(payload, '$.cap'), json_extract(payload, '$.decision'), json_extract(payload, '$.agent') FROM events WHERE kind = 'cap.audit' AND json_extract(payload, '$.agent') = 'narrow' ORDER BY seq")
        .unwrap();
    let rows: Vec<(String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let caps: Vec<_> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(caps, denied, "one cap.audit per denial, in order");
    assert!(
        rows.iter().all(|r| r.1 == "deny" && r.2 == "narrow"),
        "{rows:?}"
    );
}
