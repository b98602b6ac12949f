//! `rlp trace --format chrome`: a run as Trace Event Format JSON, for Perfetto
//! (ui.perfetto.dev) or `chrome://tracing`.
//!
//! One process (pid 1, named after the run) with one track (thread) per participant, in
//! the view's order, named by `thread_name` and ordered by `thread_sort_index` metadata
//! events. Each crossing is one complete (`X`) event **on the track of its receiver**
//! (`to`): the time the receiver spent answering it — the broker completing a model call,
//! an agent running an invoke. `ts` counts microseconds from the run's start (or from an
//! earlier crossing's), `dur` is the latency in microseconds, at least 1; `name` is the
//! message kind, `cat` the receiver's kind, and `args` hold `seq`, `from`, `to`, `node`,
//! `bytes`, `reply_bytes`, `status` and `detail` (the optional ones only when present).
//!
//! Viewers require the complete events of one thread to nest (a slice either contains
//! another or does not overlap it), but a participant serves calls that overlap without
//! nesting (two agents querying the POG at once). So each participant's crossings are
//! laid out on as many lanes as that takes, greedily in start order: lane 0 is the track
//! named after the participant, lane k its extra track `label #k+1`, sorted right under
//! it. No flow arrows are drawn (a flow needs an enclosing slice on the sender's track,
//! which a sender such as `rlp` does not have). `packaging/scripts/trace-tools.sh
//! check-chrome` validates the output against the format's schema and the nesting rule.

use std::cmp::Reverse;

use runloop_proto::payloads::{CrossingStatus, TraceView};
use serde_json::{Map, Value, json};

use super::text::clean;
use super::{columns, origin_ms, units};

/// The process every track belongs to.
const PID: u64 = 1;

