//! Replays the shared vectors in tests/vectors/ (and the refund vectors in
//! tests/vectors/refund/) through the embedded store with a manual clock.

mod support;

use flux_core::{AlgorithmKind, Limiter, ManualClock};
use std::collections::HashSet;
use std::sync::Arc;
use support::vectors::{refund_vectors, replay, vectors, LimiterFace, Vector};

fn memory_face(vector: &Vector) -> LimiterFace {
    let clock = Arc::new(ManualClock::new(0));
    let limiter = Limiter::builder(vector.quota())
        .algorithm(vector.kind())
        .clock(clock.clone())
        .build_memory()
        .unwrap();
    LimiterFace { limiter, clock }
}

#[test]
fn every_vector_replays_exactly_on_the_memory_store() {
    let vectors = vectors();
    assert!(vectors.len() >= 6, "expected a vector per algorithm");
    let mut seen = HashSet::new();
    for (file, vector) in vectors {
        seen.insert(vector.kind());
        replay(&file, &vector, &mut memory_face(&vector));
    }
    assert_eq!(
        seen.len(),
        AlgorithmKind::ALL.len(),
        "every algorithm has a vector"
    );
}

#[test]
fn every_refund_vector_replays_exactly_on_the_memory_store() {
    let mut seen = HashSet::new();
    for (file, vector) in refund_vectors() {
        seen.insert(vector.kind());
        replay(&file, &vector, &mut memory_face(&vector));
    }
    assert_eq!(
        seen.len(),
        AlgorithmKind::ALL.len(),
        "every algorithm has a refund vector"
    );
}
