//! The sandbox ⇄ kernel conversation: handshake, invoke, outputs, host calls, outcome, shutdown.
//!
//! One sandbox-host process speaks these kinds with the kernel over one socket. The kernel
//! sends `control.hello.v1`, the sandbox answers `control.ready.v1` (or `error.report.v1`
//! and exits); then each `intent.invoke.v1` is answered by any number of
//! `artifact.output.v1` and `toolcall.hostcall.v1` (each host call answered by
//! `toolresult.hostcall.v1`) and exactly one `toolresult.invoke.v1`. Invokes are
//! pipelined: the kernel may send up to [`PIPELINE_INVOKES_MAX`] invokes ahead, which the
//! sandbox runs one at a time in arrival order (frames about invoke *n* all come before
//! any about invoke *n + 1*). `control.shutdown.v1` or the socket closing ends the process.
//! See `docs/sandbox.md`.

use serde::{Deserialize, Serialize};

use crate::payloads::agent::{AgentInput, AgentOutput, HostCall, HostReply};
use crate::registry::PayloadExample;

/// The version of this conversation; a sandbox refuses a hello with another one.
pub const SANDBOX_PROTOCOL_VERSION: u32 = 2;
/// Most invokes a kernel may have sent to one sandbox without their outcome; one more is a
/// protocol error the sandbox exits on.
pub const PIPELINE_INVOKES_MAX: usize = 64;

/// Per-sandbox limits the kernel hands over in the hello; each crossing is a typed error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxLimits {
    /// Most bytes of wasm linear memory (all memories together).
    pub memory_bytes_max: u64,
    /// Most wall-clock milliseconds one invoke may take (epoch interruption).
    pub invoke_wall_ms_max: u64,
    /// Fuel per invoke, for deterministic bounds; `None` disables fuel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoke_fuel_max: Option<u64>,
    /// Most bytes of one output payload.
    pub output_bytes_max: u32,
    /// Most outputs per invoke.
    pub outputs_max: u32,
    /// Most host calls per invoke.
    pub host_calls_max: u32,
    /// Most bytes of logs (log host calls plus captured stdout and stderr) per invoke.
    pub log_bytes_max: u32,
    /// Largest frame body either side sends.
    pub frame_body_bytes_max: u32,
}

impl PayloadExample for SandboxLimits {
    fn example() -> Self {
        Self::default()
    }
}

/// The kernel's defaults (`AgentOptions`): 64 MiB of memory, 5 s and 64 outputs of at
/// most 1 MiB per invoke, 256 host calls, 64 KiB of logs, 2 MiB frame bodies, no fuel.
impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory_bytes_max: 64 * 1024 * 1024,
            invoke_wall_ms_max: 5_000,
            invoke_fuel_max: None,
            output_bytes_max: 1024 * 1024,
            outputs_max: 64,
            host_calls_max: 256,
            log_bytes_max: 64 * 1024,
            frame_body_bytes_max: 2 * 1024 * 1024,
        }
    }
}

/// `control.hello.v1`, kernel → sandbox: who you are, what to run, within which limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxHello {
    /// Must equal [`SANDBOX_PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The agent's name, for errors and traces.
    pub agent: String,
    /// Absolute path of the precompiled `.cwasm` (opened before seccomp is installed).
    pub module_path: String,
    pub limits: SandboxLimits,
}

impl PayloadExample for SandboxHello {
    fn example() -> Self {
        SandboxHello {
            protocol: SANDBOX_PROTOCOL_VERSION,
            agent: "echo".into(),
            module_path: "/root/.cache/runloop/cwasm/3f2a….cwasm".into(),
            limits: SandboxLimits::example(),
        }
    }
}

/// `control.ready.v1`, sandbox → kernel: the module is loaded and instantiated, the
/// confinement is in force, invokes may come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxReady {
    pub protocol: u32,
    /// The wasmtime version inside the sandbox.
    pub wasmtime: String,
    /// Microseconds from process start to ready, measured inside the sandbox.
    pub startup_us: u64,
}

impl PayloadExample for SandboxReady {
    fn example() -> Self {
        SandboxReady {
            protocol: SANDBOX_PROTOCOL_VERSION,
            wasmtime: "48.0.8".into(),
            startup_us: 1_900,
        }
    }
}

/// `intent.invoke.v1`, kernel → sandbox: handle this one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invoke {
    /// Chosen by the kernel, echoed in every frame the invoke produces.
    pub invoke_id: u64,
    pub input: AgentInput,
}

impl PayloadExample for Invoke {
    fn example() -> Self {
        Invoke {
            invoke_id: 1,
            input: AgentInput::example(),
        }
    }
}

/// `artifact.output.v1`, sandbox → kernel: one output, sent as soon as the guest emits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeOutput {
    pub invoke_id: u64,
    /// 0, 1, 2 … within the invoke.
    pub seq: u32,
    pub output: AgentOutput,
}

impl PayloadExample for InvokeOutput {
    fn example() -> Self {
        InvokeOutput {
            invoke_id: 1,
            seq: 0,
            output: AgentOutput::example(),
        }
    }
}

/// `toolcall.hostcall.v1`, sandbox → kernel: the guest asks; the guest is blocked until
/// the matching `toolresult.hostcall.v1` arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCallRequest {
    pub invoke_id: u64,
    /// 0, 1, 2 … within the invoke.
    pub call_id: u32,
    pub call: HostCall,
}

impl PayloadExample for HostCallRequest {
    fn example() -> Self {
        HostCallRequest {
            invoke_id: 1,
            call_id: 0,
            call: HostCall::example(),
        }
    }
}

