//! Scenario 7's client: `conns` clients that each, in a loop, connect, make one request and
//! close, for `duration`. A proxy that reuses its upstream connections opens almost none for
//! this traffic; the runner counts what the endpoint accepted.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// What one churn run measured.
#[derive(Debug, Serialize)]
pub(crate) struct ChurnResult {
    /// Requests answered with 200.
    pub(crate) requests: u64,
    /// Failed connects, lost connections and other statuses.
    pub(crate) errors: u64,
    /// Length of the run in seconds.
    pub(crate) seconds: f64,
}

/// Runs the clients against `addr` and returns the counts.
pub(crate) fn run(addr: SocketAddr, conns: u32, duration: Duration) -> anyhow::Result<ChurnResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let end = tokio::time::Instant::now() + duration;
        let mut tasks = Vec::new();
        for _ in 0..conns {
            tasks.push(tokio::spawn(client(addr, end)));
        }
        let (mut requests, mut errors) = (0, 0);
        for t in tasks {
            let (r, e) = t.await?;
            requests += r;
            errors += e;
        }
        Ok(ChurnResult {
            requests,
            errors,
            seconds: duration.as_secs_f64(),
        })
    })
}

/// One client's loop: (answered, failed).
async fn client(addr: SocketAddr, end: tokio::time::Instant) -> (u64, u64) {
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: weir-bench\r\n\r\n");
    let mut buf = vec![0u8; 4096];
    let (mut ok, mut failed) = (0, 0);
    while tokio::time::Instant::now() < end {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            failed += 1;
            // Refused or out of ports: do not spin.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let _ = s.set_nodelay(true);
        if s.write_all(request.as_bytes()).await.is_err() {
            failed += 1;
            continue;
        }
        match crate::rate::read_response(&mut s, &mut buf).await {
            Some(200) => ok += 1,
            _ => failed += 1,
        }
    }
    (ok, failed)
}
