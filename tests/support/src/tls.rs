//! TLS endpoints and clients for TLS passthrough and termination tests: a throwaway certificate
//! authority (leaf, expired and client certificates, as DER or PEM files), a TLS server that
//! identifies itself and echoes, and a client that verifies against the CA.
//!
//! Passthrough is proven end to end only by a real handshake: the client verifies the server's
//! certificate (issued by [`TestCa`] for the names the mock serves) and the handshake transcript
//! covers every byte of the ClientHello, so a handshake through the proxy succeeds only if the
//! proxy forwarded the bytes untouched to the endpoint that holds the right certificate.
//! Everything uses rustls with the `ring` provider, named explicitly so that no process-wide
//! default provider is needed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncWriteExt, split};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use crate::util::{Background, accept_loop, bind_loopback};

/// A TLS stream from [`tls_connect`].
pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A certificate authority made up for one test: it issues leaf certificates for mocks, and
/// clients built from it trust exactly those.
#[derive(Debug)]
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate issued by a [`TestCa`], in DER (for rustls) and PEM (for weir's config files).
#[derive(Debug)]
pub struct Issued {
    /// The leaf, then the CA certificate.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The chain as PEM, leaf first.
    pub cert_pem: String,
    /// The key as PKCS#8 PEM.
    pub key_pem: String,
}

/// A TLS server on `127.0.0.1:0`: after each handshake it writes its name, then echoes every byte
/// back and closes its side when the client closes its own.
#[derive(Debug)]
pub struct MockTls {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    handshakes: Arc<AtomicU64>,
    background: Background,
}

// === impl TestCa ===

impl TestCa {
    /// A new CA with a fresh key.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "weir test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-signed CA certificate");
        Self { issuer }
    }

    /// The CA's own certificate.
    pub fn cert(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf certificate chain and its key for `names` (DNS names, `*.wildcards` or IP
    /// addresses), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("leaf parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "weir test endpoint");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone(), self.cert()], key)
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `path` as PEM and returns the path.
    pub fn write_cert(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.cert_pem()).expect("write CA certificate");
        path.to_path_buf()
    }

    /// A server certificate for `names` (DNS names, `*.wildcards` or IP addresses), with
    /// subject CN `cn`, as DER and PEM.
    pub fn issue_pem(&self, cn: &str, names: &[&str]) -> Issued {
        self.sign(self.params(cn, names))
    }

    /// Like [`TestCa::issue_pem`], but valid only in 2020: expired long ago.
    pub fn issue_expired(&self, cn: &str, names: &[&str]) -> Issued {
        let mut params = self.params(cn, names);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        self.sign(params)
    }

    /// A client certificate with exactly the subject `subject` (attributes in order, e.g.
    /// `[(DnType::OrganizationName, "Weir"), (DnType::CommonName, "a")]`) and the SANs `sans`.
    pub fn issue_client_with(&self, subject: &[(DnType, &str)], sans: Vec<SanType>) -> Issued {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A client certificate with subject CN `cn`, SAN DNS names `dns` and SAN URIs `uris`.
    pub fn issue_client(&self, cn: &str, dns: &[&str], uris: &[&str]) -> Issued {
        let mut params = self.params(cn, dns);
        for uri in uris {
            let uri = (*uri).try_into().expect("URI SAN is ASCII");
            params.subject_alt_names.push(SanType::URI(uri));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn params(&self, cn: &str, names: &[&str]) -> CertificateParams {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("leaf parameters");
        params.distinguished_name.push(DnType::CommonName, cn);
        params
    }

    fn sign(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Issued {
            chain: vec![cert.der().clone(), self.cert()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert_pem: format!("{}{}", cert.pem(), self.issuer.pem()),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client configuration that trusts this CA only.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert())
            .expect("CA certificate is a valid root");
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

// === impl MockTls ===

impl MockTls {
    /// Starts a TLS server named `name` with a certificate for `server_names` issued by `ca`.
    pub async fn start(name: &str, server_names: &[&str], ca: &TestCa) -> Self {
        let (chain, key) = ca.issue(server_names);
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("certificate and key match");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (listener, addr) = bind_loopback().await;
        let connections = Arc::new(AtomicU64::new(0));
        let handshakes = Arc::new(AtomicU64::new(0));
        let token = CancellationToken::new();
        let name: Arc<str> = Arc::from(name);
        let counted = Arc::clone(&handshakes);
        let serve = accept_loop(
            listener,
            token.clone(),
            Arc::clone(&connections),
            move |stream, _peer| {
                serve(
                    acceptor.clone(),
                    stream,
                    Arc::clone(&name),
                    Arc::clone(&counted),
                )
            },
        );
        Self {
            addr,
            connections,
            handshakes,
            background: Background::spawn(token, serve),
        }
    }

    /// The bound loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// Closes the listener and every open connection, and waits until they are closed.
    pub async fn shutdown(self) {
        self.background.shutdown().await;
    }
}

// === impl Issued ===

impl Issued {
    /// Writes `<stem>.pem` (the chain) and `<stem>.key` into `dir`; returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }

    /// Like [`Issued::server_config`], but the handshake requires a client certificate that
    /// chains to `clients`: an endpoint that only weir's `client_cert` may reach.
    pub fn mtls_server_config(&self, clients: &TestCa, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(clients.cert())
            .expect("CA certificate is a valid root");
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .expect("a client verifier of one root");
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .expect("certificate and key match");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A server config serving this certificate with ALPN `alpn` (empty: no ALPN).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .expect("certificate and key match");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Connects to `addr` over TLS as a client of `server_name` (a DNS name, or an IP address, in
/// which case the client sends no SNI), verifying the server's certificate against `ca`.
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    ca: &TestCa,
) -> std::io::Result<TlsStream> {
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(ca.client_config())
        .connect(name, tcp)
        .await
}

/// The provider every config here uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Completes the handshake, writes `name`, then echoes until the client closes.
async fn serve(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    name: Arc<str>,
    handshakes: Arc<AtomicU64>,
) {
    let mut tls = match acceptor.accept(stream).await {
        Ok(tls) => tls,
        Err(error) => {
            tracing::debug!(%error, "mock tls handshake failed");
            return;
        }
    };
    handshakes.fetch_add(1, Ordering::SeqCst);
    if tls.write_all(name.as_bytes()).await.is_err() || tls.flush().await.is_err() {
        return;
    }
    let (mut read, mut write) = split(tls);
    if let Err(error) = tokio::io::copy(&mut read, &mut write).await {
        tracing::debug!(%error, "mock tls echo ended with an error");
        return;
    }
    let _ = write.shutdown().await;
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn read_name(tls: &mut TlsStream, name: &str) {
        let mut buf = vec![0u8; name.len()];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, name.as_bytes());
    }

    #[tokio::test]
    async fn serves_its_names_and_echoes() {
        let ca = TestCa::new();
        let mock = MockTls::start("m", &["a.test", "*.b.test", "127.0.0.1"], &ca).await;
        for name in ["a.test", "x.b.test", "127.0.0.1"] {
            let mut tls = tls_connect(mock.addr(), name, &ca).await.unwrap();
            read_name(&mut tls, "m").await;
            tls.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping", "{name}");
            tls.shutdown().await.unwrap();
            let mut rest = Vec::new();
            tls.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        }
        assert_eq!(mock.handshakes(), 3);
        mock.shutdown().await;
    }

    #[tokio::test]
    async fn a_name_the_certificate_lacks_or_another_ca_fails_verification() {
        let ca = TestCa::new();
        let mock = MockTls::start("m", &["a.test"], &ca).await;
        assert!(tls_connect(mock.addr(), "c.test", &ca).await.is_err());
        assert!(
            tls_connect(mock.addr(), "a.test", &TestCa::new())
                .await
                .is_err()
        );
        assert!(tls_connect(mock.addr(), "a.test", &ca).await.is_ok());
    }
}
