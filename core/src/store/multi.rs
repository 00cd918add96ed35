//! Several limits in one atomic hit: all pass and all are consumed, or none is.
//!
//! A route limited to 10/second and 1000/hour must not spend its hourly budget on requests the
//! per-second limit turns away. For the embedded store this locks every shard involved (in one
//! global order, so two multi-hits cannot deadlock), evaluates each limit on a scratch copy of
//! its state, and writes the copies back only when every limit passed.
//!
//! The shared store has no lock to hold across several keys (each key is one compare-and-swap,
//! so that a killed process can leave nothing held), so a batch on it checks every limit
//! first and then hits them in order. Alone, that is the same all-or-nothing; when another
//! process takes the last of a later limit between the check and the hit, the batch is denied
//! after the earlier limits were counted: it can then spend budget on a denied request, never
//! let one through that a limit refuses.

use crate::{Decision, Error, Limiter, Result};

/// A batch on the shared store: every limit checked, then, if all would pass, hit in order
/// until one is denied (see the module doc for the race this leaves).
fn check_then_hit(items: &[(&Limiter, &str, u64)]) -> Result<Vec<Decision>> {
    let mut checked = Vec::with_capacity(items.len());
    for &(limiter, key, cost) in items {
        limiter.check_cost(cost)?;
        let decision = limiter.store().try_hit(key, cost).ok_or_else(|| {
            Error::InvalidArgument("the shared store cannot check a hit without taking it".into())
        })??;
        checked.push(decision);
    }
    let untaken = |(limiter, key, _): &(&Limiter, &str, u64)| -> Result<Decision> {
        let seen = limiter.peek(key)?;
        Ok(Decision {
            allowed: true,
            retry_after: 0,
            ..seen
        })
    };
    if !checked.iter().all(|d| d.allowed) {
        return items
            .iter()
            .zip(checked)
            .map(|(item, decision)| {
                if decision.allowed {
                    untaken(item)
                } else {
                    Ok(decision)
                }
            })
            .collect();
    }
    let mut decisions = Vec::with_capacity(items.len());
    for (index, &(limiter, key, cost)) in items.iter().enumerate() {
        let decision = limiter.hit(key, cost)?;
        decisions.push(decision);
        if !decision.allowed {
            for item in &items[index + 1..] {
                decisions.push(untaken(item)?);
            }
            break;
        }
    }
    Ok(decisions)
}

/// A store whose keys live in shards that can be locked from outside (the embedded store).
pub trait LockableStore: Sync {
    /// The shard holding `key`, and the key's hash within the store.
    fn locate_key(&self, key: &str) -> (usize, u64);

    /// Locks shard `index` for a multi-limit hit (reading the clock under the lock).
    fn lock_shard(&self, index: usize) -> Box<dyn ShardLock + '_>;
}

/// A locked shard on which hits are tried on scratch state, then committed or dropped.
pub trait ShardLock {
    /// Tries a hit of `cost` on the key with `hash`, on scratch state (seeing earlier tries).
    fn try_hit(&mut self, hash: u64, cost: u64) -> Decision;

    /// The key's state as it is in the store, for a hit of `cost` not taken (nothing changes).
    fn untaken(&self, hash: u64, cost: u64) -> Decision;

    /// Writes every successful try back into the store.
    fn commit(&mut self);
}

/// Hits every `(limiter, key, cost)` atomically: either every limit allows and all are
/// consumed, or none is consumed.
///
/// The decisions come back in order. When the batch is denied, the limits that denied report
/// as usual, and those that would have passed report `allowed = true` with the state they still
/// have (nothing was taken from them): the batch passed iff every decision is allowed.
///
/// All limiters must be on the embedded store (Redis limiters use their store's own multi-limit
/// script, one round trip).
pub fn hit_many(items: &[(&Limiter, &str, u64)]) -> Result<Vec<Decision>> {
    let shared = |limiter: &Limiter| limiter.store().name() == "shared";
    if !items.is_empty() && items.iter().all(|(limiter, _, _)| shared(limiter)) {
        return check_then_hit(items);
    }
    let mut located = Vec::with_capacity(items.len());
    for &(limiter, key, cost) in items {
        limiter.check_cost(cost)?;
        let store = limiter.store().lockable().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "an in-process multi-limit hit needs every limiter on one kind of store, all \
                 on the embedded store or all on the shared store (here one is on the {} \
                 store)",
                limiter.store().name(),
            ))
        })?;
        let (shard, hash) = store.locate_key(key);
        // Stores are ordered by address: a total order shared by every concurrent caller.
        let store_id = store as *const dyn LockableStore as *const () as usize;
        located.push((store_id, shard, hash, store, cost));
    }
    let mut order: Vec<(usize, usize)> = located.iter().map(|l| (l.0, l.1)).collect();
    order.sort_unstable();
    order.dedup();
    let mut locks: Vec<Box<dyn ShardLock + '_>> = order
        .iter()
        .map(|&(store_id, shard)| {
            let store = located.iter().find(|l| l.0 == store_id).unwrap().3;
            store.lock_shard(shard)
        })
        .collect();
    let lock_of = |store_id: usize, shard: usize| order.binary_search(&(store_id, shard)).unwrap();

    let tried: Vec<Decision> = located
        .iter()
        .map(|&(store_id, shard, hash, _, cost)| {
            locks[lock_of(store_id, shard)].try_hit(hash, cost)
        })
        .collect();
    if tried.iter().all(|d| d.allowed) {
        for lock in &mut locks {
            lock.commit();
        }
        return Ok(tried);
    }
    Ok(located
        .iter()
        .zip(tried)
        .map(|(&(store_id, shard, hash, _, cost), decision)| {
            if decision.allowed {
                locks[lock_of(store_id, shard)].untaken(hash, cost)
            } else {
                decision
            }
        })
        .collect())
}
