//! Rust-side checks of the C ABI; tests/c/ exercises it from real C and C++.

use super::guard::{catch_result, catch_value};
use super::*;
use flux_core::AlgorithmKind;
use std::ffi::{c_char, CStr};
use std::ptr;

fn text(ptr: *const c_char) -> String {
    assert!(!ptr.is_null());
    // SAFETY: the functions under test return NUL-terminated strings.
    unsafe { CStr::from_ptr(ptr) }.to_str().unwrap().to_owned()
}

fn last_error() -> String {
    text(flux_last_error())
}

fn options(requests: u64, period_ns: u64) -> flux_limiter_options {
    flux_limiter_options {
        requests,
        period_ns,
        burst: 0,
        algorithm: 0,
        max_keys: 0,
        clock: ptr::null(),
        prefix: ptr::null(),
    }
}

fn new_limiter(options: &flux_limiter_options) -> Result<*mut flux_limiter, flux_result> {
    let mut out = ptr::null_mut();
    // SAFETY: valid pointers.
    match unsafe { flux_limiter_new(options, &mut out) } {
        flux_result::Ok => Ok(out),
        code => {
            assert!(out.is_null(), "out-param untouched on failure");
            Err(code)
        }
    }
}

fn hit(limiter: *const flux_limiter, key: &[u8], cost: u64) -> Result<flux_decision, flux_result> {
    let mut out = flux_decision::default();
    // SAFETY: valid pointers.
    match unsafe { flux_limiter_hit(limiter, key.as_ptr().cast(), key.len(), cost, &mut out) } {
        flux_result::Ok => Ok(out),
        code => Err(code),
    }
}

#[test]
fn result_codes_keep_their_numbers() {
    let expected = [
        (flux_result::Ok, 0),
        (flux_result::Panic, 1),
        (flux_result::NullArgument, 2),
        (flux_result::InvalidUtf8, 3),
        (flux_result::InvalidRequests, 4),
        (flux_result::InvalidPeriod, 5),
        (flux_result::InvalidBurst, 6),
        (flux_result::InvalidCost, 7),
        (flux_result::UnknownAlgorithm, 8),
        (flux_result::InvalidKey, 9),
        (flux_result::InvalidArgument, 10),
        (flux_result::StoreError, 11),
    ];
    assert_eq!(expected.len(), flux_result::ALL.len());
    for ((code, number), listed) in expected.iter().zip(flux_result::ALL) {
        assert_eq!(*code as i32, *number);
        assert_eq!(*code, listed);
        assert!(!text(flux_result_message(*number)).is_empty());
    }
    assert_eq!(text(flux_result_message(-1)), "unknown flux_result code");
    assert_eq!(text(flux_result_message(12)), "unknown flux_result code");
}

#[test]
fn algorithm_numbers_and_names_are_the_cores() {
    for (number, algorithm) in flux_algorithm::ALL.iter().enumerate() {
        let kind = AlgorithmKind::from_index(number as u32).unwrap();
        assert_eq!(*algorithm as u32, kind as u32);
        assert_eq!(text(flux_algorithm_name(number as u32)), kind.name());
        let mut out = u32::MAX;
        let name = format!("{}\0", kind.name().to_uppercase().replace('_', "-"));
        // SAFETY: valid pointers.
        let code = unsafe { flux_algorithm_from_name(name.as_ptr().cast(), &mut out) };
        assert_eq!((code, out), (flux_result::Ok, number as u32));
    }
    assert_eq!(AlgorithmKind::ALL.len(), flux_algorithm::ALL.len());
    assert!(flux_algorithm_name(6).is_null());
    let mut out = 42;
    // SAFETY: valid pointers.
    let code = unsafe { flux_algorithm_from_name(c"nope".as_ptr(), &mut out) };
    assert_eq!((code, out), (flux_result::UnknownAlgorithm, 42));
    assert!(last_error().contains("\"nope\""), "{}", last_error());
}

#[test]
fn version_matches_cargo() {
    assert_eq!(text(flux_version()), env!("CARGO_PKG_VERSION"));
    let parts: Vec<u32> = env!("CARGO_PKG_VERSION")
        .split(['.', '-'])
        .take(3)
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        parts,
        [FLUX_VERSION_MAJOR, FLUX_VERSION_MINOR, FLUX_VERSION_PATCH]
    );
    assert_eq!(
        FLUX_VERSION_NUMBER,
        parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2]
    );
}

