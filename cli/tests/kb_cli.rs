//! End-to-end tests of the `rlp kb` surface through the real `rlp` binary.

use assert_cmd::Command;
use serde_json::{Value, json};

fn kb(root: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rlp"));
    c.arg("kb")
        .arg("--root")
        .arg(root)
        // `rlp kb` reads config v1 under $HOME: keep the machine's own config out.
        .env("HOME", root)
        .env_remove("RUNLOOP__KB__ROOT_DIR");
    c
}

fn run_json(root: &std::path::Path, args: &[&str]) -> (i32, Value) {
    let out = kb(root).arg("--json").args(args).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), v)
}

const TRACE: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn write_query_why_search_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pog");
    let (code, v) = run_json(&root, &["migrate"]);
    assert_eq!(code, 0);
    assert_eq!(v["events_schema"]["from"], json!(0));
    let (code, v) = run_json(
        &root,
        &[
            "write",
            "--kind",
            "contact.upserted",
            "--payload",
            r#"{"contact_id":"ada","name":"Ada Lovelace","email":"ada@example.com"}"#,
            "--trace-id",
            TRACE,
            "--rationale",
            "met at the demo",
            "--idempotency-key",
            "c-ada",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["event"]["seq"], json!(1));
    assert_eq!(v["event"]["provenance"]["trace_id"], json!(TRACE));
    assert_eq!(v["event"]["hash"].as_str().unwrap().len(), 64);
    // Same key again: the original event comes back.
    let (_, again) = run_json(
        &root,
        &[
            "write",
            "--kind",
            "contact.upserted",
            "--payload",
            r#"{"contact_id":"ada","name":"Ada Lovelace","email":"ada@example.com"}"#,
            "--idempotency-key",
            "c-ada",
        ],
    );
    assert_eq!(
        (again["duplicate"].clone(), again["event"]["hash"].clone()),
        (json!(true), v["event"]["hash"].clone())
    );
    run_json(
        &root,
        &[
            "write",
            "--kind",
            "note.added",
            "--payload",
            r#"{"note_id":"n1","text":"Ada wrote the first program","about":"contact:ada"}"#,
            "--evidence",
            "1",
        ],
    );

    let (_, q) = run_json(
        &root,
        &[
            "query",
            "SELECT name FROM contacts WHERE contact_id = ?1",
            "--param",
            "ada",
        ],
    );
    assert_eq!(q["rows"], json!([["Ada Lovelace"]]));
    let (_, w) = run_json(&root, &["why", "contact:ada"]);
    assert_eq!(w["events"].as_array().unwrap().len(), 2);
    assert_eq!(
        w["events"][0]["provenance"]["rationale"],
        json!("met at the demo")
    );
    let (_, s) = run_json(&root, &["search", "first program"]);
    assert_eq!(s["hits"][0]["entity"], json!("note:n1"));
    let (code, v) = run_json(&root, &["verify"]);
    assert_eq!(
        (code, v["ok"].clone(), v["head_seq"].clone()),
        (0, json!(true), json!(2))
    );

    // Human output too.
    let out = kb(&root).args(["why", "contact:ada"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("#1 contact.upserted by user"), "{text}");
}

#[test]
fn bad_input_exits_2_with_a_specific_message() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "write",
                "--kind",
                "note.added",
                "--payload",
                r#"{"note_id":"n"}"#,
            ],
            "payload.text: is required",
        ),
        (
            &["write", "--kind", "note.nope", "--payload", "{}"],
            "unknown kind",
        ),
        (
            &["write", "--kind", "note.added", "--payload", "{nope"],
            "--payload is not JSON",
        ),
        (
            &[
                "write",
                "--kind",
                "note.added",
                "--payload",
                r#"{"note_id":"n","text":"t"}"#,
                "--evidence",
                "5",
            ],
            "seq 5 does not exist",
        ),
        (
            &[
                "write",
                "--kind",
                "note.added",
                "--payload",
                r#"{"note_id":"n","text":"t"}"#,
                "--trace-id",
                "XYZ",
            ],
            "--trace-id",
        ),
        (&["query", "DELETE FROM events"], "refused"),
        (&["query", "ATTACH DATABASE '/tmp/x' AS x"], "refused"),
        (&["why", "planet:earth"], "is not <contact"),
        (&["why", "contact:nobody"], "no events for contact:nobody"),
        (&["search", " ;; "], "nothing to search for"),
    ];
    for (args, needle) in cases {
        let out = kb(root).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        let (code, v) = run_json(root, args);
        assert_eq!(code, 2);
        assert_eq!(v["error"], json!("InvalidInput"));
    }
    // A clap usage error is also 2.
    assert_eq!(
        kb(root).arg("frobnicate").output().unwrap().status.code(),
        Some(2)
    );
}

