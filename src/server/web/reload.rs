//! Re-reads the web configuration when it, or a certificate, key or CA file it names, changes —
//! so rotated certificates and edited users take effect without a restart.
//!
//! One task polls every [`POLL`]: it hashes the content of the web configuration file and of the
//! files the file currently names (content, not mtime, so two writes within a second are both
//! seen). When the hash changes it loads the whole configuration again with the same checks as
//! at startup. A configuration that fails them is logged and the last good one stays in force: a
//! half-written certificate never takes the endpoint down, and the next write is tried again.
//! TLS cannot be switched on or off this way (the listener is chosen at startup); such a change
//! is refused with a log line saying a restart is needed.
//!
//! A reload never lowers security: a file that removes every user, turns TLS off, weakens client
//! certificate checks or opens the health endpoints, and a file that is empty or only comments
//! (what a truncate-then-write editor leaves halfway), is refused with a WARN line and the last
//! good configuration stays; restarting the exporter with such a file applies it. Every file is
//! read through `files::read_regular`, so a FIFO in place of one cannot hang the watcher (nor the
//! shutdown, which waits for it).
//!
//! SIGHUP (exporter-toolkit and Prometheus convention: "reload") makes the watcher check the
//! files at once instead of at its next tick. The watcher is supervised: after a panic it is
//! started again with the last good state (what it last saw and the posture in force).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::auth::Live;
use super::WebSettings;

/// How often the files are checked.
pub const POLL: Duration = Duration::from_secs(1);

/// What the watcher keeps between checks (and across a restart).
#[derive(Debug, Clone, Copy)]
struct Seen {
    fingerprint: u64,
    posture: super::Posture,
}

/// Starts the watcher, supervised; it runs until the returned task is aborted. `hangup` wakes it
/// for an immediate check (SIGHUP).
pub fn spawn(
    settings: &WebSettings,
    live: Arc<Live>,
    hangup: Arc<Notify>,
    components: &crate::base::supervise::ComponentMetrics,
) -> tokio::task::JoinHandle<()> {
    let path = settings.path.clone();
    let tls_on = settings.tls.is_some();
    // Taken now, before the first connection is served, so an edit made right after startup is
    // seen as one (a regular-file read of a few KiB; `read_regular` never blocks on a FIFO).
    let seen = Arc::new(Mutex::new(Seen {
        fingerprint: fingerprint_blocking(&path),
        posture: settings.posture,
    }));
    crate::base::supervise::supervise(
        crate::base::supervise::Component::WebReload,
        components,
        move || {
            tokio::spawn(watch(
                path.clone(),
                tls_on,
                seen.clone(),
                live.clone(),
                hangup.clone(),
            ))
        },
    )
}

async fn watch(
    path: PathBuf,
    tls_on: bool,
    seen: Arc<Mutex<Seen>>,
    live: Arc<Live>,
    hangup: Arc<Notify>,
) {
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = hangup.notified() => tracing::info!(
                file = %path.display(),
                "SIGHUP: checking the web configuration now"
            ),
        }
        let now = fingerprint(&path).await;
        let posture = {
            let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
            if now == s.fingerprint {
                continue;
            }
            s.fingerprint = now;
            s.posture
        };
        let p = path.clone();
        let loaded = tokio::task::spawn_blocking(move || WebSettings::load(&p)).await;
        match loaded {
            Ok(Ok(new)) if new.empty => tracing::warn!(
                file = %path.display(),
                "web configuration file is empty or only comments; keeping the last good one (restart the exporter to apply it)"
            ),
            Ok(Ok(new)) if new.posture.lowered_from(&posture).is_some() => tracing::warn!(
                file = %path.display(),
                reason = new.posture.lowered_from(&posture).unwrap_or_default(),
                "web configuration would lower security; keeping the last good one (restart the exporter to apply it)"
            ),
            Ok(Ok(new)) if new.tls.is_some() != tls_on => tracing::error!(
                file = %path.display(),
                "web configuration changed TLS from {} to {}; that needs a restart, keeping the running configuration",
                on_off(tls_on),
                on_off(!tls_on),
            ),
            Ok(Ok(new)) => {
                seen.lock().unwrap_or_else(|e| e.into_inner()).posture = new.posture;
                live.replace(new.access.clone(), new.tls.clone());
                tracing::info!(
                    file = %path.display(),
                    users = new.access.user_count(),
                    tls = tls_on,
                    "web configuration reloaded"
                );
            }
            Ok(Err(e)) => tracing::error!(
                file = %path.display(),
                error = %e,
                "web configuration is invalid; keeping the last good one"
            ),
            Err(e) => tracing::error!(error = %e, "web configuration reload failed"),
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// A hash of the web configuration file and of every file it names now.
async fn fingerprint(path: &Path) -> u64 {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || fingerprint_blocking(&path))
        .await
        .unwrap_or(0)
}

fn fingerprint_blocking(path: &Path) -> u64 {
    use crate::base::files::read_regular;
    let mut h = DefaultHasher::new();
    let text = read_regular(path, super::WEB_FILE_LIMIT).ok();
    text.hash(&mut h);
    for file in named_files(path, text.as_deref()) {
        file.hash(&mut h);
        read_regular(&file, super::PEM_FILE_LIMIT).ok().hash(&mut h);
    }
    h.finish()
}

/// The certificate, key and CA paths the file names, resolved as [`WebSettings::load`] does.
fn named_files(path: &Path, text: Option<&[u8]>) -> Vec<PathBuf> {
    let Some(raw) = text
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| super::parse(t).ok())
    else {
        return Vec::new();
    };
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    raw.tls_server_config
        .map(|t| {
            [t.cert_file, t.key_file, t.client_ca_file]
                .into_iter()
                .flatten()
                .filter(|f| !f.is_empty())
                .map(|f| base.join(f))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_named_files() {
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join("web.yml");
        std::fs::write(
            &web,
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n",
        )
        .unwrap();
        let a = fingerprint_blocking(&web);
        std::fs::write(dir.path().join("c.pem"), "one").unwrap();
        let b = fingerprint_blocking(&web);
        assert_ne!(a, b, "a named file appearing is a change");
        std::fs::write(dir.path().join("c.pem"), "two").unwrap();
        let c = fingerprint_blocking(&web);
        assert_ne!(b, c, "same length, new content is a change");
        std::fs::write(dir.path().join("other.pem"), "x").unwrap();
        assert_eq!(c, fingerprint_blocking(&web), "unnamed files are ignored");
        assert_eq!(
            named_files(&web, Some(b"tls_server_config:\n  cert_file: c.pem\n")),
            vec![dir.path().join("c.pem")]
        );
    }
}
