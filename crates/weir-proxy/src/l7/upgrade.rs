//! Protocol upgrades (WebSocket and friends) passed through as a byte tunnel.
//!
//! After the endpoint answers `101 Switching Protocols`, both HTTP/1.1 connections stop being
//! HTTP: we forward the 101 downstream, wait for hyper to hand over both raw connections and
//! copy bytes both ways until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::ExchangeGuards;
use crate::server::ConnInfo;

/// Spawns the tunnel between the downstream and upstream connections once both have upgraded.
/// It is tracked with the proxy's tasks, so a graceful shutdown waits for it, and it ends when
/// the shutdown grace period runs out.
pub(crate) fn tunnel(
    downstream: OnUpgrade,
    upstream: OnUpgrade,
    held: ExchangeGuards,
    conn: &ConnInfo,
) {
    let hard_stop = conn.hard_stop.clone();
    conn.tasks.spawn(async move {
        // The session counts as in flight on the endpoint (and against the cluster's
        // max_requests) for as long as it lasts.
        let _held = held;
        let (down, up) = match tokio::try_join!(downstream, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut down, &mut up) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "upgraded tunnel ended with an error");
                }
            }
            () = hard_stop.cancelled() => tracing::debug!("upgraded tunnel closed at the end of the shutdown grace"),
        }
    });
}
