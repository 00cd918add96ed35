//! Each algorithm's state in the 64 bits that share one 128-bit CAS word with the key's tag.
//!
//! Why 64 bits and not a lock: with the tag and the whole state in one word, every hit is a
//! single CAS, so a process killed mid-hit can leave nothing half-written and no lock held, and
//! a hit never waits for another process (a seqlock or per-slot lock would need dead-owner
//! detection by pid, which pid reuse and pid namespaces make unreliable). Every state below
//! fits 64 bits exactly, with the same decisions as the other stores:
//!
//! - GCRA: the TAT itself.
//! - Token bucket and leaky bucket: `z = last + taken` (resp. `last + level`), the instant the
//!   bucket is full (resp. empty) again. For every hit at or after `last` the memory store's
//!   decision and next state depend on `z` alone (tokens = capacity − max(z − now, 0)), so
//!   decoding `z` as `(taken = z − now, last = now)` replays them exactly and re-encodes to the
//!   same `z`. The one difference: a hit stamped *before* `last` (a clock that stepped back:
//!   another process's clock a little behind) sees the refill undone back to its own time, so
//!   it is never admitted where the memory store would refuse; the next state is the same `z`.
//! - Fixed window: `window << c | count`, `c` the bits of N. The window number is ⌊now/T⌋ and
//!   count ≤ N ≤ T, so both fit for any time before 2262 (2⁶³ ns).
//! - Sliding window: `window << 2c | previous << c | current`. This fits only when N² is
//!   about T in nanoseconds or less (e.g. 32 767 per second, 2 097 151 per hour); larger limits
//!   are refused when the limit is made, with an error naming the store and the algorithm.
//! - Sliding log: refused (an error naming the store and the algorithm). Its state is up to N
//!   timestamps; a bounded log per slot would break the 64-bytes-per-key budget and the
//!   one-CAS hit, and silently capping N would give other decisions than the other stores.

use crate::algorithms::{
    Algorithm, FixedWindow, Gcra, LeakyBucket, LeakyState, SlidingWindow, SlidingWindowState,
    TokenBucket, TokenState, WindowCount,
};
use crate::{Error, Nanos, Quota, Result};

/// An algorithm's state ⇄ one 64-bit word.
pub trait Codec: Send + Sync + 'static {
    /// The algorithm.
    type A: Algorithm;
    /// The codec for `quota` (an error when the quota's state cannot fit 64 bits).
    fn new(quota: &Quota) -> Result<Self>
    where
        Self: Sized;
    /// The algorithm applied.
    fn algorithm(&self) -> &Self::A;
    /// The state that `word` holds, as seen at `now`.
    fn decode(&self, word: u64, now: Nanos) -> <Self::A as Algorithm>::State;
    /// The word for `state`; `None` when it does not fit (a time beyond 2262).
    fn encode(&self, state: &<Self::A as Algorithm>::State) -> Option<u64>;
    /// From when `state` is back at full capacity (an upper bound is fine, never lower).
    fn idle_at(&self, state: &<Self::A as Algorithm>::State) -> Nanos;
    /// The time to decide at: `now`, or the earliest time consistent with `word` when `now` is
    /// before it. A hit's time is read before its CAS, so a hit of another thread or process
    /// may have stored a state from a later instant; the algorithms assume time does not run
    /// backwards for a key (the memory store guarantees it by reading the clock under its
    /// lock), so such a hit is decided as if it came at that later instant.
    fn decide_at(&self, _word: u64, now: Nanos) -> Nanos {
        now
    }
}

/// GCRA: the word is the TAT.
pub struct GcraCodec {
    algorithm: Gcra,
    tolerance: Nanos,
}

impl Codec for GcraCodec {
    type A = Gcra;
    fn new(quota: &Quota) -> Result<Self> {
        Ok(GcraCodec {
            algorithm: Gcra::new(quota),
            tolerance: quota.burst() * quota.emission_interval(),
        })
    }
    fn algorithm(&self) -> &Gcra {
        &self.algorithm
    }
    /// An allowed hit at `t` leaves TAT ≤ t + τ, so the last hit came at TAT − τ or later.
    fn decide_at(&self, tat: u64, now: Nanos) -> Nanos {
        now.max(tat.saturating_sub(self.tolerance))
    }
    fn decode(&self, word: u64, _now: Nanos) -> Nanos {
        word
    }
    fn encode(&self, tat: &Nanos) -> Option<u64> {
        Some(*tat)
    }
    fn idle_at(&self, tat: &Nanos) -> Nanos {
        *tat
    }
}

/// Token bucket: the word is the instant the bucket is full again.
pub struct TokenCodec {
    algorithm: TokenBucket,
    capacity: Nanos,
}

