//! The pyo3 module `flux._flux`: thin classes over flux-core. Conversion and error mapping
//! only; every decision is made by the core.

mod clock;
mod errors;
mod limiter;
mod result;

use pyo3::prelude::*;

/// The native half of flux. Use the `flux` package, which re-exports what is public.
#[pymodule]
fn _flux(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("ALGORITHMS", flux_core::AlgorithmKind::NAMES.to_vec())?;
    m.add_class::<limiter::Limiter>()?;
    m.add_class::<result::RateLimitResult>()?;
    m.add_class::<clock::ManualClock>()?;
    m.add_function(wrap_pyfunction!(limiter::hit_many, m)?)?;
    Ok(())
}
