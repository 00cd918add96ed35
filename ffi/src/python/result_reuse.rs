//! Results handed out without an allocation per hit.
//!
//! `limiter.hit(key).allowed` makes a result and drops it at once: allocating, tracking and
//! freeing that object cost about a third of a Python hit on the embedded store (callgrind,
//! 1,000 keys: ~1,210 instructions per hit with them, ~830 without). CPython's own `zip` and
//! `enumerate` answer the same cost the same way: the object handed out last is kept, and
//! when the only reference left to it is the one kept here, nobody can see it any more, so it
//! is filled in again and handed out instead of a new one. Two are kept, one allowed and one denied, because
//! `allowed` is the bool object the interpreter reads inline and is never rewritten. A caller
//! that holds on to a result (a middleware, a list, `gc.get_objects()`) holds a reference, so
//! the next hit makes a new one and nothing it holds ever changes.
//!
//! A reference count of one proves that nobody else holds the object only while the GIL
//! serialises Python code: on a free-threaded interpreter running without it, and on PyPy
//! (whose counts mean something else), nothing is kept and every hit makes a new result.

use super::result::RateLimitResult;
use flux_core::Outcome;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// The kept results: `[denied, allowed]`, set once at module start-up where reuse is sound.
static KEPT: [PyOnceLock<Py<RateLimitResult>>; 2] = [PyOnceLock::new(), PyOnceLock::new()];

/// Keeps one allowed and one denied result to refill, unless this interpreter runs without a
/// GIL or is not CPython (see the module's comment). Called once, at module import.
pub fn enable(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    let cpython = sys
        .getattr("implementation")?
        .getattr("name")?
        .extract::<String>()?
        == "cpython";
    let gil = match sys.getattr("_is_gil_enabled") {
        Ok(is_gil_enabled) => is_gil_enabled.call0()?.extract::<bool>()?,
        Err(_) => true, // before 3.13 there is always a GIL
    };
    if cpython && gil {
        for (allowed, kept) in [false, true].into_iter().zip(&KEPT) {
            let result = Py::new(py, RateLimitResult::placeholder(py, allowed))?;
            let _ = kept.set(py, result);
        }
    }
    Ok(())
}

/// The result of `outcome`: the kept one of its kind refilled when nobody else holds it,
/// else a new one.
#[inline(always)]
pub fn issue(py: Python<'_>, outcome: Outcome) -> PyResult<Bound<'_, RateLimitResult>> {
    let (decision, source) = RateLimitResult::split(outcome);
    if let Some(kept) = KEPT[usize::from(decision.allowed)].get(py) {
        // SAFETY: `kept` is a live object (KEPT owns a reference) and the GIL is held, so no
        // other thread runs Python code between this check and the new reference below.
        if unsafe { pyo3::ffi::Py_REFCNT(kept.as_ptr()) } == 1 {
            kept.get().refill(&decision, source);
            return Ok(kept.bind(py).clone());
        }
    }
    Bound::new(py, RateLimitResult::from_decision(py, decision, source))
}
