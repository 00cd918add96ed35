//! The pipelining dispatcher of a Redis store: requests queued by any number of callers are
//! sent by a few I/O threads, everything queued at once going as one pipeline
//! (`RedisStore::hit_batch`: one round trip, in which Redis's batch script decides up to 128
//! hits per EVALSHA, each as if alone). While one worker waits on a round trip the next takes
//! what has queued since, so round trips overlap and their number stays far below the number
//! of hits. A multi-limit hit (one atomic script) is sent on its own by a worker.
//!
//! No Python here: the core decides every outcome (failure policy included) and the caller's
//! [`Deliver`] hands them over (`aio.rs` to asyncio futures and blocked threads).

use flux_core::store::redis::RedisStore;
use flux_core::{Error, Limiter, MultiOutcome, Outcome};
use std::collections::VecDeque;
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
    /// Gives `cost` back to `key` (one script, one round trip); answered as a hit is.
    Refund {
        limiter: Arc<Limiter>,
        key: String,
        cost: u64,
    },
}

/// A finished request: what the core answered.
pub enum Done {
    Hit(Result<Outcome, Error>),
    Many(Result<MultiOutcome, Error>),
}

/// Hands finished requests to whoever waits for them (called on a worker thread).
pub trait Deliver: Send + Sized + 'static {
    fn deliver(finished: Vec<(Self, Done)>);
}

/// A queued request: the work and whom to tell.
pub struct Job<R> {
    pub work: Work,
    pub reply: R,
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

    pub fn fill(&self, done: Done) {
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

struct Queue<R> {
    jobs: VecDeque<Job<R>>,
    /// Workers waiting for work.
    idle: usize,
    /// Of those, how many were notified and have not woken yet (no need to notify again:
    /// a wake-up costs a system call, more than queuing a request).
    waking: usize,
    closed: bool,
}

/// The queue of async requests of one store and the worker threads that send them.
pub struct Dispatcher<R> {
    queue: Mutex<Queue<R>>,
    ready: Condvar,
    requests: AtomicU64,
    batches: AtomicU64,
    max_batch: AtomicU64,
}

impl<R: Deliver> Dispatcher<R> {
    /// Starts `workers` threads sending requests through `store`.
    pub fn start(store: RedisStore, workers: usize) -> Arc<Dispatcher<R>> {
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
    pub fn submit(&self, job: Job<R>) {
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
            let batch: Vec<Job<R>> = {
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

    fn run(&self, store: &RedisStore, batch: Vec<Job<R>>) {
        self.requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut done: Vec<(R, Done)> = Vec::with_capacity(batch.len());
        let (hits, others): (Vec<Job<R>>, Vec<Job<R>>) = batch
            .into_iter()
            .partition(|job| matches!(job.work, Work::Hit { .. }));
        if !hits.is_empty() {
            let refs: Vec<(&Limiter, &str, u64)> = hits
                .iter()
                .map(|job| match &job.work {
                    Work::Hit { limiter, key, cost } => (limiter.as_ref(), key.as_str(), *cost),
                    Work::Many { .. } | Work::Refund { .. } => unreachable!("partitioned"),
                })
                .collect();
            let outcomes = store.hit_batch(&refs);
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.max_batch
                .fetch_max(refs.len() as u64, Ordering::Relaxed);
            drop(refs);
            for (job, outcome) in hits.into_iter().zip(outcomes) {
                done.push((job.reply, Done::Hit(outcome)));
            }
        }
        for job in others {
            let finished = match &job.work {
                Work::Many { items } => {
                    let refs: Vec<(&Limiter, &str, u64)> = items
                        .iter()
                        .map(|(limiter, key, cost)| (limiter.as_ref(), key.as_str(), *cost))
                        .collect();
                    // The core checks that every limit is on one store and applies their
                    // policies.
                    Done::Many(flux_core::hit_many(&refs))
                }
                Work::Refund { limiter, key, cost } => {
                    Done::Hit(limiter.refund_outcome(key, *cost))
                }
                Work::Hit { .. } => unreachable!("partitioned"),
            };
            self.batches.fetch_add(1, Ordering::Relaxed);
            done.push((job.reply, finished));
        }
        R::deliver(done);
    }
}
