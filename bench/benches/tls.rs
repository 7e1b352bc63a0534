//! What does TLS termination cost? Full TLS 1.3 handshakes per second, and keep-alive HTTPS
//! requests per second beside the same requests over plaintext, with weir on one core.
//!
//! weir runs on a single-threaded tokio runtime of its own thread (one core); the clients run
//! on another runtime. The listener answers with a `direct_response`, so no endpoint takes part
//! and the figures are weir's TLS and HTTP work alone. Run with
//! `cargo bench -p weir-bench --bench tls`; docs/tls.md has the figures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark: a panic is a failed run"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use weir_test_support::TestCa;

/// Keep-alive connections used at once for the request rate, and requests per connection in
/// one iteration.
const CONNECTIONS: usize = 8;
const REQUESTS_PER_CONNECTION: usize = 16;
/// Handshakes started at once in the concurrent handshake bench.
const HANDSHAKES_IN_FLIGHT: usize = 8;

/// weir on a current-thread runtime in its own thread: `https` (TLS) and `http` listeners.
fn start_weir(dir: &std::path::Path, ca: &TestCa) -> (SocketAddr, SocketAddr) {
    ca.issue_pem("bench", &["bench.test"]).write(dir, "bench");
    let cert = dir.join("bench");
    let yaml = format!(
        "listeners:
  - name: https
    address: 127.0.0.1:0
    routes: [ {{ direct_response: {{ status: 200, body: ok }} }} ]
    tls: {{ certificates: [ {{ cert: \"{c}.pem\", key: \"{c}.key\" }} ], min_version: \"1.3\" }}
  - name: http
    address: 127.0.0.1:0
    routes: [ {{ direct_response: {{ status: 200, body: ok }} }} ]
",
        c = cert.display()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let proxy = weir_bench::start_proxy(&yaml).await;
            tx.send((
                proxy.listener_addr("https").unwrap(),
                proxy.listener_addr("http").unwrap(),
            ))
            .unwrap();
            // Serve until the process ends.
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

/// A client config trusting `ca`, without session resumption: every handshake is a full one.
fn full_handshakes(ca: &TestCa) -> Arc<ClientConfig> {
    let mut config = (*ca.client_config()).clone();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn handshake(addr: SocketAddr, connector: &TlsConnector) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("bench.test").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    drop(tls);
}

/// `REQUESTS_PER_CONNECTION` GETs in turn on one keep-alive connection.
async fn requests(sender: &mut http1::SendRequest<Empty<Bytes>>) {
    for _ in 0..REQUESTS_PER_CONNECTION {
        sender.ready().await.unwrap();
        let req = http::Request::get("/")
            .header("host", "bench.test")
            .body(Empty::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
    }
}

async fn senders(
    addr: SocketAddr,
    tls: Option<&TlsConnector>,
) -> Vec<http1::SendRequest<Empty<Bytes>>> {
    let mut out = Vec::new();
    for _ in 0..CONNECTIONS {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let sender = match tls {
            Some(c) => {
                let name = ServerName::try_from("bench.test").unwrap();
                let s = c.connect(name, tcp).await.unwrap();
                let (sender, conn) = http1::handshake(TokioIo::new(s)).await.unwrap();
                tokio::spawn(conn);
                sender
            }
            None => {
                let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
                tokio::spawn(conn);
                sender
            }
        };
        out.push(sender);
    }
    out
}

fn tls(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (https, http) = start_weir(dir.path(), &ca);
    let connector = TlsConnector::from(full_handshakes(&ca));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("tls_handshake");
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1));
    group.bench_function("full_tls13_one_at_a_time", |b| {
        b.to_async(&rt).iter(|| handshake(https, &connector));
    });
    // Several in flight, so weir's core is kept busy while clients do their half.
    group.throughput(Throughput::Elements(HANDSHAKES_IN_FLIGHT as u64));
    group.bench_function("full_tls13_8_in_flight", |b| {
        b.to_async(&rt).iter(|| {
            futures_util::future::join_all(
                (0..HANDSHAKES_IN_FLIGHT).map(|_| handshake(https, &connector)),
            )
        });
    });
    group.finish();

    let mut group = c.benchmark_group("keepalive_requests");
    group.throughput(Throughput::Elements(
        (CONNECTIONS * REQUESTS_PER_CONNECTION) as u64,
    ));
    group.measurement_time(Duration::from_secs(8));
    for (name, addr, tls) in [("https", https, Some(&connector)), ("http", http, None)] {
        let mut conns = rt.block_on(senders(addr, tls));
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(futures_util::future::join_all(
                    conns.iter_mut().map(requests),
                ));
            });
        });
    }
    group.finish();
}

criterion_group!(benches, tls);
criterion_main!(benches);
