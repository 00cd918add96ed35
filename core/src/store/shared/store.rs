//! The `Store` over a region: key hashing, the per-limit view of the shared slot table.

use super::codec::{
    Codec, FixedWindowCodec, GcraCodec, LeakyCodec, SlidingWindowCodec, TokenCodec,
};
use super::region::{default_path, Region, Slot};
use super::slots::{self, backoff, Env, SlotCell, Step, BUCKET, PENDING};
use crate::algorithms::Algorithm;
use crate::store::Store;
use crate::{AlgorithmKind, Clock, Decision, Error, Outcome, Quota, Result, Source};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use xxhash_rust::xxh3::xxh3_128_with_seed;

/// A shared-memory region that limits live in: every process on the machine that opens the
/// same path shares the same limits, exactly.
///
/// Cheap to clone (an `Arc`); open it once per process and make every limit from it.
#[derive(Clone)]
pub struct SharedRegion {
    region: Arc<Region>,
}

/// What a region holds now (counted by a scan of every slot: for monitoring, not hot paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStats {
    /// The region file.
    pub path: PathBuf,
    /// Slots: the most keys held at once, every limit of the region together.
    pub slots: usize,
    /// Keys held now (idle keys not yet reused included).
    pub live: usize,
    /// Claims in progress (or left by a killed process, until reused).
    pub pending: usize,
    /// Live keys evicted, least recently used first, to make room for new keys, since the
    /// region was created (reuse of keys back at full capacity is not counted).
    pub evictions: u64,
}

impl SharedRegion {
    /// Opens the region at `path`, creating it (mode 0600) with room for `max_keys` keys
    /// (None: [`super::DEFAULT_MAX_KEYS`]) if it does not exist. An existing region keeps its
    /// size; asking for another `max_keys` than it has is an error.
    pub fn open(path: impl AsRef<Path>, max_keys: Option<usize>) -> Result<SharedRegion> {
        Ok(SharedRegion {
            region: Arc::new(Region::open(path.as_ref(), max_keys)?),
        })
    }

    /// Opens the region named `name` at its default path (see [`default_path`]).
    pub fn open_named(name: &str, max_keys: Option<usize>) -> Result<SharedRegion> {
        SharedRegion::open(default_path(name), max_keys)
    }

    /// The region file.
    pub fn path(&self) -> &Path {
        self.region.path()
    }

    /// Counts what the region holds now.
    pub fn stats(&self) -> SharedStats {
        let (mut live, mut pending) = (0, 0);
        for slot in self.region.slots() {
            let ident = slots::ident_of(slot.load());
            if ident & PENDING != 0 {
                pending += 1;
            } else if ident != 0 {
                live += 1;
            }
        }
        SharedStats {
            path: self.region.path().to_path_buf(),
            slots: self.region.slot_count(),
            live,
            pending,
            evictions: self.region.header().evictions.load(Ordering::Relaxed),
        }
    }

    /// Puts every key of every limit of the region back to full capacity (empties its live
    /// slots); returns how many keys were held. Safe while other processes hit: each of their
    /// hits lands wholly before the clear of its slot or finds the key fresh. The eviction
    /// count is kept (it counts since the region was created).
    pub fn clear(&self) -> usize {
        self.region.slots().chunks(BUCKET).map(slots::clear).sum()
    }

