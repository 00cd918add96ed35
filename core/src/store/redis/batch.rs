//! Independent hits of concurrent callers in one pipeline: the batch script decides up to
//! [`SCRIPT_BATCH`] hits per EVALSHA, each exactly as the one-limit script would, and a failure
//! is each hit's own, under its own limit's failure policy. The Python face's I/O threads
//! (`ffi/src/python/dispatcher.rs`) send their pipelines through [`RedisStore::hit_batch`].

use super::commands::{self, BatchHit};
use super::failure::Failure;
use super::limit::RedisLimit;
use super::scripts::{self, Scripts};
use super::slots::key_slot;
use super::store::RedisStore;
use crate::{Decision, Error, Limiter, Outcome, Result, Source};
use redis::{Cmd, RedisError};

/// The most hits one EVALSHA of the batch script decides. Larger batches go as several
/// EVALSHAs in one pipeline: the script's fixed cost is spread thin already at this size, and
/// Redis, which runs one script at a time, stays responsive to other clients (a chunk takes
/// well under a millisecond).
pub const SCRIPT_BATCH: usize = 128;

/// One hit of a batch on its way to Redis.
struct Queued<'a> {
    /// Its place in the caller's list.
    index: usize,
    limit: &'a RedisLimit,
    redis_key: String,
    cost: u64,
}

impl Queued<'_> {
    fn as_batch_hit(&self) -> BatchHit<'_> {
        BatchHit {
            spec: self.limit.spec,
            redis_key: &self.redis_key,
            cost: self.cost,
        }
    }
}

