//! `rlp drill soak --minutes N`: one kernel of the drill's own runs compose_email runs
//! back to back (two at a time) while faults fire at random moments — a SIGKILLed
//! sandbox, a wasm OOM, a spinning guest, a hostile sandbox — and at the end says whether
//! the kernel's RSS stayed flat (the trend over the run), whether anything leaked (cgroups,
//! processes, file descriptors) and whether every run is accounted for.
//!
//! The fault choices come from a seeded RNG (the seed is in the report), so a soak's
//! schedule can be run again; the timing of a real machine cannot.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use runloop_actors::bus::SWEEP_TOPICS_MIN;
use serde::{Deserialize, Serialize};

use super::DrillEnv;
use super::lab::{self, Lab, LabOptions, input, workload_outcome};
use crate::agents::{AgentOptions, StartOptions};

/// Longest soak.
pub const SOAK_MINUTES_MAX: u64 = 24 * 60 * 7;
/// Runs in flight at once.
const RUNS_IN_FLIGHT: usize = 2;
/// A fault fires every this many milliseconds on average (uniform in half to one and a
/// half of it).
const FAULT_EVERY_MS: u64 = 6_000;
/// How often RSS is sampled.
const RSS_EVERY_MS: u64 = 2_000;
/// The spinner's time limit per invoke.
const SPIN_LIMIT_MS: u64 = 200;
/// RSS samples in the first this many milliseconds are warm-up (caches filling), not trend.
const WARMUP_MS: u64 = 60_000;
/// The RSS trend a soak may show and still count as flat, KiB per minute. Release soaks
/// measure ≈ 300 and CI's debug ones ≤ 520 since the per-run leaks were fixed
/// (`perf/drills.md`); a leak of 1 KiB per run shows as ≈ 600 in CI's debug soak, and
/// the per-run entries check catches what the kernel keeps per run in its own maps.
pub const RSS_TREND_KB_PER_MIN_MAX: f64 = 2_048.0;
/// File descriptors the process may hold beyond its count before the soak (the runtime's
/// own, opened lazily).
const FD_SLACK: u64 = 8;
/// How many more bus topics, and separately live tasks, the kernel may hold once the last
/// runs ended than at its least after the warm-up (with runs in flight). Per-run state
/// that is never let go grows by one or more per run, past this within minutes.
const HELD_GROWTH_MAX: u64 = 64;

/// The faults a soak fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SoakFault {
    /// SIGKILL the sandbox of one agent of a running run.
    KillSandbox,
    /// A message to an agent that grows its heap past its wasm limit.
    OomWasm,
    /// A message to an agent that spins past its time limit.
    CpuSpin,
    /// An agent whose sandbox sends a frame with a bad magic (quarantined, then released).
    BadFrames,
}

const FAULTS: [SoakFault; 4] = [
    SoakFault::KillSandbox,
    SoakFault::OomWasm,
    SoakFault::CpuSpin,
    SoakFault::BadFrames,
];

/// What a soak found. `--json` prints it as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakReport {
    pub passed: bool,
    pub minutes: u64,
    pub seed: u64,
    pub runs_total: u64,
    pub runs_ok: u64,
    /// Runs that never reported.
    pub runs_lost: u64,
    pub duplicated_effects: u64,
    /// Faults fired, by kind.
    pub faults: BTreeMap<String, u64>,
    pub rss_start_kb: u64,
    pub rss_end_kb: u64,
    pub rss_max_kb: u64,
    /// Least-squares slope of RSS after the warm-up, KiB per minute.
    pub rss_trend_kb_per_min: f64,
    /// The same slope of the heap in use (glibc's `mallinfo2` over every arena), KiB per
    /// minute: live data, where RSS also counts what the allocator holds free. `None`
    /// outside glibc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_trend_kb_per_min: Option<f64>,
    pub leaked_cgroups: u64,
    pub leaked_processes: u64,
    pub leaked_fds: u64,
    /// The least the kernel held after the warm-up (runs in flight), and what it held once
    /// the last runs ended: bus topics, live tasks.
    pub held_warm: Held,
    pub held_end: Held,
    pub report: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// xorshift64*: the soak's schedule from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// This process's resident memory, KiB (the reader agent metrics use).
