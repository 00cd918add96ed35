//! The Lua scripts against the Rust algorithms: the shared vectors in tests/vectors/ replayed
//! through every one-limit script and through the multi-limit script (explicit `now`), and a
//! differential run of random sequences against the embedded store.
//!
//! Needs `redis-server` (started here, on a free loopback port).

#![cfg(feature = "redis")]

mod support;

use flux_core::store::redis::{RedisLimit, RedisStore};
use flux_core::{AlgorithmKind, Decision, Limiter, ManualClock, Quota};
use std::sync::Arc;
use support::rng::Rng;
use support::vectors::{refund_vectors, replay, vectors, Expect, Face, Vector};
use support::{redis_limiter, strict_store, RedisServer};

/// One limit's one-limit script, at each step's explicit time.
struct RedisFace {
    limit: RedisLimit,
}

impl RedisFace {
    fn new(store: &RedisStore, vector: &Vector, prefix: &str) -> RedisFace {
        let limiter = redis_limiter(store, vector.quota(), vector.kind(), prefix);
        RedisFace {
            limit: limiter.redis().unwrap().clone(),
        }
    }
}

impl Face for RedisFace {
    fn hit(&mut self, key: &str, cost: u64, now_us: u64) -> Decision {
        self.limit.hit_at(key, cost, now_us).unwrap()
    }
    fn peek(&mut self, key: &str, now_us: u64) -> Decision {
        self.limit.peek_at(key, now_us).unwrap()
    }
    fn refund(&mut self, key: &str, cost: u64, now_us: u64) -> Decision {
        self.limit.refund_at(key, cost, now_us).unwrap()
    }
    fn reset(&mut self, key: &str, _now_us: u64) {
        self.limit.reset_key(key).unwrap()
    }
    fn is_empty(&mut self) -> bool {
        self.limit.count_keys().unwrap() == 0
    }
}

#[test]
fn every_vector_replays_exactly_through_the_one_limit_scripts() {
    let server = RedisServer::start();
    let store = strict_store(&server);
    let all = vectors();
    assert!(!all.is_empty(), "no vectors in tests/vectors");
    let mut seen = std::collections::HashSet::new();
    for (n, (file, vector)) in all.iter().enumerate() {
        seen.insert(vector.kind());
        replay(
            file,
            vector,
            &mut RedisFace::new(&store, vector, &format!("vector{n}:")),
        );
    }
    assert_eq!(
        seen.len(),
        AlgorithmKind::ALL.len(),
        "a vector per algorithm"
    );
}

#[test]
fn every_refund_vector_replays_exactly_through_the_one_limit_scripts() {
    let server = RedisServer::start();
    let store = strict_store(&server);
    let mut seen = std::collections::HashSet::new();
    for (n, (file, vector)) in refund_vectors().iter().enumerate() {
        seen.insert(vector.kind());
        replay(
            file,
            vector,
            &mut RedisFace::new(&store, vector, &format!("refund{n}:")),
        );
    }
    assert_eq!(
        seen.len(),
        AlgorithmKind::ALL.len(),
        "a refund vector per algorithm"
    );
}

#[test]
fn every_vector_replays_exactly_through_the_multi_limit_script() {
    let server = RedisServer::start();
    let store = strict_store(&server);
    for (n, (file, vector)) in vectors().iter().enumerate() {
        let kind: AlgorithmKind = vector.algorithm.parse().unwrap();
        let quota = Quota::new(
            vector.quota.requests,
            vector.quota.period_us * 1_000,
            vector.quota.burst,
        )
        .unwrap();
        let limiter = redis_limiter(&store, quota, kind, &format!("multi{n}:"));
        let limit = limiter.redis().unwrap().clone();
        for (i, step) in vector.steps.iter().enumerate() {
            let decision = match step.op.as_str() {
                "hit" => {
                    let outcome = store
                        .hit_many_at(&[(&limiter, &step.key, step.cost)], step.now_us)
                        .unwrap();
                    assert_eq!(outcome.allowed, outcome.decisions[0].allowed);
                    outcome.decisions[0]
                }
                "peek" => limit.peek_at(&step.key, step.now_us).unwrap(),
                _ => {
                    limiter.reset(&step.key).unwrap();
                    continue;
                }
            };
            assert_eq!(
                Some(&Expect::from(decision)),
                step.expect.as_ref(),
                "{} ({}), step {i}",
                file.display(),
                vector.description
            );
        }
    }
}

