//! Scratch shared-memory regions for the shared store's tests: a unique path per region, the
//! file removed when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A unique region path under the temporary directory, removed (with any temporary files of
/// an interrupted creation) when dropped.
pub struct ScratchPath(pub PathBuf);

impl ScratchPath {
    pub fn new(tag: &str) -> ScratchPath {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        ScratchPath(std::env::temp_dir().join(format!(
            "flux-shared-test-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
