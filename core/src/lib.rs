//! flux-core: the rate-limiting algorithms and the stores that keep their state.
//!
//! Everything here is pure Rust with no Python and no C: the two foreign faces live in the
//! `flux-ffi` crate. Time inside the core is integer nanoseconds since the Unix epoch; seconds
//! as floats appear only at the edges (see [`Decision`] accessors and [`Quota::from_secs_f64`]).

pub mod algorithms;
pub mod clock;
pub mod decision;
pub mod error;
pub mod limiter;
pub mod outcome;
pub mod quota;
pub mod store;

pub use algorithms::{Algorithm, AlgorithmKind};
pub use clock::{Clock, ManualClock, SystemClock};
pub use decision::Decision;
pub use error::{Error, Result};
pub use limiter::{Limiter, LimiterBuilder};
pub use outcome::{FailurePolicy, MultiOutcome, Outcome, Source};
pub use quota::Quota;
pub use store::multi::{check_many, hit_many};

/// Nanoseconds, the core's one unit of time.
pub type Nanos = u64;

/// Nanoseconds per second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;
