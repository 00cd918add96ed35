//! Async hits without serialising: concurrent `ahit` calls from any number of event loops are
//! pipelined onto shared Redis connections by a few I/O threads, and their futures are
//! completed on the caller's loop.
//!
//! - `ahit` (GIL held, < 1 µs): creates an asyncio future on the running loop and queues the
//!   request for the store's [`Dispatcher`]. Nothing waits; the event loop goes on.
//! - The dispatcher's workers (no GIL, ever) take everything queued, up to [`MAX_BATCH`], send
//!   it as one pipeline (`RedisStore::hit_batch`: one round trip, in which Redis's batch script
//!   decides up to 128 hits per EVALSHA, each as if alone), and hand the outcomes to the loop's
//!   [`Waker`]. While one worker waits on a round trip the next takes what has queued
//!   since, so round trips overlap and their number stays far below the number of hits.
//! - The waker is a socket pair registered with `loop.add_reader`: a worker writes one byte
//!   (only when the loop is not already signalled), and the loop, in its own thread and
//!   holding the GIL anyway, sets the futures' results. Workers never take the GIL, so a busy
//!   event loop cannot stall them (taking the GIL from another thread waits up to the
//!   interpreter's 5 ms switch interval).
//!
//! A multi-limit hit (`ahit_many`, one atomic script) is sent on its own by a worker.
//!
//! Synchronous `hit`s from many threads use the same pipelines once more of them are in flight
//! than a store lets go straight to Redis (see `StoreHandle::enter`): those callers wait, GIL
//! released, on a [`Slot`]. One caller alone never takes that detour (it would add a thread
//! hand-off to every round trip).

use crate::python::redis_store::{generation, resolve, resolve_many, Policy};
use crate::python::result::RateLimitResult;
use flux_core::store::redis::{MultiOutcome, Outcome, RedisStore};
use flux_core::{Error, Limiter};
use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyWeakrefReference};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Waits on `condvar`. The dispatcher blocks only through `std`'s futex-based primitives,
/// never `parking_lot`'s: a thread parked in `parking_lot` when the process forks corrupts
/// the child's global table of parked threads (see core's `store/redis/pool.rs`). A panic
/// never leaves the guarded data half-changed, so poisoning is ignored.
fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// The most hits one pipeline carries (more wait for the next worker or round trip).
pub const MAX_BATCH: usize = 512;

/// What a queued request asks for.
pub enum Work {
    /// One hit of `cost` on `key`.
    Hit {
        limiter: Arc<Limiter>,
        key: String,
        cost: u64,
    },
    /// One atomic hit against several limits (one script, one round trip).
    Many {
        items: Vec<(Arc<Limiter>, String, u64)>,
    },
}

/// A queued request: the work, the caller's failure policy, and whom to tell.
pub struct Job {
    pub work: Work,
    pub policy: Policy,
    pub reply: Reply,
}

/// Whom a finished request is handed to.
pub enum Reply {
    /// An asyncio future, completed on its loop (through the loop's waker).
    Future {
        waker: Arc<Waker>,
        future: Py<PyAny>,
    },
    /// A thread blocked in a synchronous `hit` (GIL released) until the slot is filled.
    Blocking(Arc<Slot>),
}

/// Where a blocked caller waits for its finished request.
pub struct Slot {
    done: Mutex<Option<Done>>,
    filled: Condvar,
}

impl Slot {
    pub fn new() -> Arc<Slot> {
        Arc::new(Slot {
            done: Mutex::new(None),
            filled: Condvar::new(),
        })
    }

    fn fill(&self, done: Done) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = Some(done);
        self.filled.notify_one();
    }

    /// Waits until a worker has filled the slot (call with the GIL released). Workers answer
    /// every request within `timeout_ms`, so this never waits longer.
    pub fn wait(&self) -> Done {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(done) = done.take() {
                return done;
            }
            done = wait(&self.filled, done);
        }
    }
}

/// A finished request, waiting for its caller to turn it into a result.
pub enum Done {
    Hit {
        outcome: Result<Outcome, Error>,
        policy: Policy,
        capacity: u64,
        cost: u64,
    },
    Many {
        outcome: Result<MultiOutcome, Error>,
        policy: Policy,
        limits: Vec<(u64, u64)>,
    },
}

