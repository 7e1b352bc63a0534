//! Shared harness for weir's end-to-end tests: start the real proxy in-process from a YAML
//! string (listeners on port 0) and talk to it with real HTTP/1.1 and HTTP/2 clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use weir::Weir;
use weir_proxy::Proxy;

/// A running proxy and the address of its first listener.
pub struct TestProxy {
    /// weir: the proxy with its health checks and admin API.
    pub weir: Weir,
    /// Address of the first listener.
    pub addr: SocketAddr,
}

/// A simple response: status, headers and the whole body.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: http::StatusCode,
    /// Headers.
    pub headers: http::HeaderMap,
    /// The body, collected.
    pub body: Bytes,
}

/// An HTTP client of one protocol version.
pub type TestClient = Client<HttpConnector, Full<Bytes>>;

impl TestProxy {
    /// Starts weir with `yaml` (must be valid); the first listener's address is `addr`.
    pub async fn start(yaml: &str) -> Self {
        let config = weir_config::load_str(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
        let weir = Weir::start(&config)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let addr = weir.proxy().listener_addrs()[0].1;
        Self { weir, addr }
    }

    /// The data plane.
    pub fn proxy(&self) -> &Proxy {
        self.weir.proxy()
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// An HTTP/1.1 keep-alive client.
pub fn h1_client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 prior-knowledge client (one multiplexed connection per authority).
pub fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends `req` and collects the response.
pub async fn send(client: &TestClient, req: http::Request<Full<Bytes>>) -> Reply {
    let res = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("body failed").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// GET `url` with extra headers.
pub async fn get(client: &TestClient, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = http::Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(client, req.body(Full::default()).unwrap()).await
}

impl Reply {
    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The endpoints (their `x-endpoint` header) answering `rounds` GETs of `/` through `p`; an
/// answer other than 200 shows as `status <code>`.
pub async fn answering(
    client: &TestClient,
    p: &TestProxy,
    rounds: usize,
) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..rounds {
        let r = get(client, &p.url("/"), &[]).await;
        if r.status == http::StatusCode::OK {
            names.insert(r.header("x-endpoint").to_owned());
        } else {
            names.insert(format!("status {}", r.status));
        }
    }
    names
}

/// Polls (for up to 30 s) until the endpoints [`answering`] a round of `2 × want.len()`
/// requests are exactly `want` — with round robin every endpoint of the set answers at least
/// once — and returns how long that took.
pub async fn until_answering(client: &TestClient, p: &TestProxy, want: &[&str]) -> Duration {
    let want: std::collections::BTreeSet<String> = want.iter().map(|&s| s.to_owned()).collect();
    let start = std::time::Instant::now();
    loop {
        if answering(client, p, 2 * want.len()).await == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never answered by exactly {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// YAML list items for endpoints: `      - 127.0.0.1:port` lines at the given indentation.
pub fn endpoint_list(addrs: &[SocketAddr], indent: usize) -> String {
    addrs
        .iter()
        .map(|a| format!("{}- {a}\n", " ".repeat(indent)))
        .collect()
}

/// Connects to `addr` (a TCP listener in front of an echo endpoint), sends `bytes`, checks they
/// come back unchanged, and returns the still-open connection.
pub async fn echo_round_trip(addr: SocketAddr, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut back = vec![0u8; bytes.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, bytes, "echoed through weir");
    s
}
