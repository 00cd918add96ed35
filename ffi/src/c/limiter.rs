//! `flux_limiter`: one limit (algorithm + quota + store) applied to many keys.

use super::algorithm;
use super::args::{self, c_str, write_out};
use super::clock::flux_clock;
use super::decision::flux_decision;
use super::error::Failure;
use super::result::flux_result;
use flux_core::{Error, Limiter, LimiterBuilder, Quota};
use std::ffi::c_char;

/// One rate limit applied to many keys, its state in the embedded (in-process) store, in
/// Redis, or in a shared-memory region of the machine.
///
/// Opaque: create with `flux_limiter_new` (embedded store), `flux_limiter_new_redis` or
/// `flux_limiter_new_shared`, release with `flux_limiter_free`. Thread-safe:
/// every function except `flux_limiter_free` may be called on the same handle from any number
/// of threads at once without locking on the caller's side; each hit is one atomic update of
/// its key's state.
pub struct flux_limiter {
    pub(crate) limiter: Limiter,
}

impl flux_limiter {
    /// The handle of a core limiter, whatever its store: the core says where each decision
    /// came from and applies the limit's failure policy (see docs/architecture.md, *Failures*).
    pub(crate) fn new(limiter: Limiter) -> flux_limiter {
        flux_limiter { limiter }
    }

    #[inline]
    fn hit(&self, key: &str, cost: u64) -> Result<flux_decision, Error> {
        Ok(flux_decision::of(self.limiter.hit_outcome(key, cost)?))
    }

    fn refund(&self, key: &str, cost: u64) -> Result<flux_decision, Error> {
        Ok(flux_decision::of(self.limiter.refund_outcome(key, cost)?))
    }

    fn peek(&self, key: &str) -> Result<flux_decision, Error> {
        Ok(flux_decision::of(self.limiter.peek_outcome(key)?))
    }
}

/// What `flux_limiter_hit`, `_peek` and `_refund` share: check the pointers, read the key,
/// let `decide` answer, and write the decision to `*out` (untouched on failure).
///
/// # Safety
/// As for `flux_limiter_hit`.
#[inline(always)]
unsafe fn decide_on_key(
    limiter: *const flux_limiter,
    key: *const c_char,
    key_len: usize,
    out: *mut flux_decision,
    decide: impl FnOnce(&flux_limiter, &str) -> Result<flux_decision, Error>,
) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and live per the contract.
        let limiter = unsafe { &*non_null!(limiter) };
        let out = non_null!(out);
        // SAFETY: readable for key_len bytes per the contract.
        let key = unsafe { args::key(key, key_len) }?;
        let decision = decide(limiter, key)?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { write_out(out, decision) };
        Ok(())
    })
}

/// How to build a limiter. Zero-initialise it (`flux_limiter_options opts = {0};`), then set
/// at least `requests` and `period_ns`: every other field's zero value means its default.
///
/// The quota is `requests` hits per `period_ns` nanoseconds with a capacity of `burst` hits
/// at once (the same semantics in every store and language: see the README).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct flux_limiter_options {
    /// N: hits allowed per period; at least 1.
    pub requests: u64,
    /// T: the period in nanoseconds; above 0, at most one year (31622400 s).
    pub period_ns: u64,
    /// B: the capacity, how many hits pass at once from a fresh key; 0 means `requests`.
    pub burst: u64,
    /// The algorithm: a `flux_algorithm` value; 0 is `FLUX_ALGORITHM_GCRA`.
    pub algorithm: u32,
    /// Keep at most about this many keys, evicting the least recently used; 0 means no bound
    /// (keys back to full capacity are still dropped, so idle keys cost nothing). Must be 0
    /// for Redis.
    pub max_keys: usize,
    /// The clock to read time from (borrowed during `flux_limiter_new`; the limiter keeps its
    /// own reference); NULL means the system clock. Must be NULL for Redis (Redis's time).
    pub clock: *const flux_clock,
    /// A NUL-terminated UTF-8 prefix naming this limit's keys in Redis (copied); NULL means "".
    /// The embedded store keeps every limiter's keys apart whatever it is.
    pub prefix: *const c_char,
}

