//! `flux_redis`: a connection to Redis shared by any number of limiters, so that every process
//! and every language using one Redis sees one limit.

use super::args::{c_str, write_out};
use super::error::Failure;
use super::limiter::{builder, flux_limiter, flux_limiter_options};
use super::result::flux_result;
use flux_core::store::redis::{RedisConfig, RedisStore};
use std::ffi::c_char;

/// A connection to Redis (a connection pool, a circuit breaker and a local deny cache) shared
/// by any number of limiters. Opaque: create with `flux_redis_new`, release with
/// `flux_redis_free`. Thread-safe.
///
/// After `fork()`, a child process must not use its parent's `flux_redis` or the limiters
/// built on it (their connections are the parent's sockets): it makes its own.
pub struct flux_redis {
    pub(crate) store: RedisStore,
}

/// How to reach Redis. Zero-initialise it (`flux_redis_options opts = {0};`): every zero field
/// means its default, which is a Redis on 127.0.0.1:6379 that fails open.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct flux_redis_options {
    /// `redis://[user:password@]host[:port][/db]`, `unix:///path/to/redis.sock[?db=N]` or
    /// `redis+unix://...` (NUL-terminated); NULL means `redis://127.0.0.1:6379`.
    pub url: *const c_char,
    /// Redis Cluster seed nodes, `host:port` or URLs: an array of `node_count` NUL-terminated
    /// strings (may be NULL when `node_count` is 0). A non-empty list implies `cluster`.
    pub nodes: *const *const c_char,
    /// The number of strings in `nodes`.
    pub node_count: usize,
    /// Talk to a Redis Cluster, seeded by `nodes`, else by `url`.
    pub cluster: bool,
    /// Connections kept open (the pool size); 0 means 5.
    pub pool_size: u32,
    /// Connect and command timeout in milliseconds: no hit waits longer for Redis (waiting for
    /// a pooled connection included); 0 means 200.
    pub timeout_ms: u64,
    /// Prepended to every key (NUL-terminated); NULL means "flux:" (the Python default, so
    /// that C and Python limits with the same prefix share their state).
    pub key_prefix: *const c_char,
    /// false (the default): when Redis fails, hits pass (fail open) with `source`
    /// `FLUX_SOURCE_FAIL_OPEN`; true: they fail with `FLUX_RESULT_STORE_ERROR` (fail closed).
    /// Either way a circuit breaker stops calling a dead Redis for a while, so a hit then
    /// costs microseconds, not a timeout.
    pub fail_closed: bool,
}

/// The core configuration for `options`.
///
/// # Safety
/// The pointers in `options` must be as `flux_redis_new` documents.
unsafe fn config(options: &flux_redis_options) -> Result<RedisConfig, Failure> {
    let mut config = RedisConfig::default();
    if !options.url.is_null() {
        // SAFETY: NUL-terminated per the contract.
        config.url = Some(unsafe { c_str(options.url, "url") }?.to_owned());
    }
    if options.node_count > 0 {
        let nodes = options.nodes;
        let nodes = non_null!(nodes);
        if options.node_count > isize::MAX as usize / std::mem::size_of::<*const c_char>() {
            return Err(Failure::new(
                flux_result::InvalidArgument,
                format!("node_count {} is too large", options.node_count),
            ));
        }
        // SAFETY: readable for node_count pointers per the contract.
        let nodes = unsafe { std::slice::from_raw_parts(nodes, options.node_count) };
        for (index, node) in nodes.iter().enumerate() {
            let name = format!("nodes[{index}]");
            // SAFETY: NULL or NUL-terminated per the contract.
            config
                .nodes
                .push(unsafe { c_str(*node, &name) }?.to_owned());
        }
    }
    config.cluster = options.cluster;
    if options.pool_size != 0 {
        config.pool_size = options.pool_size;
    }
    if options.timeout_ms != 0 {
        config.timeout_ms = options.timeout_ms;
    }
    if !options.key_prefix.is_null() {
        // SAFETY: NUL-terminated per the contract.
        config.key_prefix = unsafe { c_str(options.key_prefix, "key_prefix") }?.to_owned();
    }
    config.fail_silently = !options.fail_closed;
    Ok(config)
}

