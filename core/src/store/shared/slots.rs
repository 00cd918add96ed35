//! The slot table's protocol: finding a key's slot, claiming one for a new key, updating a
//! key's state, all by compare-and-swap on one 128-bit word per slot.
//!
//! # The word
//!
//! Each slot's 128-bit word holds `ident` (high 64 bits) and `state` (low 64 bits):
//!
//! | ident                  | state                         | meaning                          |
//! |------------------------|-------------------------------|----------------------------------|
//! | 0                      | 0                             | empty                            |
//! | tag (bit 63 clear)     | the algorithm's encoded state | a live key                       |
//! | PENDING \| tag         | a nonce unique to the claim   | a claim in progress for that key |
//!
//! Because a key's identity and its whole state are one word, a hit is one CAS from the word it
//! read to the word it computed: a process killed at any instant has either done that CAS or
//! not, and there is no lock to leave held. The CAS also makes a hit immune to a slot being
//! evicted and reused under it: the CAS only succeeds if the slot still holds this key with
//! exactly the state the decision was computed from, whatever happened in between.
//!
//! # Where a key lives
//!
//! A key hashes to one bucket of [`BUCKET`] consecutive slots and may live in any slot of it.
//! The invariant is: **at most one live slot per key in its bucket**. A hit uses that slot;
//! a key with no slot claims one in three CASes, each of which a crash can interrupt safely:
//!
//! 1. Turn a victim slot (empty, a stale claim, a key back at full capacity, or else the least
//!    recently used key of the bucket: approximate LRU over the bucket) into `PENDING|tag`
//!    with a fresh nonce.
//! 2. Re-scan the bucket. Another live slot of the key means a concurrent claim finished
//!    first: abandon ours (CAS back to empty) and use that one. Another pending claim of the
//!    key: the claim in the lower slot index has priority; the higher one is abandoned (by its
//!    owner, or killed by the lower one's owner with a CAS to empty).
//! 3. Finalize: CAS `PENDING|tag, nonce` into `tag, state after this first hit`. It fails if
//!    anyone killed or evicted the claim in between; the claimer then starts over.
//!
//! Why two claims of one key can't both finalize: say X finalizes before Y. Y's re-scan read
//! X's slot either after X finalized (Y sees a live slot and abandons), while X was pending
//! (the lower index wins and the other is killed or abandons), or before X's claim existed;
//! in that last case X's own re-scan came later and saw Y pending, and again the lower index
//! wins. The model check in core/tests/shared_loom.rs explores these interleavings.
//!
//! A claim left pending by a killed process blocks nobody for long: a lookup that finds a
//! pending claim of its own key waits (spinning, then yielding) until it is finalized, but only
//! while the claim is fresh (its slot's `used` time within [`CLAIM_TIMEOUT`] and the waiter's
//! patience not exhausted); a stale claim is killed by CAS like any other. Killing a claim
//! whose owner was only slow is safe: its finalizing CAS fails and it starts over.
//!
//! # The side words
//!
//! `used` (last use, for LRU and claim staleness) and `idle_at` (when the state is back to full
//! capacity, so that any process can reuse the slot without knowing the slot's algorithm)
//! are plain atomics next to the word, not part of the CAS. They are hints that may only err on
//! the safe side: `idle_at` is raised *before* each state CAS, so it is never earlier than the
//! true time the state goes idle (a failed CAS leaves it later than needed, which only delays
//! reuse), and a wrong `used` only makes the LRU choice less accurate: hits record it to about
//! 16 µs ([`TOUCH_GRAIN`]), so that a hot key's denied hits write nothing.

use std::hint::spin_loop;

/// Slots per bucket: the window in which a key may live and the set over which LRU is judged.
pub const BUCKET: usize = 16;

/// The ident bit marking a claim in progress.
pub const PENDING: u64 = 1 << 63;

/// How long a claim may stay pending before others may kill it (nanoseconds). A claim is a
/// few hundred nanoseconds of straight-line code; only a dead or long-descheduled process
/// exceeds this, and killing the latter's claim is safe (it retries).
pub const CLAIM_TIMEOUT: u64 = 10_000_000;

