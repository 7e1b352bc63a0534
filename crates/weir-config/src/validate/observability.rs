//! Rules for the access log and trace context: a non-empty path, at least one field and no
//! field twice, a queue that can hold a record, a sampling ratio between 0 and 1, and an OTLP
//! exporter with an `http://` URL and positive sizes and durations.

use super::Checker;
use crate::path::YamlPath;
use crate::{AccessLogConfig, Config, OtlpConfig, TracingConfig};

/// Checks `access_log` and `tracing` when present.
pub(super) fn check(c: &mut Checker<'_>, config: &Config) {
    if let Some(log) = &config.access_log {
        access_log(c, log, &YamlPath::root().key("access_log"));
    }
    if let Some(tracing) = &config.tracing {
        self::tracing(c, tracing, &YamlPath::root().key("tracing"));
    }
}

fn access_log(c: &mut Checker<'_>, log: &AccessLogConfig, path: &YamlPath) {
    if log.path.trim().is_empty() {
        c.report(
            &path.key("path"),
            "the access log path is empty",
            "give a file path such as /var/log/weir/access.log, or `stdout`",
        );
    }
    if log.fields.is_empty() {
        c.report(
            &path.key("fields"),
            "the access log has no fields",
            "list the fields to write, or leave `fields` out for all of them",
        );
    }
    for (i, field) in log.fields.iter().enumerate() {
        if log.fields[..i].contains(field) {
            c.report(
                &path.key("fields").index(i),
                format!("field `{}` is listed twice", field.name()),
                "list each field once",
            );
        }
    }
    if log.queue_capacity == 0 {
        c.report(
            &path.key("queue_capacity"),
            "queue_capacity is 0",
            "give the number of records that may wait for the writer, e.g. 8192 (the default)",
        );
    }
}

fn tracing(c: &mut Checker<'_>, tracing: &TracingConfig, path: &YamlPath) {
    let sampling = tracing.sampling.get();
    if !(0.0..=1.0).contains(&sampling) {
        c.report(
            &path.key("sampling"),
            format!("sampling {sampling} is outside 0.0–1.0"),
            "give the share of new traces to sample, e.g. 0.1 for one in ten",
        );
    }
    if let Some(o) = &tracing.otlp {
        otlp(c, o, &path.key("otlp"));
    }
}

fn otlp(c: &mut Checker<'_>, otlp: &OtlpConfig, path: &YamlPath) {
    let endpoint = otlp.endpoint.trim();
    let https = endpoint.starts_with("https://");
    let authority = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .map(|rest| rest.split('/').next().unwrap_or(""));
    if otlp.ca.is_some() && !https {
        c.report(
            &path.key("ca"),
            "`ca` is set but the endpoint is not an https:// URL",
            "use an https:// endpoint, or leave `ca` out",
        );
    }
    match authority {
        None => c.report(
            &path.key("endpoint"),
            format!("endpoint `{endpoint}` is not an http:// or https:// URL"),
            "give the collector's OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces",
        ),
        Some("") => c.report(
            &path.key("endpoint"),
            format!("endpoint `{endpoint}` has no host"),
            "give the collector's OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces",
        ),
        Some(_) if endpoint.contains(char::is_whitespace) => c.report(
            &path.key("endpoint"),
            format!("endpoint `{endpoint}` contains whitespace"),
            "give the collector's OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces",
        ),
        Some(_) => {}
    }
    if otlp.service_name.trim().is_empty() {
        c.report(
            &path.key("service_name"),
            "service_name is empty",
            "leave it out for `weir`, or name the service",
        );
    }
    for (key, value, example) in [
        ("batch_size", otlp.batch_size, "512"),
        ("queue_capacity", otlp.queue_capacity, "8192"),
    ] {
        if value == 0 {
            c.report(
                &path.key(key),
                format!("{key} is 0"),
                format!("give a positive number, e.g. {example} (the default)"),
            );
        }
    }
    for (key, value, example) in [
        ("flush_interval", otlp.flush_interval, "1s"),
        ("timeout", otlp.timeout, "5s"),
    ] {
        if value.0.is_zero() {
            c.report(
                &path.key(key),
                format!("{key} is 0"),
                format!("give a positive duration, e.g. {example} (the default)"),
            );
        }
    }
}
