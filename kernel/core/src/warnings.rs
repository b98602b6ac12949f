//! The bundle loader's warnings on stderr: a `tracing` layer the binaries (`rlp`,
//! `runloopd`) install (`crate::otel::kernel_spans::install`) so a person sees, on every
//! load, that an unsigned or untrusted agent ran only because
//! `security.allow_unsigned_agents` is true.
//!
//! Libraries only emit `tracing` events; this layer is the binaries' printer for the one
//! kind of event a person must not miss. Other events pass by untouched.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The `tracing` target whose warnings are printed.
const BUNDLE_TARGET: &str = "runloop_bundle";

/// Prints `<program>: warning: <message>` for each warning of the bundle loader.
#[derive(Debug, Clone, Copy)]
pub struct StderrWarnings {
    program: &'static str,
}

impl StderrWarnings {
    pub fn new(program: &'static str) -> Self {
        Self { program }
    }
}

struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for StderrWarnings {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() != Level::WARN || !meta.target().starts_with(BUNDLE_TARGET) {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        eprintln!("{}: warning: {}", self.program, message.0);
    }
}
