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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
/// the compiled TLS of successive snapshots of the same listener or cluster. What is still
/// settling is not shared: it belongs to the [`Watched`] that saw the change, so a reload that
/// read files which load does not inherit a failure of files it never saw.
#[derive(Debug, Default)]
pub(crate) struct ReloadStatus {
    failures: AtomicU64,
    last_error: parking_lot::Mutex<Option<String>>,
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
    /// A change of `files` that does not load yet.
    pending: parking_lot::Mutex<Option<Pending>>,
    /// Whether the watch loop looked through this watcher yet, i.e. its snapshot is current.
    polled: AtomicBool,
    status: Arc<ReloadStatus>,
}

// === impl Stamps ===

impl Stamps {
    /// Whether `files` may have changed since the last call: a stamp moved, a file cannot be
    /// `stat`ed, or one was modified within [`HOT`]. Records the new stamps. The `stat`s run
    /// together on one blocking thread (a slow file system must not stall a runtime worker,
    /// and one hand-off per set costs less than one per file). No files (a cluster that trusts
    /// the system store and sends no client certificate): nothing to `stat`, no hand-off.
    pub(crate) async fn moved(&self, files: &Arc<[PathBuf]>) -> bool {
        if files.is_empty() {
            return false;
        }
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

    /// Why the last reported failure happened; `None` once files loaded after it (a change
    /// the watcher loaded, or a reload that read them).
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// The files loaded: the last reported failure is over (it stays counted).
    fn loaded(&self) {
        *self.last_error.lock() = None;
    }

    /// A failure is reported: one more, and why.
    fn reported(&self, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(error.to_owned());
    }
}

// === impl Watched ===

impl Watched {
    /// Watches `files`, whose contents (framed by [`read_framed`]) are `seen` and were just
    /// loaded by a compile; `status` is the previous snapshot's for the same block, if any. Its
    /// count carries over, but a failure it reported is over since these files loaded, and
    /// nothing settles yet.
    pub(crate) fn new(
        files: Vec<PathBuf>,
        seen: Vec<u8>,
        status: Option<&Arc<ReloadStatus>>,
    ) -> Self {
        let status = status.map_or_else(Arc::default, Arc::clone);
        status.loaded();
        Self {
            files: files.into(),
            stamps: Stamps::default(),
            seen: parking_lot::Mutex::new(seen),
            pending: parking_lot::Mutex::new(None),
            polled: AtomicBool::new(false),
            status,
        }
    }

    /// Counts reload failures into `status` (the previous snapshot's for the same block) from
    /// now on, as [`Watched::new`] would have: the files this watcher starts from loaded.
    pub(crate) fn carry(&mut self, status: &Arc<ReloadStatus>) {
        status.loaded();
        self.status = Arc::clone(status);
    }

    /// The reload failures of the block, shared across reloads.
    pub(crate) fn status(&self) -> &Arc<ReloadStatus> {
        &self.status
    }

    /// The contents the current config was built from (or last failed to be built from).
    pub(crate) fn seen(&self) -> parking_lot::MutexGuard<'_, Vec<u8>> {
        self.seen.lock()
    }

    /// The files' new contents when they changed since they were last seen; `None` when they
    /// did not (or one is missing for a moment, as in a rename). Reports, at `at`, a broken
    /// change that has had time to settle.
    pub(crate) async fn changed(&self, at: &str) -> Option<Vec<u8>> {
        if !self.polled.swap(true, Ordering::Relaxed) {
            // The first look since the compile that loaded these files, now current: a failure
            // reported meanwhile came from the watcher of the snapshot it replaced, whose last
            // tick may have overlapped the reload, and is over too.
            self.status.loaded();
        }
        let contents = if self.stamps.moved(&self.files).await {
            read_framed(&self.files).await
        } else {
            None
        };
        match contents {
            Some(c) if *self.seen.lock() != c => {
                self.changed_again();
                Some(c)
            }
            _ => {
                if let Some(e) = self.tick() {
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
                *self.pending.lock() = None;
                self.status.loaded();
                tracing::info!(at, "{what} changed on disk; new handshakes use them");
            }
            Err(e) => match self.failed(e) {
                Some(e) => report(at, &e),
                None => tracing::debug!(
                    at,
                    "{what} changed on disk but do not load yet; looking again"
                ),
            },
        }
    }
}

impl Watched {
    /// The files changed again: a failure already reported is over, so the next broken change
    /// settles (and is reported) on its own.
    fn changed_again(&self) {
        let mut pending = self.pending.lock();
        if pending.as_ref().is_some_and(|p| p.reported) {
            *pending = None;
        }
    }

    /// A changed set of files did not load with `error`; see [`Watched::tick`].
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
        self.status.reported(&p.error);
        Some(p.error.clone())
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

    /// Makes the change `w` is settling look [`SETTLE`] old.
    fn settled(w: &Watched) {
        if let Some(p) = w.pending.lock().as_mut() {
            p.since -= SETTLE;
        }
    }

    /// A watcher of `files`, as a compile that read them makes it.
    async fn compiled(files: &[PathBuf], status: Option<&Arc<ReloadStatus>>) -> Watched {
        let seen = read_framed(files).await.unwrap();
        let w = Watched::new(files.to_vec(), seen, status);
        assert_eq!(w.changed("t").await, None, "first look: as compiled");
        w
    }

