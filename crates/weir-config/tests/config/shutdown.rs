//! `shutdown`: the drain timeout loads with its default, a set value is kept, and a zero or a
//! misspelt key is reported with its YAML path and line.

use std::time::Duration;

use crate::common::{assert_error, load_ok};
use weir_config::DEFAULT_DRAIN_TIMEOUT;

#[test]
fn the_drain_timeout_defaults_to_30s_and_can_be_set() {
    let none = load_ok(&["listeners: []"]);
    assert_eq!(none.config().drain_timeout(), Duration::from_secs(30));
    assert_eq!(DEFAULT_DRAIN_TIMEOUT, Duration::from_secs(30));
    let empty = load_ok(&["shutdown: {}"]);
    assert_eq!(empty.config().drain_timeout(), DEFAULT_DRAIN_TIMEOUT);
    let set = load_ok(&["listeners: []", "shutdown:", "  drain_timeout: 1m30s"]);
    assert_eq!(set.config().drain_timeout(), Duration::from_secs(90));
}

#[test]
fn a_zero_drain_timeout_is_refused_with_its_line() {
    assert_error(
        &["listeners: []", "shutdown:", "  drain_timeout: 0"],
        "shutdown.drain_timeout",
        3,
        "drain_timeout is 0",
        "30s",
    );
}

#[test]
fn a_bad_drain_timeout_names_its_position() {
    assert_error(
        &["shutdown:", "  drain_timeout: 30"],
        "shutdown.drain_timeout",
        2,
        "no unit",
        "",
    );
    assert_error(
        &["shutdown:", "  grace: 30s"],
        "shutdown.grace",
        2,
        "grace",
        "drain_timeout",
    );
}
