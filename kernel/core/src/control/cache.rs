//! The idempotency cache: answers remembered per (uid, request id), and the claims that
//! make a request id run once even when duplicates arrive at the same time.
//!
//! A request id is claimed (entry `Running`) before its command runs. A duplicate that
//! finds the claim waits on it and gets the first one's answer; a duplicate that comes
//! later finds the answer (`Done`). A claim whose runner is dropped before finishing is
//! withdrawn, and its waiters claim again.

use std::collections::{HashMap, VecDeque};

use runloop_proto::payloads::ControlReply;
use tokio::sync::watch;

/// Answers remembered for idempotency, per uid.
pub const REPLY_CACHE_ENTRIES_MAX: usize = 1_024;

type Key = (u32, String);

#[derive(Debug)]
enum Entry {
    /// Claimed: the command is running; its answer arrives on the channel.
    Running(watch::Receiver<Option<ControlReply>>),
    Done(Box<ControlReply>),
}

/// What a caller found for its request id.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The answer of an earlier request with this id.
    Answered(Box<ControlReply>),
    /// Another connection runs this id now: wait for its answer.
    Wait(watch::Receiver<Option<ControlReply>>),
    /// The caller claimed the id and must run the command, then [`ReplyCache::finish`].
    Claimed(watch::Sender<Option<ControlReply>>),
}

/// Answers and claims, oldest answers forgotten first, [`REPLY_CACHE_ENTRIES_MAX`] per uid.
#[derive(Debug, Default)]
pub(crate) struct ReplyCache {
    entries: HashMap<Key, Entry>,
    order: VecDeque<Key>,
    per_uid: HashMap<u32, usize>,
}

impl ReplyCache {
    /// The answer, the claim to wait on, or a new claim for the caller.
    pub(crate) fn lookup(&mut self, uid: u32, id: &str) -> Lookup {
        let key = (uid, id.to_owned());
        match self.entries.get(&key) {
            Some(Entry::Done(reply)) => Lookup::Answered(reply.clone()),
            Some(Entry::Running(rx)) => Lookup::Wait(rx.clone()),
            None => {
                let (tx, rx) = watch::channel(None);
                self.entries.insert(key.clone(), Entry::Running(rx));
                self.order.push_back(key);
                *self.per_uid.entry(uid).or_default() += 1;
                self.evict(uid);
                Lookup::Claimed(tx)
            }
        }
    }

    /// Stores the answer of a claimed id and wakes its waiters.
    pub(crate) fn finish(
        &mut self,
        uid: u32,
        claim: watch::Sender<Option<ControlReply>>,
        reply: ControlReply,
    ) {
        let key = (uid, reply.request_id.clone());
        let claimed = matches!(self.entries.get(&key), Some(Entry::Running(_)));
        assert!(claimed, "only a claimed id is finished");
        self.entries
            .insert(key, Entry::Done(Box::new(reply.clone())));
        // Waiters hold receivers; nobody listening is fine.
        let _ = claim.send(Some(reply));
    }

    /// Withdraws a claim whose command did not finish (its runner was dropped).
    pub(crate) fn withdraw(&mut self, uid: u32, id: &str) {
        let key = (uid, id.to_owned());
        if matches!(self.entries.get(&key), Some(Entry::Running(_))) {
            self.remove(&key);
        }
    }

    fn remove(&mut self, key: &Key) {
        self.entries.remove(key);
        if let Some(index) = self.order.iter().position(|k| k == key) {
            self.order.remove(index);
        }
        let count = self.per_uid.get_mut(&key.0).expect("counted on insert");
        *count -= 1;
        if *count == 0 {
            self.per_uid.remove(&key.0);
        }
    }

    /// Forgets `uid`'s oldest answers past the bound (running claims are never evicted;
    /// they are bounded by the connections a uid may hold).
    fn evict(&mut self, uid: u32) {
        while self.per_uid.get(&uid).copied().unwrap_or(0) > REPLY_CACHE_ENTRIES_MAX {
            let oldest = self
                .order
                .iter()
                .find(|k| k.0 == uid && matches!(self.entries.get(*k), Some(Entry::Done(_))));
            let Some(oldest) = oldest.cloned() else {
                return;
            };
            self.remove(&oldest);
        }
    }

    /// Entries held for `uid` (answers and claims).
    #[cfg(test)]
    fn len(&self, uid: u32) -> usize {
        self.per_uid.get(&uid).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runloop_proto::payloads::ControlOutcome;

    fn reply(id: &str) -> ControlReply {
        ControlReply {
            request_id: id.into(),
            outcome: ControlOutcome::AgentStopped { agent: id.into() },
        }
    }

    #[test]
    fn a_claim_is_seen_by_duplicates_then_answered() {
        let mut cache = ReplyCache::default();
        let Lookup::Claimed(claim) = cache.lookup(1, "a") else {
            panic!("first lookup claims")
        };
        let Lookup::Wait(rx) = cache.lookup(1, "a") else {
            panic!("a duplicate waits")
        };
        assert!(
            matches!(cache.lookup(2, "a"), Lookup::Claimed(_)),
            "per uid"
        );
        cache.finish(1, claim, reply("a"));
        assert_eq!(rx.borrow().clone(), Some(reply("a")));
        assert!(matches!(cache.lookup(1, "a"), Lookup::Answered(r) if *r == reply("a")));
    }

    #[test]
    fn a_withdrawn_claim_can_be_claimed_again_and_answers_are_bounded() {
        let mut cache = ReplyCache::default();
        let Lookup::Claimed(claim) = cache.lookup(1, "a") else {
            panic!()
        };
        drop(claim);
        cache.withdraw(1, "a");
        assert_eq!(cache.len(1), 0);
        for i in 0..REPLY_CACHE_ENTRIES_MAX + 10 {
            let id = format!("r{i}");
            let Lookup::Claimed(claim) = cache.lookup(1, &id) else {
                panic!()
            };
            cache.finish(1, claim, reply(&id));
        }
        assert_eq!(cache.len(1), REPLY_CACHE_ENTRIES_MAX);
        assert!(
            matches!(cache.lookup(1, "r0"), Lookup::Claimed(_)),
            "oldest forgotten"
        );
    }
}