fn rss_kb() -> u64 {
    runloop_agent_actor::metrics::proc_usage(None).map_or(0, |(rss, _)| rss)
}

fn fd_count() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Live children of this process (sandboxes are children of the kernel's process).
fn children() -> Vec<u32> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    let mut f = rest.split_whitespace();
                    let state = f.next()?;
                    Some(state != "Z" && f.next()? == me)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Agent cgroups of this process's kernels still present (v1 memory hierarchy, or v2).
fn cgroups_left() -> u64 {
    let parent = format!("runloop-k{}", std::process::id());
    ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"]
        .iter()
        .map(|root| std::path::Path::new(root).join(&parent))
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .map(|d| d.flatten().filter(|e| e.path().is_dir()).count() as u64)
        .max()
        .unwrap_or(0)
}

/// What the kernel holds that grows with the runs it served when per-run state is not let
/// go: bus topics (each agent of a run has an inbox topic), live tasks, and the entries
/// the engine, the crossing log, run budgets and the confirmation gate keep per run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub bus_topics: u64,
    pub tasks: u64,
    pub run_entries: u64,
}

impl Held {
    async fn now(lab: &Lab) -> Held {
        let bus_topics = match lab.kernel.bus() {
            Some(bus) => bus.stats().await.map_or(0, |s| s.topics as u64),
            None => 0,
        };
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks() as u64;
        let run_entries = lab.engine.held_run_entries() as u64;
        Held {
            bus_topics,
            tasks,
            run_entries,
        }
    }

    /// Each count at its least over the `(ms, held)` samples after the warm-up (over all
    /// of them when none is: a one-minute soak).
    fn least_warm(samples: &[(u64, Held)]) -> Held {
        let warm = samples.iter().filter(|s| s.0 >= WARMUP_MS);
        let warm: Vec<Held> = if warm.clone().next().is_some() {
            warm.map(|s| s.1).collect()
        } else {
            samples.iter().map(|s| s.1).collect()
        };
        Held {
            bus_topics: warm.iter().map(|h| h.bus_topics).min().unwrap_or(0),
            tasks: warm.iter().map(|h| h.tasks).min().unwrap_or(0),
            run_entries: warm.iter().map(|h| h.run_entries).min().unwrap_or(0),
        }
    }

    /// The counts that grew past `warm` by more than they may, named: live tasks by
    /// [`HELD_GROWTH_MAX`], bus topics by that plus the dropped subscriptions the bus lets
    /// wait for its next sweep ([`SWEEP_TOPICS_MIN`]).
    fn grown_past(self, warm: Held) -> Vec<String> {
        [
            (
                "bus topics",
                warm.bus_topics,
                self.bus_topics,
                HELD_GROWTH_MAX + SWEEP_TOPICS_MIN as u64,
            ),
            ("live tasks", warm.tasks, self.tasks, HELD_GROWTH_MAX),
            (
                "per-run entries",
                warm.run_entries,
                self.run_entries,
                HELD_GROWTH_MAX,
            ),
        ]
        .into_iter()
        .filter(|(_, w, e, more)| *e > w + more)
        .map(|(what, w, e, more)| {
            format!("{what} grew {w} → {e} after the warm-up (at most {more} more)")
        })
        .collect()
    }
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bus topics, {} tasks, {} per-run entries",
            self.bus_topics, self.tasks, self.run_entries
        )
    }
}

/// Least-squares slope of `(ms, kb)` samples, in KiB per minute.
fn slope_kb_per_min(samples: &[(u64, u64)]) -> f64 {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return 0.0;
    }
    let mx = samples.iter().map(|s| s.0 as f64).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(x, y) in samples {
        num += (x as f64 - mx) * (y as f64 - my);
        den += (x as f64 - mx).powi(2);
    }
    if den == 0.0 {
        0.0
    } else {
        num / den * 60_000.0
    }
}