/// Builds a limiter on the embedded store from `*options` and writes the new handle to `*out`.
///
/// Returns `FLUX_RESULT_OK`, or on failure (with `*out` untouched and `flux_last_error()`
/// naming the bad value):
/// - `FLUX_RESULT_NULL_ARGUMENT`: `options` or `out` is NULL;
/// - `FLUX_RESULT_INVALID_REQUESTS`: `requests` is 0 (or finer than one per nanosecond);
/// - `FLUX_RESULT_INVALID_PERIOD`: `period_ns` is 0 or longer than one year;
/// - `FLUX_RESULT_INVALID_BURST`: `burst` is too large for the rate;
/// - `FLUX_RESULT_UNKNOWN_ALGORITHM`: `algorithm` is not a `flux_algorithm` value;
/// - `FLUX_RESULT_INVALID_UTF8`: `prefix` is not UTF-8.
///
/// Ownership: `options` (and the strings it points to) is borrowed for the duration of the
/// call. The caller owns the new limiter and releases it with `flux_limiter_free`.
/// Thread safety: safe to call from any thread.
///
/// # Safety
/// `options` must be NULL or point to an initialised `flux_limiter_options` whose `clock` is
/// NULL or a live clock and whose `prefix` is NULL or NUL-terminated; `out` must be NULL or
/// valid for a write of one pointer.
#[no_mangle]
pub unsafe extern "C" fn flux_limiter_new(
    options: *const flux_limiter_options,
    out: *mut *mut flux_limiter,
) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and initialised per the contract.
        let options = unsafe { &*non_null!(options) };
        let out = non_null!(out);
        // SAFETY: the options' pointers are valid per the contract.
        let mut builder = unsafe { builder(options) }?;
        if !options.clock.is_null() {
            // SAFETY: a live clock handle per the contract.
            let clock = unsafe { &*options.clock };
            builder = builder.clock(clock.clock.clone());
        }
        let limiter = flux_limiter::new(builder.build_memory()?);
        // SAFETY: non-NULL and writable per the contract.
        unsafe { write_out(out, Box::into_raw(Box::new(limiter))) };
        Ok(())
    })
}

/// A builder for `options`' quota, algorithm, max_keys and prefix (not its clock).
///
/// # Safety
/// `options.prefix` must be NULL or NUL-terminated.
pub(crate) unsafe fn builder(options: &flux_limiter_options) -> Result<LimiterBuilder, Failure> {
    let quota = Quota::new(
        options.requests,
        options.period_ns,
        (options.burst != 0).then_some(options.burst),
    )
    .map_err(|error| {
        Failure::from(error).with_context(format!(
            " (flux_limiter_options: requests = {}, period_ns = {}, burst = {})",
            options.requests, options.period_ns, options.burst
        ))
    })?;
    let mut builder = Limiter::builder(quota)
        .algorithm(algorithm::kind(options.algorithm)?)
        .max_keys((options.max_keys != 0).then_some(options.max_keys));
    if !options.prefix.is_null() {
        // SAFETY: NUL-terminated per the contract.
        builder = builder.prefix(unsafe { c_str(options.prefix, "prefix") }?);
    }
    Ok(builder)
}

/// Releases a limiter made by `flux_limiter_new` (with the state of all its keys) or
/// `flux_limiter_new_redis` (the state stays in Redis). NULL is accepted and does nothing.
///
/// Thread safety: no other call may use this handle during or after this one.
///
/// # Safety
/// `limiter` must be NULL or a live handle from `flux_limiter_new` or
/// `flux_limiter_new_redis`, freed only once.
#[no_mangle]
pub unsafe extern "C" fn flux_limiter_free(limiter: *mut flux_limiter) {
    ffi_guard!(on_panic = (), {
        if !limiter.is_null() {
            // SAFETY: made by Box::into_raw in flux_limiter_new, freed once.
            drop(unsafe { Box::from_raw(limiter) });
        }
    })
}

/// Counts a hit of `cost` on the key `key[0 .. key_len)` if it passes, and writes the decision
/// to `*out`. A denied hit changes nothing and still returns `FLUX_RESULT_OK`: look at
/// `out->allowed`.
///
/// The key is `key_len` bytes of UTF-8 (no NUL terminator needed; any NUL inside is part of
/// the key). Returns `FLUX_RESULT_OK`, or on failure (nothing counted, `*out` untouched,
/// details in `flux_last_error()`):
/// - `FLUX_RESULT_NULL_ARGUMENT`: `limiter`, `key` (even with `key_len` 0) or `out` is NULL;
/// - `FLUX_RESULT_INVALID_UTF8`: the key is not UTF-8;
/// - `FLUX_RESULT_INVALID_COST`: `cost` is 0 or larger than the capacity (`limit`);
/// - `FLUX_RESULT_STORE_ERROR`: (Redis) Redis failed and the store fails closed. Failing open,
///   the hit passes instead, with `out->source` `FLUX_SOURCE_FAIL_OPEN`.
///
/// On Redis a hit takes one round trip (at most the store's `timeout_ms`).
///
/// Ownership: `key` is borrowed for the duration of the call.
/// Thread safety: safe to call concurrently on the same limiter from any number of threads.
///
/// # Safety
/// `limiter` must be NULL or a live handle; `key` must be NULL or point to `key_len` readable
/// bytes; `out` must be NULL or valid for a write of one `flux_decision`.
#[no_mangle]
pub unsafe extern "C" fn flux_limiter_hit(
    limiter: *const flux_limiter,
    key: *const c_char,
    key_len: usize,
    cost: u64,
    out: *mut flux_decision,
) -> flux_result {
    // SAFETY: the caller keeps this function's contract, which is `decide_on_key`'s.
    unsafe {
        decide_on_key(limiter, key, key_len, out, |limiter, key| {
            limiter.hit(key, cost)
        })
    }
}