/// `toolresult.hostcall.v1`, kernel → sandbox: the answer to one host call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCallResponse {
    pub invoke_id: u64,
    pub call_id: u32,
    pub reply: HostReply,
}

impl PayloadExample for HostCallResponse {
    fn example() -> Self {
        HostCallResponse {
            invoke_id: 1,
            call_id: 0,
            reply: HostReply::example(),
        }
    }
}

/// Why an invoke failed (closed). Limits name the limit that was crossed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvokeError {
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, …).
    Trap { message: String },
    /// The invoke ran past its wall-clock limit.
    TimeLimit { limit_ms: u64 },
    /// The guest asked for more linear memory than allowed.
    MemoryLimit { limit_bytes: u64 },
    /// The invoke used up its fuel.
    FuelExhausted { limit: u64 },
    /// Too many outputs, or one output too large.
    OutputLimit { what: OutputLimitKind, limit: u64 },
    /// Too many host calls in one invoke.
    HostCallLimit { limit: u32 },
    /// Too many log bytes (log host calls plus stdout and stderr) in one invoke.
    LogLimit { limit: u32 },
    /// The guest returned non-zero, with the message it set through `fail`.
    GuestFailed { message: String },
    /// The guest broke the ABI: a bad pointer, a malformed buffer, a failed allocation.
    GuestFault { message: String },
    /// The module does not load or lacks the ABI's exports.
    BadModule { message: String },
}

impl InvokeError {
    /// Whether another attempt may succeed: a trap or the time limit (the world may
    /// differ next time), or a failure the agent marked with
    /// [`RETRYABLE_PREFIX`](crate::payloads::agent::RETRYABLE_PREFIX). Limits the guest
    /// crossed by itself, ABI faults and a module that does not load are not.
    pub fn retryable(&self) -> bool {
        match self {
            InvokeError::Trap { .. } | InvokeError::TimeLimit { .. } => true,
            InvokeError::GuestFailed { message } => {
                message.starts_with(crate::payloads::agent::RETRYABLE_PREFIX)
            }
            InvokeError::MemoryLimit { .. }
            | InvokeError::FuelExhausted { .. }
            | InvokeError::OutputLimit { .. }
            | InvokeError::HostCallLimit { .. }
            | InvokeError::LogLimit { .. }
            | InvokeError::GuestFault { .. }
            | InvokeError::BadModule { .. } => false,
        }
    }

    /// The variant's name, as the CLI and traces print it.
    pub fn name(&self) -> &'static str {
        match self {
            InvokeError::Trap { .. } => "Trap",
            InvokeError::TimeLimit { .. } => "TimeLimit",
            InvokeError::MemoryLimit { .. } => "MemoryLimit",
            InvokeError::FuelExhausted { .. } => "FuelExhausted",
            InvokeError::OutputLimit { .. } => "OutputLimit",
            InvokeError::HostCallLimit { .. } => "HostCallLimit",
            InvokeError::LogLimit { .. } => "LogLimit",
            InvokeError::GuestFailed { .. } => "GuestFailed",
            InvokeError::GuestFault { .. } => "GuestFault",
            InvokeError::BadModule { .. } => "BadModule",
        }
    }
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.name();
        match self {
            InvokeError::Trap { message }
            | InvokeError::GuestFailed { message }
            | InvokeError::GuestFault { message }
            | InvokeError::BadModule { message } => write!(f, "{name}: {message}"),
            InvokeError::TimeLimit { limit_ms } => {
                write!(f, "{name}: invoke ran past {limit_ms} ms")
            }
            InvokeError::MemoryLimit { limit_bytes } => {
                write!(f, "{name}: linear memory would exceed {limit_bytes} bytes")
            }
            InvokeError::FuelExhausted { limit } => write!(f, "{name}: used all {limit} fuel"),
            InvokeError::OutputLimit { what, limit } => {
                write!(f, "{name}: {what:?} above {limit}")
            }
            InvokeError::HostCallLimit { limit } => {
                write!(f, "{name}: more than {limit} host calls")
            }
            InvokeError::LogLimit { limit } => write!(f, "{name}: more than {limit} log bytes"),
        }
    }
}

/// Which output limit was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputLimitKind {
    /// One output's bytes.
    Bytes,
    /// Outputs in the invoke.
    Count,
}

/// `toolresult.invoke.v1`, sandbox → kernel: the end of one invoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeOutcome {
    pub invoke_id: u64,
    /// `None` when the guest returned 0 within every limit.
    pub error: Option<InvokeError>,
    pub outputs: u32,
    pub host_calls: u32,
    /// Wall-clock microseconds inside the sandbox, input copy to return.
    pub wall_us: u64,
    /// Fuel used, when fuel is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    /// Captured guest stdout (bounded by the log limit; lossy UTF-8).
    pub stdout: String,
    /// Captured guest stderr (bounded by the log limit; lossy UTF-8).
    pub stderr: String,
}

impl PayloadExample for InvokeOutcome {
    fn example() -> Self {
        InvokeOutcome {
            invoke_id: 1,
            error: Some(InvokeError::TimeLimit { limit_ms: 5_000 }),
            outputs: 0,
            host_calls: 0,
            wall_us: 5_003_000,
            fuel_used: None,
            stdout: String::new(),
            stderr: String::new(),
        }
    }
}

/// `control.shutdown.v1`, kernel → sandbox: exit now, cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shutdown {
    pub reason: String,
}

impl PayloadExample for Shutdown {
    fn example() -> Self {
        Shutdown {
            reason: "agent stopped".into(),
        }
    }
}
