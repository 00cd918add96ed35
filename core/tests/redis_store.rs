//! The Redis store end to end against a real `redis-server` started here: counting, keys and
//! expiry, exactness across threads and processes' views, the deny cache, several limits in
//! one round trip, pipelines, NOSCRIPT, and the errors Redis itself returns.

#![cfg(feature = "redis")]

mod support;

use flux_core::store::redis::{RedisConfig, RedisStore, Source};
use flux_core::{AlgorithmKind, Error, Limiter, Quota};
use std::time::Duration;
use support::RedisServer;

const SECOND: u64 = 1_000_000_000;
const HOUR: u64 = 3600 * SECOND;

fn config(server: &RedisServer) -> RedisConfig {
    RedisConfig {
        fail_silently: false,
        timeout_ms: 2_000,
        ..RedisConfig::from_url(server.url())
    }
}

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(config(server)).unwrap()
}

fn limiter(store: &RedisStore, n: u64, period: u64, kind: AlgorithmKind, prefix: &str) -> Limiter {
    Limiter::builder(Quota::new(n, period, None).unwrap())
        .algorithm(kind)
        .prefix(prefix)
        .build_redis(store)
        .unwrap()
}

#[test]
fn a_redis_limiter_counts_and_denies_with_retry_after() {
    let server = RedisServer::start();
    let store = store(&server);
    let limiter = limiter(&store, 3, 60 * SECOND, AlgorithmKind::Gcra, "api:");
    for remaining in [2, 1, 0] {
        let decision = limiter.hit("10.0.0.1", 1).unwrap();
        assert!(decision.allowed);
        assert_eq!((decision.limit, decision.remaining), (3, remaining));
    }
    let denied = limiter.hit("10.0.0.1", 1).unwrap();
    assert!(!denied.allowed);
    // 20 s minus the few ms the three hits took.
    assert!(
        denied.retry_after > 19 * SECOND && denied.retry_after <= 20 * SECOND,
        "{denied:?}"
    );
    assert!(
        limiter.hit("10.0.0.2", 1).unwrap().allowed,
        "keys are separate"
    );
    assert_eq!(
        limiter.hit("10.0.0.1", 4).unwrap_err(),
        Error::InvalidCost {
            cost: 4,
            capacity: 3
        }
    );
}

#[test]
fn keys_are_named_tagged_and_expire_when_back_to_full() {
    let server = RedisServer::start();
    let store = store(&server);
    // 10 per second: TTL until full again, rounded up to the next ms.
    let bounds = [101, 101, 101, 1_001, 2_001, 1_001];
    for (kind, bound) in AlgorithmKind::ALL.into_iter().zip(bounds) {
        let limiter = limiter(&store, 10, SECOND, kind, "ttl:");
        limiter.hit("1.2.3.4", 1).unwrap();
        let key = format!("flux:ttl:{{1.2.3.4}}:{}", kind.name());
        let ttl: i64 = server.cli(&["PTTL", &key]).parse().unwrap();
        assert!(ttl > 0 && ttl <= bound, "{kind}: PTTL {ttl}");
    }
    // 10 per 20 ms: every state is back to full, and its key gone, within 41 ms.
    server.cli(&["FLUSHALL"]);
    for kind in AlgorithmKind::ALL {
        limiter(&store, 10, 20_000_000, kind, "expire:")
            .hit("k", 3)
            .unwrap();
    }
    let keys: Vec<String> = AlgorithmKind::ALL
        .iter()
        .map(|kind| format!("flux:expire:{{k}}:{}", kind.name()))
        .collect();
    let exists = |keys: &[String]| {
        let mut args = vec!["EXISTS"];
        args.extend(keys.iter().map(String::as_str));
        server.cli(&args)
    };
    std::thread::sleep(Duration::from_millis(60));
    // EXISTS, not DBSIZE: Redis reclaims expired keys lazily, but never shows them.
    assert_eq!(exists(&keys), "0", "idle keys disappear");
}

