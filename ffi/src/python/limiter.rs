//! `Limiter`: one rate limit, on the embedded store, a `RedisStore` or a `SharedRegion`; the
//! base class of
//! `flux.RateLimiter`. Also the multi-limit hits `hit_many` / `ahit_many`.

use crate::python::aio::{self, Ready, Reply};
use crate::python::clock::ManualClock;
use crate::python::dispatcher::{Job, Slot, Work};
use crate::python::errors::to_py;
use crate::python::redis_store::RedisStore;
use crate::python::result::RateLimitResult;
use crate::python::result_reuse;
use crate::python::shared_region::SharedRegion;
use flux_core::{AlgorithmKind, FailurePolicy, Outcome, Quota};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::sync::Arc;

/// One rate limit applied to many keys, on the embedded store or, given `store`, in Redis.
///
/// Thread-safe. On the embedded store the GIL is kept around hits because releasing it costs
/// more than the hit itself (measured: a hit is ~100 ns, a GIL release/reacquire round
/// ~150 ns); around every Redis round trip it is released. Every decision, its source and
/// what a Redis failure does are the core's (see docs/architecture.md, *Failures*).
#[pyclass(module = "flux._flux", subclass, frozen)]
pub struct Limiter {
    inner: Arc<flux_core::Limiter>,
    /// The `RedisStore` of a limiter on Redis (its dispatcher pipelines concurrent hits).
    redis: Option<Py<RedisStore>>,
    /// The region of a limiter on the shared-memory store (hits go through `inner` as on the
    /// embedded store: lock-free, no I/O, so the GIL is kept).
    region: Option<Py<SharedRegion>>,
}

/// A whole number ≥ 1 for `what`, with a message naming it otherwise.
fn positive(value: i128, what: &str) -> PyResult<u64> {
    if value < 1 {
        return Err(PyValueError::new_err(format!(
            "invalid quota: {what} must be at least 1, got {value}"
        )));
    }
    u64::try_from(value).map_err(|_| {
        PyValueError::new_err(format!(
            "invalid quota: {what} {value} is too large (at most {})",
            u64::MAX
        ))
    })
}

/// A cost given from Python: a negative one is refused here, naming it (as a u64 it would
/// not even convert); 0 and costs above the capacity are refused by the core.
#[inline]
fn whole_cost(cost: i64, limiter: &flux_core::Limiter) -> PyResult<u64> {
    if cost < 0 {
        return Err(PyValueError::new_err(format!(
            "invalid cost {cost}: cost must be at least 1 (capacity is {})",
            limiter.limit()
        )));
    }
    Ok(cost as u64)
}

/// The items of a multi-limit hit with their costs checked (see [`whole_cost`]).
fn whole_costs<'py>(
    items: Vec<(PyRef<'py, Limiter>, String, i64)>,
) -> PyResult<Vec<(PyRef<'py, Limiter>, String, u64)>> {
    items
        .into_iter()
        .enumerate()
        .map(|(index, (limiter, key, cost))| {
            if cost < 0 {
                return Err(PyValueError::new_err(format!(
                    "items[{index}]: invalid cost {cost}: cost must be at least 1 (capacity \
                     is {})",
                    limiter.inner.limit()
                )));
            }
            let cost = cost as u64;
            Ok((limiter, key, cost))
        })
        .collect()
}

/// True for a Redis limiter whose hits may join the store's pipelines: not one built with an
/// explicit clock (the batch script runs at Redis's time).
fn pipelined(limiter: &flux_core::Limiter) -> bool {
    limiter.redis().is_some_and(|redis| !redis.has_clock())
}

