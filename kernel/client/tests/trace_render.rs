//! The renderers of `rlp trace` on a realistic run: golden files for the ladder (80 and
//! 200 columns, absolute and relative times), Mermaid and Chrome Trace Event JSON, width
//! and colour properties, and the Mermaid and Chrome outputs checked by real tools
//! (`packaging/scripts/trace-tools.sh`: Mermaid's own parser under Node, and the Trace
//! Event Format's JSON schema plus the nesting rule Perfetto applies).
//!
//! `UPDATE_GOLDEN=1 cargo test -p runloop-client --test trace_render` rewrites the golden
//! files under `tests/golden/`; review their diff before committing.

use std::path::{Path, PathBuf};
use std::process::Command;

use runloop_client::trace::{LadderOptions, chrome, filter, ladder, list, mermaid};
use runloop_proto::payloads::{
    Crossing, CrossingStatus, Participant, ParticipantKind, TraceSummary, TraceView,
};

/// 2026-11-30 14:03:07.120 UTC.
const STARTED_MS: u64 = 1_796_047_387_120;

/// One crossing of the fixture: from, to, kind, node, bytes, reply bytes, start and end (ms
/// after the run's start), status, detail.
type Row<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    u64,
    Option<u64>,
    u64,
    u64,
    CrossingStatus,
    Option<&'a str>,
);

