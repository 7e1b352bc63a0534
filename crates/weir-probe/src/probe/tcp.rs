//! The TCP probe: connect; optionally send a payload and wait for a reply containing the
//! expected text (a `PING`/`PONG` exchange, a banner). Without `expect`, a completed connect
//! passes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use weir_config::TcpCheckConfig;

use super::{MAX_READ, Verdict, connect, contains, io_detail, missing, timed_out};

/// Checks `addr` as `config` says; `deadline` (the probe's `timeout` from its start) ends the
/// wait for a reply, so a reply that never matches reads as such rather than as a timeout.
pub(super) async fn check(
    config: &TcpCheckConfig,
    addr: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Verdict {
    let mut stream = connect(addr).await?;
    if let Some(send) = &config.send {
        stream
            .write_all(send.as_bytes())
            .await
            .map_err(|e| format!("send failed: {}", io_detail(&e)))?;
    }
    match &config.expect {
        None => Ok("connected".to_owned()),
        Some(expect) => read_until(&mut stream, expect, deadline, timeout).await,
    }
}

/// Reads until the bytes received contain `expect`, the peer closes, [`MAX_READ`] bytes came
/// or `deadline` passes.
async fn read_until(
    stream: &mut TcpStream,
    expect: &str,
    deadline: Instant,
    timeout: Duration,
) -> Verdict {
    let needle = expect.as_bytes();
    let mut seen: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    while seen.len() < MAX_READ {
        let read = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(read) => read,
            Err(_) if seen.is_empty() => return Err(timed_out(timeout)),
            Err(_) => break,
        };
        let n = read.map_err(|e| io_detail(&e))?;
        if n == 0 {
            if seen.is_empty() {
                return Err("connection closed without a reply".to_owned());
            }
            break;
        }
        let from = seen.len().saturating_sub(needle.len().saturating_sub(1));
        let take = n.min(MAX_READ - seen.len());
        seen.extend_from_slice(&chunk[..take]);
        if contains(&seen[from..], needle) {
            return Ok(format!("reply contains {expect:?}"));
        }
    }
    Err(missing("reply", expect))
}
