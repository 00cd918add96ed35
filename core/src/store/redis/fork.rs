//! A store's internals per process: a child forked after the store was made (gunicorn
//! `--preload`, multiprocessing, Celery prefork) must not use its parent's connections, which
//! are the parent's sockets. See docs/architecture.md, *Redis*.
//!
//! A process-wide generation number is bumped in the child right after a fork (by a face's
//! at-fork hook: [`after_fork_in_child`]). A store used in a newer generation builds fresh
//! internals and leaks the old ones on purpose: dropping them could block on a lock some
//! vanished thread of the parent held. The hit path reads three atomics and takes no lock, so
//! no lock of this file can be held across a fork by another thread.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Mutex;

/// Incremented in every child process right after a fork.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Tells every Redis store of this process that it is a forked child: each builds fresh
/// connections (and breaker, deny cache, counters) on its next use. Call it from an at-fork
/// hook in the child (the Python face registers one with `os.register_at_fork`); a C program
/// makes its own stores in the child instead.
pub fn after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// The current process generation (0 until the first [`after_fork_in_child`]).
pub fn fork_generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// A `T` made for the current process generation, remade by `make` in a newer one.
pub(crate) struct PerProcess<T> {
    current: AtomicPtr<T>,
    made_in: AtomicU64,
    /// Taken only to remake `T`, in a child, once.
    remaking: Mutex<()>,
}

impl<T: Send + Sync> PerProcess<T> {
    pub(crate) fn new(value: T) -> PerProcess<T> {
        PerProcess {
            current: AtomicPtr::new(Box::into_raw(Box::new(value))),
            made_in: AtomicU64::new(fork_generation()),
            remaking: Mutex::new(()),
        }
    }

    /// The value of this process, made by `make` first if this is a child that has not used
    /// it yet.
    #[inline]
    pub(crate) fn get(&self, make: impl FnOnce() -> T) -> &T {
        let now = fork_generation();
        if self.made_in.load(Ordering::Acquire) == now {
            // SAFETY: `current` is never freed before `self` is dropped (a replaced value is
            // leaked), and was published before `made_in` (Release/Acquire).
            return unsafe { &*self.current.load(Ordering::Acquire) };
        }
        self.remake(now, make)
    }

    #[cold]
    #[inline(never)]
    fn remake(&self, now: u64, make: impl FnOnce() -> T) -> &T {
        let _remaking = self
            .remaking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.made_in.load(Ordering::Acquire) != now {
            // The old value is the parent's: leaked, never dropped (see the module doc).
            self.current
                .store(Box::into_raw(Box::new(make())), Ordering::Release);
            self.made_in.store(now, Ordering::Release);
        }
        // SAFETY: as in `get`.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }
}

impl<T> Drop for PerProcess<T> {
    fn drop(&mut self) {
        // A value made in another generation belongs to a parent: leaked, as above.
        if *self.made_in.get_mut() == fork_generation() {
            // SAFETY: made by Box::into_raw, dropped once (we own `self` exclusively).
            drop(unsafe { Box::from_raw(*self.current.get_mut()) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_generation_remakes_the_value_once() {
        let value = PerProcess::new(1);
        assert_eq!(*value.get(|| unreachable!()), 1);
        after_fork_in_child();
        assert_eq!(*value.get(|| 2), 2);
        assert_eq!(*value.get(|| 3), 2);
    }
}
