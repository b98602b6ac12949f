//! agtop with 1,000 agents: one frame's render, the reducer, a snapshot's decode and a
//! simulated live loop at 4 Hz with the CPU it used — each beside a baseline measured in
//! the same run; then, with `AGTOP_DAEMON=N`, a real `runloopd` with N real agents and the
//! CPU it spends serving one status stream (a small subscriber, and the real `agtop` in
//! tmux) beside the same daemon with no subscriber. Results are written up in
//! `perf/agtop.md`.
//!
//! Run: `cargo bench -p runloop-tui --bench agtop` (render side, ≈ 30 s). The daemon side
//! needs `cargo build --release -p runloop-kernel --bin runloopd`, the lean sandbox host
//! (`cargo build --release -p runloop-sandbox-host`, alone) and, for its agtop rows,
//! `cargo build --release -p runloop-tui --bin agtop` and `tmux`; then
//! `AGTOP_DAEMON=1000 cargo bench -p runloop-tui --bench agtop`. `AGTOP_WINDOW_S` (15)
//! and `AGTOP_ROUNDS` (3) set the length and number of measuring windows per condition;
//! the conditions take turns, in a different order each round, so noise hits all of them.
//! `AGTOP_RUNLOOPD=<path>` measures another `runloopd` binary (a copy of an earlier build,
//! for a before/after on the same machine and load).
//!
//! The synthetic fleet is seeded (the same every run): the sample kernel tree's system
//! actors, and 10 runs of 100 agents under `runs`; a fifth of the agents busy (up to 40%
//! of a core), the rest nearly idle, their memory wandering between 4 and 64 MiB, four
//! parked, ten restarting. Every measurement starts after [`WARM_SNAPSHOTS`] snapshots at
//! 250 ms, so every CPU/RSS history holds its full 60 s window. Each frame is drawn with
//! colour on (agtop's default) and an agent selected, so the detail pane draws sparklines.

mod common;
#[path = "agtop/daemon.rs"]
mod daemon;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{cpu_model, env_or, loadavg};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::widgets::Paragraph;
use runloop_client::wire::{CONTROL_BODY_BYTES_MAX, CONTROL_TTL_MS, READ_CHUNK_BYTES, limits};
use runloop_proto::payloads::{
    ActorInfo, ActorKind, ActorNode, ActorRunState, StatusSnapshot, SupervisorStrategy,
};
use runloop_proto::{Frame, MsgId, StreamDecoder, TraceId, encode_frame};
use runloop_tui::app::{App, Key};
use runloop_tui::fixtures::{agent, snapshot, tree};
use runloop_tui::model::RowKind;
use runloop_tui::render::draw;
use runloop_tui::view::{Column, Mode, Sort};

const RUNS: usize = 10;
const AGENTS_PER_RUN: usize = 100;
const AGENTS: usize = RUNS * AGENTS_PER_RUN;
/// The stream's interval under test: 4 Hz.
const TICK_MS: u64 = 250;
/// Snapshots folded in before any measurement: 75 s at 4 Hz, past the 60 s history window.
const WARM_SNAPSHOTS: u64 = 300;
/// Timed frames per screen size (a fresh snapshot folded in, untimed, before each).
const RENDER_ITERS: usize = 200;
const REDUCE_ITERS: usize = 100;
const DECODE_ITERS: usize = 100;
/// Length of the simulated live loop, and of its idle baseline, in seconds.
const LIVE_S: u64 = 10;
const IDLE_S: u64 = 5;
const RENDER_TARGET_MS: f64 = 5.0;
const AGTOP_CPU_TARGET_PCT: f64 = 10.0;
const DAEMON_CPU_TARGET_PCT: f64 = 2.0;
const STARTED_MS: u64 = 1_796_047_387_120;
/// xorshift64*: a seeded, dependency-free source of the fleet's variety.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// 1,000 agents whose counters move a little every snapshot.
struct Fleet {
    rng: Rng,
    seq: u64,
    cpu_ms: Vec<u64>,
    rss_kb: Vec<u64>,
    kernel_cpu_ms: u64,
}

