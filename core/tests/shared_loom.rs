//! Model check of the shared store's slot protocol (core/src/store/shared/slots.rs) with loom:
//! every interleaving (up to a preemption bound) of the same protocol code the store runs,
//! over model slots, including processes killed between any two of their atomic steps.
//!
//! The model slot's 128-bit word is a loom mutex around a u128: a linearizable CAS, which is
//! what the region's hardware 128-bit CAS provides. A "hit" adds 1 to a counter state, so the
//! final state counts exactly the hits that took effect.

use flux_core::store::shared::slots::{
    self, ident_of, state_of, word, Env, SlotCell, Step, CLAIM_TIMEOUT, PENDING,
};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::{Arc, Mutex};
use std::cell::Cell;

const KEY: u64 = 0x1234;
const OTHER: u64 = 0x777;
const NOW: u64 = 1_000 * CLAIM_TIMEOUT;

struct ModelSlot {
    word: Mutex<u128>,
    used: AtomicU64,
    idle_at: AtomicU64,
}

impl ModelSlot {
    fn new(word: u128, used: u64) -> ModelSlot {
        ModelSlot {
            word: Mutex::new(word),
            used: AtomicU64::new(used),
            idle_at: AtomicU64::new(u64::MAX),
        }
    }
}

impl SlotCell for ModelSlot {
    fn load(&self) -> u128 {
        *self.word.lock().unwrap()
    }
    fn compare_exchange(&self, current: u128, new: u128) -> Result<u128, u128> {
        let mut word = self.word.lock().unwrap();
        if *word == current {
            *word = new;
            Ok(current)
        } else {
            Err(*word)
        }
    }
    fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
    fn set_used(&self, now: u64) {
        self.used.store(now, Ordering::Relaxed)
    }
    fn idle_at(&self) -> u64 {
        self.idle_at.load(Ordering::Acquire)
    }
    fn set_idle_at(&self, at: u64) {
        self.idle_at.store(at, Ordering::Release)
    }
    fn raise_idle_at(&self, at: u64) {
        self.idle_at.fetch_max(at, Ordering::AcqRel);
    }
}

/// The panic payload of a process killed by the model.
struct Killed;

/// A slot seen by a process that dies once it has spent `budget` atomic steps: every state it
/// can leave behind is that of a SIGKILL between two steps.
struct Mortal<'a> {
    slot: &'a ModelSlot,
    budget: &'a Cell<u32>,
}

impl Mortal<'_> {
    fn step(&self) {
        if self.budget.get() == 0 {
            std::panic::panic_any(Killed);
        }
        self.budget.set(self.budget.get() - 1);
    }
}

impl SlotCell for Mortal<'_> {
    fn load(&self) -> u128 {
        self.step();
        self.slot.load()
    }
    fn compare_exchange(&self, current: u128, new: u128) -> Result<u128, u128> {
        self.step();
        self.slot.compare_exchange(current, new)
    }
    fn used(&self) -> u64 {
        self.step();
        self.slot.used()
    }
    fn set_used(&self, now: u64) {
        self.step();
        self.slot.set_used(now)
    }
    fn idle_at(&self) -> u64 {
        self.step();
        self.slot.idle_at()
    }
    fn set_idle_at(&self, at: u64) {
        self.step();
        self.slot.set_idle_at(at)
    }
    fn raise_idle_at(&self, at: u64) {
        self.step();
        self.slot.raise_idle_at(at)
    }
}

struct ModelEnv {
    id: u64,
    claims: Cell<u64>,
}

impl ModelEnv {
    fn new(id: u64) -> ModelEnv {
        ModelEnv {
            id,
            claims: Cell::new(0),
        }
    }
}

impl Env for ModelEnv {
    fn nonce(&self) -> u64 {
        self.claims.set(self.claims.get() + 1);
        self.id << 32 | self.claims.get()
    }
    fn pause(&self, _round: u32) {
        loom::thread::yield_now();
    }
    fn patience(&self) -> u32 {
        2
    }
    fn evicted(&self) {}
}

/// One hit of `tag`: the counter after it.
fn hit<S: SlotCell>(bucket: &[S], start: usize, tag: u64, env: &ModelEnv) -> u64 {
    slots::update(bucket, start, tag, NOW, env, |state| {
        let next = state.unwrap_or(0) + 1;
        Step::Write {
            state: next,
            idle_at: u64::MAX,
            out: next,
        }
    })
}

/// The live slots of `tag`, as (index, counter).
fn live(bucket: &[ModelSlot], tag: u64) -> Vec<(usize, u64)> {
    bucket
        .iter()
        .enumerate()
        .map(|(i, slot)| (i, slot.load()))
        .filter(|&(_, w)| ident_of(w) == tag)
        .map(|(i, w)| (i, state_of(w)))
        .collect()
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(f);
}

fn quiet_kills() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Killed>() {
                default(info)
            }
        }));
    });
}

#[test]
fn two_first_hits_of_one_key_make_one_slot_counting_both() {
    model(|| {
        let bucket = Arc::new(vec![
            ModelSlot::new(slots::EMPTY, 0),
            ModelSlot::new(slots::EMPTY, 0),
        ]);
        let threads: Vec<_> = (0..2)
            .map(|id| {
                let bucket = bucket.clone();
                loom::thread::spawn(move || hit(&bucket, 0, KEY, &ModelEnv::new(id)))
            })
            .collect();
        let mut seen: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, [1, 2], "each hit saw the other's or none");
        assert_eq!(
            live(&bucket, KEY).iter().map(|l| l.1).collect::<Vec<_>>(),
            [2]
        );
    });
}

