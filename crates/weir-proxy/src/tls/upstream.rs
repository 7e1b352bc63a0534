//! TLS from weir to a cluster's endpoints: the client config (roots, optional client
//! certificate, ALPN for the cluster's protocol) and the handshake step of a connect. The CA
//! and client certificate files are watched like a listener's certificates
//! ([`UpstreamTls::refresh`]): a change swaps the config new connections use.
//!
//! Without `ca:`, certificates are verified against the roots `roots:` chooses (see
//! [`super::roots`]): the system store by default, or Mozilla's list compiled in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use weir_config::{RootStore, UpstreamProtocol, UpstreamTlsConfig};
use weir_core::{Error, ErrorKind};

use super::watch::{Watched, frames, push_framed};
use super::{certs, roots};
use crate::CompileError;

/// A cluster's TLS client side. Two are equal when built from the same config and files, so a
/// reload that changes nothing keeps the pooled connections.
pub(crate) struct UpstreamTls {
    /// The client config new connections (and the cluster's health checks) use; swapped when
    /// the watcher sees the CA or client certificate files change.
    config: Arc<ArcSwap<ClientConfig>>,
    /// SNI and the name verified; `None`: each endpoint's IP address.
    server_name: Option<ServerName<'static>>,
    cfg: UpstreamTlsConfig,
    protocol: UpstreamProtocol,
    /// `clusters[i].tls`, for errors and log lines.
    path: String,
    /// The CA and client certificate files, in [`watched_files`] order.
    watched: Watched,
}

/// The contents of the files a cluster's `tls:` names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Files<'a> {
    ca: Option<&'a [u8]>,
    cert: Option<&'a [u8]>,
    key: Option<&'a [u8]>,
}

/// Accepts any endpoint certificate (`insecure_skip_verify: true`); handshake signatures are
/// still checked, so the endpoint must hold the key of the certificate it sent.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

// === impl UpstreamTls ===

impl UpstreamTls {
    /// Builds the client side from `cfg` (at YAML path `path`, `clusters[i].tls`), reading its
    /// files; `protocol` decides the ALPN offer (`h2` or `http/1.1`).
    pub(crate) fn compile(
        cfg: &UpstreamTlsConfig,
        protocol: UpstreamProtocol,
        path: &str,
    ) -> Result<Self, CompileError> {
        let err = |key: &str, reason: String| CompileError {
            path: format!("{path}.{key}"),
            reason,
        };
        let mut contents = Vec::new();
        for (key, file) in watched_files(cfg) {
            push_framed(&mut contents, &certs::read(&file).map_err(|r| err(key, r))?);
        }
        let config = client_config(cfg, protocol, path, files(cfg, &contents))?;
        let server_name = match &cfg.sni {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|e| err("sni", format!("{name:?} is not a server name: {e}")))?,
            ),
            None => None,
        };
        let watched = Watched::new(
            watched_files(cfg).into_iter().map(|(_, f)| f).collect(),
            contents,
            None,
        );
        Ok(Self {
            config: Arc::new(ArcSwap::from_pointee(config)),
            server_name,
            cfg: cfg.clone(),
            protocol,
            path: path.to_owned(),
            watched,
        })
    }

    /// Counts reload failures into `previous`'s status (the same cluster's TLS in the snapshot
    /// before), so the count survives a reload; a failure it reported is over, since this
    /// compile just loaded the files.
    pub(crate) fn carry_status(mut self, previous: Option<&UpstreamTls>) -> Self {
        if let Some(p) = previous {
            self.watched.carry(p.watched.status());
        }
        self
    }

    /// Reload failures reported for the CA and client certificate files, and the reason of the
    /// last one still unresolved.
    pub(crate) fn reload_failures(&self) -> (u64, Option<String>) {
        let status = self.watched.status();
        (status.failures(), status.last_error())
    }

    /// The client config (roots or no verification, client certificate, ALPN for the cluster's
    /// protocol), kept current by the watcher, and the server name (`None`: each endpoint's IP
    /// address), for whatever else talks to the cluster's endpoints (health checks).
    pub(crate) fn client(&self) -> (Arc<ArcSwap<ClientConfig>>, Option<ServerName<'static>>) {
        (Arc::clone(&self.config), self.server_name.clone())
    }

    /// Looks at the CA and client certificate files and, if they changed, swaps in a client
    /// config built from them for new connections. Files that do not load keep the old config
    /// (see [`Watched`]). Returns whether it swapped.
    pub(crate) async fn refresh(&self) -> bool {
        let Some(contents) = self.watched.changed(&self.path).await else {
            return false;
        };
        let swapped = client_config(
            &self.cfg,
            self.protocol,
            &self.path,
            files(&self.cfg, &contents),
        )
        .map(|config| self.config.store(Arc::new(config)))
        .map_err(|e| e.to_string());
        let ok = swapped.is_ok();
        self.watched.built(
            contents,
            swapped,
            &self.path,
            "CA or client certificate files",
        );
        ok
    }

    /// Runs the TLS handshake on `tcp` (connected to `addr`) within `timeout`. A failed or
    /// timed-out handshake is a failed connect (502), never retried on the same connection.
    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, Error> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let connector = TlsConnector::from(self.config.load_full());
        match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(Error::new(
                ErrorKind::ConnectFailed,
                format!("TLS handshake with {addr} failed"),
            )
            .with_cause(e)),
            Err(_) => Err(Error::new(
                ErrorKind::ConnectTimeout,
                format!("TLS handshake with {addr} timed out after {timeout:?}"),
            )),
        }
    }
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
            || (self.cfg == other.cfg
                && self.protocol == other.protocol
                && *self.watched.seen() == *other.watched.seen())
    }
}