#[test]
fn limits_and_algorithms_never_share_a_key() {
    let server = RedisServer::start();
    let store = store(&server);
    let a = limiter(&store, 1, HOUR, AlgorithmKind::Gcra, "a:");
    let a_window = limiter(&store, 1, HOUR, AlgorithmKind::FixedWindow, "a:");
    let b = limiter(&store, 1, HOUR, AlgorithmKind::Gcra, "b:");
    for limiter in [&a, &a_window, &b] {
        assert!(limiter.hit("same", 1).unwrap().allowed);
    }
    for limiter in [&a, &a_window, &b] {
        assert!(!limiter.hit("same", 1).unwrap().allowed);
    }
    assert_eq!(server.cli(&["DBSIZE"]), "3");
}

#[test]
fn unnamed_limits_are_named_by_their_quota_and_never_meet() {
    let server = RedisServer::start();
    let store = store(&server);
    let login = limiter(&store, 3, 60 * SECOND, AlgorithmKind::Gcra, "");
    let api = limiter(&store, 1000, 60 * SECOND, AlgorithmKind::Gcra, "");
    assert_eq!((login.prefix(), api.prefix()), ("3/60s:", "1000/60s:"));
    for _ in 0..3 {
        assert!(login.hit("ip", 1).unwrap().allowed);
    }
    assert!(!login.hit("ip", 1).unwrap().allowed);
    assert_eq!(api.hit("ip", 1).unwrap().remaining, 999);
    let bursty = Limiter::builder(Quota::new(3, 60 * SECOND, Some(10)).unwrap())
        .build_redis(&store)
        .unwrap();
    assert_eq!(bursty.prefix(), "3/60s;burst=10:");
    assert_eq!(bursty.hit("ip", 1).unwrap().remaining, 9);
}

#[test]
fn exact_across_threads_for_every_algorithm() {
    let server = RedisServer::start();
    let store = store(&server);
    for kind in AlgorithmKind::ALL {
        let limiter = limiter(&store, 100, HOUR, kind, "threads:");
        let allowed: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..500)
                            .filter(|_| limiter.hit("shared", 1).unwrap().allowed)
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 100, "{kind}: 8 threads × 500 hits, 100 per hour");
    }
    assert!(store.stats().deny_cache_hits > 0, "the deny cache answered");
}

#[test]
fn two_stores_share_one_limit_on_server_time() {
    let server = RedisServer::start();
    let (one, two) = (store(&server), store(&server));
    let first = limiter(&one, 10, HOUR, AlgorithmKind::TokenBucket, "shared:");
    let second = limiter(&two, 10, HOUR, AlgorithmKind::TokenBucket, "shared:");
    for i in 0..10u64 {
        let limiter = if i % 2 == 0 { &first } else { &second };
        let decision = limiter.hit("k", 1).unwrap();
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 9 - i, "one view of the state");
    }
    assert!(!first.hit("k", 1).unwrap().allowed);
    assert!(!second.hit("k", 1).unwrap().allowed);
}

#[test]
fn peek_counts_nothing() {
    let server = RedisServer::start();
    let store = store(&server);
    for kind in AlgorithmKind::ALL {
        let limiter = limiter(&store, 5, HOUR, kind, "peek:");
        limiter.hit("k", 2).unwrap();
        for _ in 0..3 {
            let seen = limiter.peek("k").unwrap();
            assert!(seen.allowed);
            assert_eq!(seen.remaining, 3, "{kind}");
        }
        assert_eq!(limiter.peek("fresh").unwrap().remaining, 5, "{kind}");
    }
}

#[test]
fn the_deny_cache_answers_a_denied_key_without_a_round_trip() {
    let server = RedisServer::start();
    let store = store(&server);
    let limiter = limiter(&store, 2, HOUR, AlgorithmKind::Gcra, "deny:");
    assert!(limiter.hit_outcome("k", 2).unwrap().decision.allowed);
    let denied = limiter.hit_outcome("k", 1).unwrap();
    assert_eq!(denied.source, Source::Redis);
    assert!(!denied.decision.allowed);
    let trips = store.stats().round_trips;
    let cached = limiter.hit_outcome("k", 1).unwrap();
    assert_eq!(cached.source, Source::DenyCache);
    assert!(!cached.decision.allowed);
    assert!(
        cached.decision.retry_after > 0
            && cached.decision.retry_after <= denied.decision.retry_after + SECOND
    );
    assert_eq!(
        limiter.hit_outcome("k", 2).unwrap().source,
        Source::DenyCache
    );
    assert_eq!(store.stats().round_trips, trips, "no round trip");
    assert_eq!(store.stats().deny_cache_hits, 2);
    limiter.reset("k").unwrap();
    let after_reset = limiter.hit_outcome("k", 1).unwrap();
    assert_eq!(after_reset.source, Source::Redis);
    assert!(after_reset.decision.allowed);
}

