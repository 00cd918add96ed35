//! The C ABI: the `flux_*` functions declared in `include/flux.h`.
//!
//! Conventions (the header repeats them for C users):
//! - Opaque handles (`flux_limiter`, `flux_clock`, `flux_redis`, `flux_shared`) are created by `_new`
//!   functions and released by `_free` functions, which accept NULL.
//! - Fallible functions return a [`flux_result`] (`FLUX_RESULT_OK` = 0, stable numbers) and write
//!   their results through out-params, which stay untouched on failure. [`flux_last_error`]
//!   then describes the failure, naming the bad value.
//! - Every exported body runs inside `ffi_guard!`: a panic becomes `FLUX_RESULT_PANIC` (or a
//!   documented fallback value) and never unwinds into C.
//! - Keys are `(const char *key, size_t key_len)`: any bytes up to `key_len`, which must be
//!   valid UTF-8; no NUL terminator is needed or read.
//! - Times are integer nanoseconds (`uint64_t`), as in the core.
//!
//! One file per job: `guard` (panic catching and NULL checks), `error` (the thread-local last
//! error), `result` (codes and the core error mapping), `args` (keys and C strings), `version`,
//! `algorithm`, `clock`, `decision`, `limiter`, `multi` (the all-or-nothing multi-limit hit),
//! `redis` (limiters whose state lives in Redis), `shared` (limiters whose state lives in a
//! shared-memory region of the machine).

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]

#[macro_use]
mod guard;

mod algorithm;
mod args;
mod clock;
mod decision;
mod error;
mod limiter;
mod multi;
mod redis;
mod result;
#[cfg(unix)]
mod shared;
mod version;

#[cfg(test)]
mod tests;

pub use algorithm::{flux_algorithm, flux_algorithm_from_name, flux_algorithm_name};
pub use clock::{
    flux_clock, flux_clock_advance, flux_clock_free, flux_clock_new_manual, flux_clock_now,
    flux_clock_set,
};
pub use decision::{flux_decision, flux_source};
pub use error::flux_last_error;
pub use limiter::{
    flux_limiter, flux_limiter_free, flux_limiter_hit, flux_limiter_new, flux_limiter_options,
    flux_limiter_peek, flux_limiter_reset,
};
pub use multi::{flux_hit, flux_hit_many};
pub use redis::{
    flux_limiter_new_redis, flux_redis, flux_redis_free, flux_redis_new, flux_redis_options,
    flux_redis_ping,
};
pub use result::{flux_result, flux_result_message};
#[cfg(unix)]
pub use shared::{
    flux_limiter_new_shared, flux_shared, flux_shared_clear, flux_shared_free,
    flux_shared_get_stats, flux_shared_open, flux_shared_options, flux_shared_stats,
};
pub use version::{
    flux_version, FLUX_VERSION_MAJOR, FLUX_VERSION_MINOR, FLUX_VERSION_NUMBER, FLUX_VERSION_PATCH,
};
