//! `RateLimitResult`: one decision, as Python sees it.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString};

use super::headers;
use flux_core::{Decision, Outcome, Source};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicU8};

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
    /// The figures of the decision. Atomics only so that a result nobody else holds can be
    /// filled in again for the next hit (see `result_reuse`); they are never raced.
    numbers: AtomicNumbers,
}

/// The figures of one decision, as read out of a result.
#[derive(Clone, Copy, Default)]
pub struct Numbers {
    /// Whole hits of cost 1 still allowed now.
    pub remaining: u64,
    /// Seconds until the key is back to full capacity.
    pub reset_after: f64,
    /// Seconds until this hit would pass; 0.0 when it passed.
    pub retry_after: f64,
    /// The capacity (burst for bucket algorithms, requests for window algorithms).
    pub limit: u64,
    /// Where the decision came from (the core says, see docs/architecture.md, *Stores*).
    pub source: Source,
}

impl Numbers {
    #[inline(always)]
    fn of(d: &Decision, source: Source) -> Self {
        Numbers {
            remaining: d.remaining,
            reset_after: d.reset_after_secs(),
            retry_after: d.retry_after_secs(),
            limit: d.limit,
            source,
        }
    }
}

/// [`Numbers`] in relaxed atomics (floats as their bits, the source as its index).
struct AtomicNumbers {
    remaining: AtomicU64,
    reset_after: AtomicU64,
    retry_after: AtomicU64,
    limit: AtomicU64,
    source: AtomicU8,
}

const SOURCES: [Source; 5] = [
    Source::Memory,
    Source::Shared,
    Source::Redis,
    Source::DenyCache,
    Source::FailOpen,
];

#[inline(always)]
fn source_index(source: Source) -> u8 {
    match source {
        Source::Memory => 0,
        Source::Shared => 1,
        Source::Redis => 2,
        Source::DenyCache => 3,
        Source::FailOpen => 4,
    }
}

impl AtomicNumbers {
    #[inline(always)]
    fn new(n: Numbers) -> Self {
        AtomicNumbers {
            remaining: AtomicU64::new(n.remaining),
            reset_after: AtomicU64::new(n.reset_after.to_bits()),
            retry_after: AtomicU64::new(n.retry_after.to_bits()),
            limit: AtomicU64::new(n.limit),
            source: AtomicU8::new(source_index(n.source)),
        }
    }

    #[inline(always)]
    fn store(&self, n: Numbers) {
        self.remaining.store(n.remaining, Relaxed);
        self.reset_after.store(n.reset_after.to_bits(), Relaxed);
        self.retry_after.store(n.retry_after.to_bits(), Relaxed);
        self.limit.store(n.limit, Relaxed);
        self.source.store(source_index(n.source), Relaxed);
    }

    #[inline(always)]
    fn load(&self) -> Numbers {
        Numbers {
            remaining: self.remaining.load(Relaxed),
            reset_after: f64::from_bits(self.reset_after.load(Relaxed)),
            retry_after: f64::from_bits(self.retry_after.load(Relaxed)),
            limit: self.limit.load(Relaxed),
            source: SOURCES[usize::from(self.source.load(Relaxed))],
        }
    }
}

impl RateLimitResult {
    /// The decision of a core outcome and its source, its fail-open error (if any, the
    /// core's to log) moved out and dropped out of line: the hit path drops nothing.
    #[inline(always)]
    pub fn split(outcome: Outcome) -> (Decision, Source) {
        let Outcome {
            decision,
            source,
            error,
        } = outcome;
        if let Some(error) = error {
            forget_error(error);
        }
        (decision, source)
    }

    /// The result of a core outcome, as a new value.
    #[inline(always)]
    pub fn from_outcome(py: Python<'_>, outcome: Outcome) -> Self {
        let (decision, source) = Self::split(outcome);
        Self::from_decision(py, decision, source)
    }

    #[inline]
    pub fn from_decision(py: Python<'_>, d: Decision, source: Source) -> Self {
        Self::with(py, d.allowed, Numbers::of(&d, source))
    }

    #[inline(always)]
    fn with(py: Python<'_>, allowed: bool, numbers: Numbers) -> Self {
        RateLimitResult {
            allowed: PyBool::new(py, allowed).to_owned().unbind(),
            numbers: AtomicNumbers::new(numbers),
        }
    }