impl Done {
    /// The result of a single hit (what a blocked synchronous caller gets).
    pub fn into_result(self) -> PyResult<RateLimitResult> {
        match self {
            Done::Hit {
                outcome,
                policy,
                capacity,
                cost,
            } => resolve(outcome, policy, capacity, cost),
            Done::Many { .. } => unreachable!("blocking callers send single hits"),
        }
    }

    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            Done::Hit {
                outcome,
                policy,
                capacity,
                cost,
            } => Ok(Py::new(py, resolve(outcome, policy, capacity, cost)?)?.into_any()),
            Done::Many {
                outcome,
                policy,
                limits,
            } => {
                let results = resolve_many(outcome, policy, &limits)?;
                let list = PyList::empty(py);
                for result in results {
                    list.append(Py::new(py, result)?)?;
                }
                Ok(list.into_any().unbind())
            }
        }
    }
}

/// Counters of the dispatcher (`RedisStore.stats()`).
#[derive(Debug, Default, Clone, Copy)]
pub struct DispatchStats {
    /// Requests dispatched.
    pub requests: u64,
    /// Round trips made for them (pipelines and multi-limit scripts).
    pub batches: u64,
    /// The largest pipeline sent.
    pub max_batch: u64,
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Workers waiting for work.
    idle: usize,
    /// Of those, how many were notified and have not woken yet (no need to notify again:
    /// a wake-up costs a system call, more than queuing a request).
    waking: usize,
    closed: bool,
}

/// The queue of async requests of one store and the worker threads that send them.
pub struct Dispatcher {
    queue: Mutex<Queue>,
    ready: Condvar,
    requests: AtomicU64,
    batches: AtomicU64,
    max_batch: AtomicU64,
}

impl Dispatcher {
    /// Starts `workers` threads sending requests through `store`.
    pub fn start(store: RedisStore, workers: usize) -> Arc<Dispatcher> {
        let dispatcher = Arc::new(Dispatcher {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                idle: 0,
                waking: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            requests: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            max_batch: AtomicU64::new(0),
        });
        for n in 0..workers.max(1) {
            let (dispatcher, store) = (dispatcher.clone(), store.clone());
            std::thread::Builder::new()
                .name(format!("flux-redis-io-{n}"))
                .spawn(move || dispatcher.work(&store))
                .expect("spawn a flux I/O thread");
        }
        dispatcher
    }

    /// Queues `job`; wakes a worker only if one is idle and none is waking already (busy
    /// ones look again when done).
    pub fn submit(&self, job: Job) {
        let wake = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.jobs.push_back(job);
            let wake = queue.idle > queue.waking;
            if wake {
                queue.waking += 1;
            }
            wake
        };
        if wake {
            self.ready.notify_one();
        }
    }

    /// Lets the workers finish what is queued, then stop.
    pub fn close(&self) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.ready.notify_all();
    }

    pub fn stats(&self) -> DispatchStats {
        DispatchStats {
            requests: self.requests.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            max_batch: self.max_batch.load(Ordering::Relaxed),
        }
    }

    fn work(&self, store: &RedisStore) {
        loop {
            let batch: Vec<Job> = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                while queue.jobs.is_empty() {
                    if queue.closed {
                        return;
                    }
                    queue.idle += 1;
                    queue = wait(&self.ready, queue);
                    queue.idle -= 1;
                    queue.waking = queue.waking.saturating_sub(1);
                }
                let n = queue.jobs.len().min(MAX_BATCH);
                let batch = queue.jobs.drain(..n).collect();
                if !queue.jobs.is_empty() && queue.idle > queue.waking {
                    queue.waking += 1;
                    self.ready.notify_one();
                }
                batch
            };
            self.run(store, batch);
        }
    }

    fn run(&self, store: &RedisStore, batch: Vec<Job>) {
        self.requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut done: Vec<(Reply, Done)> = Vec::with_capacity(batch.len());
        let (hits, manys): (Vec<Job>, Vec<Job>) = batch
            .into_iter()
            .partition(|job| matches!(job.work, Work::Hit { .. }));
        if !hits.is_empty() {
            let refs: Vec<(&Limiter, &str, u64)> = hits
                .iter()
                .map(|job| match &job.work {
                    Work::Hit { limiter, key, cost } => (limiter.as_ref(), key.as_str(), *cost),
                    Work::Many { .. } => unreachable!("partitioned"),
                })
                .collect();
            let outcomes = store.hit_batch(&refs);
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.max_batch
                .fetch_max(refs.len() as u64, Ordering::Relaxed);
            drop(refs);
            for (job, outcome) in hits.into_iter().zip(outcomes) {
                let Work::Hit { limiter, cost, .. } = job.work else {
                    unreachable!("partitioned")
                };
                done.push((
                    job.reply,
                    Done::Hit {
                        outcome,
                        policy: job.policy,
                        capacity: limiter.limit(),
                        cost,
                    },
                ));
            }
        }
        for job in manys {
            let Work::Many { items } = &job.work else {
                unreachable!("partitioned")
            };
            let refs: Vec<(&Limiter, &str, u64)> = items
                .iter()
                .map(|(limiter, key, cost)| (limiter.as_ref(), key.as_str(), *cost))
                .collect();
            let outcome = store.hit_many(&refs);
            self.batches.fetch_add(1, Ordering::Relaxed);
            let limits = items
                .iter()
                .map(|(limiter, _, cost)| (limiter.limit(), *cost))
                .collect();
            done.push((
                job.reply,
                Done::Many {
                    outcome,
                    policy: job.policy,
                    limits,
                },
            ));
        }
        deliver(done);
    }
}

