//! `RedisStore`: a connection to Redis (a pool, a circuit breaker, a deny cache) shared by any
//! number of limits, and the internals every operation of the store goes through.

use super::breaker::{Breaker, BreakerState};
use super::config::RedisConfig;
use super::connection::Manager;
use super::deny_cache::DenyCache;
use super::fork::PerProcess;
use super::limit::RedisLimit;
use super::pool::Pool;
use super::scripts::{LimitSpec, Scripts};
use super::stats::{Counters, RedisStats};
use crate::{AlgorithmKind, Clock, Decision, Error, FailurePolicy, Quota, Result};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The internals of a store in one process (see `fork.rs`).
pub(crate) struct Shared {
    pub(crate) config: RedisConfig,
    pub(crate) target: String,
    pub(crate) timeout: Duration,
    pub(crate) cluster: bool,
    pub(crate) pool: Pool,
    /// Opens fresh connections for the breaker's probes, outside the pool.
    pub(crate) prober: Manager,
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) deny: Option<DenyCache>,
    pub(crate) counters: Counters,
    pub(crate) origin: Instant,
    /// When a refused-request warning was last logged (ns since origin, +1; 0 = never).
    pub(crate) last_warning: AtomicU64,
}

impl Shared {
    fn new(config: &RedisConfig) -> Result<Shared> {
        let infos = config.connection_infos()?;
        let target = config.describe();
        let breaker = Arc::new(Breaker::new(
            config.breaker_threshold,
            Duration::from_millis(config.breaker_cooldown_ms),
            target.clone(),
            config.fail_silently,
        ));
        let manager = Manager::new(config, infos.clone(), breaker.clone())?;
        let prober = Manager::new(config, infos, breaker.clone())?;
        Ok(Shared {
            timeout: config.timeout(),
            cluster: config.is_cluster(),
            deny: DenyCache::new(config.deny_cache_size),
            pool: Pool::new(manager, config.pool_size as usize),
            target,
            config: config.clone(),
            prober,
            breaker,
            counters: Counters::default(),
            origin: Instant::now(),
            last_warning: AtomicU64::new(0),
        })
    }

    pub(crate) fn deny_now(&self) -> u64 {
        self.deny.as_ref().map_or(0, DenyCache::now)
    }

    pub(crate) fn deny_check(&self, redis_key: &str, cost: u64) -> Option<Decision> {
        let decision = self.deny.as_ref()?.check(redis_key, cost)?;
        Counters::bump(&self.counters.deny_cache_hits);
        Some(decision)
    }

    pub(crate) fn deny_learn(&self, redis_key: &str, cost: u64, started: u64, decision: &Decision) {
        if let Some(deny) = &self.deny {
            if !decision.allowed {
                deny.insert(redis_key, cost, started, decision);
            }
        }
    }

    pub(crate) fn deny_forget(&self, redis_key: &str) {
        if let Some(deny) = &self.deny {
            deny.remove(redis_key);
        }
    }
}

/// What every clone of a store shares: its configuration and its internals per process.
struct Handle {
    config: RedisConfig,
    live: PerProcess<Shared>,
}

/// A connection to Redis (a pool, a breaker, a deny cache) shared by any number of limits.
///
/// Cheap to clone (an `Arc`); thread-safe. Connecting is lazy: a server that is down when the
/// store is created is not an error until a hit needs it (see [`RedisStore::ping`]). In a
/// process forked after it was made, the store makes its own connections on first use (see
/// [`super::after_fork_in_child`]).
#[derive(Clone)]
pub struct RedisStore {
    handle: Arc<Handle>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.shared().target)
            .field("breaker", &self.shared().breaker.state())
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
        let shared = Shared::new(&config)?;
        Ok(RedisStore {
            handle: Arc::new(Handle {
                config,
                live: PerProcess::new(shared),
            }),
        })
    }

    /// This process's internals.
    #[inline]
    pub(crate) fn shared(&self) -> &Shared {
        let config = &self.handle.config;
        self.handle.live.get(|| {
            // The configuration was valid once, so making internals (which never touches the
            // network) cannot fail now.
            Shared::new(config).expect("a configuration that connected once connects again")
        })
    }

    /// True when `self` and `other` are the same store (clones of one `connect`).
    pub fn same(&self, other: &RedisStore) -> bool {
        Arc::ptr_eq(&self.handle, &other.handle)
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.handle.config
    }

    /// Sends one PING: Ok when Redis answers within `timeout_ms`.
    pub fn ping(&self) -> Result<()> {
        self.shared()
            .run(|conn| conn.query(&redis::cmd("PING")))
            .map(|_| ())
            .map_err(|failure| Error::Store(failure.message))
    }

    /// Loads every Lua script into Redis's script cache now (SCRIPT LOAD; on a cluster,
    /// every primary) and returns how many, so the first hits after start-up skip the
    /// NOSCRIPT round trip. Optional: hits load a missing script by themselves.
    pub fn load_scripts(&self) -> Result<usize> {
        let scripts = Scripts::get();
        self.shared()
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
    /// its hits. [`crate::LimiterBuilder::build_redis`] calls it for every limit.
    pub fn note_limit_policy(&self, prefix: &str, fail_open: bool) {
        let name = prefix.strip_suffix(':').unwrap_or(prefix);
        self.shared().breaker.note_policy(name, fail_open);
    }

    /// The store for one limit (what [`crate::LimiterBuilder::build_redis`] uses): `prefix`
    /// names the limit, so two limits never share a key if their prefixes differ, and the
    /// algorithm's name ends every key, so two algorithms never do. `policy` says what a
    /// failure does to its hits; `clock`, when given, replaces Redis's time.
    pub fn limit(
        &self,
        quota: &Quota,
        kind: AlgorithmKind,
        prefix: &str,
        policy: FailurePolicy,
        clock: Option<Arc<dyn Clock>>,
    ) -> Result<RedisLimit> {
        Ok(RedisLimit::new(
            self.clone(),
            LimitSpec::new(quota, kind)?,
            format!("{}{prefix}", self.handle.config.key_prefix),
            policy,
            clock,
        ))
    }

    /// Counters and the breaker's state.
    pub fn stats(&self) -> RedisStats {
        let shared = self.shared();
        let c = &shared.counters;
        RedisStats {
            breaker: shared.breaker.state(),
            consecutive_failures: shared.breaker.failures(),
            round_trips: Counters::read(&c.round_trips),
            errors: Counters::read(&c.errors),
            fail_open: Counters::read(&c.fail_open),
            deny_cache_hits: Counters::read(&c.deny_cache_hits),
        }
    }

    /// The circuit breaker's state (what `flux_breaker_state` on `/metrics` reports, through
    /// the Python face's `RedisStore.breaker_state`).
    pub fn breaker_state(&self) -> BreakerState {
        self.shared().breaker.state()
    }
}
