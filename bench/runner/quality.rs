//! Scenario 8's client: open-loop constant-rate HTTP/1.1 `GET`s, each with its own client
//! timeout, as impatient clients send them. Request `i` is due at `i / rate`; it goes out on an
//! idle keep-alive connection, or on a new one when all are busy (so a stalled answer delays no
//! other request), and fails if it is not answered within the timeout *from when it was due*.
//! A connection whose request timed out is dropped (the client gives up on it), as a real client
//! does. Latencies are those of the answered requests, from their due time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What one run measured.
#[derive(Debug, Serialize)]
pub(crate) struct QualityResult {
    /// Requests scheduled (sent or not).
    pub(crate) sent: u64,
    /// Requests answered with 200 within the timeout.
    pub(crate) requests: u64,
    /// Requests not answered within the timeout.
    pub(crate) timeouts: u64,
    /// Other failures: another status, a lost connection, a failed connect.
    pub(crate) errors: u64,
    /// Connections opened (the initial ones included).
    pub(crate) conns_opened: u64,
    /// Length of the schedule in seconds.
    pub(crate) seconds: f64,
    /// Latency percentiles of the answered requests, µs.
    pub(crate) p50_us: f64,
    /// 99th percentile, µs.
    pub(crate) p99_us: f64,
    /// 99.9th percentile, µs.
    pub(crate) p999_us: f64,
    /// Slowest answered request, µs.
    pub(crate) max_us: f64,
}

/// How one request ended.
enum Outcome {
    Ok(Duration),
    Timeout,
    Failed,
}

/// Idle keep-alive connections, shared by the requests.
type Pool = Arc<Mutex<Vec<TcpStream>>>;

/// Runs the schedule against `addr` and returns the measurements.
pub(crate) fn run(
    addr: SocketAddr,
    conns: u32,
    rate: u32,
    duration: Duration,
    timeout: Duration,
) -> anyhow::Result<QualityResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let pool: Pool = Arc::default();
        for _ in 0..conns {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            pool.lock()
                .map_err(|_| anyhow::anyhow!("pool poisoned"))?
                .push(s);
        }
        let opened = Arc::new(std::sync::atomic::AtomicU64::new(u64::from(conns)));
        let t0 = Instant::now() + Duration::from_millis(10);
        let total = (duration.as_secs_f64() * f64::from(rate)) as u64;
        let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for i in 0..total {
            let due = t0 + Duration::from_secs_f64(i as f64 / f64::from(rate));
            tokio::time::sleep_until(due).await;
            tasks.push(tokio::spawn(request(
                addr,
                Arc::clone(&pool),
                Arc::clone(&opened),
                due,
                timeout,
            )));
        }
        let (mut latencies, mut timeouts, mut errors) = (Vec::new(), 0, 0);
        for t in tasks {
            match t.await? {
                Outcome::Ok(l) => latencies.push(l),
                Outcome::Timeout => timeouts += 1,
                Outcome::Failed => errors += 1,
            }
        }
        latencies.sort_unstable();
        let pct = |p: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len());
            latencies[i - 1].as_secs_f64() * 1e6
        };
        Ok(QualityResult {
            sent: total,
            requests: latencies.len() as u64,
            timeouts,
            errors,
            conns_opened: opened.load(std::sync::atomic::Ordering::Relaxed),
            seconds: duration.as_secs_f64(),
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            max_us: pct(1.0),
        })
    })
}

/// One request, due at `due`: on an idle connection, else a new one; back to the pool if
/// answered in time.
async fn request(
    addr: SocketAddr,
    pool: Pool,
    opened: Arc<std::sync::atomic::AtomicU64>,
    due: Instant,
    timeout: Duration,
) -> Outcome {
    let exchange = async {
        let idle = pool.lock().ok().and_then(|mut p| p.pop());
        let mut stream = match idle {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(addr).await.ok()?;
                opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = s.set_nodelay(true);
                s
            }
        };
        let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: weir-bench\r\n\r\n");
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 4096];
        let status = crate::rate::read_response(&mut stream, &mut buf).await?;
        Some((status, stream))
    };
    match tokio::time::timeout_at(due + timeout, exchange).await {
        Err(_) => Outcome::Timeout,
        Ok(None) => Outcome::Failed,
        Ok(Some((status, stream))) => {
            let took = due.elapsed();
            if let Ok(mut p) = pool.lock() {
                p.push(stream);
            }
            if status == 200 {
                Outcome::Ok(took)
            } else {
                Outcome::Failed
            }
        }
    }
}
