//! Client side of the TLS termination tests: a rustls client that records the certificate
//! weir served, optionally presents a client certificate, and sends HTTP/1.1 or HTTP/2 over
//! the result; plus the PEM files of a test PKI in a temporary directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test helpers: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, Tls12Resumption, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use weir_test_support::{Issued, TestCa};

/// How long one exchange may take before the test fails instead of hanging.
pub(crate) const STEP: Duration = Duration::from_secs(10);

/// A test CA and a directory for the PEM files weir reads.
pub(crate) struct Pki {
    pub(crate) ca: TestCa,
    pub(crate) dir: tempfile::TempDir,
}

/// A connection to weir over TLS, with what the handshake showed.
pub(crate) struct Connected {
    pub(crate) stream: TlsStream<TcpStream>,
    /// The leaf certificate weir served.
    pub(crate) served: CertificateDer<'static>,
}

/// One response: status, the HTTP version it came in, headers and body text.
pub(crate) struct Answer {
    pub(crate) status: http::StatusCode,
    pub(crate) version: http::Version,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    /// A response header as text ("" when absent).
    pub(crate) fn header_value(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Verifies chains against a CA but accepts any name, recording the leaf: the SNI tests need
/// to see which certificate weir picked even when it does not match the name asked for.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
}

impl Pki {
    pub(crate) fn new() -> Self {
        Self {
            ca: TestCa::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Issues a server certificate with CN `cn` for `names` and writes `<stem>.pem/.key`.
    pub(crate) fn server(&self, stem: &str, cn: &str, names: &[&str]) -> (Issued, String) {
        let issued = self.ca.issue_pem(cn, names);
        issued.write(self.dir.path(), stem);
        (issued, self.path(stem))
    }

    /// `<dir>/<stem>` as text, for the YAML (`.pem` / `.key` appended there).
    pub(crate) fn path(&self, stem: &str) -> String {
        self.dir.path().join(stem).display().to_string()
    }

    /// The CA certificate written as `ca.pem`.
    pub(crate) fn ca_file(&self) -> PathBuf {
        self.ca.write_cert(&self.dir.path().join("ca.pem"))
    }

    /// A certificate entry for the YAML, `{ cert: "<stem>.pem", key: "<stem>.key" }`.
    pub(crate) fn entry(&self, stem: &str) -> String {
        let p = self.path(stem);
        format!("{{ cert: \"{p}.pem\", key: \"{p}.key\" }}")
    }
}

/// A client config trusting `ca` only, offering `alpn`, presenting `client` when given;
/// names are not checked (see [`Recording`]), chains are.
fn client_config(
    ca: &TestCa,
    alpn: &[&[u8]],
    client: Option<&Issued>,
    tls12: Option<Tls12Resumption>,
) -> (
    Arc<ClientConfig>,
    Arc<Mutex<Option<CertificateDer<'static>>>>,
) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert()).unwrap();
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(None));
    let versions: &[&rustls::SupportedProtocolVersion] = match tls12 {
        Some(_) => &[&rustls::version::TLS12],
        None => rustls::DEFAULT_VERSIONS,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recording {
            inner,
            seen: Arc::clone(&seen),
        }));
    let mut config = match client {
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if let Some(how) = tls12 {
        config.resumption = Resumption::in_memory_sessions(32).tls12_resumption(how);
    }
    (Arc::new(config), seen)
}

/// A client whose connections share one config, and so one session store (resumption).
pub(crate) struct Client {
    config: Arc<ClientConfig>,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
}

impl Client {
    /// A client trusting `ca`, offering `alpn`, presenting `client` when given.
    pub(crate) fn new(ca: &TestCa, alpn: &[&[u8]], client: Option<&Issued>) -> Self {
        let (config, seen) = client_config(ca, alpn, client, None);
        Self { config, seen }
    }

    /// A client trusting `ca`, offering `alpn`, that never resumes a session: every connection
    /// is a full handshake, so `served` is what the server sent on that one.
    pub(crate) fn full_handshakes(ca: &TestCa, alpn: &[&[u8]]) -> Self {
        let (mut config, seen) = client_config(ca, alpn, None, None);
        Arc::make_mut(&mut config).resumption = Resumption::disabled();
        Self { config, seen }
    }