    /// The store of one limit (`quota`, `kind`) whose keys are named under `prefix`: limits of
    /// the same prefix and algorithm share their keys' state, in every process.
    ///
    /// Errors: sliding_log (refused: its state does not fit a slot), and sliding_window limits
    /// too large for a 64-bit state; both messages name the store and the algorithm.
    pub fn store(
        &self,
        quota: &Quota,
        kind: AlgorithmKind,
        prefix: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Box<dyn Store>> {
        fn make<C: Codec>(
            region: &SharedRegion,
            quota: &Quota,
            kind: AlgorithmKind,
            prefix: &str,
            clock: Arc<dyn Clock>,
        ) -> Result<Box<dyn Store>> {
            let named = [
                &[kind as u8][..],
                &(prefix.len() as u64).to_le_bytes(),
                prefix.as_bytes(),
            ]
            .concat();
            let seed = region.region.header().seed();
            let (key_seed, limit_tag) = limit_hash(&named, seed);
            Ok(Box::new(SharedStore {
                codec: C::new(quota)?,
                region: region.region.clone(),
                clock,
                kind,
                key_seed,
                limit_tag,
                buckets: (region.region.slot_count() / BUCKET) as u64,
            }))
        }
        match kind {
            AlgorithmKind::Gcra => make::<GcraCodec>(self, quota, kind, prefix, clock),
            AlgorithmKind::TokenBucket => make::<TokenCodec>(self, quota, kind, prefix, clock),
            AlgorithmKind::LeakyBucket => make::<LeakyCodec>(self, quota, kind, prefix, clock),
            AlgorithmKind::FixedWindow => {
                make::<FixedWindowCodec>(self, quota, kind, prefix, clock)
            }
            AlgorithmKind::SlidingWindow => {
                make::<SlidingWindowCodec>(self, quota, kind, prefix, clock)
            }
            AlgorithmKind::SlidingLog => Err(Error::InvalidArgument(
                "the shared store does not support sliding_log: its state is a log of up to N \
                 timestamps per key, which does not fit a shared slot of fixed size; use \
                 sliding_window (an O(1) approximation) or gcra, or the memory or Redis store \
                 for sliding_log"
                    .into(),
            )),
        }
    }
}

/// The clock of limits on a shared region when none is given: the kernel's wall clock, read
/// on every hit.
///
/// Every process of the region must read one timeline: [`crate::SystemClock`] anchors each
/// process's own monotonic clock once, so two processes disagree by a few microseconds, and a
/// hit stamped before the state another process wrote is decided as if it came later (a
/// bucket algorithm then sees its own tolerance shrink by the difference). CLOCK_REALTIME is
/// the same for every process of the machine (as Redis's TIME is for the Redis store); it can
/// be stepped by an administrator or NTP, which the algorithms absorb (a step back is decided
/// as a clock that stood still, a step forward refills early), and it survives a reboot, unlike
/// CLOCK_MONOTONIC, for a region kept on disk.
#[derive(Debug, Default, Clone, Copy)]
pub struct SharedClock;

impl Clock for SharedClock {
    /// `clock_gettime(CLOCK_REALTIME)` called directly (the vDSO, no system call where the
    /// kernel's clock source allows): `SystemTime::now()` reads the same clock, then pays for a
    /// `Result` and a 128-bit nanosecond conversion on every hit. A time before the epoch (a
    /// badly set clock) reads as 0, as it did through `SystemTime`.
    #[inline]
    fn now(&self) -> crate::Nanos {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec; CLOCK_REALTIME always exists.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        if rc != 0 || now.tv_sec < 0 {
            return 0;
        }
        (now.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(now.tv_nsec as u64)
    }
}

/// The two per-limit constants of the key hash, from the region's secret seed and `named`
/// (the algorithm, the prefix's length and the prefix): the seed a key is hashed with, and a
/// word mixed into its tag. Two independent 64-bit values, so keys of two limits could only
/// share state if both collided (about 2⁻¹²⁸ per pair of limits), besides the per-key
/// 2⁻⁶³ chance of any two keys of one bucket.
fn limit_hash(named: &[u8], seed: u64) -> (u64, u64) {
    let both = xxh3_128_with_seed(named, seed);
    ((both >> 64) as u64, both as u64)
}

/// One limit's view of a region.
struct SharedStore<C: Codec> {
    codec: C,
    region: Arc<Region>,
    clock: Arc<dyn Clock>,
    kind: AlgorithmKind,
    /// The seed of this limit's key hash (see [`limit_hash`]).
    key_seed: u64,
    /// Mixed into every tag of this limit (see [`limit_hash`]).
    limit_tag: u64,
    buckets: u64,
}

/// `at` rounded up to the next 2²⁰ ns (about a millisecond). `idle_at` is a hint that must
/// never be early, so rounding up is safe; it lets most hits of a hot key find the hint already
/// high enough and skip its read-modify-write, at the cost of reusing an idle slot up to a
/// millisecond later.
#[inline]
fn coarse(at: u64) -> u64 {
    const GRAIN: u64 = (1 << 20) - 1;
    at.checked_add(GRAIN).map_or(u64::MAX, |at| at & !GRAIN)
}

/// The process's side of the protocol.
struct ProcessEnv<'a> {
    region: &'a Region,
    now: u64,
}

/// Claims in flight at once must carry distinct nonces: a random per-process start (distinct
/// across processes, pid namespaces included) plus a per-process counter.
fn next_nonce() -> u64 {
    static SALT: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let salt = *SALT.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    });
    salt.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl Env for ProcessEnv<'_> {
    fn nonce(&self) -> u64 {
        next_nonce()
    }
    fn pause(&self, round: u32) {
        backoff(round);
    }
    fn patience(&self) -> u32 {
        // About a few milliseconds of yielding; CLAIM_TIMEOUT usually decides first.
        2_000
    }
    fn evicted(&self) {
        self.region.evicted(self.now);
    }
}

