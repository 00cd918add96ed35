//! The shared-memory store: the shared vectors replay exactly, contention is exact, memory is
//! bounded under a flood of keys, and unsupported uses fail with clear errors.

mod support;

use flux_core::store::shared::SharedRegion;
use flux_core::{hit_many, AlgorithmKind, Error, Limiter, ManualClock, Quota, NANOS_PER_SEC};
use std::path::Path;
use std::sync::Arc;
use support::shared::ScratchPath;
use support::vectors::{refund_vectors, replay, vectors, LimiterFace, Vector};

const HOUR: u64 = 3600 * NANOS_PER_SEC;

/// Every algorithm the shared store supports.
const SUPPORTED: [AlgorithmKind; 5] = [
    AlgorithmKind::Gcra,
    AlgorithmKind::TokenBucket,
    AlgorithmKind::LeakyBucket,
    AlgorithmKind::FixedWindow,
    AlgorithmKind::SlidingWindow,
];

fn limiter(
    region: &SharedRegion,
    quota: Quota,
    kind: AlgorithmKind,
    clock: &Arc<ManualClock>,
) -> Limiter {
    Limiter::builder(quota)
        .algorithm(kind)
        .clock(clock.clone())
        .prefix("test:")
        .build_shared(region)
        .unwrap()
}

/// A face on `region` for `vector`'s limit under its own prefix (vectors may share a region,
/// never their keys); `None` for sliding_log, refused with an error naming the store.
fn shared_face(region: &SharedRegion, file: &Path, vector: &Vector) -> Option<LimiterFace> {
    let clock = Arc::new(ManualClock::new(0));
    let built = Limiter::builder(vector.quota())
        .algorithm(vector.kind())
        .clock(clock.clone())
        .prefix(file.display().to_string())
        .build_shared(region);
    if vector.kind() == AlgorithmKind::SlidingLog {
        let err = built.unwrap_err().to_string();
        assert!(
            err.contains("shared store") && err.contains("sliding_log"),
            "{err}"
        );
        return None;
    }
    Some(LimiterFace {
        limiter: built.unwrap(),
        clock,
    })
}

#[test]
fn every_vector_replays_exactly_on_the_shared_store() {
    let scratch = ScratchPath::new("vectors");
    let region = SharedRegion::open(scratch.path(), Some(1024)).unwrap();
    let mut replayed = std::collections::HashSet::new();
    for (file, vector) in vectors() {
        if let Some(mut face) = shared_face(&region, &file, &vector) {
            replayed.insert(vector.kind());
            replay(&file, &vector, &mut face);
        }
    }
    assert_eq!(
        replayed.len(),
        SUPPORTED.len(),
        "every supported algorithm has a vector"
    );
}

#[test]
fn every_refund_vector_replays_exactly_on_the_shared_store() {
    let mut replayed = std::collections::HashSet::new();
    for (file, vector) in refund_vectors() {
        // A region per vector: its `empty` steps count the slots of the whole region.
        let scratch = ScratchPath::new("refunds");
        let region = SharedRegion::open(scratch.path(), Some(256)).unwrap();
        if let Some(mut face) = shared_face(&region, &file, &vector) {
            replayed.insert(vector.kind());
            replay(&file, &vector, &mut face);
        }
    }
    assert_eq!(
        replayed.len(),
        SUPPORTED.len(),
        "a refund vector per algorithm"
    );
}

#[test]
fn threads_hitting_and_refunding_one_key_never_pass_more_than_the_quota_and_end_full() {
    let scratch = ScratchPath::new("refund-threads");
    let region = SharedRegion::open(scratch.path(), Some(256)).unwrap();
    for kind in SUPPORTED {
        let limiter = Limiter::builder(Quota::new(10, HOUR, None).unwrap())
            .algorithm(kind)
            .build_shared(&region)
            .unwrap();
        let held = std::sync::atomic::AtomicI64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..500 {
                        if limiter.hit("shared", 1).unwrap().allowed {
                            let now = held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            assert!(now < 10, "{kind}: {} held at once", now + 1);
                            held.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                            limiter.refund("shared", 1).unwrap();
                        }
                    }
                });
            }
        });
        // Every hit taken was given back: the key is full again, exactly.
        assert_eq!(limiter.peek("shared").unwrap().remaining, 10, "{kind}");
    }
}

