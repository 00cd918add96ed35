//! The commands sent to Redis, built in one place: the EVALSHA of each script (one limit,
//! several limits at once, a batch of independent hits) and the SCAN pattern of a limit.
//!
//! Every script takes `now` as its first argument: `""` for Redis's own `TIME`, or an
//! explicit µs timestamp (replays, tests, a limiter built with a clock).

use super::scripts::LimitSpec;
use redis::{Cmd, Script};

/// `now` as the scripts take it.
fn push_now(cmd: &mut Cmd, now_us: Option<u64>) {
    match now_us {
        Some(now) => cmd.arg(now),
        None => cmd.arg(""),
    };
}

/// The EVALSHA of the one-limit script `script`: `mode` (`hit`, `peek`, `refund`) of `cost`
/// on `redis_key` under `spec`.
pub(crate) fn single(
    script: &Script,
    spec: &LimitSpec,
    redis_key: &str,
    mode: &str,
    cost: u64,
    now_us: Option<u64>,
) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(1).arg(redis_key);
    push_now(&mut cmd, now_us);
    cmd.arg(mode).arg(cost).arg(spec.p1).arg(spec.p2);
    cmd
}

/// The EVALSHA of the multi-limit script: each `(spec, cost)` on the key at the same index.
pub(crate) fn multi(
    script: &Script,
    keys: &[String],
    limits: &[(LimitSpec, u64)],
    now_us: Option<u64>,
) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len());
    for key in keys {
        cmd.arg(key);
    }
    push_now(&mut cmd, now_us);
    for (spec, cost) in limits {
        cmd.arg(spec.kind.name())
            .arg(*cost)
            .arg(spec.p1)
            .arg(spec.p2);
    }
    cmd
}

/// One hit of a batch, as the batch script takes it.
pub(crate) struct BatchHit<'a> {
    pub(crate) spec: LimitSpec,
    pub(crate) redis_key: &'a str,
    pub(crate) cost: u64,
}

/// The EVALSHA of batch script `script` for `hits`: each distinct limit once, then each hit
/// as (its limit's number, its cost).
pub(crate) fn batch<'a>(
    script: &Script,
    hits: impl Iterator<Item = BatchHit<'a>> + Clone,
    now_us: Option<u64>,
) -> Cmd {
    let mut limits: Vec<LimitSpec> = Vec::new();
    let numbers: Vec<usize> = hits
        .clone()
        .map(
            |hit| match limits.iter().position(|known| *known == hit.spec) {
                Some(at) => at + 1,
                None => {
                    limits.push(hit.spec);
                    limits.len()
                }
            },
        )
        .collect();
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(numbers.len());
    for hit in hits.clone() {
        cmd.arg(hit.redis_key);
    }
    push_now(&mut cmd, now_us);
    cmd.arg(limits.len());
    for spec in &limits {
        cmd.arg(spec.kind.name()).arg(spec.p1).arg(spec.p2);
    }
    for (hit, number) in hits.zip(numbers) {
        cmd.arg(number).arg(hit.cost);
    }
    cmd
}

/// The SCAN MATCH pattern of every key of the limit `prefix` (key prefix included) and
/// algorithm `algorithm`.
pub(crate) fn scan_pattern(prefix: &str, algorithm: &str) -> String {
    format!("{}{{*}}:{algorithm}", glob_escape(prefix))
}

/// `text` with the glob characters of SCAN MATCH escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
