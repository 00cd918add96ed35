//! The pyo3 module flux._flux.