#[test]
fn first_hits_racing_a_reset_that_frees_a_slot_still_make_one_slot() {
    // The bucket is full (two other keys); a reset frees a slot while two processes claim, so
    // they can see different victims: the re-scan must still leave one slot counting both.
    model(|| {
        let bucket = Arc::new(vec![
            ModelSlot::new(word(OTHER, 5), NOW),
            ModelSlot::new(word(OTHER + 1, 5), NOW - 1),
        ]);
        let reset = {
            let bucket = bucket.clone();
            loom::thread::spawn(move || slots::remove(&bucket, 0, OTHER))
        };
        let threads: Vec<_> = (0..2)
            .map(|id| {
                let bucket = bucket.clone();
                loom::thread::spawn(move || hit(&bucket, 0, KEY, &ModelEnv::new(id)))
            })
            .collect();
        let mut seen: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        reset.join().unwrap();
        seen.sort_unstable();
        let live = live(&bucket, KEY);
        assert_eq!(live.len(), 1, "one slot for the key: {live:?}");
        // Both hits counted, unless the other claim evicted the key between them (it may: the
        // bucket has two slots and three keys), in which case the later hit starts afresh.
        assert!(seen == [1, 2] || seen == [1, 1], "{seen:?}");
        assert_eq!(live[0].1, seen[1]);
    });
}

#[test]
fn a_hit_never_lands_on_a_slot_reused_by_another_key() {
    model(|| {
        let bucket = Arc::new(vec![ModelSlot::new(word(KEY, 5), 0)]);
        let hitter = {
            let bucket = bucket.clone();
            loom::thread::spawn(move || hit(&bucket, 0, KEY, &ModelEnv::new(0)))
        };
        let claimer = {
            let bucket = bucket.clone();
            loom::thread::spawn(move || hit(&bucket, 0, OTHER, &ModelEnv::new(1)))
        };
        let key_saw = hitter.join().unwrap();
        let other_saw = claimer.join().unwrap();
        assert_eq!(other_saw, 1, "the new key starts from a fresh state");
        assert!(key_saw == 6 || key_saw == 1, "{key_saw}");
        let w = bucket[0].load();
        assert!(
            w == word(OTHER, 1) || w == word(KEY, key_saw),
            "{:x}/{}",
            ident_of(w),
            state_of(w)
        );
    });
}

#[test]
fn claims_left_by_killed_processes_block_nobody() {
    // A dead claimer's pending slot, stale by time or fresh (then only the waiter's patience
    // frees it), in front of the free slot.
    for used in [0, NOW] {
        model(move || {
            let bucket = Arc::new(vec![
                ModelSlot::new(word(PENDING | KEY, 99), used),
                ModelSlot::new(slots::EMPTY, 0),
            ]);
            let threads: Vec<_> = (0..2)
                .map(|id| {
                    let bucket = bucket.clone();
                    loom::thread::spawn(move || hit(&bucket, 0, KEY, &ModelEnv::new(id)))
                })
                .collect();
            let mut seen: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            seen.sort_unstable();
            assert_eq!(seen, [1, 2]);
            assert_eq!(
                live(&bucket, KEY).iter().map(|l| l.1).collect::<Vec<_>>(),
                [2]
            );
        });
    }
}

#[test]
fn a_process_killed_at_any_step_leaves_no_lock_and_no_wrong_state() {
    quiet_kills();
    // Kill the first process after each possible number of atomic steps, while a second one
    // hits the same key (fresh, so the kill can fall in the middle of a claim).
    for budget in 0..14 {
        model(move || {
            let bucket = Arc::new(vec![
                ModelSlot::new(word(OTHER, 5), NOW),
                ModelSlot::new(slots::EMPTY, 0),
            ]);
            let mortal = {
                let bucket = bucket.clone();
                loom::thread::spawn(move || {
                    let left = Cell::new(budget);
                    let view: Vec<Mortal> = bucket
                        .iter()
                        .map(|slot| Mortal {
                            slot,
                            budget: &left,
                        })
                        .collect();
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        hit(&view, 0, KEY, &ModelEnv::new(0))
                    }))
                    .ok()
                })
            };
            let survivor = {
                let bucket = bucket.clone();
                loom::thread::spawn(move || {
                    let env = ModelEnv::new(1);
                    [hit(&bucket, 0, KEY, &env), hit(&bucket, 0, KEY, &env)]
                })
            };
            let finished = mortal.join().unwrap();
            let [first, second] = survivor.join().unwrap();
            let live = live(&bucket, KEY);
            assert_eq!(live.len(), 1, "one slot for the key: {live:?}");
            // The dead process's hit counts iff its CAS happened: never twice, never torn.
            let total = live[0].1;
            assert!(total == 2 || total == 3, "{live:?}");
            if finished.is_some() {
                assert_eq!(total, 3);
            }
            assert!(first < second && second <= total && second - first < total);
            // Its victim (the other key) may be gone, but nothing else is touched.
            assert!(
                live.len() == 1
                    && bucket.iter().all(|s| {
                        let ident = ident_of(s.load());
                        ident == 0 || ident == OTHER || ident & !PENDING == KEY
                    })
            );
        });
    }
}
