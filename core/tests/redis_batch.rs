//! The batch script (`RedisStore::hit_batch`: many independent hits in one EVALSHA, what the
//! async pipeline and busy threads use) against a real `redis-server` started here: the very
//! decisions the one-limit scripts give, hit by hit, for every algorithm; one bad key failing
//! alone; SCRIPT FLUSH in the middle of a run changing nothing; maxmemory counting nothing; a
//! timed-out batch never sent twice.

#![cfg(feature = "redis")]

mod support;

use flux_core::store::redis::{BreakerState, RedisConfig, RedisStore, Source, SCRIPT_BATCH};
use flux_core::{AlgorithmKind, Decision, Error, Limiter, Quota};
use std::time::{Duration, Instant};
use support::rng::Rng;
use support::vectors::{vectors, Expect};
use support::{redis_limiter, strict_store, RedisServer};

const SECOND: u64 = 1_000_000_000;
const HOUR: u64 = 3600 * SECOND;

fn config(server: &RedisServer, fail_silently: bool) -> RedisConfig {
    RedisConfig {
        fail_silently,
        timeout_ms: 2_000,
        ..RedisConfig::from_url(server.url())
    }
}

/// The shared vectors, with each run of consecutive hits at one instant sent as one batch:
/// the batch must give every step's expected decision.
#[test]
fn every_vector_replays_exactly_through_the_batch_script() {
    let server = RedisServer::start();
    let store = strict_store(&server);
    let mut batched = 0;
    for (n, (file, vector)) in vectors().iter().enumerate() {
        let kind: AlgorithmKind = vector.algorithm.parse().unwrap();
        let quota = Quota::new(
            vector.quota.requests,
            vector.quota.period_us * 1_000,
            vector.quota.burst,
        )
        .unwrap();
        let limiter = redis_limiter(&store, quota, kind, &format!("vbatch{n}:"));
        let limit = limiter.redis().unwrap().clone();
        let steps = &vector.steps;
        let mut i = 0;
        while i < steps.len() {
            let step = &steps[i];
            match step.op.as_str() {
                "hit" => {
                    let end = (i..steps.len())
                        .find(|&j| steps[j].op != "hit" || steps[j].now_us != step.now_us)
                        .unwrap_or(steps.len());
                    let hits: Vec<(&Limiter, &str, u64)> = steps[i..end]
                        .iter()
                        .map(|s| (&limiter, s.key.as_str(), s.cost))
                        .collect();
                    let decisions = store.hit_batch_at(&hits, step.now_us);
                    for (j, decision) in (i..end).zip(decisions) {
                        assert_eq!(
                            Some(&Expect::from(decision.unwrap())),
                            steps[j].expect.as_ref(),
                            "{} ({}), step {j} (batch of {})",
                            file.display(),
                            vector.description,
                            end - i
                        );
                    }
                    batched += usize::from(end - i > 1);
                    i = end;
                    continue;
                }
                "peek" => assert_eq!(
                    Some(&Expect::from(
                        limit.peek_at(&step.key, step.now_us).unwrap()
                    )),
                    step.expect.as_ref(),
                    "{} step {i}",
                    file.display()
                ),
                _ => limiter.reset(&step.key).unwrap(),
            }
            i += 1;
        }
    }
    assert!(batched > 3, "the vectors hold runs of hits at one instant");
}

/// Random batches (several keys, repeated keys, random costs, every algorithm mixed in one
/// batch) at random instants: each hit of a batch gets exactly the decision the one-limit
/// script gives the same hit sent alone, in the same order, at the same instant.
#[test]
fn batch_decisions_equal_one_by_one_decisions_for_every_algorithm() {
    let server = RedisServer::start();
    let store = strict_store(&server);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let quotas = [
        (3, SECOND, None),
        (10, 60 * SECOND, Some(4)),
        (50, HOUR, None),
    ];
    let pairs: Vec<(Limiter, Limiter)> = AlgorithmKind::ALL
        .iter()
        .flat_map(|&kind| quotas.iter().map(move |&q| (kind, q)))
        .enumerate()
        .map(|(i, (kind, (n, period, burst)))| {
            let quota = Quota::new(n, period, burst).unwrap();
            (
                redis_limiter(&store, quota, kind, &format!("batched{i}:")),
                redis_limiter(&store, quota, kind, &format!("alone{i}:")),
            )
        })
        .collect();
    let keys = ["a", "b", "c", "10.0.0.1"];
    let mut now: u64 = 1_760_000_000_000_000;
    let (mut allowed, mut denied) = (0, 0);
    for round in 0..120 {
        now += match rng.below(4) {
            0 => 0,
            1 => rng.below(1_000),
            2 => rng.below(1_000_000),
            _ => rng.below(30_000_000),
        };
        let size = 1 + rng.below(if round % 10 == 0 { 300 } else { 40 }) as usize;
        let picks: Vec<(usize, &str, u64)> = (0..size)
            .map(|_| {
                let pair = rng.below(pairs.len() as u64) as usize;
                let key = keys[rng.below(keys.len() as u64) as usize];
                let capacity = pairs[pair].0.limit();
                let cost = if rng.below(4) == 0 {
                    1 + rng.below(capacity)
                } else {
                    1
                };
                (pair, key, cost)
            })
            .collect();
        let hits: Vec<(&Limiter, &str, u64)> = picks
            .iter()
            .map(|&(pair, key, cost)| (&pairs[pair].0, key, cost))
            .collect();
        let batch = store.hit_batch_at(&hits, now);
        for ((pair, key, cost), got) in picks.iter().zip(batch) {
            let alone = &pairs[*pair].1;
            let expected: Decision = alone.redis().unwrap().hit_at(key, *cost, now).unwrap();
            let got = got.unwrap();
            assert_eq!(
                got,
                expected,
                "round {round}: {} {:?} key {key} cost {cost}",
                alone.algorithm(),
                alone.quota()
            );
            if got.allowed {
                allowed += 1;
            } else {
                denied += 1;
            }
        }
    }
    assert!(
        allowed > 300 && denied > 300,
        "both answers exercised ({allowed} allowed, {denied} denied)"
    );
}

