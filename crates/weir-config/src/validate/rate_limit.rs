//! Rules for rate limits: positive rates and sizes, known key kinds with valid header names, a
//! `rate_limit_service` wherever a global limit needs one, and connection limits only on the
//! listeners that accept connections (`tcp`, `tls_passthrough`).

use super::Checker;
use super::syntax;
use crate::path::YamlPath;
use crate::{
    Config, ListenerProtocol, ListenerRateLimitConfig, RateLimitKeyPart, RateLimitServiceConfig,
    RouteRateLimitConfig,
};

/// Checks every rate limit in `config`: the service, each route's and each listener's.
pub(super) fn check(c: &mut Checker<'_>, config: &Config) {
    if let Some(service) = &config.rate_limit_service {
        self::service(c, service, &YamlPath::root().key("rate_limit_service"));
    }
    let has_service = config.rate_limit_service.is_some();
    for (i, listener) in config.listeners.iter().enumerate() {
        let path = YamlPath::root().key("listeners").index(i);
        for (j, route) in listener.routes.iter().enumerate() {
            if let Some(limit) = &route.rate_limit {
                let at = path.key("routes").index(j).key("rate_limit");
                self::route(c, limit, &at, has_service);
            }
        }
        if let Some(limit) = &listener.rate_limit {
            let at = path.key("rate_limit");
            if matches!(
                listener.protocol,
                ListenerProtocol::Tcp | ListenerProtocol::TlsPassthrough
            ) {
                self::listener(c, limit, &at);
            } else {
                c.report(
                    &at,
                    "a listener `rate_limit` applies to `tcp` and `tls_passthrough` listeners only",
                    "limit HTTP requests per route with `routes[].rate_limit`; remove the key",
                );
            }
        }
    }
}

fn service(c: &mut Checker<'_>, service: &RateLimitServiceConfig, path: &YamlPath) {
    if service.redis.port() == 0 {
        c.report(
            &path.key("redis"),
            "the Redis address has port 0",
            "give the port Redis listens on, e.g. 127.0.0.1:6379",
        );
    }
    for (key, value) in [
        ("sync_interval", service.sync_interval),
        ("timeout", service.timeout),
    ] {
        if value.get().is_zero() {
            c.report(
                &path.key(key),
                format!("{key} is 0"),
                "give a positive duration such as 50ms (or leave it out for the default)",
            );
        }
    }
}

fn route(c: &mut Checker<'_>, limit: &RouteRateLimitConfig, path: &YamlPath, has_service: bool) {
    if limit.local.is_none() && limit.global.is_none() {
        c.report(
            path,
            "rate_limit has neither `local` nor `global`",
            "add `local: { requests_per_second: 100 }` and/or `global: { requests_per_second: 1000 }`",
        );
    }
    key(c, &limit.key, &path.key("key"));
    if let Some(local) = &limit.local {
        let p = path.key("local");
        positive(c, &p, "requests_per_second", local.requests_per_second);
        if let Some(burst) = local.burst {
            positive(c, &p, "burst", burst);
        }
        positive(c, &p, "max_keys", local.max_keys);
    }
    if let Some(global) = &limit.global {
        let p = path.key("global");
        positive(c, &p, "requests_per_second", global.requests_per_second);
        positive(c, &p, "max_keys", global.max_keys);
        if !has_service {
            c.report(
                &p,
                "a global rate limit needs a `rate_limit_service` to count in",
                "add `rate_limit_service: { redis: 127.0.0.1:6379 }` at the top level",
            );
        }
    }
}

fn key(c: &mut Checker<'_>, parts: &[String], path: &YamlPath) {
    if parts.is_empty() {
        c.report(
            path,
            "the rate limit key is empty",
            format!(
                "give one or more of {}, e.g. [client_address]",
                RateLimitKeyPart::KINDS
            ),
        );
    }
    for (k, text) in parts.iter().enumerate() {
        let at = path.index(k);
        match RateLimitKeyPart::parse(text) {
            Ok(RateLimitKeyPart::Header(name)) => {
                if let Err(problem) = syntax::check_header_name(&name) {
                    c.report(&at, problem.message, problem.hint);
                }
            }
            Ok(_) => {}
            Err(message) => c.report(
                &at,
                message,
                format!(
                    "use {} (quote `header:` keys in a flow list)",
                    RateLimitKeyPart::KINDS
                ),
            ),
        }
        if parts[..k].contains(text) {
            c.report(
                &at,
                format!("rate limit key part {text:?} is listed twice"),
                "list each part once",
            );
        }
    }
}

fn listener(c: &mut Checker<'_>, limit: &ListenerRateLimitConfig, path: &YamlPath) {
    positive(
        c,
        path,
        "connections_per_second",
        limit.connections_per_second,
    );
    if let Some(burst) = limit.burst {
        positive(c, path, "burst", burst);
    }
}

/// Reports `path.key` when `value` is 0.
fn positive(c: &mut Checker<'_>, path: &YamlPath, key: &str, value: u32) {
    if value == 0 {
        c.report(
            &path.key(key),
            format!("{key} is 0, so nothing could ever pass"),
            "give a positive number; to turn the limit off, remove it",
        );
    }
}
