//! Fault-injection drills: break one thing on purpose and check that nothing was lost or
//! done twice.
//!
//! Every drill boots its own kernel in a fresh state directory ([`lab::Lab`]: real
//! sandboxes in real cgroups, the POG with the sample contacts and notes, the offline model
//! broker, the effects journal with its Maildir outbox), starts a real workload — the
//! `compose_email` opening, approved by the drill, and the agents the fault needs — injects
//! one fault, and reports what it injected, how long the kernel took to notice and to
//! recover, what was lost and what was done twice. The user's own daemon and state are
//! never touched: a drill's kernel is a separate one.
//!
//! Drills are data: [`Drill`] is a closed enum, each with a description; they share the
//! harness in [`lab`]; each fault is one function in [`faults`].

pub(crate) mod lab;

pub use lab::seed_sample_pog;

pub mod soak;

mod daemon;
mod faults;
mod kill_sandbox;
mod pog_restore;
mod slow_model;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Drill {
    KillSandbox,
    OomWasm,
    OomCgroup,
    CpuSpin,
    BadFrames,
    Flapping,
    DaemonKill,
    PogRestore,
    SlowModel,
}

impl Drill {
    /// Every drill, in the order `rlp drill all` runs them.
    pub const ALL: [Drill; 9] = [
        Drill::KillSandbox,
        Drill::OomWasm,
        Drill::OomCgroup,
        Drill::CpuSpin,
        Drill::BadFrames,
        Drill::Flapping,
        Drill::DaemonKill,
        Drill::PogRestore,
        Drill::SlowModel,
    ];

