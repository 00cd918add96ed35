//! `RateLimitResult`: one decision, as Python sees it.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use super::headers;

/// Where a decision came from (the `source` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The embedded store.
    Memory,
    /// Redis decided (one round trip).
    Redis,
    /// The Redis store's local deny cache (Redis denied this key moments ago).
    DenyCache,
    /// Redis failed and the failure policy let the hit pass unchecked.
    FailOpen,
}

impl Origin {
    const NAMES: [(&'static str, Origin); 4] = [
        ("memory", Origin::Memory),
        ("redis", Origin::Redis),
        ("deny_cache", Origin::DenyCache),
        ("fail_open", Origin::FailOpen),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize].0
    }

    fn parse(name: &str) -> PyResult<Origin> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, origin)| *origin)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "invalid source {name:?}: expected one of memory, redis, deny_cache, fail_open"
                ))
            })
    }
}

/// The outcome of one hit (or peek). Times are float seconds; `bool(result)` is `allowed`.
#[pyclass(module = "flux._flux", frozen, subclass, freelist = 64)]
pub struct RateLimitResult {
    /// Whether the hit passed (and was counted).
    #[pyo3(get)]
    pub allowed: bool,
    /// Whole hits of cost 1 still allowed now.
    #[pyo3(get)]
    pub remaining: u64,
    /// Seconds until the key is back to full capacity.
    #[pyo3(get)]
    pub reset_after: f64,
    /// Seconds until this hit would pass; 0.0 when it passed.
    #[pyo3(get)]
    pub retry_after: f64,
    /// The capacity (burst for bucket algorithms, requests for window algorithms).
    #[pyo3(get)]
    pub limit: u64,
    /// Where the decision came from.
    pub origin: Origin,
}

impl RateLimitResult {
    #[inline]
    pub fn from_decision(d: flux_core::Decision) -> Self {
        Self::from_origin(d, Origin::Memory)
    }

    #[inline]
    pub fn from_origin(d: flux_core::Decision, origin: Origin) -> Self {
        RateLimitResult {
            allowed: d.allowed,
            remaining: d.remaining,
            reset_after: d.reset_after_secs(),
            retry_after: d.retry_after_secs(),
            limit: d.limit,
            origin,
        }
    }
}

/// Whole seconds, rounded up: a client told to wait must never come back too early.
fn ceil_secs(seconds: f64) -> u64 {
    seconds.ceil().max(0.0) as u64
}

#[pymethods]
impl RateLimitResult {
    #[new]
    #[pyo3(signature = (allowed, remaining=0, reset_after=0.0, retry_after=0.0, limit=0, *, source="memory"))]
    fn new(
        allowed: bool,
        remaining: u64,
        reset_after: Option<f64>,
        retry_after: Option<f64>,
        limit: u64,
        source: &str,
    ) -> PyResult<Self> {
        Ok(RateLimitResult {
            allowed,
            remaining,
            reset_after: reset_after.unwrap_or(0.0),
            retry_after: retry_after.unwrap_or(0.0),
            limit,
            origin: Origin::parse(source)?,
        })
    }

    /// Where the decision came from: `"memory"` (the embedded store), `"redis"`,
    /// `"deny_cache"` (Redis denied this key moments ago; no round trip) or `"fail_open"`.
    #[getter]
    fn source(&self) -> &'static str {
        self.origin.name()
    }

    /// True when Redis failed and the hit was let through unchecked (`fail_silently`): nothing
    /// was counted.
    #[getter]
    fn fail_open(&self) -> bool {
        self.origin == Origin::FailOpen
    }

    /// How much of the capacity is in use (limit − remaining).
    #[getter]
    fn usage(&self) -> u64 {
        self.limit.saturating_sub(self.remaining)
    }

    /// The `X-RateLimit-*` headers for this decision, plus `Retry-After` (whole seconds, rounded
    /// up) when it was denied.
    fn to_headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let headers = PyDict::new(py);
        headers.set_item("X-RateLimit-Limit", self.limit.to_string())?;
        headers.set_item("X-RateLimit-Remaining", self.remaining.to_string())?;
        headers.set_item("X-RateLimit-Reset", ceil_secs(self.reset_after).to_string())?;
        if !self.allowed {
            headers.set_item(
                "Retry-After",
                ceil_secs(self.retry_after).max(1).to_string(),
            )?;
        }
        Ok(headers)
    }

    /// The informational headers of this decision, for a limit named `quoted_name` (an
    /// sf-string, quotes included, as `flux.headers.sf_string` makes it) whose window is
    /// `window` whole seconds: `X-RateLimit-Limit`, `-Remaining`, `-Reset`, `RateLimit-Policy`
    /// and `RateLimit`, as a list of `(name, value)` pairs. With `raw=True` the names are
    /// lower-cased and both are bytes, as in an ASGI header list. `Retry-After` is not among
    /// them: its jitter is decided in Python (`flux.headers.limit_headers`).
    #[pyo3(signature = (quoted_name, window, raw=false))]
    fn header_items<'py>(
        &self,
        py: Python<'py>,
        quoted_name: &str,
        window: u64,
        raw: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        if !headers::is_printable_ascii(quoted_name) {
            return Err(PyValueError::new_err(format!(
                "quoted_name must be printable ASCII (an sf-string), got {quoted_name:?}"
            )));
        }
        if self.origin == Origin::FailOpen {
            // No decision was made: any number would be made up.
            return Ok(PyList::empty(py));
        }
        let mut text = String::with_capacity(64 + 2 * quoted_name.len());
        let ranges = headers::write_values(
            &mut text,
            self.limit,
            self.remaining,
            self.reset_after,
            quoted_name,
            window,
        );
        // The names are the same five objects on every call: made once per interpreter.
        static NAMES: PyOnceLock<[Py<PyString>; 5]> = PyOnceLock::new();
        static RAW_NAMES: PyOnceLock<[Py<PyBytes>; 5]> = PyOnceLock::new();
        if raw {
            let names = RAW_NAMES.get_or_init(py, || {
                headers::RAW_NAMES.map(|name| PyBytes::new(py, name).unbind())
            });
            let pairs = names
                .iter()
                .zip(ranges)
                .map(|(name, range)| (name.bind(py), PyBytes::new(py, &text.as_bytes()[range])));
            PyList::new(py, pairs)
        } else {
            let names = NAMES.get_or_init(py, || {
                headers::NAMES.map(|name| PyString::intern(py, name).unbind())
            });
            let pairs = names
                .iter()
                .zip(ranges)
                .map(|(name, range)| (name.bind(py), PyString::new(py, &text[range])));
            PyList::new(py, pairs)
        }
    }

    fn __bool__(&self) -> bool {
        self.allowed
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<RateLimitResult>().is_ok_and(|o| {
            let o = o.get();
            (o.allowed, o.remaining, o.limit) == (self.allowed, self.remaining, self.limit)
                && o.reset_after == self.reset_after
                && o.retry_after == self.retry_after
                && (o.origin == Origin::FailOpen) == (self.origin == Origin::FailOpen)
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "RateLimitResult(allowed={}, remaining={}, limit={}, reset_after={:.6}, retry_after={:.6}{})",
            if self.allowed { "True" } else { "False" },
            self.remaining,
            self.limit,
            self.reset_after,
            self.retry_after,
            if self.origin == Origin::FailOpen {
                ", fail_open=True"
            } else {
                ""
            }
        )
    }
}
