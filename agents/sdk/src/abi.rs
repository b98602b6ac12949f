//! The wasm side of the agent ABI v1: the `runloop` imports and the export glue.
//!
//! Only `export_agent!` uses this module, and it exists only on wasm32. It owns the single unsafe surface of the SDK:
//! the four imports, and turning the host-filled input buffer back into a Rust value.
//! The host is the trusted party here, but the glue still checks that the buffer it is
//! handed is the one `runloop_alloc` gave out, so a confused host cannot make the guest
//! free memory it never allocated.

use std::cell::Cell;
use std::sync::Once;

use runloop_proto::payloads::AgentInput;

use crate::Agent;
use crate::ctx::{Ctx, HostIo};

/// Most bytes of a failure message handed to `runloop.fail`; longer ones are cut so the
/// report itself never trips the host's limits.
const FAIL_MESSAGE_BYTES_MAX: usize = 1024;

mod imports {
    #[link(wasm_import_module = "runloop")]
    unsafe extern "C" {
        #[link_name = "output"]
        pub fn runloop_output(ptr: *const u8, len: usize);
        #[link_name = "fail"]
        pub fn runloop_fail(ptr: *const u8, len: usize);
        #[link_name = "host_call"]
        pub fn runloop_host_call(ptr: *const u8, len: usize) -> i32;
        #[link_name = "host_reply"]
        pub fn runloop_host_reply(ptr: *mut u8);
    }
}

/// The real host: the `runloop` imports.
#[derive(Debug)]
struct WasmHost;

impl HostIo for WasmHost {
    fn output(&mut self, output: &[u8]) {
        // SAFETY: `output` is a live slice; the host only reads `len` bytes from `ptr`.
        unsafe { imports::runloop_output(output.as_ptr(), output.len()) }
    }

    fn host_call(&mut self, request: &[u8]) -> Vec<u8> {
        // SAFETY: `request` is a live slice; the host only reads it during the call.
        let len = unsafe { imports::runloop_host_call(request.as_ptr(), request.len()) };
        let Ok(len) = usize::try_from(len) else {
            // A negative length is not a reply; an empty buffer fails to decode and the
            // call reports a bad reply.
            return Vec::new();
        };
        let mut reply = vec![0u8; len];
        // SAFETY: `reply` has exactly `len` writable bytes, the length the host announced
        // for the pending reply, which is all `host_reply` writes.
        unsafe { imports::runloop_host_reply(reply.as_mut_ptr()) };
        reply
    }
}

fn report_failure(message: &str) {
    let mut end = message.len().min(FAIL_MESSAGE_BYTES_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let text = &message.as_bytes()[..end];
    // SAFETY: `text` is a live slice; the host only reads it during the call.
    unsafe { imports::runloop_fail(text.as_ptr(), text.len()) }
}

thread_local! {
    /// The buffer `runloop_alloc` handed out and `runloop_handle` has not taken back yet:
    /// (address, length). At most one: the host allocates once per invoke.
    static PENDING_INPUT: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

static PANIC_HOOK: Once = Once::new();

/// Reports a panic's message through `runloop.fail` before the abort traps, so
/// the host can say why the guest died, not only that it did.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            // The message only: canonical builds carry no source locations (they would
            // tie the module's bytes to line numbers of unrelated edits).
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            report_failure(&format!("agent panicked: {message}"));
        }));
    });
}

/// Takes back the pending input buffer, if it is exactly `(ptr, len)`.
fn take_input(ptr: usize, len: usize) -> Option<Box<[u8]>> {
    match PENDING_INPUT.with(Cell::take) {
        Some(pending) if pending == (ptr, len) => {
            let raw = std::ptr::slice_from_raw_parts_mut(ptr as *mut u8, len);
            // SAFETY: `(ptr, len)` is the boxed slice leaked by `alloc` below and not yet
            // reclaimed (it was still pending), so rebuilding the box takes unique
            // ownership back exactly once.
            Some(unsafe { Box::from_raw(raw) })
        }
        Some((other_ptr, other_len)) => {
            // Not the buffer we gave out: reclaim ours so it does not leak, refuse theirs.
            drop(take_pending(other_ptr, other_len));
            None
        }
        None => None,
    }
}

fn take_pending(ptr: usize, len: usize) -> Box<[u8]> {
    let raw = std::ptr::slice_from_raw_parts_mut(ptr as *mut u8, len);
    // SAFETY: only called with a pair just removed from `PENDING_INPUT`, which holds the
    // leaked box from `alloc` until it is reclaimed once.
    unsafe { Box::from_raw(raw) }
}

/// `runloop_alloc`: a zeroed buffer of `len` bytes, or 0 when `len` is not positive or
/// the memory cannot be had (the host's memory limit is the bound on input size).
pub fn alloc(len: i32) -> i32 {
    let Ok(len) = usize::try_from(len) else {
        return 0;
    };
    if len == 0 {
        return 0;
    }
    let mut buffer = Vec::new();
    if buffer.try_reserve_exact(len).is_err() {
        return 0;
    }
    buffer.resize(len, 0u8);
    let ptr = Box::into_raw(buffer.into_boxed_slice()) as *mut u8 as usize;
    if let Some((old_ptr, old_len)) = PENDING_INPUT.with(|p| p.replace(Some((ptr, len)))) {
        // The host allocated twice without handling: free the first buffer.
        drop(take_pending(old_ptr, old_len));
    }
    i32::try_from(ptr).expect("wasm32 addresses fit in i32")
}

/// `runloop_handle`: decodes the input, runs the agent, reports an error through `fail`.
pub fn handle<A: Agent>(agent: &mut A, ptr: i32, len: i32) -> i32 {
    install_panic_hook();
    let (Ok(ptr), Ok(len)) = (usize::try_from(ptr), usize::try_from(len)) else {
        report_failure("runloop_handle: negative pointer or length");
        return 1;
    };
    let Some(bytes) = take_input(ptr, len) else {
        report_failure("runloop_handle: input buffer was not the one runloop_alloc gave");
        return 1;
    };
    let input: AgentInput = match rmp_serde::from_slice(&bytes) {
        Ok(input) => input,
        Err(e) => {
            report_failure(&format!("runloop_handle: decode input: {e}"));
            return 1;
        }
    };
    drop(bytes);
    let mut host = WasmHost;
    let mut ctx = Ctx::new(&mut host);
    match agent.handle(&mut ctx, input) {
        Ok(()) => 0,
        Err(e) => {
            report_failure(e.message());
            1
        }
    }
}