#[test]
fn sixteen_threads_on_one_key_get_exactly_the_quota() {
    let scratch = ScratchPath::new("threads");
    let region = SharedRegion::open(scratch.path(), Some(256)).unwrap();
    for kind in SUPPORTED {
        let limiter = Limiter::builder(Quota::new(100, HOUR, None).unwrap())
            .algorithm(kind)
            .build_shared(&region)
            .unwrap();
        let allowed: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    scope.spawn(|| {
                        (0..1000)
                            .filter(|_| limiter.hit("shared", 1).unwrap().allowed)
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 100, "{kind}");
    }
}

#[test]
fn threads_racing_to_create_many_fresh_keys_each_get_one_slot() {
    // Every key is new to the table when 8 threads hit it at once: a duplicate claim would
    // admit the key twice.
    let scratch = ScratchPath::new("claims");
    // Room to spare, so that no bucket overflows and evicts (which would rightly re-admit).
    let region = SharedRegion::open(scratch.path(), Some(16_384)).unwrap();
    let limiter = Limiter::builder(Quota::new(1, HOUR, None).unwrap())
        .build_shared(&region)
        .unwrap();
    let keys: Vec<String> = (0..2000).map(|i| format!("fresh-{i}")).collect();
    let counts: Vec<std::sync::atomic::AtomicU32> =
        keys.iter().map(|_| Default::default()).collect();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for (key, count) in keys.iter().zip(&counts) {
                    if limiter.hit(key, 1).unwrap().allowed {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let wrong: Vec<(&String, u32)> = keys
        .iter()
        .zip(&counts)
        .map(|(key, count)| (key, count.load(std::sync::atomic::Ordering::Relaxed)))
        .filter(|&(_, count)| count != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "keys not admitted exactly once: {wrong:?} {:?}",
        region.stats()
    );
    assert_eq!(region.stats().live, keys.len());
    assert_eq!(region.stats().pending, 0);
}

#[test]
fn two_opens_of_one_path_share_state_and_prefixes_separate_limits() {
    let scratch = ScratchPath::new("share");
    let clock = Arc::new(ManualClock::new(NANOS_PER_SEC));
    let quota = Quota::new(2, 60 * NANOS_PER_SEC, None).unwrap();
    let first = SharedRegion::open(scratch.path(), None).unwrap();
    let second = SharedRegion::open(scratch.path(), None).unwrap();
    let a = limiter(&first, quota, AlgorithmKind::Gcra, &clock);
    let b = limiter(&second, quota, AlgorithmKind::Gcra, &clock);
    assert!(a.hit("x", 1).unwrap().allowed);
    assert!(b.hit("x", 1).unwrap().allowed);
    assert!(
        !a.hit("x", 1).unwrap().allowed,
        "the second open sees the first's hits"
    );
    let other = Limiter::builder(quota)
        .clock(clock.clone())
        .prefix("other:")
        .build_shared(&second)
        .unwrap();
    assert!(
        other.hit("x", 2).unwrap().allowed,
        "another prefix is another limit"
    );
    b.reset("x").unwrap();
    assert_eq!(a.peek("x").unwrap().remaining, 2);
    assert_eq!(first.stats().live, 1);
}

#[test]
fn the_region_file_is_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = ScratchPath::new("mode");
    let _region = SharedRegion::open(scratch.path(), None).unwrap();
    let mode = std::fs::metadata(scratch.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_flood_of_ten_times_max_keys_evicts_cold_keys_and_keeps_the_hot_one_exact() {
    let scratch = ScratchPath::new("flood");
    let max_keys = 1024;
    let region = SharedRegion::open(scratch.path(), Some(max_keys)).unwrap();
    let size = std::fs::metadata(scratch.path()).unwrap().len();
    let clock = Arc::new(ManualClock::new(1_000 * NANOS_PER_SEC));
    let quota = Quota::new(1_000, HOUR, None).unwrap();
    for kind in SUPPORTED {
        let shared = limiter(&region, quota, kind, &clock);
        let reference = Limiter::builder(quota)
            .algorithm(kind)
            .clock(clock.clone())
            .build_memory()
            .unwrap();
        for i in 0..10 * max_keys {
            // Flood keys stay live (one hit each of a 1000/hour limit), so only LRU frees room.
            assert!(shared.hit(&format!("{kind}-flood-{i}"), 1).unwrap().allowed);
            clock.advance(1_000);
            if i % 4 == 0 {
                assert_eq!(
                    shared.hit("hot", 1).unwrap(),
                    reference.hit("hot", 1).unwrap(),
                    "{kind}: the hot key's decision at flood key {i}"
                );
            }
        }
        assert_eq!(shared.peek("hot").unwrap(), reference.peek("hot").unwrap());
    }
    let stats = region.stats();
    assert!(
        stats.slots >= max_keys && stats.slots * 32 <= max_keys * 64,
        "{stats:?}"
    );
    assert!(stats.live <= stats.slots);
    assert!(
        stats.evictions as usize >= 5 * 9 * max_keys,
        "evictions counted: {stats:?}"
    );
    assert_eq!(
        std::fs::metadata(scratch.path()).unwrap().len(),
        size,
        "the region never grows"
    );
}

#[test]
fn keys_back_at_full_capacity_are_reused_before_live_keys_are_evicted() {
    let scratch = ScratchPath::new("reuse");
    let region = SharedRegion::open(scratch.path(), Some(48)).unwrap();
    assert_eq!(region.stats().slots, 64);
    let clock = Arc::new(ManualClock::new(1_000 * NANOS_PER_SEC));
    let limiter = limiter(
        &region,
        Quota::new(10, NANOS_PER_SEC, None).unwrap(),
        AlgorithmKind::Gcra,
        &clock,
    );
    // 16 keys a round: even if all hash to one bucket of 16 slots they fit, so evicting a live
    // key is never needed; 20 rounds pass 320 distinct keys through 64 slots by reuse alone.
    for round in 0..20 {
        for i in 0..16 {
            limiter.hit(&format!("{round}-{i}"), 1).unwrap();
        }
        // A second later every key of the round is back at full capacity.
        clock.advance(NANOS_PER_SEC);
    }
    assert_eq!(region.stats().evictions, 0, "{:?}", region.stats());
    let live = region.stats().live;
    assert_eq!(limiter.store().sweep(), live);
    assert_eq!(region.stats().live, 0);
}

#[test]
fn unsupported_uses_fail_with_errors_naming_the_store_and_the_algorithm() {
    let scratch = ScratchPath::new("unsupported");
    let region = SharedRegion::open(scratch.path(), None).unwrap();
    let err = Limiter::builder(Quota::new(10, HOUR, None).unwrap())
        .algorithm(AlgorithmKind::SlidingLog)
        .build_shared(&region)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shared store") && err.contains("sliding_log"),
        "{err}"
    );
    let err = Limiter::builder(Quota::new(1_000_000, NANOS_PER_SEC, None).unwrap())
        .algorithm(AlgorithmKind::SlidingWindow)
        .build_shared(&region)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shared store") && err.contains("sliding_window"),
        "{err}"
    );
    // The documented bounds of a sliding window's 64-bit state, exactly.
    for (requests, period, fits) in [
        (32_767, NANOS_PER_SEC, true),
        (32_768, NANOS_PER_SEC, false),
        (2_097_151, HOUR, true),
        (2_097_152, HOUR, false),
    ] {
        let built = Limiter::builder(Quota::new(requests, period, None).unwrap())
            .algorithm(AlgorithmKind::SlidingWindow)
            .build_shared(&region);
        assert_eq!(built.is_ok(), fits, "{requests} per {period} ns");
    }
}

#[test]
fn a_multi_limit_hit_on_the_shared_store_is_all_or_nothing() {
    let scratch = ScratchPath::new("multi");
    let region = SharedRegion::open(scratch.path(), None).unwrap();
    let clock = Arc::new(ManualClock::new(1_000 * NANOS_PER_SEC));
    let per_second = Limiter::builder(Quota::new(2, NANOS_PER_SEC, None).unwrap())
        .clock(clock.clone())
        .prefix("second:")
        .build_shared(&region)
        .unwrap();
    let per_hour = Limiter::builder(Quota::new(3, HOUR, None).unwrap())
        .algorithm(AlgorithmKind::FixedWindow)
        .clock(clock.clone())
        .prefix("hour:")
        .build_shared(&region)
        .unwrap();
    let batch = [(&per_second, "k", 1), (&per_hour, "k", 1)];
    for _ in 0..2 {
        assert!(hit_many(&batch)
            .unwrap()
            .decisions
            .iter()
            .all(|d| d.allowed));
    }
    // The per-second limit is spent: the batch is denied and the hourly budget untouched.
    let denied = hit_many(&batch).unwrap().decisions;
    assert!(!denied[0].allowed && denied[1].allowed);
    assert_eq!(denied[1].remaining, 1);
    assert_eq!(per_hour.peek("k").unwrap().remaining, 1);
    clock.advance(NANOS_PER_SEC);
    assert!(hit_many(&batch)
        .unwrap()
        .decisions
        .iter()
        .all(|d| d.allowed));
    clock.advance(NANOS_PER_SEC);
    // Now the hourly limit denies: the per-second one keeps its capacity.
    let denied = hit_many(&batch).unwrap().decisions;
    assert!(denied[0].allowed && !denied[1].allowed);
    assert_eq!(per_second.peek("k").unwrap().remaining, 2);
    // One kind of store per batch.
    let memory = Limiter::builder(Quota::new(10, HOUR, None).unwrap())
        .build_memory()
        .unwrap();
    let err = hit_many(&[(&per_hour, "k", 1), (&memory, "k", 1)]).unwrap_err();
    match (&err, err.innermost()) {
        (Error::Item { index: 1, .. }, Error::InvalidArgument(message)) => {
            assert!(message.contains("shared store"), "{message}")
        }
        _ => panic!("expected a clear error naming items[1], got {err:?}"),
    }
}

#[test]
fn clear_puts_every_key_of_every_limit_back_to_full_capacity() {
    let scratch = ScratchPath::new("clear");
    let region = SharedRegion::open(scratch.path(), Some(1024)).unwrap();
    let clock = Arc::new(ManualClock::new(1_000 * NANOS_PER_SEC));
    let quota = Quota::new(3, HOUR, None).unwrap();
    let limiters: Vec<Limiter> = SUPPORTED
        .iter()
        .map(|&kind| limiter(&region, quota, kind, &clock))
        .collect();
    for limiter in &limiters {
        for key in ["a", "b"] {
            assert!(limiter.hit(key, 3).unwrap().allowed);
            assert!(!limiter.hit(key, 1).unwrap().allowed);
        }
    }
    assert_eq!(region.stats().live, 2 * SUPPORTED.len());
    // A second handle on the same file clears what the first one's limiters hold.
    let other = SharedRegion::open(scratch.path(), None).unwrap();
    assert_eq!(other.clear(), 2 * SUPPORTED.len());
    assert_eq!(region.stats().live, 0);
    for limiter in &limiters {
        assert_eq!(limiter.peek("a").unwrap().remaining, 3);
        let after = limiter.hit("b", 1).unwrap();
        assert!(after.allowed && after.remaining == 2, "{after:?}");
    }
    assert_eq!(other.clear(), SUPPORTED.len());
    assert_eq!(other.clear(), 0);
}
