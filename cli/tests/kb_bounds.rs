//! `rlp kb` under hostile input, through the real binary: endless and oversized files are
//! refused promptly with bounded memory, runaway queries stop at their limit and say which,
//! and `rlp kb` opens the store config v1 names (the one `runloopd` opens).
//!
//! Peak memory is the kernel's own figure for the children this test binary reaped
//! (`getrusage(RUSAGE_CHILDREN)`): every child here is an `rlp` under test, so the maximum
//! over all of them must stay under the bound.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Peak RSS any `rlp` child may reach: a bounded reader needs a few MiB, not gigabytes.
const CHILD_RSS_BYTES_MAX: u64 = 200 * 1024 * 1024;
/// Wall-clock any refusal may take; the unbounded reads ran for tens of seconds.
const REFUSAL_MS_MAX: u64 = 10_000;
/// A child still running after this is killed and the test fails.
const CHILD_KILL_MS: u64 = 30_000;

fn rlp(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rlp"));
    c.env("HOME", home)
        .env_remove("RUNLOOP__KB__ROOT_DIR")
        .env_remove("RUNLOOP__KB__EVENTS_DB")
        .env_remove("RUNLOOP__KB__VIEW_DB")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

struct Ran {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// Runs `cmd` to its end (killing it after `CHILD_KILL_MS`) and reaps it, so its peak RSS
/// counts in `RUSAGE_CHILDREN`.
fn run(mut cmd: Command) -> Ran {
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_millis(CHILD_KILL_MS) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{cmd:?} still running after {CHILD_KILL_MS} ms");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    Ran {
        code: status.code(),
        stderr,
        took,
    }
}

fn children_peak_rss_bytes() -> u64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    // Linux reports ru_maxrss in KiB.
    u64::try_from(usage.max_rss()).unwrap() * 1024
}

fn assert_bounded(what: &str, ran: &Ran) {
    assert!(
        ran.took < Duration::from_millis(REFUSAL_MS_MAX),
        "{what} took {:?}",
        ran.took
    );
    let peak = children_peak_rss_bytes();
    assert!(
        peak < CHILD_RSS_BYTES_MAX,
        "{what}: a child peaked at {peak} bytes"
    );
}

#[test]
fn dev_zero_inputs_are_refused_promptly_with_bounded_memory() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("pog");
    let cases: &[(&[&str], &str)] = &[
        (
            &["import", "/dev/zero", "--format", "csv"],
            "rlp: InvalidInput: /dev/zero: line 1: record length over the limit of 2097152 (IMPORT_RECORD_BYTES_MAX)",
        ),
        (
            &["import", "/dev/zero", "--format", "ndjson"],
            "rlp: InvalidInput: /dev/zero: line 1: line length over the limit of 2097152 (IMPORT_LINE_BYTES_MAX)",
        ),
        (
            &["search", "anything", "--vector-file", "/dev/zero"],
            "rlp: InvalidInput: --vector-file /dev/zero is over VECTOR_FILE_BYTES_MAX (1048576 bytes)",
        ),
    ];
    for (args, want) in cases {
        let mut cmd = rlp(home.path());
        cmd.arg("kb").arg("--root").arg(&root).args(*args);
        let ran = run(cmd);
        assert_eq!(ran.code, Some(2), "{args:?}: {}", ran.stderr);
        assert_eq!(ran.stderr.trim_end(), *want, "{args:?}");
        assert_bounded(&format!("{args:?}"), &ran);
    }
}

#[test]
fn a_100_mb_csv_field_is_refused_with_bounded_memory() {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let csv = home.path().join("big.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    file.write_all(b"contact_id,name\nada,\"").unwrap();
    let chunk = vec![b'x'; 1024 * 1024];
    for _ in 0..100 {
        file.write_all(&chunk).unwrap();
    }
    file.write_all(b"\"\n").unwrap();
    file.flush().unwrap();
    drop(file);
    let mut cmd = rlp(home.path());
    cmd.args(["kb", "--root"])
        .arg(home.path().join("pog"))
        .arg("import")
        .arg(&csv);
    let ran = run(cmd);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("line 2: record length over the limit of 2097152 (IMPORT_RECORD_BYTES_MAX)"),
        "{}",
        ran.stderr
    );
    assert_bounded("100 MB field", &ran);
}

fn query(home: &Path, root: &Path, sql: &str, extra: &[&str]) -> Ran {
    let mut cmd = rlp(home);
    cmd.args(["kb", "--root"])
        .arg(root)
        .args(["query", sql])
        .args(extra);
    run(cmd)
}

#[test]
fn runaway_queries_stop_at_their_limit_and_say_which() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("pog");
    let mut migrate = rlp(home.path());
    migrate.args(["kb", "--root"]).arg(&root).arg("migrate");
    assert_eq!(run(migrate).code, Some(0));

    let ran = query(home.path(), &root, "SELECT randomblob(1000000000)", &[]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(
        ran.stderr.trim_end(),
        "rlp: QueryLimit: value exceeds SQLITE_LIMIT_LENGTH 8388608 bytes"
    );
    assert!(ran.took < Duration::from_secs(3), "took {:?}", ran.took);
    assert_bounded("randomblob(1e9)", &ran);

    let endless =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
    let ran = query(home.path(), &root, endless, &["--time-limit-ms", "300"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(
        ran.stderr.trim_end(),
        "rlp: QueryLimit: exceeded the 300 ms query limit"
    );
    assert!(ran.took < Duration::from_secs(3), "took {:?}", ran.took);

    // The default budget is the host call's 5 s, and the message says so.
    let ran = query(home.path(), &root, endless, &[]);
    assert_eq!(
        ran.stderr.trim_end(),
        "rlp: QueryLimit: exceeded the 5 s query limit"
    );
    assert!(ran.took >= Duration::from_secs(5), "took {:?}", ran.took);
    assert!(ran.took < Duration::from_secs(9), "took {:?}", ran.took);

    let ran = query(home.path(), &root, "SELECT 1", &["--time-limit-ms", "0"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_bounded("queries", &ran);
}

#[test]
fn rlp_kb_opens_the_store_config_names() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join(".runloop/config.yaml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "kb:\n  root_dir: ~/store\n").unwrap();
    let mut migrate = rlp(home.path());
    migrate.args(["kb", "migrate"]);
    let ran = run(migrate);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(home.path().join("store/events.sqlite").exists());
    assert!(
        !home.path().join(".runloop/pog").exists(),
        "the default store was not touched"
    );
    // The environment layer still overrides the file, as it does for runloopd.
    let mut migrate = rlp(home.path());
    migrate
        .env("RUNLOOP__KB__ROOT_DIR", home.path().join("other"))
        .args(["kb", "migrate"]);
    assert_eq!(run(migrate).code, Some(0));
    assert!(home.path().join("other/events.sqlite").exists());

    // A store path that is a file is bad config, named by its key, before anything opens.
    let plain = home.path().join("plain");
    std::fs::write(&plain, "x").unwrap();
    std::fs::write(&config, format!("kb:\n  root_dir: {}\n", plain.display())).unwrap();
    let mut cmd = rlp(home.path());
    cmd.args(["kb", "verify"]);
    let ran = run(cmd);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(
        ran.stderr.trim_end(),
        format!(
            "rlp: Config: config: kb.root_dir (from file {}) must be a directory; {} is not a directory",
            config.display(),
            plain.display()
        )
    );
}
