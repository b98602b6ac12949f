//! The guest: a loaded agent module, and one invoke of it inside a fresh store.
//!
//! Each invoke gets a new `Store` and instance (from a pre-linked [`InstancePre`], ≈ tens
//! of µs), so nothing survives from one message to the next and a trap cannot leave a
//! broken instance behind. The host imports of `docs/agent-abi.md` live here; every
//! pointer the guest names is bounds-checked before any copy, and every limit crossing
//! aborts the call with a typed [`InvokeError`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use runloop_proto::payloads::{
    AgentOutput, HostCall, HostCallRequest, HostCallResponse, HostReply, InvokeError,
    InvokeOutcome, InvokeOutput, OutputLimitKind, SandboxLimits,
};
use runloop_proto::{Kind, TraceId, VALUE_DEPTH_MAX, value_depth};
use wasmtime::{
    Caller, Engine, InstancePre, Linker, Memory, Module, ResourceLimiter, Store, Trap,
    UpdateDeadline, ValType,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use crate::conn::{Conn, ConnError};
use crate::engine::EPOCH_TICK_MS;

/// The fixed instant every guest clock shows: 2020-01-01T00:00:00Z. Real time comes only
/// through the `clock.now` host call, which the kernel records for replay.
const GUEST_EPOCH_S: u64 = 1_577_836_800;
/// The fixed bytes WASI's random sources repeat; real randomness is `random.bytes`.
const GUEST_RANDOM_SEED: [u8; 8] = [0x52, 0x75, 0x6e, 0x6c, 0x6f, 0x6f, 0x70, 0x31];

/// Why a module cannot be used as an agent.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The module asks for more at start than this sandbox's pool holds (a memory minimum
    /// above the agent's memory limit, a table above the pool's elements, …).
    #[error("module does not fit the sandbox's limits: {cause}")]
    Limits { cause: String },
    /// The `.cwasm` could not be loaded; `cause` is wasmtime's innermost reason.
    #[error("load {path}: {cause}")]
    Deserialize { path: String, cause: String },
    #[error("missing or mistyped export {name:?} (see docs/agent-abi.md)")]
    Export { name: &'static str },
    #[error("link imports: {0}")]
    Link(wasmtime::Error),
}

/// An agent module, checked against the ABI and pre-linked.
pub struct Agent {
    engine: Engine,
    pre: InstancePre<GuestState>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").finish_non_exhaustive()
    }
}

/// An abort raised inside a host import: the invoke ends with this, not with a trap.
#[derive(Debug, thiserror::Error)]
enum Abort {
    #[error("{0}")]
    Limit(InvokeError),
    #[error("kernel connection: {0}")]
    Conn(ConnError),
}

/// Per-store state: WASI, limits, counters and the kernel connection (lent per invoke).
struct GuestState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
    conn: Option<Conn>,
    trace: TraceId,
    invoke_id: u64,
    limits: SandboxLimits,
    outputs: u32,
    host_calls: u32,
    log_bytes: u64,
    pending_reply: Option<Vec<u8>>,
    fail_message: Option<String>,
    /// When the invoke's wall time runs out. Time blocked in host calls (a model, a
    /// person's confirmation) is added to it: the limit is on the guest's own time, as the
    /// kernel's watchdog counts it too.
    deadline: Instant,
}

