//! Build script: stamps the binary with its build information (git revision, build date, rustc and
//! target) for `--version` and `vram_exporter_build_info`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    emit_build_info();
}

/// Sets `VRAM_BUILD_REVISION`, `VRAM_BUILD_DATE`, `VRAM_BUILD_RUSTC` and `VRAM_BUILD_TARGET` for
/// the crate (read with `env!`).
///
/// The revision is `VRAM_EXPORTER_REVISION` when set (a packager building from a tarball), else the
/// abbreviated commit of the git checkout, else `unknown` (a tarball without `.git`). The date is
/// `SOURCE_DATE_EPOCH` when set (reproducible builds), else now, in UTC. The script reruns only when
/// those variables, the checked-out commit (`HEAD`, the branch's ref, packed refs) or this file
/// change, not on every source edit.
fn emit_build_info() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VRAM_EXPORTER_REVISION");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");

    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let revision = match std::env::var("VRAM_EXPORTER_REVISION") {
        Ok(r) if !r.trim().is_empty() => r.trim().to_string(),
        _ => git_revision(&manifest_dir).unwrap_or_else(|| "unknown".into()),
    };
    let date = build_date();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version =
        command_output(Command::new(rustc).arg("--version")).unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());

    println!(
        "cargo:rustc-env=VRAM_BUILD_REVISION={}",
        one_line(&revision)
    );
    println!("cargo:rustc-env=VRAM_BUILD_DATE={date}");
    println!(
        "cargo:rustc-env=VRAM_BUILD_RUSTC={}",
        one_line(&rustc_version)
    );
    println!("cargo:rustc-env=VRAM_BUILD_TARGET={}", one_line(&target));
}

/// The abbreviated commit of the checkout at `dir`, watching the files that change with it.
fn git_revision(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| command_output(Command::new("git").current_dir(dir).args(args));
    // `.git` may be a directory or (in a worktree) a file pointing elsewhere: ask git where it is.
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?);
    let common_dir = git(&["rev-parse", "--git-common-dir"])
        .map(|d| absolute(dir, &d))
        .unwrap_or_else(|| git_dir.clone());
    // Watch only files that exist (cargo reruns every build for a missing one): HEAD, the branch's
    // loose ref, packed refs and this checkout's reflog, which every commit here appends to.
    let head = git_dir.join("HEAD");
    let mut watched = vec![
        head.clone(),
        common_dir.join("packed-refs"),
        git_dir.join("logs/HEAD"),
    ];
    if let Some(reference) = std::fs::read_to_string(&head)
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
    {
        watched.push(common_dir.join(reference));
    }
    for file in watched.iter().filter(|f| f.is_file()) {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}

fn absolute(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The build date as RFC 3339 UTC (`2026-12-01T00:10:00Z`).
fn build_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

fn command_output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// A value that cannot break the `cargo:` line it is printed on.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