/// How far behind a live key's `used` may fall before a hit records a new one (see
/// [`SlotCell::touch`]): 2¹⁴ ns, about 16 µs. Small enough that a key hit at least that often
/// always ranks as recent: evicting it would take all [`BUCKET`] slots of its bucket claimed
/// within those 16 µs; large enough that a hot key's slot is written at most once per 16 µs
/// per process, where a hit costs well under 1 µs.
pub const TOUCH_GRAIN: u64 = 1 << 14;

/// The 128-bit word of an empty slot.
pub const EMPTY: u128 = 0;

/// Packs ident and state into one slot word.
#[inline]
pub fn word(ident: u64, state: u64) -> u128 {
    ((ident as u128) << 64) | state as u128
}

/// The ident half of a slot word.
#[inline]
pub fn ident_of(word: u128) -> u64 {
    (word >> 64) as u64
}

/// The state half of a slot word.
#[inline]
pub fn state_of(word: u128) -> u64 {
    word as u64
}

/// A tag for a key hash: 63 bits, never 0 (0 is the empty ident).
#[inline]
pub fn tag_of(hash: u64) -> u64 {
    let tag = hash & !PENDING;
    if tag == 0 {
        1
    } else {
        tag
    }
}

/// One slot as the protocol sees it (the mapped region's slot, or a model's).
pub trait SlotCell {
    /// The slot's 128-bit word.
    fn load(&self) -> u128;
    /// CAS of the slot's word; `Err` carries the word found.
    fn compare_exchange(&self, current: u128, new: u128) -> Result<u128, u128>;
    /// When the slot was last used (or claimed).
    fn used(&self) -> u64;
    /// Records a use (or a claim) at `now`.
    fn set_used(&self, now: u64);
    /// Records a hit's use at `now`, only when `used` is [`TOUCH_GRAIN`] or more behind: a
    /// hot key's denied hits then only read its slot, and processes hammering one key do not
    /// pass its cache line back and forth (2 Python processes on one hot key: together
    /// 0.93x one process alone when every hit stored `used`, 1.9x with this). `used` ranks
    /// live keys for the LRU, which 16 µs do not change; a claim's freshness is `set_used`,
    /// exact.
    #[inline]
    fn touch(&self, now: u64) {
        if now.saturating_sub(self.used()) >= TOUCH_GRAIN {
            self.set_used(now);
        }
    }
    /// When the slot's state is back to full capacity (a conservative hint).
    fn idle_at(&self) -> u64;
    /// Sets `idle_at` (a new key's claim).
    fn set_idle_at(&self, at: u64);
    /// Raises `idle_at` to at least `at` (a hit on a live key).
    fn raise_idle_at(&self, at: u64);
}

/// What the protocol needs from its surroundings.
pub trait Env {
    /// A nonce no other claim in flight uses.
    fn nonce(&self) -> u64;
    /// Waits a little before looking again at a claim in progress.
    fn pause(&self, round: u32);
    /// How many pauses a waiter spends on a fresh claim before treating it as stale.
    fn patience(&self) -> u32;
    /// Counts the eviction of a live key that was not back to full capacity.
    fn evicted(&self);
}

/// What applying a hit (or any update) to a state gives.
pub enum Step<T> {
    /// Nothing to write (a denied hit, a peek): return `T`.
    Keep(T),
    /// Write `state` (idle from `idle_at` on), then return `T`.
    Write { state: u64, idle_at: u64, out: T },
}

enum Found {
    /// The key's live slot and the word read from it.
    Live(usize, u128),
    /// The key has no slot.
    Absent,
    /// A fresh claim of the key is in progress: look again shortly.
    Wait,
}

/// Slot indices of a bucket in probe order, starting at `start`: `start..len` then `0..start`
/// (the same order as `(start + i) % len`, without a division per slot: a compare and a
/// conditional subtraction, which a chained iterator's state machine would not beat).
#[inline]
fn probe(len: usize, start: usize) -> impl Iterator<Item = usize> {
    let start = if start < len { start } else { start % len };
    (0..len).map(move |i| {
        let at = start + i;
        if at >= len {
            at - len
        } else {
            at
        }
    })
}