#[test]
fn a_large_mixed_batch_is_one_round_trip_of_several_scripts() {
    let server = RedisServer::start();
    let store = strict_store(&server);
    let quota = Quota::new(1_000, HOUR, None).unwrap();
    let limiters: Vec<Limiter> = AlgorithmKind::ALL
        .iter()
        .map(|&kind| redis_limiter(&store, quota, kind, "big:"))
        .collect();
    let n = 3 * SCRIPT_BATCH + 5;
    let keys: Vec<String> = (0..n).map(|i| format!("client-{}", i % 50)).collect();
    let hits: Vec<(&Limiter, &str, u64)> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| (&limiters[i % limiters.len()], key.as_str(), 1))
        .collect();
    // The mixed batch script loaded.
    store.hit_batch(&[(&limiters[0], "warm", 1), (&limiters[1], "warm", 1)]);
    server.cli(&["CONFIG", "RESETSTAT"]);
    let trips = store.stats().round_trips;
    let outcomes = store.hit_batch(&hits);
    assert_eq!(store.stats().round_trips, trips + 1, "one round trip");
    let stats = server.cli(&["INFO", "commandstats"]);
    assert!(
        stats.contains("cmdstat_evalsha:calls=4,"),
        "{n} hits in 4 scripts: {stats}"
    );
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let outcome = outcome.unwrap();
        assert_eq!(outcome.source, Source::Redis);
        // Limit i % 6 and key i % 50 come round together every 150 hits.
        let before = (i / 150) as u64;
        assert_eq!(outcome.decision.remaining, 1_000 - before - 1, "hit {i}");
    }
}

#[test]
fn one_bad_key_fails_alone_and_the_rest_of_the_batch_stands() {
    let server = RedisServer::start();
    server.cli(&["RPUSH", "flux:bad:{list}:gcra", "not a limiter"]);
    server.cli(&["SET", "flux:bad:{garbage}:gcra", "12 banana"]);
    server.cli(&["SET", "flux:bad:{string}:sliding_log", "x"]);
    let closed = strict_store(&server);
    let quota = Quota::new(5, HOUR, None).unwrap();
    let gcra = redis_limiter(&closed, quota, AlgorithmKind::Gcra, "bad:");
    let log = redis_limiter(&closed, quota, AlgorithmKind::SlidingLog, "bad:");
    let hits = [
        (&gcra, "good", 1),
        (&gcra, "list", 1),
        (&gcra, "good", 1),
        (&gcra, "garbage", 1),
        (&log, "string", 1),
        (&log, "good", 2),
    ];
    let results = closed.hit_batch(&hits);
    let remaining: Vec<Option<u64>> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|o| o.decision.remaining))
        .collect();
    assert_eq!(remaining, [Some(4), None, Some(3), None, None, Some(3)]);
    let message = |i: usize| match &results[i] {
        Err(Error::Store(message)) => message.clone(),
        other => panic!("hit {i}: {other:?}"),
    };
    // Each message names the limit's key with the identity left out.
    for (i, key, identity) in [
        (1, "flux:bad:{…}:gcra", "list"),
        (4, "flux:bad:{…}:sliding_log", "string"),
    ] {
        let m = message(i);
        assert!(m.contains("WRONGTYPE") && m.contains("another type"), "{m}");
        assert!(m.contains(key) && !m.contains(identity), "{m}");
    }
    let m = message(3);
    assert!(
        m.contains("not a gcra state") && !m.contains("garbage"),
        "{m}"
    );
    // Counted once each, the bad keys untouched, Redis still trusted.
    assert_eq!(gcra.peek("good").unwrap().remaining, 3);
    assert_eq!(log.peek("good").unwrap().remaining, 3);
    assert_eq!(server.cli(&["LLEN", "flux:bad:{list}:gcra"]), "1");
    assert_eq!(server.cli(&["GET", "flux:bad:{garbage}:gcra"]), "12 banana");
    assert_eq!(closed.breaker_state(), BreakerState::Closed);

    // Failing open: the bad hits pass unchecked, the good ones are decided by Redis.
    let open = RedisStore::connect(config(&server, true)).unwrap();
    let gcra = redis_limiter(&open, quota, AlgorithmKind::Gcra, "bad:");
    let results = open.hit_batch(&[(&gcra, "list", 1), (&gcra, "good", 1)]);
    let first = results[0].as_ref().unwrap();
    assert!(first.is_fail_open() && first.decision.allowed);
    let second = results[1].as_ref().unwrap();
    assert_eq!(
        (&second.source, second.decision.remaining),
        (&Source::Redis, 2)
    );
    assert_eq!(open.breaker_state(), BreakerState::Closed);
}