impl<C: Codec> SharedStore<C> {
    /// The key's bucket, where to start probing it, and its tag.
    ///
    /// The hash is xxh3-128 (a fixed, documented algorithm: every build and language that links
    /// the core computes the same) of the key alone, seeded with this limit's seed, which is
    /// itself derived from the region's random seed, the algorithm and the prefix
    /// ([`limit_hash`]): hashing the key alone spares a copy of prefix and key into one buffer
    /// on every hit. The tag keeps 63 bits of the high half (mixed with the limit's tag word);
    /// the bucket and the start come from the low half (its high bits by a multiply-shift,
    /// which needs no division, and its low bits). So two distinct keys share state only if
    /// they agree on 63 bits and a bucket: about 2⁻⁶³ per pair of keys in one bucket, and not
    /// steerable by a client who cannot read the seed (the file is 0600).
    #[inline]
    fn locate(&self, key: &str) -> (&[Slot], usize, u64) {
        let hash = xxh3_128_with_seed(key.as_bytes(), self.key_seed);
        let (high, low) = ((hash >> 64) as u64, hash as u64);
        let bucket = ((u128::from(low) * u128::from(self.buckets)) >> 64) as usize;
        let start = (low % BUCKET as u64) as usize;
        let slots = &self.region.slots()[bucket * BUCKET..(bucket + 1) * BUCKET];
        (slots, start, slots::tag_of(high ^ self.limit_tag))
    }

    fn env(&self, now: u64) -> ProcessEnv<'_> {
        ProcessEnv {
            region: &self.region,
            now,
        }
    }

    /// The error of a state that does not fit its word.
    fn unencodable(&self, now: u64) -> Error {
        Error::Store(format!(
            "shared store at {}: the {} state at time {now} ns does not fit its 64-bit \
             encoding (times after the year 2262 are not supported)",
            self.region.path().display(),
            self.kind
        ))
    }

    fn state(&self, word: Option<u64>, now: u64) -> <C::A as Algorithm>::State {
        word.map_or_else(Default::default, |w| self.codec.decode(w, now))
    }
}

