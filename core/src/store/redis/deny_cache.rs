//! The local deny cache: a key that Redis has just denied for a cost c with retry_after R is
//! denied locally, without a round trip, for any cost ≥ c until R has passed.
//!
//! It only ever denies, and only what Redis would deny: state in Redis moves towards "allowed"
//! only with time (or a reset), the retry time of every algorithm grows with the cost, and the
//! local deadline is measured from the moment the request was *sent*, which is no later than
//! the moment Redis decided. (A reset made by another process is not seen here: this process
//! may keep denying the key until R, or the horizon below, has passed, never longer.) The retry_after reported to the
//! caller is measured from when the reply *arrived*, so it is never earlier than Redis's.
//!
//! A key is denied locally for at most [`HORIZON_NS`] before Redis is asked again: an operator
//! who lifts a block (`flux clear`, a reset from another process) sees it lifted within that
//! time in every process, while a client hammering a denied key still costs one round trip
//! per second per process at most.
//!
//! Memory is bounded: a fixed number of slots in 64 shards, each shard a small set scanned
//! linearly; a full shard replaces its expired or soonest-expiring entry.

use crate::Decision;
use parking_lot::Mutex;
use std::time::Instant;

const SHARDS: usize = 64;

/// How long a denial is answered locally before Redis is asked again (1 s).
pub(crate) const HORIZON_NS: u64 = 1_000_000_000;

struct Slot {
    hash: u64,
    key: Box<str>,
    cost: u64,
    /// Deny until this (ns since origin), measured from when the request was sent.
    deny_until: u64,
    /// Report retry_after up to this (ns since origin), measured from when the reply arrived.
    report_until: u64,
    reset_until: u64,
    decision: Decision,
}

pub(crate) struct DenyCache {
    shards: Box<[Mutex<Vec<Slot>>]>,
    per_shard: usize,
    seed: ahash::RandomState,
    origin: Instant,
}

impl DenyCache {
    /// A cache of about `capacity` keys; None when `capacity` is 0 (turned off).
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        if capacity == 0 {
            return None;
        }
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Some(DenyCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Vec::with_capacity(per_shard.min(16))))
                .collect(),
            per_shard,
            seed: ahash::RandomState::new(),
            origin: Instant::now(),
        })
    }

    /// Now, in ns since the cache's origin: take it before sending a request.
    pub(crate) fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn locate(&self, key: &str) -> (u64, &Mutex<Vec<Slot>>) {
        let hash = self.seed.hash_one(key);
        (hash, &self.shards[(hash >> 58) as usize % SHARDS])
    }

    /// The denial to return for a hit of `cost` on `key`, if Redis is known to deny it now.
    pub(crate) fn check(&self, key: &str, cost: u64) -> Option<Decision> {
        let (hash, shard) = self.locate(key);
        let now = self.now();
        let shard = shard.lock();
        let slot = shard
            .iter()
            .find(|slot| slot.hash == hash && &*slot.key == key)?;
        if now >= slot.deny_until || cost < slot.cost {
            return None;
        }
        Some(Decision {
            retry_after: slot.report_until.saturating_sub(now).max(1),
            reset_after: slot.reset_until.saturating_sub(now),
            ..slot.decision
        })
    }

    /// Remembers that Redis denied `cost` on `key` with `decision`; `sent` is [`Self::now`]
    /// taken before the request went out.
    pub(crate) fn insert(&self, key: &str, cost: u64, sent: u64, decision: &Decision) {
        if decision.allowed || decision.retry_after == 0 {
            return;
        }
        let arrived = self.now();
        let slot = Slot {
            hash: 0,
            key: Box::from(key),
            cost,
            deny_until: sent + decision.retry_after.min(HORIZON_NS),
            report_until: arrived + decision.retry_after,
            reset_until: arrived + decision.reset_after,
            decision: *decision,
        };
        let (hash, shard) = self.locate(key);
        let slot = Slot { hash, ..slot };
        let mut shard = shard.lock();
        if let Some(existing) = shard.iter_mut().find(|s| s.hash == hash && &*s.key == key) {
            *existing = slot;
            return;
        }
        if shard.len() < self.per_shard {
            shard.push(slot);
            return;
        }
        // Full: replace the entry whose denial ends first (an expired one if any).
        if let Some(victim) = shard.iter_mut().min_by_key(|s| s.deny_until) {
            *victim = slot;
        }
    }

    /// Forgets `key` (after a reset).
    pub(crate) fn remove(&self, key: &str) {
        let (hash, shard) = self.locate(key);
        shard
            .lock()
            .retain(|slot| !(slot.hash == hash && &*slot.key == key));
    }

    /// Entries held (expired ones not yet replaced included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(retry_after: u64) -> Decision {
        Decision {
            allowed: false,
            limit: 10,
            remaining: 0,
            reset_after: retry_after * 2,
            retry_after,
        }
    }

    #[test]
    fn denies_only_costs_at_least_the_denied_one_until_retry_after() {
        let cache = DenyCache::new(128).unwrap();
        let sent = cache.now();
        cache.insert("k", 3, sent, &denied(50_000_000));
        assert!(cache.check("k", 2).is_none(), "a smaller cost may pass");
        let decision = cache.check("k", 3).unwrap();
        assert!(!decision.allowed);
        assert!(decision.retry_after > 0 && decision.retry_after <= 50_000_000);
        assert!(cache.check("k", 5).is_some());
        assert!(cache.check("other", 3).is_none());
        cache.remove("k");
        assert!(cache.check("k", 3).is_none());
    }

    #[test]
    fn expires_with_retry_after() {
        let cache = DenyCache::new(128).unwrap();
        cache.insert("k", 1, cache.now(), &denied(1_000_000));
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(cache.check("k", 1).is_none());
    }

    #[test]
    fn allowed_decisions_are_not_cached() {
        let cache = DenyCache::new(128).unwrap();
        let allowed = Decision {
            allowed: true,
            ..denied(0)
        };
        cache.insert("k", 1, cache.now(), &allowed);
        assert!(cache.check("k", 1).is_none());
    }

    #[test]
    fn memory_is_bounded() {
        let cache = DenyCache::new(256).unwrap();
        for i in 0..10_000 {
            cache.insert(&format!("key-{i}"), 1, cache.now(), &denied(1_000_000_000));
        }
        assert!(cache.len() <= 256, "{}", cache.len());
        // The most recent entry is still there.
        assert!(cache.check("key-9999", 1).is_some());
    }

    #[test]
    fn zero_capacity_is_off() {
        assert!(DenyCache::new(0).is_none());
    }
}
