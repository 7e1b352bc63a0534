//! The export task: batches spans from the queue and POSTs them to the collector.
//!
//! A tokio task, since it does network I/O: one HTTP/1.1 connection to the collector (over
//! TLS for an `https://` endpoint), kept alive between exports and reopened when it fails.
//! Each export request has the configured timeout (connect and handshake included).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::json::Encoder;
use super::{SpanCounters, SpanRecord};

/// How often a persisting export failure is logged again.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Where spans go: the collector's URL, split for connecting and for the request.
pub(super) struct Target {
    host: String,
    port: u16,
    /// `host[:port]`, the `Host` header.
    authority: String,
    /// Path and query: the request target.
    path: Uri,
    timeout: Duration,
    /// For an `https://` endpoint: the TLS client and the name the certificate must hold.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The task's state.
pub(super) struct Exporter {
    pub(super) target: Target,
    pub(super) encoder: Encoder,
    pub(super) batch_size: usize,
    pub(super) flush_interval: Duration,
    pub(super) counters: Arc<SpanCounters>,
}

/// The connection to the collector and the failure log's state.
struct Client {
    conn: Option<SendRequest<Full<Bytes>>>,
    /// When a failure was last logged, while failures go on.
    logged: Option<Instant>,
}

// === impl Target ===

impl Target {
    /// Splits an `http[s]://host[:port]/path` URL; an `https://` one gets a TLS client that
    /// verifies against `ca` (a PEM file) or the system's trust store.
    pub(super) fn parse(
        endpoint: &str,
        ca: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let uri: Uri = endpoint
            .trim()
            .parse()
            .map_err(|e| format!("endpoint `{endpoint}`: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "endpoint `{endpoint}` is not an http:// or https:// URL"
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("endpoint `{endpoint}` has no host"))?;
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| format!("endpoint `{endpoint}`: {e}"))?;
        let host = authority.host().trim_matches(['[', ']']).to_owned();
        let tls = if https {
            let config = crate::tls::collector_client_config(ca)
                .map_err(|e| format!("endpoint `{endpoint}`: {e}"))?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("endpoint `{endpoint}`: {e}"))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            host,
            authority: authority.as_str().to_owned(),
            path,
            timeout,
            tls,
        })
    }
}

// === impl Exporter ===

impl Exporter {
    /// Runs until every sender is gone: waits for a span, gathers more until the batch is
    /// full or `flush_interval` has passed, exports, repeats.
    pub(super) async fn run(self, mut rx: mpsc::Receiver<SpanRecord>) {
        let mut client = Client {
            conn: None,
            logged: None,
        };
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut open = true;
        while open {
            match rx.recv().await {
                Some(span) => batch.push(span),
                None => break,
            }
            let deadline = tokio::time::Instant::now() + self.flush_interval;
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(span)) => batch.push(span),
                    Ok(None) => {
                        open = false;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let body = self.encoder.encode(&batch);
            let result = client.post(&self.target, body).await;
            let n = batch.len() as u64;
            match result {
                Ok(()) => {
                    self.counters.exported.fetch_add(n, Ordering::Relaxed);
                    client.logged = None;
                }
                Err(e) => {
                    self.counters.failed_exports.fetch_add(1, Ordering::Relaxed);
                    self.counters.failed_spans.fetch_add(n, Ordering::Relaxed);
                    if client.logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        tracing::warn!(
                            error = %e,
                            spans = n,
                            failed_exports = self.counters.failed_exports.load(Ordering::Relaxed),
                            "OTLP span export failed"
                        );
                        client.logged = Some(Instant::now());
                    }
                }
            }
            batch.clear();
        }
    }
}

// === impl Client ===

impl Client {
    /// POSTs one encoded batch within the target's timeout.
    async fn post(&mut self, target: &Target, body: Vec<u8>) -> Result<(), String> {
        match tokio::time::timeout(target.timeout, self.try_post(target, body)).await {
            Ok(result) => result,
            Err(_) => {
                self.conn = None;
                Err(format!("no answer within {:?}", target.timeout))
            }
        }
    }

    async fn try_post(&mut self, target: &Target, body: Vec<u8>) -> Result<(), String> {
        let mut sender = match self.conn.take() {
            Some(s) if !s.is_closed() => s,
            _ => connect(target).await?,
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("connection to the collector: {e}"))?;
        let request = Request::post(target.path.clone())
            .header(HOST, &target.authority)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("sending to the collector: {e}"))?;
        let status = response.status();
        // Read the answer to the end so the connection can carry the next export.
        let read = response.into_body().collect().await;
        if read.is_ok() {
            self.conn = Some(sender);
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }
}

/// Opens an HTTP/1.1 connection to the collector.
async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connecting to {}: {e}", target.authority))?;
    let _ = stream.set_nodelay(true);
    match &target.tls {
        None => handshake(target, TokioIo::new(stream)).await,
        Some((connector, name)) => {
            let stream = connector
                .connect(name.clone(), stream)
                .await
                .map_err(|e| format!("TLS to {}: {e}", target.authority))?;
            handshake(target, TokioIo::new(stream)).await
        }
    }
}

/// HTTP/1.1 over `io`; the connection runs on its own task.
async fn handshake<I>(target: &Target, io: I) -> Result<SendRequest<Full<Bytes>>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io)
        .await
        .map_err(|e| format!("connecting to {}: {e}", target.authority))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "OTLP collector connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_their_url() {
        let t = Target::parse(
            "http://127.0.0.1:4318/v1/traces",
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 4318));
        assert_eq!(t.authority, "127.0.0.1:4318");
        assert_eq!(t.path, "/v1/traces");
        let t = Target::parse("http://collector", None, Duration::from_secs(1)).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.path()),
            ("collector", 80, "/")
        );
        assert!(Target::parse("ftp://c/v1/traces", None, Duration::from_secs(1)).is_err());
        assert!(Target::parse("c:4318", None, Duration::from_secs(1)).is_err());
    }
}
