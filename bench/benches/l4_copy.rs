//! Decision: should TCP listeners move bytes with `splice(2)` (zero copy) or through a buffer?
//!
//! Pushes 64 MiB per iteration through a weir TCP listener to a sink endpoint on loopback, once
//! with `zero_copy: true` and once with `zero_copy: false`, and reports throughput. Run with
//! `cargo bench -p weir-bench --bench l4_copy`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark: a panic is a failed run"
)]

use std::net::SocketAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PAYLOAD: usize = 64 * 1024 * 1024;

/// Sends `PAYLOAD` bytes through `proxy` and waits until the sink has them all (its close).
async fn push(proxy: SocketAddr, chunk: &[u8]) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let mut sent = 0;
    while sent < PAYLOAD {
        s.write_all(chunk).await.unwrap();
        sent += chunk.len();
    }
    s.shutdown().await.unwrap();
    // The sink closes after EOF; weir passes the close on.
    let mut b = [0u8; 1];
    let _ = s.read(&mut b).await;
}

fn l4_copy(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (proxy, addrs) = rt.block_on(async {
        let sink = weir_bench::sink().await;
        let yaml = format!(
            "listeners:
  - {{ name: splice, address: 127.0.0.1:0, protocol: tcp, cluster: sink, tcp: {{ zero_copy: true }} }}
  - {{ name: buffered, address: 127.0.0.1:0, protocol: tcp, cluster: sink, tcp: {{ zero_copy: false }} }}
clusters:
  - {{ name: sink, endpoints: [ {sink} ] }}
"
        );
        let proxy = weir_bench::start_proxy(&yaml).await;
        let addrs = (
            proxy.listener_addr("splice").unwrap(),
            proxy.listener_addr("buffered").unwrap(),
            sink,
        );
        (proxy, addrs)
    });
    let chunk = vec![0xA5u8; 256 * 1024];
    let mut group = c.benchmark_group("l4_copy_64MiB");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    group.sample_size(10);
    for (name, addr) in [
        ("splice", addrs.0),
        ("buffered", addrs.1),
        ("direct_no_proxy", addrs.2),
    ] {
        group.bench_function(name, |b| b.to_async(&rt).iter(|| push(addr, &chunk)));
    }
    group.finish();
    drop(proxy);
}

criterion_group!(benches, l4_copy);
criterion_main!(benches);