/// Hands finished requests to blocked callers, and to their loops' wakers with one signal per
/// loop.
fn deliver(done: Vec<(Reply, Done)>) {
    let mut futures: Vec<(Arc<Waker>, Py<PyAny>, Done)> = Vec::with_capacity(done.len());
    for (reply, item) in done {
        match reply {
            Reply::Blocking(slot) => slot.fill(item),
            Reply::Future { waker, future } => futures.push((waker, future, item)),
        }
    }
    while let Some((waker, future, first)) = futures.pop() {
        let mut items = vec![(future, first)];
        let mut rest = Vec::with_capacity(futures.len());
        for (other, future, item) in futures {
            if Arc::ptr_eq(&other, &waker) {
                items.push((future, item));
            } else {
                rest.push((other, future, item));
            }
        }
        futures = rest;
        waker.deliver(items);
    }
}

struct Pending {
    items: Vec<(Py<PyAny>, Done)>,
    /// A byte is on its way to the loop (no need to write another).
    armed: bool,
}

/// The completion side of one event loop: finished requests, and the socket pair that wakes
/// it (both ends live as long as any request in flight may still write: no EPIPE, ever).
pub struct Waker {
    pending: Mutex<Pending>,
    writer: UnixStream,
    reader: UnixStream,
}

impl Waker {
    fn deliver(&self, items: Vec<(Py<PyAny>, Done)>) {
        let signal = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.items.extend(items);
            !std::mem::replace(&mut pending.armed, true)
        };
        if signal {
            // Non-blocking: a full socket buffer means the loop is signalled already.
            let _ = (&self.writer).write(&[1]);
        }
    }
}

/// The loop side of a [`Waker`]: its `_drain` method is the loop's reader callback.
#[pyclass(module = "flux._flux", frozen)]
pub struct LoopWaker {
    inner: Arc<Waker>,
}

#[pymethods]
impl LoopWaker {
    /// Completes the futures of every finished request (called by the event loop).
    fn _drain(&self, py: Python<'_>) {
        let mut buf = [0u8; 64];
        loop {
            match (&self.inner.reader).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        let items = {
            let mut pending = self
                .inner
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            pending.armed = false;
            std::mem::take(&mut pending.items)
        };
        for (future, done) in items {
            let future = future.bind(py);
            // A cancelled caller no longer wants the result (the hit may have counted).
            match future.call_method0(intern!(py, "done")) {
                Ok(flag) if !flag.is_truthy().unwrap_or(true) => {}
                _ => continue,
            }
            let outcome = match done.into_py(py) {
                Ok(value) => future.call_method1(intern!(py, "set_result"), (value,)),
                Err(err) => {
                    future.call_method1(intern!(py, "set_exception"), (err.into_value(py),))
                }
            };
            if let Err(err) = outcome {
                err.write_unraisable(py, Some(future));
            }
        }
    }
}

/// One registered loop: a weak (or, for loops without weakref support, strong) reference and
/// its waker.
struct Entry {
    id: usize,
    /// The process generation it was made in (a forked child makes its own).
    generation: u64,
    event_loop: Py<PyAny>,
    weak: bool,
    waker: Py<LoopWaker>,
}

impl Entry {
    fn target<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        let object = self.event_loop.bind(py);
        if self.weak {
            let weak = object.cast::<PyWeakrefReference>().ok()?;
            pyo3::types::PyWeakrefMethods::upgrade(weak)
        } else {
            Some(object.clone())
        }
    }
}

