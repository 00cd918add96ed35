//! The thread-local last error behind `flux_last_error`, and `Failure`, the error type of
//! every exported body, with the mapping of core errors to result codes.

use super::result::flux_result;
use flux_core::Error;
use std::cell::RefCell;
use std::ffi::{c_char, CString};

thread_local! {
    /// The message of the most recent failed call on this thread ("" before any).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Replaces this thread's last error (interior NULs become U+FFFD so nothing is cut short).
pub(crate) fn set_last_error(message: &str) {
    let message = CString::new(message.replace('\0', "\u{FFFD}")).unwrap_or_default();
    // During thread teardown the slot may be gone: then there is no one left to read it.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = message);
}

/// Why an exported call failed: its result code and a message naming the bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: flux_result,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: flux_result, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A NULL pointer where `name` must point to something.
    #[cold]
    pub(crate) fn null(name: &str) -> Failure {
        Failure::new(
            flux_result::NullArgument,
            format!("{name} is NULL: it must be a valid pointer"),
        )
    }

    /// The same failure with `context` (e.g. the function's arguments) appended.
    pub(crate) fn with_context(mut self, context: impl AsRef<str>) -> Failure {
        self.message.push_str(context.as_ref());
        self
    }

    /// The same failure with `prefix` (e.g. which array element) in front.
    pub(crate) fn with_prefix(mut self, prefix: impl AsRef<str>) -> Failure {
        self.message.insert_str(0, prefix.as_ref());
        self
    }

    /// Stores the message as this thread's last error and returns the code.
    #[cold]
    #[inline(never)]
    pub(crate) fn record(self) -> flux_result {
        set_last_error(&self.message);
        self.code
    }
}

/// The message of the most recent failed flux call on the calling thread.
///
/// Returns a NUL-terminated UTF-8 string, never NULL: "" when no call has failed on this
/// thread yet. Successful calls leave it unchanged, except one whose decision says
/// `FLUX_SOURCE_FAIL_OPEN`, which records what failed in Redis. The string is owned by flux
/// and stays valid until the next such call on the same thread or until the thread exits;
/// copy it to keep it longer, and never free it.
///
/// Thread safety: each thread has its own last error; safe to call from any thread.
#[no_mangle]
pub extern "C" fn flux_last_error() -> *const c_char {
    static EMPTY: &[u8] = b"\0";
    ffi_guard!(on_panic = EMPTY.as_ptr().cast(), {
        LAST_ERROR
            .try_with(|slot| slot.borrow().as_ptr())
            .unwrap_or(EMPTY.as_ptr().cast())
    })
}

impl From<Error> for Failure {
    #[cold]
    fn from(error: Error) -> Failure {
        let error = match error {
            // An element of a `flux_hit` array: named as the C caller knows it, and the code
            // of what was wrong with it.
            Error::Item { index, error } => {
                let inner = Failure::from(*error);
                let message = match inner.code {
                    flux_result::InvalidArgument => inner
                        .message
                        .strip_prefix("invalid argument: ")
                        .unwrap_or(&inner.message)
                        .to_string(),
                    _ => inner.message,
                };
                return Failure::new(inner.code, format!("hits[{index}]: {message}"));
            }
            error => error,
        };
        let code = match &error {
            Error::InvalidQuota { field, .. } => match *field {
                "requests" => flux_result::InvalidRequests,
                "period" => flux_result::InvalidPeriod,
                "burst" => flux_result::InvalidBurst,
                _ => flux_result::InvalidArgument,
            },
            Error::InvalidCost { .. } => flux_result::InvalidCost,
            Error::UnknownAlgorithm(_) => flux_result::UnknownAlgorithm,
            Error::InvalidKey(_) => flux_result::InvalidKey,
            Error::InvalidArgument(_) => flux_result::InvalidArgument,
            Error::Store(_) => flux_result::StoreError,
            Error::Item { .. } => unreachable!("unwrapped above"),
        };
        Failure::new(code, error.to_string())
    }
}
