//! `Limiter`: one limit = algorithm + quota + store (+ the key prefix that names it).

use crate::store::memory::MemoryStore;
use crate::store::Store;
use crate::SystemClock;
use crate::{
    with_algorithm, AlgorithmKind, Clock, Decision, Error, FailurePolicy, Outcome, Quota, Result,
};
use std::fmt;
use std::sync::Arc;

/// One rate limit applied to many keys.
///
/// Thread-safe: share it behind an `Arc` (or by reference) and call [`Limiter::hit`] from any
/// number of threads; every hit is one atomic update of its key's state.
pub struct Limiter {
    store: Box<dyn Store>,
    quota: Quota,
    kind: AlgorithmKind,
    limit: u64,
    prefix: String,
    policy: FailurePolicy,
}

impl Limiter {
    /// A builder for a limit of `quota` (GCRA on the embedded store unless told otherwise).
    pub fn builder(quota: Quota) -> LimiterBuilder {
        LimiterBuilder {
            quota,
            kind: AlgorithmKind::default(),
            clock: None,
            max_keys: None,
            prefix: String::new(),
            policy: None,
        }
    }

    /// Counts a hit of `cost` on `key` if it passes; a denied hit changes nothing.
    ///
    /// Errors: `InvalidCost` when cost is 0 or exceeds the capacity (it could never pass);
    /// `Store` when the store fails.
    #[inline]
    pub fn hit(&self, key: &str, cost: u64) -> Result<Decision> {
        self.hit_outcome(key, cost).map(|outcome| outcome.decision)
    }

    /// [`Self::hit`], saying where the decision came from (the store, its deny cache, or a
    /// failure let through by the limit's [`FailurePolicy`]).
    ///
    /// Errors: `InvalidCost` (never subject to the failure policy: a bad cost is the caller's
    /// bug); `Store` when the store fails and the limit fails closed.
    #[inline]
    pub fn hit_outcome(&self, key: &str, cost: u64) -> Result<Outcome> {
        self.check_cost(cost)?;
        self.store.hit(key, cost)
    }

    /// Gives back `cost` units of `key`'s capacity, e.g. a hit taken before a request was
    /// handled that should not count after all; returns what a hit of cost 1 would see next.
    /// Never lifts the key above full capacity, and leaves an idle or unknown key as it is
    /// (see docs/architecture.md, *Refunds*).
    ///
    /// Errors: `InvalidCost` when cost is 0 or exceeds the capacity (as for [`Self::hit`]);
    /// `Store` when the store fails.
    pub fn refund(&self, key: &str, cost: u64) -> Result<Decision> {
        self.refund_outcome(key, cost)
            .map(|outcome| outcome.decision)
    }

    /// [`Self::refund`], saying where the decision came from. Failing open, a refund the
    /// store could not make is lost (the hit it meant to undo stays counted).
    pub fn refund_outcome(&self, key: &str, cost: u64) -> Result<Outcome> {
        self.check_cost(cost)?;
        self.store.refund(key, cost)
    }

    /// What a hit of cost 1 on `key` would see now, without counting it.
    pub fn peek(&self, key: &str) -> Result<Decision> {
        self.peek_outcome(key).map(|outcome| outcome.decision)
    }

    /// [`Self::peek`], saying where the decision came from.
    pub fn peek_outcome(&self, key: &str) -> Result<Outcome> {
        self.store.peek(key)
    }

    /// Puts `key` back to full capacity.
    pub fn reset(&self, key: &str) -> Result<()> {
        self.store.reset(key)
    }

    /// The quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// The algorithm.
    pub fn algorithm(&self) -> AlgorithmKind {
        self.kind
    }

    /// The capacity reported as `Decision::limit` (B for buckets, N for windows).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The prefix that names this limit's keys in a shared store.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The store holding this limit's state.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// What happens to a hit the store cannot decide (see docs/architecture.md, *Failures*):
    /// the policy given to the builder, else the store's default. The embedded and shared
    /// stores cannot fail that way and never consult it.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.policy
    }

    /// The limit's state in Redis, when it lives there.
    #[cfg(feature = "redis")]
    pub fn redis(&self) -> Option<&crate::store::redis::RedisLimit> {
        self.store.redis()
    }

    /// Refuses a cost of 0 or above the capacity (such a hit could never pass): the one cost
    /// check, which every hit, refund and multi-limit hit makes; public so that a face that
    /// defers a hit (an async pipeline) can refuse a bad cost at once.
    #[inline]
    pub fn check_cost(&self, cost: u64) -> Result<()> {
        check_cost(cost, self.limit)
    }
}

