//! The Redis store: limit state in Redis, shared by every process and every language that
//! links the core.
//!
//! - One atomic Lua script per algorithm (`lua/<algorithm>.lua`), one EVALSHA round trip per
//!   hit, reloaded after NOSCRIPT (restart, failover, SCRIPT FLUSH), pipelines included.
//! - Time from Redis's `TIME` (µs), so client clocks cannot disagree; an explicit `now` replays
//!   test vectors ([`RedisLimit::hit_at`]).
//! - Keys: `{key_prefix}{limit prefix}{<identity>}:<algorithm>`. The identity is the hash tag,
//!   so every key of one identity, whatever the limit, lives in one cluster slot: several limits
//!   on one request are checked in one atomic script ([`RedisStore::hit_many`]), while different
//!   identities spread over the cluster's slots (a tag per limit would put a whole limit, hot
//!   or not, on one node and make multi-limit hits across limits impossible). Keys expire when
//!   their state is back to full capacity.
//! - Failures: fail open ([`Source::FailOpen`]) or fail closed ([`Error::Store`]) as
//!   configured, a circuit breaker so a dead Redis costs microseconds per hit, and a local deny
//!   cache that answers keys Redis has just denied without a round trip.
//!
//! ```no_run
//! use flux_core::store::redis::{RedisConfig, RedisStore};
//! use flux_core::{AlgorithmKind, Limiter, Quota};
//!
//! let store = RedisStore::connect(RedisConfig::from_url("redis://127.0.0.1:6379"))?;
//! let per_second = Limiter::builder(Quota::new(10, 1_000_000_000, None)?)
//!     .prefix("api-second:")
//!     .build_redis(&store)?;
//! let per_hour = Limiter::builder(Quota::new(1000, 3_600_000_000_000, None)?)
//!     .algorithm(AlgorithmKind::SlidingWindow)
//!     .prefix("api-hour:")
//!     .build_redis(&store)?;
//! let one = per_second.hit("10.0.0.1", 1)?;
//! let both = store.hit_many(&[(&per_second, "10.0.0.1", 1), (&per_hour, "10.0.0.1", 1)])?;
//! # let _ = (one, both);
//! # Ok::<(), flux_core::Error>(())
//! ```

mod breaker;
mod config;
mod connection;
mod deny_cache;
mod pool;
mod scripts;

pub use breaker::BreakerState;
pub use config::RedisConfig;
pub use scripts::{batch_source, multi_source, single_source};

use crate::store::Store;
use crate::{AlgorithmKind, Decision, Error, Limiter, Quota, Result};
use breaker::{Admission, Breaker};
use connection::{remaining, Conn, Manager};
use deny_cache::DenyCache;
use log::{debug, warn};
use pool::Pool;
use redis::{Cmd, ErrorKind, RedisError, Value};
use scripts::{LimitSpec, Scripts};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most hits one EVALSHA of the batch script decides. Larger batches go as several
/// EVALSHAs in one pipeline: the script's fixed cost is spread thin already at this size, and
/// Redis, which runs one script at a time, stays responsive to other clients (a chunk takes
/// well under a millisecond).
pub const SCRIPT_BATCH: usize = 128;

/// Where a decision came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Redis decided (one round trip).
    Redis,
    /// The local deny cache: Redis denied this key moments ago and would deny it still.
    DenyCache,
    /// Redis failed and `fail_silently` let the hit pass; the error says why. Nothing was
    /// counted.
    FailOpen(Error),
}

/// A decision and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The decision.
    pub decision: Decision,
    /// Where it came from.
    pub source: Source,
}

impl Outcome {
    /// True when Redis failed and the hit was let through unchecked.
    pub fn failed_open(&self) -> bool {
        matches!(self.source, Source::FailOpen(_))
    }
}

/// The answer to a hit against several limits at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiOutcome {
    /// True when every limit let the hit pass (and it was counted against every one); false
    /// when any denied it (and it was counted against none).
    pub allowed: bool,
    /// Each limit's decision, in the order given. In a denied hit a limit that would have let it
    /// pass says `allowed: true`, `retry_after: 0` and shows its state uncounted.
    pub decisions: Vec<Decision>,
    /// Where the decisions came from.
    pub source: Source,
}

