//! Rules for one HTTP route: its match, its single action and its header edits.

use std::collections::BTreeMap;

use super::Checker;
use super::syntax::{self, Problem};
use crate::path::YamlPath;
use crate::{
    DirectResponseConfig, HeaderRulesConfig, RedirectConfig, RouteConfig, RouteMatchConfig,
    StringMatchConfig, WeightedClusterConfig,
};

/// The actions a route may have; exactly one must be given.
const ACTIONS: &str = "cluster, weighted_clusters, redirect, direct_response";

/// Status codes a redirect may use.
const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// Checks one route at `path`; `clusters` are the defined cluster names.
pub(super) fn check(c: &mut Checker<'_>, route: &RouteConfig, path: &YamlPath, clusters: &[&str]) {
    route_match(c, &route.match_, &path.key("match"));
    actions(c, route, path, clusters);
    c.route_traffic_policy(route, path);
    if let Some(affinity) = &route.session_affinity {
        let at = path.key("session_affinity");
        if route.cluster.is_none() && route.weighted_clusters.is_none() {
            c.report(
                &at,
                "session_affinity on a route that forwards to no cluster",
                "remove it, or give the route a `cluster` or `weighted_clusters` action",
            );
        }
        c.session_affinity(affinity, &at);
    }
    if let Some(timeout) = route.timeout
        && timeout.get().is_zero()
    {
        c.report(
            &path.key("timeout"),
            "timeout is 0; every request would time out",
            "leave `timeout` out for no limit, or give a positive duration such as 5s",
        );
    }
    header_rules(c, &route.request_headers, &path.key("request_headers"));
    header_rules(c, &route.response_headers, &path.key("response_headers"));
}

/// Records `problem` at `path`, if there is one.
pub(super) fn note(c: &mut Checker<'_>, path: &YamlPath, result: Result<(), Problem>) {
    if let Err(problem) = result {
        c.report(path, problem.message, problem.hint);
    }
}