impl Limiter {
    /// `op` on the core limiter: straight on the embedded and shared stores (GIL kept), with
    /// the GIL released on Redis (one round trip).
    #[inline]
    fn decide<'py>(
        &self,
        py: Python<'py>,
        op: impl FnOnce(&flux_core::Limiter) -> flux_core::Result<Outcome> + Send,
    ) -> PyResult<Bound<'py, RateLimitResult>> {
        let inner = &*self.inner;
        let outcome = match &self.redis {
            None => op(inner),
            Some(_) => py.detach(|| op(inner)),
        };
        result_reuse::issue(py, outcome.map_err(to_py)?)
    }

    /// What an async call (`ahit`, `arefund`) awaits: on a Redis limiter whose hits may be
    /// pipelined, `work` queued for the store's I/O threads; elsewhere `now` done at once (no
    /// I/O, or an explicit clock) and handed back ready.
    fn awaitable<'py>(
        &self,
        py: Python<'py>,
        key: String,
        cost: u64,
        work: fn(Arc<flux_core::Limiter>, String, u64) -> Work,
        now: impl FnOnce(&str) -> PyResult<Bound<'py, RateLimitResult>>,
    ) -> PyResult<Py<PyAny>> {
        match &self.redis {
            Some(store) if pipelined(&self.inner) => {
                // Refused now, not when awaited: a bad cost is the caller's bug.
                self.inner.check_cost(cost).map_err(to_py)?;
                let dispatcher = store.get().handle.dispatcher(py);
                aio::submit(py, &dispatcher, work(self.inner.clone(), key, cost))
            }
            _ => {
                let result = now(&key)?.into_any().unbind();
                Ok(Py::new(py, Ready::new(Ok(result)))?.into_any())
            }
        }
    }

    /// A synchronous hit on Redis: straight to Redis while few are in flight, else through
    /// the store's pipelines (see `StoreHandle::enter`).
    #[inline(never)]
    fn redis_hit<'py>(
        &self,
        py: Python<'py>,
        store: &Py<RedisStore>,
        key: &str,
        cost: u64,
    ) -> PyResult<Bound<'py, RateLimitResult>> {
        let handle = &store.get().handle;
        let entered = handle.enter();
        if !entered.direct && pipelined(&self.inner) {
            let slot = Slot::new();
            handle.dispatcher(py).submit(Job {
                work: Work::Hit {
                    limiter: self.inner.clone(),
                    key: key.to_string(),
                    cost,
                },
                reply: Reply::Blocking(slot.clone()),
            });
            let result = aio::hit_result(py, py.detach(|| slot.wait()))?;
            return Bound::new(py, result);
        }
        self.decide(py, |limiter| limiter.hit_outcome(key, cost))
    }
}

