//! The Runloop guest SDK: write an agent as a Rust type, export it with one macro.
//!
//! An agent implements [`Agent`]: `handle` receives one [`AgentInput`] and a [`Ctx`] that
//! emits outputs ([`Ctx::emit`]) and makes typed host calls (clock, random, log, model,
//! kb, confirmation). [`export_agent!`] turns the type into a wasm module that speaks the
//! agent ABI v1 (`docs/agent-abi.md`): it defines the exports `runloop_abi_v1`,
//! `runloop_alloc` and `runloop_handle`, and talks to the host through the `runloop`
//! imports. One agent value lives for the life of the instance and sees every invoke.
//!
//! ```
//! use runloop_agent_sdk::{Agent, AgentError, AgentInput, Ctx, export_agent};
//!
//! #[derive(Default)]
//! struct Echo;
//!
//! impl Agent for Echo {
//!     fn handle(&mut self, ctx: &mut Ctx<'_>, input: AgentInput) -> Result<(), AgentError> {
//!         ctx.emit("out", &input.payload)?;
//!         Ok(())
//!     }
//! }
//!
//! export_agent!(Echo);
//! ```
//!
//! Agents are tested natively (no wasm toolchain) with [`testing::TestHost`], which runs
//! the same byte-level encode/decode path as the wasm build.

mod ctx;
mod error;
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod abi;

pub use ctx::{CompleteRequest, Ctx, HostIo, KbEvent};
pub use error::{AgentError, EmitError, HostCallError};
/// Untyped MsgPack values, the type of every payload.
pub use rmpv::Value;
pub use runloop_proto::payloads::{
    AgentInput, AgentOutput, ChatMessage, ClockNowResult, ConfirmResult, HostCall, HostErrorCode,
    HostReply, KbQueryResult, KbWriteEventResult, LogLevel, ModelCompleteResult, ModelEmbedResult,
};

/// The ABI version this SDK implements; the export `runloop_abi_v<N>` marks it.
pub const ABI_VERSION: u32 = 1;

/// An agent: a value that handles one message at a time.
///
/// The instance is built once with [`Default`] on the first invoke and kept for the
/// life of the wasm instance, so it may carry state between messages (the sandbox may
/// also start a fresh instance at any time: state is a cache, never the truth).
pub trait Agent: Default {
    /// Handles one input. Outputs are emitted through `ctx`; an `Err` ends the invoke
    /// with that message (outputs already emitted stay emitted).
    fn handle(&mut self, ctx: &mut Ctx<'_>, input: AgentInput) -> Result<(), AgentError>;
}

/// Decodes a MsgPack payload into a typed value, e.g. the struct an agent expects.
pub fn from_payload<T: serde::de::DeserializeOwned>(payload: &Value) -> Result<T, AgentError> {
    rmpv::ext::from_value(payload.clone())
        .map_err(|e| AgentError::new(format!("decode payload: {e}")))
}

/// Encodes a typed value as a MsgPack payload (named fields, as the ABI wants).
pub fn to_payload<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value, EmitError> {
    let bytes = rmp_serde::to_vec_named(value).map_err(|e| EmitError::Encode(e.to_string()))?;
    rmpv::decode::read_value(&mut bytes.as_slice()).map_err(|e| EmitError::Encode(e.to_string()))
}

/// Exports `$agent` (a type implementing [`Agent`]) as this module's agent.
///
/// Use it once, at the crate root of a `cdylib` crate. On targets other than wasm32 it
/// expands to nothing, so the crate's native tests still build.
#[macro_export]
macro_rules! export_agent {
    ($agent:ty) => {
        #[cfg(target_arch = "wasm32")]
        mod __runloop_agent_exports {
            use super::*;

            ::std::thread_local! {
                static AGENT: ::std::cell::RefCell<::std::option::Option<$agent>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            /// ABI marker: this module speaks the Runloop agent ABI v1.
            #[unsafe(no_mangle)]
            pub extern "C" fn runloop_abi_v1() {}

            /// A buffer of `len` bytes for the host to write the input into; 0 if none.
            #[unsafe(no_mangle)]
            pub extern "C" fn runloop_alloc(len: i32) -> i32 {
                $crate::abi::alloc(len)
            }

            /// Handles the input at `ptr..ptr+len`; 0 on success.
            #[unsafe(no_mangle)]
            pub extern "C" fn runloop_handle(ptr: i32, len: i32) -> i32 {
                AGENT.with(|cell| {
                    let mut slot = cell.borrow_mut();
                    let agent =
                        slot.get_or_insert_with(<$agent as ::std::default::Default>::default);
                    $crate::abi::handle(agent, ptr, len)
                })
            }
        }
    };
}
