//! `RateLimitResult`: one decision, as Python sees it.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString};

use super::headers;
use flux_core::{Decision, Outcome, Source};

/// The `source` attribute's name of the core's [`Source`]. A shared-memory region says
/// `"memory"`, as it did before the core told the two apart: the strings are public API.
fn source_name(source: Source) -> &'static str {
    match source {
        Source::Memory | Source::Shared => "memory",
        Source::Redis | Source::DenyCache | Source::FailOpen => source.name(),
    }
}

/// The [`Source`] of a `source` name given to the constructor.
fn parse_source(name: &str) -> PyResult<Source> {
    [
        Source::Memory,
        Source::Redis,
        Source::DenyCache,
        Source::FailOpen,
    ]
    .into_iter()
    .find(|source| source.name() == name)
    .ok_or_else(|| {
        PyValueError::new_err(format!(
            "invalid source {name:?}: expected one of memory, redis, deny_cache, fail_open"
        ))
    })
}

/// The outcome of one hit (or peek). Times are float seconds; `bool(result)` is `allowed`.
//
// No `freelist`: pyo3's takes the free list's lock and looks the type up on every allocation
// and every free, which cost more than CPython's own small-object allocator (callgrind, a
// Python `hit(key).allowed` loop: 2,042 instructions per hit with a freelist of 64, 1,794
// without).
//
// `allowed` is held as the Python bool itself: on a frozen class pyo3 makes such a field a
// struct member, which the interpreter reads inline (a specialised `LOAD_ATTR`), where a
// `bool` field would go through a getter call on every `hit(key).allowed`.
#[pyclass(module = "flux._flux", frozen, subclass)]
pub struct RateLimitResult {
    /// Whether the hit passed (and was counted).
    #[pyo3(get)]
    allowed: Py<PyBool>,
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
    /// Where the decision came from (the core says, see docs/architecture.md, *Stores*).
    pub source: Source,
}

impl RateLimitResult {
    /// The result of a core outcome (its fail-open error, if any, is the core's to log). The
    /// error is moved out and dropped out of line: the hit path drops nothing.
    #[inline(always)]
    pub fn from_outcome(py: Python<'_>, outcome: Outcome) -> Self {
        let Outcome {
            decision,
            source,
            error,
        } = outcome;
        if let Some(error) = error {
            forget_error(error);
        }
        Self::from_decision(py, decision, source)
    }

    #[inline]
    pub fn from_decision(py: Python<'_>, d: Decision, source: Source) -> Self {
        RateLimitResult {
            allowed: PyBool::new(py, d.allowed).to_owned().unbind(),
            remaining: d.remaining,
            reset_after: d.reset_after_secs(),
            retry_after: d.retry_after_secs(),
            limit: d.limit,
            source,
        }
    }
}

impl RateLimitResult {
    /// Whether the hit passed, for Rust: `allowed` is always `True` or `False` itself.
    #[inline]
    pub fn is_allowed(&self) -> bool {
        // SAFETY: Py_True is the address of a static object; no reference count is touched.
        self.allowed.as_ptr() == unsafe { pyo3::ffi::Py_True() }
    }
}

#[cold]
#[inline(never)]
fn forget_error(error: Box<flux_core::Error>) {
    drop(error);
}

/// Whole seconds, rounded up: a client told to wait must never come back too early.
#[pymethods]
impl RateLimitResult {
    #[new]
    #[pyo3(signature = (allowed, remaining=0, reset_after=0.0, retry_after=0.0, limit=0, *, source="memory"))]
    fn new(
        py: Python<'_>,
        allowed: bool,
        remaining: u64,
        reset_after: Option<f64>,
        retry_after: Option<f64>,
        limit: u64,
        source: &str,
    ) -> PyResult<Self> {
        Ok(RateLimitResult {
            allowed: PyBool::new(py, allowed).to_owned().unbind(),
            remaining,
            reset_after: reset_after.unwrap_or(0.0),
            retry_after: retry_after.unwrap_or(0.0),
            limit,
            source: parse_source(source)?,
        })
    }

    /// Where the decision came from: `"memory"` (the embedded store), `"redis"`,
    /// `"deny_cache"` (Redis denied this key moments ago; no round trip) or `"fail_open"`.
    #[getter]
    fn source(&self) -> &'static str {
        source_name(self.source)
    }

    /// True when Redis failed and the hit was let through unchecked (the limit fails open): nothing
    /// was counted.
    #[getter]
    fn fail_open(&self) -> bool {
        self.source == Source::FailOpen
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
        headers.set_item(
            "X-RateLimit-Reset",
            headers::ceil_seconds(self.reset_after).to_string(),
        )?;
        if !self.is_allowed() {
            headers.set_item(
                "Retry-After",
                headers::ceil_seconds(self.retry_after).max(1).to_string(),
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
        if self.source == Source::FailOpen {
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
        self.is_allowed()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<RateLimitResult>().is_ok_and(|o| {
            let o = o.get();
            (o.is_allowed(), o.remaining, o.limit)
                == (self.is_allowed(), self.remaining, self.limit)
                && o.reset_after == self.reset_after
                && o.retry_after == self.retry_after
                && (o.source == Source::FailOpen) == (self.source == Source::FailOpen)
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "RateLimitResult(allowed={}, remaining={}, limit={}, reset_after={:.6}, retry_after={:.6}{})",
            if self.is_allowed() { "True" } else { "False" },
            self.remaining,
            self.limit,
            self.reset_after,
            self.retry_after,
            if self.source == Source::FailOpen {
                ", fail_open=True"
            } else {
                ""
            }
        )
    }
}
