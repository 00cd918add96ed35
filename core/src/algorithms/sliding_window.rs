//! Sliding window (Cloudflare style): the previous window's count weighted by how much of it
//! still overlaps the sliding period, plus the current window's count. O(1) state.
//!
//! With el = now − start of the current window, the estimate is
//! prev·(T − el)/T + curr, and a hit passes iff estimate + c ≤ N. All arithmetic is done
//! scaled by T in 128-bit integers, so there is no rounding.

use super::{Algorithm, AlgorithmKind};
use crate::{Decision, Nanos, Quota};

/// Sliding window over a quota.
#[derive(Debug, Clone, Copy)]
pub struct SlidingWindow {
    period: Nanos,
    requests: u64,
}

/// Counts of window `window` (= ⌊time/T⌋) and of the one before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlidingWindowState {
    /// Current window number.
    pub window: u64,
    /// Cost counted in the previous window.
    pub previous: u64,
    /// Cost counted in the current window.
    pub current: u64,
}

/// The state rolled forward to `now`, with the time elapsed in the current window.
struct View {
    previous: u64,
    current: u64,
    elapsed: Nanos,
    window: u64,
}

impl SlidingWindow {
    fn view(&self, state: &SlidingWindowState, now: Nanos) -> View {
        let window = now / self.period;
        let (previous, current) = match window.checked_sub(state.window) {
            Some(0) => (state.previous, state.current),
            Some(1) => (state.current, 0),
            Some(_) => (0, 0),
            // The clock stepped back into an older window: stay at the start of the newer one.
            None => {
                return View {
                    previous: state.previous,
                    current: state.current,
                    elapsed: 0,
                    window: state.window,
                }
            }
        };
        View {
            previous,
            current,
            elapsed: now - window * self.period,
            window,
        }
    }

    /// The estimate scaled by T: prev·(T − el) + curr·T.
    fn used(&self, v: &View) -> u128 {
        let t = self.period as u128;
        v.previous as u128 * (t - v.elapsed as u128) + v.current as u128 * t
    }

    /// Whole hits still allowed given `used` (scaled by T).
    fn remaining(&self, used: u128) -> u64 {
        let capacity = self.requests as u128 * self.period as u128;
        (capacity.saturating_sub(used) / self.period as u128) as u64
    }

    /// Nanoseconds until a hit of `cost` would pass, for a denied hit.
    fn retry_after(&self, v: &View, cost: u64) -> Nanos {
        let t = self.period as u128;
        // Smallest elapsed time e in a window with `older` weighted and `newer` counted such that
        // older·(T − e) + (newer + cost)·T ≤ N·T.
        let earliest = |older: u64, newer: u64| -> Option<u128> {
            let room = (self.requests as i128) - (newer as i128) - (cost as i128);
            if room < 0 {
                return None;
            }
            if older == 0 {
                return Some(0);
            }
            let allowed_weight = (room as u128 * t) / older as u128;
            Some(t.saturating_sub(allowed_weight))
        };
        if let Some(e) = earliest(v.previous, v.current) {
            return (e.saturating_sub(v.elapsed as u128)) as Nanos;
        }
        // Not in this window: in the next one, this window's count becomes the weighted one.
        let to_next = self.period - v.elapsed;
        let e = earliest(v.current, 0).expect("cost ≤ N is checked by the limiter");
        to_next + e as Nanos
    }

    fn reset_after(&self, v: &View) -> Nanos {
        if v.current > 0 {
            2 * self.period - v.elapsed
        } else if v.previous > 0 {
            self.period - v.elapsed
        } else {
            0
        }
    }
}

impl Algorithm for SlidingWindow {
    type State = SlidingWindowState;
    const KIND: AlgorithmKind = AlgorithmKind::SlidingWindow;

    fn new(quota: &Quota) -> Self {
        SlidingWindow {
            period: quota.period(),
            requests: quota.requests(),
        }
    }

    fn limit(&self) -> u64 {
        self.requests
    }

    fn hit(&self, state: &mut SlidingWindowState, now: Nanos, cost: u64) -> Decision {
        let mut v = self.view(state, now);
        let capacity = self.requests as u128 * self.period as u128;
        let after = self.used(&v) + cost as u128 * self.period as u128;
        if after <= capacity {
            v.current += cost;
            *state = SlidingWindowState {
                window: v.window,
                previous: v.previous,
                current: v.current,
            };
            Decision {
                allowed: true,
                limit: self.requests,
                remaining: self.remaining(after),
                reset_after: self.reset_after(&v),
                retry_after: 0,
            }
        } else {
            Decision {
                allowed: false,
                limit: self.requests,
                remaining: self.remaining(self.used(&v)),
                reset_after: self.reset_after(&v),
                retry_after: self.retry_after(&v, cost),
            }
        }
    }

    /// Decrements the current window's count, not below 0, then takes what is left of `cost`
    /// from the previous window's count, not below 0.
    ///
    /// The current window first: a refund undoes a hit taken moments ago, which is counted
    /// there, and a unit taken from it gives back exactly one unit of the estimate. When the
    /// window rolled over between the hit and its refund, the hit now sits in `previous`,
    /// where it counts weighted by (T − el)/T; taking it from there gives back exactly that
    /// weight, what the hit still costs, and never more. Rolled out of both windows, a hit
    /// costs nothing any more and nothing is given back. A key with nothing counted (expired
    /// or never seen) is left as it is.
    fn refund(&self, state: &mut SlidingWindowState, now: Nanos, cost: u64) {
        let v = self.view(state, now);
        if v.previous == 0 && v.current == 0 {
            return;
        }
        let from_current = cost.min(v.current);
        let from_previous = (cost - from_current).min(v.previous);
        *state = SlidingWindowState {
            window: v.window,
            previous: v.previous - from_previous,
            current: v.current - from_current,
        };
    }

    fn peek(&self, state: &SlidingWindowState, now: Nanos) -> Decision {
        let v = self.view(state, now);
        let remaining = self.remaining(self.used(&v));
        Decision {
            allowed: remaining > 0,
            limit: self.requests,
            remaining,
            reset_after: self.reset_after(&v),
            retry_after: if remaining > 0 {
                0
            } else {
                self.retry_after(&v, 1)
            },
        }
    }

    fn is_idle(&self, state: &SlidingWindowState, now: Nanos) -> bool {
        let v = self.view(state, now);
        v.previous == 0 && v.current == 0
    }
}
