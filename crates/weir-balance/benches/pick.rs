//! Supports the decision that every policy's `pick()` is cheap enough for the per-request hot
//! path, and at which cluster sizes: each policy is timed at 10, 100 and 10,000 endpoints with
//! the production sources (`ThreadRandom`, `SystemClock`). Target: ≤ 50 ns for round robin,
//! random, P2C least request and Maglev at 10,000 endpoints. The full-scan least request is
//! O(n) by design and shows where it stops being usable; ring hash shows its binary search.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::endpoints;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use weir_balance::{
    Balancer, BuildContext, CommonOptions, LeastRequest, Maglev, Observation, Outcome, PeakEwma,
    PickContext, Random, RingHash, RoundRobin,
};
use weir_config::{ChoiceCount, LeastRequestConfig};
use weir_core::Endpoint;

const SIZES: [usize; 3] = [10, 100, 10_000];

/// Builds one policy over endpoints.
type Builder = fn(&[Arc<Endpoint>], &BuildContext) -> Box<dyn Balancer>;

/// (bench name, builder, hashed picks?)
fn policies() -> Vec<(&'static str, Builder, bool)> {
    vec![
        (
            "round_robin",
            |e, c| Box::new(RoundRobin::new(e, c, &CommonOptions::default())),
            false,
        ),
        (
            "random",
            |e, c| Box::new(Random::new(e, c, &CommonOptions::default())),
            false,
        ),
        (
            "least_request_p2c",
            |e, c| {
                Box::new(LeastRequest::new(
                    e,
                    c,
                    &CommonOptions::default(),
                    &LeastRequestConfig::default(),
                ))
            },
            false,
        ),
        (
            "least_request_all",
            |e, c| {
                let all = LeastRequestConfig {
                    choice_count: ChoiceCount::All,
                    ..LeastRequestConfig::default()
                };
                Box::new(LeastRequest::new(e, c, &CommonOptions::default(), &all))
            },
            false,
        ),
        (
            "peak_ewma",
            |e, c| {
                Box::new(PeakEwma::new(
                    e,
                    c,
                    &CommonOptions::default(),
                    &Default::default(),
                ))
            },
            false,
        ),
        (
            "ring_hash_1024",
            |e, c| {
                Box::new(RingHash::new(
                    e,
                    c,
                    &CommonOptions::default(),
                    &Default::default(),
                ))
            },
            true,
        ),
        (
            "maglev_65537",
            |e, c| {
                Box::new(Maglev::new(
                    e,
                    c,
                    &CommonOptions::default(),
                    &Default::default(),
                ))
            },
            true,
        ),
        (
            "maglev_bounded_1.25",
            |e, c| {
                let bounded = CommonOptions {
                    hash_balance_factor: Some(1.25),
                    ..CommonOptions::default()
                };
                Box::new(Maglev::new(e, c, &bounded, &Default::default()))
            },
            true,
        ),
    ]
}

fn pick(c: &mut Criterion) {
    let ctx = common::context();
    let mut group = c.benchmark_group("pick");
    for (name, make, hashed) in policies() {
        for n in SIZES {
            let eps = endpoints(n);
            let balancer = make(&eps, &ctx);
            // Latency-aware policies read real estimates, not the never-observed shortcut.
            for i in 0..n {
                let rtt = Duration::from_micros(500 + (i as u64 % 7) * 100);
                balancer.observe(
                    i,
                    &Observation {
                        rtt,
                        outcome: Outcome::Success,
                    },
                );
            }
            let mut key = 0u64;
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    key = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let ctx = PickContext {
                        hash: hashed.then_some(key),
                        attempt: 0,
                    };
                    black_box(balancer.pick(black_box(&ctx)))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
