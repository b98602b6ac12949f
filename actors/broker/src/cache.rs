//! Response cache: BLAKE3 key of (canonical request, provider, target model), TTL and LRU capacity.

use crate::types::{ModelResponse, RequestHash};
use std::collections::{BTreeMap, HashMap};

/// Domain tag for cache keys (distinct from request hashes).
const CACHE_KEY_DOMAIN: &[u8] = b"runloop.broker.cache.v1\0";

/// Cache key: BLAKE3 over the request hash and the length-prefixed provider id and target model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    pub fn new(request: RequestHash, provider: &str, model: &str) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(CACHE_KEY_DOMAIN);
        h.update(&request.0);
        for part in [provider, model] {
            // Length prefixes make ("ab","c") and ("a","bc") different keys.
            h.update(&(part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        Self(*h.finalize().as_bytes())
    }
}

#[derive(Debug)]
struct Entry {
    value: ModelResponse,
    inserted_ms: u64,
    tick: u64,
}

/// A bounded cache; evicts the least recently used entry when full and drops expired entries on read.
#[derive(Debug)]
pub struct ResponseCache {
    ttl_ms: u64,
    capacity: usize,
    entries: HashMap<CacheKey, Entry>,
    /// tick → key, oldest first, for LRU eviction.
    order: BTreeMap<u64, CacheKey>,
    tick: u64,
}

impl ResponseCache {
    pub fn new(ttl_ms: u64, capacity: usize) -> Self {
        Self {
            ttl_ms,
            capacity,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A fresh entry, marked most recently used; an expired one is removed.
    pub fn get(&mut self, key: &CacheKey, now_ms: u64) -> Option<ModelResponse> {
        let entry = self.entries.get_mut(key)?;
        if now_ms.saturating_sub(entry.inserted_ms) >= self.ttl_ms {
            let tick = entry.tick;
            self.entries.remove(key);
            self.order.remove(&tick);
            return None;
        }
        self.tick += 1;
        self.order.remove(&entry.tick);
        entry.tick = self.tick;
        self.order.insert(self.tick, *key);
        Some(entry.value.clone())
    }

    pub fn insert(&mut self, key: CacheKey, value: ModelResponse, now_ms: u64) {
        if self.capacity == 0 {
            return;
        }
        if let Some(old) = self.entries.remove(&key) {
            self.order.remove(&old.tick);
        }
        while self.entries.len() >= self.capacity {
            let (_, oldest) = self.order.pop_first().expect("order tracks every entry");
            self.entries.remove(&oldest);
        }
        self.tick += 1;
        self.order.insert(self.tick, key);
        self.entries.insert(
            key,
            Entry {
                value,
                inserted_ms: now_ms,
                tick: self.tick,
            },
        );
        assert_eq!(
            self.entries.len(),
            self.order.len(),
            "cache index out of step"
        );
    }
}
