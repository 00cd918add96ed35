//! The embedded store: exact under contention, bounded memory, clear errors.

use flux_core::{AlgorithmKind, Error, Limiter, ManualClock, Quota, NANOS_PER_SEC};
use std::sync::Arc;

const HOUR: u64 = 3600 * NANOS_PER_SEC;

#[test]
fn sixteen_threads_on_one_key_get_exactly_the_quota() {
    for kind in AlgorithmKind::ALL {
        let limiter = Arc::new(
            Limiter::builder(Quota::new(100, HOUR, None).unwrap())
                .algorithm(kind)
                .build_memory()
                .unwrap(),
        );
        let allowed: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    let limiter = limiter.clone();
                    scope.spawn(move || {
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
fn keys_and_limiters_are_independent() {
    let clock = Arc::new(ManualClock::new(NANOS_PER_SEC));
    let quota = Quota::new(2, 60 * NANOS_PER_SEC, None).unwrap();
    let a = Limiter::builder(quota)
        .clock(clock.clone())
        .build_memory()
        .unwrap();
    let b = Limiter::builder(quota)
        .clock(clock.clone())
        .build_memory()
        .unwrap();
    assert!(a.hit("x", 2).unwrap().allowed);
    assert!(!a.hit("x", 1).unwrap().allowed);
    assert!(a.hit("y", 1).unwrap().allowed);
    assert!(b.hit("x", 2).unwrap().allowed);
}

#[test]
fn idle_keys_are_swept_before_the_table_grows() {
    let clock = Arc::new(ManualClock::new(NANOS_PER_SEC));
    let quota = Quota::new(10, NANOS_PER_SEC, None).unwrap();
    let limiter = Limiter::builder(quota)
        .clock(clock.clone())
        .build_memory()
        .unwrap();
    for round in 0..50 {
        for i in 0..10_000 {
            limiter.hit(&format!("{round}-{i}"), 1).unwrap();
        }
        // Every key of the previous round is idle a second later.
        clock.advance(NANOS_PER_SEC);
    }
    let held = limiter.store().len();
    assert!(
        held <= 40_000,
        "idle keys must not pile up: {held} held after 500 000 distinct keys"
    );
    assert_eq!(limiter.store().sweep(), held, "everything is idle by now");
    assert!(limiter.store().is_empty());
}

#[test]
fn max_keys_evicts_the_least_recently_used() {
    let clock = Arc::new(ManualClock::new(NANOS_PER_SEC));
    let quota = Quota::new(1, HOUR, None).unwrap();
    let limiter = Limiter::builder(quota)
        .clock(clock.clone())
        .max_keys(Some(1_000))
        .build_memory()
        .unwrap();
    assert!(limiter.hit("attacker-favourite", 1).unwrap().allowed);
    for i in 0..100_000 {
        limiter.hit(&format!("flood-{i}"), 1).unwrap();
        if i % 100 == 0 {
            // A key in constant use stays limited whatever the flood does.
            assert!(
                !limiter.hit("attacker-favourite", 1).unwrap().allowed,
                "evicted at {i}"
            );
        }
    }
    assert!(
        limiter.store().len() <= 1_000 + 64,
        "bounded: {}",
        limiter.store().len()
    );
}

#[test]
fn max_keys_zero_is_an_error() {
    let quota = Quota::new(1, HOUR, None).unwrap();
    let err = Limiter::builder(quota)
        .max_keys(Some(0))
        .build_memory()
        .unwrap_err();
    assert!(err.to_string().contains("max_keys"), "{err}");
}

#[test]
fn costs_outside_the_capacity_are_errors_not_denials() {
    let quota = Quota::new(10, HOUR, Some(5)).unwrap();
    for kind in AlgorithmKind::ALL {
        let limiter = Limiter::builder(quota)
            .algorithm(kind)
            .build_memory()
            .unwrap();
        let capacity = if kind.is_window() { 10 } else { 5 };
        assert_eq!(
            limiter.hit("k", 0),
            Err(Error::InvalidCost { cost: 0, capacity })
        );
        assert_eq!(
            limiter.hit("k", capacity + 1),
            Err(Error::InvalidCost {
                cost: capacity + 1,
                capacity
            })
        );
        assert!(limiter.hit("k", capacity).unwrap().allowed, "{kind}");
    }
}

#[test]
fn quotas_are_validated_with_clear_messages() {
    let cases: [(u64, u64, Option<u64>, &str); 5] = [
        (0, HOUR, None, "requests"),
        (1, 0, None, "period"),
        (1, HOUR, Some(0), "burst"),
        (1, 400 * 24 * HOUR, None, "period"),
        (2_000_000_000, NANOS_PER_SEC, None, "requests"),
    ];
    for (requests, period, burst, field) in cases {
        let err = Quota::new(requests, period, burst).unwrap_err();
        assert!(
            matches!(err, Error::InvalidQuota { field: f, .. } if f == field),
            "{err}"
        );
        assert!(err.to_string().contains(field), "{err}");
    }
    assert!(Quota::from_secs_f64(1, f64::NAN, None).is_err());
    assert!(Quota::from_secs_f64(1, -1.0, None).is_err());
}

#[test]
fn any_size_from_one_per_day_to_a_million_per_second() {
    let clock = Arc::new(ManualClock::new(NANOS_PER_SEC));
    let day = Quota::from_secs_f64(1, 86_400.0, None).unwrap();
    let fast = Quota::from_secs_f64(1_000_000, 1.0, None).unwrap();
    let twenty_k = Quota::from_secs_f64(20_000, 1.0, None).unwrap();
    for kind in AlgorithmKind::ALL {
        let daily = Limiter::builder(day)
            .algorithm(kind)
            .clock(clock.clone())
            .build_memory()
            .unwrap();
        assert!(daily.hit("k", 1).unwrap().allowed);
        let denied = daily.hit("k", 1).unwrap();
        // The weighted window can take up to two periods to forget a full window.
        let periods = if kind == AlgorithmKind::SlidingWindow {
            2
        } else {
            1
        };
        assert!(
            !denied.allowed && denied.retry_after <= periods * 86_400 * NANOS_PER_SEC,
            "{kind}"
        );
        for quota in [fast, twenty_k] {
            let limiter = Limiter::builder(quota)
                .algorithm(kind)
                .clock(clock.clone())
                .build_memory()
                .unwrap();
            let allowed = (0..quota.requests() + 10)
                .filter(|_| limiter.hit("k", 1).unwrap().allowed)
                .count();
            assert_eq!(allowed as u64, quota.requests(), "{kind} {quota:?}");
        }
    }
}

#[test]
fn algorithm_names_round_trip_and_unknown_names_are_errors() {
    for kind in AlgorithmKind::ALL {
        assert_eq!(kind.name().parse::<AlgorithmKind>().unwrap(), kind);
    }
    assert_eq!(
        "Token-Bucket".parse::<AlgorithmKind>().unwrap(),
        AlgorithmKind::TokenBucket
    );
    let err = "moving_window".parse::<AlgorithmKind>().unwrap_err();
    assert!(err.to_string().contains("gcra"), "{err}");
}

#[test]
fn a_refund_of_an_expired_key_forgets_it_and_bad_costs_are_refused_by_name() {
    for kind in AlgorithmKind::ALL {
        let clock = Arc::new(ManualClock::new(NANOS_PER_SEC));
        let limiter = Limiter::builder(Quota::new(3, 60 * NANOS_PER_SEC, None).unwrap())
            .algorithm(kind)
            .clock(clock.clone())
            .build_memory()
            .unwrap();
        limiter.hit("a", 2).unwrap();
        clock.advance(HOUR);
        // Idle but not yet swept: the refund gives nothing and drops the dead state.
        assert_eq!(limiter.store().len(), 1, "{kind}");
        assert_eq!(limiter.refund("a", 1).unwrap().remaining, 3, "{kind}");
        assert_eq!(limiter.store().len(), 0, "{kind}");
        for cost in [0, 4] {
            match limiter.refund("a", cost) {
                Err(Error::InvalidCost { cost: c, capacity }) => {
                    assert_eq!((c, capacity), (cost, 3), "{kind}")
                }
                other => panic!("{kind}: cost {cost} gave {other:?}"),
            }
        }
    }
}

#[test]
fn threads_hitting_and_refunding_one_key_end_exactly_full() {
    for kind in AlgorithmKind::ALL {
        let limiter = Limiter::builder(Quota::new(10, HOUR, None).unwrap())
            .algorithm(kind)
            .build_memory()
            .unwrap();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..500 {
                        if limiter.hit("shared", 1).unwrap().allowed {
                            limiter.refund("shared", 1).unwrap();
                        }
                    }
                });
            }
        });
        assert_eq!(limiter.peek("shared").unwrap().remaining, 10, "{kind}");
    }
}
