//! Property tests over every algorithm, with explicit time (no clock, no sleeping):
//! quotas are never exceeded, denied hits change nothing, retry_after is exact.

use flux_core::algorithms::*;
use flux_core::{Decision, Nanos, Quota};
use proptest::prelude::*;

const MS: Nanos = 1_000_000;

/// A quota and a sequence of (time step, cost) hits, costs within the capacity.
fn scenario() -> impl Strategy<Value = (Quota, Vec<(Nanos, u64)>)> {
    (1u64..12, 1u64..60_000, 1u64..12).prop_flat_map(|(requests, period_ms, burst)| {
        let quota = Quota::new(requests, period_ms * MS, Some(burst)).unwrap();
        let max_cost = requests.min(burst);
        let steps = prop::collection::vec((0..period_ms * MS / 2, 1..=max_cost), 1..80);
        (Just(quota), steps)
    })
}

/// Runs the steps from time 1 s, returning (time, cost, decision) for each hit.
fn run<A: Algorithm>(quota: &Quota, steps: &[(Nanos, u64)]) -> Vec<(Nanos, u64, Decision)> {
    let algorithm = A::new(quota);
    let mut state = A::State::default();
    let mut now = 1_000 * MS;
    let mut out = Vec::new();
    for &(step, cost) in steps {
        now += step;
        let cost = cost.min(algorithm.limit());
        out.push((now, cost, algorithm.hit(&mut state, now, cost)));
    }
    out
}

/// The admitted cost in every interval [t, t + len) starting at an admitted hit.
fn max_admitted_within(hits: &[(Nanos, u64, Decision)], len: Nanos) -> u64 {
    let admitted: Vec<(Nanos, u64)> = hits
        .iter()
        .filter(|h| h.2.allowed)
        .map(|h| (h.0, h.1))
        .collect();
    admitted
        .iter()
        .map(|&(start, _)| {
            admitted
                .iter()
                .filter(|h| h.0 >= start && h.0 < start + len)
                .map(|h| h.1)
                .sum()
        })
        .max()
        .unwrap_or(0)
}

fn bucket_never_exceeds<A: Algorithm>(quota: &Quota, steps: &[(Nanos, u64)]) {
    let hits = run::<A>(quota, steps);
    let e = quota.emission_interval();
    for span in [e, quota.period(), 3 * quota.period()] {
        let bound = quota.burst() + span / e;
        let got = max_admitted_within(&hits, span);
        assert!(
            got <= bound,
            "{}: {got} admitted within {span} ns, bound {bound}",
            A::KIND
        );
    }
}

fn invariants<A: Algorithm>(quota: &Quota, steps: &[(Nanos, u64)]) {
    let algorithm = A::new(quota);
    let mut state = A::State::default();
    let mut now = 1_000 * MS;
    for &(step, cost) in steps {
        now += step;
        let cost = cost.min(algorithm.limit());
        let before = state.clone();
        let peeked = algorithm.peek(&state, now);
        let decision = algorithm.hit(&mut state, now, cost);
        assert!(decision.remaining <= decision.limit);
        assert_eq!(decision.limit, algorithm.limit());
        assert_eq!(
            peeked.remaining,
            algorithm.peek(&before, now).remaining,
            "peek is pure"
        );
        if cost == 1 {
            assert_eq!(
                peeked.allowed, decision.allowed,
                "peek predicts a hit of cost 1"
            );
        }
        if decision.allowed {
            assert_eq!(decision.retry_after, 0);
            continue;
        }
        assert_eq!(
            format!("{before:?}"),
            format!("{state:?}"),
            "{}: denied hit changed state",
            A::KIND
        );
        assert!(decision.retry_after > 0);
        // Exact: passes at now + retry_after, not one nanosecond earlier.
        let mut later = state.clone();
        assert!(
            algorithm
                .hit(&mut later, now + decision.retry_after, cost)
                .allowed,
            "{}: retry_after {} too short",
            A::KIND,
            decision.retry_after
        );
        let mut earlier = state.clone();
        assert!(
            !algorithm
                .hit(&mut earlier, now + decision.retry_after - 1, cost)
                .allowed,
            "{}: retry_after {} too long",
            A::KIND,
            decision.retry_after
        );
    }
    // After reset_after the key is back to full capacity.
    let full = algorithm.peek(&state, now);
    let rested = algorithm.peek(&state, now + full.reset_after);
    assert_eq!(
        rested.remaining,
        algorithm.limit(),
        "{}: not full after reset_after",
        A::KIND
    );
    assert!(algorithm.is_idle(&state, now + full.reset_after));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn gcra((quota, steps) in scenario()) {
        bucket_never_exceeds::<Gcra>(&quota, &steps);
        invariants::<Gcra>(&quota, &steps);
    }

    #[test]
    fn token_bucket((quota, steps) in scenario()) {
        bucket_never_exceeds::<TokenBucket>(&quota, &steps);
        invariants::<TokenBucket>(&quota, &steps);
    }

    #[test]
    fn leaky_bucket((quota, steps) in scenario()) {
        bucket_never_exceeds::<LeakyBucket>(&quota, &steps);
        invariants::<LeakyBucket>(&quota, &steps);
    }

    #[test]
    fn bucket_algorithms_agree((quota, steps) in scenario()) {
        let gcra: Vec<bool> = run::<Gcra>(&quota, &steps).iter().map(|h| h.2.allowed).collect();
        let token: Vec<bool> = run::<TokenBucket>(&quota, &steps).iter().map(|h| h.2.allowed).collect();
        let leaky: Vec<bool> = run::<LeakyBucket>(&quota, &steps).iter().map(|h| h.2.allowed).collect();
        prop_assert_eq!(&gcra, &token);
        prop_assert_eq!(&gcra, &leaky);
    }

    #[test]
    fn fixed_window((quota, steps) in scenario()) {
        let hits = run::<FixedWindow>(&quota, &steps);
        let t = quota.period();
        let mut per_window = std::collections::HashMap::new();
        for (now, cost, d) in &hits {
            if d.allowed {
                *per_window.entry(now / t).or_insert(0) += cost;
            }
        }
        prop_assert!(per_window.values().all(|&c| c <= quota.requests()));
        prop_assert!(max_admitted_within(&hits, t) <= 2 * quota.requests());
        invariants::<FixedWindow>(&quota, &steps);
    }

    #[test]
    fn sliding_window((quota, steps) in scenario()) {
        let hits = run::<SlidingWindow>(&quota, &steps);
        prop_assert!(max_admitted_within(&hits, quota.period()) <= 2 * quota.requests());
        invariants::<SlidingWindow>(&quota, &steps);
    }

    #[test]
    fn sliding_log((quota, steps) in scenario()) {
        let hits = run::<SlidingLog>(&quota, &steps);
        // Exact: never more than N within any period.
        prop_assert!(max_admitted_within(&hits, quota.period()) <= quota.requests());
        invariants::<SlidingLog>(&quota, &steps);
    }
}
