//! Several limits in one atomic hit on the embedded store.

use flux_core::{hit_many, AlgorithmKind, Limiter, ManualClock, Quota, NANOS_PER_SEC};
use std::sync::Arc;

fn limiter(requests: u64, period_secs: u64, clock: &Arc<ManualClock>) -> Limiter {
    Limiter::builder(Quota::new(requests, period_secs * NANOS_PER_SEC, None).unwrap())
        .clock(clock.clone())
        .build_memory()
        .unwrap()
}

#[test]
fn when_one_limit_denies_the_other_is_not_consumed() {
    let clock = Arc::new(ManualClock::new(NANOS_PER_SEC));
    let per_second = limiter(2, 1, &clock);
    let per_hour = limiter(1000, 3600, &clock);
    for _ in 0..2 {
        let both = hit_many(&[(&per_second, "k", 1), (&per_hour, "k", 1)])
            .unwrap()
            .decisions;
        assert!(both.iter().all(|d| d.allowed));
    }
    for _ in 0..50 {
        let both = hit_many(&[(&per_second, "k", 1), (&per_hour, "k", 1)])
            .unwrap()
            .decisions;
        assert!(!both[0].allowed);
        assert!(both[1].allowed, "the hour limit alone would pass");
        assert_eq!(both[1].remaining, 998, "but nothing was taken from it");
    }
    assert_eq!(per_hour.peek("k").unwrap().remaining, 998);
}

#[test]
fn when_the_hour_limit_denies_the_second_limit_keeps_its_budget() {
    let clock = Arc::new(ManualClock::new(NANOS_PER_SEC));
    let per_second = limiter(10, 1, &clock);
    let per_hour = limiter(3, 3600, &clock);
    let mut passed = 0;
    for _ in 0..10 {
        clock.advance(NANOS_PER_SEC);
        if hit_many(&[(&per_second, "k", 1), (&per_hour, "k", 1)])
            .unwrap()
            .decisions
            .iter()
            .all(|d| d.allowed)
        {
            passed += 1;
        }
    }
    assert_eq!(passed, 3);
    assert_eq!(per_second.peek("k").unwrap().remaining, 10);
}

#[test]
fn the_same_limit_twice_in_one_batch_counts_twice() {
    let clock = Arc::new(ManualClock::new(NANOS_PER_SEC));
    let lim = limiter(3, 60, &clock);
    let d = hit_many(&[(&lim, "k", 1), (&lim, "k", 2)])
        .unwrap()
        .decisions;
    assert!(d[0].allowed && d[1].allowed && d[1].remaining == 0);
    let d = hit_many(&[(&lim, "k", 1), (&lim, "other", 1)])
        .unwrap()
        .decisions;
    assert!(!d[0].allowed && d[1].allowed);
    assert_eq!(
        lim.peek("other").unwrap().remaining,
        3,
        "denied batch took nothing"
    );
}

#[test]
fn concurrent_multi_hits_are_exact_and_never_deadlock() {
    for kind in AlgorithmKind::ALL {
        let a = Arc::new(
            Limiter::builder(Quota::new(100, 3600 * NANOS_PER_SEC, None).unwrap())
                .algorithm(kind)
                .build_memory()
                .unwrap(),
        );
        let b = Arc::new(
            Limiter::builder(Quota::new(1000, 3600 * NANOS_PER_SEC, None).unwrap())
                .algorithm(kind)
                .build_memory()
                .unwrap(),
        );
        let allowed: usize = std::thread::scope(|scope| {
            (0..8)
                .map(|t| {
                    let (a, b) = (a.clone(), b.clone());
                    scope.spawn(move || {
                        (0..500)
                            .filter(|i| {
                                // Opposite orders from different threads: lock order is global.
                                let items = if (t + i) % 2 == 0 {
                                    vec![(&*a, "k", 1), (&*b, "k", 1)]
                                } else {
                                    vec![(&*b, "k", 1), (&*a, "k", 1)]
                                };
                                hit_many(&items)
                                    .unwrap()
                                    .decisions
                                    .iter()
                                    .all(|d| d.allowed)
                            })
                            .count()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum()
        });
        assert_eq!(allowed, 100, "{kind}");
        assert_eq!(b.peek("k").unwrap().remaining, 900, "{kind}");
    }
}

#[test]
fn bad_costs_fail_the_whole_batch_before_anything_is_taken() {
    let clock = Arc::new(ManualClock::new(NANOS_PER_SEC));
    let a = limiter(5, 60, &clock);
    let b = limiter(2, 60, &clock);
    assert!(hit_many(&[(&a, "k", 1), (&b, "k", 3)]).is_err());
    assert_eq!(a.peek("k").unwrap().remaining, 5);
}