    #[tokio::test]
    async fn a_failure_is_reported_once_after_settling() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cert.pem");
        std::fs::write(&file, "one").unwrap();
        let w = compiled(std::slice::from_ref(&file), None).await;
        std::fs::write(&file, "broken").unwrap();
        let c = w.changed("t").await.unwrap();
        w.built(c, Err("key does not match".into()), "t", "certificates");
        assert_eq!(w.status().failures(), 0, "settling");
        settled(&w);
        assert_eq!(w.tick().as_deref(), Some("key does not match"));
        assert_eq!(w.tick(), None, "reported once");
        assert_eq!(w.status().failures(), 1);
        assert_eq!(
            w.status().last_error().as_deref(),
            Some("key does not match")
        );
        // Another broken change settles again, then one that loads ends it.
        std::fs::write(&file, "broken again").unwrap();
        let c = w.changed("t").await.unwrap();
        w.built(c, Err("expired".into()), "t", "certificates");
        assert_eq!(w.status().failures(), 1, "a new change settles again");
        std::fs::write(&file, "two").unwrap();
        let c = w.changed("t").await.unwrap();
        w.built(c, Ok(()), "t", "certificates");
        settled(&w);
        assert_eq!(w.tick(), None, "loaded: nothing pending");
        assert_eq!((w.status().failures(), w.status().last_error()), (1, None));
    }

    /// Issue #6: the certificate is written, a poll sees it with the old key (settling), the key
    /// is written, and a reload compiles both before the next poll. The reload's watcher finds
    /// the files as it loaded them; the old watcher's settling change must not be reported.
    #[tokio::test]
    async fn a_reload_that_loaded_the_files_does_not_report_a_settling_change() {
        let dir = tempfile::tempdir().unwrap();
        let files = [dir.path().join("site.pem"), dir.path().join("site.key")];
        std::fs::write(&files[0], "cert one").unwrap();
        std::fs::write(&files[1], "key one").unwrap();
        let old = compiled(&files, None).await;
        std::fs::write(&files[0], "cert two").unwrap();
        let c = old.changed("t").await.unwrap();
        old.built(c, Err("key does not match".into()), "t", "certificates");
        std::fs::write(&files[1], "key two").unwrap();
        // The reload: a compile that read (and loaded) both files.
        let new = compiled(&files, Some(old.status())).await;
        settled(&old);
        for _ in 0..3 {
            assert_eq!(new.changed("t").await, None);
        }
        assert_eq!(new.tick(), None);
        assert_eq!(
            (new.status().failures(), new.status().last_error()),
            (0, None)
        );
    }

    /// A reported failure that a reload fixes is over at once (not at the next change), and
    /// the count carries over.
    #[tokio::test]
    async fn a_reload_that_loaded_the_files_ends_a_reported_failure() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "ca one").unwrap();
        let old = compiled(std::slice::from_ref(&file), None).await;
        std::fs::write(&file, "garbage").unwrap();
        let c = old.changed("t").await.unwrap();
        old.built(c, Err("not PEM".into()), "t", "client CA");
        settled(&old);
        assert_eq!(old.changed("t").await, None);
        assert_eq!(old.status().last_error().as_deref(), Some("not PEM"));
        std::fs::write(&file, "ca two").unwrap();
        // The reload, by either way a status is carried.
        let new = compiled(std::slice::from_ref(&file), Some(old.status())).await;
        assert_eq!(
            (new.status().failures(), new.status().last_error()),
            (1, None)
        );
        assert!(Arc::ptr_eq(new.status(), old.status()), "one count");
        old.status().reported("again");
        let mut carried = compiled(std::slice::from_ref(&file), None).await;
        carried.carry(old.status());
        assert_eq!(
            (carried.status().failures(), carried.status().last_error()),
            (2, None)
        );
    }

    /// The old snapshot's watcher may be in its last tick while a reload compiles: a failure it
    /// reports then (counted: it was real) is over once the new watcher first looks.
    #[tokio::test]
    async fn a_report_overlapping_a_reload_is_over_at_the_new_watchers_first_look() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("site.pem");
        std::fs::write(&file, "one").unwrap();
        let old = compiled(std::slice::from_ref(&file), None).await;
        std::fs::write(&file, "broken").unwrap();
        let c = old.changed("t").await.unwrap();
        old.built(c, Err("not PEM".into()), "t", "certificates");
        settled(&old);
        std::fs::write(&file, "two").unwrap();
        let seen = read_framed(std::slice::from_ref(&file)).await.unwrap();
        let new = Watched::new(vec![file.clone()], seen, Some(old.status()));
        assert_eq!(
            old.tick().as_deref(),
            Some("not PEM"),
            "the old watcher's last tick"
        );
        assert_eq!(new.status().last_error().as_deref(), Some("not PEM"));
        assert_eq!(new.changed("t").await, None);
        assert_eq!(
            (new.status().failures(), new.status().last_error()),
            (1, None)
        );
    }

    #[tokio::test]
    async fn no_files_no_stat_and_no_blocking_hand_off() {
        let stamps = Stamps::default();
        let none: Arc<[PathBuf]> = Vec::new().into();
        // Ready on the first poll: nothing was handed to a blocking thread to wait for.
        let first = std::pin::pin!(stamps.moved(&none));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert_eq!(first.poll(&mut cx), std::task::Poll::Ready(false));
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
