//! `MockTcp`: refusing address, blackhole and byte echo.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_test_support::{MockTcp, wait_until};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn refusing_addr_refuses() {
    let addr = MockTcp::refusing_addr();
    assert!(addr.ip().is_loopback());
    let error = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn blackhole_accepts_and_never_answers() {
    let hole = MockTcp::blackhole().await;
    let mut stream = TcpStream::connect(hole.addr()).await.unwrap();
    assert!(wait_until(WAIT, || hole.connections() == 1).await);
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    // Silence is the behaviour under test, so this bounded wait is the assertion itself.
    let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
    assert!(read.is_err(), "the blackhole answered: {read:?}");

    hole.shutdown().await;
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn echo_returns_bytes_and_honours_half_close() {
    let echo = MockTcp::echo().await;
    let mut stream = TcpStream::connect(echo.addr()).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    stream.write_all(b"tail").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"tail");
    assert_eq!(echo.connections(), 1);
}
