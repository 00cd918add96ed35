//! Fixed window: a counter per window ⌊now/T⌋ (aligned to the epoch); a hit passes iff
//! count + c ≤ N. The window resets at its end and hits never extend it.

use super::{Algorithm, AlgorithmKind};
use crate::{Decision, Nanos, Quota};

/// Fixed window over a quota.
#[derive(Debug, Clone, Copy)]
pub struct FixedWindow {
    period: Nanos,
    requests: u64,
}

/// The count of window number `window` (= ⌊time/T⌋).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCount {
    /// Window number.
    pub window: u64,
    /// Cost counted in that window.
    pub count: u64,
}

impl FixedWindow {
    /// The current window and its count (a clock that stepped back stays in the newer window).
    #[inline]
    fn current(&self, state: &WindowCount, now: Nanos) -> WindowCount {
        let window = now / self.period;
        if window > state.window {
            WindowCount { window, count: 0 }
        } else {
            *state
        }
    }

    fn until_window_end(&self, window: u64, now: Nanos) -> Nanos {
        ((window + 1) * self.period).saturating_sub(now)
    }
}

impl Algorithm for FixedWindow {
    type State = WindowCount;
    const KIND: AlgorithmKind = AlgorithmKind::FixedWindow;

    fn new(quota: &Quota) -> Self {
        FixedWindow {
            period: quota.period(),
            requests: quota.requests(),
        }
    }

    fn limit(&self) -> u64 {
        self.requests
    }

    #[inline]
    fn hit(&self, state: &mut WindowCount, now: Nanos, cost: u64) -> Decision {
        let current = self.current(state, now);
        let end = self.until_window_end(current.window, now);
        let count = current.count + cost;
        if count <= self.requests {
            *state = WindowCount {
                window: current.window,
                count,
            };
            Decision {
                allowed: true,
                limit: self.requests,
                remaining: self.requests - count,
                reset_after: end,
                retry_after: 0,
            }
        } else {
            Decision {
                allowed: false,
                limit: self.requests,
                remaining: self.requests - current.count,
                reset_after: if current.count == 0 { 0 } else { end },
                retry_after: end,
            }
        }
    }

    /// Decrements the current window's count, not below 0. A state of an earlier window is left
    /// alone: its hits stopped counting when that window ended, so there is nothing to give
    /// back, and lowering the new window's count for them would admit more than N in it.
    fn refund(&self, state: &mut WindowCount, now: Nanos, cost: u64) {
        let current = self.current(state, now);
        if current.count == 0 {
            return;
        }
        *state = WindowCount {
            window: current.window,
            count: current.count.saturating_sub(cost),
        };
    }

    fn peek(&self, state: &WindowCount, now: Nanos) -> Decision {
        let current = self.current(state, now);
        let end = self.until_window_end(current.window, now);
        let remaining = self.requests - current.count;
        Decision {
            allowed: remaining > 0,
            limit: self.requests,
            remaining,
            reset_after: if current.count == 0 { 0 } else { end },
            retry_after: if remaining > 0 { 0 } else { end },
        }
    }

    fn is_idle(&self, state: &WindowCount, now: Nanos) -> bool {
        self.current(state, now).count == 0
    }
}
