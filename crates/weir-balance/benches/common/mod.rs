//! Fixtures shared by the balancer benches: endpoint sets and a production build context.

use std::net::SocketAddr;
use std::sync::Arc;

use weir_balance::{BuildContext, ThreadRandom};
use weir_core::{Endpoint, SystemClock};

/// `n` endpoints on distinct 10.x.y.z addresses, weights cycling 1..=4.
pub(crate) fn endpoints(n: usize) -> Vec<Arc<Endpoint>> {
    (0..n)
        .map(|i| {
            let [_, a, b, c] = (i as u32).to_be_bytes();
            let address = SocketAddr::from(([10, a, b, c], 8080));
            Arc::new(Endpoint::new(address, 1 + (i % 4) as u32))
        })
        .collect()
}

/// The clock and random source production uses.
pub(crate) fn context() -> BuildContext {
    BuildContext {
        clock: Arc::new(SystemClock),
        random: Arc::new(ThreadRandom),
    }
}