#[test]
fn panics_become_a_code_and_a_message() {
    let code = catch_result(|| panic!("boom {}", 42));
    assert_eq!(code, flux_result::Panic);
    assert!(last_error().contains("boom 42"), "{}", last_error());
    assert_eq!(catch_value(7, || -> i32 { panic!("static message") }), 7);
    assert!(last_error().contains("static message"));
}

#[test]
fn last_error_is_per_thread_and_kept_by_successes() {
    assert_eq!(
        new_limiter(&options(0, 1_000)),
        Err(flux_result::InvalidRequests)
    );
    let mine = last_error();
    assert!(mine.contains("requests"), "{mine}");
    std::thread::spawn(|| assert_eq!(last_error(), ""))
        .join()
        .unwrap();
    flux_version();
    assert_eq!(last_error(), mine);
}

#[test]
fn quota_errors_have_distinct_codes_naming_the_value() {
    let cases = [
        (
            options(0, 1_000_000_000),
            flux_result::InvalidRequests,
            "requests = 0",
        ),
        (options(10, 0), flux_result::InvalidPeriod, "period_ns = 0"),
        (
            options(10, 400 * 24 * 3600 * 1_000_000_000),
            flux_result::InvalidPeriod,
            "period_ns = 34560000000000000",
        ),
        (
            flux_limiter_options {
                burst: u64::MAX,
                ..options(10, 1_000_000_000)
            },
            flux_result::InvalidBurst,
            "18446744073709551615",
        ),
        (
            flux_limiter_options {
                algorithm: 99,
                ..options(10, 1_000_000_000)
            },
            flux_result::UnknownAlgorithm,
            "unknown algorithm 99",
        ),
    ];
    for (options, code, needle) in cases {
        assert_eq!(new_limiter(&options), Err(code));
        assert!(last_error().contains(needle), "{}", last_error());
    }
    let mut out = ptr::null_mut();
    // SAFETY: NULL is the point.
    assert_eq!(
        unsafe { flux_limiter_new(ptr::null(), &mut out) },
        flux_result::NullArgument
    );
    // SAFETY: NULL is the point.
    assert_eq!(
        unsafe { flux_limiter_new(&options(1, 1), ptr::null_mut()) },
        flux_result::NullArgument
    );
    assert!(last_error().contains("out is NULL"), "{}", last_error());
}

#[test]
fn hit_peek_reset_on_a_manual_clock() {
    let mut clock = ptr::null_mut();
    // SAFETY: valid pointers throughout.
    unsafe {
        assert_eq!(flux_clock_new_manual(1_000, &mut clock), flux_result::Ok);
        let opts = flux_limiter_options {
            clock,
            prefix: c"api:".as_ptr(),
            ..options(3, 60_000_000_000)
        };
        let limiter = new_limiter(&opts).unwrap();
        // The limiter holds its own reference to the clock.
        let clock_for_time = clock;
        for remaining in [2, 1, 0] {
            let d = hit(limiter, b"k", 1).unwrap();
            assert!(d.allowed);
            assert_eq!((d.limit, d.remaining), (3, remaining));
        }
        let denied = hit(limiter, b"k", 1).unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after_ns, 20_000_000_000);
        assert_eq!(
            flux_clock_advance(clock_for_time, 20_000_000_000),
            flux_result::Ok
        );
        let mut now = 0;
        assert_eq!(flux_clock_now(clock_for_time, &mut now), flux_result::Ok);
        assert_eq!(now, 20_000_001_000);
        flux_clock_free(clock);
        let mut peek = flux_decision::default();
        assert_eq!(
            flux_limiter_peek(limiter, c"k".as_ptr(), 1, &mut peek),
            flux_result::Ok
        );
        assert!(peek.allowed);
        assert_eq!(peek.remaining, 1);
        assert_eq!(
            flux_limiter_reset(limiter, c"k".as_ptr(), 1),
            flux_result::Ok
        );
        assert_eq!(hit(limiter, b"k", 3).unwrap().remaining, 0);
        flux_limiter_free(limiter);
        flux_limiter_free(ptr::null_mut());
        flux_clock_free(ptr::null_mut());
    }
}