impl Codec for TokenCodec {
    type A = TokenBucket;
    fn new(quota: &Quota) -> Result<Self> {
        Ok(TokenCodec {
            algorithm: TokenBucket::new(quota),
            capacity: quota.burst() * quota.emission_interval(),
        })
    }
    fn algorithm(&self) -> &TokenBucket {
        &self.algorithm
    }
    fn decode(&self, full_at: u64, now: Nanos) -> TokenState {
        TokenState {
            taken: full_at.saturating_sub(now).min(self.capacity),
            last: now,
        }
    }
    fn encode(&self, state: &TokenState) -> Option<u64> {
        state.last.checked_add(state.taken)
    }
    fn idle_at(&self, state: &TokenState) -> Nanos {
        state.last.saturating_add(state.taken)
    }
}

/// Leaky bucket: the word is the instant the bucket is empty again.
pub struct LeakyCodec {
    algorithm: LeakyBucket,
    capacity: Nanos,
}

impl Codec for LeakyCodec {
    type A = LeakyBucket;
    fn new(quota: &Quota) -> Result<Self> {
        Ok(LeakyCodec {
            algorithm: LeakyBucket::new(quota),
            capacity: quota.burst() * quota.emission_interval(),
        })
    }
    fn algorithm(&self) -> &LeakyBucket {
        &self.algorithm
    }
    fn decode(&self, empty_at: u64, now: Nanos) -> LeakyState {
        LeakyState {
            level: empty_at.saturating_sub(now).min(self.capacity),
            last: now,
        }
    }
    fn encode(&self, state: &LeakyState) -> Option<u64> {
        state.last.checked_add(state.level)
    }
    fn idle_at(&self, state: &LeakyState) -> Nanos {
        state.last.saturating_add(state.level)
    }
}

/// Bits needed to hold any value up to `n`.
fn bits(n: u64) -> u32 {
    64 - n.leading_zeros()
}

/// Fixed window: `window << c | count`.
pub struct FixedWindowCodec {
    algorithm: FixedWindow,
    period: Nanos,
    count_bits: u32,
}

impl Codec for FixedWindowCodec {
    type A = FixedWindow;
    fn new(quota: &Quota) -> Result<Self> {
        Ok(FixedWindowCodec {
            algorithm: FixedWindow::new(quota),
            period: quota.period(),
            count_bits: bits(quota.requests()),
        })
    }
    fn algorithm(&self) -> &FixedWindow {
        &self.algorithm
    }
    fn decode(&self, word: u64, _now: Nanos) -> WindowCount {
        WindowCount {
            window: word >> self.count_bits,
            count: word & ((1 << self.count_bits) - 1),
        }
    }
    fn encode(&self, state: &WindowCount) -> Option<u64> {
        (state.window < 1 << (64 - self.count_bits))
            .then(|| state.window << self.count_bits | state.count)
    }
    fn idle_at(&self, state: &WindowCount) -> Nanos {
        if state.count == 0 {
            0
        } else {
            (state.window + 1).saturating_mul(self.period)
        }
    }
}

/// Sliding window: `window << 2c | previous << c | current`.
pub struct SlidingWindowCodec {
    algorithm: SlidingWindow,
    period: Nanos,
    count_bits: u32,
}

impl Codec for SlidingWindowCodec {
    type A = SlidingWindow;
    fn new(quota: &Quota) -> Result<Self> {
        let count_bits = bits(quota.requests());
        // Every window number before 2⁶³ ns must fit the bits the two counts leave.
        let last_window = (i64::MAX as u64) / quota.period();
        if 2 * count_bits >= 64 || bits(last_window) > 64 - 2 * count_bits {
            let period = quota.period();
            let max = (1u64 << ((64 - bits(last_window)) / 2)) - 1;
            return Err(Error::InvalidArgument(format!(
                "the shared store keeps a sliding_window state in 64 bits, which holds at most \
                 {max} requests per window of {period} ns, not {}; use gcra, token_bucket or \
                 fixed_window for this limit, or the memory or Redis store",
                quota.requests()
            )));
        }
        Ok(SlidingWindowCodec {
            algorithm: SlidingWindow::new(quota),
            period: quota.period(),
            count_bits,
        })
    }
    fn algorithm(&self) -> &SlidingWindow {
        &self.algorithm
    }
    fn decode(&self, word: u64, _now: Nanos) -> SlidingWindowState {
        let mask = (1 << self.count_bits) - 1;
        SlidingWindowState {
            window: word >> (2 * self.count_bits),
            previous: (word >> self.count_bits) & mask,
            current: word & mask,
        }
    }
    fn encode(&self, state: &SlidingWindowState) -> Option<u64> {
        let c = self.count_bits;
        (state.window < 1 << (64 - 2 * c))
            .then(|| state.window << (2 * c) | state.previous << c | state.current)
    }
    fn idle_at(&self, state: &SlidingWindowState) -> Nanos {
        let ahead = if state.current > 0 {
            2
        } else if state.previous > 0 {
            1
        } else {
            return 0;
        };
        (state.window + ahead).saturating_mul(self.period)
    }
}