#[test]
fn several_limits_pass_together_or_not_at_all() {
    let server = RedisServer::start();
    let store = store(&server);
    let per_second = limiter(&store, 10, SECOND, AlgorithmKind::Gcra, "second:");
    let per_hour = limiter(&store, 3, HOUR, AlgorithmKind::FixedWindow, "hour:");
    let hits = [(&per_second, "ip", 1), (&per_hour, "ip", 1)];
    for remaining in [2, 1, 0] {
        let outcome = store.hit_many(&hits).unwrap();
        assert!(outcome.allowed);
        assert_eq!(outcome.source, Source::Redis);
        assert_eq!(outcome.decisions[1].remaining, remaining);
        assert!(outcome.decisions.iter().all(|d| d.allowed));
    }
    let before = per_second.peek("ip").unwrap().remaining;
    for _ in 0..20 {
        let outcome = store.hit_many(&hits).unwrap();
        assert!(!outcome.allowed);
        assert!(
            outcome.decisions[0].allowed,
            "the second limit alone would pass"
        );
        assert_eq!(outcome.decisions[0].retry_after, 0);
        assert!(!outcome.decisions[1].allowed);
        assert!(outcome.decisions[1].retry_after > 0);
    }
    assert!(
        per_second.peek("ip").unwrap().remaining >= before,
        "the hour limit denied: the second limit was not consumed"
    );
    // One round trip each, and the keys of one identity share a hash tag.
    assert_eq!(
        server.cli(&[
            "EXISTS",
            "flux:second:{ip}:gcra",
            "flux:hour:{ip}:fixed_window"
        ]),
        "2"
    );
}

#[test]
fn several_limits_refuse_bad_input_by_name() {
    let server = RedisServer::start();
    let store = store(&server);
    let a = limiter(&store, 5, HOUR, AlgorithmKind::Gcra, "a:");
    assert!(matches!(
        store.hit_many(&[]),
        Err(Error::InvalidArgument(_))
    ));
    let err = store.hit_many(&[(&a, "k", 1), (&a, "k", 1)]).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    let err = store.hit_many(&[(&a, "k", 6)]).unwrap_err();
    assert!(
        matches!(
            err.innermost(),
            Error::InvalidCost {
                cost: 6,
                capacity: 5
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("items[0]: invalid cost 6"),
        "{err}"
    );
    // Different identities are fine on a single server.
    let outcome = store.hit_many(&[(&a, "k1", 1), (&a, "k2", 1)]).unwrap();
    assert!(outcome.allowed);
}

#[test]
fn a_batch_is_one_round_trip_with_independent_decisions() {
    let server = RedisServer::start();
    let store = store(&server);
    let a = limiter(&store, 3, HOUR, AlgorithmKind::SlidingLog, "batch:");
    let b = limiter(&store, 3, HOUR, AlgorithmKind::TokenBucket, "batch:");
    let hits: Vec<(&Limiter, &str, u64)> =
        (0..5).flat_map(|_| [(&a, "x", 1), (&b, "y", 1)]).collect();
    let trips = store.stats().round_trips;
    let outcomes: Vec<_> = store
        .hit_batch(&hits)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(store.stats().round_trips, trips + 1);
    let allowed = outcomes.iter().filter(|o| o.decision.allowed).count();
    assert_eq!(allowed, 6, "3 for each limit");
}

#[test]
fn script_flush_is_survived_by_hits_several_limits_and_pipelines_without_double_counting() {
    let server = RedisServer::start();
    let store = store(&server);
    let a = limiter(&store, 100, HOUR, AlgorithmKind::Gcra, "flush:");
    let b = limiter(&store, 100, HOUR, AlgorithmKind::SlidingWindow, "flush:");
    let mut expected = 100;
    for round in 0..3 {
        assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
        expected -= 1;
        assert_eq!(a.hit("k", 1).unwrap().remaining, expected, "round {round}");
        assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
        expected -= 1;
        let outcome = store.hit_many(&[(&a, "k", 1), (&b, "k", 1)]).unwrap();
        assert_eq!(outcome.decisions[0].remaining, expected);
        assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
        expected -= 2;
        let batch = store.hit_batch(&[(&a, "k", 1), (&b, "k", 1), (&a, "k", 1)]);
        assert_eq!(batch[2].as_ref().unwrap().decision.remaining, expected);
    }
    assert_eq!(b.peek("k").unwrap().remaining, 100 - 6);
}

#[test]
fn a_key_of_the_wrong_type_is_a_clear_error_and_harms_no_other_key() {
    let server = RedisServer::start();
    server.cli(&["RPUSH", "flux:wt:{k}:gcra", "not a limiter"]);
    let closed = store(&server);
    let limiter = limiter(&closed, 5, HOUR, AlgorithmKind::Gcra, "wt:");
    let err = limiter.hit("k", 1).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Store(_)));
    assert!(
        message.contains("WRONGTYPE") && message.contains("another type"),
        "{message}"
    );
    // The limit is named; the identity is not (it may be an API key).
    assert!(message.contains("flux:wt:{…}:gcra"), "{message}");
    assert!(limiter.hit("other", 1).unwrap().allowed);

    let open = RedisStore::connect(RedisConfig {
        fail_silently: true,
        ..config(&server)
    })
    .unwrap();
    let on_open = self::limiter(&open, 5, HOUR, AlgorithmKind::Gcra, "wt:");
    let outcome = on_open.hit_outcome("k", 1).unwrap();
    assert!(outcome.is_fail_open() && outcome.decision.allowed);
    assert_eq!(
        open.breaker_state(),
        flux_core::store::redis::BreakerState::Closed,
        "Redis answered: the breaker stays closed"
    );
    assert_eq!(server.cli(&["LLEN", "flux:wt:{k}:gcra"]), "1", "untouched");
}

