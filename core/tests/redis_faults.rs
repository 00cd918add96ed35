//! Faults, each with a clear outcome and a clear message, in both failure modes: Redis killed
//! and restarted, frozen, slow (DEBUG SLEEP), a wrong password; the circuit breaker opens,
//! makes a dead Redis cost microseconds, probes and closes by itself; no hit waits past
//! `timeout_ms` (plus scheduling slack); nothing is double-counted.

#![cfg(feature = "redis")]

mod support;

use flux_core::store::redis::{BreakerState, RedisConfig, RedisStore, Source};
use flux_core::{AlgorithmKind, Error, FailurePolicy, Limiter, Quota};
use std::time::{Duration, Instant};
use support::RedisServer;

const HOUR: u64 = 3_600_000_000_000;
const TIMEOUT_MS: u64 = 150;
/// Slack for a loaded 2-core machine running a debug build.
const SLACK: Duration = Duration::from_millis(250);

fn store(server: &RedisServer, fail_silently: bool) -> RedisStore {
    RedisStore::connect(RedisConfig {
        fail_silently,
        timeout_ms: TIMEOUT_MS,
        breaker_threshold: 3,
        breaker_cooldown_ms: 100,
        ..RedisConfig::from_url(server.url())
    })
    .unwrap()
}

fn limiter(store: &RedisStore, kind: AlgorithmKind) -> Limiter {
    Limiter::builder(Quota::new(1000, HOUR, None).unwrap())
        .algorithm(kind)
        .prefix("faults:")
        .build_redis(store)
        .unwrap()
}

