//! TLS for the HTTP and gRPC probes of a cluster with upstream `tls:`.
//!
//! A probe that spoke plaintext to a TLS-only endpoint would fail for the wrong reason (or pass
//! when traffic cannot get through), so probes use the cluster's own client config — roots or
//! no verification, client certificate, server name — as the data plane built it and keeps it
//! current (a rotated CA or client certificate reaches the probes too); only the ALPN offer is
//! set to what the probe speaks (`h2` for gRPC and HTTP/2, `http/1.1` otherwise).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use weir_config::{HealthCheckConfig, ProbeKind, UpstreamProtocol};

use super::{connect, io_detail};

/// A cluster's TLS client side, as its probes use it.
#[derive(Debug, Clone)]
pub struct ProbeTls {
    config: Arc<ArcSwap<ClientConfig>>,
    server_name: Option<ServerName<'static>>,
    /// The ALPN protocol the probe speaks, offered instead of the cluster's.
    alpn: Option<Vec<u8>>,
}

// === impl ProbeTls ===

impl ProbeTls {
    /// TLS with the cluster's client `config` (what its upstream connections use, as the data
    /// plane keeps it current), verifying and sending `server_name`, or each endpoint's IP
    /// address when `None`.
    pub fn new(
        config: Arc<ArcSwap<ClientConfig>>,
        server_name: Option<ServerName<'static>>,
    ) -> Self {
        Self {
            config,
            server_name,
            alpn: None,
        }
    }

    /// The same, offering the ALPN protocol the probe `check` speaks over `protocol`.
    pub(crate) fn for_probe(&self, check: &HealthCheckConfig, protocol: UpstreamProtocol) -> Self {
        let alpn: &[u8] = match (check.probe(), protocol) {
            (Some(ProbeKind::Grpc(_)), _) | (_, UpstreamProtocol::Http2) => b"h2",
            _ => b"http/1.1",
        };
        Self {
            alpn: Some(alpn.to_vec()),
            ..self.clone()
        }
    }

    /// Connects to `addr` and runs the handshake; a failure says why (`invalid peer
    /// certificate: UnknownIssuer`, `received fatal alert: ...`).
    pub(crate) async fn connect(&self, addr: SocketAddr) -> Result<TlsStream<TcpStream>, String> {
        let tcp = connect(addr).await?;
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let current = self.config.load_full();
        let config = match &self.alpn {
            Some(alpn) if current.alpn_protocols != [alpn.as_slice()] => {
                let mut config = (*current).clone();
                config.alpn_protocols = vec![alpn.clone()];
                Arc::new(config)
            }
            _ => current,
        };
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {}", io_detail(&e)))
    }

    /// The host a request names when the check sets none: the server name, else `addr`.
    pub(crate) fn authority(&self, addr: SocketAddr) -> String {
        match &self.server_name {
            Some(ServerName::DnsName(name)) => name.as_ref().to_owned(),
            _ => addr.to_string(),
        }
    }
}

impl PartialEq for ProbeTls {
    /// The same client config (the data plane keeps one per unchanged `tls:` block and files).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
            && self.server_name == other.server_name
            && self.alpn == other.alpn
    }
}