fn is_stale<S: SlotCell>(slot: &S, now: u64, waited: u32, patience: u32) -> bool {
    waited >= patience || now.saturating_sub(slot.used()) > CLAIM_TIMEOUT
}

/// Looks for `tag`'s slot; kills stale claims of it on the way. Inlined: it is the first thing
/// every hit does, and usually ends at its first slot.
#[inline]
fn find<S: SlotCell>(
    bucket: &[S],
    start: usize,
    tag: u64,
    now: u64,
    waited: u32,
    patience: u32,
) -> Found {
    let mut pending = false;
    for i in probe(bucket.len(), start) {
        let slot = &bucket[i];
        let current = slot.load();
        let ident = ident_of(current);
        if ident == tag {
            return Found::Live(i, current);
        }
        if ident == PENDING | tag {
            if is_stale(slot, now, waited, patience) {
                // A claim whose owner died (or stalled): free it. Failure means the slot
                // changed (finalized, killed, reused): the next look sees what it became.
                let _ = slot.compare_exchange(current, EMPTY);
            }
            pending = true;
        }
    }
    if pending {
        Found::Wait
    } else {
        Found::Absent
    }
}

/// Applies `apply` to `tag`'s state atomically (claiming a slot if the key has none and `apply`
/// writes), and returns what `apply` returned for the state it was finally applied to.
///
/// `apply(None)` is asked for a key with no slot (fresh state); it may run several times when a
/// CAS loses a race, and must be a pure function of its argument.
pub fn update<S: SlotCell, E: Env, T>(
    bucket: &[S],
    start: usize,
    tag: u64,
    now: u64,
    env: &E,
    mut apply: impl FnMut(Option<u64>) -> Step<T>,
) -> T {
    let mut waited = 0;
    loop {
        match find(bucket, start, tag, now, waited, env.patience()) {
            Found::Live(index, mut current) => {
                let slot = &bucket[index];
                loop {
                    match apply(Some(state_of(current))) {
                        Step::Keep(out) => {
                            slot.touch(now);
                            return out;
                        }
                        Step::Write {
                            state,
                            idle_at,
                            out,
                        } => {
                            // Before the CAS, so the hint is never earlier than the truth.
                            slot.raise_idle_at(idle_at);
                            match slot.compare_exchange(current, word(tag, state)) {
                                Ok(_) => {
                                    slot.touch(now);
                                    return out;
                                }
                                Err(found) if ident_of(found) == tag => current = found,
                                // Evicted or reset under us: look for the key again.
                                Err(_) => break,
                            }
                        }
                    }
                }
            }
            Found::Absent => match apply(None) {
                Step::Keep(out) => return out,
                Step::Write {
                    state,
                    idle_at,
                    out,
                } => {
                    if claim(bucket, start, tag, now, env, state, idle_at) {
                        return out;
                    }
                }
            },
            Found::Wait => {
                env.pause(waited);
                waited = waited.saturating_add(1);
            }
        }
    }
}

/// The state word of `tag`'s live slot, if it has one (a claim in progress counts as absent:
/// its first hit has not happened yet).
pub fn read<S: SlotCell>(bucket: &[S], start: usize, tag: u64) -> Option<u64> {
    probe(bucket.len(), start)
        .map(|i| bucket[i].load())
        .find(|&w| ident_of(w) == tag)
        .map(state_of)
}

/// Empties `tag`'s live slot, if any (the key is back to full capacity). A claim in progress is
/// left alone: it finalizes after the reset, as if its hit came just after.
pub fn remove<S: SlotCell>(bucket: &[S], start: usize, tag: u64) -> bool {
    for i in probe(bucket.len(), start) {
        let slot = &bucket[i];
        let mut current = slot.load();
        while ident_of(current) == tag {
            match slot.compare_exchange(current, EMPTY) {
                Ok(_) => return true,
                Err(found) => current = found,
            }
        }
    }
    false
}

