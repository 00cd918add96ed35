//! `RedisLimit`: one limit's state in Redis, the [`Store`] of a Redis-backed [`crate::Limiter`]:
//! the single-key operations (hit, peek, refund, reset, count), each one EVALSHA, each
//! answering with where its decision came from and applying the limit's failure policy.

use super::commands;
use super::failure::Failure;
use super::scripts::{self, LimitSpec, Scripts};
use super::store::{RedisStore, Shared};
use crate::store::Store;
use crate::{Clock, Decision, FailurePolicy, Outcome, Result, Source};
use std::fmt;
use std::sync::Arc;

/// One limit's state in Redis: the [`Store`] a Redis-backed [`crate::Limiter`] uses.
#[derive(Clone)]
pub struct RedisLimit {
    store: RedisStore,
    pub(crate) spec: LimitSpec,
    /// `key_prefix` + the limit's prefix.
    prefix: String,
    pub(crate) policy: FailurePolicy,
    /// Given: hits are decided at this clock's time instead of Redis's `TIME`, and skip the
    /// deny cache (which runs on real time).
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for RedisLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimit")
            .field("target", &self.shared().target)
            .field("algorithm", &self.spec.kind.name())
            .field("prefix", &self.prefix)
            .field("policy", &self.policy)
            .finish()
    }
}

impl RedisLimit {
    pub(crate) fn new(
        store: RedisStore,
        spec: LimitSpec,
        prefix: String,
        policy: FailurePolicy,
        clock: Option<Arc<dyn Clock>>,
    ) -> RedisLimit {
        RedisLimit {
            store,
            spec,
            prefix,
            policy,
            clock,
        }
    }

    #[inline]
    fn shared(&self) -> &Shared {
        self.store.shared()
    }

    /// The Redis key holding `identity`'s state for this limit:
    /// `{key_prefix}{prefix}{<identity>}:<algorithm>`.
    pub fn redis_key(&self, identity: &str) -> String {
        let tag = self.spec.kind.name();
        let mut key = String::with_capacity(self.prefix.len() + identity.len() + tag.len() + 3);
        key.push_str(&self.prefix);
        key.push('{');
        key.push_str(identity);
        key.push_str("}:");
        key.push_str(tag);
        key
    }

    /// The store this limit lives in.
    pub fn store(&self) -> &RedisStore {
        &self.store
    }

    /// True when `self` and `other` live in the same store (what a multi-limit hit needs).
    pub fn same_store(&self, other: &RedisLimit) -> bool {
        self.store.same(&other.store)
    }

    /// The capacity (`Decision::limit`).
    pub fn capacity(&self) -> u64 {
        self.spec.limit
    }

    /// The failure policy of this limit.
    pub fn policy(&self) -> FailurePolicy {
        self.policy
    }

    /// True when the limit was built with a clock: its hits are decided at that clock's time
    /// (and so cannot join the pipelines of the batch script, which run at Redis's).
    pub fn has_clock(&self) -> bool {
        self.clock.is_some()
    }

    /// The explicit time of a limit built with a clock, in µs (the scripts' unit).
    pub(crate) fn now_us(&self) -> Option<u64> {
        self.clock.as_ref().map(|clock| clock.now() / 1000)
    }

    /// Refuses a cost of 0 or above the capacity (for the entry points that do not come
    /// through [`crate::Limiter`], which checks it itself).
    fn check_cost(&self, cost: u64) -> Result<()> {
        crate::limiter::check_cost(cost, self.spec.limit)
    }

    /// One EVALSHA of the one-limit script, through the breaker.
    fn call(
        &self,
        redis_key: &str,
        mode: &str,
        cost: u64,
        now_us: Option<u64>,
    ) -> std::result::Result<Decision, Failure> {
        let loaded = Scripts::get().single(self.spec.kind);
        let cmd = commands::single(&loaded.script, &self.spec, redis_key, mode, cost, now_us);
        let limit = self.spec.limit;
        self.shared()
            .run(|conn| {
                let value = conn.eval(&loaded.script, &loaded.code, &cmd)?;
                scripts::single_decision(&value, limit)
            })
            .map_err(|failure| failure.naming_keys([&redis_key.to_string()]))
    }

