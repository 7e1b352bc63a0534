//! HTTP route matching, sans-io.
//!
//! A [`RouteTable`] is compiled once from the listener's routes when a snapshot is built; per
//! request the data plane hands it a [`RequestView`] and gets back the first route whose
//! [`RouteMatcher`] accepts the request (first match wins, as in Envoy and nginx `location`
//! lists written in order). Nothing here allocates per request except query-string decoding,
//! and only for routes that match on query parameters.

mod matcher;

pub use matcher::{HostMatch, PathMatch, RouteMatcher, ValueMatch};

use http::{HeaderMap, Method};

/// Why a route's match could not be compiled (the config validator reports these earlier, with
/// the YAML position; this is the last line of defence).
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A regular expression did not compile.
    #[error("invalid regex `{pattern}`: {reason}")]
    Regex {
        /// The pattern as written.
        pattern: String,
        /// What the regex engine said.
        reason: String,
    },
    /// A header name or method is not a valid HTTP token.
    #[error("invalid {what} `{value}`")]
    Token {
        /// "header name" or "method".
        what: &'static str,
        /// The offending text.
        value: String,
    },
}

/// The parts of a request that routes can match on.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Host without port, from `:authority` or the `Host` header.
    pub host: Option<&'a str>,
    /// Path, without the query.
    pub path: &'a str,
    /// Raw query string, without the `?`.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

/// Ordered routes; the first whose matcher accepts a request wins.
#[derive(Debug)]
pub struct RouteTable<A> {
    routes: Vec<(RouteMatcher, A)>,
}

// === impl RouteTable ===

impl<A> RouteTable<A> {
    /// A table of `(matcher, action)` pairs in priority order.
    pub fn new(routes: Vec<(RouteMatcher, A)>) -> Self {
        Self { routes }
    }

    /// The action of the first route that matches `req`.
    pub fn match_request(&self, req: &RequestView<'_>) -> Option<&A> {
        self.routes
            .iter()
            .find(|(m, _)| m.matches(req))
            .map(|(_, a)| a)
    }

    /// The index (config order) and action of the first route that matches `req`.
    pub fn match_indexed(&self, req: &RequestView<'_>) -> Option<(usize, &A)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, (m, _))| m.matches(req))
            .map(|(i, (_, a))| (i, a))
    }

    /// The action of the route at `index` (config order).
    pub fn get(&self, index: usize) -> Option<&A> {
        self.routes.get(index).map(|(_, a)| a)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Strips the port from a `Host` / `:authority` value (`example.com:8080` → `example.com`,
/// `[::1]:80` → `[::1]`).
pub fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests;