#[test]
fn bad_arguments_are_codes_not_crashes() {
    let limiter = new_limiter(&options(5, 1_000_000_000)).unwrap();
    assert_eq!(hit(limiter, b"k", 0), Err(flux_result::InvalidCost));
    assert_eq!(hit(limiter, b"k", 6), Err(flux_result::InvalidCost));
    assert!(last_error().contains("6"), "{}", last_error());
    assert_eq!(hit(limiter, b"ab\xffc", 1), Err(flux_result::InvalidUtf8));
    assert!(last_error().contains("offset 2"), "{}", last_error());
    assert_eq!(hit(ptr::null(), b"k", 1), Err(flux_result::NullArgument));
    assert_eq!(hit(limiter, b"", 1).map(|d| d.allowed), Ok(true));
    let mut out = flux_decision::default();
    // SAFETY: NULL and oversized lengths are the point; nothing is read.
    unsafe {
        assert_eq!(
            flux_limiter_hit(limiter, ptr::null(), 0, 1, &mut out),
            flux_result::NullArgument
        );
        assert!(last_error().starts_with("key is NULL"));
        assert_eq!(
            flux_limiter_hit(limiter, c"k".as_ptr(), usize::MAX, 1, &mut out),
            flux_result::InvalidArgument
        );
        assert_eq!(
            flux_limiter_hit(limiter, c"k".as_ptr(), 1, 1, ptr::null_mut()),
            flux_result::NullArgument
        );
        assert_eq!(
            flux_limiter_reset(limiter, ptr::null(), 0),
            flux_result::NullArgument
        );
        assert_eq!(
            flux_clock_advance(ptr::null(), 1),
            flux_result::NullArgument
        );
        flux_limiter_free(limiter);
    }
    assert_eq!(out, flux_decision::default(), "out untouched on failure");
}

#[test]
fn clock_overflow_is_refused() {
    let mut clock = ptr::null_mut();
    // SAFETY: valid pointers.
    unsafe {
        assert_eq!(
            flux_clock_new_manual(u64::MAX - 1, &mut clock),
            flux_result::Ok
        );
        assert_eq!(flux_clock_advance(clock, 2), flux_result::InvalidArgument);
        assert_eq!(flux_clock_set(clock, 5), flux_result::Ok);
        let mut now = 0;
        assert_eq!(flux_clock_now(clock, &mut now), flux_result::Ok);
        assert_eq!(now, 5);
        flux_clock_free(clock);
    }
}

fn hit_many(hits: &[flux_hit]) -> Result<(Vec<flux_decision>, bool), flux_result> {
    let mut decisions = vec![flux_decision::default(); hits.len()];
    let mut allowed = false;
    // SAFETY: valid pointers and lengths.
    match unsafe {
        flux_hit_many(
            hits.as_ptr(),
            hits.len(),
            decisions.as_mut_ptr(),
            &mut allowed,
        )
    } {
        flux_result::Ok => Ok((decisions, allowed)),
        code => Err(code),
    }
}

fn element(limiter: *const flux_limiter, key: &'static [u8], cost: u64) -> flux_hit {
    flux_hit {
        limiter,
        key: key.as_ptr().cast(),
        key_len: key.len(),
        cost,
    }
}

#[test]
fn hit_many_is_all_or_nothing() {
    let second = new_limiter(&options(2, 1_000_000_000)).unwrap();
    let hour = new_limiter(&options(3, 3_600_000_000_000)).unwrap();
    let batch = [element(second, b"k", 1), element(hour, b"k", 1)];
    for _ in 0..2 {
        let (decisions, allowed) = hit_many(&batch).unwrap();
        assert!(allowed && decisions.iter().all(|d| d.allowed));
    }
    // The per-second limit denies: the hourly one is not spent.
    let (decisions, allowed) = hit_many(&batch).unwrap();
    assert!(!allowed);
    assert!(!decisions[0].allowed);
    assert!(decisions[1].allowed && decisions[1].remaining == 1);
    assert_eq!(hit(hour, b"k", 1).unwrap().remaining, 0);

    // Nothing is counted when an element is invalid, and the message names it.
    let bad = [element(hour, b"other", 1), element(second, b"x\xff", 1)];
    assert_eq!(hit_many(&bad), Err(flux_result::InvalidUtf8));
    assert!(last_error().starts_with("hits[1]: key is not valid UTF-8"));
    let bad = [element(hour, b"other", 1), element(second, b"x", 3)];
    assert_eq!(hit_many(&bad), Err(flux_result::InvalidCost));
    assert!(
        last_error().starts_with("hits[1]: invalid cost 3"),
        "{}",
        last_error()
    );
    let bad = [element(hour, b"other", 1), element(ptr::null(), b"x", 1)];
    assert_eq!(hit_many(&bad), Err(flux_result::NullArgument));
    assert!(last_error().starts_with("hits[1]: limiter is NULL"));
    assert_eq!(hit(hour, b"other", 3).map(|d| d.allowed), Ok(true));

    let mut allowed = false;
    // SAFETY: count 0 with NULL arrays is allowed; NULL out_allowed is the error case.
    unsafe {
        assert_eq!(
            flux_hit_many(ptr::null(), 0, ptr::null_mut(), &mut allowed),
            flux_result::Ok
        );
        assert!(allowed);
        assert_eq!(
            flux_hit_many(batch.as_ptr(), 2, ptr::null_mut(), &mut allowed),
            flux_result::NullArgument
        );
        assert_eq!(
            flux_hit_many(batch.as_ptr(), usize::MAX, ptr::null_mut(), ptr::null_mut()),
            flux_result::NullArgument
        );
        let mut decisions = [flux_decision::default(); 1];
        assert_eq!(
            flux_hit_many(
                batch.as_ptr(),
                usize::MAX,
                decisions.as_mut_ptr(),
                &mut allowed
            ),
            flux_result::InvalidArgument
        );
        flux_limiter_free(second);
        flux_limiter_free(hour);
    }
}

