//! GCRA, the generic cell rate algorithm: one timestamp per key.
//!
//! Emission interval E = T/N, tolerance τ = B·E, state TAT (theoretical arrival time).
//! new_tat = max(TAT, now) + c·E; the hit passes iff new_tat − now ≤ τ. Exactly B hits pass
//! back to back from a fresh key, then one every E.

use super::{whole, Algorithm, AlgorithmKind};
use crate::{Decision, Nanos, Quota};

/// GCRA over a quota (precomputed E and τ).
#[derive(Debug, Clone, Copy)]
pub struct Gcra {
    interval: Nanos,
    tolerance: Nanos,
    burst: u64,
}

impl Algorithm for Gcra {
    /// The theoretical arrival time; 0 (far in the past) for a fresh key.
    type State = Nanos;
    const KIND: AlgorithmKind = AlgorithmKind::Gcra;

    fn new(quota: &Quota) -> Self {
        let interval = quota.emission_interval();
        Gcra {
            interval,
            tolerance: quota.burst() * interval,
            burst: quota.burst(),
        }
    }

    fn limit(&self) -> u64 {
        self.burst
    }

    #[inline]
    fn hit(&self, tat: &mut Nanos, now: Nanos, cost: u64) -> Decision {
        let start = (*tat).max(now);
        let new_tat = start + cost * self.interval;
        let ahead = new_tat - now;
        if ahead <= self.tolerance {
            *tat = new_tat;
            Decision {
                allowed: true,
                limit: self.burst,
                remaining: whole(self.tolerance - ahead, self.interval),
                reset_after: ahead,
                retry_after: 0,
            }
        } else {
            Decision {
                allowed: false,
                limit: self.burst,
                remaining: whole(self.tolerance - (start - now), self.interval),
                reset_after: start - now,
                retry_after: ahead - self.tolerance,
            }
        }
    }

    /// Moves TAT back by c·E, but not below `now`. A TAT at `now` already is a full key; one
    /// further back would be credit beyond the burst (B + k hits back to back), which a refund
    /// must never grant. A hit taken from a full key moved TAT from (at most) its own time to
    /// that time + c·E, so its refund lands on `now` at the latest: exactly one more hit of
    /// that cost passes again. An idle key (TAT ≤ now, a never-seen key's 0 included) has
    /// nothing to give back and is left as it is.
    fn refund(&self, tat: &mut Nanos, now: Nanos, cost: u64) {
        if *tat <= now {
            return;
        }
        *tat = tat.saturating_sub(cost * self.interval).max(now);
    }

    fn peek(&self, tat: &Nanos, now: Nanos) -> Decision {
        let ahead = (*tat).max(now) - now;
        let room = self.tolerance - ahead;
        Decision {
            allowed: room >= self.interval,
            limit: self.burst,
            remaining: whole(room, self.interval),
            reset_after: ahead,
            retry_after: self.interval.saturating_sub(room),
        }
    }

    fn is_idle(&self, tat: &Nanos, now: Nanos) -> bool {
        *tat <= now
    }
}