fn supervisor(name: String, children: Vec<ActorNode>) -> ActorNode {
    ActorNode {
        name,
        kind: ActorKind::Supervisor,
        state: ActorRunState::Running,
        restarts: 0,
        last_error: None,
        info: Some(ActorInfo::Supervisor {
            strategy: SupervisorStrategy::OneForOne,
        }),
        children,
    }
}

impl Fleet {
    fn new() -> Fleet {
        Fleet {
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            seq: 0,
            cpu_ms: vec![0; AGENTS],
            rss_kb: vec![16_384; AGENTS],
            kernel_cpu_ms: 0,
        }
    }

    fn agent_node(&self, i: usize) -> ActorNode {
        let name = format!("idle-{i}");
        let state = match i % 250 {
            7 => "quarantined",
            _ if i % 100 == 3 => "restarting",
            _ => "running",
        };
        let mut a = agent(&name, state, self.cpu_ms[i], self.rss_kb[i]);
        if state == "quarantined" {
            a.breaker = "open".into();
            a.quarantine = Some("crash loop: 5 restarts in 60s".into());
        }
        ActorNode {
            name: format!("agent-{name}"),
            kind: ActorKind::Worker,
            state: ActorRunState::Running,
            restarts: 0,
            last_error: None,
            info: Some(ActorInfo::Agent(a)),
            children: Vec::new(),
        }
    }

    /// The next snapshot, `TICK_MS` after the previous one.
    fn next(&mut self) -> StatusSnapshot {
        self.seq += 1;
        for i in 0..AGENTS {
            let busy = i % 5 == 0;
            self.cpu_ms[i] += self.rng.below(if busy { 101 } else { 3 });
            let rss = self.rss_kb[i] + self.rng.below(257);
            self.rss_kb[i] = rss.saturating_sub(128).clamp(4_096, 65_536);
        }
        self.kernel_cpu_ms += self.rng.below(60);
        let mut root = tree(self.seq * 10, self.kernel_cpu_ms);
        let runs = root
            .children
            .iter_mut()
            .find(|c| c.name == "runs")
            .expect("the sample tree has runs");
        runs.children = (0..RUNS)
            .map(|r| {
                let agents = (r * AGENTS_PER_RUN..(r + 1) * AGENTS_PER_RUN)
                    .map(|i| self.agent_node(i))
                    .collect();
                supervisor(format!("run-r{:016x}", r + 1), agents)
            })
            .collect();
        snapshot(self.seq, STARTED_MS + self.seq * TICK_MS, root)
    }
}

/// The frame that carries `s` on the control socket.
fn encode(s: &StatusSnapshot) -> Vec<u8> {
    let frame = Frame::of(s, s.taken_at_ms, CONTROL_TTL_MS, TraceId(0), MsgId(s.seq))
        .expect("a snapshot fits a frame");
    encode_frame(&frame, &limits()).expect("the snapshot stays under the control cap")
}

/// What the client does with a frame's bytes: pushed into its stream decoder as socket
/// reads would, one frame out (every validation step), the payload typed.
fn decode(decoder: &mut StreamDecoder, bytes: &[u8], now_ms: u64) -> StatusSnapshot {
    for chunk in bytes.chunks(READ_CHUNK_BYTES) {
        assert_eq!(decoder.push(chunk), chunk.len(), "room for a whole frame");
    }
    let frame = decoder
        .next_frame(now_ms)
        .expect("a valid frame")
        .expect("a whole frame");
    frame.body().payload_as().expect("a status snapshot")
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// The `p` quantile (0..=1) of `v`, nearest rank.
fn quantile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**not met**" }
}