fn redis_options(url: &'static CStr) -> flux_redis_options {
    flux_redis_options {
        url: url.as_ptr(),
        nodes: ptr::null(),
        node_count: 0,
        cluster: false,
        pool_size: 0,
        timeout_ms: 50,
        key_prefix: ptr::null(),
        fail_closed: false,
    }
}

#[test]
fn redis_configuration_errors_are_codes() {
    let mut redis = ptr::null_mut();
    // SAFETY: valid pointers throughout; nothing here reaches a server.
    unsafe {
        let bad = redis_options(c"ftp://example");
        assert_eq!(
            flux_redis_new(&bad, &mut redis),
            flux_result::InvalidArgument
        );
        assert!(redis.is_null());
        let nodes = [c"127.0.0.1:1".as_ptr(), ptr::null()];
        let bad = flux_redis_options {
            nodes: nodes.as_ptr(),
            node_count: 2,
            ..redis_options(c"redis://127.0.0.1:1")
        };
        assert_eq!(flux_redis_new(&bad, &mut redis), flux_result::NullArgument);
        assert!(
            last_error().starts_with("nodes[1] is NULL"),
            "{}",
            last_error()
        );

        // A server that is down is not an error until a hit needs it.
        let down = flux_redis_options {
            fail_closed: true,
            ..redis_options(c"redis://127.0.0.1:1")
        };
        assert_eq!(flux_redis_new(&down, &mut redis), flux_result::Ok);
        assert_eq!(flux_redis_ping(redis), flux_result::StoreError);
        let mut limiter = ptr::null_mut();
        let mut clock = ptr::null_mut();
        assert_eq!(flux_clock_new_manual(0, &mut clock), flux_result::Ok);
        let with_clock = flux_limiter_options {
            clock,
            ..options(5, 1_000_000_000)
        };
        assert_eq!(
            flux_limiter_new_redis(&with_clock, redis, &mut limiter),
            flux_result::InvalidArgument
        );
        flux_clock_free(clock);
        assert_eq!(
            flux_limiter_new_redis(&options(5, 1_000_000_000), redis, &mut limiter),
            flux_result::Ok
        );
        flux_redis_free(redis);
        assert_eq!(hit(limiter, b"k", 1), Err(flux_result::StoreError));
        let memory = new_limiter(&options(5, 1_000_000_000)).unwrap();
        let mixed = [element(memory, b"k", 1), element(limiter, b"k", 1)];
        assert_eq!(hit_many(&mixed), Err(flux_result::InvalidArgument));
        assert!(last_error().starts_with("hits[1]: its limiter is not on the same store"));
        flux_limiter_free(limiter);
        flux_limiter_free(memory);
    }
}

#[cfg(unix)]
mod shared {
    use super::*;

    /// A region at a fresh temporary path, removed when dropped.
    struct Region {
        path: std::path::PathBuf,
        handle: *mut flux_shared,
    }

