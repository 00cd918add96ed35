//! `ManualClock`: a clock that moves only when told to, so tests never sleep.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::Arc;

const NANOS: f64 = 1e9;

/// A clock for tests: pass it as `RateLimiter(..., clock=clock)` and move time with
/// `advance(seconds)`. Starts at the current wall-clock time unless given `start` (seconds since
/// the epoch).
#[pyclass(module = "flux._flux", frozen)]
pub struct ManualClock {
    pub(crate) inner: Arc<flux_core::ManualClock>,
}

fn to_nanos(seconds: f64, what: &str) -> PyResult<u64> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must be a finite, non-negative number of seconds, got {seconds}"
        )));
    }
    Ok((seconds * NANOS).round() as u64)
}

#[pymethods]
impl ManualClock {
    #[new]
    #[pyo3(signature = (start=None))]
    fn new(start: Option<f64>) -> PyResult<Self> {
        let start = match start {
            Some(seconds) => to_nanos(seconds, "start")?,
            None => flux_core::Clock::now(&flux_core::SystemClock::new()),
        };
        Ok(ManualClock {
            inner: Arc::new(flux_core::ManualClock::new(start)),
        })
    }

    /// Moves the clock forward by `seconds`.
    fn advance(&self, seconds: f64) -> PyResult<()> {
        self.inner.advance(to_nanos(seconds, "seconds")?);
        Ok(())
    }

    /// Sets the clock to `seconds` since the epoch.
    fn set(&self, seconds: f64) -> PyResult<()> {
        self.inner.set(to_nanos(seconds, "seconds")?);
        Ok(())
    }

    /// The clock's time, in seconds since the epoch.
    fn now(&self) -> f64 {
        flux_core::Clock::now(self.inner.as_ref()) as f64 / NANOS
    }

    fn __repr__(&self) -> String {
        format!("ManualClock(now={})", self.now())
    }
}