#[pymethods]
impl Limiter {
    #[new]
    #[pyo3(signature = (
        requests, period, *, burst=None, policy="gcra", max_keys=None, clock=None, prefix="",
        store=None, fail_silently=None, region=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        requests: i128,
        period: f64,
        burst: Option<i128>,
        policy: &str,
        max_keys: Option<i128>,
        clock: Option<PyRef<'_, ManualClock>>,
        prefix: &str,
        store: Option<Py<RedisStore>>,
        fail_silently: Option<bool>,
        region: Option<Py<SharedRegion>>,
    ) -> PyResult<Self> {
        let requests = positive(requests, "requests")?;
        let burst = burst.map(|b| positive(b, "burst")).transpose()?;
        let max_keys = max_keys
            .map(|m| positive(m, "max_keys").map(|m| m as usize))
            .transpose()?;
        let quota = Quota::from_secs_f64(requests, period, burst).map_err(to_py)?;
        let kind: AlgorithmKind = policy.parse().map_err(to_py)?;
        let builder = flux_core::Limiter::builder(quota)
            .algorithm(kind)
            .max_keys(max_keys)
            .prefix(prefix);
        if let Some(region) = region {
            if store.is_some() || max_keys.is_some() {
                return Err(PyValueError::new_err(
                    "invalid argument: a limiter on a SharedRegion takes neither store (Redis) \
                     nor max_keys (the region's size is set when it is created)",
                ));
            }
            let builder = match clock {
                Some(clock) => builder.clock(clock.inner.clone()),
                None => builder,
            };
            let inner = builder.build_shared(&region.get().region).map_err(to_py)?;
            return Ok(Limiter {
                inner: Arc::new(inner),
                redis: None,
                region: Some(region),
            });
        }
        let Some(store) = store else {
            let builder = match clock {
                Some(clock) => builder.clock(clock.inner.clone()),
                None => builder,
            };
            return Ok(Limiter {
                inner: Arc::new(builder.build_memory().map_err(to_py)?),
                redis: None,
                region: None,
            });
        };
        if max_keys.is_some() {
            return Err(PyValueError::new_err(
                "invalid argument: max_keys bounds the embedded store; Redis expires idle keys \
                 itself",
            ));
        }
        let builder = match clock {
            Some(clock) => builder.clock(clock.inner.clone()),
            None => builder,
        };
        let builder = match fail_silently {
            Some(fail_open) => builder.failure_policy(FailurePolicy::from_fail_open(fail_open)),
            None => builder,
        };
        let inner = builder
            .build_redis(store.get().handle.store())
            .map_err(to_py)?;
        Ok(Limiter {
            inner: Arc::new(inner),
            redis: Some(store),
            region: None,
        })
    }

    /// Counts a hit of `cost` on `key` if it passes; a denied hit changes nothing.
    /// `endpoint` is accepted for flux-limiter compatibility and analytics.
    #[pyo3(signature = (key, endpoint=None, cost=1))]
    fn hit<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        endpoint: Option<&Bound<'_, PyAny>>,
        cost: i64,
    ) -> PyResult<Bound<'py, RateLimitResult>> {
        let _ = endpoint;
        let cost = whole_cost(cost, &self.inner)?;
        match &self.redis {
            None => result_reuse::issue(py, self.inner.hit_outcome(key, cost).map_err(to_py)?),
            Some(store) => self.redis_hit(py, store, key, cost),
        }
    }

    /// `hit` for async callers: an awaitable of the result. On Redis the event loop never
    /// waits for the round trip, and concurrent calls share pipelined round trips.
    /// Invalid arguments raise at once; a Redis failure raises when awaited.
    #[pyo3(signature = (key, endpoint=None, cost=1))]
    fn ahit(
        &self,
        py: Python<'_>,
        key: String,
        endpoint: Option<&Bound<'_, PyAny>>,
        cost: i64,
    ) -> PyResult<Py<PyAny>> {
        let _ = endpoint;
        let cost = whole_cost(cost, &self.inner)?;
        self.awaitable(
            py,
            key,
            cost,
            |limiter, key, cost| Work::Hit { limiter, key, cost },
            |key| self.hit(py, key, None, cost as i64),
        )
    }

    /// What a hit of cost 1 on `key` would see now, without counting it.
    fn peek<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, RateLimitResult>> {
        self.decide(py, |limiter| limiter.peek_outcome(key))
    }

    /// Gives back `cost` units of `key`'s capacity (a hit that should not count after all)
    /// and returns what a hit of cost 1 would see next. Never above full capacity; an idle or
    /// unknown key is left as it is. Costs are checked as for `hit`.
    #[pyo3(signature = (key, cost=1))]
    fn refund<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        cost: i64,
    ) -> PyResult<Bound<'py, RateLimitResult>> {
        let cost = whole_cost(cost, &self.inner)?;
        self.decide(py, |limiter| limiter.refund_outcome(key, cost))
    }

    /// `refund` for async callers: an awaitable of the result. On Redis the event loop never
    /// waits for the round trip (the store's I/O threads make it). Invalid costs raise at
    /// once; a Redis failure raises when awaited, as the failure policy says.
    #[pyo3(signature = (key, cost=1))]
    fn arefund(&self, py: Python<'_>, key: String, cost: i64) -> PyResult<Py<PyAny>> {
        let cost = whole_cost(cost, &self.inner)?;
        self.awaitable(
            py,
            key,
            cost,
            |limiter, key, cost| Work::Refund { limiter, key, cost },
            |key| self.refund(py, key, cost as i64),
        )
    }

    /// Puts `key` back to full capacity. On Redis a failure always raises
    /// `flux.ConnectionError`, whatever the failure policy.
    fn reset(&self, py: Python<'_>, key: &str) -> PyResult<()> {
        let inner = &*self.inner;
        match &self.redis {
            None => inner.reset(key),
            Some(_) => py.detach(|| inner.reset(key)),
        }
        .map_err(to_py)
    }

    /// Forgets every key that is back to full capacity; returns how many were dropped (Redis
    /// expires such keys itself: 0).
    fn sweep(&self) -> usize {
        self.inner.store().sweep()
    }

    /// Number of keys currently held (on Redis a SCAN of this limit's keys: for diagnostics,
    /// not for hot paths; raises `flux.ConnectionError` when Redis cannot be reached).
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        match self.inner.redis() {
            None => Ok(self.inner.store().len()),
            Some(redis) => py.detach(|| redis.count_keys()).map_err(to_py),
        }
    }

    /// Hits several limits at once, atomically (see the module function `hit_many`).
    #[staticmethod]
    #[pyo3(name = "hit_many")]
    fn hit_many_static(
        py: Python<'_>,
        items: Vec<(PyRef<'_, Limiter>, String, i64)>,
    ) -> PyResult<Vec<RateLimitResult>> {
        hit_many(py, items)
    }

    /// `hit_many` for async callers (see the module function `ahit_many`).
    #[staticmethod]
    #[pyo3(name = "ahit_many")]
    fn ahit_many_static(
        py: Python<'_>,
        items: Vec<(PyRef<'_, Limiter>, String, i64)>,
    ) -> PyResult<Py<PyAny>> {
        ahit_many(py, items)
    }

    /// Requests N per period.
    #[getter]
    fn requests(&self) -> u64 {
        self.inner.quota().requests()
    }

    /// The period T in seconds.
    #[getter]
    fn period(&self) -> f64 {
        self.inner.quota().period_secs()
    }

    /// The burst capacity B.
    #[getter]
    fn burst(&self) -> u64 {
        self.inner.quota().burst()
    }

    /// The algorithm's name.
    #[getter]
    fn policy(&self) -> &'static str {
        self.inner.algorithm().name()
    }

    /// The capacity reported in results (B for buckets, N for windows).
    #[getter]
    fn limit(&self) -> u64 {
        self.inner.limit()
    }

    /// The prefix naming this limit's keys (on Redis, the store's `key_prefix` included).
    #[getter]
    fn prefix(&self) -> String {
        match &self.redis {
            None => self.inner.prefix().to_string(),
            Some(store) => format!("{}{}", store.get().handle.key_prefix(), self.inner.prefix()),
        }
    }

    /// The `RedisStore` holding this limit's state; None on the embedded store.
    #[getter]
    fn store(&self, py: Python<'_>) -> Option<Py<RedisStore>> {
        self.redis.as_ref().map(|store| store.clone_ref(py))
    }

    /// The `SharedRegion` holding this limit's state; None on the other stores.
    #[getter]
    fn region(&self, py: Python<'_>) -> Option<Py<SharedRegion>> {
        self.region.as_ref().map(|region| region.clone_ref(py))
    }

    /// The failure policy on Redis: True lets hits pass when Redis fails (flagged
    /// `fail_open`), False raises `flux.ConnectionError`; None on the embedded store.
    #[getter]
    fn fail_silently(&self) -> Option<bool> {
        self.redis
            .as_ref()
            .map(|_| self.inner.failure_policy().is_open())
    }
}

