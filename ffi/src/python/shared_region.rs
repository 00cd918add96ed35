//! `SharedRegion`: a shared-memory region that limiters of every process on the machine
//! (web workers, task workers, scripts, C programs) open to share their limits exactly.

use flux_core::store::shared::{default_path, SharedRegion as CoreRegion};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A shared-memory region (a memory-mapped file, under /dev/shm on Linux) holding the state of
/// limiters built with `region=` in every process that opens the same path.
///
/// `path` None means the default path for `key_prefix` (the same as the C ABI's default);
/// `max_keys` sizes a region being created (None: 65536) and must match an existing one when
/// given. A forked child keeps using its parent's mapping: both see the same state.
///
/// Raises `OSError` (the message names the path and what to do) when the file cannot be
/// created, opened, sized or mapped, or is not a usable region; `ValueError` for a bad
/// `max_keys`.
#[pyclass(module = "flux._flux", frozen)]
pub struct SharedRegion {
    pub(crate) region: CoreRegion,
}

#[pymethods]
impl SharedRegion {
    #[new]
    #[pyo3(signature = (path=None, *, max_keys=None, key_prefix="flux:"))]
    fn new(
        py: Python<'_>,
        path: Option<std::path::PathBuf>,
        max_keys: Option<i64>,
        key_prefix: &str,
    ) -> PyResult<Self> {
        let max_keys = match max_keys {
            Some(n) if n < 1 => {
                return Err(PyValueError::new_err(format!(
                    "invalid argument: max_keys must be at least 1, got {n}"
                )))
            }
            other => other.map(|n| n as usize),
        };
        let path = path.unwrap_or_else(|| default_path(key_prefix));
        let region = py
            .detach(|| CoreRegion::open(&path, max_keys))
            .map_err(|err| match err {
                flux_core::Error::Store(_) => PyOSError::new_err(err.to_string()),
                _ => PyValueError::new_err(err.to_string()),
            })?;
        Ok(SharedRegion { region })
    }

    /// The region file.
    #[getter]
    fn path(&self) -> std::path::PathBuf {
        self.region.path().to_path_buf()
    }

    /// What the region holds now, as a dict: `slots`, `live`, `pending`, `evictions` (a scan
    /// of every slot: for monitoring, not hot paths).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = py.detach(|| self.region.stats());
        let out = PyDict::new(py);
        out.set_item("path", stats.path)?;
        out.set_item("slots", stats.slots)?;
        out.set_item("live", stats.live)?;
        out.set_item("pending", stats.pending)?;
        out.set_item("evictions", stats.evictions)?;
        Ok(out)
    }

    /// Puts every key of every limit in the region back to full capacity, for every process
    /// that uses it; returns how many keys were held. Safe while others hit.
    fn clear(&self, py: Python<'_>) -> usize {
        py.detach(|| self.region.clear())
    }

    fn __repr__(&self) -> String {
        format!("SharedRegion({:?})", self.region.path())
    }
}

/// The default region path for `key_prefix` (`/dev/shm/flux-<uid>-<key_prefix>` on Linux).
#[pyfunction]
pub fn default_shared_path(key_prefix: &str) -> std::path::PathBuf {
    default_path(key_prefix)
}