/// Creates a connection to Redis from `*options` and writes the new handle to `*out`.
///
/// Connecting is lazy: a Redis that is down now is not an error here (see `flux_redis_ping`),
/// only a configuration that can never work is. Returns `FLUX_RESULT_OK`, or on failure (with
/// `*out` untouched and `flux_last_error()` naming the bad value):
/// - `FLUX_RESULT_NULL_ARGUMENT`: `options` or `out` is NULL, or `nodes` is NULL while
///   `node_count` is not 0, or one of the nodes is NULL;
/// - `FLUX_RESULT_INVALID_UTF8`: a string is not UTF-8;
/// - `FLUX_RESULT_INVALID_ARGUMENT`: a URL flux cannot use (scheme, syntax, `rediss://`
///   without TLS support, a database other than 0 on a cluster).
///
/// Ownership: `options` (and the strings it points to) is borrowed for the duration of the
/// call. The caller owns the new handle and releases it with `flux_redis_free`; limiters built
/// on it keep their own reference, so it may be freed before them.
/// Thread safety: safe to call from any thread.
///
/// # Safety
/// `options` must be NULL or point to an initialised `flux_redis_options` whose strings are
/// NULL or NUL-terminated and whose `nodes` is NULL or points to `node_count` such strings;
/// `out` must be NULL or valid for a write of one pointer.
#[no_mangle]
pub unsafe extern "C" fn flux_redis_new(
    options: *const flux_redis_options,
    out: *mut *mut flux_redis,
) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and initialised per the contract.
        let options = unsafe { &*non_null!(options) };
        let out = non_null!(out);
        // SAFETY: the options' pointers are valid per the contract.
        let config = unsafe { config(options) }?;
        let store = RedisStore::connect(config)?;
        let redis = Box::new(flux_redis { store });
        // SAFETY: non-NULL and writable per the contract.
        unsafe { write_out(out, Box::into_raw(redis)) };
        Ok(())
    })
}

/// Releases a connection made by `flux_redis_new`. NULL is accepted and does nothing.
///
/// Limiters built on it keep working: they hold their own reference, and the connections
/// close when the last of them is freed.
/// Thread safety: no other call may use this handle during or after this one.
///
/// # Safety
/// `redis` must be NULL or a live handle from `flux_redis_new`, freed only once.
#[no_mangle]
pub unsafe extern "C" fn flux_redis_free(redis: *mut flux_redis) {
    ffi_guard!(on_panic = (), {
        if !redis.is_null() {
            // SAFETY: made by Box::into_raw in flux_redis_new, freed once.
            drop(unsafe { Box::from_raw(redis) });
        }
    })
}

/// Sends one PING to Redis: `FLUX_RESULT_OK` when it answers within the timeout, else
/// `FLUX_RESULT_STORE_ERROR` (with the reason in `flux_last_error()`), whatever the failure
/// policy. `FLUX_RESULT_NULL_ARGUMENT` when `redis` is NULL.
///
/// Thread safety: safe to call concurrently with any other call on the same handle.
///
/// # Safety
/// `redis` must be NULL or a live handle from `flux_redis_new`.
#[no_mangle]
pub unsafe extern "C" fn flux_redis_ping(redis: *const flux_redis) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and live per the contract.
        let redis = unsafe { &*non_null!(redis) };
        redis.store.ping()?;
        Ok(())
    })
}

/// Builds a limiter whose state lives in Redis (`redis`) from `*options` and writes the new
/// handle to `*out`. Every process and language whose limiter has the same quota, algorithm,
/// `prefix` and Redis `key_prefix` shares its state: they see one limit.
///
/// Its keys are `{key_prefix}{prefix}{<key>}:<algorithm>`, expiring when back to full
/// capacity. Time is Redis's own (`TIME`), so `options->clock` must be NULL; `max_keys` must be
/// 0 (Redis bounds its own memory). Hits, peeks and resets then take one round trip each.
///
/// Returns `FLUX_RESULT_OK`, or the failures of `flux_limiter_new`; also
/// `FLUX_RESULT_NULL_ARGUMENT` when `redis` is NULL and `FLUX_RESULT_INVALID_ARGUMENT` when
/// `clock` or `max_keys` is set. On failure `*out` is untouched.
///
/// Ownership: `options` is borrowed for the duration of the call; the limiter keeps its own
/// reference to the connection. The caller owns the new limiter (`flux_limiter_free`).
/// Thread safety: safe to call from any thread.
///
/// # Safety
/// As for `flux_limiter_new`; `redis` must be NULL or a live handle from `flux_redis_new`.
#[no_mangle]
pub unsafe extern "C" fn flux_limiter_new_redis(
    options: *const flux_limiter_options,
    redis: *const flux_redis,
    out: *mut *mut flux_limiter,
) -> flux_result {
    ffi_guard!({
        // SAFETY: non-NULL and initialised per the contract.
        let options = unsafe { &*non_null!(options) };
        // SAFETY: non-NULL and live per the contract.
        let redis = unsafe { &*non_null!(redis) };
        let out = non_null!(out);
        if !options.clock.is_null() {
            return Err(Failure::new(
                flux_result::InvalidArgument,
                "clock must be NULL for a Redis limiter: it reads Redis's own time",
            ));
        }
        if options.max_keys != 0 {
            return Err(Failure::new(
                flux_result::InvalidArgument,
                format!(
                    "max_keys must be 0 for a Redis limiter (Redis expires idle keys itself), \
                     got {}",
                    options.max_keys
                ),
            ));
        }
        // SAFETY: the options' pointers are valid per the contract.
        let limiter = unsafe { builder(options) }?.build_redis(&redis.store)?;
        let limiter = Box::new(flux_limiter::new(limiter));
        // SAFETY: non-NULL and writable per the contract.
        unsafe { write_out(out, Box::into_raw(limiter)) };
        Ok(())
    })
}
