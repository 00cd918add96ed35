//! Turning C arguments into Rust ones: keys as (pointer, length) and NUL-terminated strings,
//! both validated as UTF-8.

use super::error::Failure;
use super::result::flux_result;
use std::ffi::{c_char, CStr};

/// The key `(ptr, len)` as a `&str`.
///
/// Fails with `FLUX_RESULT_NULL_ARGUMENT` when `ptr` is NULL (even for `len` 0),
/// `FLUX_RESULT_INVALID_ARGUMENT` when `len` exceeds `isize::MAX`, and
/// `FLUX_RESULT_INVALID_UTF8` when the bytes are not UTF-8. On the hot path of every hit: the
/// checks are inlined and the failures built out of line.
///
/// # Safety
/// When non-NULL, `ptr` must point to `len` readable bytes that stay unchanged for `'a`.
#[inline(always)]
pub(crate) unsafe fn key<'a>(ptr: *const c_char, len: usize) -> Result<&'a str, Failure> {
    if ptr.is_null() || len > isize::MAX as usize {
        return Err(bad_key(ptr, len));
    }
    // SAFETY: non-NULL, `len` ≤ isize::MAX, and readable for `len` bytes per the contract.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    // Most keys are ASCII (IPs, user ids): a word-at-a-time check is cheaper than full UTF-8
    // validation for short strings.
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    match std::str::from_utf8(bytes) {
        Ok(key) => Ok(key),
        Err(error) => Err(key_not_utf8(bytes, error.valid_up_to())),
    }
}

#[cold]
#[inline(never)]
fn bad_key(ptr: *const c_char, len: usize) -> Failure {
    if ptr.is_null() {
        Failure::null("key")
    } else {
        Failure::new(
            flux_result::InvalidArgument,
            format!("key_len {len} is larger than PTRDIFF_MAX"),
        )
    }
}

#[cold]
#[inline(never)]
fn key_not_utf8(bytes: &[u8], valid_up_to: usize) -> Failure {
    Failure::new(
        flux_result::InvalidUtf8,
        format!(
            "key is not valid UTF-8: invalid byte 0x{:02x} at offset {valid_up_to} of key_len {}",
            bytes[valid_up_to],
            bytes.len()
        ),
    )
}

/// The NUL-terminated string `ptr` (named `name` in messages) as a `&str`; NULL is
/// `FLUX_RESULT_NULL_ARGUMENT`, bad UTF-8 is `FLUX_RESULT_INVALID_UTF8`.
///
/// # Safety
/// When non-NULL, `ptr` must point to a NUL-terminated string that stays unchanged for `'a`.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL and NUL-terminated per the contract.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str().map_err(|e| {
        Failure::new(
            flux_result::InvalidUtf8,
            format!(
                "{name} is not valid UTF-8: invalid byte at offset {}",
                e.valid_up_to()
            ),
        )
    })
}

/// Writes `value` through the out-param `out` (checked non-NULL by the caller).
///
/// # Safety
/// `out` must be non-NULL, aligned and valid for a write of `T` (it may be uninitialised).
#[inline]
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: per the contract; `write` neither reads nor drops the old contents.
    unsafe { out.write(value) }
}
