//! Supports the decision to build hashing tables off the hot path, whenever membership
//! changes, and to default Maglev to 65,537 slots: it times a Maglev table build (M = 65,537)
//! and a ring build (the default 1,024 points and a Maglev-sized 65,536) for 100 and 1,000
//! endpoints, i.e. what a discovery update costs the control side.

use std::hint::black_box;

mod common;

use common::endpoints;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use weir_balance::{CommonOptions, Maglev, RingHash};
use weir_config::{MaglevConfig, RingHashConfig};

fn build(c: &mut Criterion) {
    let ctx = common::context();
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
