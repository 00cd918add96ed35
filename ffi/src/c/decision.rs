//! `flux_decision`: the C form of `flux_core::Decision`, and where it came from.

use flux_core::store::redis::Source;
use flux_core::Decision;

/// Where a decision came from.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum flux_source {
    /// The embedded (in-process) store decided.
    #[default]
    Memory = 0,
    /// Redis decided (one round trip).
    Redis = 1,
    /// Redis denied this key moments ago and would deny it still: the local deny cache
    /// answered without a round trip.
    DenyCache = 2,
    /// Redis failed and the store fails open: the hit was let through and counted nowhere;
    /// `flux_last_error()` says what failed.
    FailOpen = 3,
}

/// What a limiter decided for one hit (or what a peek saw).
///
/// Times are integer nanoseconds relative to the moment of the decision (divide by 1e9 for
/// seconds; round `retry_after_ns` up when turning it into a whole-second Retry-After).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct flux_decision {
    /// Whether the hit passed (and was counted). For a peek: whether a hit of cost 1 would.
    pub allowed: bool,
    /// The capacity: burst B for the bucket algorithms, requests N for the window algorithms.
    pub limit: u64,
    /// Whole hits of cost 1 that would still pass right now.
    pub remaining: u64,
    /// Nanoseconds until the key is back to full capacity.
    pub reset_after_ns: u64,
    /// Nanoseconds until this hit would pass; 0 when it passed.
    pub retry_after_ns: u64,
    /// Where the decision came from (always `FLUX_SOURCE_MEMORY` on the embedded store).
    pub source: flux_source,
}

impl flux_decision {
    /// The C form of `decision`, which came from `source`.
    #[inline]
    pub(crate) fn new(decision: Decision, source: flux_source) -> flux_decision {
        flux_decision {
            allowed: decision.allowed,
            limit: decision.limit,
            remaining: decision.remaining,
            reset_after_ns: decision.reset_after,
            retry_after_ns: decision.retry_after,
            source,
        }
    }
}

impl From<Decision> for flux_decision {
    /// A decision of the embedded store.
    #[inline]
    fn from(decision: Decision) -> flux_decision {
        flux_decision::new(decision, flux_source::Memory)
    }
}

impl flux_source {
    /// The C form of a Redis decision's source (the fail-open error goes to the last error).
    pub(crate) fn of(source: &Source) -> flux_source {
        match source {
            Source::Redis => flux_source::Redis,
            Source::DenyCache => flux_source::DenyCache,
            Source::FailOpen(error) => {
                super::error::set_last_error(&format!(
                    "redis failed, the hit was let through (fail open): {error}"
                ));
                flux_source::FailOpen
            }
        }
    }
}
