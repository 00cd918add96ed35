//! Where limit state lives. A [`Store`] keeps the state of one limit for every key and applies
//! the limit's algorithm to it atomically.
//!
//! - [`memory::MemoryStore`]: the embedded store, the default; nothing else needs to run.
//! - [`redis::RedisStore`] (feature `redis`): state in Redis, shared by every process and
//!   language that links the core.
//! - [`shared::SharedRegion`] (feature `shared`, Unix): state in a memory-mapped region shared
//!   by every process of the machine, lock-free.

pub mod memory;
pub mod multi;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(all(feature = "shared", unix))]
pub mod shared;

use crate::{Decision, Outcome, Result};

/// The state of one limit, for every key, with atomic read-decide-write per hit.
pub trait Store: Send + Sync {
    /// Counts a hit of `cost` on `key` (1 ≤ cost ≤ limit, checked by the caller) if it passes,
    /// and says where the decision came from. A store that can fail (Redis) applies its
    /// limit's failure policy itself: `Ok` with [`crate::Source::FailOpen`], or
    /// [`crate::Error::Store`] (see docs/architecture.md, *Failures*).
    fn hit(&self, key: &str, cost: u64) -> Result<Outcome>;

    /// Gives back `cost` units of `key`'s capacity (1 ≤ cost ≤ limit, checked by the caller),
    /// atomically, and returns what a hit of cost 1 would see right after (as [`Store::peek`]
    /// would, from the same read of the state and clock).
    ///
    /// Never lifts the key above full capacity; a key that is idle (expired, reset, never
    /// seen) is left as it is and no state is created for it. See docs/architecture.md,
    /// *Refunds*, and [`crate::algorithms::Algorithm::refund`] for each algorithm.
    ///
    /// Returning the decision rather than `()` costs nothing (the store holds the state
    /// anyway; on Redis it is the same round trip) and lets a caller that refunds after a
    /// response render the headers the client will see next without a second round trip.
    fn refund(&self, key: &str, cost: u64) -> Result<Outcome>;

    /// What a hit of cost 1 on `key` would see now, without counting it.
    fn peek(&self, key: &str) -> Result<Outcome>;

    /// Forgets `key`: it is back to full capacity.
    fn reset(&self, key: &str) -> Result<()>;

    /// Number of keys currently held (idle keys not yet swept included).
    fn len(&self) -> usize;

    /// True when no key is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every key whose state is back to full capacity; returns how many were dropped.
    fn sweep(&self) -> usize;

    /// The store's name in messages ("memory", "redis", "shared").
    fn name(&self) -> &'static str {
        "custom"
    }

    /// What a hit of `cost` on `key` would decide now, without counting it, for a store that
    /// takes part in a multi-limit hit by checking first and then hitting (the shared store);
    /// `None` for the others.
    fn try_hit(&self, _key: &str, _cost: u64) -> Option<Result<Decision>> {
        None
    }

    /// The store's shard locks, when it can take part in an atomic multi-limit hit in process
    /// (the embedded store); `None` for stores that do it their own way (Redis: one script).
    fn lockable(&self) -> Option<&dyn multi::LockableStore> {
        None
    }

    /// The Redis limit behind this store, when it is one: a multi-limit hit on Redis is one
    /// script on the limits' common `RedisStore` (see [`crate::hit_many`]).
    #[cfg(feature = "redis")]
    fn redis(&self) -> Option<&redis::RedisLimit> {
        None
    }
}
