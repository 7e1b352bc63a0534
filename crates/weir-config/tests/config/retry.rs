//! `retry`, `hedge` and `buffer` on routes and `retry_budget` / `max_retries` on clusters:
//! defaults, both forms of a retry condition, and each rule's error with path, line and hint.

use std::time::Duration;

use crate::common::{assert_error, load_err, load_ok, with_route};
use weir_config::RetryOn;

#[test]
fn defaults_are_safe() {
    let cfg = load_ok(&with_route(&[
        "      - cluster: api",
        "        retry: {}",
        "        hedge: { delay: 50ms }",
        "        buffer: { max_request_bytes: 1024 }",
    ]));
    let route = &cfg.config().listeners[0].routes[0];
    let retry = route.retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 2);
    assert_eq!(retry.on, [RetryOn::ConnectFailure, RetryOn::RefusedStream]);
    assert_eq!(retry.per_try_timeout, None);
    assert_eq!(retry.backoff.base.get(), Duration::from_millis(25));
    assert_eq!(retry.backoff.max_wait(), Duration::from_millis(250));
    assert!(retry.honor_retry_after);
    assert_eq!(retry.max_replay_bytes, 64 * 1024);
    assert_eq!(route.hedge.unwrap().delay.get(), Duration::from_millis(50));
    assert_eq!(route.buffer.unwrap().max_request_bytes, 1024);
    let cluster = &cfg.config().clusters[0];
    assert_eq!(cluster.retry_budget.percent, 20);
    assert_eq!(cluster.retry_budget.min_per_second, 10);
    assert_eq!(cluster.retry_budget.window.get(), Duration::from_secs(10));
    assert_eq!(cluster.circuit_breakers.max_retries, 64);
}

#[test]
fn conditions_are_names_numbers_or_grpc_statuses() {
    let cfg = load_ok(&with_route(&[
        "      - cluster: api",
        "        retry:",
        "          on: [5xx, gateway-error, reset, 409, \"425\", unavailable, deadline-exceeded]",
    ]));
    let on = &cfg.config().listeners[0].routes[0]
        .retry
        .as_ref()
        .unwrap()
        .on;
    assert_eq!(
        on,
        &[
            RetryOn::Status5xx,
            RetryOn::GatewayError,
            RetryOn::Reset,
            RetryOn::Status(409),
            RetryOn::Status(425),
            RetryOn::Grpc(14),
            RetryOn::Grpc(4),
        ]
    );
    let shown: Vec<String> = on.iter().map(ToString::to_string).collect();
    assert_eq!(shown[5], "unavailable");
}

#[test]
fn an_unknown_condition_lists_the_valid_ones() {
    let e = load_err(&with_route(&[
        "      - cluster: api",
        "        retry: { on: [connect-failure, 5xxx] }",
    ]));
    assert_eq!(e.path, "listeners[0].routes[0].retry.on[1]", "{e}");
    assert_eq!(e.line, Some(7), "{e}");
    assert!(
        e.to_string().contains("unknown retry condition `5xxx`"),
        "{e}"
    );
    assert!(e.to_string().contains("gateway-error"), "{e}");
    let e = load_err(&with_route(&[
        "      - cluster: api",
        "        retry: { on: [700] }",
    ]));
    assert!(
        e.to_string().contains("700 is not an HTTP status code"),
        "{e}"
    );
}

#[test]
fn every_retry_rule_names_path_line_and_fix() {
    let cases: Vec<(Vec<&'static str>, &str, usize, &str, &str)> = vec![
        (
            with_route(&["      - cluster: api", "        retry: { attempts: 0 }"]),
            "listeners[0].routes[0].retry.attempts",
            7,
            "attempts is 0",
            "1 to 10 attempts",
        ),
        (
            with_route(&["      - cluster: api", "        retry: { on: [] }"]),
            "listeners[0].routes[0].retry.on",
            7,
            "nothing would be retried",
            "connect-failure",
        ),
        (
            with_route(&[
                "      - cluster: api",
                "        retry: { backoff: { base: 100ms, max: 10ms } }",
            ]),
            "listeners[0].routes[0].retry.backoff.max",
            7,
            "below base",
            "at least as long as base",
        ),
        (
            with_route(&[
                "      - cluster: api",
                "        retry: { per_try_timeout: 0s }",
            ]),
            "listeners[0].routes[0].retry.per_try_timeout",
            7,
            "every attempt would time out",
            "positive duration",
        ),
        (
            with_route(&["      - cluster: api", "        hedge: { delay: 0ms }"]),
            "listeners[0].routes[0].hedge.delay",
            7,
            "sent twice",
            "p95",
        ),
        (
            with_route(&[
                "      - cluster: api",
                "        buffer: { max_request_bytes: 0 }",
            ]),
            "listeners[0].routes[0].buffer.max_request_bytes",
            7,
            "would get 413",
            "positive size",
        ),
        (
            with_route(&[
                "      - direct_response: { status: 200 }",
                "        retry: {}",
            ]),
            "listeners[0].routes[0].retry",
            7,
            "does not forward",
            "`cluster`",
        ),
    ];
    for (lines, path, line, message, hint) in cases {
        assert_error(&lines, path, line, message, hint);
    }
}

#[test]
fn the_budget_window_and_share_are_bounded() {
    assert_error(
        &[
            "clusters:",
            "  - name: api",
            "    retry_budget: { window: 2m }",
        ],
        "clusters[0].retry_budget.window",
        3,
        "outside 1s to 60s",
        "1s to 60s",
    );
    assert_error(
        &[
            "clusters:",
            "  - name: api",
            "    retry_budget: { percent: 5000 }",
        ],
        "clusters[0].retry_budget.percent",
        3,
        "above 1000",
        "per 100 requests",
    );
}
