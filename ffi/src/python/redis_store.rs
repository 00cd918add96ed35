//! `RedisStore`: a connection to Redis (pool, circuit breaker, deny cache, async dispatcher)
//! shared by any number of limiters, and the failure policy that turns a Redis failure into a
//! fail-open result or a `flux.ConnectionError`.
//!
//! Fork safety: a child process must not use its parent's connections (they are the parent's
//! sockets) nor its pool threads (which did not survive the fork). An at-fork hook bumps a
//! generation number; a store used in a newer generation builds fresh internals and leaks the
//! old ones on purpose (dropping them could block on a lock some vanished thread held). The
//! internals are only ever swapped while holding the GIL, and `os.fork` runs with the GIL held,
//! so no lock of ours is held across a fork.

use crate::python::aio::Dispatcher;
use crate::python::errors::to_py;
use crate::python::result::{Origin, RateLimitResult};
use flux_core::store::redis::{BreakerState, MultiOutcome, Outcome, RedisConfig, Source};
use flux_core::{Decision, Error};
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Incremented in every child process right after a fork.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current process generation (see the module doc).
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The at-fork hook (registered with `os.register_at_fork(after_in_child=...)` at import).
#[pyfunction]
pub fn _after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// The store's internals for one process generation.
#[derive(Clone)]
struct Live {
    generation: u64,
    store: flux_core::store::redis::RedisStore,
    dispatcher: Option<Arc<DispatcherHandle>>,
}

/// Owns the dispatcher's worker threads: they stop when the last handle is dropped.
struct DispatcherHandle(Arc<Dispatcher>);

impl Drop for DispatcherHandle {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What limiters hold: the configuration and the current internals.
pub struct StoreHandle {
    config: RedisConfig,
    workers: usize,
    /// Synchronous hits in flight that go straight to Redis, each on its own pooled
    /// connection; more than this many at once are pipelined by the I/O threads instead.
    direct: usize,
    /// Synchronous hits in flight.
    inflight: AtomicUsize,
    /// Locked only while holding the GIL (see the module doc).
    live: Mutex<Live>,
}

/// A synchronous hit in flight (see [`StoreHandle::enter`]).
pub struct Entered<'a> {
    handle: &'a StoreHandle,
    /// True: go straight to Redis; false: through the I/O threads' pipelines.
    pub direct: bool,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.handle.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl StoreHandle {
    fn connect(config: RedisConfig, workers: usize, direct: usize) -> Result<Self, Error> {
        let store = flux_core::store::redis::RedisStore::connect(config.clone())?;
        Ok(StoreHandle {
            config,
            workers,
            direct,
            inflight: AtomicUsize::new(0),
            live: Mutex::new(Live {
                generation: GENERATION.load(Ordering::Acquire),
                store,
                dispatcher: None,
            }),
        })
    }

    /// Counts a synchronous hit in flight and says which way it goes: straight to Redis
    /// while few are in flight (the lowest latency), else pipelined with the others (one
    /// connection per round trip tops out at 1/RTT per connection, and Redis spends far more
    /// per unpipelined command).
    pub fn enter(&self) -> Entered<'_> {
        let before = self.inflight.fetch_add(1, Ordering::Relaxed);
        Entered {
            handle: self,
            direct: before < self.direct,
        }
    }

    /// The store's failure policy: fail open (true) or closed.
    pub fn fail_silently(&self) -> bool {
        self.config.fail_silently
    }

    /// The prefix of every key.
    pub fn key_prefix(&self) -> &str {
        &self.config.key_prefix
    }

    /// The live internals, rebuilt first if this process was forked since they were made.
    fn live<'a>(&'a self, _py: Python<'_>) -> parking_lot::MutexGuard<'a, Live> {
        let mut live = self.live.lock();
        let generation = GENERATION.load(Ordering::Acquire);
        if live.generation != generation {
            // A new process: the parent's pool and threads are unusable here. The config was
            // valid once, so connecting (which never touches the network) cannot fail now.
            let store = flux_core::store::redis::RedisStore::connect(self.config.clone())
                .expect("a configuration that connected once connects again");
            let old = std::mem::replace(
                &mut *live,
                Live {
                    generation,
                    store,
                    dispatcher: None,
                },
            );
            std::mem::forget(old);
        }
        live
    }

    /// The core store for this process (hold the GIL to call; use it detached).
    pub fn store(&self, py: Python<'_>) -> flux_core::store::redis::RedisStore {
        self.live(py).store.clone()
    }