impl RedisStore {
    /// Independent hits (each with its own decision, not atomic together), decided by the
    /// batch script: in chunks of at most [`SCRIPT_BATCH`] hits per EVALSHA, all chunks in one
    /// pipeline, so one round trip on a single server. On a cluster a chunk holds the keys of
    /// one hash slot, and chunks go one by one. Hits the deny cache answers are not sent.
    ///
    /// Each hit gets exactly the decision the one-limit script would give it, in the order
    /// given, except that every hit of a chunk sees the same server time. A hit Redis refuses
    /// (a key of the wrong type, maxmemory) fails alone, under its limit's failure policy, and
    /// the others stand. A hit whose limiter is not on this store fails alone too.
    pub fn hit_batch(&self, hits: &[(&Limiter, &str, u64)]) -> Vec<Result<Outcome>> {
        let shared = self.shared();
        let mut results: Vec<Option<Result<Outcome>>> = Vec::with_capacity(hits.len());
        let mut queued = Vec::new();
        for (index, &(limiter, key, cost)) in hits.iter().enumerate() {
            match self.queue(index, limiter, key, cost, true) {
                Ok(hit) => {
                    results.push(None);
                    queued.push(hit);
                }
                Err(answered) => results.push(Some(answered)),
            }
        }
        if !queued.is_empty() {
            let started = shared.deny_now();
            match self.send_batch(&queued, None) {
                Ok(replies) => {
                    for (hit, reply) in queued.iter().zip(replies) {
                        results[hit.index] = Some(match reply {
                            Ok(decision) => {
                                shared.deny_learn(&hit.redis_key, hit.cost, started, &decision);
                                Ok(Outcome::new(decision, Source::Redis))
                            }
                            Err(err) => shared.fail(
                                shared.rejected(&err, &hit.redis_key),
                                hit.limit.spec.limit,
                                hit.cost,
                                hit.limit.policy,
                            ),
                        });
                    }
                }
                Err(failure) => {
                    for hit in &queued {
                        results[hit.index] = Some(shared.fail(
                            failure.clone(),
                            hit.limit.spec.limit,
                            hit.cost,
                            hit.limit.policy,
                        ));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every hit has a result"))
            .collect()
    }

    /// [`Self::hit_batch`] at an explicit time (µs since the epoch) instead of the server's,
    /// for replays and tests: bypasses the deny cache; failures are always errors.
    pub fn hit_batch_at(
        &self,
        hits: &[(&Limiter, &str, u64)],
        now_us: u64,
    ) -> Vec<Result<Decision>> {
        let mut results: Vec<Option<Result<Decision>>> = Vec::with_capacity(hits.len());
        let mut queued = Vec::new();
        for (index, &(limiter, key, cost)) in hits.iter().enumerate() {
            match self.queue(index, limiter, key, cost, false) {
                Ok(hit) => {
                    results.push(None);
                    queued.push(hit);
                }
                Err(answered) => results.push(Some(answered.map(|outcome| outcome.decision))),
            }
        }
        if !queued.is_empty() {
            let replies = self
                .send_batch(&queued, Some(now_us))
                .map_err(Failure::into_error);
            for (n, hit) in queued.iter().enumerate() {
                results[hit.index] = Some(match &replies {
                    Ok(replies) => replies[n]
                        .clone()
                        .map_err(|err| self.shared().rejected(&err, &hit.redis_key).into_error()),
                    Err(err) => Err(err.clone()),
                });
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every hit has a result"))
            .collect()
    }

    /// A hit of a batch ready to send, or (`Err`) its result when none is needed: an invalid
    /// cost, a limiter not on this store, or (with `deny_cache`) a key the deny cache answers.
    fn queue<'a>(
        &self,
        index: usize,
        limiter: &'a Limiter,
        key: &str,
        cost: u64,
        deny_cache: bool,
    ) -> std::result::Result<Queued<'a>, Result<Outcome>> {
        limiter.check_cost(cost).map_err(Err)?;
        let limit = match limiter.redis() {
            Some(limit) if limit.store().same(self) => limit,
            _ => {
                return Err(Err(Error::InvalidArgument(format!(
                    "limit {:?} is not on this Redis store",
                    limiter.prefix()
                ))))
            }
        };
        let redis_key = limit.redis_key(key);
        if deny_cache {
            if let Some(decision) = self.shared().deny_check(&redis_key, cost) {
                return Err(Ok(Outcome::new(decision, Source::DenyCache)));
            }
        }
        Ok(Queued {
            index,
            limit,
            redis_key,
            cost,
        })
    }

    /// Sends `queued` through the batch script, one EVALSHA per chunk, every chunk in one
    /// pipeline; each hit's decision or the error Redis gave for it alone, in order. `Err`
    /// when the round trip itself failed (nothing known about any hit).
    fn send_batch(
        &self,
        queued: &[Queued<'_>],
        now_us: Option<u64>,
    ) -> std::result::Result<Vec<std::result::Result<Decision, RedisError>>, Failure> {
        let scripts = Scripts::get();
        let chunks = self.chunks(queued);
        let calls: Vec<(&redis::Script, &str, Cmd)> = chunks
            .iter()
            .map(|chunk| {
                let batch = scripts.batch(chunk.iter().map(|&i| queued[i].limit.spec.kind));
                let hits = chunk.iter().map(|&i| queued[i].as_batch_hit());
                (
                    &batch.script,
                    batch.code.as_str(),
                    commands::batch(&batch.script, hits, now_us),
                )
            })
            .collect();
        let replies = self.shared().run(|conn| conn.eval_pipeline(&calls))?;
        let mut out: Vec<Option<std::result::Result<Decision, RedisError>>> =
            (0..queued.len()).map(|_| None).collect();
        for (chunk, reply) in chunks.iter().zip(replies) {
            let limits: Vec<u64> = chunk.iter().map(|&i| queued[i].limit.spec.limit).collect();
            match reply.and_then(|value| scripts::batch_decisions(value, &limits)) {
                Ok(decisions) => {
                    for (&i, decision) in chunk.iter().zip(decisions) {
                        out[i] = Some(decision);
                    }
                }
                Err(err) => {
                    for &i in chunk {
                        out[i] = Some(Err(err.clone()));
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.expect("every chunk is answered"))
            .collect())
    }

    /// `queued` split into the chunks of the batch script (indices into `queued`, in order):
    /// at most [`SCRIPT_BATCH`] hits each and, on a cluster, the keys of one hash slot each (a
    /// script may only touch keys of one slot there).
    fn chunks(&self, queued: &[Queued<'_>]) -> Vec<Vec<usize>> {
        let cluster = self.shared().cluster;
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
        for (i, hit) in queued.iter().enumerate() {
            let slot = if cluster { key_slot(&hit.redis_key) } else { 0 };
            match groups
                .iter_mut()
                .rev()
                .find(|(s, chunk)| *s == slot && chunk.len() < SCRIPT_BATCH)
            {
                Some((_, chunk)) => chunk.push(i),
                None => groups.push((slot, vec![i])),
            }
        }
        groups.into_iter().map(|(_, chunk)| chunk).collect()
    }
}
