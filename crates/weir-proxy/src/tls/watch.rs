//! What the certificate watcher needs to be cheap, quick and quiet about half-done rotations.
//!
//! Cheap: every [`super::WATCH_INTERVAL`] the watcher `stat`s each file (following symlinks, so
//! a Kubernetes secret's `..data` swap is a new inode) and reads files only when a stamp moved
//! or while a file was modified very recently (file times can be as coarse as the kernel tick,
//! so two writes in one tick may share a stamp).
//!
//! Quiet: a certificate and its key are often written one after the other, so a poll can see
//! the new certificate with the old key. A rotation that does not load is therefore "settling"
//! first, retried on every poll, and only reported (an error in the log, one more in
//! `weir_tls_certificate_reload_failures_total` or `weir_tls_upstream_reload_failures_total`, the
//! reason in `/listeners`) when it is still broken [`SETTLE`] after it was first seen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How long a rotation may stay broken before it is reported as a failure.
pub(crate) const SETTLE: Duration = Duration::from_secs(2);

/// A file modified less than this long ago is read on every poll, whatever its stamp says.
const HOT: Duration = Duration::from_secs(2);

/// What `stat` says about one file: enough to tell a rewrite, a rename over it, or a symlink
/// swap from no change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
    ctime: (i64, i64),
}

/// The stamps of a set of files as last looked at.
#[derive(Debug, Default)]
pub(crate) struct Stamps {
    last: parking_lot::Mutex<Vec<Option<Stamp>>>,
}

/// Reload failures of one TLS block: how many were reported, and the last reason, shared by
/// the compiled TLS of successive snapshots of the same listener or cluster.
#[derive(Debug, Default)]
pub(crate) struct ReloadStatus {
    failures: AtomicU64,
    last_error: parking_lot::Mutex<Option<String>>,
    pending: parking_lot::Mutex<Option<Pending>>,
}

/// A change that does not load (yet).
#[derive(Debug)]
struct Pending {
    since: Instant,
    error: String,
    reported: bool,
}

/// A set of watched files: their stamps, their contents as last loaded (or last failed to
/// load), and the status of their reloads.
#[derive(Debug)]
pub(crate) struct Watched {
    files: Arc<[PathBuf]>,
    stamps: Stamps,
    seen: parking_lot::Mutex<Vec<u8>>,
    pub(crate) status: Arc<ReloadStatus>,
}

// === impl Stamps ===

impl Stamps {
    /// Whether `files` may have changed since the last call: a stamp moved, a file cannot be
    /// `stat`ed, or one was modified within [`HOT`]. Records the new stamps. The `stat`s run
    /// together on one blocking thread (a slow file system must not stall a runtime worker,
    /// and one hand-off per set costs less than one per file).
    pub(crate) async fn moved(&self, files: &Arc<[PathBuf]>) -> bool {
        let all = Arc::clone(files);
        let now = tokio::task::spawn_blocking(move || all.iter().map(|f| stamp(f)).collect())
            .await
            .unwrap_or_else(|_| vec![None; files.len()]);
        let hot = now.iter().any(|s| match s {
            None => true,
            Some(s) => s
                .mtime
                .and_then(|m| m.elapsed().ok())
                .is_none_or(|age| age < HOT),
        });
        let mut last = self.last.lock();
        let moved = *last != now;
        *last = now;
        moved || hot
    }
}

