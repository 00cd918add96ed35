//! flux-ffi: the two foreign faces of flux-core.
//!
//! - `c` (feature `capi`, default): the stable C ABI declared in `include/flux.h`.
//! - `python` (feature `python`): the pyo3 module `flux._flux`, built by maturin.

#[cfg(feature = "capi")]
pub mod c;

/// cbindgen:ignore
#[cfg(feature = "python")]
mod python;
