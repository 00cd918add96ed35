//! Token bucket: capacity B tokens, refilled continuously at N/T tokens per second.
//!
//! Tokens are kept as fixed-point nanoseconds of refill (one token = E ns), so refill is exact
//! and fractional: frequent hits never starve the bucket of the partial token they wait for.

use super::{whole, Algorithm, AlgorithmKind};
use crate::{Decision, Nanos, Quota};

/// Token bucket over a quota.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    interval: Nanos,
    capacity: Nanos,
    burst: u64,
}

/// Tokens taken out of the bucket (in ns of refill) as of `last`; 0 is a full bucket, so the
/// default state is a fresh key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenState {
    /// Capacity minus tokens, in nanoseconds of refill.
    pub taken: Nanos,
    /// When `taken` was last computed.
    pub last: Nanos,
}

impl TokenBucket {
    /// Tokens (in ns of refill) in the bucket at `now`.
    #[inline]
    fn tokens(&self, state: &TokenState, now: Nanos) -> Nanos {
        let refilled = now.saturating_sub(state.last);
        self.capacity - state.taken.saturating_sub(refilled)
    }
}

impl Algorithm for TokenBucket {
    type State = TokenState;
    const KIND: AlgorithmKind = AlgorithmKind::TokenBucket;

    fn new(quota: &Quota) -> Self {
        let interval = quota.emission_interval();
        TokenBucket {
            interval,
            capacity: quota.burst() * interval,
            burst: quota.burst(),
        }
    }

    fn limit(&self) -> u64 {
        self.burst
    }

    #[inline]
    fn hit(&self, state: &mut TokenState, now: Nanos, cost: u64) -> Decision {
        let tokens = self.tokens(state, now);
        let needed = cost * self.interval;
        if needed <= tokens {
            let left = tokens - needed;
            *state = TokenState {
                taken: self.capacity - left,
                last: now.max(state.last),
            };
            Decision {
                allowed: true,
                limit: self.burst,
                remaining: whole(left, self.interval),
                reset_after: self.capacity - left,
                retry_after: 0,
            }
        } else {
            Decision {
                allowed: false,
                limit: self.burst,
                remaining: whole(tokens, self.interval),
                reset_after: self.capacity - tokens,
                retry_after: needed - tokens,
            }
        }
    }

    /// Puts c tokens back, up to the capacity: tokens beyond it would be a burst larger than B.
    /// The state is rolled forward to `now` first (as a hit does), so the refill earned since
    /// `last` is kept and `last` never moves back. A full bucket (expired or never seen) is
    /// left as it is.
    fn refund(&self, state: &mut TokenState, now: Nanos, cost: u64) {
        let tokens = self.tokens(state, now);
        if tokens == self.capacity {
            return;
        }
        let left = (tokens + cost * self.interval).min(self.capacity);
        *state = TokenState {
            taken: self.capacity - left,
            last: now.max(state.last),
        };
    }

    fn peek(&self, state: &TokenState, now: Nanos) -> Decision {
        let tokens = self.tokens(state, now);
        Decision {
            allowed: tokens >= self.interval,
            limit: self.burst,
            remaining: whole(tokens, self.interval),
            reset_after: self.capacity - tokens,
            retry_after: self.interval.saturating_sub(tokens),
        }
    }

    fn is_idle(&self, state: &TokenState, now: Nanos) -> bool {
        self.tokens(state, now) == self.capacity
    }
}
