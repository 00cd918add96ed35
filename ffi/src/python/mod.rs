//! The pyo3 module `flux._flux`: thin classes over flux-core. Conversion and error mapping
//! only; every decision is made by the core.

mod aio;
mod clock;
mod dispatcher;
mod errors;
mod headers;
mod limiter;
mod logging;
mod redis_store;
mod result;
mod result_reuse;
mod shared_region;

use pyo3::prelude::*;
use pyo3::types::IntoPyDict;

/// The native half of flux. Use the `flux` package, which re-exports what is public.
#[pymodule]
fn _flux(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("ALGORITHMS", flux_core::AlgorithmKind::NAMES.to_vec())?;
    m.add_class::<limiter::Limiter>()?;
    m.add_class::<result::RateLimitResult>()?;
    m.add_class::<clock::ManualClock>()?;
    m.add_class::<redis_store::RedisStore>()?;
    m.add_class::<shared_region::SharedRegion>()?;
    m.add_function(wrap_pyfunction!(shared_region::default_shared_path, m)?)?;
    m.add_function(wrap_pyfunction!(limiter::hit_many, m)?)?;
    m.add_function(wrap_pyfunction!(limiter::ahit_many, m)?)?;
    let after_fork = wrap_pyfunction!(redis_store::_after_fork_in_child, m)?;
    m.py().import("os")?.call_method(
        "register_at_fork",
        (),
        Some(&[("after_in_child", after_fork)].into_py_dict(m.py())?),
    )?;
    result_reuse::enable(m.py())?;
    logging::install();
    Ok(())
}
