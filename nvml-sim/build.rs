//! Gives the shared library the SONAME `libnvidia-ml.so.1`, the name real NVML clients dlopen.
//!
//! A Rust cdylib has no SONAME by default; with one, the library can be dropped into an
//! `LD_LIBRARY_PATH` directory (as a copy or a symlink) and pass for the real driver library.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnvidia-ml.so.1");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