/// Loops with a waker. Locked only with the GIL held and never across a call into Python
/// (which could switch threads and come back here).
static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The waker of `event_loop`, registered with it on first use.
fn waker_for(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Waker>> {
    let id = event_loop.as_ptr() as usize;
    {
        let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = generation();
        for entry in registry
            .iter()
            .filter(|e| e.id == id && e.generation == generation)
        {
            if entry.target(py).is_some_and(|t| t.is(event_loop)) {
                return Ok(entry.waker.get().inner.clone());
            }
        }
    }
    // Forget loops that are gone or closed (closing their sockets), then register this one.
    let old = std::mem::take(&mut *REGISTRY.lock().unwrap_or_else(PoisonError::into_inner));
    let mut kept = Vec::with_capacity(old.len() + 1);
    for entry in old {
        let live = entry.id != id
            && entry.target(py).is_some_and(|t| {
                !t.call_method0(intern!(py, "is_closed"))
                    .and_then(|closed| closed.is_truthy())
                    .unwrap_or(true)
            });
        if live {
            kept.push(entry);
        }
    }
    let (reader, writer) = UnixStream::pair()
        .and_then(|(r, w)| {
            r.set_nonblocking(true)?;
            w.set_nonblocking(true)?;
            Ok((r, w))
        })
        .map_err(|err| {
            PyRuntimeError::new_err(format!("flux: cannot create a socket pair: {err}"))
        })?;
    let fd = reader.as_raw_fd();
    let inner = Arc::new(Waker {
        pending: Mutex::new(Pending {
            items: Vec::new(),
            armed: false,
        }),
        writer,
        reader,
    });
    let waker = Py::new(
        py,
        LoopWaker {
            inner: inner.clone(),
        },
    )?;
    let drain = waker.bind(py).getattr(intern!(py, "_drain"))?;
    if let Err(err) = event_loop.call_method1(intern!(py, "add_reader"), (fd, drain)) {
        REGISTRY
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(kept);
        return Err(PyRuntimeError::new_err(format!(
            "flux: async Redis hits need an event loop that supports add_reader (asyncio's \
             selector loop, uvloop); this one does not ({err}). Call the blocking hit through \
             asyncio.to_thread instead."
        )));
    }
    let (reference, weak) = match PyWeakrefReference::new(event_loop) {
        Ok(weak) => (weak.into_any().unbind(), true),
        Err(_) => (event_loop.clone().unbind(), false),
    };
    kept.push(Entry {
        id,
        generation: generation(),
        event_loop: reference,
        weak,
        waker,
    });
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(kept);
    Ok(inner)
}

/// The running event loop (RuntimeError outside one, as asyncio says).
fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()
}

/// Queues `work` on `dispatcher` and returns the asyncio future of its result.
pub fn submit(
    py: Python<'_>,
    dispatcher: &Dispatcher,
    work: Work,
    policy: Policy,
) -> PyResult<Py<PyAny>> {
    let event_loop = running_loop(py)?;
    let waker = waker_for(py, &event_loop)?;
    let future = event_loop
        .call_method0(intern!(py, "create_future"))?
        .unbind();
    dispatcher.submit(Job {
        work,
        policy,
        reply: Reply::Future {
            waker,
            future: future.clone_ref(py),
        },
    });
    Ok(future)
}

/// An awaitable that is already done: what `ahit` returns when no I/O is needed (the embedded
/// store, explicit time). Awaiting it gives the value, or raises the error.
#[pyclass(module = "flux._flux")]
pub struct Ready {
    outcome: Option<PyResult<Py<PyAny>>>,
}

impl Ready {
    pub fn new(outcome: PyResult<Py<PyAny>>) -> Self {
        Ready {
            outcome: Some(outcome),
        }
    }

    pub fn of(py: Python<'_>, result: PyResult<RateLimitResult>) -> PyResult<Py<Ready>> {
        let outcome = result.and_then(|r| Ok(Py::new(py, r)?.into_any()));
        Py::new(py, Ready::new(outcome))
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&mut self) -> PyResult<Py<PyAny>> {
        match self.outcome.take() {
            Some(Ok(value)) => Err(PyStopIteration::new_err((value,))),
            Some(Err(err)) => Err(err),
            None => Err(PyStopIteration::new_err(())),
        }
    }

    /// Sends into the awaitable (the coroutine protocol): it completes at once.
    fn send(&mut self, _value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.__next__()
    }
}
