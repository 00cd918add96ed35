//! The Lua scripts, assembled from the files in `lua/`, and the translation of a limit into
//! script arguments and of a script's reply into a [`Decision`].
//!
//! One script per algorithm (`common.lua` + `<algorithm>.lua` + `single.lua`), one for
//! several limits at once (`common.lua` + all six + `multi.lua`), and for many independent
//! hits at once one per algorithm (`common.lua` + `<algorithm>.lua` + `batch.lua`) and one for
//! any mix (`common.lua` + all six + `batch.lua`). Each is sent as EVALSHA and loaded on
//! NOSCRIPT (see `pool.rs`).

use crate::{with_algorithm, AlgorithmKind, Decision, Error, Quota, Result};
use redis::{Script, Value};
use std::sync::OnceLock;

const COMMON: &str = include_str!("lua/common.lua");
const SINGLE: &str = include_str!("lua/single.lua");
const MULTI: &str = include_str!("lua/multi.lua");
const BATCH: &str = include_str!("lua/batch.lua");

/// Each algorithm's Lua source, in [`AlgorithmKind::ALL`] order.
const ALGORITHMS: [&str; 6] = [
    include_str!("lua/gcra.lua"),
    include_str!("lua/token_bucket.lua"),
    include_str!("lua/leaky_bucket.lua"),
    include_str!("lua/fixed_window.lua"),
    include_str!("lua/sliding_window.lua"),
    include_str!("lua/sliding_log.lua"),
];

/// Largest µs value the scripts' doubles keep exact, with room for `now` (≈ 2^50.6 µs today).
const MAX_EXACT_US: u64 = 1 << 52;

/// A script and its source (the source is needed for SCRIPT LOAD after NOSCRIPT).
pub(crate) struct Loaded {
    pub(crate) script: Script,
    pub(crate) code: String,
}

impl Loaded {
    fn new(code: String) -> Self {
        Loaded {
            script: Script::new(&code),
            code,
        }
    }
}

pub(crate) struct Scripts {
    single: Vec<Loaded>,
    pub(crate) multi: Loaded,
    /// The batch script of each algorithm, in [`AlgorithmKind::ALL`] order.
    batch: Vec<Loaded>,
    /// The batch script for hits of several algorithms.
    batch_mixed: Loaded,
}

impl Scripts {
    pub(crate) fn get() -> &'static Scripts {
        static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
        SCRIPTS.get_or_init(|| Scripts {
            single: AlgorithmKind::ALL
                .iter()
                .map(|&kind| Loaded::new(single_source(kind)))
                .collect(),
            multi: Loaded::new(multi_source()),
            batch: AlgorithmKind::ALL
                .iter()
                .map(|&kind| Loaded::new(batch_source(Some(kind))))
                .collect(),
            batch_mixed: Loaded::new(batch_source(None)),
        })
    }

    /// Every script flux sends, once each (what [`super::RedisStore::load_scripts`] loads).
    pub(crate) fn all(&self) -> impl Iterator<Item = &Loaded> {
        self.single
            .iter()
            .chain(std::iter::once(&self.multi))
            .chain(self.batch.iter())
            .chain(std::iter::once(&self.batch_mixed))
    }

    pub(crate) fn single(&self, kind: AlgorithmKind) -> &Loaded {
        &self.single[kind as usize]
    }

    /// The batch script for hits of these algorithms: the one of their algorithm when they
    /// share it (the usual case, one limit; a script that defines one algorithm rather than
    /// six costs Redis a few µs less per call, which matters for small batches), else the
    /// mixed one.
    pub(crate) fn batch(&self, mut kinds: impl Iterator<Item = AlgorithmKind>) -> &Loaded {
        match kinds.next() {
            Some(first) if kinds.all(|kind| kind == first) => &self.batch[first as usize],
            _ => &self.batch_mixed,
        }
    }
}

/// The full source of the one-limit script for `kind`.
pub fn single_source(kind: AlgorithmKind) -> String {
    format!(
        "{COMMON}\n{}\nlocal THIS = ALG.{}\n\n{SINGLE}",
        ALGORITHMS[kind as usize],
        kind.name()
    )
}