/// The Trace Event JSON of `view`: `{"traceEvents":[…],"displayTimeUnit":"ms",
/// "otherData":{…}}`, one event per line.
pub fn chrome(view: &TraceView) -> String {
    let (cols, ends) = columns(view);
    let origin = origin_ms(view);
    let spans: Vec<(u64, u64)> = view
        .crossings
        .iter()
        .map(|c| {
            let ts = (c.start_ms - origin).saturating_mul(1000);
            let dur = c
                .end_ms
                .saturating_sub(c.start_ms)
                .saturating_mul(1000)
                .max(1);
            (ts, dur)
        })
        .collect();
    // Start order; at equal starts the longer first, so it can hold the shorter.
    let mut order: Vec<usize> = (0..view.crossings.len()).collect();
    order.sort_by_key(|&i| (spans[i].0, Reverse(spans[i].1), view.crossings[i].seq, i));
    let lanes = lanes(&order, &spans, &ends, cols.len());
    // Thread ids: each participant's lanes in a row, from 1.
    let mut first_tid = Vec::with_capacity(cols.len());
    let mut next = 1;
    for count in &lanes.count {
        first_tid.push(next);
        next += count;
    }

    let mut events: Vec<Value> = Vec::with_capacity(1 + 2 * next as usize + order.len());
    events.push(json!({
        "name": "process_name", "ph": "M", "pid": PID, "tid": 0,
        "args": {"name": format!("run {} {}", clean(&view.opening), clean(&view.trace_id))},
    }));
    for (i, col) in cols.iter().enumerate() {
        for lane in 0..lanes.count[i] {
            let tid = first_tid[i] + lane;
            let label = clean(col.label);
            let name = if lane == 0 {
                label
            } else {
                format!("{label} #{}", lane + 1)
            };
            events.push(json!({
                "name": "thread_name", "ph": "M", "pid": PID, "tid": tid,
                "args": {"name": name},
            }));
            events.push(json!({
                "name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid,
                "args": {"sort_index": tid},
            }));
        }
    }
    for &i in &order {
        let c = &view.crossings[i];
        let (from, to) = ends[i];
        let mut args = Map::new();
        args.insert("seq".into(), json!(c.seq));
        args.insert("from".into(), json!(cols[from].id));
        args.insert("to".into(), json!(cols[to].id));
        if let Some(node) = &c.node {
            args.insert("node".into(), json!(node));
        }
        args.insert("bytes".into(), json!(c.bytes));
        if let Some(reply) = c.reply_bytes {
            args.insert("reply_bytes".into(), json!(reply));
        }
        let status = match c.status {
            CrossingStatus::Ok => "ok",
            CrossingStatus::Error => "error",
        };
        args.insert("status".into(), json!(status));
        if let Some(detail) = &c.detail {
            args.insert("detail".into(), json!(detail));
        }
        let cat = cols[to].kind.map_or("unknown", |k| k.as_str());
        events.push(json!({
            "name": c.kind, "cat": cat, "ph": "X",
            "ts": spans[i].0, "dur": spans[i].1,
            "pid": PID, "tid": first_tid[to] + lanes.of[i],
            "args": args,
        }));
    }

    let other = json!({
        "trace_id": view.trace_id,
        "opening": view.opening,
        "status": view.status,
        "started_ms": view.started_ms,
        "started_utc": format!(
            "{} {} UTC",
            units::date_utc(view.started_ms),
            units::clock_utc(view.started_ms)
        ),
        "origin_ms": origin,
        "crossings": view.crossings.len(),
    });
    let mut out = String::from("{\"traceEvents\":[\n");
    for (k, event) in events.iter().enumerate() {
        if k > 0 {
            out.push_str(",\n");
        }
        out.push_str(&event.to_string());
    }
    out.push_str("\n],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":");
    out.push_str(&other.to_string());
    out.push_str("}\n");
    out
}

/// Each participant's lane count (at least 1) and each crossing's lane on its receiver.
struct Lanes {
    count: Vec<u64>,
    of: Vec<u64>,
}

/// Lays out crossings (visited in `order`, by start) on their receivers' lanes: a crossing
/// goes on the first lane where it nests inside the open slice or starts after it ends.
fn lanes(order: &[usize], spans: &[(u64, u64)], ends: &[(usize, usize)], n: usize) -> Lanes {
    // Per participant, per lane: the end times of the slices still open there (a stack).
    let mut open: Vec<Vec<Vec<u64>>> = vec![vec![Vec::new()]; n];
    let mut of = vec![0; spans.len()];
    for &i in order {
        let (start, dur) = spans[i];
        let end = start.saturating_add(dur);
        let stacks = &mut open[ends[i].1];
        let mut lane = None;
        for (k, stack) in stacks.iter_mut().enumerate() {
            while stack.last().is_some_and(|&e| e <= start) {
                stack.pop();
            }
            if stack.last().is_none_or(|&e| e >= end) {
                stack.push(end);
                lane = Some(k);
                break;
            }
        }
        of[i] = lane.unwrap_or_else(|| {
            stacks.push(vec![end]);
            stacks.len() - 1
        }) as u64;
    }
    Lanes {
        count: open.iter().map(|s| s.len() as u64).collect(),
        of,
    }
}

#[cfg(test)]
mod tests {
    use runloop_proto::payloads::{Crossing, Participant, ParticipantKind};

    use super::*;

    fn crossing(seq: u64, from: &str, to: &str, start_ms: u64, end_ms: u64) -> Crossing {
        Crossing {
            seq,
            from: from.into(),
            to: to.into(),
            kind: "kb.query".into(),
            node: None,
            bytes: 1,
            reply_bytes: None,
            start_ms,
            end_ms,
            status: CrossingStatus::Ok,
            detail: None,
        }
    }

    #[test]
    fn overlapping_calls_to_one_participant_get_a_second_lane() {
        let p = |id: &str, kind| Participant {
            id: id.into(),
            kind,
            label: id.into(),
        };
        let view = TraceView {
            trace_id: "t".into(),
            opening: "o".into(),
            status: "succeeded".into(),
            started_ms: 1_000,
            participants: vec![
                p("a", ParticipantKind::Agent),
                p("pog", ParticipantKind::Pog),
            ],
            crossings: vec![
                crossing(0, "a", "pog", 1_000, 1_030),
                crossing(1, "a", "pog", 1_010, 1_020), // nests in 0: same lane
                crossing(2, "a", "pog", 1_025, 1_050), // overlaps 0 without nesting
                crossing(3, "a", "pog", 1_030, 1_030), // after 0 ends: lane 0 again
            ],
        };
        let json: Value = serde_json::from_str(&chrome(&view)).unwrap();
        let events = json["traceEvents"].as_array().unwrap();
        let tid_of = |seq: u64| {
            events
                .iter()
                .find(|e| e["ph"] == "X" && e["args"]["seq"] == seq)
                .map(|e| e["tid"].as_u64().unwrap())
                .unwrap()
        };
        // Track 1 is `a` (no crossings to it), 2 is `pog`, 3 is `pog #2`.
        assert_eq!([tid_of(0), tid_of(1), tid_of(2), tid_of(3)], [2, 2, 3, 2]);
        let names: Vec<&str> = events
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| e["args"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "pog", "pog #2"]);
        let x3 = events.iter().find(|e| e["args"]["seq"] == 3).unwrap();
        assert_eq!(
            (x3["ts"].as_u64(), x3["dur"].as_u64()),
            (Some(30_000), Some(1))
        );
    }
}
