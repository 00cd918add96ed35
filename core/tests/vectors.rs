//! Replays the shared vectors in tests/vectors/ through the embedded store with a manual clock.

use flux_core::{AlgorithmKind, Limiter, ManualClock, Quota};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Deserialize)]
struct Vector {
    description: String,
    algorithm: String,
    quota: VectorQuota,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct VectorQuota {
    requests: u64,
    period_us: u64,
    burst: Option<u64>,
}

#[derive(Deserialize)]
struct Step {
    now_us: u64,
    #[serde(default = "default_op")]
    op: String,
    #[serde(default = "default_key")]
    key: String,
    #[serde(default = "default_cost")]
    cost: u64,
    expect: Option<Expect>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Expect {
    allowed: bool,
    limit: u64,
    remaining: u64,
    reset_after_us: u64,
    retry_after_us: u64,
}

fn default_op() -> String {
    "hit".into()
}
fn default_key() -> String {
    "k".into()
}
fn default_cost() -> u64 {
    1
}

fn vector_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/vectors exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_vector_replays_exactly_on_the_memory_store() {
    let files = vector_files();
    assert!(
        files.len() >= 6,
        "expected a vector per algorithm, found {files:?}"
    );
    let mut seen = std::collections::HashSet::new();
    for file in files {
        let vector: Vector = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
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
            let got = Expect {
                allowed: decision.allowed,
                limit: decision.limit,
                remaining: decision.remaining,
                reset_after_us: decision.reset_after.div_ceil(1_000),
                retry_after_us: decision.retry_after.div_ceil(1_000),
            };
            assert_eq!(
                Some(&got),
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