/// A compose_email run as the kernel records it: contact and context in parallel (the
/// contact resolver asks the person which contact they meant), the writer's first model
/// call times out and the run retries the node, the critic reviews, and the mailer's
/// `mail.send` waits for the person's approval.
fn compose_email() -> TraceView {
    use CrossingStatus::{Error, Ok};
    use ParticipantKind as K;
    let participants = [
        ("rlp", K::Cli, "rlp"),
        ("run", K::Run, "run compose_email"),
        ("agent:contact", K::Agent, "contact_resolver"),
        ("agent:context", K::Agent, "context_gatherer"),
        ("agent:draft", K::Agent, "writer"),
        ("agent:review", K::Agent, "critic"),
        ("agent:send", K::Agent, "mailer"),
        ("broker", K::Broker, "broker"),
        ("pog", K::Pog, "pog"),
        ("gate", K::Gate, "gate"),
        ("effects", K::Effects, "effects"),
        ("kernel", K::Kernel, "kernel"),
    ]
    .map(|(id, kind, label)| Participant {
        id: id.into(),
        kind,
        label: label.into(),
    });
    #[rustfmt::skip]
    let rows: [Row<'_>; 34] = [
        ("rlp", "run", "run.submit", None, 412, Some(96), 0, 3, Ok, None),
        ("run", "pog", "pog.write run.started", None, 287, None, 3, 3, Ok, None),
        ("run", "agent:contact", "agent.invoke", Some("contact"), 356, Some(203), 5, 2_961, Ok, None),
        ("run", "agent:context", "agent.invoke", Some("context"), 361, Some(6_342), 6, 344, Ok, None),
        ("agent:contact", "pog", "kb.query", Some("contact"), 148, Some(1_214), 9, 14, Ok, None),
        ("agent:context", "pog", "kb.query", Some("context"), 166, Some(4_410), 10, 25, Ok, None),
        ("agent:contact", "gate", "confirm.ask", Some("contact"), 233, Some(38), 15, 2_950, Ok, None),
        ("gate", "rlp", "confirm.ask", Some("contact"), 261, None, 16, 16, Ok, None),
        ("agent:context", "broker", "model.embed", Some("context"), 212, Some(6_240), 27, 309, Ok, None),
        ("agent:context", "pog", "kb.query", Some("context"), 6_262, Some(9_830), 311, 338, Ok, None),
        ("agent:context", "kernel", "clock.now", Some("context"), 12, Some(9), 339, 339, Ok, None),
        ("run", "pog", "pog.write node.succeeded", Some("context"), 402, None, 345, 345, Ok, None),
        ("rlp", "gate", "confirm.decision", Some("contact"), 118, None, 2_948, 2_948, Ok,
         Some("yes: Ada Lovelace <ada@analytical.example>")),
        ("agent:contact", "kernel", "clock.now", Some("contact"), 12, Some(9), 2_951, 2_951, Ok, None),
        ("run", "pog", "pog.write node.succeeded", Some("contact"), 398, None, 2_962, 2_962, Ok, None),
        ("run", "agent:draft", "agent.invoke", Some("draft"), 11_476, Some(57), 2_970, 4_193, Error,
         Some("model.complete: timed out after 1200ms")),
        ("agent:draft", "kernel", "log.write", Some("draft"), 88, None, 2_972, 2_972, Ok, None),
        ("agent:draft", "broker", "model.complete", Some("draft"), 3_215, Some(0), 2_974, 4_176, Error,
         Some("timed out after 1200ms (provider local)")),
        ("run", "run", "node.retry", Some("draft"), 64, None, 4_193, 4_443, Ok,
         Some("attempt 2 of 3 after 250ms")),
        ("run", "agent:draft", "agent.invoke", Some("draft"), 11_476, Some(2_311), 4_443, 6_705, Ok, None),
        ("agent:draft", "broker", "model.complete", Some("draft"), 3_215, Some(1_942), 4_447, 6_690, Ok, None),
        ("run", "pog", "pog.write node.succeeded", Some("draft"), 2_690, None, 6_706, 6_706, Ok, None),
        ("run", "agent:review", "agent.invoke", Some("review"), 2_530, Some(412), 6_712, 7_181, Ok, None),
        ("agent:review", "broker", "model.complete", Some("review"), 2_418, Some(311), 6_716, 7_170, Ok, None),
        ("run", "pog", "pog.write node.succeeded", Some("review"), 788, None, 7_182, 7_182, Ok, None),
        ("run", "agent:send", "agent.invoke", Some("send"), 2_977, Some(164), 7_190, 9_940, Ok, None),
        ("agent:send", "effects", "effect.perform", Some("send"), 1_733, Some(88), 7_195, 9_931, Ok, None),
        ("effects", "gate", "confirm.ask", Some("send"), 1_802, Some(41), 7_197, 9_809, Ok, None),
        ("gate", "rlp", "confirm.ask", Some("send"), 1_840, None, 7_198, 7_198, Ok, None),
        ("rlp", "gate", "confirm.decision", Some("send"), 121, None, 9_806, 9_806, Ok, Some("approved")),
        ("effects", "pog", "pog.write effect.performed", Some("send"), 604, None, 9_925, 9_925, Ok, None),
        ("run", "pog", "pog.write node.succeeded", Some("send"), 455, None, 9_941, 9_941, Ok, None),
        ("run", "pog", "pog.write run.succeeded", None, 1_206, None, 9_946, 9_946, Ok, None),
        ("run", "rlp", "run.report", None, 1_318, None, 9_952, 9_952, Ok, None),
    ];
    let crossings = rows
        .iter()
        .enumerate()
        .map(
            |(seq, &(from, to, kind, node, bytes, reply_bytes, t0, t1, status, detail))| Crossing {
                seq: seq as u64,
                from: from.into(),
                to: to.into(),
                kind: kind.into(),
                node: node.map(Into::into),
                bytes,
                reply_bytes,
                start_ms: STARTED_MS + t0,
                end_ms: STARTED_MS + t1,
                status,
                detail: detail.map(Into::into),
            },
        )
        .collect();
    TraceView {
        trace_id: "3f9c2a7e5b1d4c8fa0e6b2d9c4f1a873".into(),
        opening: "compose_email".into(),
        status: "succeeded".into(),
        started_ms: STARTED_MS,
        participants: participants.into(),
        crossings,
    }
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `actual` with `tests/golden/<name>`, or rewrites the file with
/// `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = manifest_dir().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from its golden file, first at line {}:\n  golden: {:?}\n  actual: {:?}\n\
             (UPDATE_GOLDEN=1 rewrites it)\n--- actual ---\n{actual}",
            line + 1,
            expected.lines().nth(line).unwrap_or("<end>"),
            actual.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

fn opts(width: usize, relative: bool) -> LadderOptions {
    LadderOptions {
        width,
        relative,
        color: false,
    }
}

/// A line's printed width: the fixture's text is ASCII and one-column box drawing, so a
/// character is a column once ANSI sequences are removed.
fn columns_of(line: &str) -> usize {
    let mut n = 0;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

#[test]
fn ladder_golden_80_and_200_columns() {
    let view = compose_email();
    golden("ladder_80.txt", &ladder(&view, &opts(80, false)));
    golden("ladder_80_relative.txt", &ladder(&view, &opts(80, true)));
    golden("ladder_200.txt", &ladder(&view, &opts(200, false)));
    golden("ladder_200_relative.txt", &ladder(&view, &opts(200, true)));
    golden(
        "ladder_120_node_draft.txt",
        &ladder(&filter(&view, Some("draft"), None), &opts(120, true)),
    );
}

#[test]
fn ladder_at_80_shortens_labels_with_a_legend_and_at_200_does_not() {
    let view = compose_email();
    let narrow = ladder(&view, &opts(80, false));
    let lines: Vec<&str> = narrow.lines().collect();
    assert!(
        lines[0].starts_with("compose_email · succeeded · 34 crossings · 9.952s"),
        "{narrow}"
    );
    let legend = lines[1..3].join("\n");
    for entry in [
        "A1 contact_resolver",
        "A2 context_gatherer",
        "R run compose_email",
    ] {
        assert!(
            legend.contains(entry),
            "{entry} missing from the legend:\n{narrow}"
        );
    }
    let wide = ladder(&view, &opts(200, false));
    let header = wide.lines().nth(1).unwrap();
    for label in [
        "run compose_email",
        "contact_resolver",
        "context_gatherer",
        "effects",
    ] {
        assert!(
            header.contains(label),
            "{label} missing from the header:\n{wide}"
        );
    }
    assert!(!wide.contains("A1 "), "no legend at 200 columns:\n{wide}");
    // One line per crossing under the header, plus one per detail at 80 columns.
    let details = view.crossings.iter().filter(|c| c.detail.is_some()).count();
    assert_eq!(
        lines.len(),
        1 + 2 + 1 + view.crossings.len() + details,
        "{narrow}"
    );
    assert_eq!(wide.lines().count(), 2 + view.crossings.len(), "{wide}");
    assert!(
        wide.contains("✗ timed out after 1200ms (provider local)"),
        "{wide}"
    );
}

#[test]
fn no_line_is_wider_than_asked() {
    let view = compose_email();
    for width in [
        0, 1, 10, 20, 30, 40, 41, 60, 79, 80, 100, 120, 160, 200, 250,
    ] {
        for relative in [false, true] {
            for color in [false, true] {
                let text = ladder(
                    &view,
                    &LadderOptions {
                        width,
                        relative,
                        color,
                    },
                );
                for line in text.lines() {
                    assert!(
                        columns_of(line) <= width,
                        "width {width} relative {relative} colour {color}: {} columns: {line:?}",
                        columns_of(line)
                    );
                }
            }
        }
    }
}

#[test]
fn narrow_widths_degrade_but_keep_every_row() {
    let view = compose_email();
    let text = ladder(&view, &opts(40, false));
    // Title, legend lines, header, one row per crossing (details on their own lines).
    let arrows = text
        .lines()
        .filter(|l| l.contains('▶') || l.contains('◀') || l.contains('↻'));
    assert_eq!(arrows.count(), view.crossings.len(), "{text}");
    assert!(text.contains('✗'), "{text}");
}

#[test]
fn colour_only_when_asked() {
    let view = compose_email();
    for width in [40, 80, 200] {
        let plain = ladder(&view, &opts(width, false));
        assert!(
            !plain.contains('\x1b'),
            "escape byte without colour at {width}"
        );
        let painted = ladder(
            &view,
            &LadderOptions {
                width,
                relative: false,
                color: true,
            },
        );
        // Errors in bold red, agents' arrows in cyan, and every paint reset on its line.
        assert!(painted.contains("\x1b[1;31m"), "{painted}");
        assert!(painted.contains("\x1b[36m"), "{painted}");
        for line in painted.lines() {
            if let Some(last) = line.rfind('\x1b') {
                assert!(line[last..].starts_with("\x1b[0m"), "{line:?}");
            }
        }
        // The same text once the colour is taken out.
        let stripped: String = painted
            .lines()
            .map(|l| {
                let mut s = String::new();
                let mut chars = l.chars();
                while let Some(c) = chars.next() {
                    if c == '\x1b' {
                        chars.by_ref().find(|&c| c == 'm');
                    } else {
                        s.push(c);
                    }
                }
                s + "\n"
            })
            .collect();
        assert_eq!(stripped, plain);
    }
}

#[test]
fn mermaid_and_chrome_golden() {
    let view = compose_email();
    golden("compose_email.mmd", &mermaid(&view));
    golden("compose_email.chrome.json", &chrome(&view));
}

#[test]
fn chrome_has_one_complete_event_per_crossing() {
    let view = compose_email();
    let json: serde_json::Value = serde_json::from_str(&chrome(&view)).unwrap();
    assert_eq!(json["displayTimeUnit"], "ms");
    assert_eq!(json["otherData"]["trace_id"], view.trace_id.as_str());
    let events = json["traceEvents"].as_array().unwrap();
    let complete: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(complete.len(), view.crossings.len());
    let draft = complete
        .iter()
        .find(|e| e["args"]["seq"] == 17)
        .expect("the timed-out model call");
    assert_eq!(draft["name"], "model.complete");
    assert_eq!(draft["cat"], "broker");
    assert_eq!(draft["ts"], (2_974 * 1000) as u64);
    assert_eq!(draft["dur"], (1_202 * 1000) as u64);
    assert_eq!(draft["args"]["status"], "error");
    assert_eq!(draft["args"]["from"], "agent:draft");
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        &names[..3],
        ["rlp", "run compose_email", "contact_resolver"]
    );
}

#[test]
fn list_golden() {
    let traces: Vec<TraceSummary> = (0..4u64)
        .map(|i| TraceSummary {
            trace_id: format!(
                "{:032x}",
                0x3f9c_2a7e_5b1d_4c8f_a0e6_b2d9_c4f1_a873_u128 - u128::from(i) * 7919
            ),
            opening: [
                "compose_email",
                "echo",
                "compose_email",
                "summarise_inbox_weekly",
            ][i as usize]
                .into(),
            status: ["succeeded", "succeeded", "failed", "interrupted"][i as usize].into(),
            started_ms: STARTED_MS - i * 3_600_000,
            crossings: [34, 6, 19, 1_204][i as usize],
        })
        .collect();
    golden("list_80.txt", &list(&traces, 80));
    golden("list_120.txt", &list(&traces, 120));
}

// --- Real tools -----------------------------------------------------------------------

fn trace_tools() -> PathBuf {
    manifest_dir().join("../../packaging/scripts/trace-tools.sh")
}

/// Runs `trace-tools.sh <check> FILE` on `text`; `Ok` with its output on success, `Err` with
/// its output otherwise. Fails the test outright when the tools are not installed.
fn check(check: &str, text: &str, ext: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("trace.{ext}"));
    std::fs::write(&file, text).unwrap();
    let out = Command::new("bash")
        .arg(trace_tools())
        .arg(check)
        .arg(&file)
        .output()
        .expect("run bash");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exit 3: not installed. That is a failure of the test, never a skip.
    assert_ne!(
        out.status.code(),
        Some(3),
        "the trace tools are not installed: run `bash packaging/scripts/trace-tools.sh install`\n{said}"
    );
    if out.status.success() {
        Ok(said)
    } else {
        Err(said)
    }
}

