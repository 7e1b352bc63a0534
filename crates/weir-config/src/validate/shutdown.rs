//! Rules for `shutdown`: a drain timeout that lets in-flight work finish at all.

use super::Checker;
use crate::Config;
use crate::path::YamlPath;

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
}
