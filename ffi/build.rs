//! Gives libflux.so its SONAME, `libflux.so.MAJOR`, so that programs linked against it record
//! that name and keep loading it across compatible upgrades (`make install` installs the
//! versioned file with the `libflux.so.MAJOR` and `libflux.so` links beside it).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The Python extension module is a cdylib too, but it is loaded by path, never linked
    // against: a SONAME there would only be misleading, so it gets none.
    if std::env::var_os("CARGO_FEATURE_PYTHON").is_some() {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libflux.so.{major}");
    }
}
