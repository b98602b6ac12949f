//! Render time of `rlp trace`'s renderers on a large run, beside a baseline measured in
//! the same process: serialising the same view with `serde_json` (what `rlp trace --json`
//! costs). Run: `cargo bench -p runloop-client --bench trace_render`.
//!
//! The view is synthetic and seeded (the same every run): `CROSSINGS` crossings between
//! `PARTICIPANTS` participants (the CLI, the run, 13 agents, broker, POG, gate, effects,
//! kernel) with the kinds a compose_email-like run records, latencies up to 2 s, 2% of them
//! errors with a detail. Each renderer runs once to warm up, then `TRACE_RENDER_ITERS`
//! times (default 20); the report is the median wall time per render. The design target:
//! a ladder of 10,000 crossings in at most 200 ms. `TRACE_RENDER_SHOW=80` also prints the
//! ladder's first 40 lines at that width. Results are written up in `perf/replay.md`.

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::env_or;
use runloop_client::trace::{LadderOptions, chrome, filter, ladder, mermaid};
use runloop_proto::payloads::{Crossing, CrossingStatus, Participant, ParticipantKind, TraceView};

const CROSSINGS: usize = 10_000;
const PARTICIPANTS: usize = 20;
const AGENTS: usize = PARTICIPANTS - 7;
/// The design target for `ladder` at either width, in milliseconds.
const LADDER_TARGET_MS: f64 = 200.0;
const STARTED_MS: u64 = 1_796_047_387_120;
const KINDS: [&str; 10] = [
    "agent.invoke",
    "model.complete",
    "model.embed",
    "kb.query",
    "clock.now",
    "log.write",
    "pog.write node.succeeded",
    "effect.perform",
    "confirm.ask",
    "confirm.decision",
];

/// xorshift64*: a seeded, dependency-free source of the view's variety.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn view() -> TraceView {
    let mut participants = vec![
        ("rlp".to_owned(), ParticipantKind::Cli, "rlp".to_owned()),
        ("run".into(), ParticipantKind::Run, "run big_opening".into()),
    ];
    for a in 0..AGENTS {
        participants.push((
            format!("agent:node{a}"),
            ParticipantKind::Agent,
            format!("agent_number_{a}"),
        ));
    }
    for (id, kind) in [
        ("broker", ParticipantKind::Broker),
        ("pog", ParticipantKind::Pog),
        ("gate", ParticipantKind::Gate),
        ("effects", ParticipantKind::Effects),
        ("kernel", ParticipantKind::Kernel),
    ] {
        participants.push((id.into(), kind, id.into()));
    }
    assert_eq!(participants.len(), PARTICIPANTS);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut t = STARTED_MS;
    let crossings = (0..CROSSINGS as u64)
        .map(|seq| {
            t += rng.below(40);
            let from = rng.below(PARTICIPANTS as u64) as usize;
            let to = rng.below(PARTICIPANTS as u64) as usize;
            let error = rng.below(50) == 0;
            Crossing {
                seq,
                from: participants[from].0.clone(),
                to: participants[to].0.clone(),
                kind: KINDS[rng.below(KINDS.len() as u64) as usize].into(),
                node: (2..2 + AGENTS)
                    .contains(&from)
                    .then(|| format!("node{}", from - 2)),
                bytes: rng.below(20_000),
                reply_bytes: (rng.below(3) > 0).then(|| rng.below(50_000)),
                start_ms: t,
                end_ms: t + rng.below(2_000),
                status: if error {
                    CrossingStatus::Error
                } else {
                    CrossingStatus::Ok
                },
                detail: error.then(|| format!("timed out after {}ms", rng.below(5_000))),
            }
        })
        .collect();
    TraceView {
        trace_id: "3f9c2a7e5b1d4c8fa0e6b2d9c4f1a873".into(),
        opening: "big_opening".into(),
        status: "succeeded".into(),
        started_ms: STARTED_MS,
        participants: participants
            .into_iter()
            .map(|(id, kind, label)| Participant { id, kind, label })
            .collect(),
        crossings,
    }
}

/// Median wall time of `iters` calls of `render` (after one warm-up call), in ms, and the
/// output's length in bytes.
fn median_ms(iters: usize, mut render: impl FnMut() -> String) -> (f64, usize) {
    let bytes = black_box(render()).len();
    let mut samples: Vec<f64> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            black_box(render());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    (samples[samples.len() / 2], bytes)
}

fn main() {
    let iters = env_or("TRACE_RENDER_ITERS", 20usize).max(1);
    let view = view();
    let opts = |width, relative, color| LadderOptions {
        width,
        relative,
        color,
    };
    // TRACE_RENDER_SHOW=WIDTH: print the ladder's first lines at that width, to eyeball it.
    if let Some(width) = std::env::var("TRACE_RENDER_SHOW")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        for line in ladder(&view, &opts(width, false, false)).lines().take(40) {
            println!("{line}");
        }
    }
    println!(
        "trace_render: {CROSSINGS} crossings, {PARTICIPANTS} participants, median of {iters} renders"
    );
    let (baseline, baseline_bytes) = median_ms(iters, || {
        serde_json::to_string(&view).expect("a view serialises")
    });
    type Case<'a> = (&'a str, Box<dyn FnMut() -> String + 'a>);
    let cases: Vec<Case<'_>> = vec![
        (
            "ladder, 80 columns",
            Box::new(|| ladder(&view, &opts(80, false, false))),
        ),
        (
            "ladder, 200 columns",
            Box::new(|| ladder(&view, &opts(200, false, false))),
        ),
        (
            "ladder, 200 columns, relative, colour",
            Box::new(|| ladder(&view, &opts(200, true, true))),
        ),
        ("mermaid", Box::new(|| mermaid(&view))),
        ("chrome", Box::new(|| chrome(&view))),
        (
            "filter --kind model. (then ladder 80)",
            Box::new(|| {
                ladder(
                    &filter(&view, None, Some("model.")),
                    &opts(80, false, false),
                )
            }),
        ),
    ];
    println!(
        "{:<40} {:>10} {:>12} {:>12}",
        "render", "median ms", "× baseline", "output bytes"
    );
    println!(
        "{:<40} {:>10.2} {:>12} {:>12}",
        "baseline: serde_json::to_string(view)", baseline, "1.0", baseline_bytes
    );
    let mut ladder_worst: f64 = 0.0;
    for (name, mut render) in cases {
        let (ms, bytes) = median_ms(iters, &mut render);
        if name.starts_with("ladder") {
            ladder_worst = ladder_worst.max(ms);
        }
        println!("{name:<40} {ms:>10.2} {:>12.1} {bytes:>12}", ms / baseline);
    }
    let verdict = if ladder_worst <= LADDER_TARGET_MS {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "ladder of {CROSSINGS} crossings: {ladder_worst:.1} ms at worst, target ≤ {LADDER_TARGET_MS} ms: {verdict}"
    );
}
