//! `shutdown`: the drain timeout and the ready delay load with their defaults, set values are
//! kept, and a zero drain timeout, a ready delay over an hour or a misspelt key is reported
//! with its YAML path and line.

use std::time::Duration;

use crate::common::{assert_error, load_ok};
use weir_config::{DEFAULT_DRAIN_TIMEOUT, MAX_READY_DELAY};

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

#[test]
fn the_ready_delay_defaults_to_zero_and_can_be_set() {
    let none = load_ok(&["listeners: []"]);
    assert_eq!(none.config().ready_delay(), Duration::ZERO);
    let empty = load_ok(&["shutdown: {}"]);
    assert_eq!(empty.config().ready_delay(), Duration::ZERO);
    let set = load_ok(&[
        "listeners: []",
        "shutdown:",
        "  ready_delay: 5s",
        "  drain_timeout: 10s",
    ]);
    assert_eq!(set.config().ready_delay(), Duration::from_secs(5));
    assert_eq!(set.config().drain_timeout(), Duration::from_secs(10));
    let hour = load_ok(&["shutdown: { ready_delay: 1h }"]);
    assert_eq!(hour.config().ready_delay(), MAX_READY_DELAY);
}

#[test]
fn a_bad_or_huge_ready_delay_is_refused_with_its_line() {
    assert_error(
        &["listeners: []", "shutdown:", "  ready_delay: 5"],
        "shutdown.ready_delay",
        3,
        "no unit",
        "",
    );
    assert_error(
        &["shutdown:", "  drain_timeout: 10s", "  ready_delay: 2h"],
        "shutdown.ready_delay",
        3,
        "ready_delay is 2h",
        "/ready",
    );
    assert_error(
        &["shutdown:", "  ready_dalay: 5s"],
        "shutdown.ready_dalay",
        2,
        "ready_dalay",
        "ready_delay",
    );
}