/// Hits several limits at once, atomically: every limit passes and all are consumed, or none
/// is. `items` are `(limiter, key, cost)`; the results come back in order, and the batch passed
/// iff every result is allowed (a limit that would have passed in a denied batch reports
/// `allowed=True` with nothing taken from it).
///
/// All limiters must be on the embedded store, or all on the same `RedisStore` (then it is one
/// script, one round trip; on a cluster every key must be the same identity). A Redis failure
/// fails open only if every limiter's policy says so.
#[pyfunction]
pub fn hit_many(
    py: Python<'_>,
    items: Vec<(PyRef<'_, Limiter>, String, i64)>,
) -> PyResult<Vec<RateLimitResult>> {
    hit_many_costed(py, whole_costs(items)?)
}

/// [`hit_many`] once every cost is converted: the core checks that every limiter is on one
/// store and hits them its way (see `flux_core::hit_many`).
fn hit_many_costed(
    py: Python<'_>,
    items: Vec<(PyRef<'_, Limiter>, String, u64)>,
) -> PyResult<Vec<RateLimitResult>> {
    let on_redis = items
        .first()
        .is_some_and(|(limiter, _, _)| limiter.redis.is_some());
    let batch: Vec<(&flux_core::Limiter, &str, u64)> = items
        .iter()
        .map(|(limiter, key, cost)| (limiter.inner.as_ref(), key.as_str(), *cost))
        .collect();
    let outcome = if on_redis {
        py.detach(|| flux_core::hit_many(&batch))
    } else {
        flux_core::hit_many(&batch)
    }
    .map_err(to_py)?;
    Ok(outcome
        .decisions
        .into_iter()
        .map(|decision| RateLimitResult::from_decision(py, decision, outcome.source))
        .collect())
}

/// `hit_many` for async callers: an awaitable of the list of results. On Redis the round
/// trip runs on the store's I/O threads while the event loop goes on.
#[pyfunction]
pub fn ahit_many(
    py: Python<'_>,
    items: Vec<(PyRef<'_, Limiter>, String, i64)>,
) -> PyResult<Py<PyAny>> {
    let items = whole_costs(items)?;
    let store = items
        .first()
        .filter(|(limiter, _, _)| pipelined(&limiter.inner))
        .and_then(|(limiter, _, _)| limiter.redis.as_ref());
    match store {
        Some(store) => {
            // Refused now, not when awaited: a bad batch is the caller's bug.
            let batch: Vec<(&flux_core::Limiter, &str, u64)> = items
                .iter()
                .map(|(limiter, key, cost)| (limiter.inner.as_ref(), key.as_str(), *cost))
                .collect();
            flux_core::check_many(&batch).map_err(to_py)?;
            let dispatcher = store.get().handle.dispatcher(py);
            let work = Work::Many {
                items: items
                    .iter()
                    .map(|(limiter, key, cost)| (limiter.inner.clone(), key.clone(), *cost))
                    .collect(),
            };
            aio::submit(py, &dispatcher, work)
        }
        None => {
            let results = hit_many_costed(py, items)?;
            let list = PyList::empty(py);
            for result in results {
                list.append(Py::new(py, result)?)?;
            }
            Ok(Py::new(py, Ready::new(Ok(list.into_any().unbind())))?.into_any())
        }
    }
}
