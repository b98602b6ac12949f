//! What `rlp run` and `rlp resume` print: live progress per node (a bar on a TTY, NDJSON
//! events with `--events`), and the final report (`--json`: one object).

use std::io::{IsTerminal, Write};
use std::path::Path;

use runloop_proto::payloads::{RunProgress, RunReport};
use serde_json::{Value, json};

use crate::confirm::RunConfirm;
use crate::failure::Failure;
use crate::kernel_client::Source;

/// Where progress goes.
pub(super) struct Progress {
    pub(super) events: Option<Box<dyn Write>>,
    pub(super) tty: bool,
    pub(super) json: bool,
    pub(super) total: usize,
    pub(super) done: usize,
    /// How this command answers its run's confirmation requests.
    pub(super) confirm: RunConfirm,
    /// The person's (or flag's, or timeout's) decisions on the run's requests, as seen.
    pub(super) decisions: Vec<Value>,
}

impl Progress {
    pub(super) fn new(events: Option<&Path>, json: bool) -> Result<Self, Failure> {
        let events: Option<Box<dyn Write>> = match events {
            None => None,
            Some(p) if p == Path::new("-") => Some(Box::new(std::io::stdout())),
            Some(p) => {
                Some(Box::new(std::fs::File::create(p).map_err(|e| {
                    Failure::io(format!("--events {}: {e}", p.display()))
                })?))
            }
        };
        Ok(Self {
            events,
            tty: !json && std::io::stderr().is_terminal(),
            json,
            total: 0,
            done: 0,
            confirm: RunConfirm::Unattended,
            decisions: Vec::new(),
        })
    }

    pub(super) fn event(&mut self, event: &RunProgress) {
        if let Some(out) = &mut self.events
            && let Ok(line) = serde_json::to_string(event)
        {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        if let RunProgress::NodeDecided {
            node,
            decision,
            by,
            reason,
            ..
        } = event
        {
            self.decisions.push(json!({
                "node": node, "decision": decision, "by": by, "reason": reason,
            }));
        }
        if !self.tty {
            return;
        }
        let line = match event {
            RunProgress::RunStarted { nodes, resumed, .. } => {
                self.total = nodes.len();
                format!(
                    "{} {} nodes",
                    if *resumed { "resumed:" } else { "started:" },
                    nodes.len()
                )
            }
            RunProgress::NodeStarted { node, attempt, .. } => {
                format!("{node}: running (attempt {attempt})")
            }
            RunProgress::NodeRetrying {
                node,
                attempt,
                delay_ms,
                error,
                ..
            } => {
                format!("{node}: attempt {attempt} failed ({error}); retrying in {delay_ms} ms")
            }
            RunProgress::NodeWaiting {
                node,
                effect,
                request_id,
                ..
            } => format!("{node}: waiting for a person's yes to {effect} (request {request_id})"),
            RunProgress::NodeDecided {
                node, decision, by, ..
            } => format!("{node}: {decision} by {by}"),
            RunProgress::NodeSkipped { node, reason, .. } => {
                self.done += 1;
                format!("{node}: skipped ({reason})")
            }
            RunProgress::NodeFinished {
                node,
                status,
                attempts,
                duration_ms,
                ..
            } => {
                self.done += 1;
                format!(
                    "{node}: {} after {attempts} attempt(s), {duration_ms} ms",
                    status.as_str()
                )
            }
            RunProgress::RunFinished { .. } => return,
        };
        let width = 20usize;
        let filled = (self.done * width).checked_div(self.total).unwrap_or(0);
        eprintln!(
            "[{}{}] {}/{} {line}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            self.done,
            self.total
        );
    }
}

pub(super) fn print_report(
    report: &RunReport,
    source: &Source,
    json_out: bool,
    decisions: &[Value],
) {
    if json_out {
        let nodes: Vec<Value> = report
            .nodes
            .iter()
            .map(|n| {
                let mut v =
                    json!({"id": n.id, "status": n.status.as_str(), "attempts": n.attempts});
                if let Some(x) = n.started_at_ms {
                    v["started_at_ms"] = json!(x);
                }
                if let Some(x) = n.duration_ms {
                    v["duration_ms"] = json!(x);
                }
                if let Some(x) = &n.output_hash {
                    v["output_hash"] = json!(x);
                }
                if let Some(x) = &n.outputs_json {
                    v["outputs"] = serde_json::from_str(x).unwrap_or(Value::Null);
                }
                if let Some(x) = &n.reason {
                    v["reason"] = json!(x);
                }
                v
            })
            .collect();
        let mut out = json!({
            "trace_id": report.trace_id,
            "run_id": report.run_id,
            "opening": report.opening,
            "status": report.status.as_str(),
            "started_at_ms": report.started_at_ms,
            "duration_ms": report.duration_ms,
            "result_hash": report.result_hash,
            "nodes": nodes,
        });
        if let Some(r) = &report.reason {
            out["reason"] = json!(r);
        }
        if !decisions.is_empty() {
            out["decisions"] = json!(decisions);
        }
        for (k, v) in source.json_fields() {
            out[k] = v;
        }
        println!("{out}");
        return;
    }
    println!("{}", source.describe());
    println!(
        "run {} of {}: {} in {} ms",
        report.trace_id,
        report.opening,
        report.status.as_str(),
        report.duration_ms
    );
    if let Some(r) = &report.reason {
        println!("reason: {r}");
    }
    for n in &report.nodes {
        let mut line = format!(
            "  {:<20} {:<10} attempts {}",
            n.id,
            n.status.as_str(),
            n.attempts
        );
        if let Some(d) = n.duration_ms {
            line.push_str(&format!("  {d} ms"));
        }
        if let Some(o) = &n.outputs_json {
            line.push_str(&format!("  {}", truncate(o, 120)));
        }
        if let Some(r) = &n.reason {
            line.push_str(&format!("  ({r})"));
        }
        println!("{line}");
    }
    for d in decisions {
        let text = |k: &str| d[k].as_str().unwrap_or("").to_owned();
        let mut line = format!(
            "decision: {} {} by {}",
            text("node"),
            text("decision"),
            text("by")
        );
        if let Some(reason) = d["reason"].as_str() {
            line.push_str(&format!(" — {reason}"));
        }
        println!("{line}");
    }
    println!("result hash: {}", report.result_hash);
    println!(
        "trace id: {} (rlp runs {} shows this run again, rlp trace {} its ladder)",
        report.trace_id, report.trace_id, report.trace_id
    );
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