    /// The drill's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Drill::KillSandbox => "kill-sandbox",
            Drill::OomWasm => "oom-wasm",
            Drill::OomCgroup => "oom-cgroup",
            Drill::CpuSpin => "cpu-spin",
            Drill::BadFrames => "bad-frames",
            Drill::Flapping => "flapping",
            Drill::DaemonKill => "daemon-kill",
            Drill::PogRestore => "pog-restore",
            Drill::SlowModel => "slow-model",
        }
    }

    /// What the drill does and what passing means.
    pub fn description(self) -> &'static str {
        match self {
            Drill::KillSandbox => {
                "SIGKILL the mailer's sandbox in the middle of its invoke, right after its \
                 email was sent; the invoke is redelivered to a new sandbox and answered once, \
                 from the effects journal: one email, not two"
            }
            Drill::OomWasm => {
                "an agent grows its heap past its wasm memory limit; the guest is stopped \
                 with MemoryLimit, its sandbox lives on, a neighbour agent and a compose_email \
                 run are unaffected"
            }
            Drill::OomCgroup => {
                "an agent whose cgroup allows less memory than its wasm limit outgrows the \
                 cgroup; the kernel's OOM killer ends its sandbox, the agent reports it as out \
                 of memory, a neighbour agent and a compose_email run are unaffected"
            }
            Drill::CpuSpin => {
                "an agent busy-loops; its invoke's time limit (epoch deadline) stops it and its \
                 cgroup's CPU quota bounds it; a neighbour agent's p50 round trip stays within \
                 2x of its baseline"
            }
            Drill::BadFrames => {
                "three hostile sandboxes send a frame with a bad magic, an oversized frame and \
                 a truncated header; each is rejected by its exact RMP error name and its agent \
                 quarantined with that reason"
            }
            Drill::Flapping => {
                "an agent's sandbox dies on every invoke; its breaker opens, lets one probe \
                 through after the open time (half-open), and the crash loop ends in \
                 quarantine; a compose_email run is unaffected"
            }
            Drill::DaemonKill => {
                "SIGKILL a runloopd of the drill's own in the middle of a compose_email run, \
                 and again while the run's email waits for a yes; each restarted daemon \
                 resumes the run from the POG: no finished node runs again, one email"
            }
            Drill::PogRestore => {
                "take an online backup of the POG while a run is in the middle, restore it over \
                 the live files with the kernel stopped; it verifies, a kernel boots on it, and \
                 a run recorded before the backup replays identically"
            }
            Drill::SlowModel => {
                "the model provider stalls and then fails: the broker's timeout ends each \
                 stalled call, it retries, the node fails naming the provider's error, and the \
                 budget reserved for the call is given back"
            }
        }
    }

    /// The drill called `name`.
    pub fn from_name(name: &str) -> Option<Drill> {
        Drill::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// What one drill run found. `--json` prints it as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub name: String,
    pub passed: bool,
    /// The fault, as injected.
    pub injected: String,
    /// From the fault to the kernel noticing it; `None` when it never did.
    pub detect_ms: Option<f64>,
    /// From the fault to service again (see each drill's report for what that is).
    pub restore_ms: Option<f64>,
    /// Messages or runs that got no answer.
    pub lost: u64,
    /// Effects performed more than once (emails beyond one per run).
    pub duplicated_effects: u64,
    pub runs_ok: u64,
    pub runs_total: u64,
    /// One paragraph for a person.
    pub report: String,
    /// Every check that failed (empty when passed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// Where a drill finds what it runs.
#[derive(Debug, Clone, Default)]
pub struct DrillEnv {
    /// Bundle directories: the compose_email agents and the test agents (`echo`,
    /// `alloc_bomb`, `flaky`, `panicker`) must be found in one of them.
    pub search_dirs: Vec<PathBuf>,
    /// `runloop-sandbox-host`; `None`: found next to this program.
    pub sandbox_host: Option<PathBuf>,
    /// The `.cwasm` cache; `None`: the compiler's default.
    pub cwasm_dir: Option<PathBuf>,
    /// `runloopd`, for `daemon-kill` (which fails without it, saying so).
    pub runloopd: Option<PathBuf>,
}

/// Runs one drill to its report. A harness failure (a bundle not found, a kernel that did
/// not boot) is a failed report that says so, not a panic.
pub async fn run(drill: Drill, env: &DrillEnv) -> DrillReport {
    let outcome = match drill {
        Drill::KillSandbox => kill_sandbox::kill_sandbox(env).await,
        Drill::OomWasm => faults::oom_wasm(env).await,
        Drill::OomCgroup => faults::oom_cgroup(env).await,
        Drill::CpuSpin => faults::cpu_spin(env).await,
        Drill::BadFrames => faults::bad_frames(env).await,
        Drill::Flapping => faults::flapping(env).await,
        Drill::DaemonKill => daemon::daemon_kill(env).await,
        Drill::PogRestore => pog_restore::pog_restore(env).await,
        Drill::SlowModel => slow_model::slow_model(env).await,
    };
    match outcome {
        Ok(report) => report,
        Err(e) => DrillReport {
            name: drill.name().into(),
            passed: false,
            injected: "nothing: the drill could not set up".into(),
            detect_ms: None,
            restore_ms: None,
            lost: 0,
            duplicated_effects: 0,
            runs_ok: 0,
            runs_total: 0,
            report: format!("{}: the drill could not run: {e}", drill.name()),
            failures: vec![e],
        },
    }
}

/// Collects a drill's checks: each failed one is named in the report.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    failures: Vec<String>,
}

impl Checks {
    pub(crate) fn expect(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }

    pub(crate) fn into_failures(self) -> Vec<String> {
        self.failures
    }
}

/// Milliseconds with one decimal.
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for d in Drill::ALL {
            assert_eq!(Drill::from_name(d.name()), Some(d));
            assert!(seen.insert(d.name()));
            assert!(d.description().len() > 40, "{d:?}");
            let json = serde_json::to_value(d).unwrap();
            assert_eq!(json, d.name());
        }
        assert_eq!(Drill::from_name("kill_sandbox"), None);
    }

    #[test]
    fn report_json_has_the_documented_fields() {
        let r = DrillReport {
            name: "x".into(),
            passed: true,
            injected: "i".into(),
            detect_ms: Some(1.25),
            restore_ms: None,
            lost: 0,
            duplicated_effects: 0,
            runs_ok: 1,
            runs_total: 1,
            report: "r".into(),
            failures: vec![],
        };
        let v = serde_json::to_value(&r).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        for k in [
            "name",
            "passed",
            "injected",
            "detect_ms",
            "restore_ms",
            "lost",
            "duplicated_effects",
            "runs_ok",
            "runs_total",
            "report",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} in {keys:?}");
        }
        assert!(v.get("failures").is_none(), "empty failures are left out");
        assert_eq!(ms(std::time::Duration::from_micros(12_345)), 12.3);
    }
}
