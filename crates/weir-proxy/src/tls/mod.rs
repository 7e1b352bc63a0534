//! TLS termination on HTTP listeners and TLS to endpoints, with rustls (ring provider).
//!
//! weir terminates TLS so it can route HTTPS by path and header like plain HTTP: a listener's
//! `tls:` block becomes a [`ListenerTls`] (certificates chosen by SNI, ALPN `h2`/`http/1.1`,
//! optional client certificates) compiled into the snapshot; a cluster's `tls:` block becomes
//! an [`UpstreamTls`] used by the connect step of its pools. Certificates are read and checked
//! when the snapshot compiles (so every reload picks up rotated files) and, between reloads,
//! [`watch_loop`] looks at the files four times a second and swaps in changed certificates.
//! See `docs/tls.md`.

mod certs;
mod identity;
mod listener;
mod roots;
mod upstream;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

pub(crate) use listener::ListenerTls;
pub(crate) use upstream::UpstreamTls;

use crate::snapshot::Listener;
use crate::{Snapshot, SnapshotHandle};

/// The client config for an `https://` OTLP collector: verified against the PEM bundle `ca`
/// (a file path) or, without one, the system's trust store; HTTP/1.1 by ALPN.
pub(crate) fn collector_client_config(ca: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let root_store = match ca {
        Some(path) => {
            let file = std::path::Path::new(path);
            let pem = std::fs::read(file).map_err(|e| format!("cannot read {path}: {e}"))?;
            Arc::new(certs::roots(&pem, file)?)
        }
        None => roots::system()?,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(certs::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(root_store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How often the certificate, key and CA files are looked at (a `stat` each; files are read
/// only when one moved): often enough that a rotation serves within a second.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Certificate, key or CA files of one listener or cluster that changed on disk but did not
/// load (the previous ones kept serving), for `/metrics` and `/listeners`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsReloadFailures {
    /// `true` for a listener's certificates and client CA, `false` for a cluster's CA and
    /// client certificate.
    pub listener: bool,
    /// The listener's or cluster's name.
    pub name: Arc<str>,
    /// Failures reported (each after [`SETTLE`](watch::SETTLE) of not loading), counted across
    /// config reloads.
    pub failures: u64,
    /// Why the last one failed, while no later change has loaded.
    pub last_error: Option<String>,
}

/// What a TLS handshake told about the client, kept for the connection's requests.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peer {
    /// The verified client certificate's identity (`Subject="…";URI=…;DNS=…`, see
    /// [`identity`]), when one was given.
    pub(crate) identity: Option<HeaderValue>,
}

/// Completes the server side of the handshake on `stream` within `timeout`; `None` when it
/// fails (logged at debug: scanners and clients that give up are routine).
pub(crate) async fn accept(
    tls: &ListenerTls,
    stream: TcpStream,
    timeout: Duration,
) -> Option<(TlsStream<TcpStream>, Peer)> {
    let stream = match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(?timeout, "TLS handshake timed out");
            return None;
        }
    };
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| identity::identity(leaf))
        .and_then(|id| HeaderValue::try_from(id).ok());
    Some((stream, Peer { identity }))
}

/// Every [`WATCH_INTERVAL`], re-reads the certificate and client CA files of every TLS listener
/// and the CA and client certificate files of every TLS cluster of the current snapshot, and
/// swaps in those that changed, until `shutdown`. First starts reading the system root store
/// ahead ([`roots::warm`]).
pub(crate) async fn watch_loop(snapshots: SnapshotHandle, shutdown: CancellationToken) {
    // Started with the proxy: the system store is read ahead for the first compile that needs
    // it (a reload adding a cluster with `roots: system`), which then finds it ready.
    roots::warm();
    let mut ticks = tokio::time::interval(WATCH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let snapshot = snapshots.load();
        for listener in &snapshot.listeners {
            if let Listener::Http(http) = listener
                && let Some(tls) = &http.tls
            {
                tls.refresh().await;
                tls.refresh_client_ca().await;
            }
        }
        for cluster in &snapshot.clusters {
            if let Some(tls) = &cluster.tls {
                tls.refresh().await;
            }
        }
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// The reload failures of every TLS listener, then of every TLS cluster, in config order.
    pub fn tls_reload_failures(&self) -> Vec<TlsReloadFailures> {
        let listeners = self
            .listeners
            .iter()
            .zip(&self.listener_names)
            .filter_map(|(l, name)| match l {
                Listener::Http(http) => {
                    let (failures, last_error) = http.tls.as_ref()?.reload_failures();
                    Some(TlsReloadFailures {
                        listener: true,
                        name: Arc::clone(name),
                        failures,
                        last_error,
                    })
                }
                _ => None,
            });
        let clusters = self.clusters.iter().filter_map(|c| {
            let (failures, last_error) = c.tls.as_ref()?.reload_failures();
            Some(TlsReloadFailures {
                listener: false,
                name: Arc::clone(&c.name),
                failures,
                last_error,
            })
        });
        listeners.chain(clusters).collect()
    }
}
