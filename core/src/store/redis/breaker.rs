//! The circuit breaker: after `threshold` consecutive failures to reach Redis it opens, and
//! hits stop waiting on a dead server (each costs an atomic load and a clock read). Once per
//! `cooldown` one hit is let through as a probe; its success closes the breaker.
//!
//! One log line per state change: a warning when it opens, an info line when it closes.
//! Failed probes are logged at debug level only, so a long outage costs two lines in all.

use log::{debug, info, warn};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;

/// The breaker's state as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Redis is answering: hits go to Redis.
    Closed,
    /// Redis failed `threshold` times in a row: hits fail open or closed at once, except one
    /// probe per cooldown.
    Open,
}

/// What the breaker lets a hit do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Go to Redis as usual.
    Pass,
    /// The breaker is open and this hit is the probe: go to Redis on a fresh connection.
    Probe,
    /// The breaker is open: do not touch Redis.
    Reject,
}

pub(crate) struct Breaker {
    state: AtomicU8,
    failures: AtomicU32,
    /// Nanoseconds since `origin` at which the next probe may go.
    next_probe: AtomicU64,
    opened_at: AtomicU64,
    origin: Instant,
    threshold: u32,
    cooldown: Duration,
    target: String,
    fail_silently: bool,
    /// Limits (by name) whose failure policy is not the store's: the warning says what
    /// happens to each, not only what the store's default is.
    exceptions: Mutex<Vec<String>>,
    last_error: Mutex<String>,
}

impl Breaker {
    pub(crate) fn new(
        threshold: u32,
        cooldown: Duration,
        target: String,
        fail_silently: bool,
    ) -> Self {
        Breaker {
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            next_probe: AtomicU64::new(0),
            opened_at: AtomicU64::new(0),
            origin: Instant::now(),
            threshold: threshold.max(1),
            cooldown,
            target,
            fail_silently,
            exceptions: Mutex::new(Vec::new()),
            last_error: Mutex::new(String::new()),
        }
    }

    fn elapsed(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    pub(crate) fn state(&self) -> BreakerState {
        if self.state.load(Ordering::Acquire) == OPEN {
            BreakerState::Open
        } else {
            BreakerState::Closed
        }
    }

    /// Consecutive failures counted so far (reset by any success).
    pub(crate) fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// True while the breaker is open and no probe is due: new connections are not attempted.
    pub(crate) fn blocks_connect(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
            && self.elapsed() < self.next_probe.load(Ordering::Acquire)
    }

    pub(crate) fn admit(&self) -> Admission {
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Admission::Pass;
        }
        let now = self.elapsed();
        let due = self.next_probe.load(Ordering::Acquire);
        let next = now + self.cooldown.as_nanos() as u64;
        if now >= due
            && self
                .next_probe
                .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            Admission::Probe
        } else {
            Admission::Reject
        }
    }

    pub(crate) fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.state.load(Ordering::Acquire) == OPEN
            && self.state.swap(CLOSED, Ordering::AcqRel) == OPEN
        {
            let down = Duration::from_nanos(
                self.elapsed()
                    .saturating_sub(self.opened_at.load(Ordering::Acquire)),
            );
            info!(
                "flux: {} is reachable again after {:.1} s; the circuit breaker is closed",
                self.target,
                down.as_secs_f64()
            );
        }
    }

    /// Counts a failure to reach Redis. `probe` failures keep the breaker open quietly.
    pub(crate) fn failure(&self, reason: &str, probe: bool) {
        if probe {
            debug!("flux: probe of {} failed: {reason}", self.target);
            *self.last_error.lock() = reason.to_string();
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < self.threshold {
            return;
        }
        *self.last_error.lock() = reason.to_string();
        let now = self.elapsed();
        if self
            .state
            .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.opened_at.store(now, Ordering::Release);
            self.next_probe
                .store(now + self.cooldown.as_nanos() as u64, Ordering::Release);
            warn!(
                "flux: {} failed {failures} times in a row ({reason}); circuit breaker open: \
                 {} without waiting on Redis, probing every {} ms",
                self.target,
                self.policies(),
                self.cooldown.as_millis()
            );
        }
    }

    /// Records that the limit `name` fails open (`fail_open`) or closed, whatever the store's
    /// default is; only limits that differ from it are kept.
    pub(crate) fn note_policy(&self, name: &str, fail_open: bool) {
        let mut exceptions = self.exceptions.lock();
        let listed = exceptions.iter().position(|known| known == name);
        match (fail_open != self.fail_silently, listed) {
            (true, None) => exceptions.push(name.to_string()),
            (false, Some(at)) => {
                exceptions.remove(at);
            }
            _ => {}
        }
    }

    /// What hits do while Redis is unavailable, limit by limit where they differ.
    fn policies(&self) -> String {
        let (default, other) = if self.fail_silently {
            ("hits pass (fail open)", "fail (fail closed)")
        } else {
            ("hits fail (fail closed)", "pass (fail open)")
        };
        let exceptions = self.exceptions.lock();
        if exceptions.is_empty() {
            return default.to_string();
        }
        format!(
            "{default}, except those of {} which {other}",
            exceptions.join(", ")
        )
    }

    /// Why hits are failing while the breaker is open.
    pub(crate) fn open_message(&self) -> String {
        format!(
            "{} unavailable (circuit breaker open after {} consecutive failures; last error: \
             {}); next probe within {} ms",
            self.target,
            self.threshold,
            self.last_error.lock(),
            self.cooldown.as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_lets_one_probe_per_cooldown() {
        let breaker = Breaker::new(3, Duration::from_millis(20), "redis x".into(), true);
        for _ in 0..2 {
            breaker.failure("refused", false);
            assert_eq!(breaker.admit(), Admission::Pass);
        }
        breaker.failure("refused", false);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.admit(), Admission::Reject);
        assert!(breaker.blocks_connect());
        assert!(breaker.open_message().contains("refused"));
        std::thread::sleep(Duration::from_millis(25));
        assert!(!breaker.blocks_connect());
        assert_eq!(breaker.admit(), Admission::Probe);
        assert_eq!(breaker.admit(), Admission::Reject, "one probe at a time");
        breaker.failure("still refused", true);
        assert_eq!(breaker.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(breaker.admit(), Admission::Probe);
        breaker.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.failures(), 0);
        assert_eq!(breaker.admit(), Admission::Pass);
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = Breaker::new(2, Duration::from_secs(1), "redis x".into(), false);
        breaker.failure("timeout", false);
        breaker.success();
        breaker.failure("timeout", false);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
