//! Rules for the access log and trace context: a non-empty path, at least one field and no
//! field twice, a queue that can hold a record, and a sampling ratio between 0 and 1.

use super::Checker;
use crate::path::YamlPath;
use crate::{AccessLogConfig, Config, TracingConfig};

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
}