#[test]
fn script_flush_in_the_middle_of_a_run_is_transparent_and_counts_each_hit_once() {
    let server = RedisServer::start();
    let store = strict_store(&server);
    let quota = Quota::new(10_000, HOUR, None).unwrap();
    let gcra = redis_limiter(&store, quota, AlgorithmKind::Gcra, "flush:");
    let window = redis_limiter(&store, quota, AlgorithmKind::SlidingWindow, "flush:");
    let mut sent = 0;
    for round in 0..6 {
        if round % 2 == 0 {
            assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
        }
        let hits: Vec<(&Limiter, &str, u64)> = (0..2 * SCRIPT_BATCH + 7)
            .map(|i| (if i % 3 == 0 { &window } else { &gcra }, "k", 1))
            .collect();
        for outcome in store.hit_batch(&hits) {
            assert_eq!(outcome.unwrap().source, Source::Redis, "round {round}");
        }
        sent += hits.len() as u64;
    }
    let counted =
        2 * 10_000 - gcra.peek("k").unwrap().remaining - window.peek("k").unwrap().remaining;
    assert_eq!(counted, sent, "every hit counted exactly once");
}

#[test]
fn maxmemory_reached_fails_every_hit_of_a_batch_and_counts_nothing() {
    let server = RedisServer::start();
    let store = strict_store(&server);
    let quota = Quota::new(5, HOUR, None).unwrap();
    let log = redis_limiter(&store, quota, AlgorithmKind::SlidingLog, "oom:");
    let gcra = redis_limiter(&store, quota, AlgorithmKind::Gcra, "oom:");
    assert!(log.hit("before", 1).unwrap().allowed);
    server.cli(&["DEBUG", "POPULATE", "20000", "junk", "100"]);
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    server.cli(&["CONFIG", "SET", "maxmemory", "1mb"]);
    let results = store.hit_batch(&[(&log, "before", 1), (&gcra, "new", 1), (&log, "new", 2)]);
    for result in &results {
        match result {
            Err(Error::Store(message)) => assert!(message.contains("out of memory"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(log.peek("before").unwrap().remaining, 4, "nothing counted");
    assert_eq!(gcra.peek("new").unwrap().remaining, 5);
    assert_eq!(log.peek("new").unwrap().remaining, 5);
}

/// A batch that times out (Redis busy in DEBUG SLEEP) fails as a whole within `timeout_ms`
/// and is never sent again: once Redis wakes it runs the batch it already read, once, so
/// every hit is counted at most once, and the next answers are their own.
#[test]
fn a_batch_that_times_out_is_not_sent_twice() {
    let server = RedisServer::start();
    let store = RedisStore::connect(RedisConfig {
        timeout_ms: 100,
        breaker_threshold: 10,
        ..config(&server, false)
    })
    .unwrap();
    let quota = Quota::new(1_000, HOUR, None).unwrap();
    let window = redis_limiter(&store, quota, AlgorithmKind::SlidingWindow, "slow:");
    let gcra = redis_limiter(&store, quota, AlgorithmKind::Gcra, "slow:");
    let hits: Vec<(&Limiter, &str, u64)> = (0..2 * SCRIPT_BATCH + 3)
        .map(|i| (if i % 2 == 0 { &window } else { &gcra }, "k", 1))
        .collect();
    store.hit_batch(&hits[..2]); // the script loaded, a connection open
    let port = server.port;
    // Redis sleeps 2 s; the batch must give up after about its 100 ms. The bound sits far from
    // both (it was 400 ms against a 0.5 s sleep, and a loaded 2-core machine once took 628 ms
    // to deliver the timeout).
    let sleeper = std::thread::spawn(move || support::cli(port, &["DEBUG", "SLEEP", "2"]));
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    let results = store.hit_batch(&hits);
    assert!(
        start.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        start.elapsed()
    );
    for result in &results {
        match result {
            Err(Error::Store(message)) => assert!(message.contains("timeout_ms"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sleeper.join().unwrap(), "OK");
    let used = |l: &Limiter| 1_000 - l.peek("k").unwrap().remaining;
    let (w, g) = (used(&window), used(&gcra));
    // Before: one each. The timed-out batch ran at most once after the sleep.
    assert!(w == 1 || w == 1 + 130, "sliding window counted {w}");
    assert!(g == 1 || g == 1 + 129, "gcra counted {g}");
    let next = store.hit_batch(&[(&window, "k", 1)]);
    assert_eq!(next[0].as_ref().unwrap().decision.remaining, 1_000 - w - 1);
}
