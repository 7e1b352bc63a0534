//! A constant-rate HTTP/1.1 load generator (wrk2 is not in Debian): `conns` keep-alive
//! connections share a fixed schedule of `rate` requests per second, one request in flight per
//! connection, and the latency of every request is recorded exactly (no histogram buckets).
//!
//! Request `k` of connection `i` is due at `t0 + (k·conns + i) / rate`. A request sent on time
//! is timed from the moment it is written (so tokio's 1 ms timer granularity is not counted
//! against the proxy); a request that could not be sent on time because the previous answer on
//! its connection came late is timed from when it was due, as wrk2 does, so a stall shows up in
//! the percentiles instead of silently lowering the rate (coordinated omission).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one constant-rate run measured.
#[derive(Debug, Serialize)]
pub(crate) struct RateResult {
    /// Requests answered with 200.
    pub(crate) requests: u64,
    /// Requests answered with another status, or lost with their connection.
    pub(crate) errors: u64,
    /// Length of the schedule in seconds.
    pub(crate) seconds: f64,
    /// Answered requests per second.
    pub(crate) rps: f64,
    /// Latency percentiles in microseconds.
    pub(crate) p50_us: f64,
    /// 90th percentile, µs.
    pub(crate) p90_us: f64,
    /// 99th percentile, µs.
    pub(crate) p99_us: f64,
    /// 99.9th percentile, µs.
    pub(crate) p999_us: f64,
    /// Slowest request, µs.
    pub(crate) max_us: f64,
}

/// Runs the schedule against `addr` and returns the measurements.
pub(crate) fn run(
    addr: SocketAddr,
    conns: u32,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<RateResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut streams = Vec::new();
        for _ in 0..conns {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            streams.push(s);
        }
        let t0 = tokio::time::Instant::now() + Duration::from_millis(10);
        let period = Duration::from_secs_f64(f64::from(conns) / f64::from(rate));
        let mut tasks = Vec::new();
        for (i, stream) in streams.into_iter().enumerate() {
            let first = t0 + Duration::from_secs_f64(i as f64 / f64::from(rate));
            tasks.push(tokio::spawn(connection(
                stream,
                addr,
                first,
                period,
                t0 + duration,
            )));
        }
        let mut latencies = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await?;
            latencies.extend(l);
            errors += e;
        }
        latencies.sort_unstable();
        let pct = |p: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len());
            latencies[i - 1].as_secs_f64() * 1e6
        };
        let seconds = duration.as_secs_f64();
        Ok(RateResult {
            requests: latencies.len() as u64,
            errors,
            seconds,
            rps: latencies.len() as f64 / seconds,
            p50_us: pct(0.50),
            p90_us: pct(0.90),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            max_us: pct(1.0),
        })
    })
}

/// One connection's share of the schedule: latencies of the answered requests, and errors.
async fn connection(
    mut stream: TcpStream,
    addr: SocketAddr,
    first: tokio::time::Instant,
    period: Duration,
    end: tokio::time::Instant,
) -> (Vec<Duration>, u64) {
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: weir-bench\r\n\r\n");
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut buf = vec![0u8; 16 * 1024];
    let mut due = first;
    while due < end {
        let start = if tokio::time::Instant::now() < due {
            tokio::time::sleep_until(due).await;
            Instant::now()
        } else {
            // Late because the previous answer was: time it from when it was due.
            Instant::now() - (tokio::time::Instant::now() - due)
        };
        due += period;
        if stream.write_all(request.as_bytes()).await.is_err() {
            errors += 1;
            break;
        }
        match read_response(&mut stream, &mut buf).await {
            Some(200) => latencies.push(start.elapsed()),
            Some(_) => errors += 1,
            None => {
                errors += 1;
                break;
            }
        }
    }
    (latencies, errors)
}

/// Reads one response (head plus a `content-length` body); its status, or `None` on EOF/error.
pub(crate) async fn read_response(stream: &mut TcpStream, buf: &mut [u8]) -> Option<u16> {
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..]).await.ok()?;
        if n == 0 {
            return None;
        }
        len += n;
        if let Some(head_end) = find(&buf[..len], b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..head_end]).ok()?;
            let status: u16 = head.get(9..12)?.parse().ok()?;
            let body_len: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = head_end + 4 + body_len;
            while len < total {
                let n = stream.read(&mut buf[len..]).await.ok()?;
                if n == 0 {
                    return None;
                }
                len += n;
            }
            return Some(status);
        }
        if len == buf.len() {
            return None;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
