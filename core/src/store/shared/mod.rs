//! The shared-memory store: one fixed-size region in a memory-mapped file (under /dev/shm on
//! Linux, the temporary directory elsewhere) that every process of the machine opens, so that
//! web workers, task workers, scripts and C programs share the same limits exactly, with no
//! server.
//!
//! - [`region`]: the file, its versioned header, creation and validation.
//! - [`slots`]: the slot table's lock-free protocol (claim, hit, eviction), crash-safe.
//! - [`codec`]: each algorithm's state in 64 bits.
//! - [`store`]: [`SharedRegion`] and the [`Store`](crate::store::Store) of each limit.
//!
//! Memory is bounded: the region never grows. A key new to a full bucket takes, in order, an
//! empty slot, a claim abandoned by a killed process, a key back at full capacity, or the least
//! recently used key of its bucket (an approximate LRU over 16 slots); evictions are counted in
//! the header ([`SharedRegion::stats`]). A hit never fails or waits because the table is full.

pub mod codec;
pub mod region;
pub mod slots;
pub mod store;

pub use region::{default_path, DEFAULT_MAX_KEYS, SLOT_SIZE};
pub use store::{SharedClock, SharedRegion, SharedStats};
