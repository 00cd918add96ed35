//! The answer to one hit.

use crate::{Nanos, NANOS_PER_SEC};

/// What a limiter decided for one hit (or what a peek saw).
///
/// Times are nanoseconds relative to the moment of the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// Whether the hit passed (and was counted).
    pub allowed: bool,
    /// The capacity: burst B for the bucket algorithms, requests N for the window algorithms.
    pub limit: u64,
    /// Whole hits of cost 1 that would still pass right now.
    pub remaining: u64,
    /// Nanoseconds until the key is back to full capacity.
    pub reset_after: Nanos,
    /// Nanoseconds until this hit would pass; 0 when it passed.
    pub retry_after: Nanos,
}

impl Decision {
    /// `reset_after` in seconds.
    pub fn reset_after_secs(&self) -> f64 {
        self.reset_after as f64 / NANOS_PER_SEC as f64
    }

    /// `retry_after` in seconds.
    pub fn retry_after_secs(&self) -> f64 {
        self.retry_after as f64 / NANOS_PER_SEC as f64
    }
}
