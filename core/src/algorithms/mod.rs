//! The six algorithms, each a pure state transition in its own file.
//!
//! An algorithm is built once from a [`Quota`] (precomputing what it needs) and then maps
//! `(state, now, cost)` to a [`Decision`], changing the state only when the hit is allowed:
//! denied hits never cost anything. Stores run [`Algorithm::hit`] inside their own atomic
//! update; the Redis store runs the same arithmetic in the Lua script of the same name.
//!
//! [`AlgorithmKind`] is the one name → constructor table shared by every face (Rust, Python, C,
//! flux.toml): a new algorithm is added here and nowhere else.

mod fixed_window;
mod gcra;
mod leaky_bucket;
mod sliding_log;
mod sliding_window;
mod token_bucket;

pub use fixed_window::{FixedWindow, WindowCount};
pub use gcra::Gcra;
pub use leaky_bucket::{LeakyBucket, LeakyState};
pub use sliding_log::{LogState, SlidingLog};
pub use sliding_window::{SlidingWindow, SlidingWindowState};
pub use token_bucket::{TokenBucket, TokenState};

use crate::{Decision, Error, Nanos, Quota, Result};
use std::fmt;
use std::str::FromStr;

/// A rate-limiting algorithm: a pure state transition over its own state type.
pub trait Algorithm: Send + Sync + 'static {
    /// Per-key state. `Default` is the state of a key never seen (full capacity).
    type State: Default + Clone + Send + fmt::Debug + 'static;

    /// The algorithm's kind (for names and dispatch).
    const KIND: AlgorithmKind;

    /// Precomputes what the algorithm needs from `quota`.
    fn new(quota: &Quota) -> Self;

    /// The capacity reported as `Decision::limit`; also the largest cost that can ever pass.
    fn limit(&self) -> u64;

    /// Applies a hit of `cost` (1 ≤ cost ≤ limit, checked by the caller) at `now`.
    /// The state changes only when the hit is allowed.
    fn hit(&self, state: &mut Self::State, now: Nanos, cost: u64) -> Decision;

    /// Gives back `cost` units of capacity (1 ≤ cost ≤ limit, checked by the caller) at `now`:
    /// the undo of a hit that should not have counted (see docs/architecture.md, *Refunds*).
    ///
    /// Never lifts the key above full capacity (a refund of more than was taken stops at
    /// full), and does nothing to a state that is idle at `now` (expired, or never seen): there
    /// is nothing left to give back. Only the state changes; the caller peeks for a decision.
    fn refund(&self, state: &mut Self::State, now: Nanos, cost: u64);

    /// What a hit of cost 1 would see at `now`, without counting it: `remaining` is the
    /// number of hits still allowed, `allowed` whether one more would pass.
    fn peek(&self, state: &Self::State, now: Nanos) -> Decision;

    /// True when `state` is back to full capacity at `now`, so a store may forget it.
    fn is_idle(&self, state: &Self::State, now: Nanos) -> bool;
}

/// The algorithms flux offers, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum AlgorithmKind {
    /// Generic cell rate algorithm: one timestamp per key (the default).
    #[default]
    Gcra = 0,
    /// Token bucket with continuous refill.
    TokenBucket = 1,
    /// Leaky bucket as a meter.
    LeakyBucket = 2,
    /// Fixed window counter aligned to the epoch.
    FixedWindow = 3,
    /// Weighted two-window counter.
    SlidingWindow = 4,
    /// Exact log of timestamps.
    SlidingLog = 5,
}

impl AlgorithmKind {
    /// Every algorithm, in declaration order.
    pub const ALL: [AlgorithmKind; 6] = [
        AlgorithmKind::Gcra,
        AlgorithmKind::TokenBucket,
        AlgorithmKind::LeakyBucket,
        AlgorithmKind::FixedWindow,
        AlgorithmKind::SlidingWindow,
        AlgorithmKind::SlidingLog,
    ];

    /// Every algorithm's name, in declaration order.
    pub const NAMES: [&'static str; 6] = [
        "gcra",
        "token_bucket",
        "leaky_bucket",
        "fixed_window",
        "sliding_window",
        "sliding_log",
    ];

    /// The algorithm's canonical name (as in flux.toml).
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// True for the window algorithms, whose limit is N rather than B.
    pub fn is_window(self) -> bool {
        matches!(
            self,
            AlgorithmKind::FixedWindow | AlgorithmKind::SlidingWindow | AlgorithmKind::SlidingLog
        )
    }

    /// The algorithm with stable number `n` (the C ABI's numbering).
    pub fn from_index(n: u32) -> Option<AlgorithmKind> {
        Self::ALL.get(n as usize).copied()
    }
}

impl FromStr for AlgorithmKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let normalized = name.trim().to_ascii_lowercase().replace('-', "_");
        Self::NAMES
            .iter()
            .position(|candidate| *candidate == normalized)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| Error::UnknownAlgorithm(name.to_string()))
    }
}

impl fmt::Display for AlgorithmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Calls `$body` with the type alias `$alg` bound to the concrete algorithm for `$kind`: the
/// one place where a kind turns into a type.
#[macro_export]
macro_rules! with_algorithm {
    ($kind:expr, $alg:ident => $body:expr) => {{
        use $crate::algorithms::*;
        match $kind {
            AlgorithmKind::Gcra => {
                type $alg = Gcra;
                $body
            }
            AlgorithmKind::TokenBucket => {
                type $alg = TokenBucket;
                $body
            }
            AlgorithmKind::LeakyBucket => {
                type $alg = LeakyBucket;
                $body
            }
            AlgorithmKind::FixedWindow => {
                type $alg = FixedWindow;
                $body
            }
            AlgorithmKind::SlidingWindow => {
                type $alg = SlidingWindow;
                $body
            }
            AlgorithmKind::SlidingLog => {
                type $alg = SlidingLog;
                $body
            }
        }
    }};
}

/// Whole hits of `interval` that fit in `room` nanoseconds.
#[inline]
pub(crate) fn whole(room: Nanos, interval: Nanos) -> u64 {
    room / interval
}