/// Hits until `done` says so (at most `limit` times), checking each is quick enough.
fn hit_until(
    limiter: &Limiter,
    limit: usize,
    mut done: impl FnMut(&flux_core::Result<flux_core::store::redis::Outcome>) -> bool,
) -> flux_core::Result<flux_core::store::redis::Outcome> {
    let bound = Duration::from_millis(TIMEOUT_MS) + SLACK;
    for _ in 0..limit {
        let start = Instant::now();
        let outcome = limiter.hit_outcome("k", 1);
        let took = start.elapsed();
        assert!(
            took <= bound,
            "a hit took {took:?}, more than timeout_ms + slack"
        );
        if done(&outcome) {
            return outcome;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("condition not reached in {limit} hits");
}

fn killed_and_restarted(fail_silently: bool) {
    let mut server = RedisServer::start();
    let store = store(&server, fail_silently);
    let limiter = limiter(&store, AlgorithmKind::Gcra);
    for _ in 0..3 {
        assert_eq!(limiter.hit_outcome("k", 1).unwrap().source, Source::Redis);
    }
    server.kill();
    // Each failure is quick and clear; the breaker opens after three.
    let mut messages = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        match limiter.hit_outcome("k", 1) {
            Ok(outcome) => {
                assert!(fail_silently);
                assert!(outcome.decision.allowed && outcome.is_fail_open());
                let err = outcome.error.expect("a fail-open outcome says why");
                messages.push(err.to_string());
            }
            Err(err) => {
                assert!(!fail_silently);
                assert!(matches!(err, Error::Store(_)));
                messages.push(err.to_string());
            }
        }
        assert!(start.elapsed() <= Duration::from_millis(TIMEOUT_MS) + SLACK);
    }
    for message in &messages {
        assert!(
            message.contains("127.0.0.1")
                && (message.contains("refused") || message.contains("connection")),
            "{message}"
        );
    }
    assert_eq!(store.breaker_state(), BreakerState::Open);
    // Open: no waiting at all.
    let start = Instant::now();
    for _ in 0..1000 {
        match limiter.hit_outcome("k", 1) {
            Ok(outcome) => assert!(outcome.is_fail_open()),
            Err(err) => assert!(err.to_string().contains("circuit breaker open"), "{err}"),
        }
    }
    let per_hit = start.elapsed() / 1000;
    assert!(
        per_hit < Duration::from_micros(200),
        "{per_hit:?} per hit with the breaker open"
    );
    // Restarted (empty: nothing persisted): a probe closes the breaker by itself.
    server.restart();
    let outcome = hit_until(
        &limiter,
        200,
        |o| matches!(o, Ok(o) if o.source == Source::Redis),
    )
    .unwrap();
    assert_eq!(store.breaker_state(), BreakerState::Closed);
    assert_eq!(
        outcome.decision.remaining, 999,
        "counted once on the new server"
    );
    assert_eq!(limiter.hit_outcome("k", 1).unwrap().decision.remaining, 998);
    let stats = store.stats();
    assert!(stats.errors >= 1003);
    assert_eq!(stats.fail_open > 0, fail_silently);
}

#[test]
fn killed_and_restarted_failing_open() {
    killed_and_restarted(true);
}

#[test]
fn killed_and_restarted_failing_closed() {
    killed_and_restarted(false);
}

fn frozen(fail_silently: bool) {
    let server = RedisServer::start();
    let store = store(&server, fail_silently);
    let limiter = limiter(&store, AlgorithmKind::TokenBucket);
    assert!(limiter.hit_outcome("k", 1).unwrap().decision.allowed);
    server.freeze();
    for _ in 0..3 {
        let start = Instant::now();
        let result = limiter.hit_outcome("k", 1);
        let took = start.elapsed();
        assert!(
            took <= Duration::from_millis(TIMEOUT_MS) + SLACK,
            "{took:?}"
        );
        let message = match result {
            Ok(outcome) => {
                assert!(fail_silently && outcome.is_fail_open());
                outcome
                    .error
                    .expect("a fail-open outcome says why")
                    .to_string()
            }
            Err(err) => {
                assert!(!fail_silently);
                err.to_string()
            }
        };
        assert!(
            message.contains("did not answer within timeout_ms = 150 ms")
                || message.contains("no connection within timeout_ms = 150 ms"),
            "{message}"
        );
    }
    assert_eq!(store.breaker_state(), BreakerState::Open);
    server.thaw();
    let outcome = hit_until(
        &limiter,
        200,
        |o| matches!(o, Ok(o) if o.source == Source::Redis),
    )
    .unwrap();
    assert_eq!(store.breaker_state(), BreakerState::Closed);
    // The frozen hits were sent and may have run once the server woke: at most once each.
    let used = 1000 - outcome.decision.remaining;
    assert!(
        (2..=5).contains(&used),
        "{used} counted for 2 to 5 hits sent"
    );
    let next = limiter.hit_outcome("k", 1).unwrap().decision.remaining;
    assert_eq!(
        next,
        outcome.decision.remaining - 1,
        "no stale reply read as an answer"
    );
}

#[test]
fn frozen_redis_times_out_failing_open() {
    frozen(true);
}

#[test]
fn frozen_redis_times_out_failing_closed() {
    frozen(false);
}

#[test]
fn slow_redis_times_out_and_the_connection_is_not_reused() {
    let server = RedisServer::start();
    let store = RedisStore::connect(RedisConfig {
        fail_silently: false,
        timeout_ms: TIMEOUT_MS,
        breaker_threshold: 10,
        ..RedisConfig::from_url(server.url())
    })
    .unwrap();
    let limiter = limiter(&store, AlgorithmKind::SlidingWindow);
    assert_eq!(limiter.hit("k", 1).unwrap().remaining, 999);
    let port = server.port;
    let sleeper = std::thread::spawn(move || support::cli(port, &["DEBUG", "SLEEP", "0.5"]));
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    let err = limiter.hit("k", 1).unwrap_err();
    let took = start.elapsed();
    assert!(
        took <= Duration::from_millis(TIMEOUT_MS) + SLACK,
        "{took:?}"
    );
    assert!(
        err.to_string().contains("did not answer within timeout_ms"),
        "{err}"
    );
    assert_eq!(sleeper.join().unwrap(), "OK");
    // The timed-out hit ran after the sleep (at most once); the next answer is its own.
    let remaining = limiter.hit("k", 1).unwrap().remaining;
    assert!(remaining == 997 || remaining == 998, "{remaining}");
    assert_eq!(limiter.hit("k", 1).unwrap().remaining, remaining - 1);
    assert_eq!(store.breaker_state(), BreakerState::Closed);
}

#[test]
fn a_wrong_password_is_a_clear_error_and_opens_the_breaker() {
    let server = RedisServer::start_with(&["--requirepass", "right"]);
    let connect = |password: Option<&str>, fail_silently| {
        RedisStore::connect(RedisConfig {
            password: password.map(String::from),
            fail_silently,
            timeout_ms: TIMEOUT_MS,
            breaker_threshold: 2,
            ..RedisConfig::from_url(server.url())
        })
        .unwrap()
    };
    let good = connect(Some("right"), false);
    let limiter = limiter(&good, AlgorithmKind::FixedWindow);
    assert!(limiter.hit("k", 1).unwrap().allowed);

    for (password, expected) in [(Some("wrong"), "WRONGPASS"), (None, "NOAUTH")] {
        let bad = connect(password, false);
        let on_bad = self::limiter(&bad, AlgorithmKind::FixedWindow);
        let start = Instant::now();
        let err = on_bad.hit_outcome("k", 1).unwrap_err();
        assert!(start.elapsed() <= Duration::from_millis(TIMEOUT_MS) + SLACK);
        let message = err.to_string();
        assert!(
            message.contains(expected) || message.contains("credentials"),
            "{message}"
        );
        assert!(
            !message.contains("wrong@"),
            "no password in messages: {message}"
        );
        let _ = on_bad.hit_outcome("k", 1);
        assert_eq!(bad.breaker_state(), BreakerState::Open);
    }
    let open = connect(Some("wrong"), true);
    let on_open = self::limiter(&open, AlgorithmKind::FixedWindow);
    assert!(on_open.hit_outcome("k", 1).unwrap().is_fail_open());
}

#[test]
fn a_server_that_never_existed_fails_fast() {
    let port = support::free_port(false);
    let store = RedisStore::connect(RedisConfig {
        fail_silently: true,
        timeout_ms: TIMEOUT_MS,
        ..RedisConfig::from_url(format!("redis://127.0.0.1:{port}"))
    })
    .unwrap();
    let limiter = limiter(&store, AlgorithmKind::LeakyBucket);
    let start = Instant::now();
    for _ in 0..100 {
        assert!(limiter.hit_outcome("k", 1).unwrap().is_fail_open());
    }
    assert!(start.elapsed() < Duration::from_millis(3 * TIMEOUT_MS) + SLACK);
    assert!(store.ping().is_err());
    // Several limits at once fail open together.
    let outcome = flux_core::hit_many(&[(&limiter, "k", 1)]).unwrap();
    assert!(outcome.allowed && outcome.source == Source::FailOpen);
}

#[test]
fn each_limit_fails_by_its_own_policy_in_every_kind_of_hit() {
    // A dead server: the store's default fails open, one limit overrides it to fail closed,
    // and the core alone applies both, to single hits, pipelined batches and multi-limit hits.
    let port = support::free_port(false);
    let store = RedisStore::connect(RedisConfig {
        fail_silently: true,
        timeout_ms: TIMEOUT_MS,
        ..RedisConfig::from_url(format!("redis://127.0.0.1:{port}"))
    })
    .unwrap();
    let lenient = limiter(&store, AlgorithmKind::Gcra);
    let strict = Limiter::builder(Quota::new(1000, HOUR, None).unwrap())
        .prefix("faults-strict:")
        .failure_policy(FailurePolicy::Closed)
        .build_redis(&store)
        .unwrap();
    assert_eq!(lenient.failure_policy(), FailurePolicy::Open);
    assert_eq!(strict.failure_policy(), FailurePolicy::Closed);

    let open = lenient.hit_outcome("k", 3).unwrap();
    assert_eq!(open.source, Source::FailOpen);
    assert_eq!(
        (open.decision.allowed, open.decision.remaining),
        (true, 997)
    );
    assert!(open.error.is_some());
    assert!(matches!(strict.hit_outcome("k", 1), Err(Error::Store(_))));
    assert!(matches!(strict.peek_outcome("k"), Err(Error::Store(_))));
    assert!(matches!(
        strict.refund_outcome("k", 1),
        Err(Error::Store(_))
    ));
    assert_eq!(
        lenient.refund_outcome("k", 1).unwrap().source,
        Source::FailOpen
    );
    // A bad cost is the caller's bug, never a failure to let through.
    assert!(matches!(
        lenient.hit_outcome("k", 0),
        Err(Error::InvalidCost { .. })
    ));

    let batch = store.hit_batch(&[(&lenient, "k", 1), (&strict, "k", 1)]);
    assert_eq!(batch[0].as_ref().unwrap().source, Source::FailOpen);
    assert!(matches!(batch[1], Err(Error::Store(_))));

    // All or nothing fails open only if every limit does.
    let both = flux_core::hit_many(&[(&lenient, "k", 1), (&lenient, "other", 1)]).unwrap();
    assert!(both.allowed && both.source == Source::FailOpen && both.error.is_some());
    assert!(matches!(
        flux_core::hit_many(&[(&lenient, "k", 1), (&strict, "k", 1)]),
        Err(Error::Store(_))
    ));
}