/// This process's CPU time (every thread), in seconds.
fn cpu_self_s() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    s(u.user_time()) + s(u.system_time())
}

/// This thread's CPU time, in milliseconds.
fn cpu_thread_ms() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let ms = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e3 + t.tv_usec() as f64 / 1e3;
    ms(u.user_time()) + ms(u.system_time())
}

/// The app after [`WARM_SNAPSHOTS`], with the first agent selected (the detail pane shows
/// its sparklines).
fn warm_app(fleet: &mut Fleet) -> App {
    let mut app = App::new("/root/.runloop/sock/rmp.sock".into(), true);
    for _ in 0..WARM_SNAPSHOTS {
        app.on_snapshot(&fleet.next());
    }
    for _ in 0..64 {
        if app.selected_row().is_some_and(|r| r.kind == RowKind::Agent) {
            return app;
        }
        app.on_key(Key::Down);
    }
    panic!("no agent row within 64 lines of the top");
}

/// Milliseconds per `terminal.draw` of the whole screen, a fresh snapshot folded in
/// (untimed) before each frame so the diff against the previous frame is a live one.
fn render_ms(app: &mut App, fleet: &mut Fleet, width: u16, height: u16) -> Vec<f64> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    for _ in 0..5 {
        terminal.draw(|f| draw(f, app)).expect("draw");
    }
    (0..RENDER_ITERS)
        .map(|_| {
            app.on_snapshot(&fleet.next());
            let t = Instant::now();
            terminal.draw(|f| draw(f, app)).expect("draw");
            ms(t)
        })
        .collect()
}

/// The floor of a `TestBackend` frame: one full-screen paragraph, every cell changing
/// from one frame to the next (so the diff and flush are the largest possible).
fn paragraph_ms(width: u16, height: u16) -> Vec<f64> {
    let texts =
        ['a', 'b'].map(|c| vec![c.to_string().repeat(width.into()); height.into()].join("\n"));
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    (0..RENDER_ITERS)
        .map(|i| {
            let text = texts[i % 2].as_str();
            let t = Instant::now();
            terminal
                .draw(|f| f.render_widget(Paragraph::new(text), f.area()))
                .expect("draw");
            ms(t)
        })
        .collect()
}

struct Loop {
    ticks: usize,
    wall_s: f64,
    cpu_s: f64,
    /// Wall time of each tick's work (waits for a CPU included on a busy machine).
    work_ms: Vec<f64>,
    /// CPU time of each tick's work.
    work_cpu_ms: Vec<f64>,
    /// How long after its deadline each tick's work began (the sleep's wake-up latency).
    wake_ms: Vec<f64>,
}

impl Loop {
    fn cpu_pct(&self) -> f64 {
        100.0 * self.cpu_s / self.wall_s
    }
    fn hz(&self) -> f64 {
        self.ticks as f64 / self.wall_s
    }
}

/// `ticks` ticks every [`TICK_MS`] against absolute deadlines, `work(k)` on tick `k`; the
/// process's CPU over the whole span (sleeps included, as a real loop's would be).
fn tick_loop(ticks: usize, mut work: impl FnMut(usize)) -> Loop {
    let cpu0 = cpu_self_s();
    let start = Instant::now();
    let (mut work_ms, mut work_cpu_ms) = (Vec::new(), Vec::new());
    let mut wake_ms = Vec::new();
    for k in 0..ticks {
        let deadline = start + Duration::from_millis(TICK_MS * k as u64);
        if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        wake_ms.push(
            Instant::now()
                .saturating_duration_since(deadline)
                .as_secs_f64()
                * 1e3,
        );
        let (t, c) = (Instant::now(), cpu_thread_ms());
        work(k);
        work_ms.push(ms(t));
        work_cpu_ms.push(cpu_thread_ms() - c);
    }
    let end = start + Duration::from_millis(TICK_MS * ticks as u64);
    if let Some(wait) = end.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    Loop {
        ticks,
        wall_s: start.elapsed().as_secs_f64(),
        cpu_s: cpu_self_s() - cpu0,
        work_ms,
        work_cpu_ms,
        wake_ms,
    }
}

