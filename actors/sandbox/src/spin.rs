//! Bounded, adaptive spinning before a sleep.
//!
//! On a VM every wake of a sleeping thread is an inter-processor interrupt and a VM exit,
//! ≈ 15–25 µs on the machines Runloop is measured on, while a lone caller's next step is
//! often only tens of microseconds away: the sandbox's answer to the one invoke in it, or
//! the caller's next message right after the last answer. A [`Spin`] looks for that step
//! without sleeping, for at most its budget, and only while doing so pays: a spin that
//! ran out stops further spins of its kind until a wait of that kind ends within the
//! budget again, and none is tried before a short wait was seen. A node's single invoke
//! (nothing follows its answer) is therefore never spun on, and an agent that thinks for
//! milliseconds costs at most one budget now and then.

use std::time::{Duration, Instant};

/// Budget of the driver's look for the sandbox's answer to its one outstanding invoke, µs.
pub const ANSWER_SPIN_US: u64 = 60;
/// Budget of the driver's look for the next job after it answered its last one, µs.
pub const JOB_SPIN_US: u64 = 100;

/// One kind of wait that may be spun on.
#[derive(Debug, Clone, Copy)]
pub struct Spin {
    budget: Duration,
    /// The last wait of this kind ended within the budget. False until one was seen: a
    /// wait that happens once (a run's node gets one message) is never spun on.
    paying: bool,
}

impl Spin {
    pub const fn new(budget_us: u64) -> Self {
        Self {
            budget: Duration::from_micros(budget_us),
            paying: false,
        }
    }

    /// Whether a spin is worth trying now.
    pub fn paying(&self) -> bool {
        self.paying && !self.budget.is_zero()
    }

    /// Calls `ready` until it says yes or the budget is spent; true when it said yes.
    /// A spin that runs out is not tried again until [`Spin::waited`] reports a short wait.
    pub fn run(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        loop {
            if ready() {
                return true;
            }
            if start.elapsed() >= self.budget {
                self.paying = false;
                return false;
            }
            std::hint::spin_loop();
        }
    }

    /// A wait of this kind took `waited`, spun on or not.
    pub fn waited(&mut self, waited: Duration) {
        self.paying = waited <= self.budget;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spin_that_runs_out_stops_until_a_short_wait_is_seen() {
        let mut spin = Spin::new(50);
        assert!(
            !spin.paying(),
            "nothing is spun on before a short wait was seen"
        );
        spin.waited(Duration::from_micros(10));
        assert!(spin.paying());
        let mut calls = 0;
        assert!(spin.run(|| {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3);
        assert!(spin.paying(), "a spin that found its step keeps going");
        let started = Instant::now();
        assert!(!spin.run(|| false));
        assert!(started.elapsed() >= Duration::from_micros(50));
        assert!(!spin.paying(), "a spin that ran out is not tried again");
        spin.waited(Duration::from_millis(5));
        assert!(!spin.paying(), "a long wait keeps it off");
        spin.waited(Duration::from_micros(20));
        assert!(spin.paying(), "a short wait turns it back on");
    }

    #[test]
    fn a_zero_budget_never_spins() {
        let mut spin = Spin::new(0);
        spin.waited(Duration::ZERO);
        assert!(!spin.paying());
    }
}
