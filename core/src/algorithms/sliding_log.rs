//! Sliding log: an exact log of the hits of the last T; a hit passes iff the cost logged in
//! (now − T, now] plus c stays within N. O(N) state per key; exact to the nanosecond.

use super::{Algorithm, AlgorithmKind};
use crate::{Decision, Nanos, Quota};
use std::collections::VecDeque;

/// Sliding log over a quota.
#[derive(Debug, Clone, Copy)]
pub struct SlidingLog {
    period: Nanos,
    requests: u64,
}

/// Logged hits, oldest first, as (time, cost) with equal times merged, and their total cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogState {
    /// (time, cost) pairs in time order.
    pub entries: VecDeque<(Nanos, u64)>,
    /// Sum of the costs in `entries`.
    pub total: u64,
}

impl SlidingLog {
    /// True when a hit logged at `time` no longer counts at `now`.
    #[inline]
    fn expired(&self, time: Nanos, now: Nanos) -> bool {
        time + self.period <= now
    }

    /// Number of leading entries that have expired at `now`, and their cost.
    fn expired_prefix(&self, log: &LogState, now: Nanos) -> (usize, u64) {
        let mut count = 0;
        let mut cost = 0;
        for &(time, c) in &log.entries {
            if !self.expired(time, now) {
                break;
            }
            count += 1;
            cost += c;
        }
        (count, cost)
    }

    fn reset_after(&self, log: &LogState, now: Nanos) -> Nanos {
        log.entries
            .back()
            .map_or(0, |&(time, _)| (time + self.period).saturating_sub(now))
    }

    /// Nanoseconds until `needed` units of cost have expired from the live part of the log.
    fn retry_after(&self, log: &LogState, skip: usize, needed: u64, now: Nanos) -> Nanos {
        let mut freed = 0;
        for &(time, c) in log.entries.iter().skip(skip) {
            freed += c;
            if freed >= needed {
                return (time + self.period).saturating_sub(now);
            }
        }
        unreachable!("cost ≤ N is checked by the limiter, so the log holds enough to expire")
    }
}

impl Algorithm for SlidingLog {
    type State = LogState;
    const KIND: AlgorithmKind = AlgorithmKind::SlidingLog;

    fn new(quota: &Quota) -> Self {
        SlidingLog {
            period: quota.period(),
            requests: quota.requests(),
        }
    }

    fn limit(&self) -> u64 {
        self.requests
    }

    fn hit(&self, log: &mut LogState, now: Nanos, cost: u64) -> Decision {
        let (skip, expired_cost) = self.expired_prefix(log, now);
        let live = log.total - expired_cost;
        if live + cost <= self.requests {
            log.entries.drain(..skip);
            log.total = live + cost;
            match log.entries.back_mut() {
                Some((time, c)) if *time == now => *c += cost,
                _ => log.entries.push_back((now, cost)),
            }
            Decision {
                allowed: true,
                limit: self.requests,
                remaining: self.requests - log.total,
                reset_after: self.reset_after(log, now),
                retry_after: 0,
            }
        } else {
            Decision {
                allowed: false,
                limit: self.requests,
                remaining: self.requests - live,
                reset_after: self.reset_after(log, now),
                retry_after: self.retry_after(log, skip, live + cost - self.requests, now),
            }
        }
    }

    /// Removes the `cost` most recent units still in the window (entries of the same time are
    /// merged, so the newest entry may only shrink). The newest because a refund undoes the
    /// hit just taken: removing an older one would instead give back capacity that was about
    /// to come back anyway, and keep the refunded hit blocking for a whole period. Expired
    /// entries are dropped on the way (they count for nothing); a refund of more than the log
    /// holds empties it. A log with nothing live (expired or never seen) is left as it is.
    fn refund(&self, log: &mut LogState, now: Nanos, cost: u64) {
        let (skip, expired_cost) = self.expired_prefix(log, now);
        let live = log.total - expired_cost;
        if live == 0 {
            return;
        }
        log.entries.drain(..skip);
        let mut owed = cost.min(live);
        log.total = live - owed;
        while owed > 0 {
            let newest = log.entries.back_mut().expect("live cost is in the log");
            if newest.1 <= owed {
                owed -= newest.1;
                log.entries.pop_back();
            } else {
                newest.1 -= owed;
                owed = 0;
            }
        }
    }

    fn peek(&self, log: &LogState, now: Nanos) -> Decision {
        let (skip, expired_cost) = self.expired_prefix(log, now);
        let remaining = self.requests - (log.total - expired_cost);
        Decision {
            allowed: remaining > 0,
            limit: self.requests,
            remaining,
            reset_after: self.reset_after(log, now),
            retry_after: if remaining > 0 {
                0
            } else {
                self.retry_after(log, skip, 1, now)
            },
        }
    }

    fn is_idle(&self, log: &LogState, now: Nanos) -> bool {
        log.entries
            .back()
            .is_none_or(|&(time, _)| self.expired(time, now))
    }
}
