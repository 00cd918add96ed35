//! `flux_shared`: a shared-memory region that every process of the machine opens (C programs,
//! Python workers, any language that links the core), so that they share the same limits
//! exactly, with no server.

use super::args::{c_str, write_out};
use super::error::Failure;
use super::limiter::{builder, flux_limiter, flux_limiter_options};
use super::result::flux_result;
use flux_core::store::shared::{default_path, SharedRegion};
use std::ffi::c_char;

/// A shared-memory region (a memory-mapped file, under /dev/shm on Linux) holding the state of
/// limiters in every process that opens it. Opaque: create with `flux_shared_open`, release
/// with `flux_shared_free`. Thread-safe.
///
/// Unlike a `flux_redis`, a region stays valid in a child after `fork()`: the mapping is
/// inherited and shared, and the child's limiters keep sharing state with the parent's.
pub struct flux_shared {
    pub(crate) region: SharedRegion,
}

/// Which region to open. Zero-initialise it (`flux_shared_options opts = {0};`): every zero
/// field means its default, the region named after the user and "flux:".
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct flux_shared_options {
    /// The region file (NUL-terminated); NULL means the default path for `key_prefix`:
    /// `/dev/shm/flux-<uid>-<key_prefix>` on Linux (non-alphanumeric characters of the prefix
    /// as `_`), the temporary directory elsewhere. Python's `[shared]` default is the same.
    pub path: *const c_char,
    /// Names the default region (NUL-terminated); NULL means "flux:" (Python's default
    /// `key_prefix`, so that C and Python processes meet in one region). Ignored when `path`
    /// is set.
    pub key_prefix: *const c_char,
    /// The most keys the region holds at once (every limit in it together), used when the
    /// region is created; 0 means 65536 (2.5 MiB). An existing region keeps its size: a
    /// non-zero value that differs from it is an error.
    pub max_keys: usize,
}

/// What a region holds now (a scan of every slot: for monitoring, not for hot paths).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct flux_shared_stats {
    /// Slots in the region: the most keys it holds at once.
    pub slots: u64,
    /// Keys held now (keys back at full capacity and not yet reused included).
    pub live: u64,
    /// Claims of a slot in progress, or left by a killed process until reused.
    pub pending: u64,
    /// Live keys evicted (least recently used first) to make room, since the region was
    /// created.
    pub evictions: u64,
}

/// Opens the region described by `*options`, creating it (mode 0600) if it does not exist,
/// and writes the new handle to `*out`.
///
/// Returns `FLUX_RESULT_OK`, or on failure (with `*out` untouched and `flux_last_error()`
/// naming the path and what to do):
/// - `FLUX_RESULT_NULL_ARGUMENT`: `options` or `out` is NULL;
/// - `FLUX_RESULT_INVALID_UTF8`: `path` or `key_prefix` is not UTF-8;
/// - `FLUX_RESULT_INVALID_ARGUMENT`: `max_keys` out of range;
/// - `FLUX_RESULT_STORE_ERROR`: the file cannot be created, opened, sized or mapped (missing
///   directory, no space, not a regular file), or it is not a usable region (another program's
///   file, another flux layout version, truncated, corrupted, another `max_keys`).
///
/// Ownership: `options` (and the strings it points to) is borrowed for the duration of the
/// call. The caller owns the new handle and releases it with `flux_shared_free`; limiters
/// built on it keep their own reference, so it may be freed before them.
/// Thread safety: safe to call from any thread.
///
/// # Safety
/// `options` must be NULL or point to an initialised `flux_shared_options` whose strings are
/// NULL or NUL-terminated; `out` must be NULL or valid for a write of one pointer.
#[no_mangle]
pub unsafe extern "C" fn flux_shared_open(
    options: *const flux_shared_options,
    out: *mut *mut flux_shared,
) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and initialised per the contract.
        let options = unsafe { &*non_null!(options) };
        let out = non_null!(out);
        let path = if options.path.is_null() {
            let prefix = if options.key_prefix.is_null() {
                "flux:"
            } else {
                // SAFETY: NUL-terminated per the contract.
                unsafe { c_str(options.key_prefix, "key_prefix") }?
            };
            default_path(prefix)
        } else {
            // SAFETY: NUL-terminated per the contract.
            unsafe { c_str(options.path, "path") }?.into()
        };
        let max_keys = (options.max_keys != 0).then_some(options.max_keys);
        let region = SharedRegion::open(path, max_keys)?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { write_out(out, Box::into_raw(Box::new(flux_shared { region }))) };
        Ok(())
    })
}

/// Releases a region handle made by `flux_shared_open` (the region file stays, with its
/// state, for the other processes). NULL is accepted and does nothing.
///
/// Limiters built on it keep working: they hold their own reference to the mapping.
/// Thread safety: no other call may use this handle during or after this one.
///
/// # Safety
/// `shared` must be NULL or a live handle from `flux_shared_open`, freed only once.
#[no_mangle]
pub unsafe extern "C" fn flux_shared_free(shared: *mut flux_shared) {
    ffi_guard!(on_panic = (), {
        if !shared.is_null() {
            // SAFETY: made by Box::into_raw in flux_shared_open, freed once.
            drop(unsafe { Box::from_raw(shared) });
        }
    })
}

