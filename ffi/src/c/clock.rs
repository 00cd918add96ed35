//! `flux_clock`: a manual clock so that C tests drive time and never sleep.

use super::args::write_out;
use super::error::Failure;
use super::result::flux_result;
use flux_core::{Clock, ManualClock};
use std::sync::Arc;

/// A clock that moves only when told to (`flux_clock_advance`, `flux_clock_set`), for tests
/// and simulations. Opaque: create with `flux_clock_new_manual`, release with
/// `flux_clock_free`. Thread-safe.
pub struct flux_clock {
    pub(crate) clock: Arc<ManualClock>,
}

/// Creates a manual clock standing at `start_ns` nanoseconds since the Unix epoch and writes
/// the new handle to `*out`.
///
/// Pass it in `flux_limiter_options.clock` to make limiters read time from it. Returns
/// `FLUX_RESULT_OK`, or `FLUX_RESULT_NULL_ARGUMENT` when `out` is NULL (`*out` untouched).
///
/// Ownership: the caller owns the new clock and releases it with `flux_clock_free`. Limiters
/// built with it keep their own reference, so it may be freed before them.
/// Thread safety: safe to call from any thread.
///
/// # Safety
/// `out` must be NULL or valid for a write of one pointer.
#[no_mangle]
pub unsafe extern "C" fn flux_clock_new_manual(
    start_ns: u64,
    out: *mut *mut flux_clock,
) -> flux_result {
    ffi_guard!({
        let out = non_null!(out);
        let clock = Box::new(flux_clock {
            clock: Arc::new(ManualClock::new(start_ns)),
        });
        // SAFETY: non-NULL and writable per the contract.
        unsafe { write_out(out, Box::into_raw(clock)) };
        Ok(())
    })
}

/// Moves `clock` forward by `delta_ns` nanoseconds.
///
/// Returns `FLUX_RESULT_OK`; `FLUX_RESULT_NULL_ARGUMENT` when `clock` is NULL;
/// `FLUX_RESULT_INVALID_ARGUMENT` when the time would pass UINT64_MAX (the clock is unchanged).
///
/// Thread safety: safe to call concurrently with any other call on the same clock and on the
/// limiters using it (the overflow check is not atomic with concurrent advances).
///
/// # Safety
/// `clock` must be NULL or a live handle from `flux_clock_new_manual`.
#[no_mangle]
pub unsafe extern "C" fn flux_clock_advance(
    clock: *const flux_clock,
    delta_ns: u64,
) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and live per the contract.
        let clock = unsafe { &*non_null!(clock) };
        let now = clock.clock.now();
        if now.checked_add(delta_ns).is_none() {
            return Err(Failure::new(
                flux_result::InvalidArgument,
                format!("flux_clock_advance: {now} + delta_ns {delta_ns} overflows uint64_t"),
            ));
        }
        clock.clock.advance(delta_ns);
        Ok(())
    })
}

/// Sets `clock` to `now_ns` nanoseconds since the Unix epoch (it may go backwards).
///
/// Returns `FLUX_RESULT_OK`, or `FLUX_RESULT_NULL_ARGUMENT` when `clock` is NULL.
///
/// Thread safety: safe to call concurrently with any other call on the same clock.
///
/// # Safety
/// `clock` must be NULL or a live handle from `flux_clock_new_manual`.
#[no_mangle]
pub unsafe extern "C" fn flux_clock_set(clock: *const flux_clock, now_ns: u64) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and live per the contract.
        let clock = unsafe { &*non_null!(clock) };
        clock.clock.set(now_ns);
        Ok(())
    })
}

/// Writes the time of `clock` (nanoseconds since the Unix epoch) to `*out`.
///
/// Returns `FLUX_RESULT_OK`, or `FLUX_RESULT_NULL_ARGUMENT` when `clock` or `out` is NULL
/// (`*out` untouched).
///
/// Thread safety: safe to call concurrently with any other call on the same clock.
///
/// # Safety
/// `clock` must be NULL or a live handle; `out` must be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn flux_clock_now(clock: *const flux_clock, out: *mut u64) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and live per the contract.
        let clock = unsafe { &*non_null!(clock) };
        let out = non_null!(out);
        // SAFETY: non-NULL and writable per the contract.
        unsafe { write_out(out, clock.clock.now()) };
        Ok(())
    })
}

/// Releases a clock made by `flux_clock_new_manual`. NULL is accepted and does nothing.
///
/// Limiters built with the clock keep working: they hold their own reference.
/// Thread safety: no other call may use this handle during or after this one.
///
/// # Safety
/// `clock` must be NULL or a live handle from `flux_clock_new_manual`, freed only once.
#[no_mangle]
pub unsafe extern "C" fn flux_clock_free(clock: *mut flux_clock) {
    ffi_guard!(on_panic = (), {
        if !clock.is_null() {
            // SAFETY: made by Box::into_raw in flux_clock_new_manual, freed once.
            drop(unsafe { Box::from_raw(clock) });
        }
    })
}
