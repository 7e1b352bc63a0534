//! The Maglev table both kernel planes program: weir-balance's own, built over a VIP's
//! endpoints exactly as userspace builds it, so the kernel and weir agree on every flow.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;

use weir_balance::{BuildContext, CommonOptions, Maglev, SeededRandom};
use weir_config::MaglevConfig;
use weir_core::{Endpoint, SystemClock};

use crate::Error;

/// The endpoints' IPv4 addresses (in order) and the Maglev table over them; an IPv6 endpoint is
/// an error, since both planes balance IPv4 only.
pub(crate) fn maglev_table(
    endpoints: &[Arc<Endpoint>],
    options: &CommonOptions,
    config: &MaglevConfig,
) -> Result<(Vec<SocketAddrV4>, Maglev), Error> {
    let addrs = endpoints
        .iter()
        .map(|e| match e.address {
            SocketAddr::V4(a) => Ok(a),
            other => Err(Error::NotIpv4(other)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let context = BuildContext {
        clock: Arc::new(SystemClock),
        random: Arc::new(SeededRandom::new(0)),
    };
    Ok((addrs, Maglev::new(endpoints, &context, options, config)))
}
