//! Time as a parameter: the limiter asks a [`Clock`], so tests drive a [`ManualClock`] and never
//! sleep.

use crate::{Nanos, NANOS_PER_SEC};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in nanoseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// The current time, in nanoseconds since the Unix epoch.
    fn now(&self) -> Nanos;
}

/// Wall-clock time that never goes backwards.
///
/// The epoch offset is read once at construction and then advanced by a monotonic clock, so an
/// NTP step or a manual clock change cannot hand a key extra requests, yet timestamps stay on
/// the same epoch timeline as Redis's `TIME`. The monotonic clock is quanta's calibrated TSC
/// reader (with a fallback to the OS clock where the TSC is unusable): it costs a third of
/// `std::time::Instant` per read, and a read happens on every hit.
#[derive(Debug, Clone)]
pub struct SystemClock {
    monotonic: quanta::Clock,
    origin: u64,
    origin_epoch: Nanos,
}

impl SystemClock {
    /// A clock anchored at the current wall-clock time.
    pub fn new() -> Self {
        let monotonic = quanta::Clock::new();
        let origin = monotonic.raw();
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        SystemClock {
            monotonic,
            origin,
            origin_epoch: since_epoch.as_nanos() as Nanos,
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Nanos {
        self.origin_epoch
            + self
                .monotonic
                .delta_as_nanos(self.origin, self.monotonic.raw())
    }
}

/// A clock that moves only when told to: for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `start` nanoseconds since the epoch.
    pub fn new(start: Nanos) -> Self {
        ManualClock {
            now: AtomicU64::new(start),
        }
    }

    /// Moves the clock forward by `nanos`.
    pub fn advance(&self, nanos: Nanos) {
        self.now.fetch_add(nanos, Ordering::SeqCst);
    }

    /// Moves the clock forward by `secs` seconds (fractions allowed).
    pub fn advance_secs(&self, secs: f64) {
        self.advance((secs * NANOS_PER_SEC as f64).round() as Nanos);
    }

    /// Sets the clock to `nanos` since the epoch (may go backwards, to test that too).
    pub fn set(&self, nanos: Nanos) {
        self.now.store(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.now.load(Ordering::SeqCst)
    }
}
