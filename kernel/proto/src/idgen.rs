//! Injected id generation: trace ids, run ids and message ids come from one [`Ids`]
//! handed in at boot, never from a `static` counter or the wall clock.
//!
//! [`SeededIds`] is deterministic: the same seed gives the same ids in the same order, so
//! a seeded kernel reproduces a run's ids. The kernel seeds it from the operating system
//! unless told otherwise; tests and replay pass a seed.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::{MsgId, MsgIdGen, TraceId};

/// Identifies one run of an opening (or the kernel's standalone agents, [`RunId::STANDALONE`]).
/// Distinct from the opening's name: the same opening run twice has two run ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub u64);

impl RunId {
    /// The run every agent started outside an opening (`rlp agent start`) belongs to.
    pub const STANDALONE: RunId = RunId(0);

    pub fn is_standalone(self) -> bool {
        self == Self::STANDALONE
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_standalone() {
            f.write_str("agents")
        } else {
            write!(f, "r{:016x}", self.0)
        }
    }
}

/// A source of 128-bit ids.
pub trait IdSource: Send + Sync + fmt::Debug {
    /// A fresh id; never repeats within one source's life.
    fn next_u128(&self) -> u128;
}

/// Deterministic ids: SplitMix64 over a seed and a counter (unique per counter value,
/// well mixed, the same sequence for the same seed).
#[derive(Debug)]
pub struct SeededIds {
    seed: u64,
    counter: AtomicU64,
}

impl SeededIds {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: AtomicU64::new(0),
        }
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl IdSource for SeededIds {
    fn next_u128(&self) -> u128 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        assert!(n != u64::MAX, "id space of one source exhausted");
        // The high half is a bijection of the counter (unique); the low half mixes the
        // seed in again so two seeds share no id.
        let high = splitmix64(self.seed ^ splitmix64(n));
        let low = splitmix64(n ^ self.seed.rotate_left(32));
        (u128::from(high) << 64) | u128::from(low)
    }
}

/// The kernel's id generator: trace ids and run ids from one [`IdSource`], message ids
/// monotonic from one per-kernel counter (the kernel is one publisher). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ids {
    source: Arc<dyn IdSource>,
    msgs: Arc<MsgIdGen>,
}

impl Ids {
    pub fn new(source: Arc<dyn IdSource>) -> Self {
        Self {
            source,
            msgs: Arc::new(MsgIdGen::default()),
        }
    }

    /// Deterministic ids from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self::new(Arc::new(SeededIds::new(seed)))
    }

    /// A fresh trace id (never zero: zero means "no trace").
    pub fn trace_id(&self) -> TraceId {
        loop {
            let id = self.source.next_u128();
            if id != 0 {
                return TraceId(id);
            }
        }
    }

    /// A fresh run id (never [`RunId::STANDALONE`]).
    pub fn run_id(&self) -> RunId {
        loop {
            let id = self.source.next_u128() as u64;
            if id != 0 {
                return RunId(id);
            }
        }
    }

    /// The next message id of this kernel.
    pub fn msg_id(&self) -> MsgId {
        self.msgs.next_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_reproduces_its_ids_and_two_seeds_differ() {
        let (a, b, c) = (Ids::seeded(7), Ids::seeded(7), Ids::seeded(8));
        let take = |ids: &Ids| (0..100).map(|_| ids.trace_id()).collect::<Vec<_>>();
        let (ta, tb, tc) = (take(&a), take(&b), take(&c));
        assert_eq!(ta, tb);
        assert!(ta.iter().all(|t| !tc.contains(t)));
        let mut sorted = ta.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 100, "no repeats");
        assert_eq!(a.msg_id(), MsgId(1));
        assert_eq!(a.msg_id(), MsgId(2));
        assert_ne!(a.run_id(), RunId::STANDALONE);
    }

    #[test]
    fn run_ids_print_apart_from_the_standalone_run() {
        assert_eq!(RunId::STANDALONE.to_string(), "agents");
        assert_eq!(RunId(0xab).to_string(), "r00000000000000ab");
    }
}
