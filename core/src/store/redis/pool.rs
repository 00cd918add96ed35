//! The connection pool: at most `pool_size` connections per store, opened on demand by the
//! caller that needs one, within that caller's own deadline.
//!
//! Why not r2d2: r2d2 starts three helper threads per pool, parked on `parking_lot` condvars,
//! as soon as the pool exists, and opens connections on them. A process that forks after
//! building a store (gunicorn `--preload`, multiprocessing, Celery prefork) copies
//! `parking_lot`'s global table of parked threads while the threads themselves vanish; glibc
//! then hands their stacks to the child's first new threads, whose thread-local entries in
//! that table are overwritten in place, and the child's next `parking_lot` thread spins
//! forever in `ThreadData::new`. Here nothing runs in the background and the only blocking
//! primitive is `std`'s futex-based `Condvar`, which keeps no global state. A connect also
//! counts against the hit's `timeout_ms` instead of adding a second one (docs/architecture.md,
//! "Redis store").

use super::connection::{Conn, Manager};
use redis::RedisError;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Connections of one store.
pub(crate) struct Pool {
    manager: Manager,
    size: usize,
    state: Mutex<State>,
    /// Signalled when a connection is returned or a slot for one frees up.
    freed: Condvar,
}

struct State {
    idle: Vec<Conn>,
    /// Connections that exist: idle, checked out, or being opened.
    open: usize,
    /// Callers waiting for a connection. `std`'s `notify_one` always makes a syscall, so a
    /// returned connection wakes someone only when someone waits (the common case is nobody).
    waiting: usize,
}

/// A checked-out connection; returned to the pool on drop (or dropped if broken).
pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Pool {
    /// A pool of at most `size` (≥ 1) connections opened by `manager`; none is opened yet.
    pub(crate) fn new(manager: Manager, size: usize) -> Pool {
        Pool {
            manager,
            size: size.max(1),
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                waiting: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// A connection by `deadline`: an idle one, else a new one while fewer than `size`
    /// exist (opened on this thread, within the time left), else the next one returned.
    pub(crate) fn get(&self, deadline: Instant) -> Result<Pooled<'_>, RedisError> {
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(self.pooled(conn));
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                let budget = deadline.saturating_duration_since(Instant::now());
                return match self.manager.connect(budget) {
                    Ok(conn) => Ok(self.pooled(conn)),
                    Err(err) => {
                        self.release_slot();
                        Err(err)
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("all {} pooled connections stayed busy", self.size),
                )));
            }
            state.waiting += 1;
            state = match self.freed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
            state.waiting -= 1;
        }
    }

    fn pooled(&self, conn: Conn) -> Pooled<'_> {
        Pooled {
            pool: self,
            conn: Some(conn),
        }
    }

    /// A panic while holding the lock leaves the state consistent (no step of ours panics
    /// half-way), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn release_slot(&self) {
        let mut state = self.lock();
        state.open -= 1;
        if state.waiting > 0 {
            self.freed.notify_one();
        }
    }
}

impl Deref for Pooled<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a pooled connection is present until dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.pool.manager.has_broken(&conn) {
            // Closed outside the lock: closing a socket may take a moment.
            drop(conn);
            self.pool.release_slot();
        } else {
            let mut state = self.pool.lock();
            state.idle.push(conn);
            if state.waiting > 0 {
                self.pool.freed.notify_one();
            }
        }
    }
}
