//! The Redis store against its floor: a bare EVALSHA of a minimal GCRA script through the
//! `redis` crate on one connection (the baseline) vs `Limiter::hit` on the Redis store, and a
//! hit while Redis is down with the circuit breaker open. Starts its own `redis-server` on a
//! free loopback port. After criterion's figures it prints medians and the ratio.

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{black_box, Criterion};
use flux_core::store::redis::{RedisConfig, RedisStore};
use flux_core::{Limiter, Quota};
use std::time::{Duration, Instant};

/// The baseline: GCRA in a dozen lines, no cost, no peek, no explicit time.
const MINIMAL_GCRA: &str = include_str!("../examples/minimal_gcra.lua");

struct Setup {
    _server: support::RedisServer,
    bare: redis::Connection,
    script: redis::Script,
    limiter: Limiter,
    down: Limiter,
}

fn setup() -> Setup {
    let server = support::RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut bare = client.get_connection().unwrap();
    let script = redis::Script::new(MINIMAL_GCRA);
    let _: Vec<i64> = script
        .key("bare")
        .arg(1)
        .arg(1_000_000_000_u64)
        .invoke(&mut bare)
        .unwrap();
    // A billion per second: every hit passes, as in the baseline.
    let quota = Quota::new(1_000_000_000, 1_000_000_000, None).unwrap();
    let store = RedisStore::connect(RedisConfig::from_url(server.url())).unwrap();
    let limiter = Limiter::builder(quota)
        .prefix("bench:")
        .build_redis(&store)
        .unwrap();
    limiter.hit("client-42", 1).unwrap();
    let dead = RedisStore::connect(RedisConfig {
        timeout_ms: 50,
        breaker_cooldown_ms: 3_600_000,
        ..RedisConfig::from_url(format!("redis://127.0.0.1:{}", support::free_port(false)))
    })
    .unwrap();
    let down = Limiter::builder(quota).build_redis(&dead).unwrap();
    while dead.breaker_state() != flux_core::store::redis::BreakerState::Open {
        down.hit("client-42", 1).unwrap();
    }
    Setup {
        _server: server,
        bare,
        script,
        limiter,
        down,
    }
}

fn bare_hit(setup: &mut Setup) -> Vec<i64> {
    setup
        .script
        .key("bare")
        .arg(1)
        .arg(1_000_000_000_u64)
        .invoke(&mut setup.bare)
        .unwrap()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let mut setup = setup();
    let mut criterion = Criterion::default().configure_from_args();
    {
        let mut group = criterion.benchmark_group("redis");
        group.bench_function("bare_evalsha_minimal_gcra", |b| {
            b.iter(|| black_box(bare_hit(&mut setup)))
        });
        group.bench_function("limiter_hit_gcra", |b| {
            b.iter(|| setup.limiter.hit(black_box("client-42"), 1).unwrap())
        });
        group.bench_function("limiter_hit_breaker_open", |b| {
            b.iter(|| setup.down.hit(black_box("client-42"), 1).unwrap())
        });
        group.finish();
    }
    criterion.final_summary();

    // Interleaved rounds, so that both sides see the same machine load.
    let (mut bare, mut flux) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        for _ in 0..500 {
            let start = Instant::now();
            black_box(bare_hit(&mut setup));
            bare.push(start.elapsed());
            let start = Instant::now();
            black_box(setup.limiter.hit("client-42", 1).unwrap());
            flux.push(start.elapsed());
        }
    }
    let mut down = Vec::new();
    for _ in 0..10_000 {
        let start = Instant::now();
        black_box(setup.down.hit("client-42", 1).unwrap());
        down.push(start.elapsed());
    }
    let (bare, flux, down) = (median(bare), median(flux), median(down));
    println!(
        "redis: bare EVALSHA {:.1} µs, Limiter::hit {:.1} µs (median): ratio {:.2}; \
         breaker open {:.2} µs per hit",
        bare.as_secs_f64() * 1e6,
        flux.as_secs_f64() * 1e6,
        flux.as_secs_f64() / bare.as_secs_f64(),
        down.as_secs_f64() * 1e6
    );
}
