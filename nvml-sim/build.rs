//! Gives the shared library the SONAME `libnvidia-ml.so.1`, the name real NVML clients dlopen.
//!
//! A Rust cdylib has no SONAME by default; with one, the library can be dropped into an
//! `LD_LIBRARY_PATH` directory (as a copy or a symlink) and pass for the real driver library.
//! It is also linked `-z nodelete`: once loaded it stays loaded, so a client that dlcloses and
//! reloads it between init retries (nvml-wrapper does) keeps the load time and the init-attempt
//! count that `init_failure` faults are measured against.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnvidia-ml.so.1");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
