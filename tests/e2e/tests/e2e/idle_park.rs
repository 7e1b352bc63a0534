//! Idle HTTP/1.1 connections park (weir gives hyper's buffers back and waits for the next
//! request itself): what the client sees must not change — split and pipelined requests after a
//! park are answered on the same connection, and the header read timeout still closes a client
//! that sends nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::{Duration, Instant};

use crate::limits::proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_test_support::MockHttp;

/// Longer than the idle time after which weir parks a connection (250 ms), with margin.
const PARKED: Duration = Duration::from_millis(700);

/// Reads `count` whole HTTP/1.1 responses (content-length bodies) and returns their heads.
async fn read_responses(stream: &mut TcpStream, count: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut heads = Vec::new();
    let mut buf = vec![0u8; 4096];
    while heads.len() < count {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        loop {
            let text = String::from_utf8_lossy(&out).into_owned();
            let Some(end) = text.find("\r\n\r\n") else {
                break;
            };
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if out.len() < end + 4 + len {
                break;
            }
            heads.push(text[..end].to_owned());
            out.drain(..end + 4 + len);
        }
    }
    heads
}

// Real time on purpose: parking is about a connection idling for a while (see limits.rs for why
// tokio's paused clock does not fit loopback traffic).
#[tokio::test]
async fn a_parked_connection_answers_split_and_pipelined_requests() {
    let ep = MockHttp::start("ep").await;
    let p = proxy(&ep, "{ idle_timeout: 30s, header_read_timeout: 30s }").await;
    let mut stream = TcpStream::connect(p.addr).await.unwrap();

    stream
        .write_all(b"GET /one HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let heads = read_responses(&mut stream, 1).await;
    assert!(heads[0].starts_with("HTTP/1.1 200"), "{heads:?}");

    // Parked. The next request arrives in two pieces: weir reads the first itself and must
    // hand it, with the rest, to hyper.
    tokio::time::sleep(PARKED).await;
    stream.write_all(b"GET /two HTTP/1.1\r\nho").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(b"st: a\r\n\r\n").await.unwrap();
    let heads = read_responses(&mut stream, 1).await;
    assert!(heads[0].starts_with("HTTP/1.1 200"), "{heads:?}");

    // Parked again; two pipelined requests in one write are both answered, in order.
    tokio::time::sleep(PARKED).await;
    stream
        .write_all(b"GET /three HTTP/1.1\r\nhost: a\r\n\r\nGET /four HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let heads = read_responses(&mut stream, 2).await;
    // And one more after them, on the same connection.
    stream
        .write_all(b"GET /five HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let more = read_responses(&mut stream, 1).await;
    let heads: Vec<String> = heads.into_iter().chain(more).collect();
    assert!(
        heads.iter().all(|h| h.starts_with("HTTP/1.1 200")),
        "{heads:?}"
    );
    assert!(
        heads
            .iter()
            .all(|h| !h.to_ascii_lowercase().contains("connection: close")),
        "a parked connection stays alive: {heads:?}"
    );
}

#[tokio::test]
async fn the_header_read_timeout_still_closes_silent_and_parked_clients() {
    let ep = MockHttp::start("ep").await;
    let p = proxy(&ep, "{ idle_timeout: 60s, header_read_timeout: 1s }").await;

    // A client that never sends a byte: weir waits for it itself, within the timeout.
    let mut silent = TcpStream::connect(p.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut buf))
        .await
        .expect("a silent client is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a word");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    // A kept-alive client that sends no next request: closed the same way once parked.
    let mut kept = TcpStream::connect(p.addr).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let heads = read_responses(&mut kept, 1).await;
    assert!(heads[0].starts_with("HTTP/1.1 200"), "{heads:?}");
    let n = tokio::time::timeout(Duration::from_secs(30), kept.read(&mut buf))
        .await
        .expect("an idle kept-alive client is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a word");
}
