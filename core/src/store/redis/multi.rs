//! One hit against several limits in one atomic script (`multi.lua`): it passes and is counted
//! by every limit, or is denied and counted by none. [`crate::hit_many`] sends a batch of Redis
//! limiters here.

use super::commands;
use super::failure::shown_key;
use super::scripts::{self, LimitSpec, Scripts};
use super::slots::key_slot;
use super::store::RedisStore;
use crate::{Error, FailurePolicy, Limiter, MultiOutcome, Outcome, Result, Source};
use redis::{ErrorKind, RedisError, Value};

/// When a multi-limit hit's failures are decided.
#[derive(Clone, Copy)]
enum Failing {
    /// By the limits' policies: fail open only if every limit does.
    ByPolicy,
    /// Always as errors (replays and tests at an explicit time).
    AsErrors,
}

impl RedisStore {
    /// One hit against several limits in one atomic round trip: it passes and is counted by
    /// every limit, or is denied and counted by none. `hits` are (limit, identity, cost), every
    /// limit on this store (else [`Error::InvalidArgument`]); [`crate::hit_many`] is the entry
    /// point that checks that for any store.
    ///
    /// On a cluster all keys must share a slot, which they do when every entry uses the same
    /// identity (the identity is the hash tag); different identities are refused with
    /// [`Error::InvalidArgument`] before anything is sent. The deny cache is not consulted (it
    /// learns from the denials, though). When the first limit was built with a clock, the
    /// script runs at its time. A failure fails open only if every limit does.
    pub fn hit_many(&self, hits: &[(&Limiter, &str, u64)]) -> Result<MultiOutcome> {
        crate::check_many(hits)?;
        self.hit_many_checked(hits)
    }

    /// [`Self::hit_many`] of a batch [`crate::check_many`] accepted (what [`crate::hit_many`]
    /// sends here).
    pub(crate) fn hit_many_checked(&self, hits: &[(&Limiter, &str, u64)]) -> Result<MultiOutcome> {
        let now_us = hits
            .first()
            .and_then(|(limiter, _, _)| limiter.redis())
            .and_then(|limit| limit.now_us());
        self.multi(hits, now_us, Failing::ByPolicy)
    }

    /// [`Self::hit_many`] at an explicit time (µs since the epoch) instead of the server's;
    /// for replays and tests. Failures are always returned as errors.
    pub fn hit_many_at(&self, hits: &[(&Limiter, &str, u64)], now_us: u64) -> Result<MultiOutcome> {
        crate::check_many(hits)?;
        self.multi(hits, Some(now_us), Failing::AsErrors)
    }

    fn multi(
        &self,
        hits: &[(&Limiter, &str, u64)],
        now_us: Option<u64>,
        failing: Failing,
    ) -> Result<MultiOutcome> {
        let mut limits: Vec<(LimitSpec, u64)> = Vec::with_capacity(hits.len());
        let mut keys: Vec<String> = Vec::with_capacity(hits.len());
        let mut all_open = true;
        // Costs and the one store were checked by `crate::check_many`; a limiter of another
        // Redis store would still be refused here, before anything is sent.
        for (limiter, key, cost) in hits {
            let limit = match limiter.redis() {
                Some(limit) if limit.store().same(self) => limit,
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "limit {:?} is not on this Redis store",
                        limiter.prefix()
                    )))
                }
            };
            let redis_key = limit.redis_key(key);
            if keys.contains(&redis_key) {
                return Err(Error::InvalidArgument(format!(
                    "limit {:?} ({}) appears twice for one key in one multi-limit hit",
                    limiter.prefix(),
                    limiter.algorithm()
                )));
            }
            keys.push(redis_key);
            limits.push((limit.spec, *cost));
            all_open &= limit.policy.is_open();
        }
        let shared = self.shared();
        if shared.cluster {
            let slot = key_slot(&keys[0]);
            if let Some(other) = keys.iter().find(|k| key_slot(k) != slot) {
                return Err(Error::InvalidArgument(format!(
                    "on a Redis Cluster the keys of one multi-limit hit must share a hash slot, \
                     i.e. use the same identity: {} and {} do not",
                    shown_key(&keys[0]),
                    shown_key(other)
                )));
            }
        }
        let scripts = Scripts::get();
        let cmd = commands::multi(&scripts.multi.script, &keys, &limits, now_us);
        let started = shared.deny_now();
        let reply = shared.run(|conn| {
            let value = conn.eval(&scripts.multi.script, &scripts.multi.code, &cmd)?;
            match &value {
                Value::Array(values) if !values.is_empty() => {
                    let decisions = scripts::decisions(
                        &values[1..],
                        limits.iter().map(|(spec, _)| spec.limit),
                        &value,
                    )?;
                    Ok((values[0] == Value::Int(1), decisions))
                }
                _ => Err(RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "flux multi-limit script reply is not an array",
                    format!("{value:?}"),
                ))),
            }
        });
        let failure = match reply {
            Ok((allowed, decisions)) => {
                if now_us.is_none() {
                    for ((key, (_, cost)), decision) in keys.iter().zip(&limits).zip(&decisions) {
                        shared.deny_learn(key, *cost, started, decision);
                    }
                }
                return Ok(MultiOutcome {
                    allowed,
                    decisions,
                    source: Source::Redis,
                    error: None,
                });
            }
            Err(failure) => failure.naming_keys(&keys),
        };
        let policy = match failing {
            Failing::ByPolicy => FailurePolicy::from_fail_open(all_open),
            Failing::AsErrors => FailurePolicy::Closed,
        };
        shared.count_failure(&failure, policy);
        if !policy.is_open() {
            return Err(failure.into_error());
        }
        let error = failure.into_error();
        let decisions = limits
            .iter()
            .map(|(spec, cost)| {
                shared.count_fail_open();
                Outcome::failed_open(spec.limit, *cost, error.clone()).decision
            })
            .collect();
        Ok(MultiOutcome {
            allowed: true,
            decisions,
            source: Source::FailOpen,
            error: Some(Box::new(error)),
        })
    }
}
