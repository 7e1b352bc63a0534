//! W3C trace context through the running proxy (issue #9): an incoming trace is continued
//! with weir's own span as the parent, a missing or invalid `traceparent` is replaced by a new
//! trace, and the access log names the trace of each request. The endpoint's `/headers` shows
//! what weir sent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::Duration;

use serde_json::Value;
use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockHttp, wait_until};

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The value of `name` among the `name: value` lines `/headers` answers, if present once.
fn header<'a>(echoed: &'a str, name: &str) -> Option<&'a str> {
    let mut found = echoed
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(": "));
    let first = found.next();
    assert!(found.next().is_none(), "{name} sent once: {echoed}");
    first
}

/// `(version, trace id, parent id, flags)` of a well-formed version-00 value.
fn fields(traceparent: &str) -> (&str, &str, &str, &str) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(traceparent.len(), 55, "{traceparent}");
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(parts.iter().all(|p| hex(p)), "lowercase hex: {traceparent}");
    assert_ne!(parts[1], "0".repeat(32));
    assert_ne!(parts[2], "0".repeat(16));
    (parts[0], parts[1], parts[2], parts[3])
}

fn config(extra: &str, log: &std::path::Path, endpoint: std::net::SocketAddr) -> String {
    format!(
        "{extra}access_log: {{ path: {}, fields: [path, trace_id] }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - cluster: c
clusters:
  - name: c
    endpoints: [ {endpoint} ]
",
        log.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_are_continued_started_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mock = MockHttp::start("m").await;
    let p = TestProxy::start(&config("tracing: { sampling: 1.0 }\n", &log, mock.addr())).await;
    let client = h1_client();

    // Continued: same trace id and flags, weir's span as the parent, tracestate untouched.
    let r = get(
        &client,
        &p.url("/headers?continued"),
        &[
            ("traceparent", INCOMING),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    )
    .await;
    let echoed = r.text();
    let (version, trace, parent, flags) = fields(header(&echoed, "traceparent").unwrap());
    assert_eq!((version, trace, flags), ("00", TRACE_ID, "01"));
    assert_ne!(parent, "00f067aa0ba902b7", "a new span id");
    assert_eq!(header(&echoed, "tracestate"), Some("congo=t61rcWkgMzE"));

    // Absent: a new, valid, sampled (ratio 1.0) trace.
    let r = get(&client, &p.url("/headers?absent"), &[]).await;
    let echoed = r.text();
    let (_, started, _, flags) = fields(header(&echoed, "traceparent").unwrap());
    assert_eq!(flags, "01");
    let started = started.to_owned();

    // Invalid (upper case): replaced by a new trace; the foreign tracestate goes too.
    let r = get(
        &client,
        &p.url("/headers?invalid"),
        &[
            ("traceparent", &INCOMING.to_uppercase()),
            ("tracestate", "other=1"),
        ],
    )
    .await;
    let echoed = r.text();
    let (_, replaced, _, _) = fields(header(&echoed, "traceparent").unwrap());
    assert_ne!(replaced.to_uppercase(), TRACE_ID.to_uppercase());
    assert_eq!(header(&echoed, "tracestate"), None);
    let replaced = replaced.to_owned();

    let access = p.proxy().access_log().unwrap();
    assert!(wait_until(Duration::from_secs(10), || access.written() >= 3).await);
    access.flush().await.unwrap();
    let logged: Vec<(String, String)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["path"].as_str().unwrap().to_owned(),
                v["trace_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        logged,
        [
            ("/headers?continued".to_owned(), TRACE_ID.to_owned()),
            ("/headers?absent".to_owned(), started),
            ("/headers?invalid".to_owned(), replaced),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_zero_starts_unsampled_traces_and_keeps_the_callers_flag() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mock = MockHttp::start("m").await;
    let p = TestProxy::start(&config("tracing: { sampling: 0 }\n", &log, mock.addr())).await;
    let client = h1_client();
    let echoed = get(&client, &p.url("/headers"), &[]).await.text();
    let (_, _, _, flags) = fields(header(&echoed, "traceparent").unwrap());
    assert_eq!(flags, "00", "a new trace is not sampled at ratio 0");
    let echoed = get(&client, &p.url("/headers"), &[("traceparent", INCOMING)])
        .await
        .text();
    let (_, trace, _, flags) = fields(header(&echoed, "traceparent").unwrap());
    assert_eq!((trace, flags), (TRACE_ID, "01"), "the caller decided");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracing_headers_pass_through_and_the_log_still_names_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mock = MockHttp::start("m").await;
    let p = TestProxy::start(&config("", &log, mock.addr())).await;
    let client = h1_client();
    let r = get(&client, &p.url("/headers"), &[("traceparent", INCOMING)]).await;
    assert_eq!(
        header(&r.text(), "traceparent"),
        Some(INCOMING),
        "untouched"
    );
    let r = get(&client, &p.url("/headers"), &[]).await;
    assert_eq!(header(&r.text(), "traceparent"), None, "none added");

    let access = p.proxy().access_log().unwrap();
    assert!(wait_until(Duration::from_secs(10), || access.written() >= 2).await);
    access.flush().await.unwrap();
    let ids: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["trace_id"].clone())
        .collect();
    assert_eq!(ids, [Value::from(TRACE_ID), Value::Null]);
}
