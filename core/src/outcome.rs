//! Where a decision came from, told by the store that made it: every store returns an
//! [`Outcome`], so no face keeps a side channel to find out (see docs/architecture.md,
//! *Stores*).

use crate::{Decision, Error};

/// Who decided a hit (or a peek, or a refund).
///
/// A plain `Copy` tag, so that a face can keep it in its own result type; the error behind a
/// fail-open outcome travels beside it, in [`Outcome::error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Source {
    /// The embedded (in-process) store.
    #[default]
    Memory,
    /// The shared-memory region of the machine.
    Shared,
    /// Redis (one round trip).
    Redis,
    /// The Redis store's local deny cache: Redis denied this key moments ago and would deny
    /// it still, so no round trip was made.
    DenyCache,
    /// The store could not decide and the limit fails open: the hit passed, counted nowhere.
    FailOpen,
}

impl Source {
    /// A short lower-case name ("memory", "shared", "redis", "deny_cache", "fail_open").
    pub fn name(self) -> &'static str {
        match self {
            Source::Memory => "memory",
            Source::Shared => "shared",
            Source::Redis => "redis",
            Source::DenyCache => "deny_cache",
            Source::FailOpen => "fail_open",
        }
    }
}

/// A decision and where it came from.
///
/// The decision stays the algorithm's answer alone (equal across stores for equal inputs,
/// which the test vectors check); the source is the store's to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The decision.
    pub decision: Decision,
    /// Where it came from.
    pub source: Source,
    /// Why the store could not decide, when `source` is [`Source::FailOpen`]; `None` otherwise.
    pub error: Option<Box<Error>>,
}

impl Outcome {
    /// A decision the store made itself.
    #[inline]
    pub fn new(decision: Decision, source: Source) -> Outcome {
        Outcome {
            decision,
            source,
            error: None,
        }
    }

    /// A hit of `cost` let through unchecked because the store failed with `error` and the
    /// limit fails open: allowed, with the capacity of a fresh key less the cost, and no times
    /// (there was no decision to report).
    pub fn failed_open(limit: u64, cost: u64, error: Error) -> Outcome {
        Outcome {
            decision: Decision {
                allowed: true,
                limit,
                remaining: limit.saturating_sub(cost),
                reset_after: 0,
                retry_after: 0,
            },
            source: Source::FailOpen,
            error: Some(Box::new(error)),
        }
    }

    /// True when the store failed and the hit was let through unchecked.
    #[inline]
    pub fn is_fail_open(&self) -> bool {
        self.source == Source::FailOpen
    }
}

/// The answer to one hit against several limits at once (all or nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiOutcome {
    /// True when every limit let the hit pass (and it was counted against every one); false
    /// when any denied it (and it was counted against none, see [`crate::hit_many`]).
    pub allowed: bool,
    /// Each limit's decision, in the order given. In a denied hit a limit that would have let
    /// it pass says `allowed: true`, `retry_after: 0` and shows its state uncounted.
    pub decisions: Vec<Decision>,
    /// Where the decisions came from (one store decided them all).
    pub source: Source,
    /// Why the store could not decide, when `source` is [`Source::FailOpen`].
    pub error: Option<Box<Error>>,
}

/// The policy of a limit whose store cannot decide (Redis down, timed out, refusing).
///
/// A property of the limit, set in [`crate::LimiterBuilder::failure_policy`]; the stores that
/// cannot fail (embedded, shared memory) never consult it. See docs/architecture.md,
/// *Failures*.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The hit passes, flagged [`Source::FailOpen`], counted nowhere.
    Open,
    /// The hit fails with [`Error::Store`].
    Closed,
}

impl FailurePolicy {
    /// `Open` when `fail_open`, else `Closed`.
    pub fn from_fail_open(fail_open: bool) -> FailurePolicy {
        if fail_open {
            FailurePolicy::Open
        } else {
            FailurePolicy::Closed
        }
    }

    /// True for [`FailurePolicy::Open`].
    pub fn is_open(self) -> bool {
        self == FailurePolicy::Open
    }
}
