//! Reload on file change: the config file is checked every interval and reloaded when its
//! contents differ from the last look.
//!
//! Polling the contents rather than subscribing to inotify events: it sees every way a file
//! gets replaced (in-place writes, an editor's rename, a Kubernetes ConfigMap's symlink swap)
//! with no platform code, and a config file is small enough to read once a second. A file that
//! is missing or unreadable for a moment is skipped, not reloaded.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Calls `reload` whenever the contents of `path` differ from `last` (the contents when
/// watching began), checking every `interval`, until `stop` fires.
pub(crate) async fn watch(
    path: PathBuf,
    mut last: Option<Vec<u8>>,
    interval: Duration,
    stop: CancellationToken,
    reload: impl Fn() + Send + 'static,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(file = %path.display(), ?interval, "watching the config file for changes");
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Ok(now) = tokio::fs::read(&path).await else {
            continue;
        };
        if last.as_deref() != Some(now.as_slice()) {
            last = Some(now);
            tracing::info!(file = %path.display(), "config file changed, reloading");
            reload();
        }
    }
}