/// Random quotas (with T/N a whole number of µs) and random sequences of hits, peeks,
/// refunds and resets at random times: the scripts must give exactly the embedded store's decisions,
/// (compared in whole µs, rounded up), including at today's epoch and with products beyond 2^53 (sliding window over a year).
#[test]
fn random_sequences_match_the_embedded_store_for_every_algorithm() {
    let server = RedisServer::start();
    let store = strict_store(&server);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let intervals_us = [1, 7, 1_000, 50_000, 1_000_000, 86_400_000_000];
    let mut case = 0;
    for kind in AlgorithmKind::ALL {
        let (mut allowed, mut denied) = (0, 0);
        for _ in 0..16 {
            case += 1;
            let requests = 1 + rng.below(if kind == AlgorithmKind::SlidingLog {
                12
            } else {
                40
            });
            let interval = intervals_us[rng.below(intervals_us.len() as u64) as usize];
            let mut period_us = requests * interval;
            if period_us * 1_000 > flux_core::quota::MAX_PERIOD {
                period_us = flux_core::quota::MAX_PERIOD / 1_000 / requests * requests;
            }
            let burst = match rng.below(3) {
                0 => None,
                _ => Some(1 + rng.below(2 * requests + 3)),
            };
            let quota = Quota::new(requests, period_us * 1_000, burst).unwrap();
            let clock = Arc::new(ManualClock::new(0));
            let memory = Limiter::builder(quota)
                .algorithm(kind)
                .clock(clock.clone())
                .build_memory()
                .unwrap();
            let redis = redis_limiter(&store, quota, kind, &format!("diff{case}:"));
            let limit = redis.redis().unwrap().clone();
            let step_us = (period_us / requests).max(1);
            let mut now: u64 = if rng.below(2) == 0 {
                1_760_000_000_000_000 + rng.below(1_000_000)
            } else {
                rng.below(10_000_000)
            };
            for i in 0..90 {
                now += match rng.below(10) {
                    0..=3 => 0,
                    4 => rng.below(4),
                    5 => rng.below(step_us / 2 + 1),
                    6 => rng.below(step_us + 1),
                    7 => step_us * rng.below(3),
                    8 => rng.below(period_us + 1),
                    _ => period_us * rng.below(3) + rng.below(step_us + 1),
                };
                clock.set(now * 1_000);
                let key = if rng.below(5) == 0 { "b" } else { "a" };
                let capacity = memory.limit();
                let cost = if rng.below(4) == 0 {
                    1 + rng.below(capacity)
                } else {
                    1
                };
                let (expected, got) = match rng.below(20) {
                    0 => {
                        memory.reset(key).unwrap();
                        redis.reset(key).unwrap();
                        continue;
                    }
                    1..=3 => (memory.peek(key).unwrap(), limit.peek_at(key, now).unwrap()),
                    4 => (
                        memory.refund(key, cost).unwrap(),
                        limit.refund_at(key, cost, now).unwrap(),
                    ),
                    _ => (
                        memory.hit(key, cost).unwrap(),
                        limit.hit_at(key, cost, now).unwrap(),
                    ),
                };
                if expected.allowed {
                    allowed += 1;
                } else {
                    denied += 1;
                }
                // In µs, rounded up: a retry time that is not a whole µs in the embedded store
                // (sliding window) is the next whole µs in Redis.
                assert_eq!(
                    Expect::from(got),
                    Expect::from(expected),
                    "{kind} quota {quota:?} step {i} at {now} µs, key {key}, cost {cost}"
                );
            }
        }
        eprintln!("{kind}: {allowed} allowed, {denied} denied");
        assert!(
            allowed > 100 && denied > 100,
            "{kind}: the run must exercise both answers ({allowed} allowed, {denied} denied)"
        );
    }
}
