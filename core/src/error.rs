//! The core's error vocabulary: every fallible call names what was wrong.

use std::fmt;

/// Errors returned by the core. Messages name the offending value so that every face (Python,
/// C) can pass them straight to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A quota field is out of range (`field` names it, `reason` says what is expected).
    InvalidQuota { field: &'static str, reason: String },
    /// A cost of zero, or larger than the limit's capacity (it could never pass).
    InvalidCost { cost: u64, capacity: u64 },
    /// The algorithm name is not one of [`crate::AlgorithmKind::NAMES`].
    UnknownAlgorithm(String),
    /// A key that the store cannot accept (empty, too long).
    InvalidKey(String),
    /// Any other invalid argument (e.g. `max_keys = 0`).
    InvalidArgument(String),
    /// The backing store could not be reached or failed (Redis down, timeout, ...).
    Store(String),
    /// What was wrong with item `index` of a list (a multi-limit hit's items), so that each
    /// face can name the element in its own terms (C's `hits[i]`, Python's `items[i]`).
    Item { index: usize, error: Box<Error> },
}

impl Error {
    /// The error itself, out of any [`Error::Item`] around it (what decides its kind).
    pub fn innermost(&self) -> &Error {
        match self {
            Error::Item { error, .. } => error.innermost(),
            other => other,
        }
    }
}

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidQuota { field, reason } => write!(f, "invalid quota: {field} {reason}"),
            Error::InvalidCost { cost, capacity } if *cost == 0 => {
                write!(f, "invalid cost 0: cost must be at least 1 (capacity is {capacity})")
            }
            Error::InvalidCost { cost, capacity } => write!(
                f,
                "invalid cost {cost}: it exceeds the limit's capacity of {capacity} and could never pass"
            ),
            Error::UnknownAlgorithm(name) => write!(
                f,
                "unknown algorithm {name:?}: expected one of {}",
                crate::AlgorithmKind::NAMES.join(", ")
            ),
            Error::InvalidKey(reason) => write!(f, "invalid key: {reason}"),
            Error::InvalidArgument(reason) => write!(f, "invalid argument: {reason}"),
            Error::Store(reason) => write!(f, "store error: {reason}"),
            Error::Item { index, error } => write!(f, "items[{index}]: {error}"),
        }
    }
}

impl std::error::Error for Error {}
