//! The one mapping from core errors to Python exceptions.

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

pyo3::import_exception!(flux.exceptions, ConnectionError);

/// Invalid arguments become `ValueError` (the message names the bad value); store failures
/// become `flux.ConnectionError`.
pub fn to_py(err: flux_core::Error) -> PyErr {
    match err.innermost() {
        flux_core::Error::Store(_) => ConnectionError::new_err(err.to_string()),
        _ => PyValueError::new_err(err.to_string()),
    }
}