#[test]
fn maxmemory_reached_is_a_clear_error_and_counts_nothing() {
    let server = RedisServer::start();
    let store = store(&server);
    let limiter = limiter(&store, 5, HOUR, AlgorithmKind::SlidingLog, "oom:");
    assert!(limiter.hit("before", 5).unwrap().allowed);
    server.cli(&["DEBUG", "POPULATE", "20000", "junk", "100"]);
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    server.cli(&["CONFIG", "SET", "maxmemory", "1mb"]);
    let err = limiter.hit("fresh", 1).unwrap_err();
    assert!(err.to_string().contains("out of memory"), "{err}");
    assert_eq!(server.cli(&["EXISTS", "flux:oom:{fresh}:sliding_log"]), "0");
    // A denied hit writes nothing, so Redis can still answer it.
    assert!(!limiter.hit("before", 1).unwrap().allowed);
    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(
        limiter.hit("fresh", 1).unwrap().remaining,
        4,
        "nothing was counted"
    );
}

#[test]
fn len_counts_this_limits_keys_and_sweep_leaves_expiry_to_redis() {
    let server = RedisServer::start();
    let store = store(&server);
    let a = limiter(&store, 5, HOUR, AlgorithmKind::Gcra, "len*a:");
    let b = limiter(&store, 5, HOUR, AlgorithmKind::Gcra, "len*b:");
    for i in 0..25 {
        a.hit(&format!("id{i}"), 1).unwrap();
    }
    b.hit("x", 1).unwrap();
    assert_eq!(a.store().len(), 25);
    assert_eq!(b.store().len(), 1);
    assert_eq!(a.store().sweep(), 0);
}

#[test]
fn quotas_beyond_exact_doubles_are_refused() {
    let server = RedisServer::start();
    let store = store(&server);
    let quota = Quota::new(1, flux_core::quota::MAX_PERIOD, Some(200)).unwrap();
    let err = Limiter::builder(quota).build_redis(&store).unwrap_err();
    assert!(
        matches!(err, Error::InvalidQuota { field: "burst", .. }),
        "{err}"
    );
}

