//! One endpoint of 10 is 20× slower. 50 closed-loop clients each hold a request for the
//! endpoint's service time, in an event-driven simulation on a `ManualClock`, and report every
//! round trip through `observe()`. Share of requests sent to the slow endpoint: peak EWMA < 3 %,
//! least request (P2C) < 10 %, round robin ≈ 10 % (it cannot tell).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use std::sync::Arc;

use serde_json::json;
use weir_core::{Clock, Endpoint, InFlightGuard, ManualClock};

use crate::test_util::{context_with_clock, endpoints};
use crate::{Balancer, Observation, Outcome, PickContext, RandomSource, SeededRandom, rng};

const CLIENTS: usize = 50;
const SLOW: usize = 7;
const FAST_MS: f64 = 10.0;
const SLOWDOWN: f64 = 20.0;

/// A request in flight: which endpoint, since when, holding its guard.
struct Exchange {
    endpoint: usize,
    started: u64,
    _guard: InFlightGuard,
}

/// The simulation's state: the balancer, the clock and the clients' requests.
struct Sim {
    balancer: Box<dyn Balancer>,
    eps: Vec<Arc<Endpoint>>,
    clock: Arc<ManualClock>,
    jitter: SeededRandom,
    counts: [usize; 10],
    issued: usize,
    /// Completion events: (finish time, client), earliest first.
    events: BinaryHeap<Reverse<(u64, usize)>>,
    exchanges: Vec<Option<Exchange>>,
}

impl Sim {
    /// Client `client` sends its next request.
    fn issue(&mut self, client: usize) {
        let endpoint = self.balancer.pick(&PickContext::default()).unwrap();
        self.counts[endpoint] += 1;
        self.issued += 1;
        let base = if endpoint == SLOW {
            FAST_MS * SLOWDOWN
        } else {
            FAST_MS
        };
        // ±10 % service-time jitter keeps the clients from moving in lockstep.
        let service_ms = base * (0.9 + 0.2 * rng::unit(self.jitter.next_u64()));
        let now = self.clock.now();
        self.events
            .push(Reverse((now + (service_ms * 1e6) as u64, client)));
        self.exchanges[client] = Some(Exchange {
            endpoint,
            started: now,
            _guard: self.eps[endpoint].state.begin_request(),
        });
    }

    /// The next request finishes: time moves to it and the balancer hears how long it took.
    fn complete_next(&mut self) -> usize {
        let Reverse((finish, client)) = self.events.pop().unwrap();
        self.clock
            .advance(Duration::from_nanos(finish - self.clock.now()));
        let done = self.exchanges[client].take().unwrap();
        let observation = Observation {
            rtt: Duration::from_nanos(finish - done.started),
            outcome: Outcome::Success,
        };
        self.balancer.observe(done.endpoint, &observation);
        client
    }
}

/// Share of `requests` picks that went to the slow endpoint under `fields`' policy.
fn slow_share(fields: serde_json::Value, requests: usize) -> f64 {
    let eps = endpoints(&[1; 10]);
    let (ctx, clock) = context_with_clock(17);
    let mut sim = Sim {
        balancer: super::balancer(fields.clone(), &eps, &ctx),
        eps,
        clock,
        jitter: SeededRandom::new(4),
        counts: [0; 10],
        issued: 0,
        events: BinaryHeap::new(),
        exchanges: (0..CLIENTS).map(|_| None).collect(),
    };
    for client in 0..CLIENTS {
        sim.issue(client);
    }
    while sim.issued < requests {
        let client = sim.complete_next();
        sim.issue(client);
    }
    let share = sim.counts[SLOW] as f64 / sim.issued as f64;
    eprintln!(
        "{fields}: slow endpoint got {:.2} % ({:?})",
        share * 100.0,
        sim.counts
    );
    share
}

#[test]
fn peak_ewma_avoids_the_slow_endpoint() {
    assert!(slow_share(json!({ "lb_policy": "peak_ewma" }), 20_000) < 0.03);
}

#[test]
fn least_request_sends_it_less() {
    assert!(slow_share(json!({ "lb_policy": "least_request" }), 20_000) < 0.10);
}

#[test]
fn round_robin_cannot_tell() {
    let share = slow_share(json!({ "lb_policy": "round_robin" }), 20_000);
    assert!((0.09..=0.11).contains(&share), "{share}");
}