    /// The async dispatcher for this process, started on first use.
    pub fn dispatcher(&self, py: Python<'_>) -> Arc<Dispatcher> {
        let mut live = self.live(py);
        if let Some(handle) = &live.dispatcher {
            return handle.0.clone();
        }
        let dispatcher = Dispatcher::start(live.store.clone(), self.workers);
        live.dispatcher = Some(Arc::new(DispatcherHandle(dispatcher.clone())));
        dispatcher
    }

    /// The dispatcher's counters, if it was started in this process.
    fn dispatcher_stats(&self, py: Python<'_>) -> Option<crate::python::aio::DispatchStats> {
        self.live(py)
            .dispatcher
            .as_ref()
            .map(|handle| handle.0.stats())
    }
}

/// A limiter's failure policy: its own override, else its store's.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// True: a Redis failure lets the hit pass (fail open); false: it raises.
    pub fail_open: bool,
}

/// The result of a hit (or peek, `cost` 0) under `policy`: fail-open results are flagged, and a
/// failure becomes a fail-open result or `flux.ConnectionError` as the policy says (whatever
/// the store's own policy did with it).
pub fn resolve(
    outcome: Result<Outcome, Error>,
    policy: Policy,
    capacity: u64,
    cost: u64,
) -> PyResult<RateLimitResult> {
    match outcome {
        Ok(Outcome { decision, source }) => match source {
            Source::Redis => Ok(RateLimitResult::from_origin(decision, Origin::Redis)),
            Source::DenyCache => Ok(RateLimitResult::from_origin(decision, Origin::DenyCache)),
            Source::FailOpen(err) if !policy.fail_open => Err(to_py(err)),
            Source::FailOpen(_) => Ok(RateLimitResult::from_origin(decision, Origin::FailOpen)),
        },
        Err(Error::Store(_)) if policy.fail_open => Ok(RateLimitResult::from_origin(
            failed_open(capacity, cost),
            Origin::FailOpen,
        )),
        Err(err) => Err(to_py(err)),
    }
}

/// The results of a multi-limit hit under `policy` (see [`resolve`]); `limits` are each
/// entry's (capacity, cost).
pub fn resolve_many(
    outcome: Result<MultiOutcome, Error>,
    policy: Policy,
    limits: &[(u64, u64)],
) -> PyResult<Vec<RateLimitResult>> {
    match outcome {
        Ok(MultiOutcome {
            decisions, source, ..
        }) => {
            let origin = match source {
                Source::Redis => Origin::Redis,
                Source::DenyCache => Origin::DenyCache,
                Source::FailOpen(err) if !policy.fail_open => return Err(to_py(err)),
                Source::FailOpen(_) => Origin::FailOpen,
            };
            Ok(decisions
                .into_iter()
                .map(|d| RateLimitResult::from_origin(d, origin))
                .collect())
        }
        Err(Error::Store(_)) if policy.fail_open => Ok(limits
            .iter()
            .map(|&(capacity, cost)| {
                RateLimitResult::from_origin(failed_open(capacity, cost), Origin::FailOpen)
            })
            .collect()),
        Err(err) => Err(to_py(err)),
    }
}

/// The decision reported for a hit let through unchecked (as the core reports it).
fn failed_open(capacity: u64, cost: u64) -> Decision {
    Decision {
        allowed: true,
        limit: capacity,
        remaining: capacity.saturating_sub(cost),
        reset_after: 0,
        retry_after: 0,
    }
}

/// A connection to Redis shared by any number of limiters: a pool of `pool_size` connections,
/// a circuit breaker, a local deny cache, and (started on first `ahit`) the threads that
/// pipeline concurrent hits. Thread-safe; connecting is lazy, so a server that is down now is
/// not an error until a hit needs it (see `ping`).
///
/// `url` (`redis://`, `unix://`, `rediss://` when built with TLS) overrides `host` and
/// `port`; `password`, `username` and `db` override the URL's. `cluster=True` or a list of
/// `nodes` talks to a Redis Cluster. `key_prefix` starts every key; `fail_silently` is the
/// failure policy of limiters that do not set their own. `async_workers` threads send the
/// pipelines of concurrent hits: every `ahit`, and the synchronous hits in flight beyond
/// `direct_callers` (default: `pool_size - async_workers`, at least 1), which would otherwise
/// each wait on a round trip of their own.
#[pyclass(module = "flux._flux", frozen)]
pub struct RedisStore {
    pub(crate) handle: Arc<StoreHandle>,
}

