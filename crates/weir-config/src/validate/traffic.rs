//! Rules for a route's `mirror` and `fault` blocks (`traffic.rs`).
//!
//! Kept apart from `route.rs` so the traffic experiments can grow without touching the route
//! rules: shares must be in range, statuses must be answerable, header conditions must compile,
//! and the shadow cluster must exist.

use std::collections::BTreeMap;

use super::Checker;
use super::route::{cluster_ref, note, string_match};
use super::syntax;
use crate::path::YamlPath;
use crate::{ConfigNumber, FaultConfig, MirrorConfig, RouteConfig, StringMatchConfig};

/// Checks the `mirror` and `fault` blocks of the route at `path`.
pub(super) fn check(c: &mut Checker<'_>, route: &RouteConfig, path: &YamlPath, clusters: &[&str]) {
    if let Some(mirror) = &route.mirror {
        let forwards = route.cluster.is_some() || route.weighted_clusters.is_some();
        if !forwards && (route.redirect.is_some() || route.direct_response.is_some()) {
            c.report(
                &path.key("mirror"),
                "mirror on a route that answers by itself; nothing would be forwarded to copy",
                "use mirror on a route with `cluster` or `weighted_clusters`",
            );
        }
        self::mirror(c, mirror, &path.key("mirror"), clusters);
    }
    if let Some(fault) = &route.fault {
        self::fault(c, fault, &path.key("fault"));
    }
}

fn mirror(c: &mut Checker<'_>, m: &MirrorConfig, path: &YamlPath, clusters: &[&str]) {
    cluster_ref(c, &m.cluster, &path.key("cluster"), clusters);
    if m.fraction.is_some() && m.percent.is_some() {
        c.report(
            &path.key("percent"),
            "mirror has both fraction and percent",
            "give one of them: `fraction: 0.1` or `percent: 10`",
        );
    }
    if let Some(fraction) = m.fraction
        && !in_range(fraction, 1.0)
    {
        c.report(
            &path.key("fraction"),
            format!("fraction {} is outside 0.0–1.0", fraction.get()),
            "give the share of requests to copy, e.g. 0.1 for one request in ten",
        );
    }
    if let Some(percent) = m.percent {
        percent_in_range(c, percent, &path.key("percent"));
    }
    if m.timeout.get().is_zero() {
        c.report(
            &path.key("timeout"),
            "mirror timeout is 0; every shadow request would time out",
            "give a positive duration such as 10s (the default)",
        );
    }
    headers(c, &m.headers, &path.key("headers"));
}

fn fault(c: &mut Checker<'_>, f: &FaultConfig, path: &YamlPath) {
    if f.delay.is_none() && f.abort.is_none() {
        c.report(
            path,
            "fault has neither delay nor abort",
            "give `delay: { fixed: 100ms, percent: 10 }` and/or `abort: { status: 503, percent: 10 }`",
        );
    }
    if let Some(delay) = &f.delay {
        let path = path.key("delay");
        if delay.fixed.get().is_zero() {
            c.report(
                &path.key("fixed"),
                "fault delay is 0",
                "give a positive duration such as 100ms, or remove `delay`",
            );
        }
        percent_in_range(c, delay.percent, &path.key("percent"));
    }
    if let Some(abort) = &f.abort {
        let path = path.key("abort");
        if !(200..=599).contains(&abort.status) {
            c.report(
                &path.key("status"),
                format!("abort status {} is out of range", abort.status),
                "use a status from 200 to 599, e.g. 503",
            );
        }
        percent_in_range(c, abort.percent, &path.key("percent"));
    }
    headers(c, &f.headers, &path.key("headers"));
}

/// A header condition map: valid lower-case names and well-formed match rules.
fn headers(c: &mut Checker<'_>, map: &BTreeMap<String, StringMatchConfig>, path: &YamlPath) {
    for (name, rule) in map {
        let path = path.key(name);
        note(c, &path, syntax::check_header_name(name));
        string_match(c, rule, &path);
    }
}

fn percent_in_range(c: &mut Checker<'_>, percent: ConfigNumber, path: &YamlPath) {
    if !in_range(percent, 100.0) {
        c.report(
            path,
            format!("percent {} is outside 0–100", percent.get()),
            "give a share of requests in percent, e.g. 10 (decimals such as 0.5 are fine)",
        );
    }
}

/// `0 ≤ n ≤ max`, and not NaN.
fn in_range(n: ConfigNumber, max: f64) -> bool {
    (0.0..=max).contains(&n.get())
}
