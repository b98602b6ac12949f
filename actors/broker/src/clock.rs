//! Injected time: wall clock for budgets per day and cache TTL, and sleeping for retry backoff.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A boxed sleep future, so the trait stays object safe.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Source of time. Production uses [`SystemClock`]; tests use [`ManualClock`] and never sleep.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Waits `ms` milliseconds (retry backoff).
    fn sleep(&self, ms: u64) -> Sleep;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock before 1970 is a broken machine, not bad input.
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("system clock after 1970");
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    fn sleep(&self, ms: u64) -> Sleep {
        Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
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

    fn sleep(&self, ms: u64) -> Sleep {
        let mut state = self.inner.lock().expect("clock lock");
        state.now_ms = state.now_ms.saturating_add(ms);
        if state.slept_ms.len() < MANUAL_SLEEPS_MAX {
            state.slept_ms.push(ms);
        }
        Box::pin(std::future::ready(()))
    }
}
