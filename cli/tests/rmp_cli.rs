//! `rlp rmp` as a user runs it: a real process, real pipes, real files.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn rlp(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rlp"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rlp");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const PING: &str = r#"{"header":{"trace_id":"0123456789abcdef0123456789abcdef","msg_id":"00000000000000ff","created_at_ms":1000,"ttl_ms":500},"body":{"type":"control.ping.v1","payload":{"seq":7},"meta":{"opening_id":"compose_email","odd":[1.5,{"$bin":"00ff"}]}}}"#;

fn encode(json: &str) -> String {
    let out = rlp(&["rmp", "encode"], json.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn encode_then_decode_json_is_the_identity() {
    let hex = encode(PING);
    let out = rlp(
        &["rmp", "decode", "--json", "--now-ms", "1200"],
        hex.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let decoded: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    // The derived fields are added; everything given comes back unchanged.
    assert_eq!(decoded["header"]["family"], "control");
    assert_eq!(decoded["header"]["expires_at_ms"], 1500);
    let again = encode(&decoded.to_string());
    assert_eq!(
        again, hex,
        "re-encoding the decoded JSON gives the same frame"
    );
    let input: serde_json::Value = serde_json::from_str(PING).unwrap();
    assert_eq!(decoded["body"], input["body"]);
}

#[test]
fn decode_reads_hex_flag_raw_file_and_stdin() {
    let hex = encode(PING);
    let dir = std::env::temp_dir().join(format!("rlp-rmp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("frame.bin");
    std::fs::write(&raw, hex::decode(hex.trim()).unwrap()).unwrap();
    let text_file = dir.join("frame.hex");
    std::fs::write(&text_file, &hex).unwrap();
    for args in [
        vec!["rmp", "decode", "--now-ms", "1000", "--hex", hex.trim()],
        vec!["rmp", "decode", "--now-ms", "1000", raw.to_str().unwrap()],
        vec![
            "rmp",
            "decode",
            "--now-ms",
            "1000",
            text_file.to_str().unwrap(),
        ],
    ] {
        let out = rlp(&args, b"");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("type           control.ping.v1"),
            "{}",
            stdout(&out)
        );
        assert!(stdout(&out).contains("trace_id       0123456789abcdef0123456789abcdef"));
    }
    let raw_stdin = rlp(
        &["rmp", "decode", "--now-ms", "1000", "-"],
        &std::fs::read(&raw).unwrap(),
    );
    assert!(raw_stdin.status.success(), "{}", stderr(&raw_stdin));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn encode_raw_writes_bytes() {
    let out = rlp(&["rmp", "encode", "--raw"], PING.as_bytes());
    assert!(out.status.success());
    assert_eq!(&out.stdout[4..8], b"RMP0");
}

/// Each validation failure exits 2 and names the error exactly, in text and JSON.
#[test]
fn validation_failures_exit_2_with_the_exact_name() {
    let hex = encode(PING).trim().to_owned();
    let corrupt = |offset: usize, byte: &str| {
        let mut h = hex.clone();
        h.replace_range(offset * 2..offset * 2 + 2, byte);
        h
    };
    let cases = [
        (corrupt(4, "58"), "1200", "InvalidMagic"),
        (corrupt(9, "01"), "1200", "UnsupportedVersion"),
        (corrupt(15, "01"), "1200", "InvalidHeaderFlags"),
        (corrupt(17, "0b"), "1200", "UnknownSchema"),
        (corrupt(23, "00"), "1200", "LengthMismatch"),
        (hex.clone(), "1500", "Expired"),
        ("0000003f".to_owned(), "0", "TruncatedHeader"),
        ("7fffffff".to_owned(), "0", "BodyTooLarge"),
        (hex[..100].to_owned(), "0", "Incomplete"),
        (format!("{hex}00"), "1200", "TrailingBytes"),
    ];
    for (input, now, name) in cases {
        let out = rlp(&["rmp", "decode", "--now-ms", now, "--hex", &input], b"");
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with(&format!("rlp: {name}: ")),
            "{name}: {}",
            stderr(&out)
        );
        let out = rlp(
            &["rmp", "decode", "--json", "--now-ms", now, "--hex", &input],
            b"",
        );
        assert_eq!(out.status.code(), Some(2));
        let err: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(err["error"], name);
        assert!(!err["detail"].as_str().unwrap().is_empty());
    }
}

#[test]
fn max_body_is_the_receivers_cap() {
    let hex = encode(PING).trim().to_owned();
    let out = rlp(
        &[
            "rmp",
            "decode",
            "--now-ms",
            "1200",
            "--max-body",
            "8",
            "--hex",
            &hex,
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("rlp: BodyTooLarge: frame_len"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_never_a_panic() {
    let cases: [(&[&str], &str, &str, i32); 10] = [
        (
            &["rmp", "encode"],
            r#"{"header":{"trace_id":"1","msg_id":"1","schema_id":8},"body":{"type":"control.ping.v1","payload":1}}"#,
            "rlp: BodyTypeMismatch: header.schema_id 0x0008 does not match the type's family control",
            2,
        ),
        (
            &["rmp", "decode", "--hex", "zz"],
            "",
            "rlp: InvalidHex: character 'z' at digit 0",
            2,
        ),
        (
            &["rmp", "decode", "--hex", "abc"],
            "",
            "rlp: InvalidHex: odd number of hex digits (3)",
            2,
        ),
        (
            &["rmp", "decode", "/nonexistent/frame.bin"],
            "",
            "rlp: Io: read /nonexistent/frame.bin: No such file",
            1,
        ),
        (
            &["rmp", "encode"],
            "{not json",
            "rlp: InvalidJson: stdin: key must be a string",
            2,
        ),
        (
            &["rmp", "encode"],
            r#"{"header":{}}"#,
            "rlp: InvalidField: body: expected an object",
            2,
        ),
        (
            &["rmp", "encode"],
            r#"{"header":{"trace_id":"1","msg_id":"1"},"body":{"type":"control.nope.v1","payload":1}}"#,
            "rlp: BodyTypeMismatch: body.type \"control.nope.v1\" is not a registered kind",
            2,
        ),
        (
            &["rmp", "encode"],
            r#"{"header":{"trace_id":"xyz","msg_id":"1"},"body":{"type":"control.ping.v1","payload":1}}"#,
            "rlp: InvalidField: header.trace_id: trace_id must be 1 to 32 hex digits",
            2,
        ),
        (
            &["rmp", "encode"],
            r#"{"header":{"trace_id":"1","msg_id":"1","ttl_ms":0},"body":{"type":"control.ping.v1","payload":1}}"#,
            "rlp: InvalidTtl: ttl_ms must be above 0",
            2,
        ),
        (
            &["rmp", "encode"],
            r#"{"header":{"trace_id":"1","msg_id":"1","colour":1},"body":{"type":"control.ping.v1","payload":1}}"#,
            "rlp: InvalidField: header.colour: unknown field",
            2,
        ),
    ];
    for (args, input, want, code) in cases {
        let out = rlp(args, input.as_bytes());
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with(want), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    }
}

#[test]
fn encode_refuses_a_body_over_the_cap() {
    let out = rlp(&["rmp", "encode", "--max-body", "10"], PING.as_bytes());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("rlp: BodyTooLarge: body_len"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn registry_lists_every_kind() {
    let out = rlp(&["rmp", "registry", "--json"], b"");
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let types: Vec<&str> = doc["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"event.drop.v1"));
    assert!(types.contains(&"error.report.v1"));
}
