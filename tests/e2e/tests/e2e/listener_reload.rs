//! Listeners added, removed and changed by a reload, without a restart: the added one answers,
//! the removed one refuses new connects while the request already running on it finishes
//! (and tells its keep-alive client to go), the ones that stay keep their address and their
//! open connections, the admin API lists what runs, and a protocol change or a rename on the
//! same address takes effect at once on the same socket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir::Weir;
use weir_e2e::{get, h1_client};
use weir_test_support::{MockHttp, wait_until};

fn load(yaml: &str) -> weir_config::ValidatedConfig {
    weir_config::load_str(yaml, "listeners.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// An HTTP listener `name` at `address` answering `body` directly.
fn direct(name: &str, address: &str, body: &str) -> String {
    format!(
        "  - name: {name}
    address: {address}
    routes: [ {{ direct_response: {{ status: 200, body: {body} }} }} ]
"
    )
}

fn addr(weir: &Weir, name: &str) -> SocketAddr {
    weir.proxy()
        .listener_addr(name)
        .unwrap_or_else(|| panic!("no listener {name}"))
}

/// Whether a connect to `addr` is refused now.
async fn refused(addr: SocketAddr) -> bool {
    matches!(
        tokio::net::TcpStream::connect(addr).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_and_removes_listeners_and_the_removed_ones_requests_finish() {
    let slow = MockHttp::builder("slow")
        .delay(Duration::from_millis(800))
        .start()
        .await;
    let cluster = format!(
        "clusters:\n  - name: slow\n    endpoints: [ {} ]\n",
        slow.addr()
    );
    let gone = "  - name: gone\n    address: 127.0.0.1:0\n    routes: [ { cluster: slow } ]\n";
    let admin = "admin: { address: 127.0.0.1:0 }\n";
    let first = format!(
        "{admin}listeners:\n{}{gone}{cluster}",
        direct("keep", "127.0.0.1:0", "keep-1")
    );
    let weir = Weir::start(&load(&first)).await.unwrap();
    let (keep, gone_addr) = (addr(&weir, "keep"), addr(&weir, "gone"));
    let client = h1_client();
    assert_eq!(
        get(&client, &format!("http://{keep}/"), &[]).await.body,
        "keep-1"
    );

    // A request in flight on `gone` (over a keep-alive connection) when the reload removes it.
    let mut conn = tokio::net::TcpStream::connect(gone_addr).await.unwrap();
    conn.write_all(b"GET /slow HTTP/1.1\r\nhost: gone\r\n\r\n")
        .await
        .unwrap();
    // And a WebSocket handshake in flight: its 101 must keep `Connection: upgrade`.
    let mut ws = tokio::net::TcpStream::connect(gone_addr).await.unwrap();
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nhost: gone\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(wait_until(Duration::from_secs(10), || slow.requests() == 2).await);

    let second = format!(
        "{admin}listeners:\n{}{}{cluster}",
        direct("keep", "127.0.0.1:0", "keep-2"),
        direct("added", "127.0.0.1:0", "added")
    );
    weir.reload(&load(&second)).unwrap();

    // The added listener answers; the kept one has its address and the new routes.
    let added = addr(&weir, "added");
    assert_eq!(
        get(&client, &format!("http://{added}/"), &[]).await.body,
        "added"
    );
    assert_eq!(addr(&weir, "keep"), keep);
    assert_eq!(
        get(&client, &format!("http://{keep}/"), &[]).await.body,
        "keep-2"
    );
    assert!(weir.proxy().listener_addr("gone").is_none());
    // The admin API shows the listener set as it runs now.
    let admin = weir.admin_addr().unwrap();
    let listed = get(&client, &format!("http://{admin}/listeners"), &[])
        .await
        .text();
    assert!(
        listed.contains(&format!("\"{added}\"")) && !listed.contains("gone"),
        "{listed}"
    );
    let metrics = get(&client, &format!("http://{admin}/metrics"), &[])
        .await
        .text();
    assert!(
        metrics.contains("weir_listener_connections_accepted_total{listener=\"added\"} 1"),
        "{metrics}"
    );
    // The removed one refuses new connects (its socket closes as its task stops).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !refused(gone_addr).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{gone_addr} still accepts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The request that was running finishes, and its connection is told to close.
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response))
        .await
        .expect("the response and the close in time")
        .unwrap();
    let response = String::from_utf8_lossy(&response).to_lowercase();
    assert!(response.starts_with("http/1.1 200"), "{response}");
    assert!(response.contains("connection: close"), "{response}");
    assert!(response.contains("x-endpoint: slow"), "{response}");
    let mut head = vec![0_u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), ws.read(&mut head))
        .await
        .expect("the handshake answer in time")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    drop(ws);
    assert!(weir.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_change_a_rename_on_the_same_address_and_a_bind_failure() {
    let echo = weir_test_support::MockTcp::echo().await;
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = reserved.local_addr().unwrap().to_string();
    drop(reserved);
    let first = format!(
        "listeners:\n{}clusters: []\n",
        direct("l", &address, "http")
    );
    let weir = Weir::start(&load(&first)).await.unwrap();
    let client = h1_client();
    let r = get(&client, &format!("http://{address}/"), &[]).await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, "http".to_owned()));

    // The same name and address, now a TCP listener: the socket is reused, never closed.
    let second = format!(
        "listeners:
  - name: l
    address: {address}
    protocol: tcp
    cluster: echo
clusters:
  - name: echo
    endpoints: [ {} ]
",
        echo.addr()
    );
    weir.reload(&load(&second)).unwrap();
    let mut conn = tokio::net::TcpStream::connect(&address).await.unwrap();
    conn.write_all(b"ping").await.unwrap();
    let mut got = [0_u8; 4];
    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut got))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&got, b"ping");

    // A new listener on an address something else holds: refused, nothing changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let third = second.replace(
        "clusters:",
        &format!(
            "{}clusters:",
            direct("extra", &taken.local_addr().unwrap().to_string(), "x")
        ),
    );
    let e = weir.reload(&load(&third)).unwrap_err();
    assert!(
        format!("{e:#}").contains("listener extra: cannot bind"),
        "{e:#}"
    );
    assert!(weir.proxy().listener_addr("extra").is_none());
    assert_eq!(weir.reload_counts().rejected, 1);
    conn.write_all(b"pong").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut got))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&got, b"pong");

    // Renamed at the same address: the new listener takes the socket over; the old one's
    // connection drains on.
    weir.reload(&load(&second.replace("name: l\n", "name: renamed\n")))
        .unwrap();
    assert_eq!(
        weir.proxy().listener_addr("renamed").unwrap().to_string(),
        address
    );
    let mut renamed = tokio::net::TcpStream::connect(&address).await.unwrap();
    renamed.write_all(b"new!").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), renamed.read_exact(&mut got))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&got, b"new!");
    conn.write_all(b"old!").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut got))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&got, b"old!");
    drop((conn, renamed));
    assert!(weir.shutdown(Duration::from_secs(5)).await);
}