/// Writes to `*out` what a hit of cost 1 on the key `key[0 .. key_len)` would see now,
/// without counting anything: `out->allowed` says whether it would pass.
///
/// Returns `FLUX_RESULT_OK`, or on failure (`*out` untouched, details in `flux_last_error()`):
/// `FLUX_RESULT_NULL_ARGUMENT` (`limiter`, `key` or `out` is NULL),
/// `FLUX_RESULT_INVALID_UTF8`, or (Redis, failing closed) `FLUX_RESULT_STORE_ERROR`.
///
/// Ownership: `key` is borrowed for the duration of the call.
/// Thread safety: safe to call concurrently on the same limiter from any number of threads.
///
/// # Safety
/// As for `flux_limiter_hit`.
#[no_mangle]
pub unsafe extern "C" fn flux_limiter_peek(
    limiter: *const flux_limiter,
    key: *const c_char,
    key_len: usize,
    out: *mut flux_decision,
) -> flux_result {
    // SAFETY: the caller keeps this function's contract, which is `decide_on_key`'s.
    unsafe { decide_on_key(limiter, key, key_len, out, |limiter, key| limiter.peek(key)) }
}

/// Gives back `cost` units of the key `key[0 .. key_len)`'s capacity, e.g. for a hit taken
/// before a request was handled that should not count after all, and writes to `*out` what a
/// hit of cost 1 would see right after (as `flux_limiter_peek` would).
///
/// Never lifts the key above full capacity (refunding more than was taken stops at full); a
/// key that is back at full capacity, expired or never seen is left as it is and no state is
/// created for it. Atomic with the store's hits: one locked update (embedded), one
/// compare-and-swap (shared memory) or one script (Redis, one round trip at Redis's time).
///
/// The key is `key_len` bytes of UTF-8, as for `flux_limiter_hit`. Returns `FLUX_RESULT_OK`,
/// or on failure (nothing given back, `*out` untouched, details in `flux_last_error()`):
/// - `FLUX_RESULT_NULL_ARGUMENT`: `limiter`, `key` (even with `key_len` 0) or `out` is NULL;
/// - `FLUX_RESULT_INVALID_UTF8`: the key is not UTF-8;
/// - `FLUX_RESULT_INVALID_COST`: `cost` is 0 or larger than the capacity (`limit`);
/// - `FLUX_RESULT_STORE_ERROR`: (Redis) Redis failed and the store fails closed. Failing open,
///   the refund is lost (the hit stays counted) and `out->source` is `FLUX_SOURCE_FAIL_OPEN`.
///
/// Ownership: `key` is borrowed for the duration of the call.
/// Thread safety: safe to call concurrently on the same limiter from any number of threads,
/// hits and refunds mixed.
///
/// # Safety
/// As for `flux_limiter_hit`.
#[no_mangle]
pub unsafe extern "C" fn flux_limiter_refund(
    limiter: *const flux_limiter,
    key: *const c_char,
    key_len: usize,
    cost: u64,
    out: *mut flux_decision,
) -> flux_result {
    // SAFETY: the caller keeps this function's contract, which is `decide_on_key`'s.
    unsafe {
        decide_on_key(limiter, key, key_len, out, |limiter, key| {
            limiter.refund(key, cost)
        })
    }
}

/// Puts the key `key[0 .. key_len)` back to full capacity (forgets its state).
///
/// Returns `FLUX_RESULT_OK`, or on failure (details in `flux_last_error()`):
/// `FLUX_RESULT_NULL_ARGUMENT` (`limiter` or `key` is NULL), `FLUX_RESULT_INVALID_UTF8`, or
/// (Redis, whatever the failure policy) `FLUX_RESULT_STORE_ERROR`.
///
/// Ownership: `key` is borrowed for the duration of the call.
/// Thread safety: safe to call concurrently on the same limiter from any number of threads.
///
/// # Safety
/// `limiter` must be NULL or a live handle; `key` must be NULL or point to `key_len` readable
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn flux_limiter_reset(
    limiter: *const flux_limiter,
    key: *const c_char,
    key_len: usize,
) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and live per the contract.
        let limiter = unsafe { &*non_null!(limiter) };
        // SAFETY: readable for key_len bytes per the contract.
        let key = unsafe { args::key(key, key_len) }?;
        limiter.limiter.reset(key)?;
        Ok(())
    })
}
