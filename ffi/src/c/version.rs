//! The version: macros in the header (literals, because cbindgen reads the source) checked at
//! compile time against Cargo.toml, and `flux_version()` at run time.
//!
//! The header's string macro `FLUX_VERSION` ("MAJOR.MINOR.PATCH") is spelled out of the three
//! numbers by `ffi/cbindgen.toml` (cbindgen 0.29 drops `&str` constants), so it cannot drift.

use std::ffi::c_char;

/// The major version of the header (checked against Cargo.toml when flux is built).
pub const FLUX_VERSION_MAJOR: u32 = 0;
/// The minor version of the header.
pub const FLUX_VERSION_MINOR: u32 = 1;
/// The patch version of the header.
pub const FLUX_VERSION_PATCH: u32 = 0;
/// The version as one comparable number: MAJOR * 1000000 + MINOR * 1000 + PATCH
/// (0.1.0 is 1000), e.g. `#if FLUX_VERSION_NUMBER >= 2000` for 0.2.0 and later.
pub const FLUX_VERSION_NUMBER: u32 =
    FLUX_VERSION_MAJOR * 1000000 + FLUX_VERSION_MINOR * 1000 + FLUX_VERSION_PATCH;

/// Cargo.toml's version, NUL-terminated, for `flux_version()`.
const CARGO_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

const fn parse_u32(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii_digit(), "version part is not a number");
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

// Bumping the version in Cargo.toml without updating the constants above (and running
// `make header`) fails the build here.
const _: () = {
    assert!(
        FLUX_VERSION_MAJOR == parse_u32(env!("CARGO_PKG_VERSION_MAJOR")),
        "FLUX_VERSION_MAJOR differs from Cargo.toml: update ffi/src/c/version.rs"
    );
    assert!(
        FLUX_VERSION_MINOR == parse_u32(env!("CARGO_PKG_VERSION_MINOR")),
        "FLUX_VERSION_MINOR differs from Cargo.toml: update ffi/src/c/version.rs"
    );
    assert!(
        FLUX_VERSION_PATCH == parse_u32(env!("CARGO_PKG_VERSION_PATCH")),
        "FLUX_VERSION_PATCH differs from Cargo.toml: update ffi/src/c/version.rs"
    );
    assert!(FLUX_VERSION_MINOR < 1000 && FLUX_VERSION_PATCH < 1000);
};

/// The version of the flux library actually loaded, e.g. "0.1.0".
///
/// Compare it with the `FLUX_VERSION` macro to detect a header/library mismatch. Returns a
/// NUL-terminated string with static lifetime, owned by flux (never free it), never NULL.
///
/// Thread safety: safe to call from any thread.
#[no_mangle]
pub extern "C" fn flux_version() -> *const c_char {
    ffi_guard!(on_panic = CARGO_VERSION.as_ptr().cast(), {
        CARGO_VERSION.as_ptr().cast()
    })
}
