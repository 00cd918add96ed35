//! `flux_decision`: the C form of `flux_core::Decision`, and where it came from.

use flux_core::{Decision, Error, Outcome, Source};

/// Where a decision came from (the C form of the core's `Source`: see `flux_source::of`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum flux_source {
    /// The embedded (in-process) store decided, or a shared-memory region.
    #[default]
    Memory = 0,
    /// Redis decided (one round trip).
    Redis = 1,
    /// Redis denied this key moments ago and would deny it still: the local deny cache
    /// answered without a round trip.
    DenyCache = 2,
    /// Redis failed and the limit fails open: the hit was let through and counted nowhere;
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
    pub(crate) fn new(decision: Decision, source: Source) -> flux_decision {
        flux_decision {
            allowed: decision.allowed,
            limit: decision.limit,
            remaining: decision.remaining,
            reset_after_ns: decision.reset_after,
            retry_after_ns: decision.retry_after,
            source: flux_source::of(source),
        }
    }

    /// The C form of an outcome; a fail-open outcome's error becomes the calling thread's last
    /// error (`flux_last_error` documents it). Inlined into every hit: the error is moved out,
    /// so the common case (no error) drops nothing.
    #[inline(always)]
    pub(crate) fn of(outcome: Outcome) -> flux_decision {
        let Outcome {
            decision,
            source,
            error,
        } = outcome;
        if let Some(error) = error {
            report_fail_open(error);
        }
        flux_decision::new(decision, source)
    }
}

/// Records why a hit was let through unchecked as the thread's last error.
#[cold]
#[inline(never)]
pub(crate) fn report_fail_open(error: Box<Error>) {
    super::error::set_last_error(&format!(
        "redis failed, the hit was let through (fail open): {error}"
    ));
}

impl flux_source {
    /// The C value of the core's source. The numbers are ABI: the shared-memory store, which
    /// came after them, reports `FLUX_SOURCE_MEMORY` (a store of this machine decided) as it
    /// always has.
    #[inline]
    pub(crate) fn of(source: Source) -> flux_source {
        match source {
            Source::Memory | Source::Shared => flux_source::Memory,
            Source::Redis => flux_source::Redis,
            Source::DenyCache => flux_source::DenyCache,
            Source::FailOpen => flux_source::FailOpen,
        }
    }
}