/// Runs the soak for `minutes` with the fault schedule of `seed`; `progress` hears a line
/// now and then.
pub async fn soak(env: &DrillEnv, minutes: u64, seed: u64, progress: &dyn Fn(&str)) -> SoakReport {
    match soak_inner(env, minutes, seed, progress).await {
        Ok(r) => r,
        Err(e) => SoakReport {
            passed: false,
            minutes,
            seed,
            runs_total: 0,
            runs_ok: 0,
            runs_lost: 0,
            duplicated_effects: 0,
            faults: BTreeMap::new(),
            rss_start_kb: 0,
            rss_end_kb: 0,
            rss_max_kb: 0,
            rss_trend_kb_per_min: 0.0,
            heap_trend_kb_per_min: None,
            leaked_cgroups: 0,
            leaked_processes: 0,
            leaked_fds: 0,
            held_warm: Held::default(),
            held_end: Held::default(),
            report: format!("the soak could not run: {e}"),
            failures: vec![e],
        },
    }
}

async fn soak_inner(
    env: &DrillEnv,
    minutes: u64,
    seed: u64,
    progress: &dyn Fn(&str),
) -> Result<SoakReport, String> {
    if !(1..=SOAK_MINUTES_MAX).contains(&minutes) {
        return Err(format!(
            "--minutes {minutes} is not within 1..={SOAK_MINUTES_MAX}"
        ));
    }
    let fds_before = fd_count();
    let children_before = children();
    let mut rng = Rng(seed | 1);
    // Restarts are frequent here by design: a wide intensity window, so only a real crash
    // loop is parked.
    let agents = AgentOptions {
        intensity: runloop_actors::supervisor::Intensity {
            restarts_max: 20,
            period_ms: 10_000,
        },
        ..AgentOptions::default()
    };
    let lab = Lab::boot(
        env,
        LabOptions {
            agents: Some(agents),
            ..LabOptions::default()
        },
    )
    .await?;
    lab.start("alloc_bomb", "bomb", StartOptions::default())
        .await?;
    lab.start_spinner(SPIN_LIMIT_MS).await?;
    let (name, bytes, _) = super::faults::BAD_FRAMES[0];
    let hostile = super::faults::hostile_sandbox(lab.state_dir(), name, bytes)?;

    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(minutes * 60);
    let mut rss: Vec<(u64, u64)> = Vec::new();
    let mut heap: Vec<(u64, u64)> = Vec::new();
    let rss_start_kb = rss_kb();
    let mut next_rss = t0;
    let mut next_fault = t0 + Duration::from_millis(FAULT_EVERY_MS / 2 + rng.below(FAULT_EVERY_MS));
    let mut next_note = t0 + Duration::from_secs(30);
    let mut in_flight: Vec<crate::runs::Submitted> = Vec::new();
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let mut ended = Ended::default();
    let (mut runs_total, mut runs_lost) = (0u64, 0u64);
    let mut bad_frames_n = 0u64;
    let mut held_samples: Vec<(u64, Held)> = Vec::new();
    while Instant::now() < end {
        // Keep RUNS_IN_FLIGHT runs going.
        let mut still = Vec::new();
        for run in in_flight.drain(..) {
            let done = run.report.borrow().clone();
            match done {
                Some(report) => ended.count(&report),
                None => still.push(run),
            }
        }
        in_flight = still;
        while in_flight.len() < RUNS_IN_FLIGHT {
            in_flight.push(lab.submit_workload().await?);
            runs_total += 1;
        }
        let now = Instant::now();
        if now >= next_rss {
            let ms = now.duration_since(t0).as_millis() as u64;
            rss.push((ms, rss_kb()));
            if let Some((used, _)) = crate::kernel::trim::heap_kib() {
                heap.push((ms, used));
            }
            next_rss = now + Duration::from_millis(RSS_EVERY_MS);
        }
        if now >= next_fault {
            let fault = FAULTS[rng.below(FAULTS.len() as u64) as usize];
            fire(&lab, fault, &hostile, &mut bad_frames_n, &mut rng).await;
            *faults.entry(format!("{fault:?}")).or_default() += 1;
            next_fault =
                now + Duration::from_millis(FAULT_EVERY_MS / 2 + rng.below(FAULT_EVERY_MS));
        }
        if now >= next_note {
            let held = Held::now(&lab).await;
            held_samples.push((now.duration_since(t0).as_millis() as u64, held));
            let heap = crate::kernel::trim::heap_kib().map_or(String::new(), |(used, held)| {
                format!(
                    " (heap {} of {} MiB in use, SQLite {} MiB of it)",
                    used >> 10,
                    held >> 10,
                    runloop_pog::sqlite_memory_used() >> 20
                )
            });
            progress(&format!(
                "{:>4} s: {runs_total} runs ({} ok), {} faults, RSS {} MiB{heap}; {held}",
                now.duration_since(t0).as_secs(),
                ended.ok,
                faults.values().sum::<u64>(),
                rss_kb() >> 10
            ));
            next_note = now + Duration::from_secs(30);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the runs in flight finish: every run is accounted for.
    for run in in_flight {
        match lab::finish(&run).await {
            Some(report) => ended.count(&report),
            None => runs_lost += 1,
        }
    }
    let Ended {
        ok: runs_ok,
        sent: sent_ok,
        failures,
    } = ended;
    let emails = lab.emails();
    let rss_end_kb = rss_kb();
    let held_end = Held::now(&lab).await;
    let held_warm = Held::least_warm(&held_samples);
    lab.stop().await;
    // Sandboxes exit as their actors stop; give the last ones a moment to be reaped.
    let mut leaked_processes = 0;
    for _ in 0..100 {
        let extra: Vec<u32> = children()
            .into_iter()
            .filter(|p| !children_before.contains(p))
            .collect();
        leaked_processes = extra.len() as u64;
        if extra.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leaked_cgroups = cgroups_left();
    let leaked_fds = fd_count().saturating_sub(fds_before + FD_SLACK);
    let warm: Vec<(u64, u64)> = rss.iter().copied().filter(|s| s.0 >= WARMUP_MS).collect();
    let trend = slope_kb_per_min(if warm.len() >= 2 { &warm } else { &rss });
    let heap_warm: Vec<(u64, u64)> = heap.iter().copied().filter(|s| s.0 >= WARMUP_MS).collect();
    let heap_trend = (!heap.is_empty()).then(|| {
        slope_kb_per_min(if heap_warm.len() >= 2 {
            &heap_warm
        } else {
            &heap
        })
    });
    let rss_max_kb = rss.iter().map(|s| s.1).max().unwrap_or(rss_end_kb);
    let duplicated = emails.saturating_sub(sent_ok);
    let mut checks = super::Checks::default();
    checks.expect(runs_lost == 0, format!("{runs_lost} runs never reported"));
    checks.expect(
        runs_ok == runs_total,
        format!(
            "{} of {runs_total} runs did not finish correctly",
            runs_total - runs_ok
        ),
    );
    checks.expect(
        duplicated == 0,
        format!("{duplicated} emails beyond one per run"),
    );
    checks.expect(
        trend <= RSS_TREND_KB_PER_MIN_MAX,
        format!("RSS grew {trend:.0} KiB/min after the warm-up (flat is ≤ {RSS_TREND_KB_PER_MIN_MAX:.0})"),
    );
    checks.expect(
        leaked_cgroups == 0,
        format!("{leaked_cgroups} agent cgroups left"),
    );
    checks.expect(
        leaked_processes == 0,
        format!("{leaked_processes} child processes left"),
    );
    checks.expect(
        leaked_fds == 0,
        format!("{leaked_fds} file descriptors left"),
    );
    for grown in held_end.grown_past(held_warm) {
        checks.expect(false, grown);
    }
    let mut all_failures = checks.into_failures();
    all_failures.extend(failures);
    let passed = all_failures.is_empty();
    let fired: Vec<String> = faults.iter().map(|(k, v)| format!("{v} {k}")).collect();
    Ok(SoakReport {
        passed,
        minutes,
        seed,
        runs_total,
        runs_ok,
        runs_lost,
        duplicated_effects: duplicated,
        faults,
        rss_start_kb,
        rss_end_kb,
        rss_max_kb,
        rss_trend_kb_per_min: (trend * 10.0).round() / 10.0,
        heap_trend_kb_per_min: heap_trend.map(|t| (t * 10.0).round() / 10.0),
        leaked_cgroups,
        leaked_processes,
        leaked_fds,
        held_warm,
        held_end,
        report: format!(
            "soak of {minutes} min (seed {seed}): {runs_total} compose_email runs, {runs_ok} \
             correct, {runs_lost} lost, {emails} email(s) for {sent_ok} sent; faults: {}; \
             RSS {} → {} MiB (max {} MiB), trend {trend:.0} KiB/min after the first {} s{}; \
             left behind: {leaked_cgroups} cgroups, {leaked_processes} processes, \
             {leaked_fds} fds; held after the warm-up {held_warm}, at the end {held_end}. {}",
            if fired.is_empty() {
                "none".into()
            } else {
                fired.join(", ")
            },
            rss_start_kb >> 10,
            rss_end_kb >> 10,
            rss_max_kb >> 10,
            WARMUP_MS / 1000,
            heap_trend.map_or(String::new(), |t| format!(" (heap in use {t:.0} KiB/min)")),
            if passed {
                "Passed.".to_owned()
            } else {
                format!("FAILED: {}.", all_failures.join("; "))
            }
        ),
        failures: all_failures,
    })
}

/// The runs that ended: how many correctly, how many sent their email, the first few
/// failures.
#[derive(Debug, Default)]
struct Ended {
    ok: u64,
    sent: u64,
    failures: Vec<String>,
}

/// Most run failures named in a report.
const FAILURES_NAMED_MAX: usize = 8;

impl Ended {
    fn count(&mut self, report: &runloop_proto::payloads::RunReport) {
        let o = workload_outcome(Some(report));
        self.ok += u64::from(o.ok);
        self.sent += u64::from(o.sent);
        if !o.ok && self.failures.len() < FAILURES_NAMED_MAX {
            self.failures
                .push(format!("run {}: {}", report.trace_id, o.summary));
        }
    }
}

/// Fires one fault into the lab's kernel. A fault that finds nothing to hit (no sandbox
/// running just then) is a no-op: the soak is about what the kernel survives.
async fn fire(lab: &Lab, fault: SoakFault, hostile: &std::path::Path, n: &mut u64, rng: &mut Rng) {
    match fault {
        SoakFault::KillSandbox => {
            let pids: Vec<u32> = lab.kernel.sandbox_pids_in_runs();
            if !pids.is_empty() {
                let pid = pids[rng.below(pids.len() as u64) as usize];
                if let Ok(pid) = i32::try_from(pid) {
                    // A sandbox that exited just now is fine: nothing to kill.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        SoakFault::OomWasm | SoakFault::CpuSpin => {
            let (agent, body) = if fault == SoakFault::OomWasm {
                ("bomb", serde_json::json!({}))
            } else {
                (
                    "spinner",
                    serde_json::json!({"node": "spin", "attempt": 1, "with": {"spin": 2_000_000_000u64}}),
                )
            };
            let kernel = lab.kernel.clone();
            // Answered with an error; nobody waits for it.
            tokio::spawn(async move {
                if let (Ok(name), Ok(message)) =
                    (runloop_actors::names::AgentName::new(agent), input(body))
                {
                    let _ = kernel.send(&name, message).await;
                }
            });
        }
        SoakFault::BadFrames => {
            *n += 1;
            let name = format!("hostile{n}");
            let start = StartOptions {
                sandbox_host: Some(hostile.to_owned()),
                ..StartOptions::default()
            };
            if lab.start("echo", &name, start).await.is_ok()
                && let Ok(agent) = runloop_actors::names::AgentName::new(&name)
            {
                // Parked; release and stop it so the soak does not pile them up. Either may
                // find it gone already, which is what the soak wants anyway.
                if let Err(e) = lab.kernel.release(&agent).await {
                    tracing::debug!("soak: release {name}: {e}");
                }
                if let Err(e) = lab.kernel.stop_agent(&agent).await {
                    tracing::debug!("soak: stop {name}: {e}");
                }
            }
        }
    }
}

impl crate::Kernel {
    /// The sandbox pids of every agent of every run (not standalone agents).
    pub(crate) fn sandbox_pids_in_runs(&self) -> Vec<u32> {
        self.agents
            .lock()
            .expect("agents lock")
            .iter()
            .filter(|((run, _), _)| !run.is_standalone())
            .filter_map(|(_, entry)| entry.shared.metrics.counters().sandbox_pid)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_per_minute_and_flat_for_a_flat_line() {
        let flat: Vec<(u64, u64)> = (0..10).map(|i| (i * 1_000, 5_000)).collect();
        assert_eq!(slope_kb_per_min(&flat), 0.0);
        let rising: Vec<(u64, u64)> = (0..10).map(|i| (i * 60_000, 1_000 + i * 100)).collect();
        assert!((slope_kb_per_min(&rising) - 100.0).abs() < 1e-9);
        assert_eq!(slope_kb_per_min(&[(0, 1)]), 0.0);
    }

    #[test]
    fn held_counts_are_judged_against_their_least_after_the_warm_up() {
        let h = |bus_topics, tasks, run_entries| Held {
            bus_topics,
            tasks,
            run_entries,
        };
        // Before the fixes of 2026-12-02 a run left its agents' inbox topics and its
        // deadline task behind, and the confirmation gate kept every run's decisions: all
        // three counts rose with the runs.
        let samples = [
            (30_000, h(5, 20, 3)),
            (60_000, h(40, 60, 900)),
            (90_000, h(30, 50, 1_400)),
        ];
        let warm = Held::least_warm(&samples);
        assert_eq!(warm, h(30, 50, 900));
        let topics_more = HELD_GROWTH_MAX + SWEEP_TOPICS_MIN as u64;
        assert!(
            h(
                30 + topics_more,
                50 + HELD_GROWTH_MAX,
                900 + HELD_GROWTH_MAX
            )
            .grown_past(warm)
            .is_empty()
        );
        let grown = h(31 + topics_more, 51 + HELD_GROWTH_MAX, 1_800).grown_past(warm);
        assert_eq!(grown.len(), 3, "{grown:?}");
        assert!(
            grown[0].starts_with("bus topics grew 30 → 159"),
            "{grown:?}"
        );
        assert!(
            grown[1].starts_with("live tasks grew 50 → 115"),
            "{grown:?}"
        );
        assert!(
            grown[2].starts_with("per-run entries grew 900 → 1800"),
            "{grown:?}"
        );
        // A one-minute soak has only warm-up samples: they are the baseline.
        assert_eq!(Held::least_warm(&samples[..1]), h(5, 20, 3));
        assert_eq!(Held::least_warm(&[]), h(0, 0, 0));
    }

    #[test]
    fn the_schedule_follows_the_seed() {
        let a: Vec<u64> = {
            let mut r = Rng(7);
            (0..5).map(|_| r.below(4)).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng(7);
            (0..5).map(|_| r.below(4)).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|x| *x < 4));
    }
}