    impl Region {
        fn open(tag: &str) -> Region {
            let path =
                std::env::temp_dir().join(format!("flux-ffi-shared-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let handle = open(&path, 0).unwrap();
            Region { path, handle }
        }
    }

    impl Drop for Region {
        fn drop(&mut self) {
            // SAFETY: a live handle, freed once.
            unsafe { flux_shared_free(self.handle) };
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn open(path: &std::path::Path, max_keys: usize) -> Result<*mut flux_shared, flux_result> {
        let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let options = flux_shared_options {
            path: cpath.as_ptr(),
            key_prefix: ptr::null(),
            max_keys,
        };
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers.
        match unsafe { flux_shared_open(&options, &mut out) } {
            flux_result::Ok => Ok(out),
            code => {
                assert!(out.is_null(), "out-param untouched on failure");
                Err(code)
            }
        }
    }

    fn new_shared(
        options: &flux_limiter_options,
        shared: *const flux_shared,
    ) -> Result<*mut flux_limiter, flux_result> {
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers.
        match unsafe { flux_limiter_new_shared(options, shared, &mut out) } {
            flux_result::Ok => Ok(out),
            code => {
                assert!(out.is_null(), "out-param untouched on failure");
                Err(code)
            }
        }
    }

    #[test]
    fn limiters_on_two_handles_of_one_region_share_a_limit() {
        let region = Region::open("share");
        let second = open(&region.path, 0).unwrap();
        let a = new_shared(&options(3, 60_000_000_000), region.handle).unwrap();
        let b = new_shared(&options(3, 60_000_000_000), second).unwrap();
        // SAFETY: live handle, freed once; the limiter keeps the mapping.
        unsafe { flux_shared_free(second) };
        assert!(hit(a, b"k", 2).unwrap().allowed);
        assert!(hit(b, b"k", 1).unwrap().allowed);
        assert!(!hit(a, b"k", 1).unwrap().allowed);
        let mut stats = flux_shared_stats::default();
        // SAFETY: valid pointers.
        assert_eq!(
            unsafe { flux_shared_get_stats(region.handle, &mut stats) },
            flux_result::Ok
        );
        assert_eq!((stats.live, stats.pending, stats.evictions), (1, 0, 0));
        assert!(stats.slots >= 65_536);
        // A clear through one handle is seen through the other limiter.
        let mut cleared = u64::MAX;
        // SAFETY: valid pointers.
        assert_eq!(
            unsafe { flux_shared_clear(region.handle, &mut cleared) },
            flux_result::Ok
        );
        assert_eq!(cleared, 1);
        assert_eq!(hit(b, b"k", 3).unwrap().remaining, 0);
        // SAFETY: NULL arguments are refused before anything is touched.
        unsafe {
            assert_eq!(
                flux_shared_clear(ptr::null(), &mut cleared),
                flux_result::NullArgument
            );
            assert_eq!(
                flux_shared_clear(region.handle, ptr::null_mut()),
                flux_result::NullArgument
            );
        }
        assert_eq!(cleared, 1, "untouched on failure");
        // SAFETY: live handles, freed once.
        unsafe {
            flux_limiter_free(a);
            flux_limiter_free(b);
        }
    }

    #[test]
    fn shared_limiter_refusals_are_clear() {
        let region = Region::open("refusals");
        let mut sliding_log = options(10, 60_000_000_000);
        sliding_log.algorithm = AlgorithmKind::SlidingLog as u32;
        assert_eq!(
            new_shared(&sliding_log, region.handle),
            Err(flux_result::InvalidArgument)
        );
        assert!(last_error().contains("sliding_log"), "{}", last_error());
        let mut bounded = options(10, 60_000_000_000);
        bounded.max_keys = 10;
        assert_eq!(
            new_shared(&bounded, region.handle),
            Err(flux_result::InvalidArgument)
        );
        assert!(last_error().contains("max_keys"), "{}", last_error());
        assert_eq!(
            new_shared(&options(10, 1), ptr::null()),
            Err(flux_result::NullArgument)
        );
        assert_eq!(open(&region.path, 12), Err(flux_result::StoreError));
        assert!(
            last_error().contains(region.path.to_str().unwrap()),
            "{}",
            last_error()
        );
        let missing = std::path::Path::new("/nonexistent-flux-dir/region");
        assert_eq!(open(missing, 0), Err(flux_result::StoreError));
        assert!(last_error().contains("/nonexistent-flux-dir/region"));
        let mut out = ptr::null_mut();
        // SAFETY: NULL options are refused before anything is read.
        assert_eq!(
            unsafe { flux_shared_open(ptr::null(), &mut out) },
            flux_result::NullArgument
        );
        // SAFETY: NULL is accepted.
        unsafe { flux_shared_free(ptr::null_mut()) };
        let mut stats = flux_shared_stats::default();
        // SAFETY: NULL handle refused.
        assert_eq!(
            unsafe { flux_shared_get_stats(ptr::null(), &mut stats) },
            flux_result::NullArgument
        );
    }
}