/// Counters and state, for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisStats {
    /// The circuit breaker's state.
    pub breaker: BreakerState,
    /// Consecutive failures to reach Redis (0 while healthy).
    pub consecutive_failures: u32,
    /// Round trips to Redis attempted (a pipeline or a multi-limit hit counts once).
    pub round_trips: u64,
    /// Requests that failed (unreachable, timeout, breaker open, or refused by Redis).
    pub errors: u64,
    /// Hits let through because Redis failed and `fail_silently` is set.
    pub fail_open: u64,
    /// Hits denied by the local deny cache without a round trip.
    pub deny_cache_hits: u64,
}

#[derive(Default)]
struct Counters {
    round_trips: AtomicU64,
    errors: AtomicU64,
    fail_open: AtomicU64,
    deny_cache_hits: AtomicU64,
}

/// One hit of a batch on its way to Redis.
struct Queued {
    /// Its place in the caller's list.
    index: usize,
    spec: LimitSpec,
    redis_key: String,
    cost: u64,
}

/// Why a request to Redis failed.
#[derive(Clone)]
struct Failure {
    message: String,
    /// Redis could not be reached or could not serve (what the circuit breaker counts, and
    /// logs when it opens), as opposed to Redis refusing this one request.
    unavailable: bool,
}

struct Shared {
    config: RedisConfig,
    target: String,
    timeout: Duration,
    cluster: bool,
    pool: Pool,
    /// Opens fresh connections for the breaker's probes, outside the pool.
    prober: Manager,
    breaker: Arc<Breaker>,
    deny: Option<DenyCache>,
    counters: Counters,
    origin: Instant,
    /// When a refused-request warning was last logged (ns since origin, +1; 0 = never).
    last_warning: AtomicU64,
}

/// A connection to Redis (a pool, a breaker, a deny cache) shared by any number of limits.
///
/// Cheap to clone (an `Arc`); thread-safe. Connecting is lazy: a server that is down when the
/// store is created is not an error until a hit needs it (see [`RedisStore::ping`]).
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

/// One limit's state in Redis: the [`Store`] a Redis-backed [`Limiter`] uses.
#[derive(Clone)]
pub struct RedisLimit {
    shared: Arc<Shared>,
    spec: LimitSpec,
    /// `key_prefix` + the limit's prefix.
    prefix: String,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.shared.target)
            .field("breaker", &self.shared.breaker.state())
            .finish()
    }
}

