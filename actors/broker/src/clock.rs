//! Injected time for the broker: the one [`Clock`] of `runloop-proto` (wall clock for
//! budgets per day, cache TTL and latency), and [`Timer`], a clock one can also wait on
//! (retry backoff, the local server's restart backoff).
//!
//! Production uses [`KernelTimer`] (the kernel's injected clock, with tokio's timer for
//! the waits) or [`SystemClock`]; tests use [`ManualClock`], whose waits return at once and
//! move its time forward, so no test sleeps.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use runloop_proto::{Clock, SystemClock};

/// A boxed sleep future, so the trait stays object safe.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A [`Clock`] that can also wait.
pub trait Timer: Clock {
    /// Waits `ms` milliseconds.
    fn sleep(&self, ms: u64) -> Sleep;
}

fn tokio_sleep(ms: u64) -> Sleep {
    Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
}

impl Timer for SystemClock {
    fn sleep(&self, ms: u64) -> Sleep {
        tokio_sleep(ms)
    }
}

/// The kernel's injected clock for reading time, tokio's timer for waiting.
#[derive(Debug, Clone)]
pub struct KernelTimer(pub Arc<dyn Clock>);

impl Clock for KernelTimer {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
}

impl Timer for KernelTimer {
    fn sleep(&self, ms: u64) -> Sleep {
        tokio_sleep(ms)
    }
}

/// A clock that moves only when told; `sleep` advances it at once and logs the duration.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    inner: Arc<Mutex<ManualState>>,
}

#[derive(Debug, Default)]
struct ManualState {
    now_ms: u64,
    slept_ms: Vec<u64>,
}

/// Most sleeps a [`ManualClock`] remembers.
const MANUAL_SLEEPS_MAX: usize = 1024;

impl ManualClock {
    pub fn new(now_ms: u64) -> Self {
        let clock = Self::default();
        clock.set(now_ms);
        clock
    }

    pub fn set(&self, now_ms: u64) {
        self.inner.lock().expect("clock lock").now_ms = now_ms;
    }

    pub fn advance(&self, ms: u64) {
        let mut state = self.inner.lock().expect("clock lock");
        state.now_ms = state.now_ms.saturating_add(ms);
    }

    /// Every sleep asked for so far, in order.
    pub fn slept_ms(&self) -> Vec<u64> {
        self.inner.lock().expect("clock lock").slept_ms.clone()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.inner.lock().expect("clock lock").now_ms
    }
}

impl Timer for ManualClock {
    fn sleep(&self, ms: u64) -> Sleep {
        let mut state = self.inner.lock().expect("clock lock");
        state.now_ms = state.now_ms.saturating_add(ms);
        if state.slept_ms.len() < MANUAL_SLEEPS_MAX {
            state.slept_ms.push(ms);
        }
        Box::pin(std::future::ready(()))
    }
}
