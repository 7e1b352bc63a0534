//! Access log and tracing config: the schema loads with its defaults, and every bad value is
//! reported with its YAML path, line and a hint.

use crate::common::{assert_error, load_ok};
use weir_config::{AccessLogField, DEFAULT_ACCESS_LOG_QUEUE};

#[test]
fn full_schema_loads_and_defaults_apply() {
    let config = load_ok(&[
        "access_log:",
        "  path: /var/log/weir/access.log",
        "  fields: [time, status, trace_id, datagrams_in, datagrams_out]",
        "  queue_capacity: 100",
        "tracing: { sampling: 0.1 }",
    ]);
    let cfg = config.config();
    let log = cfg.access_log.as_ref().unwrap();
    assert_eq!(log.path, "/var/log/weir/access.log");
    assert!(!log.is_stdout());
    assert_eq!(
        log.fields,
        [
            AccessLogField::Time,
            AccessLogField::Status,
            AccessLogField::TraceId,
            AccessLogField::DatagramsIn,
            AccessLogField::DatagramsOut,
        ]
    );
    assert_eq!(log.queue_capacity, 100);
    assert_eq!(cfg.tracing.as_ref().unwrap().sampling.get(), 0.1);

    let config = load_ok(&["access_log: { path: stdout }", "tracing: {}"]);
    let cfg = config.config();
    let log = cfg.access_log.as_ref().unwrap();
    assert!(log.is_stdout());
    assert_eq!(log.fields, AccessLogField::all(), "every field by default");
    assert_eq!(log.queue_capacity, DEFAULT_ACCESS_LOG_QUEUE);
    assert_eq!(cfg.tracing.as_ref().unwrap().sampling.get(), 1.0);

    let none = load_ok(&["listeners: []"]);
    assert!(none.config().access_log.is_none() && none.config().tracing.is_none());
}

#[test]
fn an_unknown_field_names_its_position() {
    assert_error(
        &["access_log:", "  path: stdout", "  fields: [time, stauts]"],
        "access_log.fields[1]",
        3,
        "stauts",
        "",
    );
}

#[test]
fn a_field_listed_twice_is_refused() {
    assert_error(
        &[
            "access_log:",
            "  path: stdout",
            "  fields:",
            "    - status",
            "    - path",
            "    - status",
        ],
        "access_log.fields[2]",
        6,
        "field `status` is listed twice",
        "list each field once",
    );
}

#[test]
fn no_fields_an_empty_path_or_no_queue_are_refused() {
    assert_error(
        &["access_log:", "  path: stdout", "  fields: []"],
        "access_log.fields",
        3,
        "no fields",
        "leave `fields` out",
    );
    assert_error(
        &["access_log:", "  path: \"\""],
        "access_log.path",
        2,
        "path is empty",
        "stdout",
    );
    assert_error(
        &["access_log:", "  path: stdout", "  queue_capacity: 0"],
        "access_log.queue_capacity",
        3,
        "queue_capacity is 0",
        "8192",
    );
    assert_error(
        &["access_log: { fields: [time] }"],
        "access_log",
        1,
        "path",
        "",
    );
}

#[test]
fn sampling_must_be_a_share() {
    for bad in ["1.5", "-0.1", ".nan"] {
        let line = format!("  sampling: {bad}");
        assert_error(
            &["tracing:", &line],
            "tracing.sampling",
            2,
            "is outside 0.0–1.0",
            "e.g. 0.1",
        );
    }
    assert_error(
        &["tracing: { sample: 0.1 }"],
        "tracing.sample",
        1,
        "unknown key `sample`",
        "sampling",
    );
}

#[test]
fn otlp_loads_with_its_defaults() {
    let config = load_ok(&[
        "tracing:",
        "  sampling: 0.1",
        "  otlp: { endpoint: \"http://127.0.0.1:4318/v1/traces\" }",
    ]);
    let otlp = config
        .config()
        .tracing
        .as_ref()
        .unwrap()
        .otlp
        .clone()
        .unwrap();
    assert_eq!(otlp.endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_eq!(otlp.service_name, "weir");
    assert_eq!((otlp.batch_size, otlp.queue_capacity), (512, 8192));
    assert_eq!(otlp.flush_interval.0, std::time::Duration::from_secs(1));
    assert_eq!(otlp.timeout.0, std::time::Duration::from_secs(5));

    let config = load_ok(&[
        "tracing:",
        "  otlp:",
        "    endpoint: http://collector:4318/v1/traces",
        "    service_name: edge",
        "    batch_size: 10",
        "    flush_interval: 200ms",
        "    queue_capacity: 100",
        "    timeout: 2s",
    ]);
    let otlp = config
        .config()
        .tracing
        .as_ref()
        .unwrap()
        .otlp
        .clone()
        .unwrap();
    assert_eq!(otlp.service_name, "edge");
    assert_eq!((otlp.batch_size, otlp.queue_capacity), (10, 100));
    assert_eq!(otlp.flush_interval.0, std::time::Duration::from_millis(200));
}

#[test]
fn otlp_needs_an_http_url_and_positive_numbers() {
    let with = |line: &str| vec!["tracing:".to_owned(), "  otlp:".to_owned(), line.to_owned()];
    for (extra, key, message) in [
        (
            "    endpoint: ftp://c:4318/v1/traces",
            "endpoint",
            "not an http:// or https:// URL",
        ),
        (
            "    endpoint: c:4318",
            "endpoint",
            "not an http:// or https:// URL",
        ),
        ("    endpoint: http:///v1/traces", "endpoint", "has no host"),
    ] {
        let lines = with(extra);
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_error(
            &lines,
            &format!("tracing.otlp.{key}"),
            3,
            message,
            "http://127.0.0.1:4318",
        );
    }
    for (extra, key, hint) in [
        ("    batch_size: 0", "batch_size", "512"),
        ("    queue_capacity: 0", "queue_capacity", "8192"),
        ("    flush_interval: 0", "flush_interval", "1s"),
        ("    timeout: 0", "timeout", "5s"),
        ("    service_name: \"\"", "service_name", "weir"),
    ] {
        let lines = [
            "tracing:",
            "  otlp:",
            "    endpoint: http://c:4318/v1/traces",
            extra,
        ];
        let path = format!("tracing.otlp.{key}");
        assert_error(&lines, &path, 4, "", hint);
    }
    assert_error(
        &[
            "tracing:",
            "  otlp: { endpoint: http://c/v1/traces, batch: 1 }",
        ],
        "tracing.otlp.batch",
        2,
        "unknown key `batch`",
        "",
    );
}

#[test]
fn otlp_takes_https_with_an_optional_ca_but_no_ca_for_http() {
    let config = load_ok(&[
        "tracing:",
        "  otlp:",
        "    endpoint: https://collector.example:4318/v1/traces",
        "    ca: /etc/weir/collector-ca.pem",
    ]);
    let otlp = config
        .config()
        .tracing
        .as_ref()
        .unwrap()
        .otlp
        .clone()
        .unwrap();
    assert_eq!(otlp.ca.as_deref(), Some("/etc/weir/collector-ca.pem"));
    assert_error(
        &[
            "tracing:",
            "  otlp:",
            "    endpoint: http://c:4318/v1/traces",
            "    ca: /etc/weir/ca.pem",
        ],
        "tracing.otlp.ca",
        4,
        "not an https:// URL",
        "leave `ca` out",
    );
}