/// The one rule for a cost: at least 1, at most the capacity (a larger hit could never pass).
#[inline]
pub(crate) fn check_cost(cost: u64, capacity: u64) -> Result<()> {
    if cost == 0 || cost > capacity {
        return Err(Error::InvalidCost { cost, capacity });
    }
    Ok(())
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("algorithm", &self.kind.name())
            .field("quota", &self.quota)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Builds a [`Limiter`].
pub struct LimiterBuilder {
    quota: Quota,
    kind: AlgorithmKind,
    clock: Option<Arc<dyn Clock>>,
    max_keys: Option<usize>,
    prefix: String,
    policy: Option<FailurePolicy>,
}

impl LimiterBuilder {
    /// What happens to a hit the store cannot decide (Redis down, timed out, refusing):
    /// fail open or closed. Unset, the limit takes its store's default (`RedisConfig::
    /// fail_silently`). One setting for every face: C and Python hits of one limit fail the
    /// same way because the core alone applies it (see docs/architecture.md, *Failures*).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The algorithm (default GCRA).
    pub fn algorithm(mut self, kind: AlgorithmKind) -> Self {
        self.kind = kind;
        self
    }

    /// The clock (default [`SystemClock`]). On Redis, given a clock, hits are decided at its
    /// time instead of Redis's `TIME` and skip the deny cache (replays and tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Keep at most about `max_keys` keys, evicting the least recently used (embedded store).
    pub fn max_keys(mut self, max_keys: Option<usize>) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The prefix naming this limit's keys in a shared store. Left empty, the limit is
    /// named by its quota (see [`Quota::name`]), so that unnamed limits of different quotas
    /// never share a key.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The prefix the limit gets: the one given, else `"<quota name>:"`. Braces are refused:
    /// a key's identity is its Redis Cluster hash tag, the one `{…}` of the key.
    fn effective_prefix(&self) -> Result<String> {
        if self.prefix.contains(['{', '}']) {
            return Err(Error::InvalidArgument(format!(
                "limit prefix {:?} contains a brace: braces delimit the identity in a key",
                self.prefix
            )));
        }
        Ok(if self.prefix.is_empty() {
            format!("{}:", self.quota.name())
        } else {
            self.prefix.clone()
        })
    }

    /// Builds the limiter on the embedded (in-memory) store.
    pub fn build_memory(self) -> Result<Limiter> {
        let prefix = self.effective_prefix()?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock::new()));
        let (store, limit): (Box<dyn Store>, u64) = with_algorithm!(self.kind, A => {
            let algorithm = A::new(&self.quota);
            let limit = algorithm.limit();
            (Box::new(MemoryStore::new(algorithm, clock, self.max_keys)?), limit)
        });
        Ok(Limiter {
            store,
            quota: self.quota,
            kind: self.kind,
            limit,
            prefix,
            policy: self.policy.unwrap_or(FailurePolicy::Closed),
        })
    }

    /// Builds the limiter on the Redis store `store`: its state lives in Redis under
    /// `{key_prefix}{prefix}{<identity>}:<algorithm>` (see [`LimiterBuilder::prefix`]).
    /// Fails if the quota does not fit the scripts' arithmetic (said now, not at the first
    /// hit).
    #[cfg(feature = "redis")]
    pub fn build_redis(self, store: &crate::store::redis::RedisStore) -> Result<Limiter> {
        let policy = self
            .policy
            .unwrap_or_else(|| FailurePolicy::from_fail_open(store.config().fail_silently));
        let clock = self.clock.clone();
        let limiter = self
            .failure_policy(policy)
            .build_with(|quota, kind, prefix| {
                Ok(Box::new(store.limit(quota, kind, prefix, policy, clock)?))
            })?;
        store.note_limit_policy(limiter.prefix(), policy.is_open());
        Ok(limiter)
    }

    /// Builds the limiter on the shared-memory region `region`: every process that opens the
    /// same region and builds a limiter with the same prefix and algorithm shares its keys.
    /// Without an explicit clock it reads [`crate::store::shared::SharedClock`], the one
    /// timeline every process of the machine agrees on.
    #[cfg(all(feature = "shared", unix))]
    pub fn build_shared(self, region: &crate::store::shared::SharedRegion) -> Result<Limiter> {
        let clock = self
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(crate::store::shared::SharedClock));
        self.build_with(|quota, kind, prefix| region.store(quota, kind, prefix, clock))
    }

    /// Builds the limiter on a store made by `make_store` (e.g. the Redis store).
    pub fn build_with(
        self,
        make_store: impl FnOnce(&Quota, AlgorithmKind, &str) -> Result<Box<dyn Store>>,
    ) -> Result<Limiter> {
        let prefix = self.effective_prefix()?;
        let store = make_store(&self.quota, self.kind, &prefix)?;
        let limit = with_algorithm!(self.kind, A => A::new(&self.quota).limit());
        Ok(Limiter {
            store,
            quota: self.quota,
            kind: self.kind,
            limit,
            prefix,
            policy: self.policy.unwrap_or(FailurePolicy::Closed),
        })
    }
}
