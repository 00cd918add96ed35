//! The store's counters, for monitoring (`RedisStore::stats`).

use super::breaker::BreakerState;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters and state, for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisStats {
    /// The circuit breaker's state.
    pub breaker: BreakerState,
    /// Consecutive failures to reach Redis (0 while healthy).
    pub consecutive_failures: u32,
    /// Round trips to Redis attempted (a pipeline or a multi-limit hit counts once).
    pub round_trips: u64,
    /// Requests that failed (unreachable, timeout, breaker open, or refused by Redis).
    pub errors: u64,
    /// Hits let through because Redis failed and their limit fails open.
    pub fail_open: u64,
    /// Hits denied by the local deny cache without a round trip.
    pub deny_cache_hits: u64,
}

/// The counters behind [`RedisStats`], bumped from any thread.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) round_trips: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) fail_open: AtomicU64,
    pub(crate) deny_cache_hits: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
