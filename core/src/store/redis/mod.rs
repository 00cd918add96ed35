//! The Redis store: limit state in Redis, shared by every process and every language that
//! links the core.
//!
//! - One atomic Lua script per algorithm (`lua/<algorithm>.lua`), one EVALSHA round trip per
//!   hit, reloaded after NOSCRIPT (restart, failover, SCRIPT FLUSH), pipelines included.
//! - Time from Redis's `TIME` (µs), so client clocks cannot disagree; an explicit `now` replays
//!   test vectors ([`RedisLimit::hit_at`], or a limiter built with a clock).
//! - Keys: `{key_prefix}{limit prefix}{<identity>}:<algorithm>`. The identity is the hash tag,
//!   so every key of one identity, whatever the limit, lives in one cluster slot: several limits
//!   on one request are checked in one atomic script ([`crate::hit_many`]), while different
//!   identities spread over the cluster's slots (a tag per limit would put a whole limit, hot
//!   or not, on one node and make multi-limit hits across limits impossible). Keys expire when
//!   their state is back to full capacity.
//! - Failures: each limit fails open ([`Source::FailOpen`]) or closed ([`crate::Error::Store`]) as
//!   its [`crate::FailurePolicy`] says, decided here and nowhere else; a circuit breaker so a
//!   dead Redis costs microseconds per hit, and a local deny cache that answers keys Redis has
//!   just denied without a round trip.
//!
//! One file per job: `store.rs` the store and its shared internals, `fork.rs` a store's
//! internals per process, `limit.rs` one limit's single-key operations, `batch.rs` independent
//! hits in one pipeline, `multi.rs` the all-or-nothing script, `failure.rs` turning a failed
//! request into an outcome (breaker glue, messages, the failure policy), `commands.rs` the
//! EVALSHA builders, `slots.rs` Redis Cluster hash slots, `stats.rs` counters; `config.rs`,
//! `connection.rs`, `pool.rs`, `breaker.rs`, `deny_cache.rs`, `scripts.rs` as named.
//!
//! ```no_run
//! use flux_core::store::redis::{RedisConfig, RedisStore};
//! use flux_core::{hit_many, AlgorithmKind, Limiter, Quota};
//!
//! let store = RedisStore::connect(RedisConfig::from_url("redis://127.0.0.1:6379"))?;
//! let per_second = Limiter::builder(Quota::new(10, 1_000_000_000, None)?)
//!     .prefix("api-second:")
//!     .build_redis(&store)?;
//! let per_hour = Limiter::builder(Quota::new(1000, 3_600_000_000_000, None)?)
//!     .algorithm(AlgorithmKind::SlidingWindow)
//!     .prefix("api-hour:")
//!     .build_redis(&store)?;
//! let one = per_second.hit_outcome("10.0.0.1", 1)?;
//! let both = hit_many(&[(&per_second, "10.0.0.1", 1), (&per_hour, "10.0.0.1", 1)])?;
//! # let _ = (one, both);
//! # Ok::<(), flux_core::Error>(())
//! ```

mod batch;
mod breaker;
mod commands;
mod config;
mod connection;
mod deny_cache;
mod failure;
mod fork;
mod limit;
mod multi;
mod pool;
mod scripts;
mod slots;
mod stats;
mod store;

pub use crate::{MultiOutcome, Outcome, Source};
pub use batch::SCRIPT_BATCH;
pub use breaker::BreakerState;
pub use config::RedisConfig;
pub use fork::{after_fork_in_child, fork_generation};
pub use limit::RedisLimit;
pub use scripts::{batch_source, multi_source, single_source};
pub use slots::key_slot;
pub use stats::RedisStats;
pub use store::RedisStore;
