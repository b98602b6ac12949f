//! The bounded dedupe cache behind `Duplicate` (validation step 10).
//!
//! One cache serves one (topic, subscriber) pair; it remembers `(trace_id, msg_id)` keys
//! for at most `age_ms_max` milliseconds and at most `entries_max` keys, forgetting the
//! oldest first. A key forgotten early can be delivered twice; that is the price of a
//! bound, and why effects are also keyed downstream.
//!
//! The hasher is a type parameter (SipHash by default): the bus, which checks every frame
//! here, passes a faster seeded one (SipHash was a tenth of its time). Ids come from
//! agents, so whatever hasher is used must stay seeded; the bound keeps any one cache
//! small. (This crate takes no hasher crate of its own: the agents compile it too.)

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

use crate::error::FrameError;
use crate::ids::{MsgId, TraceId};

/// Default number of keys remembered per (topic, subscriber).
pub const DEDUPE_ENTRIES_MAX_DEFAULT: usize = 4096;
/// Default time a key is remembered.
pub const DEDUPE_AGE_MS_MAX_DEFAULT: u64 = 10 * 60 * 1000;

/// Bounds of one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupeLimits {
    pub entries_max: usize,
    pub age_ms_max: u64,
}

impl Default for DedupeLimits {
    fn default() -> Self {
        Self {
            entries_max: DEDUPE_ENTRIES_MAX_DEFAULT,
            age_ms_max: DEDUPE_AGE_MS_MAX_DEFAULT,
        }
    }
}

type Key = (TraceId, MsgId);

/// Keys delivered to one subscriber on one topic.
#[derive(Debug)]
pub struct DedupeCache<S = RandomState> {
    limits: DedupeLimits,
    seen: HashMap<Key, (), S>,
    /// Keys in insertion order with their insertion time, oldest first.
    order: VecDeque<(Key, u64)>,
}

impl DedupeCache {
    pub fn new(limits: DedupeLimits) -> Self {
        Self::with_hasher(limits)
    }
}

impl<S: BuildHasher + Default> DedupeCache<S> {
    /// A cache whose keys are hashed with `S` (seeded by its `Default`).
    pub fn with_hasher(limits: DedupeLimits) -> Self {
        assert!(
            limits.entries_max > 0,
            "a dedupe cache must hold at least one key"
        );
        Self {
            limits,
            seen: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records a delivery at `now_ms`; `Duplicate` if the key is still remembered.
    pub fn check_and_insert(
        &mut self,
        trace_id: TraceId,
        msg_id: MsgId,
        now_ms: u64,
    ) -> Result<(), FrameError> {
        self.expire(now_ms);
        let key = (trace_id, msg_id);
        match self.seen.entry(key) {
            Entry::Occupied(_) => return Err(FrameError::Duplicate { trace_id, msg_id }),
            Entry::Vacant(slot) => {
                slot.insert(());
            }
        }
        self.order.push_back((key, now_ms));
        if self.seen.len() > self.limits.entries_max {
            let (oldest, _) = self
                .order
                .pop_front()
                .expect("a full cache has an oldest key");
            self.seen.remove(&oldest);
        }
        assert_eq!(self.seen.len(), self.order.len());
        Ok(())
    }

    /// Forgets keys older than the age bound. A clock that went backwards keeps keys
    /// longer, never shorter.
    fn expire(&mut self, now_ms: u64) {
        while let Some(&(key, at_ms)) = self.order.front() {
            if now_ms.saturating_sub(at_ms) < self.limits.age_ms_max {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries_max: usize, age_ms_max: u64) -> DedupeCache {
        DedupeCache::new(DedupeLimits {
            entries_max,
            age_ms_max,
        })
    }

    #[test]
    fn a_repeated_key_is_a_duplicate() {
        let mut c = cache(8, 1_000);
        c.check_and_insert(TraceId(1), MsgId(1), 0).unwrap();
        c.check_and_insert(TraceId(1), MsgId(2), 0).unwrap();
        c.check_and_insert(TraceId(2), MsgId(1), 0).unwrap();
        let err = c.check_and_insert(TraceId(1), MsgId(1), 10).unwrap_err();
        assert_eq!(err.name(), "Duplicate");
    }

    #[test]
    fn keys_age_out() {
        let mut c = cache(8, 1_000);
        c.check_and_insert(TraceId(1), MsgId(1), 0).unwrap();
        assert!(c.check_and_insert(TraceId(1), MsgId(1), 999).is_err());
        c.check_and_insert(TraceId(1), MsgId(1), 1_000).unwrap();
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_oldest_key_goes_when_full() {
        let mut c = cache(2, u64::MAX);
        for m in 1..=3 {
            c.check_and_insert(TraceId(1), MsgId(m), 0).unwrap();
        }
        assert_eq!(c.len(), 2);
        c.check_and_insert(TraceId(1), MsgId(1), 0).unwrap();
        assert!(c.check_and_insert(TraceId(1), MsgId(3), 0).is_err());
    }
}
