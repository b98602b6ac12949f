//! Boot an embedded kernel, start the committed `echo` agent in its own confined sandbox,
//! send it one message over the kernel's bus, print the answer, and shut down.
//!
//! ```console
//! $ cargo build -p runloop-sandbox-host && cargo run -p runloop-kernel --example embedded_echo
//! ```
//!
//! This is the smallest program that uses Runloop as a library: `rlp` does the same for
//! every command when no `runloopd` runs. CI runs it (`packaging/scripts/test.sh`).

use std::path::Path;
use std::process::ExitCode;

use runloop_actors::names::AgentName;
use runloop_kernel::{Kernel, KernelOptions};
use runloop_proto::json::msgpack_to_json;
use runloop_proto::payloads::AgentInput;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/bundles/echo");
    let kernel = match Kernel::boot(KernelOptions::default()).await {
        Ok(kernel) => kernel,
        Err(e) => {
            eprintln!("embedded_echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run(&kernel, &bundle).await;
    kernel.shutdown().await;
    match outcome {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("embedded_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(kernel: &Kernel, bundle: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let status = kernel.start_bundle(bundle, None).await?;
    let agent = AgentName::new(&status.name)?;
    let input = AgentInput {
        port: "in".into(),
        payload: rmpv::Value::Map(vec![("text".into(), "hello from an example".into())]),
    };
    let reply = kernel.send(&agent, input).await?;
    let outputs: Vec<_> = reply
        .outputs
        .iter()
        .map(|o| format!("{} {}", o.port, msgpack_to_json(&o.payload)))
        .collect();
    let bus = kernel.bus().ok_or("the bus is not running")?;
    let stats = bus.stats().await.ok_or("the bus did not answer")?;
    Ok(format!(
        "agent {} (sandbox pid {}) answered: {}\nbus: published {}, delivered {}",
        status.name,
        status.sandbox_pid.map_or("-".into(), |p| p.to_string()),
        outputs.join("; "),
        stats.published,
        stats.delivered
    ))
}
