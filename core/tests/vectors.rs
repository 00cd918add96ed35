//! Replays the shared vectors in tests/vectors/ through the embedded store with a manual clock.

mod support;

use flux_core::{AlgorithmKind, Limiter, ManualClock, Quota};
use std::sync::Arc;
use support::vectors::{vectors, Expect};

#[test]
fn every_vector_replays_exactly_on_the_memory_store() {
    let vectors = vectors();
    assert!(vectors.len() >= 6, "expected a vector per algorithm");
    let mut seen = std::collections::HashSet::new();
    for (file, vector) in vectors {
        let kind: AlgorithmKind = vector.algorithm.parse().unwrap();
        seen.insert(kind);
        let quota = Quota::new(
            vector.quota.requests,
            vector.quota.period_us * 1_000,
            vector.quota.burst,
        )
        .unwrap();
        let clock = Arc::new(ManualClock::new(0));
        let limiter = Limiter::builder(quota)
            .algorithm(kind)
            .clock(clock.clone())
            .build_memory()
            .unwrap();
        for (i, step) in vector.steps.iter().enumerate() {
            clock.set(step.now_us * 1_000);
            let decision = match step.op.as_str() {
                "hit" => limiter.hit(&step.key, step.cost).unwrap(),
                "peek" => limiter.peek(&step.key).unwrap(),
                "reset" => {
                    limiter.reset(&step.key).unwrap();
                    continue;
                }
                other => panic!("{}: unknown op {other}", file.display()),
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
    assert_eq!(
        seen.len(),
        AlgorithmKind::ALL.len(),
        "every algorithm has a vector"
    );
}
