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
//!
//! On Redis the whole batch is one script on the limits' common store (`multi.lua`, one round
//! trip), failing open or closed as the limits' policies say.
//!
//! [`hit_many`] is the one entry point for every face: it checks once that all limits live on
//! one store and sends the batch to that store's way of doing it.

use crate::{Decision, Error, Limiter, MultiOutcome, Result, Source};

/// A batch on the shared store (costs checked by [`hit_many`]): every limit checked, then, if all would pass, hit in order
/// until one is denied (see the module doc for the race this leaves).
fn check_then_hit(items: &[(&Limiter, &str, u64)]) -> Result<Vec<Decision>> {
    let mut checked = Vec::with_capacity(items.len());
    for &(limiter, key, cost) in items {
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
        let decision = limiter.store().hit(key, cost)?.decision;
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

/// The one store of a multi-limit hit, and so the way it is done.
enum Group<'a> {
    /// Embedded stores (each limiter owns its own): shard locks, in process.
    Memory,
    /// Shared-memory regions: check, then hit.
    Shared,
    /// One Redis store: one script.
    #[cfg(feature = "redis")]
    Redis(&'a crate::store::redis::RedisLimit),
    #[cfg(not(feature = "redis"))]
    #[allow(dead_code)]
    Never(std::marker::PhantomData<&'a ()>),
}

impl<'a> Group<'a> {
    fn of(limiter: &'a Limiter) -> Result<Group<'a>> {
        let store = limiter.store();
        #[cfg(feature = "redis")]
        if let Some(redis) = store.redis() {
            return Ok(Group::Redis(redis));
        }
        if store.name() == "shared" {
            return Ok(Group::Shared);
        }
        if store.lockable().is_some() {
            return Ok(Group::Memory);
        }
        Err(Error::InvalidArgument(format!(
            "the {} store cannot take part in a multi-limit hit",
            store.name()
        )))
    }

    fn same(&self, other: &Group<'_>) -> bool {
        match (self, other) {
            (Group::Memory, Group::Memory) | (Group::Shared, Group::Shared) => true,
            #[cfg(feature = "redis")]
            (Group::Redis(a), Group::Redis(b)) => a.same_store(b),
            _ => false,
        }
    }
}

/// Checks what [`hit_many`] checks before it hits anything: at least one item, every cost,
/// and every limiter on one store (errors name the item). For a face that sends the hit later
/// (an async pipeline) and refuses a bad batch at once.
pub fn check_many(items: &[(&Limiter, &str, u64)]) -> Result<()> {
    one_store(items).map(|_| ())
}

/// The one store of `items`, once every item is checked (see [`check_many`]).
fn one_store<'a>(items: &[(&'a Limiter, &str, u64)]) -> Result<Group<'a>> {
    let Some(&(first, _, _)) = items.first() else {
        return Err(Error::InvalidArgument(
            "a multi-limit hit needs at least one limit".into(),
        ));
    };
    let group = Group::of(first)?;
    for (index, &(limiter, _, cost)) in items.iter().enumerate() {
        // The item that breaks a rule is named.
        let at = |error: Error| Error::Item {
            index,
            error: Box::new(error),
        };
        limiter.check_cost(cost).map_err(at)?;
        if !Group::of(limiter).map_err(at)?.same(&group) {
            return Err(at(Error::InvalidArgument(format!(
                "its limiter is not on the same store as items[0]'s (it is on the {} store, \
                 items[0]'s on the {} store): a multi-limit hit needs every limiter on one \
                 store (all on the embedded store, all on shared regions, or all on the same \
                 Redis store)",
                limiter.store().name(),
                first.store().name(),
            ))));
        }
    }
    Ok(group)
}

/// Hits every `(limiter, key, cost)` atomically: either every limit allows and all are
/// consumed, or none is consumed.
///
/// The decisions come back in order. When the batch is denied, the limits that denied report
/// as usual, and those that would have passed report `allowed = true` with the state they still
/// have (nothing was taken from them): the batch passed iff every decision is allowed.
///
/// Every limiter must be on one store: all on embedded stores (where a limiter and even a key
/// may appear several times, later items seeing the earlier ones), all on shared-memory
/// regions, or all on one Redis store (one script, one round trip; each (limiter, key) once;
/// on a cluster one identity). Errors name the first item that breaks a rule (`items[i]: …`).
/// On Redis a failure fails open only if every limit does.
pub fn hit_many(items: &[(&Limiter, &str, u64)]) -> Result<MultiOutcome> {
    let group = one_store(items)?;
    let decided = |decisions: Vec<Decision>, source| MultiOutcome {
        allowed: decisions.iter().all(|d| d.allowed),
        decisions,
        source,
        error: None,
    };
    match group {
        Group::Memory => Ok(decided(locked(items)?, Source::Memory)),
        Group::Shared => Ok(decided(check_then_hit(items)?, Source::Shared)),
        #[cfg(feature = "redis")]
        Group::Redis(redis) => redis.store().hit_many_checked(items),
        #[cfg(not(feature = "redis"))]
        Group::Never(_) => unreachable!(),
    }
}

/// A batch on embedded stores: every shard involved locked in one global order, each limit
/// tried on scratch state, and the scratch written back only if all passed.
fn locked(items: &[(&Limiter, &str, u64)]) -> Result<Vec<Decision>> {
    let mut located = Vec::with_capacity(items.len());
    for &(limiter, key, cost) in items {
        let store = limiter.store().lockable().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the {} store has no shard locks",
                limiter.store().name()
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
