//! `Limiter`: one rate limit, on the embedded store, a `RedisStore` or a `SharedRegion`; the
//! base class of
//! `flux.RateLimiter`. Also the multi-limit hits `hit_many` / `ahit_many`.

use crate::python::aio::{self, Job, Ready, Reply, Slot, Work};
use crate::python::clock::ManualClock;
use crate::python::errors::to_py;
use crate::python::redis_store::{resolve, resolve_many, Policy, RedisStore, StoreHandle};
use crate::python::result::RateLimitResult;
use crate::python::shared_region::SharedRegion;
use flux_core::store::redis::{Outcome, Source};
use flux_core::store::Store;
use flux_core::{AlgorithmKind, Clock, Decision, Error, Quota};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::sync::Arc;

/// One rate limit applied to many keys, on the embedded store or, given `store`, in Redis.
///
/// Thread-safe. On the embedded store the GIL is kept around hits because releasing it costs
/// more than the hit itself (measured: a hit is ~100 ns, a GIL release/reacquire round
/// ~150 ns); around every Redis round trip it is released.
#[pyclass(module = "flux._flux", subclass, frozen)]
pub struct Limiter {
    inner: Arc<flux_core::Limiter>,
    redis: Option<RedisBinding>,
    /// The region of a limiter on the shared-memory store (hits go through `inner` as on the
    /// embedded store: lock-free, no I/O, so the GIL is kept).
    region: Option<Py<SharedRegion>>,
}

/// A Redis-backed limiter's store, failure policy and (tests only) explicit clock.
struct RedisBinding {
    store: Py<RedisStore>,
    policy: Policy,
    /// Given: hits carry this clock's time instead of Redis's `TIME` (test vectors, replays).
    clock: Option<Arc<flux_core::ManualClock>>,
}

/// The store of a Redis-backed limiter's definition (quota, algorithm, prefix). Its hits go
/// through the process's current `RedisStore` (rebuilt after a fork), never through this.
struct ViaRedisStore;

impl Store for ViaRedisStore {
    fn hit(&self, _key: &str, _cost: u64) -> flux_core::Result<Decision> {
        Err(unbound())
    }

    fn peek(&self, _key: &str) -> flux_core::Result<Decision> {
        Err(unbound())
    }

    fn reset(&self, _key: &str) -> flux_core::Result<()> {
        Err(unbound())
    }

    fn refund(&self, _key: &str, _cost: u64) -> flux_core::Result<Decision> {
        Err(unbound())
    }

    fn len(&self) -> usize {
        0
    }

    fn sweep(&self) -> usize {
        0
    }
}