impl fmt::Debug for RedisLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimit")
            .field("target", &self.shared.target)
            .field("algorithm", &self.spec.kind.name())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisStore {
    /// A store for `config`. Fails only on an invalid configuration (bad URL, zero pool size,
    /// rediss:// without TLS support, …), never because Redis is down.
    pub fn connect(config: RedisConfig) -> Result<RedisStore> {
        #[cfg(feature = "redis-tls")]
        {
            // rustls needs a process-wide crypto provider; another part of the program may
            // have installed one already, which is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let infos = config.connection_infos()?;
        let target = config.describe();
        let breaker = Arc::new(Breaker::new(
            config.breaker_threshold,
            Duration::from_millis(config.breaker_cooldown_ms),
            target.clone(),
            config.fail_silently,
        ));
        let manager = Manager::new(&config, infos.clone(), breaker.clone())?;
        let prober = Manager::new(&config, infos, breaker.clone())?;
        let pool = Pool::new(manager, config.pool_size as usize);
        Ok(RedisStore {
            shared: Arc::new(Shared {
                timeout: config.timeout(),
                cluster: config.is_cluster(),
                deny: DenyCache::new(config.deny_cache_size),
                target,
                config,
                pool,
                prober,
                breaker,
                counters: Counters::default(),
                origin: Instant::now(),
                last_warning: AtomicU64::new(0),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// Sends one PING: Ok when Redis answers within `timeout_ms`.
    pub fn ping(&self) -> Result<()> {
        self.shared
            .run(|conn| conn.query(&redis::cmd("PING")))
            .map(|_| ())
            .map_err(|failure| Error::Store(failure.message))
    }

    /// Loads every Lua script into Redis's script cache now (SCRIPT LOAD; on a cluster,
    /// every primary) and returns how many, so the first hits after start-up skip the
    /// NOSCRIPT round trip. Optional: hits load a missing script by themselves.
    pub fn load_scripts(&self) -> Result<usize> {
        let scripts = Scripts::get();
        self.shared
            .run(|conn| {
                let mut count = 0;
                for loaded in scripts.all() {
                    conn.load(&loaded.script, &loaded.code)?;
                    count += 1;
                }
                Ok(count)
            })
            .map_err(|failure| Error::Store(failure.message))
    }

    /// Records that the limit named `prefix` fails open (`fail_open`) or closed whatever the
    /// store's `fail_silently` says, so that the outage warning states what really happens to
    /// its hits.
    pub fn note_limit_policy(&self, prefix: &str, fail_open: bool) {
        let name = prefix.strip_suffix(':').unwrap_or(prefix);
        self.shared.breaker.note_policy(name, fail_open);
    }

    /// The store for one limit (what [`crate::LimiterBuilder::build_redis`] uses): `prefix`
    /// names the limit, so two limits never share a key if their prefixes differ, and the
    /// algorithm's name ends every key, so two algorithms never do.
    pub fn limit(&self, quota: &Quota, kind: AlgorithmKind, prefix: &str) -> Result<RedisLimit> {
        Ok(RedisLimit {
            shared: self.shared.clone(),
            spec: LimitSpec::new(quota, kind)?,
            prefix: format!("{}{prefix}", self.shared.config.key_prefix),
        })
    }

    /// The Redis state of `limiter`'s limit (its quota, algorithm and prefix) in this store.
    pub fn limit_of(&self, limiter: &Limiter) -> Result<RedisLimit> {
        self.limit(limiter.quota(), limiter.algorithm(), limiter.prefix())
    }

    /// A hit of `cost` on `key` under `limiter`'s limit in this store, saying where the
    /// decision came from (Redis, the deny cache, or fail-open).
    pub fn hit(&self, limiter: &Limiter, key: &str, cost: u64) -> Result<Outcome> {
        self.limit_of(limiter)?.hit_outcome(key, cost)
    }

    /// One hit against several limits in one atomic round trip: it passes and is counted by
    /// every limit, or is denied and counted by none. `hits` are (limit, identity, cost).
    ///
    /// On a cluster all keys must share a slot, which they do when every entry uses the same
    /// identity (the identity is the hash tag); different identities are refused with
    /// [`Error::InvalidArgument`] before anything is sent. The deny cache is not consulted (it
    /// learns from the denials, though).
    pub fn hit_many(&self, hits: &[(&Limiter, &str, u64)]) -> Result<MultiOutcome> {
        self.multi(hits, None)
    }

    /// [`Self::hit_many`] at an explicit time (µs since the epoch) instead of the server's;
    /// for replays and tests. Failures are always returned as errors.
    pub fn hit_many_at(&self, hits: &[(&Limiter, &str, u64)], now_us: u64) -> Result<MultiOutcome> {
        self.multi(hits, Some(now_us))
    }

    /// Independent hits (each with its own decision, not atomic together), decided by the
    /// batch script: in chunks of at most [`SCRIPT_BATCH`] hits per EVALSHA, all chunks in one
    /// pipeline, so one round trip on a single server. On a cluster a chunk holds the keys of
    /// one hash slot, and chunks go one by one. Hits the deny cache answers are not sent.
    ///
    /// Each hit gets exactly the decision the one-limit script would give it, in the order
    /// given, except that every hit of a chunk sees the same server time. A hit Redis refuses
    /// (a key of the wrong type, maxmemory) fails alone, as configured, and the others stand.
    pub fn hit_batch(&self, hits: &[(&Limiter, &str, u64)]) -> Vec<Result<Outcome>> {
        let shared = &self.shared;
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
                                Ok(Outcome {
                                    decision,
                                    source: Source::Redis,
                                })
                            }
                            Err(err) => shared.fail(
                                shared.rejected(&err, &hit.redis_key),
                                hit.spec.limit,
                                hit.cost,
                            ),
                        });
                    }
                }
                Err(failure) => {
                    for hit in &queued {
                        results[hit.index] =
                            Some(shared.fail(failure.clone(), hit.spec.limit, hit.cost));
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
                .map_err(|failure| Error::Store(failure.message));
            for (n, hit) in queued.iter().enumerate() {
                results[hit.index] = Some(match &replies {
                    Ok(replies) => replies[n].clone().map_err(|err| {
                        Error::Store(self.shared.rejected(&err, &hit.redis_key).message)
                    }),
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
    /// cost, or (with `deny_cache`) a key the deny cache answers.
    fn queue(
        &self,
        index: usize,
        limiter: &Limiter,
        key: &str,
        cost: u64,
        deny_cache: bool,
    ) -> std::result::Result<Queued, Result<Outcome>> {
        let limit = self.limit_of(limiter).map_err(Err)?;
        limit.check_cost(cost).map_err(Err)?;
        let redis_key = limit.redis_key(key);
        if deny_cache {
            if let Some(decision) = self.shared.deny_check(&redis_key, cost) {
                return Err(Ok(Outcome {
                    decision,
                    source: Source::DenyCache,
                }));
            }
        }
        Ok(Queued {
            index,
            spec: limit.spec,
            redis_key,
            cost,
        })
    }

    /// Sends `queued` through the batch script, one EVALSHA per chunk, every chunk in one
    /// pipeline; each hit's decision or the error Redis gave for it alone, in order. `Err`
    /// when the round trip itself failed (nothing known about any hit).
    fn send_batch(
        &self,
        queued: &[Queued],
        now_us: Option<u64>,
    ) -> std::result::Result<Vec<std::result::Result<Decision, RedisError>>, Failure> {
        let scripts = Scripts::get();
        let chunks = self.chunks(queued);
        let calls: Vec<(&redis::Script, &str, Cmd)> = chunks
            .iter()
            .map(|chunk| {
                let batch = scripts.batch(chunk.iter().map(|&i| queued[i].spec.kind));
                (
                    &batch.script,
                    batch.code.as_str(),
                    batch_cmd(&batch.script, queued, chunk, now_us),
                )
            })
            .collect();
        let replies = self.shared.run(|conn| conn.eval_pipeline(&calls))?;
        let mut out: Vec<Option<std::result::Result<Decision, RedisError>>> =
            (0..queued.len()).map(|_| None).collect();
        for (chunk, reply) in chunks.iter().zip(replies) {
            let limits: Vec<u64> = chunk.iter().map(|&i| queued[i].spec.limit).collect();
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
    fn chunks(&self, queued: &[Queued]) -> Vec<Vec<usize>> {
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
        for (i, hit) in queued.iter().enumerate() {
            let slot = if self.shared.cluster {
                key_slot(&hit.redis_key)
            } else {
                0
            };
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

    /// Counters and the breaker's state.
    pub fn stats(&self) -> RedisStats {
        let c = &self.shared.counters;
        RedisStats {
            breaker: self.shared.breaker.state(),
            consecutive_failures: self.shared.breaker.failures(),
            round_trips: c.round_trips.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            fail_open: c.fail_open.load(Ordering::Relaxed),
            deny_cache_hits: c.deny_cache_hits.load(Ordering::Relaxed),
        }
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.shared.breaker.state()
    }

    fn multi(&self, hits: &[(&Limiter, &str, u64)], now_us: Option<u64>) -> Result<MultiOutcome> {
        if hits.is_empty() {
            return Err(Error::InvalidArgument(
                "a multi-limit hit needs at least one limit".into(),
            ));
        }
        let mut limits = Vec::with_capacity(hits.len());
        let mut keys: Vec<String> = Vec::with_capacity(hits.len());
        for (limiter, key, cost) in hits {
            let limit = self.limit_of(limiter)?;
            limit.check_cost(*cost)?;
            let redis_key = limit.redis_key(key);
            if keys.contains(&redis_key) {
                return Err(Error::InvalidArgument(format!(
                    "limit {:?} ({}) appears twice for one key in one multi-limit hit",
                    limiter.prefix(),
                    limiter.algorithm()
                )));
            }
            keys.push(redis_key);
            limits.push((limit, *cost));
        }
        if self.shared.cluster {
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
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(scripts.multi.script.get_hash()).arg(keys.len());
        for key in &keys {
            cmd.arg(key);
        }
        match now_us {
            Some(now) => cmd.arg(now),
            None => cmd.arg(""),
        };
        for (limit, cost) in &limits {
            cmd.arg(limit.spec.kind.name())
                .arg(*cost)
                .arg(limit.spec.p1)
                .arg(limit.spec.p2);
        }
        let shared = &self.shared;
        let started = shared.deny_now();
        let reply = shared.run(|conn| {
            let value = conn.eval(&scripts.multi.script, &scripts.multi.code, &cmd)?;
            match &value {
                Value::Array(values) if !values.is_empty() => {
                    let decisions = scripts::decisions(
                        &values[1..],
                        limits.iter().map(|(l, _)| l.spec.limit),
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
                });
            }
            Err(failure) => failure,
        };
        let failure = Failure {
            message: format!(
                "{} (keys {})",
                failure.message,
                keys.iter()
                    .map(|k| shown_key(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ..failure
        };
        if now_us.is_some() || !shared.config.fail_silently {
            shared.counters.errors.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Store(failure.message));
        }
        let error = Error::Store(failure.message.clone());
        let decisions = limits
            .iter()
            .map(|(limit, cost)| {
                shared
                    .fail(failure.clone(), limit.spec.limit, *cost)
                    .map(|outcome| outcome.decision)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(MultiOutcome {
            allowed: true,
            decisions,
            source: Source::FailOpen(error),
        })
    }
}

/// `redis_key` as messages and logs show it: the identity (the hash tag) is left out, so no
/// client address, user id or API key reaches a log line or an error a web page may print.
/// Limit names and key prefixes hold no braces (the builder refuses them), so the tag is
/// from the first `{` to the last `}:`.
pub(crate) fn shown_key(redis_key: &str) -> String {
    match (redis_key.find('{'), redis_key.rfind("}:")) {
        (Some(open), Some(close)) if open < close => {
            format!("{}{{…}}{}", &redis_key[..open], &redis_key[close + 1..])
        }
        _ => "<a key>".to_string(),
    }
}

impl RedisLimit {
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
    pub fn store(&self) -> RedisStore {
        RedisStore {
            shared: self.shared.clone(),
        }
    }

    /// The capacity (`Decision::limit`).
    pub fn capacity(&self) -> u64 {
        self.spec.limit
    }

    fn check_cost(&self, cost: u64) -> Result<()> {
        if cost == 0 || cost > self.spec.limit {
            return Err(Error::InvalidCost {
                cost,
                capacity: self.spec.limit,
            });
        }
        Ok(())
    }

    fn evalsha(&self, redis_key: &str, mode: &str, cost: u64, now_us: Option<u64>) -> Cmd {
        let loaded = Scripts::get().single(self.spec.kind);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(loaded.script.get_hash()).arg(1).arg(redis_key);
        match now_us {
            Some(now) => cmd.arg(now),
            None => cmd.arg(""),
        };
        cmd.arg(mode).arg(cost).arg(self.spec.p1).arg(self.spec.p2);
        cmd
    }

    fn call(
        &self,
        redis_key: &str,
        mode: &str,
        cost: u64,
        now_us: Option<u64>,
    ) -> std::result::Result<Decision, Failure> {
        let loaded = Scripts::get().single(self.spec.kind);
        let cmd = self.evalsha(redis_key, mode, cost, now_us);
        let limit = self.spec.limit;
        self.shared
            .run(|conn| {
                let value = conn.eval(&loaded.script, &loaded.code, &cmd)?;
                scripts::single_decision(&value, limit)
            })
            .map_err(|failure| Failure {
                message: if failure.message.contains("(key ") {
                    failure.message
                } else {
                    format!("{} (key {})", failure.message, shown_key(redis_key))
                },
                ..failure
            })
    }

    /// A hit of `cost` on `identity`, saying where the decision came from. Errors:
    /// `InvalidCost`; `Store` when Redis fails and `fail_silently` is false.
    pub fn hit_outcome(&self, identity: &str, cost: u64) -> Result<Outcome> {
        self.check_cost(cost)?;
        let redis_key = self.redis_key(identity);
        let shared = &self.shared;
        if let Some(decision) = shared.deny_check(&redis_key, cost) {
            return Ok(Outcome {
                decision,
                source: Source::DenyCache,
            });
        }
        let started = shared.deny_now();
        match self.call(&redis_key, "hit", cost, None) {
            Ok(decision) => {
                shared.deny_learn(&redis_key, cost, started, &decision);
                Ok(Outcome {
                    decision,
                    source: Source::Redis,
                })
            }
            Err(failure) => shared.fail(failure, self.spec.limit, cost),
        }
    }

    /// What a hit of cost 1 on `identity` would see, without counting it.
    pub fn peek_outcome(&self, identity: &str) -> Result<Outcome> {
        let redis_key = self.redis_key(identity);
        match self.call(&redis_key, "peek", 1, None) {
            Ok(decision) => Ok(Outcome {
                decision,
                source: Source::Redis,
            }),
            Err(failure) => self.shared.fail(failure, self.spec.limit, 0),
        }
    }

    /// Gives back `cost` units of `identity`'s capacity in one atomic script (the algorithm's
    /// refund, then a peek, at Redis's `TIME`), and returns what a hit of cost 1 sees next.
    /// A key that is missing or back at full capacity is left as it is (not created); a key
    /// the refund brings back to full capacity is deleted. The deny cache forgets the key, so
    /// the capacity given back is usable at once from this process.
    ///
    /// Errors: `InvalidCost`; `Store` when Redis fails and `fail_silently` is false. With
    /// `fail_silently` a failed refund is lost, flagged [`Source::FailOpen`] (the hit it was
    /// meant to undo stays counted: failing towards the limit, as a lost hit fails away).
    pub fn refund_outcome(&self, identity: &str, cost: u64) -> Result<Outcome> {
        self.check_cost(cost)?;
        let redis_key = self.redis_key(identity);
        let result = self.call(&redis_key, "refund", cost, None);
        if let Some(deny) = &self.shared.deny {
            deny.remove(&redis_key);
        }
        match result {
            Ok(decision) => Ok(Outcome {
                decision,
                source: Source::Redis,
            }),
            Err(failure) => self.shared.fail(failure, self.spec.limit, 0),
        }
    }

    /// A refund at an explicit time (see [`Self::hit_at`]).
    pub fn refund_at(&self, identity: &str, cost: u64, now_us: u64) -> Result<Decision> {
        self.check_cost(cost)?;
        self.call(&self.redis_key(identity), "refund", cost, Some(now_us))
            .map_err(|failure| Error::Store(failure.message))
    }

    /// A hit at an explicit time, `now_us` µs since the epoch, instead of the server's: the
    /// replay of test vectors and simulations. Bypasses the deny cache; failures are always
    /// errors. (Keys written so are kept at least a minute of real time.)
    pub fn hit_at(&self, identity: &str, cost: u64, now_us: u64) -> Result<Decision> {
        self.check_cost(cost)?;
        self.call(&self.redis_key(identity), "hit", cost, Some(now_us))
            .map_err(|failure| Error::Store(failure.message))
    }

    /// A peek at an explicit time (see [`Self::hit_at`]).
    pub fn peek_at(&self, identity: &str, now_us: u64) -> Result<Decision> {
        self.call(&self.redis_key(identity), "peek", 1, Some(now_us))
            .map_err(|failure| Error::Store(failure.message))
    }

    /// Deletes `identity`'s state (always reports failure, whatever `fail_silently` says).
    pub fn reset_key(&self, identity: &str) -> Result<()> {
        let redis_key = self.redis_key(identity);
        if let Some(deny) = &self.shared.deny {
            deny.remove(&redis_key);
        }
        self.shared
            .run(|conn| conn.query(redis::cmd("DEL").arg(&redis_key)))
            .map(|_| ())
            .map_err(|failure| Error::Store(failure.message))
    }

    /// Keys of this limit currently in Redis (SCAN; on a cluster, on every master).
    pub fn count_keys(&self) -> Result<usize> {
        let pattern = format!(
            "{}{{*}}:{}",
            glob_escape(&self.prefix),
            self.spec.kind.name()
        );
        self.shared
            .run(|conn| conn.count_keys(&pattern))
            .map_err(|failure| Error::Store(failure.message))
    }
}

impl Store for RedisLimit {
    fn hit(&self, key: &str, cost: u64) -> Result<Decision> {
        self.hit_outcome(key, cost).map(|outcome| outcome.decision)
    }

    fn peek(&self, key: &str) -> Result<Decision> {
        self.peek_outcome(key).map(|outcome| outcome.decision)
    }

    fn reset(&self, key: &str) -> Result<()> {
        self.reset_key(key)
    }

    fn refund(&self, key: &str, cost: u64) -> Result<Decision> {
        self.refund_outcome(key, cost)
            .map(|outcome| outcome.decision)
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
}

impl Shared {
    fn deny_now(&self) -> u64 {
        self.deny.as_ref().map_or(0, DenyCache::now)
    }

    fn deny_check(&self, redis_key: &str, cost: u64) -> Option<Decision> {
        let decision = self.deny.as_ref()?.check(redis_key, cost)?;
        self.counters
            .deny_cache_hits
            .fetch_add(1, Ordering::Relaxed);
        Some(decision)
    }

    fn deny_learn(&self, redis_key: &str, cost: u64, started: u64, decision: &Decision) {
        if let Some(deny) = &self.deny {
            if !decision.allowed {
                deny.insert(redis_key, cost, started, decision);
            }
        }
    }

    /// Runs `f` on a connection within `timeout_ms`, through the circuit breaker.
    fn run<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> std::result::Result<T, RedisError>,
    ) -> std::result::Result<T, Failure> {
        let start = Instant::now();
        let probe = match self.breaker.admit() {
            Admission::Reject => {
                return Err(Failure {
                    message: self.breaker.open_message(),
                    unavailable: true,
                })
            }
            Admission::Probe => true,
            Admission::Pass => false,
        };
        self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
        let result = if probe {
            // A probe opens its own connection, within the same budget as any hit.
            match self.prober.open_within(self.timeout) {
                Ok(mut conn) => match conn.set_budget(remaining(start, self.timeout)) {
                    Ok(()) => f(&mut conn),
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            }
        } else {
            let mut conn = match self.pool.get(start + self.timeout) {
                Ok(conn) => conn,
                Err(err) => {
                    let err = err.to_string();
                    let message = if err.contains("uthentication") {
                        format!(
                            "{} rejected the credentials (check password/username): {err}",
                            self.target
                        )
                    } else {
                        format!(
                            "{}: no connection within timeout_ms = {} ms: {err}",
                            self.target, self.config.timeout_ms
                        )
                    };
                    self.breaker.failure(&message, false);
                    return Err(Failure {
                        message,
                        unavailable: true,
                    });
                }
            };
            // Connecting took part of the budget: the command gets what is left. (A checkout
            // under 1 ms keeps the full budget, which spares two syscalls per hit.)
            let budget = if start.elapsed() >= Duration::from_millis(1) {
                remaining(start, self.timeout)
            } else {
                self.timeout
            };
            match conn.set_budget(budget) {
                Ok(()) => f(&mut conn),
                Err(err) => Err(err),
            }
        };
        match result {
            Ok(value) => {
                self.breaker.success();
                Ok(value)
            }
            Err(err) => {
                let (message, unavailable) = self.describe(&err);
                if unavailable {
                    self.breaker.failure(&message, probe);
                } else {
                    // Redis answered: it is up, whatever it said.
                    self.breaker.success();
                }
                Err(Failure {
                    message,
                    unavailable,
                })
            }
        }
    }

    /// A readable message for `err`, and whether it means Redis is unavailable (which counts
    /// towards the breaker) rather than that it refused this request.
    fn describe(&self, err: &RedisError) -> (String, bool) {
        let target = &self.target;
        if err.is_timeout() {
            return (
                format!(
                    "{target} did not answer within timeout_ms = {} ms",
                    self.config.timeout_ms
                ),
                true,
            );
        }
        if err.is_connection_refusal() {
            return (format!("{target} refused the connection: {err}"), true);
        }
        let code = err.code().unwrap_or_default();
        if err.kind() == ErrorKind::AuthenticationFailed || matches!(code, "WRONGPASS" | "NOAUTH") {
            return (
                format!("{target} rejected the credentials (check password/username): {err}"),
                true,
            );
        }
        match err.kind() {
            ErrorKind::Io | ErrorKind::Parse | ErrorKind::ClusterConnectionNotFound => {
                return (format!("{target}: connection failed: {err}"), true)
            }
            ErrorKind::Server(kind) => {
                use redis::ServerErrorKind::*;
                if matches!(
                    kind,
                    BusyLoading | TryAgain | ClusterDown | MasterDown | ReadOnly
                ) {
                    return (format!("{target} cannot serve requests now: {err}"), true);
                }
            }
            _ => {}
        }
        match code {
            "BUSY" => (format!("{target} is busy running a script: {err}"), true),
            "OOM" => (
                format!(
                    "{target} is out of memory (maxmemory reached and its policy refuses \
                     writes); nothing was counted: {err}"
                ),
                false,
            ),
            "WRONGTYPE" => (
                format!(
                    "{target}: a flux key holds a value of another type (written by another \
                     program?); nothing was counted: {err}"
                ),
                false,
            ),
            _ => (format!("{target} refused the request: {err}"), false),
        }
    }

    /// A failure on a request Redis answered (the pipeline's per-command errors).
    fn rejected(&self, err: &RedisError, redis_key: &str) -> Failure {
        let (message, unavailable) = self.describe(err);
        Failure {
            message: format!("{message} (key {})", shown_key(redis_key)),
            unavailable,
        }
    }

    /// The outcome of a failed hit: an allowed decision flagged fail-open, or an error.
    fn fail(&self, failure: Failure, limit: u64, cost: u64) -> Result<Outcome> {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        if failure.unavailable {
            // The breaker warns once when these add up to an outage (one line per state
            // change); a blip that does not open it is debug news, and an open breaker's
            // rejections are none.
            if self.breaker.state() == BreakerState::Closed {
                debug!("flux: {}", failure.message);
            }
        } else {
            self.warn_rarely(&failure.message);
        }
        if !self.config.fail_silently {
            return Err(Error::Store(failure.message));
        }
        self.counters.fail_open.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome {
            decision: Decision {
                allowed: true,
                limit,
                remaining: limit.saturating_sub(cost),
                reset_after: 0,
                retry_after: 0,
            },
            source: Source::FailOpen(Error::Store(failure.message)),
        })
    }

    /// Logs a refused request (Redis answered, with an error) at most once a minute.
    fn warn_rarely(&self, message: &str) {
        const EVERY: u64 = 60_000_000_000;
        let now = self.origin.elapsed().as_nanos() as u64 + 1;
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now >= last + EVERY)
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                "flux: {message}; {} (further failures of the redis store are not logged for \
                 a minute)",
                if self.config.fail_silently {
                    "failing open"
                } else {
                    "failing closed"
                }
            );
        }
    }
}

/// The EVALSHA of batch script `script` for the hits `chunk` (indices into `queued`): each
/// distinct limit once, then each hit as (its limit's number, its cost).
fn batch_cmd(
    script: &redis::Script,
    queued: &[Queued],
    chunk: &[usize],
    now_us: Option<u64>,
) -> Cmd {
    let mut limits: Vec<LimitSpec> = Vec::new();
    let numbers: Vec<usize> = chunk
        .iter()
        .map(|&i| {
            let spec = queued[i].spec;
            match limits.iter().position(|known| *known == spec) {
                Some(at) => at + 1,
                None => {
                    limits.push(spec);
                    limits.len()
                }
            }
        })
        .collect();
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(chunk.len());
    for &i in chunk {
        cmd.arg(&queued[i].redis_key);
    }
    match now_us {
        Some(now) => cmd.arg(now),
        None => cmd.arg(""),
    };
    cmd.arg(limits.len());
    for spec in &limits {
        cmd.arg(spec.kind.name()).arg(spec.p1).arg(spec.p2);
    }
    for (&i, number) in chunk.iter().zip(numbers) {
        cmd.arg(number).arg(queued[i].cost);
    }
    cmd
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

/// The Redis Cluster hash slot of `key` (CRC16/XMODEM of its hash tag, mod 16384).
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(bytes);
    let mut crc: u16 = 0;
    for &byte in tagged {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC16-XMODEM("foo{}{bar}") mod 16384, computed apart from this code.
    const SLOT_OF_FOO_EMPTY_BAR: u16 = 8363;

    #[test]
    fn slots_follow_the_hash_tag() {
        // Values from the Redis Cluster specification's reference implementation.
        assert_eq!(key_slot("123456789"), 12739);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(
            key_slot("{user1000}.following"),
            key_slot("{user1000}.followers")
        );
        // Redis's documented cases: an empty tag does not count (the whole key is hashed),
        // only the first {...} does, and a tag may start with a brace.
        assert_eq!(key_slot("foo{}{bar}"), SLOT_OF_FOO_EMPTY_BAR);
        assert_ne!(key_slot("foo{}{bar}"), key_slot("bar"));
        assert_eq!(key_slot("foo{bar}{zap}"), key_slot("bar"));
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
        assert_eq!(key_slot("a:{x}:gcra"), key_slot("b:{x}:sliding_log"));
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
