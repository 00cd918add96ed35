//! The embedded store: a sharded map from key to algorithm state, one lock per shard.
//!
//! Memory stays bounded without a background thread: before a shard grows its table it first
//! drops the keys that are back to full capacity (idle state carries no information), and with
//! `max_keys` set it then evicts the least recently used keys, so a flood of distinct keys
//! (rotating IPv6 addresses, say) cannot exhaust memory.
//!
//! Keys are stored as a 64-bit hash under a per-store random seed, not as strings: an idle key
//! costs 24 bytes of table plus one control byte, and no allocation per key. Two keys share
//! state only if their seeded hashes collide (about 1 in 3·10⁷ for a million live keys, and
//! not steerable by a client who does not know the seed).

use crate::algorithms::Algorithm;
use crate::{Clock, Decision, Error, Outcome, Result, Source};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::multi::{LockableStore, ShardLock};
use super::Store;
use crate::Nanos;
use parking_lot::MutexGuard;

/// Default number of shards: enough that threads rarely meet on one lock.
pub const DEFAULT_SHARDS: usize = 64;

/// Smallest table a shard sweeps before growing.
const MIN_SWEEP_AT: usize = 32;

/// The state of one key and when it was last used (a per-shard tick, for LRU eviction).
#[derive(Debug, Default)]
struct Entry<S> {
    state: S,
    touched: u32,
}

/// The keys are already uniformly distributed hashes: hashing them again would only cost time.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed");
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Table<S> = HashMap<u64, Entry<S>, BuildHasherDefault<PassThrough>>;

struct Shard<S> {
    table: Table<S>,
    /// Sweep idle keys before inserting when the table holds this many.
    sweep_at: usize,
    /// Monotonic use counter for LRU ordering.
    tick: u32,
}

/// Pads a shard to its own cache line so that two cores never fight over one line.
#[repr(align(128))]
struct Padded<T>(T);

/// A shard behind its lock, on its own cache line.
type LockedShard<S> = Padded<Mutex<Shard<S>>>;

/// The embedded store for one limit whose algorithm is `A`.
pub struct MemoryStore<A: Algorithm> {
    algorithm: A,
    clock: Arc<dyn Clock>,
    seed: ahash::RandomState,
    shards: Box<[LockedShard<A::State>]>,
    shard_shift: u32,
    /// Largest number of keys one shard keeps (`usize::MAX` when unbounded).
    shard_capacity: usize,
}

impl<A: Algorithm> MemoryStore<A> {
    /// A store for `algorithm`, reading time from `clock`, keeping at most about `max_keys`
    /// keys (None: unbounded, idle keys are still swept).
    pub fn new(algorithm: A, clock: Arc<dyn Clock>, max_keys: Option<usize>) -> Result<Self> {
        let shard_count = match max_keys {
            Some(0) => {
                return Err(Error::InvalidArgument(
                    "max_keys must be at least 1, got 0".into(),
                ))
            }
            // Keep at least ~64 keys per shard so that per-shard LRU approximates global LRU.
            Some(max) => (max / 64)
                .clamp(1, DEFAULT_SHARDS)
                .next_power_of_two()
                .min(DEFAULT_SHARDS),
            None => DEFAULT_SHARDS,
        };
        let shard_capacity = max_keys.map_or(usize::MAX, |max| max.div_ceil(shard_count));
        let shards = (0..shard_count)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    table: Table::default(),
                    sweep_at: MIN_SWEEP_AT,
                    tick: 0,
                }))
            })
            .collect();
        Ok(MemoryStore {
            algorithm,
            clock,
            seed: ahash::RandomState::new(),
            shards,
            // The top bits pick the shard; the table uses the low bits and its own tag bits.
            shard_shift: 64 - shard_count.trailing_zeros(),
            shard_capacity,
        })
    }

    /// The algorithm this store applies.
    pub fn algorithm(&self) -> &A {
        &self.algorithm
    }

    #[inline]
    fn locate(&self, key: &str) -> (u64, &Mutex<Shard<A::State>>) {
        let (index, hash) = self.shard_index(key);
        (hash, &self.shards[index].0)
    }

    #[inline]
    fn shard_index(&self, key: &str) -> (usize, u64) {
        let hash = self.seed.hash_one(key);
        // `checked_shr` because a single shard means a shift of 64.
        (
            hash.checked_shr(self.shard_shift).unwrap_or(0) as usize,
            hash,
        )
    }
}

impl<S> Shard<S> {
    fn next_tick(&mut self) -> u32 {
        if self.tick == u32::MAX {
            // Renumber from zero keeping the order; happens once per 4 billion uses.
            let mut ticks: Vec<u32> = self.table.values().map(|e| e.touched).collect();
            ticks.sort_unstable();
            ticks.dedup();
            for entry in self.table.values_mut() {
                entry.touched = ticks.binary_search(&entry.touched).unwrap_or(0) as u32;
            }
            self.tick = ticks.len() as u32;
        }
        self.tick += 1;
        self.tick
    }

    /// Drops idle keys; then, if still at `capacity`, the least recently used eighth.
    fn make_room(&mut self, capacity: usize, is_idle: impl Fn(&S) -> bool) {
        if self.table.len() >= self.sweep_at || self.table.len() >= capacity {
            self.table.retain(|_, entry| !is_idle(&entry.state));
            let live = self.table.len();
            self.sweep_at = (live * 2).max(MIN_SWEEP_AT);
            if self.table.capacity() > 4 * self.sweep_at {
                self.table.shrink_to(self.sweep_at);
            }
        }
        if self.table.len() >= capacity {
            let evict = (capacity / 8).max(1);
            let mut ticks: Vec<u32> = self.table.values().map(|e| e.touched).collect();
            let (_, &mut cutoff, _) = ticks.select_nth_unstable(evict - 1);
            self.table.retain(|_, entry| entry.touched > cutoff);
        }
    }
}

