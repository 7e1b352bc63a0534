//! Serving one connection on a stream listener (`tcp` or `tls_passthrough`).
//!
//! In order: read a PROXY header if the peer is trusted to send one; read the TLS ClientHello
//! if the listener routes by SNI; choose the cluster; pick and connect to an endpoint, trying
//! the next one on connect failure; send our own PROXY header if the cluster asks; replay the
//! bytes read so far; then copy both ways. Nothing waits for client bytes unless it must, so
//! server-speaks-first protocols (SMTP, MySQL, Redis replicas) work.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use weir_balance::{Observation, Outcome};
use weir_core::{EndpointError, Error, ErrorKind, InFlightGuard, PassiveOutcome};

use super::copy::{self, CopyMode, EndReason};
use super::{StreamListener, proxy_protocol, sni};
use crate::access_log::{TcpEnd, TcpEntry};
use crate::breakers::Slot;
use crate::cluster::Picked;
use crate::hash_key::HashInput;
use crate::server::ConnInfo;
use crate::snapshot::{Listener, Snapshot};
use crate::{Cluster, upstream};

/// Largest ClientHello weir buffers before giving up (TLS allows 2^24, real ones are < 16 KiB).
const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// Serves one accepted connection; `permit` holds its place under the listener's limit.
pub(crate) async fn serve(stream: TcpStream, info: ConnInfo, permit: OwnedSemaphorePermit) {
    let _permit = permit;
    // Written when dropped, however the connection ends.
    let mut log = info
        .access_log
        .current()
        .map(|l| TcpEntry::begin(&l, std::sync::Arc::clone(&info.listener.name), info.remote));
    let snapshot = info.snapshot();
    let Some(Listener::Stream(listener)) = info.listener.get(&snapshot) else {
        return;
    };
    if listener
        .connection_limit
        .as_ref()
        .is_some_and(|l| !l.admit())
    {
        listener
            .stats
            .rate_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(client = %info.remote, "connection rate limit reached; closing");
        if let Some(log) = &mut log {
            log.set_end(TcpEnd::Reason("rate_limited"));
        }
        return;
    }
    if let Err(e) = forward(&snapshot, listener, stream, &info, log.as_mut()).await {
        tracing::debug!(client = %info.remote, kind = ?e.kind(), error = %e, "connection not forwarded");
        if let Some(log) = &mut log {
            log.set_error(e.kind());
        }
    }
}