/// Caps linear memory; crossing it aborts with `MemoryLimit` rather than a bare -1.
struct MemoryLimiter {
    memory_bytes_max: u64,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes_max {
            return Err(wasmtime::Error::new(Abort::Limit(
                InvokeError::MemoryLimit {
                    limit_bytes: self.memory_bytes_max,
                },
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold 8-byte references: count them against the same budget.
        Ok((desired as u64).saturating_mul(8) <= self.memory_bytes_max)
    }
}

/// The clocks guests see: frozen, so runs replay exactly.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(GUEST_EPOCH_S)
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK_MS`] while invokes run, from its own
/// thread so a spinning guest cannot starve it. A tick only makes the running guest check
/// its deadline against the monotonic clock (`Agent::invoke`); the number of ticks counts
/// for nothing, so late ticks delay a `TimeLimit` by one tick at most, never by their sum.
///
/// Starting an invoke is one atomic store: the ticker keeps ticking for
/// [`TICKER_IDLE_TICKS_MAX`] ticks after the last invoke ended, then parks on a condvar,
/// and only waking a parked ticker takes the lock. So back-to-back invokes pay no system
/// call for it, and an idle sandbox costs no wake-ups. The park/wake handshake is the
/// classic one: the ticker announces `parked` and then re-checks `active` under the lock;
/// the invoker stores `active` and then checks `parked` (all `SeqCst`), so at least one
/// of them sees the other and the ticker never sleeps through an invoke.
#[derive(Debug, Clone)]
pub struct Ticker {
    shared: Arc<TickerShared>,
}

#[derive(Debug)]
struct TickerShared {
    active: AtomicBool,
    parked: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

/// Ticks the ticker keeps going after the last invoke ended before it parks.
pub const TICKER_IDLE_TICKS_MAX: u32 = 25;

impl Ticker {
    /// Starts the ticker thread (before seccomp: it needs `clone`).
    pub fn spawn(engine: Engine) -> std::io::Result<Self> {
        let shared = Arc::new(TickerShared {
            active: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let theirs = Arc::clone(&shared);
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                // Signal only once thread start-up (rseq, TLS, the malloc arena) is done:
                // seccomp goes on after this and would kill those syscalls.
                let _ = started_tx.send(());
                tick(&theirs, &engine);
            })?;
        started_rx
            .recv()
            .map_err(|_| std::io::Error::other("epoch ticker died at start"))?;
        Ok(Self { shared })
    }

    fn set(&self, on: bool) {
        self.shared.active.store(on, Ordering::SeqCst);
        if on && self.shared.parked.load(Ordering::SeqCst) {
            let _guard = self.shared.lock.lock().expect("ticker lock");
            self.shared.wake.notify_one();
        }
    }
}

/// The ticker thread's loop (never returns; the process exits around it).
fn tick(shared: &TickerShared, engine: &Engine) {
    let mut idle_ticks = 0u32;
    loop {
        if shared.active.load(Ordering::SeqCst) {
            idle_ticks = 0;
        } else {
            idle_ticks += 1;
        }
        if idle_ticks > TICKER_IDLE_TICKS_MAX {
            shared.parked.store(true, Ordering::SeqCst);
            let mut guard = shared.lock.lock().expect("ticker lock");
            while !shared.active.load(Ordering::SeqCst) {
                guard = shared.wake.wait(guard).expect("ticker lock");
            }
            drop(guard);
            shared.parked.store(false, Ordering::SeqCst);
            idle_ticks = 0;
        }
        std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
        engine.increment_epoch();
    }
}

impl Agent {
    /// Loads a `.cwasm` made by `runloop-compile` with the same engine settings.
    pub fn load(engine: &Engine, path: &str) -> Result<Self, LoadError> {
        let file = std::fs::File::open(path).map_err(|err| LoadError::Deserialize {
            path: path.to_owned(),
            cause: err.to_string(),
        })?;
        Self::load_file(engine, file, path)
    }

    /// Loads the `.cwasm` the kernel opened and handed over as `file` (the sandbox opens
    /// no file by path: its uid may not reach the kernel's cache); `path` is for messages.
    pub fn load_file(engine: &Engine, file: std::fs::File, path: &str) -> Result<Self, LoadError> {
        // SAFETY: the file is a .cwasm written by runloop-compile into the kernel's
        // cache, not guest-controlled bytes; wasmtime checks its header and engine
        // settings, and the kernel does not modify it while the sandbox runs.
        let module = unsafe { Module::deserialize_open_file(engine, file) }.map_err(|err| {
            // The outer message is only "failed deserialization for: <path>"; the reason
            // is the root cause. The pooling allocator checks a module's memories and
            // tables against the pool at load, and says "… exceeds the … limit …".
            let cause = err.root_cause().to_string();
            if cause.contains("exceeds the") {
                LoadError::Limits { cause }
            } else {
                LoadError::Deserialize {
                    path: path.to_owned(),
                    cause,
                }
            }
        })?;
        Self::from_module(engine, module)
    }

    /// Checks the ABI exports and links the imports.
    pub fn from_module(engine: &Engine, module: Module) -> Result<Self, LoadError> {
        check_exports(&module)?;
        let mut linker: Linker<GuestState> = Linker::new(engine);
        crate::wasi::add_to_linker(&mut linker, |s| &mut s.wasi).map_err(LoadError::Link)?;
        add_runloop_imports(&mut linker).map_err(LoadError::Link)?;
        let pre = linker.instantiate_pre(&module).map_err(LoadError::Link)?;
        Ok(Self {
            engine: engine.clone(),
            pre,
        })
    }

    /// Runs one invoke. The connection is lent to the guest's host calls and given back;
    /// `Err` means the connection itself broke and the sandbox must exit.
    pub fn invoke(
        &self,
        conn: &mut Option<Conn>,
        ticker: &Ticker,
        limits: &SandboxLimits,
        trace: TraceId,
        invoke_id: u64,
        input: &[u8],
    ) -> Result<InvokeOutcome, ConnError> {
        let started = Instant::now();
        let log_cap = limits.log_bytes_max as usize + 1;
        let stdout = MemoryOutputPipe::new(log_cap);
        let stderr = MemoryOutputPipe::new(log_cap);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(
                GUEST_RANDOM_SEED.to_vec(),
            ))
            .insecure_random(wasmtime_wasi::Deterministic::new(
                GUEST_RANDOM_SEED.to_vec(),
            ))
            .insecure_random_seed(0)
            .build_p1();
        let state = GuestState {
            wasi,
            limiter: MemoryLimiter {
                memory_bytes_max: limits.memory_bytes_max,
            },
            conn: conn.take(),
            trace,
            invoke_id,
            limits: *limits,
            outputs: 0,
            host_calls: 0,
            log_bytes: 0,
            pending_reply: None,
            fail_message: None,
            deadline: started + Duration::from_millis(limits.invoke_wall_ms_max),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let fuel = limits.invoke_fuel_max.unwrap_or(u64::MAX);
        store
            .set_fuel(fuel)
            .expect("fuel is enabled in engine_config");
        // The deadline is an instant on the monotonic clock; the ticker's ticks only make
        // wasmtime look at it. Its sleeps run late on a loaded machine, so counting them
        // would stretch a 20 s limit by seconds, past the kernel's watchdog.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            Ok(if Instant::now() >= ctx.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            })
        });

        ticker.set(true);
        let result = self.run(&mut store, input);
        ticker.set(false);

        let fuel_used = limits
            .invoke_fuel_max
            .map(|max| max - store.get_fuel().unwrap_or(0));
        let state = store.into_data();
        *conn = state.conn;
        let error = match result {
            Ok(()) => None,
            Err(err) => match classify(err, limits) {
                Classified::Conn(err) => return Err(err),
                // A guest that set a message before trapping (the SDK does so when it
                // panics) gets it reported with the trap.
                Classified::Invoke(InvokeError::Trap { message }) => Some(InvokeError::Trap {
                    message: match &state.fail_message {
                        Some(fail) => format!("{fail} ({message})"),
                        None => message,
                    },
                }),
                Classified::Invoke(err) => Some(err),
            },
        };
        let (out, errs) = (stdout.contents(), stderr.contents());
        let log_total = state.log_bytes + out.len() as u64 + errs.len() as u64;
        let error = match error {
            None if log_total > u64::from(limits.log_bytes_max) => Some(InvokeError::LogLimit {
                limit: limits.log_bytes_max,
            }),
            None => state
                .fail_message
                .map(|message| InvokeError::GuestFailed { message }),
            other => other,
        };
        let keep = limits.log_bytes_max as usize;
        Ok(InvokeOutcome {
            invoke_id,
            error,
            outputs: state.outputs,
            host_calls: state.host_calls,
            wall_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            fuel_used,
            stdout: String::from_utf8_lossy(&out[..out.len().min(keep)]).into_owned(),
            stderr: String::from_utf8_lossy(&errs[..errs.len().min(keep)]).into_owned(),
        })
    }

    /// Instantiates, copies the input in and calls `runloop_handle`.
    fn run(&self, store: &mut Store<GuestState>, input: &[u8]) -> wasmtime::Result<()> {
        let instance = self.pre.instantiate(&mut *store)?;
        let alloc = instance.get_typed_func::<i32, i32>(&mut *store, "runloop_alloc")?;
        let handle = instance.get_typed_func::<(i32, i32), i32>(&mut *store, "runloop_handle")?;
        let memory = instance
            .get_memory(&mut *store, "memory")
            .ok_or_else(|| fault("no memory export"))?;
        let len = i32::try_from(input.len()).map_err(|_| fault("input above 2 GiB"))?;
        let ptr = alloc.call(&mut *store, len)?;
        if ptr == 0 {
            return Err(fault("runloop_alloc returned 0 (guest out of memory)"));
        }
        memory
            .write(&mut *store, ptr as u32 as usize, input)
            .map_err(|_| fault("runloop_alloc returned a buffer outside memory"))?;
        let rc = handle.call(&mut *store, (ptr, len))?;
        if rc != 0 && store.data().fail_message.is_none() {
            store.data_mut().fail_message = Some(format!("runloop_handle returned {rc}"));
        }
        if rc == 0 {
            store.data_mut().fail_message = None;
        }
        Ok(())
    }
}

enum Classified {
    Invoke(InvokeError),
    Conn(ConnError),
}

fn classify(err: wasmtime::Error, limits: &SandboxLimits) -> Classified {
    if let Some(abort) = err.downcast_ref::<Abort>() {
        return match abort {
            Abort::Limit(limit) => Classified::Invoke(limit.clone()),
            Abort::Conn(_) => match err.downcast::<Abort>() {
                Ok(Abort::Conn(conn)) => Classified::Conn(conn),
                _ => unreachable!("checked above"),
            },
        };
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        match trap {
            Trap::Interrupt => {
                return Classified::Invoke(InvokeError::TimeLimit {
                    limit_ms: limits.invoke_wall_ms_max,
                });
            }
            Trap::OutOfFuel => {
                return Classified::Invoke(InvokeError::FuelExhausted {
                    limit: limits.invoke_fuel_max.unwrap_or(u64::MAX),
                });
            }
            _ => {}
        }
    }
    let text = format!("{err:#}");
    if text.contains("beyond capacity of MemoryOutputPipe") {
        return Classified::Invoke(InvokeError::LogLimit {
            limit: limits.log_bytes_max,
        });
    }
    if let Some(message) = text.strip_prefix("guest fault: ") {
        return Classified::Invoke(InvokeError::GuestFault {
            message: message.to_owned(),
        });
    }
    Classified::Invoke(InvokeError::Trap { message: text })
}

fn fault(message: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!("guest fault: {message}"))
}

fn check_exports(module: &Module) -> Result<(), LoadError> {
    use wasmtime::ExternType;
    let func = |name: &'static str, params: &[ValType], results: &[ValType]| {
        let ok = match module.get_export(name) {
            Some(ExternType::Func(ty)) => {
                ty.params()
                    .map(|p| p.to_string())
                    .eq(params.iter().map(|p| p.to_string()))
                    && ty
                        .results()
                        .map(|p| p.to_string())
                        .eq(results.iter().map(|p| p.to_string()))
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(LoadError::Export { name })
        }
    };
    func("runloop_abi_v1", &[], &[])?;
    func("runloop_alloc", &[ValType::I32], &[ValType::I32])?;
    func(
        "runloop_handle",
        &[ValType::I32, ValType::I32],
        &[ValType::I32],
    )?;
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => Ok(()),
        _ => Err(LoadError::Export { name: "memory" }),
    }
}

/// The bytes `ptr..ptr+len` of the caller's memory, bounds-checked.
fn guest_bytes(
    caller: &mut Caller<'_, GuestState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<(Memory, std::ops::Range<usize>)> {
    let memory = caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| fault("no memory export"))?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let end = ptr
        .checked_add(len)
        .ok_or_else(|| fault("pointer overflow"))?;
    if end > memory.data_size(&*caller) {
        return Err(fault("buffer outside linear memory"));
    }
    Ok((memory, ptr..end))
}

fn limit(err: InvokeError) -> wasmtime::Error {
    wasmtime::Error::new(Abort::Limit(err))
}

fn add_runloop_imports(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.func_wrap("runloop", "output", import_output)?;
    linker.func_wrap("runloop", "fail", import_fail)?;
    linker.func_wrap("runloop", "host_call", import_host_call)?;
    linker.func_wrap("runloop", "host_reply", import_host_reply)?;
    Ok(())
}

fn import_output(mut caller: Caller<'_, GuestState>, ptr: i32, len: i32) -> wasmtime::Result<()> {
    let limits = caller.data().limits;
    if len as u32 > limits.output_bytes_max {
        return Err(limit(InvokeError::OutputLimit {
            what: OutputLimitKind::Bytes,
            limit: u64::from(limits.output_bytes_max),
        }));
    }
    if caller.data().outputs >= limits.outputs_max {
        return Err(limit(InvokeError::OutputLimit {
            what: OutputLimitKind::Count,
            limit: u64::from(limits.outputs_max),
        }));
    }
    let (memory, range) = guest_bytes(&mut caller, ptr, len)?;
    let output: AgentOutput = rmp_serde::from_slice(&memory.data(&caller)[range])
        .map_err(|e| fault(&format!("output is not an AgentOutput: {e}")))?;
    if value_depth(&output.payload) > VALUE_DEPTH_MAX {
        return Err(fault(&format!(
            "output payload nests deeper than {VALUE_DEPTH_MAX} levels"
        )));
    }
    let state = caller.data_mut();
    let payload = InvokeOutput {
        invoke_id: state.invoke_id,
        seq: state.outputs,
        output,
    };
    state.outputs += 1;
    let trace = state.trace;
    let conn = state.conn.as_mut().expect("conn lent for the invoke");
    // Queued: it leaves with the next host call or the outcome (see `conn`).
    conn.queue(trace, &payload)
        .map_err(|e| wasmtime::Error::new(Abort::Conn(e)))
}

fn import_fail(mut caller: Caller<'_, GuestState>, ptr: i32, len: i32) -> wasmtime::Result<()> {
    let keep = (len as u32).min(caller.data().limits.log_bytes_max) as i32;
    let (memory, range) = guest_bytes(&mut caller, ptr, keep)?;
    let message = String::from_utf8_lossy(&memory.data(&caller)[range]).into_owned();
    caller.data_mut().fail_message = Some(message);
    Ok(())
}

fn import_host_call(
    mut caller: Caller<'_, GuestState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    let limits = caller.data().limits;
    if caller.data().host_calls >= limits.host_calls_max {
        return Err(limit(InvokeError::HostCallLimit {
            limit: limits.host_calls_max,
        }));
    }
    if len as u32 > limits.frame_body_bytes_max / 2 {
        return Err(fault("host call larger than half a frame"));
    }
    let (memory, range) = guest_bytes(&mut caller, ptr, len)?;
    let call: HostCall = rmp_serde::from_slice(&memory.data(&caller)[range])
        .map_err(|e| fault(&format!("host call is not a HostCall: {e}")))?;
    let values: &[rmpv::Value] = match &call {
        HostCall::KbWriteEvent { payload, .. } => std::slice::from_ref(payload),
        HostCall::KbQuery { params, .. } => params,
        _ => &[],
    };
    if values.iter().any(|v| value_depth(v) > VALUE_DEPTH_MAX) {
        return Err(fault(&format!(
            "host call value nests deeper than {VALUE_DEPTH_MAX} levels"
        )));
    }
    let state = caller.data_mut();
    if let HostCall::Log { message, .. } = &call {
        state.log_bytes += message.len() as u64;
        if state.log_bytes > u64::from(limits.log_bytes_max) {
            return Err(limit(InvokeError::LogLimit {
                limit: limits.log_bytes_max,
            }));
        }
    }
    let request = HostCallRequest {
        invoke_id: state.invoke_id,
        call_id: state.host_calls,
        call,
    };
    state.host_calls += 1;
    let trace = state.trace;
    let conn = state.conn.as_mut().expect("conn lent for the invoke");
    let conn_err = |e| wasmtime::Error::new(Abort::Conn(e));
    let asked = Instant::now();
    conn.send(trace, &request).map_err(conn_err)?;
    let frame = conn.recv_reply().map_err(conn_err)?;
    state.deadline += asked.elapsed();
    let got = frame.body().kind();
    if got != Kind::HostCallResponse {
        return Err(conn_err(ConnError::Unexpected {
            got: got.type_name(),
            want: Kind::HostCallResponse.type_name(),
        }));
    }
    let response: HostCallResponse = frame
        .body()
        .payload_as()
        .map_err(|e| conn_err(ConnError::Frame(e)))?;
    if response.call_id != request.call_id || response.invoke_id != request.invoke_id {
        return Err(conn_err(ConnError::Unexpected {
            got: "a reply to another host call",
            want: Kind::HostCallResponse.type_name(),
        }));
    }
    let reply: HostReply = response.reply;
    let bytes = rmp_serde::to_vec_named(&reply).expect("host replies serialize");
    let n = i32::try_from(bytes.len()).map_err(|_| fault("reply above 2 GiB"))?;
    state.pending_reply = Some(bytes);
    Ok(n)
}

fn import_host_reply(mut caller: Caller<'_, GuestState>, ptr: i32) -> wasmtime::Result<()> {
    let bytes = caller
        .data_mut()
        .pending_reply
        .take()
        .ok_or_else(|| fault("host_reply without a pending reply"))?;
    let len = i32::try_from(bytes.len()).map_err(|_| fault("reply above 2 GiB"))?;
    let (memory, range) = guest_bytes(&mut caller, ptr, len)?;
    memory.data_mut(&mut caller)[range].copy_from_slice(&bytes);
    Ok(())
}
