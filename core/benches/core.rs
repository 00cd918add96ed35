//! Criterion benchmarks for the core: one hit on the embedded store, hot key and many keys.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use flux_core::{AlgorithmKind, Limiter, Quota};

fn hot_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_hit_hot_key");
    for kind in AlgorithmKind::ALL {
        let quota = Quota::new(1_000_000_000, 1_000_000_000, None).unwrap();
        let limiter = Limiter::builder(quota)
            .algorithm(kind)
            .build_memory()
            .unwrap();
        if kind == AlgorithmKind::SlidingLog {
            // A billion live log entries is not a hot-key benchmark; use a small window.
            continue;
        }
        group.bench_function(kind.name(), |b| {
            b.iter(|| limiter.hit(black_box("client-42"), 1).unwrap())
        });
    }
    // The same hit with a manual clock: what reading the system clock costs.
    let quota = Quota::new(1_000_000_000, 1_000_000_000, None).unwrap();
    let clock = std::sync::Arc::new(flux_core::ManualClock::new(1));
    let limiter = Limiter::builder(quota).clock(clock).build_memory().unwrap();
    group.bench_function("gcra_manual_clock", |b| {
        b.iter(|| limiter.hit(black_box("client-42"), 1).unwrap())
    });
    let system = flux_core::SystemClock::new();
    group.bench_function("system_clock_read", |b| {
        b.iter(|| flux_core::Clock::now(black_box(&system)))
    });
    // The shared store's clock (CLOCK_REALTIME), for comparison.
    let shared = flux_core::store::shared::SharedClock;
    group.bench_function("shared_clock_read", |b| {
        b.iter(|| flux_core::Clock::now(black_box(&shared)))
    });
    group.finish();
}

fn many_keys(c: &mut Criterion) {
    let quota = Quota::new(100, 60_000_000_000, None).unwrap();
    let limiter = Limiter::builder(quota).build_memory().unwrap();
    let keys: Vec<String> = (0..1_000_000)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    for key in &keys {
        limiter.hit(key, 1).unwrap();
    }
    let mut i = 0usize;
    c.bench_function("memory_hit_1m_keys_gcra", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            limiter.hit(black_box(&keys[i]), 1).unwrap()
        })
    });
}

/// The shared-memory store: a hot key and 100k keys, against the same hits on the memory store.
fn shared(c: &mut Criterion) {
    use flux_core::store::shared::SharedRegion;
    let path = std::env::temp_dir().join(format!("flux-bench-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let region = SharedRegion::open(&path, Some(200_000)).unwrap();
    let mut group = c.benchmark_group("shared_hit_hot_key");
    for kind in AlgorithmKind::ALL {
        if kind == AlgorithmKind::SlidingLog {
            continue;
        }
        let quota = Quota::new(
            if kind == AlgorithmKind::SlidingWindow {
                30_000
            } else {
                1_000_000_000
            },
            1_000_000_000,
            None,
        )
        .unwrap();
        let limiter = Limiter::builder(quota)
            .algorithm(kind)
            .build_shared(&region)
            .unwrap();
        group.bench_function(kind.name(), |b| {
            b.iter(|| limiter.hit(black_box("client-42"), 1).unwrap())
        });
    }
    group.finish();
    let quota = Quota::new(100, 60_000_000_000, None).unwrap();
    let limiter = Limiter::builder(quota).build_shared(&region).unwrap();
    let keys: Vec<String> = (0..100_000)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    for key in &keys {
        limiter.hit(key, 1).unwrap();
    }
    let mut i = 0usize;
    c.bench_function("shared_hit_100k_keys_gcra", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            limiter.hit(black_box(&keys[i]), 1).unwrap()
        })
    });
    drop(region);
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, hot_key, many_keys, shared);
criterion_main!(benches);