/// The live loop at 4 Hz for [`LIVE_S`]: each tick decodes the next pre-encoded snapshot
/// frame, folds it in and draws the 200×50 screen.
fn live(app: &mut App, fleet: &mut Fleet) -> Loop {
    let ticks = (LIVE_S * 1_000 / TICK_MS) as usize;
    let frames: Vec<(Vec<u8>, u64)> = (0..ticks)
        .map(|_| {
            let s = fleet.next();
            (encode(&s), s.taken_at_ms)
        })
        .collect();
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).expect("test backend");
    let mut decoder = StreamDecoder::new(limits());
    tick_loop(ticks, |k| {
        let (bytes, now_ms) = &frames[k];
        let s = decode(&mut decoder, bytes, *now_ms);
        app.on_snapshot(&s);
        terminal.draw(|f| draw(f, app)).expect("draw");
    })
}

fn row(what: &str, v: &[f64], baseline: &str, target: &str) {
    println!(
        "| {what} | {:.3} | {:.3} | {baseline} | {target} |",
        median(v),
        quantile(v, 0.9)
    );
}

fn render_side() {
    let mut fleet = Fleet::new();
    let t = Instant::now();
    let mut app = warm_app(&mut fleet);
    let warm_s = t.elapsed().as_secs_f64();
    let rows = app.monitor.rows().len();
    let history = app
        .monitor
        .history(&app.selected_row().expect("selected").key)
        .count();
    let sample = fleet.next();
    let bytes = encode(&sample);
    let per_agent = bytes.len() as f64 / AGENTS as f64;
    println!(
        "fleet: {AGENTS} agents, {rows} rows; snapshot frame {} bytes ({per_agent:.0} B per \
         agent; the {} MiB control cap is reached near {:.0} agents); selected agent's \
         history {history} samples; {WARM_SNAPSHOTS} warm-up snapshots took {warm_s:.1} s",
        bytes.len(),
        CONTROL_BODY_BYTES_MAX / (1024 * 1024),
        CONTROL_BODY_BYTES_MAX as f64 / per_agent
    );
    println!();
    println!(
        "| what (1,000 agents) | median ms | p90 ms | baseline, same run (median ms) | target |"
    );
    println!("| --- | ---: | ---: | --- | --- |");
    let mut wide_ms = 0.0;
    for (w, h) in [(80u16, 24u16), (200, 50)] {
        let frame = render_ms(&mut app, &mut fleet, w, h);
        let floor = paragraph_ms(w, h);
        wide_ms = median(&frame);
        let ok = median(&frame) <= RENDER_TARGET_MS;
        row(
            &format!("render, tree view, {w}×{h}"),
            &frame,
            &format!("full-screen paragraph {w}×{h}: {:.3}", median(&floor)),
            &format!("≤ {RENDER_TARGET_MS} ms: {}", met(ok)),
        );
    }
    app.view.mode = Mode::Flat;
    app.view.sort = Some(Sort {
        column: Column::Cpu,
        descending: true,
    });
    let sorted = render_ms(&mut app, &mut fleet, 200, 50);
    row(
        "render, flat, sorted by CPU% ▼, 200×50",
        &sorted,
        "(as above)",
        &format!(
            "≤ {RENDER_TARGET_MS} ms: {}",
            met(median(&sorted) <= RENDER_TARGET_MS)
        ),
    );
    app.view.mode = Mode::Tree;
    app.view.sort = None;
    let lines: Vec<f64> = (0..RENDER_ITERS)
        .map(|_| {
            let t = Instant::now();
            black_box(app.lines());
            ms(t)
        })
        .collect();
    row(
        "for scale: one `App::lines()` (the tree order of all 1,021 rows)",
        &lines,
        "—",
        "—",
    );
    let hot_ms = wide_ms + reduce_and_decode(&mut app, &mut fleet);
    live_rows(&mut app, &mut fleet, hot_ms);
}