async fn forward(
    snapshot: &Snapshot,
    listener: &StreamListener,
    mut down: TcpStream,
    info: &ConnInfo,
    mut log: Option<&mut TcpEntry>,
) -> Result<(), Error> {
    let _ = down.set_nodelay(true);
    let mut read = Vec::new();
    let mut client = info.remote;
    let trusted = listener
        .accept_proxy
        .as_ref()
        .is_some_and(|t| t.contains(info.remote.ip()));
    // One budget for everything weir must read before it can forward.
    let deadline = tokio::time::Instant::now() + listener.first_bytes_timeout;
    // Bytes read from the client before the copy (a PROXY header, a ClientHello).
    let mut first_bytes = 0u64;
    if trusted {
        let (header, len) =
            match read_first_bytes(deadline, read_proxy_header(&mut down, &mut read)).await {
                Ok(read) => read,
                Err(e) => {
                    // A trusted peer that sent bytes must have announced its client. One that
                    // sent nothing (a load balancer's TCP health check) is not a rejection.
                    if !read.is_empty() {
                        (info.counters.received_counter())
                            .fetch_add(read.len() as u64, Ordering::Relaxed);
                        listener
                            .stats
                            .rejected_proxy_headers
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Err(e);
                }
            };
        (info.counters.received_counter()).fetch_add(len as u64, Ordering::Relaxed);
        first_bytes += len as u64;
        if let Some(source) = header {
            client = source;
            if let Some(log) = log.as_deref_mut() {
                log.set_client(source);
            }
        }
    }
    let sni = if listener.target.needs_sni() {
        let name = read_first_bytes(
            deadline,
            sni::read_server_name(&mut down, &mut read, MAX_CLIENT_HELLO),
        )
        .await;
        match name {
            Ok(name) => name,
            Err(e) => {
                // An untrusted peer claiming another address with a PROXY header is refused as
                // such (reset and counted), not as a broken ClientHello.
                let forged_header = listener.accept_proxy.is_some()
                    && !trusted
                    && proxy_protocol::classify_first(&read) == proxy_protocol::FirstBytes::Header;
                let rejected = if forged_header {
                    if let Err(e) = down.set_zero_linger() {
                        tracing::debug!(error = %e, "could not set SO_LINGER 0");
                    }
                    &listener.stats.rejected_proxy_headers
                } else {
                    &listener.stats.rejected_client_hellos
                };
                rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (info.counters.received_counter()).fetch_add(read.len() as u64, Ordering::Relaxed);
                return Err(e);
            }
        }
    } else {
        None
    };
    // What is left in `read` (bytes after a PROXY header, a ClientHello) was received before
    // the copy, which counts the rest; counted here, before anything else can fail.
    (info.counters.received_counter()).fetch_add(read.len() as u64, Ordering::Relaxed);
    first_bytes += read.len() as u64;
    let cluster = listener
        .target
        .cluster_for(sni.as_deref())
        .and_then(|i| snapshot.clusters.get(i))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NoRoute,
                format!("no route for server name {sni:?}"),
            )
        })?;

    let input = HashInput {
        headers: None,
        path: None,
        query: None,
        client,
        local: info.local,
    };
    if let Some(log) = log.as_deref_mut() {
        log.set_cluster(&cluster.name);
    }
    // An L4 connection is one "request" for the cluster's max_requests breaker.
    let _request = cluster.breakers.request()?;
    let (picked, mut up, _held) = connect(cluster, &input, listener.connect_attempts).await?;
    if let Some(log) = log.as_deref_mut() {
        log.set_endpoint(picked.endpoint.address);
    }
    let mut prefix = match cluster.proxy_protocol {
        Some(version) => proxy_protocol::encode(version, client, info.local),
        None => Vec::new(),
    };
    prefix.extend_from_slice(&read);
    if !prefix.is_empty() {
        // Bounded: an endpoint that accepts but never reads must not hold the connection.
        let written =
            tokio::time::timeout(listener.first_bytes_timeout, up.write_all(&prefix)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(upstream_write(picked, e)),
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::UpstreamTimeout,
                    "endpoint did not take the first bytes",
                ));
            }
        }
    }
    let refuse_proxy_header = listener.accept_proxy.is_some() && !trusted && read.is_empty();
    let mode = if listener.zero_copy {
        CopyMode::ZeroCopy
    } else {
        CopyMode::Buffered
    };
    let end = copy::bidirectional(
        down,
        up,
        listener.idle_timeout,
        refuse_proxy_header,
        mode,
        // Open connections outlive a graceful shutdown's start; they end at the hard stop.
        &info.hard_stop,
        &info.counters,
    )
    .await;
    if let Some(log) = log {
        log.set_copied(
            first_bytes + end.to_upstream,
            end.to_downstream,
            end.reason.name(),
        );
    }
    if end.reason == EndReason::ForbiddenProxyHeader {
        listener
            .stats
            .rejected_proxy_headers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    tracing::debug!(
        client = %client,
        endpoint = %picked.endpoint.address,
        up = end.to_upstream,
        down = end.to_downstream,
        reason = ?end.reason,
        "connection closed"
    );
    Ok(())
}