fn stamp(file: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(file).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: m.modified().ok(),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

// === impl ReloadStatus ===

impl ReloadStatus {
    /// Reload failures reported so far.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Why the last reported failure happened; `None` once a change loaded after it.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// A changed set of files loaded: nothing is pending any more.
    fn loaded(&self) {
        *self.pending.lock() = None;
        *self.last_error.lock() = None;
    }

    /// The files changed again: a failure already reported is over, so the next broken change
    /// settles (and is reported) on its own.
    fn changed(&self) {
        let mut pending = self.pending.lock();
        if pending.as_ref().is_some_and(|p| p.reported) {
            *pending = None;
        }
    }

    /// A changed set of files did not load with `error`; see [`ReloadStatus::tick`].
    fn failed(&self, error: String) -> Option<String> {
        {
            let mut pending = self.pending.lock();
            match pending.as_mut() {
                Some(p) => p.error = error,
                None => {
                    *pending = Some(Pending {
                        since: Instant::now(),
                        error,
                        reported: false,
                    });
                }
            }
        }
        self.tick()
    }

    /// The error to report now, once: the pending change has been broken for [`SETTLE`].
    fn tick(&self) -> Option<String> {
        let mut pending = self.pending.lock();
        let p = pending.as_mut()?;
        if p.reported || p.since.elapsed() < SETTLE {
            return None;
        }
        p.reported = true;
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(p.error.clone());
        Some(p.error.clone())
    }
}

// === impl Watched ===

impl Watched {
    /// Watches `files`, whose contents (framed by [`read_framed`]) are `seen`; `status` is the
    /// previous snapshot's for the same block, if any.
    pub(crate) fn new(
        files: Vec<PathBuf>,
        seen: Vec<u8>,
        status: Option<&Arc<ReloadStatus>>,
    ) -> Self {
        Self {
            files: files.into(),
            stamps: Stamps::default(),
            seen: parking_lot::Mutex::new(seen),
            status: status.map_or_else(Arc::default, Arc::clone),
        }
    }

    /// The contents the current config was built from (or last failed to be built from).
    pub(crate) fn seen(&self) -> parking_lot::MutexGuard<'_, Vec<u8>> {
        self.seen.lock()
    }

    /// The files' new contents when they changed since they were last seen; `None` when they
    /// did not (or one is missing for a moment, as in a rename). Reports, at `at`, a broken
    /// change that has had time to settle.
    pub(crate) async fn changed(&self, at: &str) -> Option<Vec<u8>> {
        let contents = if self.stamps.moved(&self.files).await {
            read_framed(&self.files).await
        } else {
            None
        };
        match contents {
            Some(c) if *self.seen.lock() != c => {
                self.status.changed();
                Some(c)
            }
            _ => {
                if let Some(e) = self.status.tick() {
                    report(at, &e);
                }
                None
            }
        }
    }

    /// Records what building `contents` gave: `Ok` swaps nothing here (the caller did) but ends
    /// any pending failure; `Err` keeps the old config serving and reports once it settled.
    pub(crate) fn built(
        &self,
        contents: Vec<u8>,
        result: Result<(), String>,
        at: &str,
        what: &str,
    ) {
        *self.seen.lock() = contents;
        match result {
            Ok(()) => {
                self.status.loaded();
                tracing::info!(at, "{what} changed on disk; new handshakes use them");
            }
            Err(e) => match self.status.failed(e) {
                Some(e) => report(at, &e),
                None => tracing::debug!(
                    at,
                    "{what} changed on disk but do not load yet; looking again"
                ),
            },
        }
    }
}

fn report(at: &str, error: &str) {
    tracing::error!(
        at,
        "TLS files changed on disk but do not load; the previous ones stay in use: {error}"
    );
}

/// Reads every file, each framed by its length so that moving bytes from one file to the next
/// still counts as a change; `None` when one cannot be read.
pub(crate) async fn read_framed(files: &[PathBuf]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for f in files {
        push_framed(&mut out, &tokio::fs::read(f).await.ok()?);
    }
    Some(out)
}

/// Appends `bytes` to `out` as one frame.
pub(crate) fn push_framed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Splits framed contents back into the files.
pub(crate) fn frames(mut contents: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((len, rest)) = contents.split_first_chunk::<8>() {
        let len = usize::try_from(u64::from_le_bytes(*len)).unwrap_or(usize::MAX);
        let (file, rest) = rest.split_at(len.min(rest.len()));
        out.push(file);
        contents = rest;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]

    use super::*;

    #[tokio::test]
    async fn stamps_move_on_rewrite_rename_and_symlink_swap() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cert.pem");
        std::fs::write(&file, "one").unwrap();
        let files: Arc<[PathBuf]> = vec![file.clone()].into();
        let stamps = Stamps::default();
        assert!(stamps.moved(&files).await, "first look");
        // Renamed over: a new inode.
        let next = dir.path().join("next.pem");
        std::fs::write(&next, "two").unwrap();
        std::fs::rename(&next, &file).unwrap();
        assert!(stamps.moved(&files).await);
        // A symlink swapped to another target.
        let link = dir.path().join("link.pem");
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let files: Arc<[PathBuf]> = vec![link.clone()].into();
        stamps.moved(&files).await;
        let tmp = dir.path().join("link.tmp");
        std::os::unix::fs::symlink(&b, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
        assert!(stamps.moved(&files).await);
        // A missing file is worth another look.
        assert!(
            stamps
                .moved(&vec![dir.path().join("gone.pem")].into())
                .await
        );
    }

    #[test]
    fn a_failure_is_reported_once_after_settling() {
        let status = ReloadStatus::default();
        assert_eq!(status.failed("key does not match".into()), None, "settling");
        let settled = |s: &ReloadStatus| {
            if let Some(p) = s.pending.lock().as_mut() {
                p.since -= SETTLE;
            }
        };
        settled(&status);
        assert_eq!(status.tick().as_deref(), Some("key does not match"));
        assert_eq!(status.tick(), None, "reported once");
        assert_eq!(status.failures(), 1);
        assert_eq!(status.last_error().as_deref(), Some("key does not match"));
        status.changed();
        assert_eq!(
            status.failed("expired".into()),
            None,
            "a new change settles again"
        );
        status.loaded();
        settled(&status);
        assert_eq!(status.tick(), None, "loaded: nothing pending");
        assert_eq!((status.failures(), status.last_error()), (1, None));
    }

    #[test]
    fn frames_round_trip() {
        let mut c = Vec::new();
        push_framed(&mut c, b"cert");
        push_framed(&mut c, b"");
        push_framed(&mut c, b"key");
        assert_eq!(frames(&c), vec![&b"cert"[..], b"", b"key"]);
    }
}