#[test]
fn mermaid_parses_with_the_real_mermaid_parser() {
    let view = compose_email();
    let text = mermaid(&view);
    check("check-mermaid", &text, "mmd").unwrap_or_else(|e| panic!("{e}\n{text}"));
    // Hostile labels, kinds and details: separators, entity-like text, newlines, quotes.
    let mut odd = filter(&view, Some("draft"), None);
    odd.participants[1].label = "writer; v2 #1 %% \"quoted\"\nnext: line".into();
    odd.crossings[0].kind = "model.complete; end".into();
    odd.crossings[0].detail = Some("timed out;\n#59; -->> P0: x".into());
    let text = mermaid(&odd);
    check("check-mermaid", &text, "mmd").unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The check can fail: a raw `;` in a message ends the statement early.
    let broken = "sequenceDiagram\n    participant P0 as a\n    P0->>P0: x;y\n";
    let err = check("check-mermaid", broken, "mmd").expect_err("a broken diagram must fail");
    assert!(err.contains("Parse error"), "{err}");
}

#[test]
fn chrome_passes_the_trace_event_format_checks() {
    let view = compose_email();
    let text = chrome(&view);
    check("check-chrome", &text, "json").unwrap_or_else(|e| panic!("{e}\n{text}"));
    // Many overlapping calls to few participants: extra lanes, still nested per thread.
    let mut busy = compose_email();
    busy.participants.truncate(4);
    let ids: Vec<String> = busy.participants.iter().map(|p| p.id.clone()).collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut t = STARTED_MS;
    busy.crossings = (0..400)
        .map(|seq| {
            t += next(20);
            let mut c = view.crossings[0].clone();
            c.seq = seq;
            c.from = ids[next(4) as usize].clone();
            c.to = ids[next(4) as usize].clone();
            c.start_ms = t;
            c.end_ms = t + next(500);
            c
        })
        .collect();
    let text = chrome(&busy);
    assert!(text.contains(" #3\""), "several lanes expected:\n{text}");
    check("check-chrome", &text, "json").unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The check can fail: an X event without `dur`, and two that overlap on one thread.
    let missing_dur = r#"{"traceEvents":[{"name":"a","ph":"X","ts":0,"pid":1,"tid":1}]}"#;
    let err = check("check-chrome", missing_dur, "json").expect_err("no dur must fail");
    assert!(err.contains("dur"), "{err}");
    let overlap = r#"{"traceEvents":[
        {"name":"a","ph":"X","ts":0,"dur":10,"pid":1,"tid":1},
        {"name":"b","ph":"X","ts":5,"dur":10,"pid":1,"tid":1}]}"#;
    let err = check("check-chrome", overlap, "json").expect_err("overlap must fail");
    assert!(err.contains("overlap"), "{err}");
}