    /// A result of no decision (zero figures), to be refilled (see `result_reuse`).
    pub(super) fn placeholder(py: Python<'_>, allowed: bool) -> Self {
        Self::with(py, allowed, Numbers::default())
    }

    /// Fills in the figures of `d` again. Only for a result nobody else can see (its one
    /// reference held by `result_reuse`, the GIL held) whose `allowed` is `d.allowed`.
    #[inline(always)]
    pub(super) fn refill(&self, d: &Decision, source: Source) {
        debug_assert_eq!(self.is_allowed(), d.allowed);
        self.numbers.store(Numbers::of(d, source));
    }

    /// The figures of the decision.
    #[inline]
    pub fn numbers(&self) -> Numbers {
        self.numbers.load()
    }

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
        let numbers = Numbers {
            remaining,
            reset_after: reset_after.unwrap_or(0.0),
            retry_after: retry_after.unwrap_or(0.0),
            limit,
            source: parse_source(source)?,
        };
        Ok(Self::with(py, allowed, numbers))
    }

    /// Whole hits of cost 1 still allowed now.
    #[getter]
    fn remaining(&self) -> u64 {
        self.numbers.remaining.load(Relaxed)
    }

    /// Seconds until the key is back to full capacity.
    #[getter]
    fn reset_after(&self) -> f64 {
        f64::from_bits(self.numbers.reset_after.load(Relaxed))
    }

    /// Seconds until this hit would pass; 0.0 when it passed.
    #[getter]
    fn retry_after(&self) -> f64 {
        f64::from_bits(self.numbers.retry_after.load(Relaxed))
    }

    /// The capacity (burst for bucket algorithms, requests for window algorithms).
    #[getter]
    fn limit(&self) -> u64 {
        self.numbers.limit.load(Relaxed)
    }

    /// Where the decision came from: `"memory"` (the embedded store), `"redis"`,
    /// `"deny_cache"` (Redis denied this key moments ago; no round trip) or `"fail_open"`.
    #[getter]
    fn source(&self) -> &'static str {
        source_name(self.numbers().source)
    }

    /// True when Redis failed and the hit was let through unchecked (the limit fails open): nothing
    /// was counted.
    #[getter]
    fn fail_open(&self) -> bool {
        self.numbers().source == Source::FailOpen
    }

    /// How much of the capacity is in use (limit − remaining).
    #[getter]
    fn usage(&self) -> u64 {
        let n = self.numbers();
        n.limit.saturating_sub(n.remaining)
    }

    /// The `X-RateLimit-*` headers for this decision, plus `Retry-After` (whole seconds, rounded
    /// up) when it was denied.
    fn to_headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let n = self.numbers();
        let headers = PyDict::new(py);
        headers.set_item("X-RateLimit-Limit", n.limit.to_string())?;
        headers.set_item("X-RateLimit-Remaining", n.remaining.to_string())?;
        headers.set_item(
            "X-RateLimit-Reset",
            headers::ceil_seconds(n.reset_after).to_string(),
        )?;
        if !self.is_allowed() {
            headers.set_item(
                "Retry-After",
                headers::ceil_seconds(n.retry_after).max(1).to_string(),
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
        let n = self.numbers();
        if n.source == Source::FailOpen {
            // No decision was made: any number would be made up.
            return Ok(PyList::empty(py));
        }
        let mut text = String::with_capacity(64 + 2 * quoted_name.len());
        let ranges = headers::write_values(
            &mut text,
            n.limit,
            n.remaining,
            n.reset_after,
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
            let (o, allowed) = (o.get().numbers(), o.get().is_allowed());
            let n = self.numbers();
            (allowed, o.remaining, o.limit) == (self.is_allowed(), n.remaining, n.limit)
                && o.reset_after == n.reset_after
                && o.retry_after == n.retry_after
                && (o.source == Source::FailOpen) == (n.source == Source::FailOpen)
        })
    }

    fn __repr__(&self) -> String {
        let n = self.numbers();
        format!(
            "RateLimitResult(allowed={}, remaining={}, limit={}, reset_after={:.6}, retry_after={:.6}{})",
            if self.is_allowed() { "True" } else { "False" },
            n.remaining,
            n.limit,
            n.reset_after,
            n.retry_after,
            if n.source == Source::FailOpen {
                ", fail_open=True"
            } else {
                ""
            }
        )
    }
}