#[test]
fn unix_socket_urls_with_a_database_number_work() {
    let socket = std::env::temp_dir().join(format!("flux-redis-{}.sock", std::process::id()));
    let socket_path = socket.display().to_string();
    let server =
        RedisServer::start_with(&["--unixsocket", &socket_path, "--unixsocketperm", "700"]);
    let store = RedisStore::connect(RedisConfig {
        fail_silently: false,
        ..RedisConfig::from_url(format!("unix://{socket_path}?db=3"))
    })
    .unwrap();
    store.ping().unwrap();
    let limiter = limiter(&store, 2, HOUR, AlgorithmKind::LeakyBucket, "unix:");
    assert!(limiter.hit("k", 2).unwrap().allowed);
    assert!(!limiter.hit("k", 1).unwrap().allowed);
    assert_eq!(
        server.cli(&["-n", "3", "EXISTS", "flux:unix:{k}:leaky_bucket"]),
        "1"
    );
    drop(server);
    let _ = std::fs::remove_file(socket);
}

fn cached_scripts(server: &RedisServer) -> usize {
    let info = server.cli(&["INFO", "memory"]);
    let line = info
        .lines()
        .find_map(|line| line.strip_prefix("number_of_cached_scripts:"))
        .expect("INFO memory reports number_of_cached_scripts");
    line.trim().parse().unwrap()
}

#[test]
fn load_scripts_loads_every_script_hits_later_send() {
    let server = RedisServer::start();
    let store = store(&server);
    let loaded = store.load_scripts().unwrap();
    assert_eq!(cached_scripts(&server), loaded);
    assert_eq!(
        store.load_scripts().unwrap(),
        loaded,
        "loading again is harmless"
    );
    // One hit of each algorithm, alone, together and batched: nothing new reaches the cache.
    let limiters: Vec<Limiter> = AlgorithmKind::ALL
        .into_iter()
        .map(|kind| limiter(&store, 10, HOUR, kind, "pre:"))
        .collect();
    for limiter in &limiters {
        limiter.hit("k", 1).unwrap();
        store.hit_batch(&[(limiter, "k", 1)]);
    }
    let all: Vec<(&Limiter, &str, u64)> = limiters.iter().map(|l| (l, "k", 1)).collect();
    store.hit_many(&all).unwrap();
    store.hit_batch(&all);
    assert_eq!(cached_scripts(&server), loaded);
}

#[test]
fn refunds_in_real_time_forget_the_deny_cache_delete_full_keys_and_never_revive_expired_ones() {
    let server = RedisServer::start();
    let store = store(&server);
    for kind in AlgorithmKind::ALL {
        let prefix = format!("refund-{kind}:");
        let limiter = limiter(&store, 2, HOUR, kind, &prefix);
        let limit = limiter.redis().unwrap().clone();
        limiter.hit("a", 2).unwrap();
        // Denied by Redis, then by the deny cache: a refund must lift that at once.
        assert!(!limiter.hit("a", 1).unwrap().allowed, "{kind}");
        assert_eq!(
            limiter.hit_outcome("a", 1).unwrap().source,
            Source::DenyCache,
            "{kind}"
        );
        let after = limiter.refund_outcome("a", 1).unwrap();
        assert_eq!((after.source, after.decision.remaining), (Source::Redis, 1));
        assert!(limiter.hit("a", 1).unwrap().allowed, "{kind}");
        // Back to full: the key goes, as it would have expired.
        assert_eq!(limiter.refund("a", 2).unwrap().remaining, 2, "{kind}");
        assert_eq!(limit.count_keys().unwrap(), 0, "{kind}");
        assert_eq!(
            limiter.refund("a", 0).unwrap_err(),
            Error::InvalidCost {
                cost: 0,
                capacity: 2
            }
        );

        // A key that expired in Redis stays gone after a refund.
        let short = limiter_with_burst(&store, kind, &format!("short-{kind}:"));
        short.hit("b", 1).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        let seen = short.refund("b", 1).unwrap();
        assert_eq!(seen.remaining, 1, "{kind}");
        assert_eq!(short.redis().unwrap().clone().count_keys().unwrap(), 0);
    }
}

/// One hit per 100 ms: state that expires in Redis within the test.
fn limiter_with_burst(store: &RedisStore, kind: AlgorithmKind, prefix: &str) -> Limiter {
    limiter(store, 1, SECOND / 10, kind, prefix)
}