/// The full source of the several-limits script.
pub fn multi_source() -> String {
    every_algorithm_then(MULTI)
}

/// The full source of the batch script (many independent hits in one call) for hits of
/// `kind`, or of any algorithm (`None`).
pub fn batch_source(kind: Option<AlgorithmKind>) -> String {
    match kind {
        Some(kind) => format!("{COMMON}\n{}\n{BATCH}", ALGORITHMS[kind as usize]),
        None => every_algorithm_then(BATCH),
    }
}

/// `common.lua`, the six algorithms, then `entry`.
fn every_algorithm_then(entry: &str) -> String {
    let mut code = String::from(COMMON);
    for algorithm in ALGORITHMS {
        code.push('\n');
        code.push_str(algorithm);
    }
    code.push('\n');
    code.push_str(entry);
    code
}

/// One limit as the scripts see it: algorithm, its two parameters in µs, and the capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimitSpec {
    pub(crate) kind: AlgorithmKind,
    /// E (µs) for the bucket algorithms, T (µs) for the window algorithms.
    pub(crate) p1: u64,
    /// B for the bucket algorithms, N for the window algorithms.
    pub(crate) p2: u64,
    /// `Decision::limit` and the largest cost that can pass.
    pub(crate) limit: u64,
}

impl LimitSpec {
    /// The script parameters of `quota` under `kind`: T in whole µs (rounded up) and
    /// E = ⌈T_µs / N⌉, the same arithmetic as the embedded store whenever T/N is a whole number
    /// of µs (and never a looser limit otherwise).
    pub(crate) fn new(quota: &Quota, kind: AlgorithmKind) -> Result<Self> {
        let period_us = quota.period().div_ceil(1000);
        let limit = with_algorithm!(kind, A => A::new(quota).limit());
        let (p1, p2) = if kind.is_window() {
            (period_us, quota.requests())
        } else {
            let interval = period_us.div_ceil(quota.requests());
            match quota.burst().checked_mul(interval) {
                Some(tau) if tau <= MAX_EXACT_US => {}
                _ => {
                    return Err(Error::InvalidQuota {
                        field: "burst",
                        reason: format!(
                            "{} × {interval} µs exceeds what the Redis store keeps exact \
                             (2^52 µs, about 142 years)",
                            quota.burst()
                        ),
                    })
                }
            }
            (interval, quota.burst())
        };
        Ok(LimitSpec {
            kind,
            p1,
            p2,
            limit,
        })
    }
}

/// Microseconds to nanoseconds, saturating.
fn ns(us: i64) -> u64 {
    (us.max(0) as u64).saturating_mul(1000)
}

fn malformed(reply: &Value) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "flux script reply is not {allowed, remaining, reset_after_us, retry_after_us}",
        format!("{reply:?}"),
    ))
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

/// One decision from four integers {allowed, remaining, reset_after_us, retry_after_us}.
fn decision_of(four: &[Value], limit: u64) -> Option<Decision> {
    match four {
        [allowed, remaining, reset_after, retry_after] => Some(Decision {
            allowed: integer(allowed)? == 1,
            limit,
            remaining: integer(remaining)?.max(0) as u64,
            reset_after: ns(integer(reset_after)?),
            retry_after: ns(integer(retry_after)?),
        }),
        _ => None,
    }
}

/// Reads decisions from `values` (groups of four integers).
pub(crate) fn decisions(
    values: &[Value],
    limits: impl IntoIterator<Item = u64>,
    whole: &Value,
) -> std::result::Result<Vec<Decision>, redis::RedisError> {
    let limits: Vec<u64> = limits.into_iter().collect();
    if values.len() != 4 * limits.len() {
        return Err(malformed(whole));
    }
    values
        .chunks(4)
        .zip(limits)
        .map(|(chunk, limit)| decision_of(chunk, limit).ok_or_else(|| malformed(whole)))
        .collect()
}

