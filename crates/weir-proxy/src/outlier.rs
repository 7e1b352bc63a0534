//! The timer side of passive outlier detection: re-admit ejected endpoints when their time is
//! up, and run the per-interval detectors.
//!
//! Ejections happen inline on the request path ([`weir_health::OutlierDetector::record`]); this
//! task only ends them. It sleeps until the earliest deadline any cluster of the current
//! snapshot reported, and is woken early when a new ejection may have moved that deadline, so a
//! re-admission happens on time rather than at the next coarse tick.

use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use weir_core::Nanos;

use crate::snapshot::SnapshotHandle;

/// Wakes every sweeper in the process: a new ejection has a deadline they may not know.
static WAKE: Notify = Notify::const_new();

/// Longest sleep between sweeps, so a snapshot swapped in by a reload is picked up.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Tells the sweepers that an ejection happened.
pub(crate) fn ejected() {
    WAKE.notify_waiters();
}

/// Sweeps the outlier detectors of the current snapshot until `shutdown` fires.
pub(crate) async fn sweep_loop(snapshots: SnapshotHandle, shutdown: CancellationToken) {
    loop {
        // Registered before the sweep, so an ejection during it still wakes the sleep below.
        let woken = WAKE.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let snapshot = snapshots.load();
        let mut sleep = MAX_SLEEP;
        for cluster in snapshot.clusters() {
            if let Some((next_due, now)) = cluster.sweep_outliers() {
                sleep = sleep.min(until(next_due, now));
            }
        }
        drop(snapshot);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = woken => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

fn until(due: Nanos, now: Nanos) -> Duration {
    Duration::from_nanos(due.saturating_sub(now))
}