fn route_match(c: &mut Checker<'_>, m: &RouteMatchConfig, path: &YamlPath) {
    if let Some(host) = &m.host {
        note(c, &path.key("host"), syntax::check_host(host));
    }
    let paths: Vec<&str> = [
        ("path", m.path.is_some()),
        ("path_prefix", m.path_prefix.is_some()),
        ("path_regex", m.path_regex.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    if let [first, second, ..] = paths[..] {
        c.report(
            &path.key(second),
            format!("match has both {first} and {second}"),
            "give at most one of path, path_prefix, path_regex",
        );
    }
    for (key, value) in [("path", &m.path), ("path_prefix", &m.path_prefix)] {
        if let Some(value) = value
            && !value.starts_with('/')
        {
            c.report(
                &path.key(key),
                format!("{key} {value:?} does not start with `/`"),
                format!("paths start with a slash, e.g. /{value}"),
            );
        }
    }
    if let Some(regex) = &m.path_regex {
        note(c, &path.key("path_regex"), syntax::check_regex(regex));
    }
    if let Some(method) = &m.method {
        note(c, &path.key("method"), syntax::check_method(method));
    }
    let headers = path.key("headers");
    for (name, rule) in &m.headers {
        let path = headers.key(name);
        note(c, &path, syntax::check_header_name(name));
        string_match(c, rule, &path);
    }
    let query = path.key("query");
    for (name, rule) in &m.query {
        let path = query.key(name);
        if name.is_empty() {
            c.report(
                &path,
                "query parameter name is empty",
                "name the parameter, e.g. `query: { debug: { present: true } }`",
            );
        }
        string_match(c, rule, &path);
    }
}

pub(super) fn string_match(c: &mut Checker<'_>, rule: &StringMatchConfig, path: &YamlPath) {
    let StringMatchConfig::Rule(rule) = rule else {
        return;
    };
    let given: Vec<&str> = [
        ("exact", rule.exact.is_some()),
        ("regex", rule.regex.is_some()),
        ("present", rule.present.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    let hint = "give exactly one of exact, regex, present (or a plain string for an exact match)";
    match given[..] {
        [] => c.report(path, "match rule is empty", hint),
        [_] => {}
        [first, second, ..] => c.report(
            &path.key(second),
            format!("match rule has both {first} and {second}"),
            hint,
        ),
    }
    if let Some(regex) = &rule.regex {
        note(c, &path.key("regex"), syntax::check_regex(regex));
    }
}

fn actions(c: &mut Checker<'_>, route: &RouteConfig, path: &YamlPath, clusters: &[&str]) {
    let given: Vec<&str> = [
        ("cluster", route.cluster.is_some()),
        ("weighted_clusters", route.weighted_clusters.is_some()),
        ("redirect", route.redirect.is_some()),
        ("direct_response", route.direct_response.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    match given[..] {
        [] => c.report(
            path,
            "route has no action",
            format!("give exactly one of {ACTIONS}"),
        ),
        [_] => {}
        [_, second, ..] => c.report(
            &path.key(second),
            format!("route has {} actions ({})", given.len(), given.join(", ")),
            format!("give exactly one of {ACTIONS}"),
        ),
    }
    if let Some(cluster) = &route.cluster {
        cluster_ref(c, cluster, &path.key("cluster"), clusters);
    }
    if let Some(split) = &route.weighted_clusters {
        weighted(c, split, &path.key("weighted_clusters"), clusters);
    }
    if let Some(redirect) = &route.redirect {
        self::redirect(c, redirect, &path.key("redirect"));
    }
    if let Some(direct) = &route.direct_response {
        direct_response(c, direct, &path.key("direct_response"));
    }
}

pub(super) fn cluster_ref(c: &mut Checker<'_>, name: &str, path: &YamlPath, clusters: &[&str]) {
    if clusters.contains(&name) {
        return;
    }
    let hint = if clusters.is_empty() {
        "no clusters are defined; add one under `clusters:`".to_owned()
    } else {
        format!("defined clusters: {}", clusters.join(", "))
    };
    c.report(path, format!("unknown cluster {name:?}"), hint);
}

fn weighted(
    c: &mut Checker<'_>,
    split: &[WeightedClusterConfig],
    path: &YamlPath,
    clusters: &[&str],
) {
    let example = "e.g. `[ { cluster: web, weight: 90 }, { cluster: web-next, weight: 10 } ]`";
    if split.is_empty() {
        c.report(
            path,
            "weighted_clusters is empty",
            format!("list at least one cluster with a weight, {example}"),
        );
        return;
    }
    let total: u64 = split.iter().map(|w| u64::from(w.weight)).sum();
    if total == 0 {
        c.report(
            path,
            "the weights of weighted_clusters add up to 0",
            "give at least one entry a weight above 0",
        );
    }
    for (k, entry) in split.iter().enumerate() {
        cluster_ref(c, &entry.cluster, &path.index(k).key("cluster"), clusters);
    }
}

fn redirect(c: &mut Checker<'_>, redirect: &RedirectConfig, path: &YamlPath) {
    if !REDIRECT_STATUSES.contains(&redirect.status) {
        c.report(
            &path.key("status"),
            format!("{} is not a redirect status", redirect.status),
            "use 301, 302, 303, 307 or 308",
        );
    }
    if redirect.path.is_none() && redirect.host.is_none() && redirect.scheme.is_none() {
        c.report(
            path,
            "redirect changes nothing; clients would be sent back to the same URL",
            "set at least one of path, host, scheme",
        );
    }
    if let Some(target) = &redirect.path
        && !target.starts_with('/')
    {
        c.report(
            &path.key("path"),
            format!("redirect path {target:?} does not start with `/`"),
            format!("paths start with a slash, e.g. /{target}"),
        );
    }
    if let Some(scheme) = &redirect.scheme
        && scheme != "http"
        && scheme != "https"
    {
        c.report(
            &path.key("scheme"),
            format!("unknown scheme {scheme:?}"),
            "use http or https",
        );
    }
    if let Some(host) = &redirect.host {
        let valid = !host.is_empty()
            && !host
                .chars()
                .any(|ch| ch.is_whitespace() || ch.is_control() || "/?#@*".contains(ch));
        if !valid {
            c.report(
                &path.key("host"),
                format!("{host:?} is not a host"),
                "write a host, optionally with a port, e.g. www.example.com or example.com:8443",
            );
        }
    }
}

fn direct_response(c: &mut Checker<'_>, direct: &DirectResponseConfig, path: &YamlPath) {
    if !(200..=599).contains(&direct.status) {
        c.report(
            &path.key("status"),
            format!("status {} is out of range", direct.status),
            "use a status from 200 to 599",
        );
    }
    if let Some(content_type) = &direct.content_type {
        note(
            c,
            &path.key("content_type"),
            syntax::check_header_value(content_type),
        );
    }
}

/// Headers that frame or route the message: editing them would desynchronise the connection
/// (a wrong `content-length`) or break the protocol, so header rules may not touch them.
const RESERVED_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "host",
];

fn header_rules(c: &mut Checker<'_>, rules: &HeaderRulesConfig, path: &YamlPath) {
    for (key, map) in [("add", &rules.add), ("set", &rules.set)] {
        header_map(c, map, &path.key(key));
    }
    let remove = path.key("remove");
    for (k, name) in rules.remove.iter().enumerate() {
        note(c, &remove.index(k), syntax::check_header_name(name));
        reserved(c, name, &remove.index(k));
    }
}

fn header_map(c: &mut Checker<'_>, map: &BTreeMap<String, String>, path: &YamlPath) {
    for (name, value) in map {
        let path = path.key(name);
        note(c, &path, syntax::check_header_name(name));
        note(c, &path, syntax::check_header_value(value));
        reserved(c, name, &path);
    }
}

fn reserved(c: &mut Checker<'_>, name: &str, path: &YamlPath) {
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) || name.starts_with(':') {
        c.report(
            path,
            format!("header rules may not change `{name}`"),
            "weir manages framing, connection and host headers itself; edit other headers",
        );
    }
}
