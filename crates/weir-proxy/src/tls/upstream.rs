//! TLS from weir to a cluster's endpoints: the client config (roots, optional client
//! certificate, ALPN for the cluster's protocol) and the handshake step of a connect.
//!
//! Default roots are `webpki-roots` (Mozilla's store compiled in): the same trust on every
//! machine and in every container, with no dependency on whether the image ships
//! `ca-certificates`. Internal endpoints normally name their own CA with `ca:` anyway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use weir_config::{UpstreamProtocol, UpstreamTlsConfig};
use weir_core::{Error, ErrorKind};

use super::certs;
use crate::CompileError;

/// A cluster's TLS client side. Two are equal when built from the same config and files, so a
/// reload that changes nothing keeps the pooled connections.
pub(crate) struct UpstreamTls {
    /// The client config the connector uses; health checks of the cluster use it too.
    config: Arc<ClientConfig>,
    connector: TlsConnector,
    /// SNI and the name verified; `None`: each endpoint's IP address.
    server_name: Option<ServerName<'static>>,
    source: (UpstreamTlsConfig, UpstreamProtocol, Vec<Vec<u8>>),
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
        let provider = certs::provider();
        let mut files = Vec::new();
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
            let roots = match &cfg.ca {
                Some(ca) => {
                    let pem = certs::read(ca).map_err(|r| err("ca", r))?;
                    let roots = certs::roots(&pem, ca).map_err(|r| err("ca", r))?;
                    files.push(pem);
                    roots
                }
                None => RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                },
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match &cfg.client_cert {
            Some(cc) => {
                let cert_pem = certs::read(&cc.cert).map_err(|r| err("client_cert.cert", r))?;
                let key_pem = certs::read(&cc.key).map_err(|r| err("client_cert.key", r))?;
                let chain =
                    certs::chain(&cert_pem, &cc.cert).map_err(|r| err("client_cert.cert", r))?;
                let key = certs::key(&key_pem, &cc.key).map_err(|r| err("client_cert.key", r))?;
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
                files.push(cert_pem);
                files.push(key_pem);
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| err("client_cert", e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match protocol {
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
            UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
        };
        let server_name = match &cfg.sni {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|e| err("sni", format!("{name:?} is not a server name: {e}")))?,
            ),
            None => None,
        };
        let config = Arc::new(config);
        Ok(Self {
            connector: TlsConnector::from(Arc::clone(&config)),
            config,
            server_name,
            source: (cfg.clone(), protocol, files),
        })
    }

    /// The client config (roots or no verification, client certificate, ALPN for the cluster's
    /// protocol) and the server name (`None`: each endpoint's IP address), for whatever else
    /// talks to the cluster's endpoints (health checks).
    pub(crate) fn client(&self) -> (Arc<ClientConfig>, Option<ServerName<'static>>) {
        (Arc::clone(&self.config), self.server_name.clone())
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
        match tokio::time::timeout(timeout, self.connector.connect(name, tcp)).await {
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
        self.source == other.source
    }
}

impl Eq for UpstreamTls {}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("config", &self.source.0)
            .finish()
    }
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
