//! `RedisStore`: a connection to Redis (pool, circuit breaker, deny cache, async dispatcher)
//! shared by any number of limiters. Failures are the core's to decide, per limit (see
//! docs/architecture.md, *Failures*).
//!
//! Fork safety: a child process must not use its parent's connections (they are the parent's
//! sockets) nor its I/O threads (which did not survive the fork). An at-fork hook tells the
//! core, whose store then makes fresh internals in the child (`core/src/store/redis/fork.rs`);
//! the dispatcher is restarted here the same way, leaking the parent's on purpose (dropping it
//! could block on a lock some vanished thread held). It is only ever swapped while holding the
//! GIL, and `os.fork` runs with the GIL held, so no lock of ours is held across a fork.

use crate::python::aio::PyDispatcher;
use crate::python::dispatcher::DispatchStats;
use crate::python::errors::to_py;
use flux_core::store::redis::{fork_generation, BreakerState, RedisConfig};
use flux_core::Error;
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The at-fork hook (registered with `os.register_at_fork(after_in_child=...)` at import).
#[pyfunction]
pub fn _after_fork_in_child() {
    flux_core::store::redis::after_fork_in_child();
}

/// Owns the dispatcher's worker threads: they stop when the last handle is dropped.
struct DispatcherHandle(Arc<PyDispatcher>);

impl Drop for DispatcherHandle {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What limiters hold: the configuration, the core store and this process's dispatcher.
pub struct StoreHandle {
    config: RedisConfig,
    /// The core store (it makes its own connections in a forked child).
    store: flux_core::store::redis::RedisStore,
    workers: usize,
    /// Synchronous hits in flight that go straight to Redis, each on its own pooled
    /// connection; more than this many at once are pipelined by the I/O threads instead.
    direct: usize,
    /// Synchronous hits in flight.
    inflight: AtomicUsize,
    /// The dispatcher and the process generation it was started in. Locked only while
    /// holding the GIL (see the module doc).
    dispatcher: Mutex<Option<(u64, Arc<DispatcherHandle>)>>,
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
            store,
            workers,
            direct,
            inflight: AtomicUsize::new(0),
            dispatcher: Mutex::new(None),
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

    /// The prefix of every key.
    pub fn key_prefix(&self) -> &str {
        &self.config.key_prefix
    }

    /// The core store.
    pub fn store(&self) -> &flux_core::store::redis::RedisStore {
        &self.store
    }

    /// The async dispatcher for this process, started on first use (hold the GIL to call).
    pub fn dispatcher(&self, _py: Python<'_>) -> Arc<PyDispatcher> {
        let mut slot = self.dispatcher.lock();
        let generation = fork_generation();
        match slot.as_ref() {
            Some((made_in, handle)) if *made_in == generation => return handle.0.clone(),
            // A forked child: the parent's threads are gone; its handle is leaked, not closed.
            Some(_) => std::mem::forget(slot.take()),
            None => {}
        }
        let dispatcher = PyDispatcher::start(self.store.clone(), self.workers);
        *slot = Some((generation, Arc::new(DispatcherHandle(dispatcher.clone()))));
        dispatcher
    }

    /// The dispatcher's counters, if it was started in this process.
    fn dispatcher_stats(&self, _py: Python<'_>) -> Option<DispatchStats> {
        let slot = self.dispatcher.lock();
        slot.as_ref()
            .filter(|(made_in, _)| *made_in == fork_generation())
            .map(|(_, handle)| handle.0.stats())
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
        let store = self.handle.store();
        py.detach(|| store.ping()).map_err(to_py)
    }

    /// Loads every Lua script flux uses into Redis's script cache (SCRIPT LOAD; on a cluster,
    /// every primary) and returns how many. Optional: a hit loads a missing script itself;
    /// this only saves the first hits that round trip. Raises `flux.ConnectionError` when
    /// Redis cannot be reached.
    fn load_scripts(&self, py: Python<'_>) -> PyResult<usize> {
        let store = self.handle.store();
        py.detach(|| store.load_scripts()).map_err(to_py)
    }

    /// Counters for monitoring: `breaker` (`"closed"`/`"open"`), `consecutive_failures`,
    /// `round_trips` (a pipeline or a multi-limit hit counts once), `errors`, `fail_open`,
    /// `deny_cache_hits`, and for async hits `async_hits` (requests dispatched),
    /// `async_batches` (pipelines sent for them) and `async_max_batch`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.handle.store().stats();
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
    fn breaker_state(&self) -> &'static str {
        breaker_name(self.handle.store().breaker_state())
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

    fn __repr__(&self) -> String {
        format!(
            "RedisStore(target={:?}, key_prefix={:?}, fail_silently={}, breaker={:?})",
            self.handle.config.describe(),
            self.handle.config.key_prefix,
            if self.handle.config.fail_silently {
                "True"
            } else {
                "False"
            },
            self.breaker_state()
        )
    }
}

fn breaker_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
    }
}
