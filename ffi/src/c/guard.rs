//! The one panic-catching macro every exported function runs in, and the one NULL check.

use super::error::{set_last_error, Failure};
use super::result::flux_result;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs the body of an exported function so that no panic unwinds into C.
///
/// - `ffi_guard!({ ...; Ok(()) })`: the body is a `Result<(), Failure>`; the function returns
///   `FLUX_RESULT_OK`, the failure's code (recording its message as the last error), or
///   `FLUX_RESULT_PANIC`.
/// - `ffi_guard!(on_panic = value, { ... })`: the body yields the function's value; a panic
///   records its message and yields `value` instead.
///
/// `return` inside the body leaves the body, not the function, so `non_null!` and `?` work.
macro_rules! ffi_guard {
    ($body:block) => {
        $crate::c::guard::catch_result(
            move || -> ::std::result::Result<(), $crate::c::error::Failure> { $body },
        )
    };
    (on_panic = $fallback:expr, $body:block) => {
        $crate::c::guard::catch_value($fallback, move || $body)
    };
}

/// Returns early from an [`ffi_guard!`] body with `FLUX_RESULT_NULL_ARGUMENT` when the pointer
/// argument is NULL (the message names the argument, or `$name`); evaluates to the (non-NULL)
/// pointer otherwise.
macro_rules! non_null {
    ($ptr:ident) => {
        non_null!($ptr, stringify!($ptr))
    };
    ($ptr:expr, $name:expr) => {{
        let ptr = $ptr;
        if ptr.is_null() {
            return Err($crate::c::error::Failure::null($name));
        }
        ptr
    }};
}

/// The runtime half of `ffi_guard!` for fallible functions.
#[inline(always)]
pub(crate) fn catch_result(body: impl FnOnce() -> Result<(), Failure>) -> flux_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => flux_result::Ok,
        Ok(Err(failure)) => failure.record(),
        Err(payload) => record_panic(payload),
    }
}

/// The runtime half of `ffi_guard!` for functions that return a value.
#[inline(always)]
pub(crate) fn catch_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            record_panic(payload);
            fallback
        }
    }
}

/// Records a caught panic as the last error.
#[cold]
#[inline(never)]
fn record_panic(payload: Box<dyn Any + Send>) -> flux_result {
    let detail = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let message = format!("internal error: flux panicked: {detail}");
    // A payload whose destructor panics again would abort; never run it.
    std::mem::forget(payload);
    set_last_error(&message);
    flux_result::Panic
}
