//! The shared algorithm vectors of tests/vectors/ (format in tests/vectors/README.md), read
//! once here for every Rust test that replays them, and the one replay loop every store's
//! test drives through a [`Face`].

use flux_core::{AlgorithmKind, Decision, Limiter, ManualClock, Quota};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Deserialize)]
pub struct Vector {
    pub description: String,
    pub algorithm: String,
    pub quota: VectorQuota,
    pub steps: Vec<Step>,
}

#[derive(Deserialize)]
pub struct VectorQuota {
    pub requests: u64,
    pub period_us: u64,
    pub burst: Option<u64>,
}

#[derive(Deserialize)]
pub struct Step {
    pub now_us: u64,
    #[serde(default = "default_op")]
    pub op: String,
    #[serde(default = "default_key")]
    pub key: String,
    #[serde(default = "default_cost")]
    pub cost: u64,
    pub expect: Option<Expect>,
    /// When given: whether the store holds no state at all after this step.
    #[serde(default)]
    pub empty: Option<bool>,
}

#[derive(Deserialize, Debug, PartialEq)]
pub struct Expect {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    pub reset_after_us: u64,
    pub retry_after_us: u64,
}

impl From<Decision> for Expect {
    fn from(d: Decision) -> Self {
        Expect {
            allowed: d.allowed,
            limit: d.limit,
            remaining: d.remaining,
            reset_after_us: d.reset_after.div_ceil(1_000),
            retry_after_us: d.retry_after.div_ceil(1_000),
        }
    }
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

/// Every vector file of tests/vectors/, sorted by name, parsed.
pub fn vectors() -> Vec<(PathBuf, Vector)> {
    vectors_in("")
}

/// Every vector file of tests/vectors/refund/ (hits and refunds), sorted by name, parsed.
pub fn refund_vectors() -> Vec<(PathBuf, Vector)> {
    vectors_in("refund")
}

fn vectors_in(sub: &str) -> Vec<(PathBuf, Vector)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors")
        .join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/vectors exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let vector = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            (file, vector)
        })
        .collect()
}

impl Vector {
    /// The vector's algorithm.
    pub fn kind(&self) -> AlgorithmKind {
        self.algorithm.parse().unwrap()
    }

    /// The vector's quota (periods in ns).
    pub fn quota(&self) -> Quota {
        Quota::new(
            self.quota.requests,
            self.quota.period_us * 1_000,
            self.quota.burst,
        )
        .unwrap()
    }
}

/// One store as the replay drives it. Times are the vector's µs since the epoch.
pub trait Face {
    fn hit(&mut self, key: &str, cost: u64, now_us: u64) -> Decision;
    fn peek(&mut self, key: &str, now_us: u64) -> Decision;
    fn refund(&mut self, key: &str, cost: u64, now_us: u64) -> Decision;
    fn reset(&mut self, key: &str, now_us: u64);
    /// True when the store holds no state (for the steps that say `empty`).
    fn is_empty(&mut self) -> bool;
}

/// Replays `vector` (read from `file`) through `face`, asserting every expected decision and
/// every `empty`, with messages naming the file, the description and the step.
pub fn replay(file: &Path, vector: &Vector, face: &mut dyn Face) {
    for (i, step) in vector.steps.iter().enumerate() {
        let at = || format!("{} ({}), step {i}", file.display(), vector.description);
        let decision = match step.op.as_str() {
            "hit" => Some(face.hit(&step.key, step.cost, step.now_us)),
            "peek" => Some(face.peek(&step.key, step.now_us)),
            "refund" => Some(face.refund(&step.key, step.cost, step.now_us)),
            "reset" => {
                face.reset(&step.key, step.now_us);
                None
            }
            other => panic!("{}: unknown op {other}", at()),
        };
        if let Some(decision) = decision {
            assert_eq!(
                Some(&Expect::from(decision)),
                step.expect.as_ref(),
                "{}",
                at()
            );
        }
        if let Some(empty) = step.empty {
            assert_eq!(face.is_empty(), empty, "{}: store empty?", at());
        }
    }
}

/// A [`Limiter`] (any store) under a manual clock set to each step's time.
pub struct LimiterFace {
    pub limiter: Limiter,
    pub clock: Arc<ManualClock>,
}

impl LimiterFace {
    fn at(&self, now_us: u64) -> &Limiter {
        self.clock.set(now_us * 1_000);
        &self.limiter
    }
}

impl Face for LimiterFace {
    fn hit(&mut self, key: &str, cost: u64, now_us: u64) -> Decision {
        self.at(now_us).hit(key, cost).unwrap()
    }
    fn peek(&mut self, key: &str, now_us: u64) -> Decision {
        self.at(now_us).peek(key).unwrap()
    }
    fn refund(&mut self, key: &str, cost: u64, now_us: u64) -> Decision {
        self.at(now_us).refund(key, cost).unwrap()
    }
    fn reset(&mut self, key: &str, now_us: u64) {
        self.at(now_us).reset(key).unwrap()
    }
    fn is_empty(&mut self) -> bool {
        self.limiter.store().is_empty()
    }
}
