//! Leaky bucket as a meter: a bucket of capacity B that leaks N/T per second; a hit of cost c
//! pours c in and passes iff the level stays within B.
//!
//! The level is kept in nanoseconds of leak (one hit = E ns), so leaking is exact. As a meter
//! this admits the same traffic as GCRA; it keeps (level, last) instead of one timestamp.

use super::{whole, Algorithm, AlgorithmKind};
use crate::{Decision, Nanos, Quota};

/// Leaky bucket (meter) over a quota.
#[derive(Debug, Clone, Copy)]
pub struct LeakyBucket {
    interval: Nanos,
    capacity: Nanos,
    burst: u64,
}

/// The bucket's level (in ns of leak) as of `last`; the default is an empty bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeakyState {
    /// Water in the bucket, in nanoseconds of leak.
    pub level: Nanos,
    /// When `level` was last computed.
    pub last: Nanos,
}

impl LeakyBucket {
    /// The level at `now`, after leaking since `last`.
    #[inline]
    fn level(&self, state: &LeakyState, now: Nanos) -> Nanos {
        state.level.saturating_sub(now.saturating_sub(state.last))
    }
}

impl Algorithm for LeakyBucket {
    type State = LeakyState;
    const KIND: AlgorithmKind = AlgorithmKind::LeakyBucket;

    fn new(quota: &Quota) -> Self {
        let interval = quota.emission_interval();
        LeakyBucket {
            interval,
            capacity: quota.burst() * interval,
            burst: quota.burst(),
        }
    }

    fn limit(&self) -> u64 {
        self.burst
    }

    #[inline]
    fn hit(&self, state: &mut LeakyState, now: Nanos, cost: u64) -> Decision {
        let level = self.level(state, now);
        let poured = level + cost * self.interval;
        if poured <= self.capacity {
            *state = LeakyState {
                level: poured,
                last: now.max(state.last),
            };
            Decision {
                allowed: true,
                limit: self.burst,
                remaining: whole(self.capacity - poured, self.interval),
                reset_after: poured,
                retry_after: 0,
            }
        } else {
            Decision {
                allowed: false,
                limit: self.burst,
                remaining: whole(self.capacity - level, self.interval),
                reset_after: level,
                retry_after: poured - self.capacity,
            }
        }
    }

    /// Takes c·E back out of the bucket, not below empty: a negative level would be credit
    /// beyond the capacity. The level is leaked to `now` first (as a hit does), so `last`
    /// never moves back. An empty bucket (expired or never seen) is left as it is.
    fn refund(&self, state: &mut LeakyState, now: Nanos, cost: u64) {
        let level = self.level(state, now);
        if level == 0 {
            return;
        }
        *state = LeakyState {
            level: level.saturating_sub(cost * self.interval),
            last: now.max(state.last),
        };
    }

    fn peek(&self, state: &LeakyState, now: Nanos) -> Decision {
        let level = self.level(state, now);
        let room = self.capacity - level;
        Decision {
            allowed: room >= self.interval,
            limit: self.burst,
            remaining: whole(room, self.interval),
            reset_after: level,
            retry_after: self.interval.saturating_sub(room),
        }
    }

    fn is_idle(&self, state: &LeakyState, now: Nanos) -> bool {
        self.level(state, now) == 0
    }
}
