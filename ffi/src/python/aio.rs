//! Async hits without serialising: concurrent `ahit` calls from any number of event loops are
//! pipelined onto shared Redis connections by the store's [`Dispatcher`] (`dispatcher.rs`),
//! and their futures are completed on the caller's loop. This file is the asyncio plumbing.
//!
//! - `ahit` (GIL held, < 1 µs): creates an asyncio future on the running loop and queues the
//!   request for the store's dispatcher. Nothing waits; the event loop goes on.
//! - The dispatcher's workers (no GIL, ever) send the pipelines and hand the outcomes to the
//!   loop's [`Waker`].
//! - The waker is a socket pair registered with `loop.add_reader`: a worker writes one byte
//!   (only when the loop is not already signalled), and the loop, in its own thread and
//!   holding the GIL anyway, sets the futures' results. Workers never take the GIL, so a busy
//!   event loop cannot stall them (taking the GIL from another thread waits up to the
//!   interpreter's 5 ms switch interval).
//!
//! Synchronous `hit`s from many threads use the same pipelines once more of them are in flight
//! than a store lets go straight to Redis (see `StoreHandle::enter`): those callers wait, GIL
//! released, on a [`Slot`]. One caller alone never takes that detour (it would add a thread
//! hand-off to every round trip).

use crate::python::dispatcher::{Deliver, Dispatcher, Done, Job, Slot, Work};
use crate::python::errors::to_py;
use crate::python::result::RateLimitResult;
use flux_core::store::redis::fork_generation as generation;
use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyWeakrefReference};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};

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

/// The dispatcher of a store, as the Python face runs it.
pub type PyDispatcher = Dispatcher<Reply>;

/// The result of a single hit (what a blocked synchronous caller gets).
pub fn hit_result(py: Python<'_>, done: Done) -> PyResult<RateLimitResult> {
    match done {
        Done::Hit(outcome) => outcome
            .map(|outcome| RateLimitResult::from_outcome(py, outcome))
            .map_err(to_py),
        Done::Many(_) => unreachable!("blocking callers send single hits"),
    }
}

/// The Python value of a finished request: a result, or a list of them.
fn into_py(done: Done, py: Python<'_>) -> PyResult<Py<PyAny>> {
    match done {
        Done::Hit(_) => Ok(Py::new(py, hit_result(py, done)?)?.into_any()),
        Done::Many(outcome) => {
            let outcome = outcome.map_err(to_py)?;
            let list = PyList::empty(py);
            for decision in outcome.decisions {
                list.append(Py::new(
                    py,
                    RateLimitResult::from_decision(py, decision, outcome.source),
                )?)?;
            }
            Ok(list.into_any().unbind())
        }
    }
}

impl Deliver for Reply {
    /// Hands finished requests to blocked callers, and to their loops' wakers with one signal
    /// per loop.
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
            let outcome = match into_py(done, py) {
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
pub fn submit(py: Python<'_>, dispatcher: &PyDispatcher, work: Work) -> PyResult<Py<PyAny>> {
    let event_loop = running_loop(py)?;
    let waker = waker_for(py, &event_loop)?;
    let future = event_loop
        .call_method0(intern!(py, "create_future"))?
        .unbind();
    dispatcher.submit(Job {
        work,
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
