//! A validated quota: `requests` per `period`, with a `burst` capacity.

use crate::{Error, Nanos, Result, NANOS_PER_SEC};

/// The longest period accepted: one (leap) year. Longer periods are almost always a unit
/// mistake, and the bound keeps every product of the arithmetic far from overflow.
pub const MAX_PERIOD: Nanos = 366 * 24 * 3600 * NANOS_PER_SEC;

/// `requests` N per `period` T, with capacity `burst` B (default N).
///
/// Validated at construction: N ≥ 1, 0 < T ≤ one year, B ≥ 1, and the emission interval
/// T/N at least one nanosecond. Any size from 1 per day to a billion per second fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    requests: u64,
    period: Nanos,
    burst: u64,
    emission_interval: Nanos,
}

impl Quota {
    /// A quota of `requests` per `period` nanoseconds with capacity `burst` (None: `requests`).
    pub fn new(requests: u64, period: Nanos, burst: Option<u64>) -> Result<Quota> {
        let invalid = |field, reason: String| Err(Error::InvalidQuota { field, reason });
        if requests == 0 {
            return invalid("requests", "must be at least 1, got 0".into());
        }
        if period == 0 {
            return invalid("period", "must be greater than 0".into());
        }
        if period > MAX_PERIOD {
            return invalid(
                "period",
                format!("must be at most one year, got {period} ns"),
            );
        }
        let burst = burst.unwrap_or(requests);
        if burst == 0 {
            return invalid("burst", "must be at least 1, got 0".into());
        }
        if requests > period {
            return invalid(
                "requests",
                format!("{requests} per {period} ns is finer than one request per nanosecond"),
            );
        }
        // Rounded up so that the limiter can never admit more than N in T.
        let emission_interval = period.div_ceil(requests);
        // burst·E bounds every state value; keep it far from u64::MAX so `now + tau` never wraps.
        match burst.checked_mul(emission_interval) {
            Some(tau) if tau <= MAX_PERIOD.saturating_mul(1_000) => {}
            _ => {
                return invalid(
                    "burst",
                    format!("{burst} is too large for a rate of {requests} per {period} ns"),
                )
            }
        }
        Ok(Quota {
            requests,
            period,
            burst,
            emission_interval,
        })
    }

    /// A quota of `requests` per `period_secs` seconds (fractions allowed).
    pub fn from_secs_f64(requests: u64, period_secs: f64, burst: Option<u64>) -> Result<Quota> {
        if !period_secs.is_finite() || period_secs <= 0.0 {
            return Err(Error::InvalidQuota {
                field: "period",
                reason: format!(
                    "must be a finite number of seconds greater than 0, got {period_secs}"
                ),
            });
        }
        let nanos = (period_secs * NANOS_PER_SEC as f64).round();
        if nanos > MAX_PERIOD as f64 {
            return Err(Error::InvalidQuota {
                field: "period",
                reason: format!("must be at most one year (31622400 s), got {period_secs} s"),
            });
        }
        Quota::new(requests, (nanos as Nanos).max(1), burst)
    }

    /// N: requests per period.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// T: the period in nanoseconds.
    pub fn period(&self) -> Nanos {
        self.period
    }

    /// B: the capacity (how many hits pass at once from a fresh key).
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// E = ⌈T/N⌉: nanoseconds between two hits at the sustained rate.
    pub fn emission_interval(&self) -> Nanos {
        self.emission_interval
    }

    /// The period in seconds.
    pub fn period_secs(&self) -> f64 {
        self.period as f64 / NANOS_PER_SEC as f64
    }

    /// The name of an unnamed limit of this quota in a shared store: `3/60s`, or
    /// `3/60s;burst=10` when the burst differs. Two unnamed limits share their state exactly
    /// when their quotas (and algorithms, which the key carries too) are equal; a login limit
    /// of 3 per minute and an API limit of 1000 per minute never meet on one key.
    pub fn name(&self) -> String {
        let mut name = format!("{}/{}s", self.requests, self.period_secs());
        if self.burst != self.requests {
            name.push_str(&format!(";burst={}", self.burst));
        }
        name
    }
}
