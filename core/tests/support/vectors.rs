//! The shared algorithm vectors of tests/vectors/ (format in tests/vectors/README.md), read
//! once here for every Rust test that replays them.

use flux_core::Decision;
use serde::Deserialize;
use std::path::PathBuf;

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

/// Every vector file, sorted by name, parsed.
pub fn vectors() -> Vec<(PathBuf, Vector)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors");
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