fn unbound() -> Error {
    Error::InvalidArgument("a Redis-backed limiter is used through its RedisStore".into())
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

/// Time of `clock` in µs since the epoch (the Redis scripts' unit).
fn micros(clock: &flux_core::ManualClock) -> u64 {
    clock.now() / 1000
}

impl RedisBinding {
    fn handle(&self) -> &StoreHandle {
        &self.store.get().handle
    }

    #[inline(never)]
    fn hit(
        &self,
        py: Python<'_>,
        limiter: &Arc<flux_core::Limiter>,
        key: &str,
        cost: u64,
    ) -> PyResult<RateLimitResult> {
        let handle = self.handle();
        let entered = handle.enter();
        if !entered.direct && self.clock.is_none() {
            let dispatcher = handle.dispatcher(py);
            let slot = Slot::new();
            dispatcher.submit(Job {
                work: Work::Hit {
                    limiter: limiter.clone(),
                    key: key.to_string(),
                    cost,
                },
                policy: self.policy,
                reply: Reply::Blocking(slot.clone()),
            });
            return py.detach(|| slot.wait()).into_result();
        }
        let store = handle.store(py);
        let outcome = match &self.clock {
            Some(clock) => {
                let now = micros(clock);
                py.detach(|| {
                    store
                        .limit_of(limiter)?
                        .hit_at(key, cost, now)
                        .map(|decision| Outcome {
                            decision,
                            source: Source::Redis,
                        })
                })
            }
            None => py.detach(|| store.hit(limiter, key, cost)),
        };
        resolve(outcome, self.policy, limiter.limit(), cost)
    }

    fn peek(
        &self,
        py: Python<'_>,
        limiter: &flux_core::Limiter,
        key: &str,
    ) -> PyResult<RateLimitResult> {
        let store = self.handle().store(py);
        let clock = self.clock.as_deref().map(micros);
        let outcome = py.detach(|| {
            let limit = store.limit_of(limiter)?;
            match clock {
                Some(now) => limit.peek_at(key, now).map(|decision| Outcome {
                    decision,
                    source: Source::Redis,
                }),
                None => limit.peek_outcome(key),
            }
        });
        resolve(outcome, self.policy, limiter.limit(), 0)
    }

    /// A refund in one round trip, at Redis's time (or the test clock's). A failure follows
    /// the limit's policy: fail closed raises; fail open returns a result flagged
    /// `fail_open` (the refund is lost and the hit it undid stays counted).
    fn refund(
        &self,
        py: Python<'_>,
        limiter: &flux_core::Limiter,
        key: &str,
        cost: u64,
    ) -> PyResult<RateLimitResult> {
        let store = self.handle().store(py);
        let clock = self.clock.as_deref().map(micros);
        let outcome = py.detach(|| {
            let limit = store.limit_of(limiter)?;
            match clock {
                Some(now) => limit.refund_at(key, cost, now).map(|decision| Outcome {
                    decision,
                    source: Source::Redis,
                }),
                None => limit.refund_outcome(key, cost),
            }
        });
        resolve(outcome, self.policy, limiter.limit(), 0)
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
        py: Python<'_>,
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
        let inner = builder
            .build_with(|_, _, _| Ok(Box::new(ViaRedisStore)))
            .map_err(to_py)?;
        let handle = &store.get().handle;
        // The quota must fit the scripts' arithmetic: say so now, not at the first hit.
        handle.store(py).limit_of(&inner).map_err(to_py)?;
        let policy = Policy {
            fail_open: fail_silently.unwrap_or_else(|| handle.fail_silently()),
        };
        handle
            .store(py)
            .note_limit_policy(inner.prefix(), policy.fail_open);
        Ok(Limiter {
            inner: Arc::new(inner),
            redis: Some(RedisBinding {
                store,
                policy,
                clock: clock.map(|clock| clock.inner.clone()),
            }),
            region: None,
        })
    }

    /// Counts a hit of `cost` on `key` if it passes; a denied hit changes nothing.
    /// `endpoint` is accepted for flux-limiter compatibility and analytics.
    #[pyo3(signature = (key, endpoint=None, cost=1))]
    fn hit(
        &self,
        py: Python<'_>,
        key: &str,
        endpoint: Option<&Bound<'_, PyAny>>,
        cost: i64,
    ) -> PyResult<RateLimitResult> {
        let _ = endpoint;
        let cost = whole_cost(cost, &self.inner)?;
        match &self.redis {
            None => self
                .inner
                .hit(key, cost)
                .map(RateLimitResult::from_decision)
                .map_err(to_py),
            Some(redis) => redis.hit(py, &self.inner, key, cost),
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
        match &self.redis {
            Some(redis) if redis.clock.is_none() => {
                if cost == 0 || cost > self.inner.limit() {
                    return Err(to_py(Error::InvalidCost {
                        cost,
                        capacity: self.inner.limit(),
                    }));
                }
                let dispatcher = redis.handle().dispatcher(py);
                let work = Work::Hit {
                    limiter: self.inner.clone(),
                    key,
                    cost,
                };
                aio::submit(py, &dispatcher, work, redis.policy)
            }
            _ => {
                let result = self.hit(py, &key, None, cost as i64)?;
                Ok(Ready::of(py, Ok(result))?.into_any())
            }
        }
    }

    /// What a hit of cost 1 on `key` would see now, without counting it.
    fn peek(&self, py: Python<'_>, key: &str) -> PyResult<RateLimitResult> {
        match &self.redis {
            None => self
                .inner
                .peek(key)
                .map(RateLimitResult::from_decision)
                .map_err(to_py),
            Some(redis) => redis.peek(py, &self.inner, key),
        }
    }

    /// Gives back `cost` units of `key`'s capacity (a hit that should not count after all)
    /// and returns what a hit of cost 1 would see next. Never above full capacity; an idle or
    /// unknown key is left as it is. Costs are checked as for `hit`.
    #[pyo3(signature = (key, cost=1))]
    fn refund(&self, py: Python<'_>, key: &str, cost: i64) -> PyResult<RateLimitResult> {
        let cost = whole_cost(cost, &self.inner)?;
        match &self.redis {
            None => self
                .inner
                .refund(key, cost)
                .map(RateLimitResult::from_decision)
                .map_err(to_py),
            Some(redis) => {
                // Checked here too: a bad cost is the caller's bug, never a store failure that
                // a fail-open policy would swallow.
                if cost == 0 || cost > self.inner.limit() {
                    return Err(to_py(Error::InvalidCost {
                        cost,
                        capacity: self.inner.limit(),
                    }));
                }
                redis.refund(py, &self.inner, key, cost)
            }
        }
    }

    /// Puts `key` back to full capacity. On Redis a failure always raises
    /// `flux.ConnectionError`, whatever the failure policy.
    fn reset(&self, py: Python<'_>, key: &str) -> PyResult<()> {
        match &self.redis {
            None => self.inner.reset(key).map_err(to_py),
            Some(redis) => {
                let store = redis.handle().store(py);
                let inner = &*self.inner;
                py.detach(|| store.limit_of(inner)?.reset_key(key))
                    .map_err(to_py)
            }
        }
    }

    /// Forgets every key that is back to full capacity; returns how many were dropped (Redis
    /// expires such keys itself: 0).
    fn sweep(&self) -> usize {
        self.inner.store().sweep()
    }

    /// Number of keys currently held (on Redis a SCAN of this limit's keys: for diagnostics,
    /// not for hot paths; raises `flux.ConnectionError` when Redis cannot be reached).
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        match &self.redis {
            None => Ok(self.inner.store().len()),
            Some(redis) => {
                let store = redis.handle().store(py);
                let inner = &*self.inner;
                py.detach(|| store.limit_of(inner)?.count_keys())
                    .map_err(to_py)
            }
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
            Some(redis) => format!("{}{}", redis.handle().key_prefix(), self.inner.prefix()),
        }
    }

    /// The `RedisStore` holding this limit's state; None on the embedded store.
    #[getter]
    fn store(&self, py: Python<'_>) -> Option<Py<RedisStore>> {
        self.redis.as_ref().map(|redis| redis.store.clone_ref(py))
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
        self.redis.as_ref().map(|redis| redis.policy.fail_open)
    }
}

/// Where a multi-limit hit goes.
enum Group<'a> {
    Memory,
    Redis(&'a RedisBinding),
}

fn group<'a>(items: &'a [(PyRef<'_, Limiter>, String, u64)]) -> PyResult<Group<'a>> {
    let Some((first, _, _)) = items.first() else {
        return Err(to_py(Error::InvalidArgument(
            "a multi-limit hit needs at least one limit".into(),
        )));
    };
    let mixed = || {
        PyValueError::new_err(
            "invalid argument: a multi-limit hit needs every limiter on one store: all on the \
             embedded store, all on shared regions, or all on the same RedisStore",
        )
    };
    match &first.redis {
        None => {
            if items.iter().any(|(l, _, _)| l.redis.is_some()) {
                return Err(mixed());
            }
            Ok(Group::Memory)
        }
        Some(redis) => {
            let handle = &redis.store.get().handle;
            let same = items.iter().all(|(l, _, _)| {
                l.redis
                    .as_ref()
                    .is_some_and(|r| std::ptr::eq(&*r.store.get().handle, &**handle))
            });
            if !same {
                return Err(mixed());
            }
            Ok(Group::Redis(redis))
        }
    }
}

/// The failure policy of a multi-limit hit: fail open only if every limit does.
fn joint_policy(items: &[(PyRef<'_, Limiter>, String, u64)]) -> Policy {
    Policy {
        fail_open: items
            .iter()
            .all(|(l, _, _)| l.redis.as_ref().is_some_and(|r| r.policy.fail_open)),
    }
}

fn capacities(items: &[(PyRef<'_, Limiter>, String, u64)]) -> Vec<(u64, u64)> {
    items
        .iter()
        .map(|(l, _, cost)| (l.inner.limit(), *cost))
        .collect()
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

/// [`hit_many`] once every cost is checked.
fn hit_many_costed(
    py: Python<'_>,
    items: Vec<(PyRef<'_, Limiter>, String, u64)>,
) -> PyResult<Vec<RateLimitResult>> {
    match group(&items)? {
        Group::Memory => {
            let batch: Vec<(&flux_core::Limiter, &str, u64)> = items
                .iter()
                .map(|(limiter, key, cost)| (limiter.inner.as_ref(), key.as_str(), *cost))
                .collect();
            let decisions = flux_core::hit_many(&batch).map_err(to_py)?;
            Ok(decisions
                .into_iter()
                .map(RateLimitResult::from_decision)
                .collect())
        }
        Group::Redis(redis) => {
            let store = redis.handle().store(py);
            let batch: Vec<(&flux_core::Limiter, &str, u64)> = items
                .iter()
                .map(|(limiter, key, cost)| (limiter.inner.as_ref(), key.as_str(), *cost))
                .collect();
            let clock = redis.clock.as_deref().map(micros);
            let outcome = py.detach(|| match clock {
                Some(now) => store.hit_many_at(&batch, now),
                None => store.hit_many(&batch),
            });
            resolve_many(outcome, joint_policy(&items), &capacities(&items))
        }
    }
}

/// `hit_many` for async callers: an awaitable of the list of results. On Redis the round
/// trip runs on the store's I/O threads while the event loop goes on.
#[pyfunction]
pub fn ahit_many(
    py: Python<'_>,
    items: Vec<(PyRef<'_, Limiter>, String, i64)>,
) -> PyResult<Py<PyAny>> {
    let items = whole_costs(items)?;
    match group(&items)? {
        Group::Redis(redis) if redis.clock.is_none() => {
            for (limiter, _, cost) in &items {
                if *cost == 0 || *cost > limiter.inner.limit() {
                    return Err(to_py(Error::InvalidCost {
                        cost: *cost,
                        capacity: limiter.inner.limit(),
                    }));
                }
            }
            let dispatcher = redis.handle().dispatcher(py);
            let policy = joint_policy(&items);
            let work = Work::Many {
                items: items
                    .iter()
                    .map(|(limiter, key, cost)| (limiter.inner.clone(), key.clone(), *cost))
                    .collect(),
            };
            aio::submit(py, &dispatcher, work, policy)
        }
        _ => {
            let results = hit_many_costed(py, items)?;
            let list = PyList::empty(py);
            for result in results {
                list.append(Py::new(py, result)?)?;
            }
            Ok(Py::new(py, Ready::new(Ok(list.into_any().unbind())))?.into_any())
        }
    }
}
