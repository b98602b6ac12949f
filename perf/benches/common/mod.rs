//! What the harness-free benchmarks in `perf/benches/` share: the checkout and its
//! bundles, the release sandbox-host they measure, knobs from the environment, medians and
//! percentiles, a chain opening, and the machine facts printed beside every figure.
//! Each bench uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Instant;

/// The checkout's root: the first folder above the bench's crate with a `Cargo.lock` (the
/// workspace's; the crates sit at different depths).
pub fn repo() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(manifest)
        .to_path_buf()
}

/// The committed agent bundles.
pub fn bundles() -> PathBuf {
    repo().join("agents/bundles")
}

/// The release sandbox-host (`cargo build -p runloop-sandbox-host --release`, built alone
/// so it links no cranelift), or `RUNLOOP_SANDBOX_HOST`.
pub fn program() -> PathBuf {
    if let Some(p) = std::env::var_os("RUNLOOP_SANDBOX_HOST") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    target.join("release/runloop-sandbox-host")
}

/// A value from the environment (a count, a duration in ms, …), or `default` when unset;
/// a value that does not parse stops the bench, naming the variable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {v:?} does not parse as a number")),
    }
}

/// A comma list of names from the environment, each one of `known` (all of them when
/// unset); an unknown name stops the bench, naming the variable and the names it takes.
/// Returns whether a name was asked for.
pub fn env_choices(name: &str, known: &'static [&'static str]) -> impl Fn(&str) -> bool {
    let asked: Vec<String> = match std::env::var(name) {
        Err(_) => known.iter().map(|k| (*k).to_owned()).collect(),
        Ok(list) => list.split(',').map(|p| p.trim().to_owned()).collect(),
    };
    for a in &asked {
        assert!(
            known.contains(&a.as_str()),
            "{name}: unknown {a:?} (one or more of {})",
            known.join(", ")
        );
    }
    move |choice: &str| asked.iter().any(|a| a == choice)
}

/// The median (the upper one of an even count); the samples are left as they were.
pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// The `p` quantile (0..=1, nearest rank); sorts the samples in place.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let idx = ((samples.len() - 1) as f64 * p).round() as usize;
    samples[idx]
}

/// Milliseconds since `since`.
pub fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// An opening of `n` `echo` nodes in a chain (`n0.out → n1.in → …`).
pub fn chain(n: usize) -> String {
    let mut y = String::from("version: 0\nname: chain\npolicy: { timeout_ms: 600000 }\nnodes:\n");
    for i in 0..n {
        y.push_str(&format!("  - {{ id: n{i}, use: \"agent:echo\" }}\n"));
    }
    if n == 1 {
        y.push_str("edges: []\n");
        return y;
    }
    y.push_str("edges:\n");
    for i in 1..n {
        y.push_str(&format!("  - {{ from: n{}.out, to: n{i}.in }}\n", i - 1));
    }
    y
}

/// The CPU model, recorded with every figure (they differ a lot between CPUs).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The machine's 1, 5 and 15 minute load averages (`/proc/loadavg`).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