impl Eq for UpstreamTls {}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("config", &self.cfg)
            .finish()
    }
}

/// Builds the client config of `cfg` from the contents of its `files`.
fn client_config(
    cfg: &UpstreamTlsConfig,
    protocol: UpstreamProtocol,
    path: &str,
    files: Files<'_>,
) -> Result<ClientConfig, CompileError> {
    let err = |key: &str, reason: String| CompileError {
        path: format!("{path}.{key}"),
        reason,
    };
    let provider = certs::provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| CompileError {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    let builder = if cfg.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(Arc::clone(&provider))))
    } else {
        let roots = match (&cfg.ca, files.ca) {
            (Some(ca), Some(pem)) => Arc::new(certs::roots(pem, ca).map_err(|r| err("ca", r))?),
            _ => match cfg.roots.unwrap_or_default() {
                RootStore::System => roots::system().map_err(|r| err("roots", r))?,
                RootStore::Webpki => roots::webpki(),
            },
        };
        builder.with_root_certificates(roots)
    };
    let mut config = match (&cfg.client_cert, files.cert, files.key) {
        (Some(cc), Some(cert_pem), Some(key_pem)) => {
            let chain = certs::chain(cert_pem, &cc.cert).map_err(|r| err("client_cert.cert", r))?;
            let key = certs::key(key_pem, &cc.key).map_err(|r| err("client_cert.key", r))?;
            // Checked like a listener's certificate (expiry, key match) so a bad file is
            // named at load rather than failing every handshake.
            certs::certified(chain.clone(), key.clone_key(), &cc.cert, &cc.key, &[]).map_err(
                |e| {
                    err(
                        if e.in_key {
                            "client_cert.key"
                        } else {
                            "client_cert.cert"
                        },
                        e.reason,
                    )
                },
            )?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| err("client_cert", e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match protocol {
        UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
    };
    Ok(config)
}

/// The files a cluster's TLS reads, with their keys in `tls:`: the CA (unless verification is
/// off), then the client certificate and key.
fn watched_files(cfg: &UpstreamTlsConfig) -> Vec<(&'static str, PathBuf)> {
    let mut out = Vec::new();
    if let Some(ca) = cfg.ca.as_ref().filter(|_| !cfg.insecure_skip_verify) {
        out.push(("ca", ca.clone()));
    }
    if let Some(cc) = &cfg.client_cert {
        out.push(("client_cert.cert", cc.cert.clone()));
        out.push(("client_cert.key", cc.key.clone()));
    }
    out
}

/// The files of [`watched_files`] in their framed `contents`.
fn files<'a>(cfg: &UpstreamTlsConfig, contents: &'a [u8]) -> Files<'a> {
    let mut frames = frames(contents).into_iter();
    let ca = cfg
        .ca
        .as_ref()
        .filter(|_| !cfg.insecure_skip_verify)
        .and_then(|_| frames.next());
    let (cert, key) = match cfg.client_cert {
        Some(_) => (frames.next(), frames.next()),
        None => (None, None),
    };
    Files { ca, cert, key }
}

// === impl NoVerification ===

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