impl<C: Codec> Store for SharedStore<C> {
    #[inline]
    fn hit(&self, key: &str, cost: u64) -> Result<Outcome> {
        let (bucket, start, tag) = self.locate(key);
        let now = self.clock.now();
        let mut unencodable = false;
        let decision = slots::update(bucket, start, tag, now, &self.env(now), |word| {
            let at = word.map_or(now, |w| self.codec.decide_at(w, now));
            let mut state = self.state(word, at);
            let decision = self.codec.algorithm().hit(&mut state, at, cost);
            if !decision.allowed {
                return Step::Keep(decision);
            }
            match self.codec.encode(&state) {
                Some(encoded) => Step::Write {
                    state: encoded,
                    idle_at: coarse(self.codec.idle_at(&state)),
                    out: decision,
                },
                None => {
                    unencodable = true;
                    Step::Keep(decision)
                }
            }
        });
        if unencodable {
            return Err(self.unencodable(now));
        }
        Ok(Outcome::new(decision, Source::Shared))
    }

    /// One CAS like a hit (see slots.rs): a process killed mid-refund leaves the old state or
    /// the refunded one. A key with no slot, or an idle one, is kept as it is (no slot is
    /// claimed for it). The slot's `idle_at` hint is only ever raised, so after a refund it
    /// may stay later than the truth: that merely delays the slot's reuse, the safe side.
    fn refund(&self, key: &str, cost: u64) -> Result<Outcome> {
        let (bucket, start, tag) = self.locate(key);
        let now = self.clock.now();
        let algorithm = self.codec.algorithm();
        let mut unencodable = false;
        let decision = slots::update(bucket, start, tag, now, &self.env(now), |word| {
            let Some(word) = word else {
                return Step::Keep(algorithm.peek(&Default::default(), now));
            };
            let at = self.codec.decide_at(word, now);
            let mut state = self.codec.decode(word, at);
            if algorithm.is_idle(&state, at) {
                return Step::Keep(algorithm.peek(&state, at));
            }
            algorithm.refund(&mut state, at, cost);
            let out = algorithm.peek(&state, at);
            match self.codec.encode(&state) {
                Some(encoded) => Step::Write {
                    state: encoded,
                    idle_at: coarse(self.codec.idle_at(&state)),
                    out,
                },
                None => {
                    unencodable = true;
                    Step::Keep(out)
                }
            }
        });
        if unencodable {
            return Err(self.unencodable(now));
        }
        Ok(Outcome::new(decision, Source::Shared))
    }

    fn peek(&self, key: &str) -> Result<Outcome> {
        let (bucket, start, tag) = self.locate(key);
        let now = self.clock.now();
        let word = slots::read(bucket, start, tag);
        let at = word.map_or(now, |w| self.codec.decide_at(w, now));
        Ok(Outcome::new(
            self.codec.algorithm().peek(&self.state(word, at), at),
            Source::Shared,
        ))
    }

    fn try_hit(&self, key: &str, cost: u64) -> Option<Result<Decision>> {
        let (bucket, start, tag) = self.locate(key);
        let now = self.clock.now();
        let word = slots::read(bucket, start, tag);
        let at = word.map_or(now, |w| self.codec.decide_at(w, now));
        let mut state = self.state(word, at);
        Some(Ok(self.codec.algorithm().hit(&mut state, at, cost)))
    }

    fn reset(&self, key: &str) -> Result<()> {
        let (bucket, start, tag) = self.locate(key);
        slots::remove(bucket, start, tag);
        Ok(())
    }

    /// Keys held in the whole region (every limit that uses it).
    fn len(&self) -> usize {
        self.region
            .slots()
            .iter()
            .filter(|slot| {
                let ident = slots::ident_of(slot.load());
                ident != 0 && ident & PENDING == 0
            })
            .count()
    }

    /// Frees every slot of the region back at full capacity (whatever its limit: `idle_at`
    /// tells without knowing the algorithm).
    fn sweep(&self) -> usize {
        let now = self.clock.now();
        self.region
            .slots()
            .chunks(BUCKET)
            .map(|bucket| slots::sweep(bucket, now))
            .sum()
    }

    fn name(&self) -> &'static str {
        "shared"
    }
}