    /// `mode` of `cost` on `identity` (no deny cache), its failure under the limit's policy
    /// (`fail_cost`: what a fail-open result reports as taken).
    fn decide(&self, identity: &str, mode: &str, cost: u64, fail_cost: u64) -> Result<Outcome> {
        let redis_key = self.redis_key(identity);
        let result = self.call(&redis_key, mode, cost, self.now_us());
        if mode == "refund" {
            // What was given back is usable at once from this process.
            self.shared().deny_forget(&redis_key);
        }
        match result {
            Ok(decision) => Ok(Outcome::new(decision, Source::Redis)),
            Err(failure) => self
                .shared()
                .fail(failure, self.spec.limit, fail_cost, self.policy),
        }
    }

    /// A hit at an explicit time, `now_us` µs since the epoch, instead of the server's: the
    /// replay of test vectors and simulations. Bypasses the deny cache; failures are always
    /// errors. (Keys written so are kept at least a minute of real time.)
    pub fn hit_at(&self, identity: &str, cost: u64, now_us: u64) -> Result<Decision> {
        self.check_cost(cost)?;
        self.call(&self.redis_key(identity), "hit", cost, Some(now_us))
            .map_err(Failure::into_error)
    }

    /// A refund at an explicit time (see [`Self::hit_at`]).
    pub fn refund_at(&self, identity: &str, cost: u64, now_us: u64) -> Result<Decision> {
        self.check_cost(cost)?;
        self.call(&self.redis_key(identity), "refund", cost, Some(now_us))
            .map_err(Failure::into_error)
    }

    /// A peek at an explicit time (see [`Self::hit_at`]).
    pub fn peek_at(&self, identity: &str, now_us: u64) -> Result<Decision> {
        self.call(&self.redis_key(identity), "peek", 1, Some(now_us))
            .map_err(Failure::into_error)
    }

    /// Deletes `identity`'s state (always reports failure, whatever the failure policy).
    pub fn reset_key(&self, identity: &str) -> Result<()> {
        let redis_key = self.redis_key(identity);
        let shared = self.shared();
        shared.deny_forget(&redis_key);
        shared
            .run(|conn| conn.query(redis::cmd("DEL").arg(&redis_key)))
            .map(|_| ())
            .map_err(Failure::into_error)
    }

    /// Keys of this limit currently in Redis (SCAN; on a cluster, on every master).
    pub fn count_keys(&self) -> Result<usize> {
        let pattern = commands::scan_pattern(&self.prefix, self.spec.kind.name());
        self.shared()
            .run(|conn| conn.count_keys(&pattern))
            .map_err(Failure::into_error)
    }
}

impl Store for RedisLimit {
    /// One round trip at Redis's time, unless the deny cache answers; at the clock's time
    /// (no deny cache) for a limit built with one.
    fn hit(&self, identity: &str, cost: u64) -> Result<Outcome> {
        if self.clock.is_some() {
            return self.decide(identity, "hit", cost, cost);
        }
        let redis_key = self.redis_key(identity);
        let shared = self.shared();
        if let Some(decision) = shared.deny_check(&redis_key, cost) {
            return Ok(Outcome::new(decision, Source::DenyCache));
        }
        let started = shared.deny_now();
        match self.call(&redis_key, "hit", cost, None) {
            Ok(decision) => {
                shared.deny_learn(&redis_key, cost, started, &decision);
                Ok(Outcome::new(decision, Source::Redis))
            }
            Err(failure) => shared.fail(failure, self.spec.limit, cost, self.policy),
        }
    }

    fn peek(&self, identity: &str) -> Result<Outcome> {
        self.decide(identity, "peek", 1, 0)
    }

    /// The algorithm's refund, then a peek, in one atomic script; a key that is missing or
    /// back at full capacity is left as it is, one the refund brings back to full capacity
    /// is deleted, and the deny cache forgets the key. Failing open, a failed refund is lost
    /// (the hit it was meant to undo stays counted: failing towards the limit, as a lost hit
    /// fails away from it).
    fn refund(&self, identity: &str, cost: u64) -> Result<Outcome> {
        self.decide(identity, "refund", cost, 0)
    }

    fn reset(&self, identity: &str) -> Result<()> {
        self.reset_key(identity)
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    /// Keys held in Redis for this limit (a SCAN: for diagnostics, not for hot paths); 0 when
    /// Redis cannot be reached.
    fn len(&self) -> usize {
        self.count_keys().unwrap_or(0)
    }

    /// Redis expires idle keys itself: nothing to do.
    fn sweep(&self) -> usize {
        0
    }

    fn redis(&self) -> Option<&RedisLimit> {
        Some(self)
    }
}
