//! The guest's WASI preview 1 surface: wasmtime-wasi's p1 linker, with the one call that
//! would block or need a timer (`poll_oneoff`) replaced by a host function of our own.
//!
//! Hostile party: the guest. Every WASI p1 import a guest can call must end in an errno or
//! a typed trap, never in a panic of this process. wasmtime-wasi's own `poll_oneoff` turns
//! a clock subscription into a tokio timer, and the sandbox's current-thread runtime has no
//! timer driver (it would need a thread and wake-ups the seccomp allowlist does not give,
//! and a guest sleeping inside a host function is out of reach of epoch interruption): the
//! host panicked ("timers are disabled"). Guest time is frozen (see `guest::FrozenClock`),
//! so [`poll_oneoff`] answers every subscription at once: a clock subscription has expired
//! (virtual time moves on by exactly the requested amount the moment it is asked), stdin
//! is at end of file, stdout and stderr are writable, any other descriptor is `EBADF` in
//! its event. A guest that polls in a loop therefore spins, and the epoch deadline ends it
//! with `TimeLimit` like any other loop.

use wasmtime::{Caller, Engine, Extern, FuncType, Linker, Memory, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

/// WASI p1 `errno` values used here (`wasi_snapshot_preview1` witx).
pub mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
}

/// Most subscriptions one `poll_oneoff` may name: the host's work per call is bounded.
pub const POLL_SUBSCRIPTIONS_MAX: u32 = 1024;
/// Bytes of one p1 `subscription` (align 8).
const SUBSCRIPTION_BYTES: usize = 48;
/// Bytes of one p1 `event` (align 8).
const EVENT_BYTES: usize = 32;
/// `eventtype` tags.
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
/// `clockid`s a clock subscription may name (realtime, monotonic); p1 refuses the others.
const CLOCKIDS_ALLOWED: [u32; 2] = [0, 1];
/// `eventrwflags::fd_readwrite_hangup`: stdin is empty and closed.
const EVENTRWFLAGS_HANGUP: u16 = 1;
/// The descriptors a guest has: stdin (empty), stdout and stderr (captured in memory).
const FD_STDIN: u32 = 0;
const FD_STDOUT: u32 = 1;
const FD_STDERR: u32 = 2;

/// Adds WASI p1 to `linker` (state reached through `wasi`), then shadows `poll_oneoff`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    wasi: impl Fn(&mut T) -> &mut WasiP1Ctx + Send + Sync + Copy + 'static,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, wasi)?;
    linker.allow_shadowing(true);
    linker.func_wrap(P1_MODULE, "poll_oneoff", poll_oneoff::<T>)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The module name of every WASI p1 import.
pub const P1_MODULE: &str = "wasi_snapshot_preview1";

/// Every function [`add_to_linker`] gives guests, by name with its type: the list a test
/// calls one by one with hostile arguments.
pub fn p1_imports(engine: &Engine) -> wasmtime::Result<Vec<(String, FuncType)>> {
    fn itself(wasi: &mut WasiP1Ctx) -> &mut WasiP1Ctx {
        wasi
    }
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    add_to_linker(&mut linker, itself)?;
    let mut store = Store::new(engine, WasiCtxBuilder::new().build_p1());
    let funcs: Vec<(String, wasmtime::Func)> = linker
        .iter(&mut store)
        .filter_map(|(module, name, export)| match (module, export) {
            (P1_MODULE, Extern::Func(func)) => Some((name.to_owned(), func)),
            _ => None,
        })
        .collect();
    let mut imports: Vec<(String, FuncType)> = funcs
        .into_iter()
        .map(|(name, func)| (name, func.ty(&store)))
        .collect();
    imports.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(imports)
}

/// `poll_oneoff(in, out, nsubscriptions, nevents_ptr) -> errno`, answered at once.
fn poll_oneoff<T>(
    mut caller: Caller<'_, T>,
    subs_ptr: i32,
    events_ptr: i32,
    nsubscriptions: i32,
    nevents_ptr: i32,
) -> i32 {
    let n = nsubscriptions as u32;
    if n == 0 || n > POLL_SUBSCRIPTIONS_MAX {
        return errno::INVAL;
    }
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return errno::FAULT;
    };
    let n = n as usize;
    let size = memory.data_size(&caller);
    let subs = span(subs_ptr, n * SUBSCRIPTION_BYTES, size);
    let events = span(events_ptr, n * EVENT_BYTES, size);
    let nevents = span(nevents_ptr, 4, size);
    let (Some(subs), Some(events), Some(nevents)) = (subs, events, nevents) else {
        return errno::FAULT;
    };
    let mut answers = Vec::with_capacity(n * EVENT_BYTES);
    {
        let data = memory.data(&caller);
        for sub in data[subs].chunks_exact(SUBSCRIPTION_BYTES) {
            match answer(sub) {
                Some(event) => answers.extend_from_slice(&event),
                None => return errno::INVAL,
            }
        }
    }
    write(&memory, &mut caller, events, &answers);
    write(&memory, &mut caller, nevents, &(n as u32).to_le_bytes());
    errno::SUCCESS
}

/// The event answering one subscription, or `None` when its tag or clock id is invalid.
fn answer(sub: &[u8]) -> Option<[u8; EVENT_BYTES]> {
    let userdata = &sub[0..8];
    let tag = sub[8];
    let (error, nbytes, flags) = match tag {
        EVENTTYPE_CLOCK => {
            let id = u32::from_le_bytes(sub[16..20].try_into().expect("4 bytes"));
            if !CLOCKIDS_ALLOWED.contains(&id) {
                return None;
            }
            (errno::SUCCESS, 0u64, 0u16)
        }
        EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE => {
            let fd = u32::from_le_bytes(sub[16..20].try_into().expect("4 bytes"));
            match (tag, fd) {
                (EVENTTYPE_FD_READ, FD_STDIN) => (errno::SUCCESS, 0, EVENTRWFLAGS_HANGUP),
                (EVENTTYPE_FD_WRITE, FD_STDOUT | FD_STDERR) => (errno::SUCCESS, 0, 0),
                _ => (errno::BADF, 0, 0),
            }
        }
        _ => return None,
    };
    let mut event = [0u8; EVENT_BYTES];
    event[0..8].copy_from_slice(userdata);
    event[8..10].copy_from_slice(&(error as u16).to_le_bytes());
    event[10] = tag;
    event[16..24].copy_from_slice(&nbytes.to_le_bytes());
    event[24..26].copy_from_slice(&flags.to_le_bytes());
    Some(event)
}

/// `ptr..ptr+len` when it lies inside a memory of `size` bytes.
fn span(ptr: i32, len: usize, size: usize) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len)?;
    (end <= size).then_some(start..end)
}

fn write<T>(memory: &Memory, caller: &mut Caller<'_, T>, at: std::ops::Range<usize>, bytes: &[u8]) {
    memory.data_mut(caller)[at].copy_from_slice(bytes);
}