#[pymethods]
impl RedisStore {
    #[new]
    #[pyo3(signature = (
        url=None, *, host="127.0.0.1", port=6379, pool_size=5, timeout_ms=200,
        cluster=false, nodes=None, username=None, password=None, db=None,
        key_prefix="flux:", fail_silently=true, breaker_threshold=3,
        breaker_cooldown_ms=1000, deny_cache_size=4096, async_workers=2, direct_callers=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        url: Option<String>,
        host: &str,
        port: u16,
        pool_size: u32,
        timeout_ms: u64,
        cluster: bool,
        nodes: Option<Vec<String>>,
        username: Option<String>,
        password: Option<String>,
        db: Option<i64>,
        key_prefix: &str,
        fail_silently: bool,
        breaker_threshold: u32,
        breaker_cooldown_ms: u64,
        deny_cache_size: usize,
        async_workers: usize,
        direct_callers: Option<usize>,
    ) -> PyResult<Self> {
        if async_workers == 0 {
            return Err(PyValueError::new_err(
                "invalid argument: async_workers must be at least 1, got 0",
            ));
        }
        let config = RedisConfig {
            host: host.to_string(),
            port,
            url,
            pool_size,
            timeout_ms,
            cluster,
            nodes: nodes.unwrap_or_default(),
            username,
            password,
            db,
            key_prefix: key_prefix.to_string(),
            fail_silently,
            breaker_threshold,
            breaker_cooldown_ms,
            deny_cache_size,
        };
        // By default the pool is shared: the I/O threads' connections, the rest for direct hits.
        let direct = direct_callers
            .unwrap_or_else(|| (pool_size as usize).saturating_sub(async_workers))
            .max(1);
        Ok(RedisStore {
            handle: Arc::new(StoreHandle::connect(config, async_workers, direct).map_err(to_py)?),
        })
    }

    /// Sends one PING; raises `flux.ConnectionError` (with the reason) unless Redis answers
    /// within `timeout_ms`.
    fn ping(&self, py: Python<'_>) -> PyResult<()> {
        let store = self.handle.store(py);
        py.detach(|| store.ping()).map_err(to_py)
    }

    /// Loads every Lua script flux uses into Redis's script cache (SCRIPT LOAD; on a cluster,
    /// every primary) and returns how many. Optional: a hit loads a missing script itself;
    /// this only saves the first hits that round trip. Raises `flux.ConnectionError` when
    /// Redis cannot be reached.
    fn load_scripts(&self, py: Python<'_>) -> PyResult<usize> {
        let store = self.handle.store(py);
        py.detach(|| store.load_scripts()).map_err(to_py)
    }

    /// Counters for monitoring: `breaker` (`"closed"`/`"open"`), `consecutive_failures`,
    /// `round_trips` (a pipeline or a multi-limit hit counts once), `errors`, `fail_open`,
    /// `deny_cache_hits`, and for async hits `async_hits` (requests dispatched),
    /// `async_batches` (pipelines sent for them) and `async_max_batch`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.handle.store(py).stats();
        let dict = PyDict::new(py);
        dict.set_item("breaker", breaker_name(stats.breaker))?;
        dict.set_item("consecutive_failures", stats.consecutive_failures)?;
        dict.set_item("round_trips", stats.round_trips)?;
        dict.set_item("errors", stats.errors)?;
        dict.set_item("fail_open", stats.fail_open)?;
        dict.set_item("deny_cache_hits", stats.deny_cache_hits)?;
        let dispatch = self.handle.dispatcher_stats(py).unwrap_or_default();
        dict.set_item("async_hits", dispatch.requests)?;
        dict.set_item("async_batches", dispatch.batches)?;
        dict.set_item("async_max_batch", dispatch.max_batch)?;
        Ok(dict)
    }

    /// The circuit breaker's state: `"closed"` (Redis answering) or `"open"`.
    #[getter]
    fn breaker_state(&self, py: Python<'_>) -> &'static str {
        breaker_name(self.handle.store(py).breaker_state())
    }

    /// Where the store connects, without credentials (`"redis 127.0.0.1:6379"`).
    #[getter]
    fn target(&self) -> String {
        self.handle.config.describe()
    }

    /// The prefix of every key.
    #[getter]
    fn key_prefix(&self) -> &str {
        &self.handle.config.key_prefix
    }

    /// The failure policy of limiters that do not set their own.
    #[getter]
    fn fail_silently(&self) -> bool {
        self.handle.config.fail_silently
    }

    /// The connect and command timeout, in milliseconds.
    #[getter]
    fn timeout_ms(&self) -> u64 {
        self.handle.config.timeout_ms
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "RedisStore(target={:?}, key_prefix={:?}, fail_silently={}, breaker={:?})",
            self.handle.config.describe(),
            self.handle.config.key_prefix,
            if self.handle.config.fail_silently {
                "True"
            } else {
                "False"
            },
            self.breaker_state(py)
        )
    }
}

fn breaker_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
    }
}
