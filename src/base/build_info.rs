//! What this binary is: version, git revision, build date, rustc and target, stamped by `build.rs`
//! (`emit_build_info`); read by `--version`, `vram_exporter_build_info` and the status page.

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The abbreviated git commit, `VRAM_EXPORTER_REVISION` at build time, or `unknown`.
pub const REVISION: &str = env!("VRAM_BUILD_REVISION");
/// When the binary was built (RFC 3339, UTC; `SOURCE_DATE_EPOCH` when set).
pub const DATE: &str = env!("VRAM_BUILD_DATE");
/// `rustc --version` of the compiler that built it.
pub const RUSTC: &str = env!("VRAM_BUILD_RUSTC");
/// The target triple it was built for.
pub const TARGET: &str = env!("VRAM_BUILD_TARGET");

/// `--version`'s text after the program name: the version on the first line, then one field a line.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nrevision: ",
    env!("VRAM_BUILD_REVISION"),
    "\nbuild date: ",
    env!("VRAM_BUILD_DATE"),
    "\nrustc: ",
    env!("VRAM_BUILD_RUSTC"),
    "\ntarget: ",
    env!("VRAM_BUILD_TARGET"),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_stamped() {
        assert!(LONG_VERSION.starts_with(VERSION));
        for field in [REVISION, DATE, RUSTC, TARGET] {
            assert!(!field.is_empty());
            assert!(!field.contains('\n'), "{field:?}");
        }
        assert!(DATE.ends_with('Z') && DATE.len() == 20, "{DATE}");
        assert!(RUSTC.starts_with("rustc "), "{RUSTC}");
    }
}
