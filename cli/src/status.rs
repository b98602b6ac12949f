//! `rlp status`: the supervisor tree with each actor's state, from the daemon when its
//! socket answers, else from a kernel booted in-process (embedded mode); it says which.

use clap::Args;
use runloop_proto::payloads::{ActorInfo, ActorNode, ControlCommand, ControlOutcome};

use crate::failure::Failure;
use crate::kernel_client::{KernelArgs, ask};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON: {"source": "daemon"|"embedded", "socket", "tried", "tree": {...}}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

pub fn run(args: StatusArgs) -> Result<(), Failure> {
    let json = args.json;
    let (source, outcome) = ask(&args.kernel, ControlCommand::Status).map_err(|f| f.json(json))?;
    let tree = match outcome {
        ControlOutcome::Status { tree } => tree,
        ControlOutcome::Failed { code, message } => {
            let mut failure = Failure::io(message).json(json);
            failure.name = code;
            return Err(failure);
        }
        other => {
            return Err(Failure::io(format!("status answered with {other:?}")).json(json));
        }
    };
    if json {
        let mut out = source.json_fields();
        out.insert(
            "tree".into(),
            serde_json::to_value(&tree).expect("actor nodes serialize"),
        );
        println!("{}", serde_json::Value::Object(out));
    } else {
        println!("{}", source.describe());
        print_tree(&tree, 0);
    }
    Ok(())
}

fn print_tree(node: &ActorNode, depth: usize) {
    let kind = serde_json::to_value(node.kind).expect("serializes");
    let state = serde_json::to_value(node.state).expect("serializes");
    let mut line = format!(
        "{:indent$}{:<width$} {:<10} {:<10} restarts {}",
        "",
        node.name,
        kind.as_str().unwrap_or_default(),
        state.as_str().unwrap_or_default(),
        node.restarts,
        indent = depth * 2,
        width = 24usize.saturating_sub(depth * 2),
    );
    if let Some(info) = &node.info {
        line.push_str("  ");
        line.push_str(&info_text(info));
    }
    if let Some(error) = &node.last_error {
        line.push_str(&format!("  last error: {error}"));
    }
    println!("{line}");
    for child in &node.children {
        print_tree(child, depth + 1);
    }
}

/// One line about an actor's own figures: the only place status becomes text.
fn info_text(info: &ActorInfo) -> String {
    match info {
        ActorInfo::Supervisor { strategy } => {
            let strategy = serde_json::to_value(strategy).expect("serializes");
            format!("strategy {}", strategy.as_str().unwrap_or_default())
        }
        ActorInfo::Bus(b) => format!(
            "topics {}, subscribers {}, published {}, delivered {}, dropped {}, rejected {}",
            b.topics, b.subscribers, b.published, b.delivered, b.dropped, b.rejected
        ),
        ActorInfo::Scheduler(s) => format!(
            "running {}/{}, queued {}, openings {}",
            s.running, s.concurrency_max, s.queued, s.openings
        ),
        ActorInfo::Quarantine { parked } => format!("parked {parked}"),
        ActorInfo::DeadLetters { records, dropped } => {
            format!("records {records}, dropped {dropped}")
        }
        ActorInfo::Kernel {
            cpu_ms,
            rss_kb,
            warm,
        } => {
            let mut text = format!("kernel cpu {cpu_ms} ms, rss {rss_kb} KiB");
            if let Some(w) = warm {
                text.push_str(&format!("; warm sandboxes {}", w.summary(", ")));
            }
            text
        }
        ActorInfo::Agent(a) => format!(
            "agent {}, sandbox pid {}, restarts {}, breaker {}, quarantine {}, cpu {} ms, \
             rss {} KiB, messages in {} out {}, errors {}",
            a.state,
            a.sandbox_pid.map_or("-".into(), |p| p.to_string()),
            a.restarts,
            a.breaker,
            a.quarantine.as_deref().unwrap_or("-"),
            a.cpu_ms,
            a.rss_kb,
            a.messages_in,
            a.messages_out,
            a.errors
        ),
        ActorInfo::EmptySlot => "not started in this kernel (runloopd starts it)".into(),
    }
}