/// The decision in a one-limit script's reply.
pub(crate) fn single_decision(
    reply: &Value,
    limit: u64,
) -> std::result::Result<Decision, redis::RedisError> {
    match reply {
        Value::Array(values) => decision_of(values, limit).ok_or_else(|| malformed(reply)),
        _ => Err(malformed(reply)),
    }
}

/// Each hit's result in the batch script's reply: its decision, or the error Redis (or the
/// script) gave for that hit alone, which the script returns as a string '<CODE> <message>'.
/// The whole reply is an error only when it is not one entry per hit.
pub(crate) fn batch_decisions(
    reply: Value,
    limits: &[u64],
) -> std::result::Result<Vec<std::result::Result<Decision, redis::RedisError>>, redis::RedisError> {
    let entries = match reply {
        Value::Array(entries) if entries.len() == limits.len() => entries,
        other => return Err(malformed(&other)),
    };
    Ok(entries
        .into_iter()
        .zip(limits)
        .map(|(entry, &limit)| match entry {
            Value::BulkString(message) => Err(server_error(&message)),
            Value::ServerError(err) => Err(redis::RedisError::from(err)),
            entry => single_decision(&entry, limit),
        })
        .collect())
}

/// The error Redis would have replied with for `message` ('<CODE> <message>'), so that it
/// reads (code, kind) exactly as a direct error reply does.
fn server_error(message: &[u8]) -> redis::RedisError {
    let mut line = Vec::with_capacity(message.len() + 3);
    line.push(b'-');
    line.extend(
        message
            .iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    line.extend_from_slice(b"\r\n");
    match redis::parse_redis_value(&line) {
        Ok(Value::ServerError(err)) => err.into(),
        _ => redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "flux batch script: unreadable error",
            String::from_utf8_lossy(message).into_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_opens_with_its_interface() {
        for (kind, source) in AlgorithmKind::ALL.iter().zip(ALGORITHMS) {
            let head: String = source.lines().take(16).collect::<Vec<_>>().join("\n");
            for needle in ["KEYS[1]", "ARGV[1]", "ARGV[5]", "Reply:"] {
                assert!(head.contains(needle), "{kind}: {needle} missing");
            }
            assert!(source.contains(&format!("ALG.{} = {{", kind.name())));
            assert!(source.contains("refund = function("), "{kind}: no refund");
        }
        for source in [SINGLE, MULTI, BATCH] {
            assert!(source.contains("KEYS[") && source.contains("Reply:"));
        }
    }

    #[test]
    fn scripts_never_use_tostring_on_numbers() {
        for source in ALGORITHMS.into_iter().chain([COMMON, SINGLE, MULTI, BATCH]) {
            for line in source.lines().filter(|l| !l.trim_start().starts_with("--")) {
                assert!(
                    !line.contains("tostring(") || line.contains("tostring(ARGV"),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn specs_use_whole_microseconds() {
        let quota = Quota::new(3, 60_000_000_000, None).unwrap();
        let spec = LimitSpec::new(&quota, AlgorithmKind::Gcra).unwrap();
        assert_eq!((spec.p1, spec.p2, spec.limit), (20_000_000, 3, 3));
        let spec = LimitSpec::new(&quota, AlgorithmKind::SlidingWindow).unwrap();
        assert_eq!((spec.p1, spec.p2, spec.limit), (60_000_000, 3, 3));
        // 20 000 per second: E = 50 µs.
        let quota = Quota::new(20_000, 1_000_000_000, None).unwrap();
        assert_eq!(
            LimitSpec::new(&quota, AlgorithmKind::TokenBucket)
                .unwrap()
                .p1,
            50
        );
    }

    #[test]
    fn huge_bursts_are_refused_by_name() {
        let quota = Quota::new(1, crate::quota::MAX_PERIOD, Some(200)).unwrap();
        let err = LimitSpec::new(&quota, AlgorithmKind::Gcra).unwrap_err();
        assert!(err.to_string().contains("2^52"), "{err}");
    }
}
