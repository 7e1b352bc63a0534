//! The HTTP probe: one request on a fresh connection, speaking the cluster's protocol (HTTP/1.1
//! with `connection: close`, or HTTP/2 with prior knowledge), judged by its status and, when
//! asked, by the first 64 KiB of its body.
//!
//! With the cluster's TLS ([`ProbeTls`]) the connection is TLS first, as the cluster's traffic
//! is.
//!
//! A fresh connection per probe is deliberate: a pooled one would pass while the endpoint no
//! longer accepts new connections, which is exactly what the data plane needs to know.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use weir_config::{HttpCheckConfig, UpstreamProtocol};

use super::tls::ProbeTls;
use super::{MAX_READ, USER_AGENT, Verdict, connect, contains, error_detail, missing};

/// Aborts the connection's driver task when the probe ends (or is dropped at its timeout).
struct Driver(JoinHandle<()>);

// === impl Driver ===

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Checks `addr` with the request `config` describes, over TLS when `tls` is given.
pub(super) async fn check(
    config: &HttpCheckConfig,
    protocol: UpstreamProtocol,
    tls: Option<&ProbeTls>,
    addr: SocketAddr,
) -> Verdict {
    let authority = config
        .host
        .clone()
        .unwrap_or_else(|| tls.map_or_else(|| addr.to_string(), |t| t.authority(addr)));
    let request = request(config, protocol, tls.is_some(), &authority)?;
    let (response, _driver) = match tls {
        None => exchange(addr, TokioIo::new(connect(addr).await?), protocol, request).await?,
        Some(tls) => {
            let io = TokioIo::new(tls.connect(addr).await?);
            exchange(addr, io, protocol, request).await?
        }
    };
    let status = response.status();
    if !config.expects(status.as_u16()) {
        let expected = config
            .expected_statuses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!("status {} not in [{expected}]", status.as_u16()));
    }
    if let Some(needle) = &config.body_contains
        && !body_contains(response.into_body(), needle.as_bytes()).await?
    {
        return Err(missing("body", needle));
    }
    Ok(status.to_string())
}

/// The probe request: origin-form with `Host` over HTTP/1.1, absolute (for `:authority`, with
/// `https` when `secure`) over HTTP/2.
fn request(
    config: &HttpCheckConfig,
    protocol: UpstreamProtocol,
    secure: bool,
    authority: &str,
) -> Result<Request<Empty<Bytes>>, String> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| format!("invalid {what}: {e}");
    let method = Method::from_bytes(config.method.as_bytes()).map_err(|e| invalid("method", &e))?;
    let mut builder = Request::builder()
        .method(method)
        .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    builder = match protocol {
        UpstreamProtocol::Http1 => builder
            .uri(config.path.as_str())
            .header(header::HOST, authority)
            .header(header::CONNECTION, HeaderValue::from_static("close")),
        UpstreamProtocol::Http2 => {
            let uri = Uri::builder()
                .scheme(if secure { "https" } else { "http" })
                .authority(authority)
                .path_and_query(config.path.as_str())
                .build()
                .map_err(|e| invalid("request target", &e))?;
            builder.uri(uri).version(http::Version::HTTP_2)
        }
    };
    builder
        .body(Empty::new())
        .map_err(|e| invalid("request", &e))
}

/// Runs the HTTP handshake on `io` (connected to `addr`) and sends `request`; the returned
/// driver keeps the connection alive while the body is read.
async fn exchange<T>(
    addr: SocketAddr,
    io: TokioIo<T>,
    protocol: UpstreamProtocol,
    request: Request<Empty<Bytes>>,
) -> Result<(Response<Incoming>, Driver), String>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let failed = |e: hyper::Error| error_detail(&e);
    match protocol {
        UpstreamProtocol::Http1 => {
            let (mut sender, conn) = http1::handshake(io).await.map_err(failed)?;
            let driver = Driver(tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::trace!(%addr, %error, "health check connection ended");
                }
            }));
            let response = sender.send_request(request).await.map_err(failed)?;
            Ok((response, driver))
        }
        UpstreamProtocol::Http2 => {
            let (mut sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(failed)?;
            let driver = Driver(tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::trace!(%addr, %error, "health check connection ended");
                }
            }));
            let response = sender.send_request(request).await.map_err(failed)?;
            Ok((response, driver))
        }
    }
}

/// Reads at most [`MAX_READ`] bytes of `body`, stopping as soon as `needle` shows up.
async fn body_contains(mut body: Incoming, needle: &[u8]) -> Result<bool, String> {
    let mut seen: Vec<u8> = Vec::new();
    while seen.len() < MAX_READ {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| format!("body read failed: {}", error_detail(&e)))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        // Search only the new bytes plus the tail a match could straddle.
        let from = seen.len().saturating_sub(needle.len().saturating_sub(1));
        let take = data.len().min(MAX_READ - seen.len());
        seen.extend_from_slice(&data[..take]);
        if contains(&seen[from..], needle) {
            return Ok(true);
        }
    }
    Ok(contains(&seen, needle))
}
