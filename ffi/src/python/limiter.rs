//! `Limiter`: one rate limit on the embedded store, the base class of `flux.RateLimiter`.

use crate::python::clock::ManualClock;
use crate::python::errors::to_py;
use crate::python::result::RateLimitResult;
use flux_core::{AlgorithmKind, Quota};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::Arc;

/// One rate limit applied to many keys, on the embedded store.
///
/// Thread-safe; the GIL is kept around in-memory hits because releasing it costs more than the
/// hit itself (measured: a hit is ~100 ns, a GIL release/reacquire round ~150 ns).
#[pyclass(module = "flux._flux", subclass, frozen)]
pub struct Limiter {
    inner: Arc<flux_core::Limiter>,
}

/// A whole number ≥ 1 for `what`, with a message naming it otherwise.
fn positive(value: i64, what: &str) -> PyResult<u64> {
    if value < 1 {
        return Err(PyValueError::new_err(format!(
            "invalid quota: {what} must be at least 1, got {value}"
        )));
    }
    Ok(value as u64)
}

#[pymethods]
impl Limiter {
    #[new]
    #[pyo3(signature = (requests, period, *, burst=None, policy="gcra", max_keys=None, clock=None, prefix=""))]
    fn new(
        requests: i64,
        period: f64,
        burst: Option<i64>,
        policy: &str,
        max_keys: Option<i64>,
        clock: Option<PyRef<'_, ManualClock>>,
        prefix: &str,
    ) -> PyResult<Self> {
        let requests = positive(requests, "requests")?;
        let burst = burst.map(|b| positive(b, "burst")).transpose()?;
        let max_keys = max_keys
            .map(|m| positive(m, "max_keys").map(|m| m as usize))
            .transpose()?;
        let quota = Quota::from_secs_f64(requests, period, burst).map_err(to_py)?;
        let kind: AlgorithmKind = policy.parse().map_err(to_py)?;
        let mut builder = Limiter::builder_for(quota, kind, max_keys, prefix);
        if let Some(clock) = clock {
            builder = builder.clock(clock.inner.clone());
        }
        Ok(Limiter {
            inner: Arc::new(builder.build_memory().map_err(to_py)?),
        })
    }

    /// Counts a hit of `cost` on `key` if it passes; a denied hit changes nothing.
    /// `endpoint` is accepted for flux-limiter compatibility and analytics.
    #[pyo3(signature = (key, endpoint=None, cost=1))]
    fn hit(
        &self,
        key: &str,
        endpoint: Option<&Bound<'_, PyAny>>,
        cost: u64,
    ) -> PyResult<RateLimitResult> {
        let _ = endpoint;
        self.inner
            .hit(key, cost)
            .map(RateLimitResult::from_decision)
            .map_err(to_py)
    }

    /// What a hit of cost 1 on `key` would see now, without counting it.
    fn peek(&self, key: &str) -> PyResult<RateLimitResult> {
        self.inner
            .peek(key)
            .map(RateLimitResult::from_decision)
            .map_err(to_py)
    }

    /// Puts `key` back to full capacity.
    fn reset(&self, key: &str) -> PyResult<()> {
        self.inner.reset(key).map_err(to_py)
    }

    /// Forgets every key that is back to full capacity; returns how many were dropped.
    fn sweep(&self) -> usize {
        self.inner.store().sweep()
    }

    /// Number of keys currently held.
    fn __len__(&self) -> usize {
        self.inner.store().len()
    }

    /// Requests N per period.
    #[getter]
    fn requests(&self) -> u64 {
        self.inner.quota().requests()
    }

    /// The period T in seconds.
    #[getter]
    fn period(&self) -> f64 {
        self.inner.quota().period_secs()
    }

    /// The burst capacity B.
    #[getter]
    fn burst(&self) -> u64 {
        self.inner.quota().burst()
    }

    /// The algorithm's name.
    #[getter]
    fn policy(&self) -> &'static str {
        self.inner.algorithm().name()
    }

    /// The capacity reported in results (B for buckets, N for windows).
    #[getter]
    fn limit(&self) -> u64 {
        self.inner.limit()
    }

    /// The prefix naming this limit's keys.
    #[getter]
    fn prefix(&self) -> &str {
        self.inner.prefix()
    }
}

impl Limiter {
    fn builder_for(
        quota: Quota,
        kind: AlgorithmKind,
        max_keys: Option<usize>,
        prefix: &str,
    ) -> flux_core::LimiterBuilder {
        flux_core::Limiter::builder(quota)
            .algorithm(kind)
            .max_keys(max_keys)
            .prefix(prefix)
    }
}

/// Hits several limits at once, atomically: every limit passes and all are consumed, or none
/// is. `items` are `(limiter, key, cost)`; the results come back in order, and the batch passed
/// iff every result is allowed (a limit that would have passed in a denied batch reports
/// `allowed=True` with nothing taken from it).
#[pyfunction]
pub fn hit_many(items: Vec<(PyRef<'_, Limiter>, String, u64)>) -> PyResult<Vec<RateLimitResult>> {
    let batch: Vec<(&flux_core::Limiter, &str, u64)> =
        items.iter().map(|(limiter, key, cost)| (limiter.inner.as_ref(), key.as_str(), *cost)).collect();
    let decisions = flux_core::hit_many(&batch).map_err(to_py)?;
    Ok(decisions.into_iter().map(RateLimitResult::from_decision).collect())
}
