//! The probes: one exchange with an endpoint, bounded by the check's `timeout`, judged pass or
//! fail with a detail an operator can act on (`connection refused`, `status 503 not in
//! [200-399]`, `timed out after 1s`).
//!
//! Each kind lives in its own module and answers a [`Verdict`]; [`probe`] picks the kind the
//! config names, bounds it by the timeout and measures it. The [`Probe`] trait is the seam the
//! per-endpoint task is generic over, so tests can swap the network for a script.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::net::TcpStream;
use tokio::time::Instant;
use weir_config::{HealthCheckConfig, ProbeKind, UpstreamProtocol};

use crate::ProbeResult;

mod grpc;
mod http;
mod tcp;
mod tls;
mod udp;

pub use tls::ProbeTls;

/// Most bytes of a response body (HTTP) or reply (TCP, UDP) that are searched for the expected
/// text; the rest is not read.
pub(crate) const MAX_READ: usize = 64 * 1024;

/// The `user-agent` of HTTP and gRPC probes.
pub(crate) const USER_AGENT: &str = "weir-health-check";

/// A probe's judgement before timing: `Ok(detail)` passes, `Err(detail)` fails.
pub(crate) type Verdict = Result<String, String>;

/// The future a [`Probe`] returns.
pub(crate) type ProbeFuture<'a> = Pin<Box<dyn Future<Output = ProbeResult> + Send + 'a>>;

/// Checks one address once. The real one is [`ConfigProbe`]; tests use scripts.
pub(crate) trait Probe: Send + Sync + 'static {
    /// Runs one check of `addr`.
    fn probe(&self, addr: SocketAddr) -> ProbeFuture<'_>;
}

/// The probe a cluster's `health_check:` block describes.
#[derive(Debug, Clone)]
pub(crate) struct ConfigProbe {
    /// The check's settings (kind, timeout).
    pub(crate) config: HealthCheckConfig,
    /// The cluster's upstream protocol (HTTP/1.1 or h2c for HTTP probes).
    pub(crate) protocol: UpstreamProtocol,
    /// The cluster's TLS, for HTTP and gRPC probes, with the ALPN they speak.
    pub(crate) tls: Option<ProbeTls>,
}

// === impl ConfigProbe ===

impl Probe for ConfigProbe {
    fn probe(&self, addr: SocketAddr) -> ProbeFuture<'_> {
        Box::pin(run(&self.config, self.protocol, self.tls.as_ref(), addr))
    }
}

/// Runs one probe (http/tcp/grpc/udp, whichever the config names) against `addr`, bounded by
/// the config's `timeout`.
pub async fn probe(
    config: &HealthCheckConfig,
    protocol: UpstreamProtocol,
    addr: SocketAddr,
) -> ProbeResult {
    run(config, protocol, None, addr).await
}

/// [`probe`] for a cluster with upstream `tls:`: HTTP and gRPC probes run over TLS with `tls`
/// (TCP and UDP probes are unchanged).
pub async fn probe_tls(
    config: &HealthCheckConfig,
    protocol: UpstreamProtocol,
    tls: &ProbeTls,
    addr: SocketAddr,
) -> ProbeResult {
    run(
        config,
        protocol,
        Some(&tls.for_probe(config, protocol)),
        addr,
    )
    .await
}

/// One probe; `tls` already offers the probe's ALPN.
async fn run(
    config: &HealthCheckConfig,
    protocol: UpstreamProtocol,
    tls: Option<&ProbeTls>,
    addr: SocketAddr,
) -> ProbeResult {
    let timeout = config.timeout.get();
    let started = Instant::now();
    let deadline = started + timeout;
    let check = async {
        match config.probe() {
            Some(ProbeKind::Http(c)) => http::check(c, protocol, tls, addr).await,
            Some(ProbeKind::Tcp(c)) => tcp::check(c, addr, deadline, timeout).await,
            Some(ProbeKind::Grpc(c)) => grpc::check(c, tls, addr).await,
            Some(ProbeKind::Udp(c)) => udp::check(c, addr).await,
            None => Err("health_check names no probe (http, tcp, grpc or udp)".to_owned()),
        }
    };
    let verdict = match tokio::time::timeout_at(deadline, check).await {
        Ok(verdict) => verdict,
        Err(_) => Err(timed_out(timeout)),
    };
    let (success, detail) = match verdict {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    ProbeResult {
        success,
        detail,
        latency: started.elapsed(),
    }
}

/// `timed out after 1s`.
pub(crate) fn timed_out(timeout: std::time::Duration) -> String {
    format!("timed out after {timeout:?}")
}

/// Opens a TCP connection with Nagle off (probes are one small exchange).
pub(crate) async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| io_detail(&e))?;
    // Best effort: a probe still works with Nagle, only slower.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A short, human description of a socket error.
pub(crate) fn io_detail(error: &io::Error) -> String {
    known_io(error).map_or_else(|| error.to_string(), str::to_owned)
}

/// Describes an error by the socket error under it, if any (`connection refused` reads better
/// than `transport error`), else by its own message.
pub(crate) fn error_detail(error: &(dyn StdError + 'static)) -> String {
    let mut cause = Some(error);
    while let Some(e) = cause {
        cause = e.source();
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(text) = known_io(io) {
                return text.to_owned();
            }
            // A wrapping io::Error hides its payload from `source()`; look inside.
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
            }
        }
    }
    error.to_string()
}

/// The name of a socket error an operator knows by name.
fn known_io(error: &io::Error) -> Option<&'static str> {
    Some(match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => "connection closed",
        io::ErrorKind::TimedOut => "timed out",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::AddrNotAvailable => "address not available",
        _ => return None,
    })
}

/// Whether `needle` occurs in `haystack` (an empty needle always does).
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// `reply does not contain "PONG"`.
pub(crate) fn missing(what: &str, expect: &str) -> String {
    format!("{what} does not contain {expect:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_finds_substrings() {
        assert!(contains(b"HTTP OK\r\n", b"OK"));
        assert!(contains(b"abc", b""));
        assert!(!contains(b"ab", b"abc"));
        assert!(!contains(b"PING", b"PONG"));
    }

    #[test]
    fn details_read_like_an_operator_would_write_them() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(io_detail(&refused), "connection refused");
        let wrapped = io::Error::other(io::Error::other(refused));
        assert_eq!(error_detail(&wrapped), "connection refused");
        let plain = io::Error::other("weird");
        assert_eq!(error_detail(&plain), "weird");
        assert_eq!(
            timed_out(std::time::Duration::from_secs(1)),
            "timed out after 1s"
        );
        assert_eq!(missing("reply", "PONG"), "reply does not contain \"PONG\"");
    }
}