    /// A TLS 1.2-only client trusting `ca`, offering `alpn`, resuming sessions `how` (by
    /// session ID only, or by ticket when the server sends one).
    pub(crate) fn tls12(ca: &TestCa, alpn: &[&[u8]], how: Tls12Resumption) -> Self {
        let (config, seen) = client_config(ca, alpn, None, Some(how));
        Self { config, seen }
    }

    /// Connects to weir at `addr` with SNI `sni`. A resumed session reports the certificate
    /// of the last full handshake.
    pub(crate) async fn connect(&self, addr: SocketAddr, sni: &str) -> std::io::Result<Connected> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        let connector = TlsConnector::from(Arc::clone(&self.config));
        let stream = tokio::time::timeout(STEP, connector.connect(name, tcp))
            .await
            .expect("handshake timed out")?;
        let served = self
            .seen
            .lock()
            .unwrap()
            .clone()
            .expect("a certificate was served");
        Ok(Connected { stream, served })
    }
}

/// Connects to weir at `addr` with SNI `sni`, offering `alpn` and presenting `client`, with a
/// fresh client (a full handshake).
pub(crate) async fn connect(
    addr: SocketAddr,
    sni: &str,
    ca: &TestCa,
    alpn: &[&[u8]],
    client: Option<&Issued>,
) -> std::io::Result<Connected> {
    Client::new(ca, alpn, client).connect(addr, sni).await
}

/// The CN of a certificate's subject.
pub(crate) fn common_name(cert: &CertificateDer<'_>) -> String {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).unwrap();
    parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// An HTTP/1.1 sender over `stream` (its driver runs in the background).
pub(crate) async fn h1(stream: TlsStream<TcpStream>) -> http1::SendRequest<Empty<Bytes>> {
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// An HTTP/2 sender over `stream` (its driver runs in the background).
pub(crate) async fn h2(stream: TlsStream<TcpStream>) -> http2::SendRequest<Empty<Bytes>> {
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// `GET https://<host><path>` with extra headers over an HTTP/1.1 sender.
pub(crate) async fn get1(
    sender: &mut http1::SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> hyper::Result<Answer> {
    let mut req = http::Request::get(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    sender.ready().await?;
    let res = tokio::time::timeout(STEP, sender.send_request(req.body(Empty::new()).unwrap()))
        .await
        .expect("request timed out")?;
    collect(res).await
}

/// `GET https://<host><path>` over an HTTP/2 sender.
pub(crate) async fn get2(
    sender: &mut http2::SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
) -> hyper::Result<Answer> {
    let req = http::Request::get(format!("https://{host}{path}"))
        .body(Empty::new())
        .unwrap();
    let res = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("request timed out")?;
    collect(res).await
}

async fn collect(res: http::Response<hyper::body::Incoming>) -> hyper::Result<Answer> {
    let (parts, body) = res.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Runs `curl` against weir and returns its output (body, then `%{http_version}` on the last
/// line). `args` come before the URL.
pub(crate) async fn curl(ca_file: &Path, name: &str, port: u16, args: &[&str]) -> String {
    match try_curl(ca_file, name, port, args).await {
        Ok(out) => out,
        Err(e) => panic!("curl failed: {e}"),
    }
}

/// Like [`curl`], returning curl's error text when it fails.
pub(crate) async fn try_curl(
    ca_file: &Path,
    name: &str,
    port: u16,
    args: &[&str],
) -> Result<String, String> {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca_file)
        .arg("--resolve")
        .arg(format!("{name}:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_version}"])
        .args(args)
        .arg(format!("https://{name}:{port}/headers"))
        .output()
        .await
        .expect("curl runs (scripts/test installs it)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.clone().into_owned());
        // The chain must verify; the name is checked by the tests themselves (by CN).
        let any_name = ServerName::try_from("unchecked.invalid").unwrap();
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, &any_name, ocsp, now)
        {
            Ok(v) => Ok(v),
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