/// Prints the reducer's and the decoder's rows; returns the sum of their medians (ms).
fn reduce_and_decode(app: &mut App, fleet: &mut Fleet) -> f64 {
    let (mut reduce, mut clone) = (Vec::new(), Vec::new());
    for _ in 0..REDUCE_ITERS {
        let s = fleet.next();
        let t = Instant::now();
        black_box(s.clone());
        clone.push(ms(t));
        let t = Instant::now();
        app.on_snapshot(&s);
        reduce.push(ms(t));
    }
    row(
        "`on_snapshot` (the reducer), one snapshot",
        &reduce,
        &format!("deep clone of the snapshot: {:.3}", median(&clone)),
        "—",
    );
    let s = fleet.next();
    let bytes = encode(&s);
    let mut decoder = StreamDecoder::new(limits());
    let (mut dec, mut copy, mut enc) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..DECODE_ITERS {
        let t = Instant::now();
        black_box(decode(&mut decoder, &bytes, s.taken_at_ms));
        dec.push(ms(t));
        let t = Instant::now();
        black_box(bytes.to_vec());
        copy.push(ms(t));
        let t = Instant::now();
        black_box(encode(&s));
        enc.push(ms(t));
    }
    row(
        &format!("decode one snapshot frame ({} bytes)", bytes.len()),
        &dec,
        &format!(
            "memcpy of the bytes: {:.3}; encode (the daemon's side): {:.3}",
            median(&copy),
            median(&enc)
        ),
        "—",
    );
    median(&reduce) + median(&dec)
}

fn live_rows(app: &mut App, fleet: &mut Fleet, hot_ms: f64) {
    let idle = tick_loop((IDLE_S * 1_000 / TICK_MS) as usize, |_| {});
    let run = live(app, fleet);
    let sustainable = 1_000.0 / quantile(&run.work_ms, 0.99);
    row(
        "live tick, CPU time: decode + reduce + draw 200×50",
        &run.work_cpu_ms,
        &format!("the same three, back to back and warm: {:.3}", hot_ms),
        "—",
    );
    let worst = run.work_ms.iter().copied().fold(0.0, f64::max);
    let overran = run.work_ms.iter().filter(|&&w| w > TICK_MS as f64).count();
    row(
        "live tick, wall time (waits for a CPU included)",
        &run.work_ms,
        &format!(
            "max {worst:.3} ms; {overran} of {} ticks over {TICK_MS} ms; wake-up {:.3} ms \
             after the deadline (median; the idle loop's: {:.3}); sustainable ≈ \
             {sustainable:.0} Hz at p99",
            run.ticks,
            median(&run.wake_ms),
            median(&idle.wake_ms)
        ),
        &format!(
            "≥ 4 Hz: {} ({:.2} Hz)",
            met(overran == 0 && run.hz() >= 4.0 * 0.999),
            run.hz()
        ),
    );
    println!(
        "| live loop CPU, {LIVE_S} s at {:.2} Hz | {:.2}% of a core | — | the same loop without \
         work, {IDLE_S} s: {:.2}% | ≤ {AGTOP_CPU_TARGET_PCT}%: {} |",
        run.hz(),
        run.cpu_pct(),
        idle.cpu_pct(),
        met(run.cpu_pct() <= AGTOP_CPU_TARGET_PCT)
    );
}

fn main() {
    println!("cpu: {}; load at start: {}", cpu_model(), loadavg());
    render_side();
    println!("load after the render side: {}", loadavg());
    match env_or("AGTOP_DAEMON", 0usize) {
        0 => println!("daemon side skipped: set AGTOP_DAEMON=N to start N agents"),
        n => daemon::daemon_side(n),
    }
}
