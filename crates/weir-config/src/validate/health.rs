//! Rules for a cluster's health options: one probe kind per check, positive timings, thresholds
//! that can be met, and an outlier detector that can detect something.

use super::Checker;
use crate::path::YamlPath;
use crate::{ClusterConfig, ConfigDuration, HealthCheckConfig, OutlierDetectionConfig};

// === impl Checker ===

impl Checker<'_> {
    /// Checks `health_check` and `outlier_detection` of `cluster` at `path`.
    pub(super) fn health(&mut self, cluster: &ClusterConfig, path: &YamlPath) {
        if let Some(hc) = &cluster.health_check {
            self.health_check(hc, &path.key("health_check"));
        }
        if let Some(od) = &cluster.outlier_detection {
            self.outlier_detection(od, &path.key("outlier_detection"));
        }
    }

    fn health_check(&mut self, hc: &HealthCheckConfig, path: &YamlPath) {
        let given: Vec<&str> = [
            ("http", hc.http.is_some()),
            ("tcp", hc.tcp.is_some()),
            ("grpc", hc.grpc.is_some()),
            ("udp", hc.udp.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect();
        match given.as_slice() {
            [] => self.report(
                path,
                "health_check names no probe",
                "add one of `http: {}`, `tcp: {}`, `grpc: {}` or `udp: { send: ... }`",
            ),
            [_] => {}
            [_, second, ..] => self.report(
                &path.key(second),
                format!("health_check names several probes ({})", given.join(", ")),
                "keep exactly one of http, tcp, grpc, udp",
            ),
        }
        for (key, d) in [
            ("interval", Some(hc.interval)),
            ("timeout", Some(hc.timeout)),
            ("unhealthy_interval", hc.unhealthy_interval),
        ] {
            if d.is_some_and(|d| d.get().is_zero()) {
                self.report(
                    &path.key(key),
                    format!("{key} is 0"),
                    "give a positive duration such as 5s",
                );
            }
        }
        for (key, v) in [
            ("healthy_threshold", hc.healthy_threshold),
            ("unhealthy_threshold", hc.unhealthy_threshold),
        ] {
            if v == 0 {
                self.report(
                    &path.key(key),
                    format!("{key} is 0, so the state could never change"),
                    "give at least 1 (the defaults are 2 and 3)",
                );
            }
        }
        if let Some(http) = &hc.http {
            let path = path.key("http");
            if !http.path.starts_with('/') {
                self.report(
                    &path.key("path"),
                    format!("health check path {:?} does not start with /", http.path),
                    "write an origin-form path such as /healthz",
                );
            }
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if http.method.is_empty() || !http.method.chars().all(token) {
                self.report(
                    &path.key("method"),
                    format!("{:?} is not an HTTP method", http.method),
                    "use a method such as GET or HEAD",
                );
            }
            if let Some(host) = &http.host
                && (host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                self.report(
                    &path.key("host"),
                    format!("{host:?} is not a valid host"),
                    "give a host name such as api.internal, or leave `host` out",
                );
            }
            if http.expected_statuses.is_empty() {
                self.report(
                    &path.key("expected_statuses"),
                    "expected_statuses is empty, so no check could pass",
                    "list codes or ranges such as [200, \"300-399\"], or leave it out for 200-399",
                );
            }
        }
        if let Some(udp) = &hc.udp
            && udp.send.is_empty()
        {
            self.report(
                &path.key("udp").key("send"),
                "the UDP probe payload is empty",
                "give the datagram the endpoint answers, e.g. \"ping\"",
            );
        }
    }

    fn outlier_detection(&mut self, od: &OutlierDetectionConfig, path: &YamlPath) {
        if od.consecutive_5xx == 0
            && od.consecutive_gateway_errors == 0
            && od.consecutive_connect_failures == 0
            && od.failure_percentage.is_none()
        {
            self.report(
                path,
                "outlier_detection has every detector turned off",
                "set consecutive_5xx, consecutive_gateway_errors, consecutive_connect_failures \
                 or failure_percentage, or remove the block",
            );
        }
        let zero = |d: &ConfigDuration| d.get().is_zero();
        for (key, d) in [
            ("interval", &od.interval),
            ("base_ejection_time", &od.base_ejection_time),
        ] {
            if zero(d) {
                self.report(
                    &path.key(key),
                    format!("{key} is 0"),
                    "give a positive duration such as 10s",
                );
            }
        }
        if let Some(max) = od.max_ejection_time
            && max < od.base_ejection_time
        {
            self.report(
                &path.key("max_ejection_time"),
                format!(
                    "max_ejection_time {max} is shorter than base_ejection_time {}",
                    od.base_ejection_time
                ),
                "make max_ejection_time at least base_ejection_time",
            );
        }
        if od.max_ejection_percent > 100 {
            self.report(
                &path.key("max_ejection_percent"),
                format!(
                    "max_ejection_percent {} is over 100",
                    od.max_ejection_percent
                ),
                "give a percentage from 0 to 100 (default 50)",
            );
        }
        if let Some(fp) = &od.failure_percentage {
            let path = path.key("failure_percentage");
            if !(1..=100).contains(&fp.threshold) {
                self.report(
                    &path.key("threshold"),
                    format!(
                        "threshold {} is not a percentage from 1 to 100",
                        fp.threshold
                    ),
                    "give a percentage such as 85",
                );
            }
            if fp.request_volume == 0 {
                self.report(
                    &path.key("request_volume"),
                    "request_volume is 0, so one failed request would eject",
                    "give a minimum such as 50",
                );
            }
        }
    }
}