/// Picks and connects, trying up to `attempts` endpoints (a different one each time when the
/// cluster has more). Connect failures are counted on the endpoint and reported to the balancer.
/// The endpoint's in-flight count is raised before connecting, so a burst of connects is
/// visible to least-request and bounded-load picks; the returned guard holds it.
async fn connect<'a>(
    cluster: &'a Cluster,
    input: &HashInput<'_>,
    attempts: u32,
) -> Result<(Picked<'a>, TcpStream, (InFlightGuard, Slot)), Error> {
    let timeout = cluster.connect_timeout().unwrap_or(Duration::from_secs(1));
    let mut tried: Vec<usize> = Vec::new();
    let mut last_error = None;
    for attempt in 0..attempts {
        let Some(picked) = pick_untried(cluster, input, attempt, &tried) else {
            break;
        };
        tried.push(picked.index);
        let guard = picked.endpoint.state.begin_request();
        let slot = cluster.breakers.connection()?;
        let started = Instant::now();
        match upstream::connect_tcp(picked.endpoint.address, timeout).await {
            Ok(stream) => {
                let rtt = started.elapsed();
                cluster.observe(
                    picked.index,
                    &Observation {
                        rtt,
                        outcome: Outcome::Success,
                    },
                );
                // The connect is an L4 endpoint's only round trip: its latency average.
                cluster.record_response(picked.index, rtt, PassiveOutcome::Success);
                return Ok((picked, stream, (guard, slot)));
            }
            Err(e) => {
                if let Some(reason) = EndpointError::of(&e) {
                    cluster.record_error(picked.index, reason);
                }
                cluster.record_outcome(picked.index, PassiveOutcome::ConnectFailure);
                let rtt = started.elapsed();
                cluster.observe(
                    picked.index,
                    &Observation {
                        rtt,
                        outcome: Outcome::Failure,
                    },
                );
                tracing::debug!(endpoint = %picked.endpoint.address, attempt, error = %e, "connect failed");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        Error::new(
            ErrorKind::NoHealthyEndpoint,
            format!("no healthy endpoint in cluster {}", cluster.name),
        )
    }))
}

/// A pick that avoids endpoints already tried, when the cluster has others.
fn pick_untried<'a>(
    cluster: &'a Cluster,
    input: &HashInput<'_>,
    attempt: u32,
    tried: &[usize],
) -> Option<Picked<'a>> {
    let mut first = None;
    // A few re-draws are enough for random policies; deterministic ones move on with `attempt`.
    for _ in 0..4 {
        let p = cluster.pick_connection(input, attempt)?;
        if !tried.contains(&p.index) {
            return Some(p);
        }
        first.get_or_insert(p);
    }
    // Fall back to the next endpoint in order that has not been tried.
    (0..cluster.endpoints.len())
        .find(|i| !tried.contains(i) && cluster.endpoints[*i].state.is_healthy())
        .and_then(|i| cluster.picked(i))
        .or(first)
}

/// Reads until a whole PROXY header is in `buf`, then removes it and returns its source and
/// length.
async fn read_proxy_header(
    down: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(Option<SocketAddr>, usize), Error> {
    loop {
        match proxy_protocol::parse(buf) {
            proxy_protocol::Parsed::Done { consumed, source } => {
                buf.drain(..consumed);
                return Ok((source, consumed));
            }
            proxy_protocol::Parsed::Invalid(why) => {
                return Err(Error::new(ErrorKind::DownstreamProtocol, why));
            }
            proxy_protocol::Parsed::Incomplete => {
                read_more(down, buf, proxy_protocol::MAX_HEADER).await?
            }
        }
    }
}

/// Appends what the peer sent next to `buf`, failing on EOF or beyond `max` bytes.
pub(super) async fn read_more(
    down: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<(), Error> {
    if buf.len() >= max {
        return Err(Error::new(
            ErrorKind::DownstreamProtocol,
            "client's first bytes are too long",
        ));
    }
    let mut chunk = [0u8; 4096];
    let room = (max - buf.len()).min(chunk.len());
    let n = down.read(&mut chunk[..room]).await.map_err(|e| {
        Error::new(
            ErrorKind::DownstreamProtocol,
            "reading the client's first bytes failed",
        )
        .with_cause(e)
    })?;
    if n == 0 {
        return Err(Error::new(
            ErrorKind::DownstreamProtocol,
            "client closed before sending what was expected",
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

async fn read_first_bytes<T>(
    deadline: tokio::time::Instant,
    read: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::DownstreamProtocol,
                "client did not send its first bytes in time",
            ))
        })
}

fn upstream_write(picked: Picked<'_>, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::UpstreamProtocol,
        format!("writing to endpoint {} failed", picked.endpoint.address),
    )
    .with_cause(e)
}
