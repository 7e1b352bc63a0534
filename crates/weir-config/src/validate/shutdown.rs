//! Rules for `shutdown`: a drain timeout that lets in-flight work finish at all, and a ready
//! delay short enough that weir still stops.

use super::Checker;
use crate::path::YamlPath;
use crate::{Config, MAX_READY_DELAY};

/// Checks `shutdown` when present.
pub(super) fn check(c: &mut Checker<'_>, config: &Config) {
    let Some(shutdown) = &config.shutdown else {
        return;
    };
    if shutdown.drain_timeout.get().is_zero() {
        c.report(
            &YamlPath::root().key("shutdown").key("drain_timeout"),
            "drain_timeout is 0: every request in flight would be cut when weir stops",
            "give the time in-flight requests may take to finish, e.g. 30s (the default)",
        );
    }
    if shutdown.ready_delay.get() > MAX_READY_DELAY {
        c.report(
            &YamlPath::root().key("shutdown").key("ready_delay"),
            format!(
                "ready_delay is {}: weir would keep serving that long after a shutdown \
                 signal, longer than any load balancer takes to see /ready fail",
                shutdown.ready_delay
            ),
            "give the time the load balancer in front needs to notice /ready answering 503 \
             (its check interval times its failure threshold), e.g. 5s; at most 1h",
        );
    }
}