/// Writes what the region holds now to `*out`.
///
/// Returns `FLUX_RESULT_OK`, or `FLUX_RESULT_NULL_ARGUMENT` when `shared` or `out` is NULL
/// (`*out` untouched).
/// Thread safety: safe to call concurrently with any other call on the same handle.
///
/// # Safety
/// `shared` must be NULL or a live handle; `out` must be NULL or valid for a write of one
/// `flux_shared_stats`.
#[no_mangle]
pub unsafe extern "C" fn flux_shared_get_stats(
    shared: *const flux_shared,
    out: *mut flux_shared_stats,
) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and live per the contract.
        let shared = unsafe { &*non_null!(shared) };
        let out = non_null!(out);
        let stats = shared.region.stats();
        let stats = flux_shared_stats {
            slots: stats.slots as u64,
            live: stats.live as u64,
            pending: stats.pending as u64,
            evictions: stats.evictions,
        };
        // SAFETY: non-NULL and writable per the contract.
        unsafe { write_out(out, stats) };
        Ok(())
    })
}

/// Puts every key of every limit in the region back to full capacity, for every process
/// that uses it (an operator's "clear"), and writes how many keys were held to `*cleared`.
/// A hit racing with it lands wholly before the clear of its key or finds the key fresh.
///
/// Returns `FLUX_RESULT_OK`, or `FLUX_RESULT_NULL_ARGUMENT` when `shared` or `cleared` is
/// NULL (nothing is cleared, `*cleared` untouched).
/// Thread safety: safe to call concurrently with any other call on the same handle.
///
/// # Safety
/// `shared` must be NULL or a live handle; `cleared` must be NULL or valid for a write of one
/// `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn flux_shared_clear(
    shared: *const flux_shared,
    cleared: *mut u64,
) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and live per the contract.
        let shared = unsafe { &*non_null!(shared) };
        let cleared = non_null!(cleared);
        let count = shared.region.clear() as u64;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { write_out(cleared, count) };
        Ok(())
    })
}

/// Builds a limiter whose state lives in the region `shared` from `*options` and writes the
/// new handle to `*out`. Every process whose limiter has the same algorithm and `prefix` on
/// the same region shares its keys' state: they see one limit, exactly. Hits are lock-free
/// (one compare-and-swap) and never wait for another process.
///
/// `options->clock` may be set (tests); NULL means the machine's wall clock
/// (CLOCK_REALTIME), which every process of the machine reads alike. `max_keys` must be 0:
/// the region's size was set when it was created (`flux_shared_options.max_keys`).
///
/// Returns `FLUX_RESULT_OK`, or the failures of `flux_limiter_new`; also
/// `FLUX_RESULT_NULL_ARGUMENT` when `shared` is NULL, and `FLUX_RESULT_INVALID_ARGUMENT` when
/// `max_keys` is set, for `FLUX_ALGORITHM_SLIDING_LOG` (its state does not fit a slot) and for
/// a sliding window too large for the region's 64-bit state (the message gives the bound).
/// On failure `*out` is untouched.
///
/// Ownership: `options` is borrowed for the duration of the call; the limiter keeps its own
/// reference to the region. The caller owns the new limiter (`flux_limiter_free`).
/// Thread safety: safe to call from any thread.
///
/// # Safety
/// As for `flux_limiter_new`; `shared` must be NULL or a live handle from `flux_shared_open`.
#[no_mangle]
pub unsafe extern "C" fn flux_limiter_new_shared(
    options: *const flux_limiter_options,
    shared: *const flux_shared,
    out: *mut *mut flux_limiter,
) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and initialised per the contract.
        let options = unsafe { &*non_null!(options) };
        // SAFETY: non-NULL and live per the contract.
        let shared = unsafe { &*non_null!(shared) };
        let out = non_null!(out);
        if options.max_keys != 0 {
            return Err(Failure::new(
                flux_result::InvalidArgument,
                format!(
                    "max_keys must be 0 for a shared limiter (the region's size is set by \
                     flux_shared_options.max_keys), got {}",
                    options.max_keys
                ),
            ));
        }
        // SAFETY: the options' pointers are valid per the contract.
        let mut builder = unsafe { builder(options) }?;
        if !options.clock.is_null() {
            // SAFETY: a live clock handle per the contract.
            let clock = unsafe { &*options.clock };
            builder = builder.clock(clock.clock.clone());
        }
        let limiter = flux_limiter::new(builder.build_shared(&shared.region)?);
        // SAFETY: non-NULL and writable per the contract.
        unsafe { write_out(out, Box::into_raw(Box::new(limiter))) };
        Ok(())
    })
}