#[test]
fn import_export_backup_restore_rebuild_and_tamper() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pog");
    let csv = dir.path().join("contacts.csv");
    std::fs::write(&csv, "name,email,org,tags\nAda Lovelace,Ada@Example.com,Analytical,math;engines\nGrace Hopper,grace@example.com,Navy,\n").unwrap();
    let (code, v) = run_json(&root, &["import", csv.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        (v["appended"].clone(), v["duplicates"].clone()),
        (json!(2), json!(0))
    );
    let (_, v) = run_json(&root, &["import", csv.to_str().unwrap()]);
    assert_eq!(
        (v["appended"].clone(), v["duplicates"].clone()),
        (json!(0), json!(2)),
        "re-import is idempotent"
    );
    let (_, q) = run_json(
        &root,
        &["query", "SELECT contact_id, tags FROM contacts ORDER BY 1"],
    );
    assert_eq!(
        q["rows"],
        json!([
            ["ada@example.com", "[\"math\",\"engines\"]"],
            ["grace@example.com", null]
        ])
    );

    let bad_csv = dir.path().join("bad.csv");
    std::fs::write(&bad_csv, "name,shoe_size\nAda,7\n").unwrap();
    let out = kb(&root)
        .args(["import", bad_csv.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("header.shoe_size"));

    // Export, then import the NDJSON into a second store.
    let nd = dir.path().join("events.ndjson");
    kb(&root)
        .args(["export", "--out", nd.to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&nd).unwrap().lines().count(), 2);
    let root2 = dir.path().join("pog2");
    let (_, v) = run_json(&root2, &["import", nd.to_str().unwrap()]);
    assert_eq!(v["appended"], json!(2));

    // Backup, tamper with the live store, verify names the seq (exit 3), restore, verify ok.
    let bk = dir.path().join("bk");
    let (code, v) = run_json(&root, &["backup", bk.to_str().unwrap()]);
    assert_eq!((code, v["head_seq"].clone()), (0, json!(2)));
    let c = rusqlite::Connection::open(root.join("events.sqlite")).unwrap();
    c.execute_batch(
        "DROP TRIGGER events_no_update; UPDATE events SET scope = 'evil' WHERE seq = 2;",
    )
    .unwrap();
    drop(c);
    let (code, v) = run_json(&root, &["verify"]);
    assert_eq!((code, v["first_bad"]["seq"].clone()), (3, json!(2)));
    let out = kb(&root).arg("verify").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("TAMPERED at seq 2"));
    assert_eq!(
        run_json(&root, &["restore", bk.to_str().unwrap()]).0,
        2,
        "refuses without --force"
    );
    let (code, v) = run_json(&root, &["restore", bk.to_str().unwrap(), "--force"]);
    assert_eq!((code, v["events"].clone()), (0, json!(2)));
    assert_eq!(run_json(&root, &["verify"]).0, 0);
    let (code, v) = run_json(&root, &["rebuild"]);
    assert_eq!((code, v["events_replayed"].clone()), (0, json!(2)));
}
