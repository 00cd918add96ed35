//! Result codes: stable numbers, one per kind of failure (the core error mapping is in
//! `error.rs`, which depends on this file and never the other way round).

use std::ffi::{c_char, c_int};

/// What a fallible flux call returns. `FLUX_RESULT_OK` is 0; every other value is a failure
/// whose details are in `flux_last_error()`.
///
/// The numbers are stable: new codes are appended, and a retired code stays here as a comment
/// and is never reused. Handle unknown codes as generic failures.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum flux_result {
    /// Success.
    Ok = 0,
    /// A panic inside flux was caught at the boundary (a bug in flux: please report it).
    Panic = 1,
    /// A pointer argument that must not be NULL was NULL.
    NullArgument = 2,
    /// A key or string argument is not valid UTF-8.
    InvalidUtf8 = 3,
    /// The quota's `requests` is out of range (0, or finer than one request per nanosecond).
    InvalidRequests = 4,
    /// The quota's `period_ns` is out of range (0, or longer than one year).
    InvalidPeriod = 5,
    /// The quota's `burst` is out of range (too large for the rate).
    InvalidBurst = 6,
    /// A cost of 0, or larger than the limit's capacity (such a hit could never pass).
    InvalidCost = 7,
    /// An algorithm number or name that flux does not know.
    UnknownAlgorithm = 8,
    /// A key that the store cannot accept.
    InvalidKey = 9,
    /// Any other invalid argument (e.g. a key length above PTRDIFF_MAX, a clock overflow).
    InvalidArgument = 10,
    /// The store failed (e.g. a Redis server that cannot be reached).
    StoreError = 11,
}

impl flux_result {
    /// Every code, in numeric order.
    pub(crate) const ALL: [flux_result; 12] = [
        flux_result::Ok,
        flux_result::Panic,
        flux_result::NullArgument,
        flux_result::InvalidUtf8,
        flux_result::InvalidRequests,
        flux_result::InvalidPeriod,
        flux_result::InvalidBurst,
        flux_result::InvalidCost,
        flux_result::UnknownAlgorithm,
        flux_result::InvalidKey,
        flux_result::InvalidArgument,
        flux_result::StoreError,
    ];

    /// A short static description, NUL-terminated.
    fn message(self) -> &'static str {
        match self {
            flux_result::Ok => "ok\0",
            flux_result::Panic => "internal error (panic caught at the flux boundary)\0",
            flux_result::NullArgument => "a required pointer argument is NULL\0",
            flux_result::InvalidUtf8 => "a key or string argument is not valid UTF-8\0",
            flux_result::InvalidRequests => "invalid quota: requests out of range\0",
            flux_result::InvalidPeriod => "invalid quota: period out of range\0",
            flux_result::InvalidBurst => "invalid quota: burst out of range\0",
            flux_result::InvalidCost => "invalid cost: 0 or larger than the capacity\0",
            flux_result::UnknownAlgorithm => "unknown algorithm\0",
            flux_result::InvalidKey => "invalid key\0",
            flux_result::InvalidArgument => "invalid argument\0",
            flux_result::StoreError => "store error\0",
        }
    }
}

/// A short static description of a result code, e.g. "invalid cost: 0 or larger than the
/// capacity".
///
/// Returns a NUL-terminated string owned by flux with static lifetime (never free it), never
/// NULL: an unknown code gives "unknown flux_result code". For the details of a failure (which
/// value was wrong) use `flux_last_error()`.
///
/// Thread safety: safe to call from any thread.
#[no_mangle]
pub extern "C" fn flux_result_message(result: c_int) -> *const c_char {
    const UNKNOWN: &str = "unknown flux_result code\0";
    ffi_guard!(on_panic = UNKNOWN.as_ptr().cast(), {
        usize::try_from(result)
            .ok()
            .and_then(|index| flux_result::ALL.get(index))
            .map_or(UNKNOWN, |code| code.message())
            .as_ptr()
            .cast()
    })
}
