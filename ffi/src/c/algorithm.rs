//! Algorithm numbers and names: the C face of `flux_core::AlgorithmKind`.

use super::args::{c_str, write_out};
use super::error::Failure;
use super::result::flux_result;
use flux_core::AlgorithmKind;
use std::ffi::c_char;

/// The algorithms, by stable number (the value of `flux_limiter_options.algorithm`).
///
/// The numbers are `flux_core::AlgorithmKind`'s and never change; new algorithms are appended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum flux_algorithm {
    /// Generic cell rate algorithm: one timestamp per key (the default).
    Gcra = 0,
    /// Token bucket with continuous refill.
    TokenBucket = 1,
    /// Leaky bucket as a meter.
    LeakyBucket = 2,
    /// Fixed window counter aligned to the epoch.
    FixedWindow = 3,
    /// Weighted two-window counter.
    SlidingWindow = 4,
    /// Exact log of timestamps.
    SlidingLog = 5,
}

impl flux_algorithm {
    /// Every algorithm in numeric order (the tests check it against the core's table).
    #[cfg(test)]
    pub(crate) const ALL: [flux_algorithm; 6] = [
        flux_algorithm::Gcra,
        flux_algorithm::TokenBucket,
        flux_algorithm::LeakyBucket,
        flux_algorithm::FixedWindow,
        flux_algorithm::SlidingWindow,
        flux_algorithm::SlidingLog,
    ];
}

/// The algorithm with number `algorithm`, or `FLUX_RESULT_UNKNOWN_ALGORITHM` naming it.
pub(crate) fn kind(algorithm: u32) -> Result<AlgorithmKind, Failure> {
    AlgorithmKind::from_index(algorithm).ok_or_else(|| {
        let known: Vec<String> = AlgorithmKind::ALL
            .iter()
            .map(|kind| format!("{} = {}", *kind as u32, kind.name()))
            .collect();
        Failure::new(
            flux_result::UnknownAlgorithm,
            format!(
                "unknown algorithm {algorithm}: expected one of {}",
                known.join(", ")
            ),
        )
    })
}

/// NUL-terminated canonical names, indexed by algorithm number.
const NAMES: [&str; 6] = [
    "gcra\0",
    "token_bucket\0",
    "leaky_bucket\0",
    "fixed_window\0",
    "sliding_window\0",
    "sliding_log\0",
];

/// The canonical name of algorithm number `algorithm` (e.g. "token_bucket"), as used in
/// flux.toml and by the Python API.
///
/// Returns a NUL-terminated string with static lifetime, owned by flux (never free it), or
/// NULL when `algorithm` is not a known algorithm number.
///
/// Thread safety: safe to call from any thread.
#[no_mangle]
pub extern "C" fn flux_algorithm_name(algorithm: u32) -> *const c_char {
    ffi_guard!(on_panic = std::ptr::null(), {
        match AlgorithmKind::from_index(algorithm) {
            Some(kind) => {
                let name = NAMES[kind as usize];
                debug_assert_eq!(&name[..name.len() - 1], kind.name());
                name.as_ptr().cast()
            }
            None => std::ptr::null(),
        }
    })
}

/// Looks up an algorithm by name ("gcra", "token_bucket", ...; case and '-' / '_' are not
/// significant) and writes its number (a `flux_algorithm` value) to `*out`.
///
/// Returns `FLUX_RESULT_OK`; `FLUX_RESULT_NULL_ARGUMENT` when `name` or `out` is NULL;
/// `FLUX_RESULT_INVALID_UTF8`; `FLUX_RESULT_UNKNOWN_ALGORITHM` (the last error names the
/// value and lists the known names). On failure `*out` is untouched.
///
/// Ownership: `name` is borrowed for the duration of the call.
/// Thread safety: safe to call from any thread.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string; `out` must be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn flux_algorithm_from_name(
    name: *const c_char,
    out: *mut u32,
) -> flux_result {
    ffi_guard!({
        let out = non_null!(out);
        // SAFETY: `name` is NULL or NUL-terminated per the contract.
        let name = unsafe { c_str(name, "name") }?;
        let kind: AlgorithmKind = name.parse().map_err(Failure::from)?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { write_out(out, kind as u32) };
        Ok(())
    })
}
