//! Supports the decision to build hashing tables off the hot path, whenever membership
//! changes, and to default Maglev to 65,537 slots: it times a Maglev table build (M = 65,537)
//! and a ring build (the default 1,024 points and a Maglev-sized 65,536) for 100 and 1,000
//! endpoints, i.e. what a discovery update costs the control side.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use weir_balance::{BuildContext, CommonOptions, Maglev, RingHash, ThreadRandom};
use weir_config::{MaglevConfig, RingHashConfig};
use weir_core::{Endpoint, SystemClock};

fn endpoints(n: usize) -> Vec<Arc<Endpoint>> {
    (0..n)
        .map(|i| {
            let [_, a, b, c] = (i as u32).to_be_bytes();
            let address = SocketAddr::from(([10, a, b, c], 8080));
            Arc::new(Endpoint::new(address, 1 + (i % 4) as u32))
        })
        .collect()
}

fn build(c: &mut Criterion) {
    let ctx = BuildContext {
        clock: Arc::new(SystemClock),
        random: Arc::new(ThreadRandom),
    };
    let options = CommonOptions::default();
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    for n in [100, 1_000] {
        let eps = endpoints(n);
        let maglev = MaglevConfig { table_size: 65_537 };
        group.bench_with_input(BenchmarkId::new("maglev_65537", n), &n, |b, _| {
            b.iter(|| black_box(Maglev::new(&eps, &ctx, &options, &maglev)))
        });
        for table_size in [1_024, 65_536] {
            let ring = RingHashConfig { table_size };
            let name = format!("ring_hash_{table_size}");
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| black_box(RingHash::new(&eps, &ctx, &options, &ring)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);