impl<A: Algorithm> Store for MemoryStore<A> {
    #[inline]
    fn hit(&self, key: &str, cost: u64) -> Result<Outcome> {
        let (hash, shard) = self.locate(key);
        let mut shard = shard.lock();
        // Read the clock under the lock so that hits on one key see time in order.
        let now = self.clock.now();
        let tick = shard.next_tick();
        if let Some(entry) = shard.table.get_mut(&hash) {
            entry.touched = tick;
            return Ok(decided(self.algorithm.hit(&mut entry.state, now, cost)));
        }
        shard.make_room(self.shard_capacity, |state| {
            self.algorithm.is_idle(state, now)
        });
        let mut entry = Entry {
            state: A::State::default(),
            touched: tick,
        };
        let decision = self.algorithm.hit(&mut entry.state, now, cost);
        shard.table.insert(hash, entry);
        Ok(decided(decision))
    }

    fn refund(&self, key: &str, cost: u64) -> Result<Outcome> {
        let (hash, shard) = self.locate(key);
        let mut shard = shard.lock();
        let now = self.clock.now();
        let Some(entry) = shard.table.get_mut(&hash) else {
            // Never seen (or swept, or reset): nothing to give back, and no state to create.
            return Ok(decided(self.algorithm.peek(&A::State::default(), now)));
        };
        self.algorithm.refund(&mut entry.state, now, cost);
        let decision = self.algorithm.peek(&entry.state, now);
        if self.algorithm.is_idle(&entry.state, now) {
            // Back at full capacity: the state says nothing a fresh key's would not, so the
            // key goes now rather than at the next sweep (as Redis deletes such a key).
            shard.table.remove(&hash);
        }
        Ok(decided(decision))
    }

    fn peek(&self, key: &str) -> Result<Outcome> {
        let (hash, shard) = self.locate(key);
        let shard = shard.lock();
        let now = self.clock.now();
        let fresh = A::State::default();
        let state = shard.table.get(&hash).map_or(&fresh, |entry| &entry.state);
        Ok(decided(self.algorithm.peek(state, now)))
    }

    fn reset(&self, key: &str) -> Result<()> {
        let (hash, shard) = self.locate(key);
        shard.lock().table.remove(&hash);
        Ok(())
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.0.lock().table.len())
            .sum()
    }

    fn lockable(&self) -> Option<&dyn LockableStore> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    fn sweep(&self) -> usize {
        let now = self.clock.now();
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            let before = shard.table.len();
            shard
                .table
                .retain(|_, entry| !self.algorithm.is_idle(&entry.state, now));
            dropped += before - shard.table.len();
        }
        dropped
    }
}

impl<A: Algorithm> LockableStore for MemoryStore<A> {
    fn locate_key(&self, key: &str) -> (usize, u64) {
        self.shard_index(key)
    }

    fn lock_shard(&self, index: usize) -> Box<dyn ShardLock + '_> {
        let shard = self.shards[index].0.lock();
        let now = self.clock.now();
        Box::new(MemoryShardLock {
            store: self,
            shard,
            now,
            scratch: Vec::new(),
        })
    }
}

/// A decision of the embedded store.
#[inline(always)]
fn decided(decision: Decision) -> Outcome {
    Outcome::new(decision, Source::Memory)
}

/// One locked shard of a [`MemoryStore`] during a multi-limit hit.
struct MemoryShardLock<'a, A: Algorithm> {
    store: &'a MemoryStore<A>,
    shard: MutexGuard<'a, Shard<A::State>>,
    now: Nanos,
    /// Tentative states of the keys hit so far, written back by `commit`.
    scratch: Vec<(u64, A::State)>,
}

impl<A: Algorithm> ShardLock for MemoryShardLock<'_, A> {
    fn try_hit(&mut self, hash: u64, cost: u64) -> Decision {
        let position = self.scratch.iter().position(|(h, _)| *h == hash);
        let mut state = match position {
            Some(i) => self.scratch[i].1.clone(),
            None => self
                .shard
                .table
                .get(&hash)
                .map(|e| e.state.clone())
                .unwrap_or_default(),
        };
        let decision = self.store.algorithm.hit(&mut state, self.now, cost);
        if decision.allowed {
            match position {
                Some(i) => self.scratch[i].1 = state,
                None => self.scratch.push((hash, state)),
            }
        }
        decision
    }

    fn untaken(&self, hash: u64, _cost: u64) -> Decision {
        let fresh = A::State::default();
        let state = self.shard.table.get(&hash).map_or(&fresh, |e| &e.state);
        let seen = self.store.algorithm.peek(state, self.now);
        Decision {
            allowed: true,
            retry_after: 0,
            ..seen
        }
    }

    fn commit(&mut self) {
        let now = self.now;
        for (hash, state) in std::mem::take(&mut self.scratch) {
            let tick = self.shard.next_tick();
            if let Some(entry) = self.shard.table.get_mut(&hash) {
                *entry = Entry {
                    state,
                    touched: tick,
                };
                continue;
            }
            let algorithm = &self.store.algorithm;
            self.shard
                .make_room(self.store.shard_capacity, |s| algorithm.is_idle(s, now));
            self.shard.table.insert(
                hash,
                Entry {
                    state,
                    touched: tick,
                },
            );
        }
    }
}