/// Empties every live slot of the bucket, whatever its state (an operator's "clear"); returns
/// how many. A hit racing with it either lands before (and is cleared) or finds no slot and
/// claims a fresh one; a claim in progress is left alone, as in [`remove`].
pub fn clear<S: SlotCell>(bucket: &[S]) -> usize {
    let mut dropped = 0;
    for slot in bucket {
        let mut current = slot.load();
        while ident_of(current) != 0 && ident_of(current) & PENDING == 0 {
            match slot.compare_exchange(current, EMPTY) {
                Ok(_) => {
                    dropped += 1;
                    break;
                }
                Err(found) => current = found,
            }
        }
    }
    dropped
}

/// Empties every live slot of the bucket whose state is back to full capacity at `now`;
/// returns how many.
pub fn sweep<S: SlotCell>(bucket: &[S], now: u64) -> usize {
    let mut dropped = 0;
    for slot in bucket {
        let current = slot.load();
        let ident = ident_of(current);
        if ident != 0
            && ident & PENDING == 0
            && slot.idle_at() <= now
            && slot.compare_exchange(current, EMPTY).is_ok()
        {
            dropped += 1;
        }
    }
    dropped
}

/// The victim for a claim: an empty slot, else a stale claim, else a key back at full capacity,
/// else the least recently used live key; a fresh claim of another key only if nothing else.
/// `None` when the key itself turned up (claimed meanwhile): the caller looks again.
fn victim<S: SlotCell>(
    bucket: &[S],
    start: usize,
    tag: u64,
    now: u64,
) -> Option<(usize, u128, bool)> {
    // (rank, used): lower is a better victim.
    let mut best: Option<(usize, u128, (u8, u64))> = None;
    for i in probe(bucket.len(), start) {
        let slot = &bucket[i];
        let current = slot.load();
        let ident = ident_of(current);
        let used = slot.used();
        let rank = if ident == 0 {
            return Some((i, current, false));
        } else if ident & !PENDING == tag {
            return None;
        } else if ident & PENDING != 0 {
            if now.saturating_sub(used) > CLAIM_TIMEOUT {
                (1, 0)
            } else {
                (4, used)
            }
        } else if slot.idle_at() <= now {
            (2, 0)
        } else {
            (3, used)
        };
        if best.is_none_or(|(_, _, r)| rank < r) {
            best = Some((i, current, rank));
        }
    }
    let (index, current, rank) = best.expect("a bucket has slots");
    Some((index, current, rank.0 == 3))
}

/// Claims a slot for `tag` and stores `state` in it; false when the claim lost a race (the
/// caller looks for the key again).
fn claim<S: SlotCell, E: Env>(
    bucket: &[S],
    start: usize,
    tag: u64,
    now: u64,
    env: &E,
    state: u64,
    idle_at: u64,
) -> bool {
    let Some((index, current, live)) = victim(bucket, start, tag, now) else {
        return false;
    };
    let slot = &bucket[index];
    let pending = word(PENDING | tag, env.nonce());
    // `used` first: a claim must look fresh from the instant it exists.
    slot.set_used(now);
    if slot.compare_exchange(current, pending).is_err() {
        return false;
    }
    if live {
        env.evicted();
    }
    let abandon = || {
        let _ = slot.compare_exchange(pending, EMPTY);
        false
    };
    for other in probe(bucket.len(), start).filter(|&i| i != index) {
        let mut seen = bucket[other].load();
        loop {
            let ident = ident_of(seen);
            if ident == tag {
                return abandon();
            }
            if ident != PENDING | tag {
                break;
            }
            if other < index {
                return abandon();
            }
            match bucket[other].compare_exchange(seen, EMPTY) {
                Ok(_) => break,
                Err(found) => seen = found,
            }
        }
    }
    slot.set_idle_at(idle_at);
    slot.compare_exchange(pending, word(tag, state)).is_ok()
}

/// Pauses for the `round`-th time while a claim is in progress: spin first, then yield.
pub fn backoff(round: u32) {
    if round < 16 {
        for _ in 0..(1 << round.min(6)) {
            spin_loop();
        }
    } else {
        std::thread::yield_now();
    }
}
