//! `flux_hit_many`: several limits in one all-or-nothing hit (`flux_core::hit_many`).

use super::args::{self, write_out};
use super::decision::{flux_decision, report_fail_open};
use super::error::Failure;
use super::limiter::flux_limiter;
use super::result::flux_result;
use flux_core::Limiter;
use std::ffi::c_char;

/// One element of a `flux_hit_many` batch: a hit of `cost` on the key `key[0 .. key_len)` of
/// `limiter`. Every field is borrowed for the duration of the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct flux_hit {
    /// The limiter (not NULL).
    pub limiter: *const flux_limiter,
    /// The key: `key_len` bytes of UTF-8 (not NULL, even when `key_len` is 0).
    pub key: *const c_char,
    /// The key's length in bytes.
    pub key_len: usize,
    /// The cost, from 1 to the limiter's capacity.
    pub cost: u64,
}

/// Hits every element of `hits[0 .. count)` atomically: either every limit allows and all of
/// them are counted, or none is counted. A route limited both to 10 per second and to 1000
/// per hour thus never spends its hourly budget on requests the per-second limit turns away.
///
/// On success writes `count` decisions, in order, to `out_decisions[0 .. count)` and whether
/// the whole batch passed to `*out_allowed`. When the batch is denied, the limits that denied
/// report as usual and those that would have passed report `allowed = true` with the state they
/// still have (nothing was taken from them): the batch passed iff every decision is allowed.
/// Every limiter of a batch must be on one store: all on the embedded store, where the same
/// limiter, and even the same key, may appear several times (later elements see the earlier
/// ones); or all on one `flux_redis`, where the batch is one atomic script (one round trip),
/// each (limiter, key) may appear once, and on a Redis Cluster every element must use the same
/// key (one identity, one hash slot); or all on shared-memory regions (`flux_shared`), where
/// every limit is checked and then hit in order (all or nothing, except that another process
/// taking the last unit of a later limit in between leaves the earlier ones counted for a
/// denied batch). A Redis failure gives `FLUX_RESULT_STORE_ERROR` when failing closed, or a
/// passing batch whose decisions say `FLUX_SOURCE_FAIL_OPEN`.
///
/// Returns `FLUX_RESULT_OK`, or on failure (nothing counted, outputs untouched, and
/// `flux_last_error()` naming the element, e.g. `hits[2]: key is not valid UTF-8 ...`):
/// - `FLUX_RESULT_NULL_ARGUMENT`: `out_allowed` is NULL; `hits` or `out_decisions` is NULL while
///   `count` is not 0; an element's `limiter` or `key` is NULL;
/// - `FLUX_RESULT_INVALID_UTF8`: an element's key is not UTF-8;
/// - `FLUX_RESULT_INVALID_COST`: an element's cost is 0 or larger than its limiter's capacity;
/// - `FLUX_RESULT_INVALID_ARGUMENT`: `count` is too large to be an array; the limiters are not
///   all on one store; (Redis) a (limiter, key) twice, or keys in different cluster slots;
/// - `FLUX_RESULT_STORE_ERROR`: (Redis, failing closed) Redis failed.
///
/// `count` 0 is a batch that passes: `*out_allowed` is true and nothing else is written.
///
/// Ownership: `hits` and everything it points to is borrowed for the duration of the call.
/// Thread safety: safe to call concurrently, with overlapping limiters and keys, from any
/// number of threads, and concurrently with `flux_limiter_hit` and the rest on the same
/// limiters (the locks involved are always taken in one global order).
///
/// # Safety
/// `hits` must be NULL or point to `count` readable `flux_hit`s whose limiters are NULL or
/// live and whose keys are NULL or readable for `key_len` bytes; `out_decisions` must be NULL
/// or valid for writing `count` `flux_decision`s; `out_allowed` must be NULL or valid for a
/// write.
#[no_mangle]
pub unsafe extern "C" fn flux_hit_many(
    hits: *const flux_hit,
    count: usize,
    out_decisions: *mut flux_decision,
    out_allowed: *mut bool,
) -> flux_result {
    ffi_guard!({
        let out_allowed = non_null!(out_allowed);
        if count == 0 {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { write_out(out_allowed, true) };
            return Ok(());
        }
        let hits = non_null!(hits);
        let out_decisions = non_null!(out_decisions);
        if count > isize::MAX as usize / std::mem::size_of::<flux_hit>() {
            return Err(Failure::new(
                flux_result::InvalidArgument,
                format!("count {count} is too large for an array of flux_hit"),
            ));
        }
        // SAFETY: non-NULL, readable for `count` elements per the contract, size checked above.
        let hits = unsafe { std::slice::from_raw_parts(hits, count) };
        let mut batch: Vec<(&Limiter, &str, u64)> = Vec::with_capacity(count);
        for (index, hit) in hits.iter().enumerate() {
            let at = |failure: Failure| failure.with_prefix(format!("hits[{index}]: "));
            if hit.limiter.is_null() {
                return Err(at(Failure::null("limiter")));
            }
            // SAFETY: non-NULL, so live per the contract.
            let limiter = unsafe { &*hit.limiter };
            // SAFETY: NULL or readable for key_len bytes per the contract.
            let key = unsafe { args::key(hit.key, hit.key_len) }.map_err(at)?;
            batch.push((&limiter.limiter, key, hit.cost));
        }
        // Costs, one store for the whole batch and how to hit it are the core's to check and
        // decide; its errors name the element (`hits[i]`, see `error.rs`).
        let outcome = flux_core::hit_many(&batch)?;
        if let Some(error) = outcome.error {
            report_fail_open(error);
        }
        let decisions: Vec<flux_decision> = outcome
            .decisions
            .into_iter()
            .map(|decision| flux_decision::new(decision, outcome.source))
            .collect();
        let allowed = decisions.iter().all(|decision| decision.allowed);
        for (index, decision) in decisions.into_iter().enumerate().take(count) {
            // SAFETY: writable for `count` elements per the contract; index < count.
            unsafe { write_out(out_decisions.add(index), decision) };
        }
        // SAFETY: non-NULL and writable per the contract.
        unsafe { write_out(out_allowed, allowed) };
        Ok(())
    })
}
