//! One route's match conditions, compiled from [`weir_config::RouteMatchConfig`].

use http::header::HeaderName;
use http::{HeaderMap, Method};
use regex::Regex;
use weir_config::{RouteMatchConfig, StringMatchConfig};

use crate::{RequestView, RouterError};

/// Compiled conditions of one route; all must hold.
#[derive(Debug, Default)]
pub struct RouteMatcher {
    host: Option<HostMatch>,
    path: Option<PathMatch>,
    method: Option<Method>,
    headers: Vec<(HeaderName, ValueMatch)>,
    query: Vec<(String, ValueMatch)>,
}

/// How the request host must look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Equal, ignoring ASCII case (stored lowercase).
    Exact(String),
    /// `*.example.com`: stored as `.example.com`; the host must end with it and be longer.
    Suffix(String),
}

/// How the request path must look.
#[derive(Debug)]
pub enum PathMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Matches the whole path.
    Regex(Regex),
}

/// How a header or query value must look.
#[derive(Debug)]
pub enum ValueMatch {
    /// Some value equals this.
    Exact(String),
    /// Some value matches this (anchored).
    Regex(Regex),
    /// `true`: present; `false`: absent.
    Present(bool),
}

// === impl RouteMatcher ===

impl RouteMatcher {
    /// Compiles `cfg`; fails only on input the config validator should already have rejected.
    pub fn try_from_config(cfg: &RouteMatchConfig) -> Result<Self, RouterError> {
        let host = cfg.host.as_deref().map(HostMatch::new);
        let path = match (&cfg.path, &cfg.path_prefix, &cfg.path_regex) {
            (Some(p), _, _) => Some(PathMatch::Exact(p.clone())),
            (None, Some(p), _) => Some(PathMatch::Prefix(p.clone())),
            (None, None, Some(r)) => Some(PathMatch::Regex(anchored(r)?)),
            (None, None, None) => None,
        };
        let method = cfg
            .method
            .as_deref()
            .map(|m| {
                Method::from_bytes(m.as_bytes()).map_err(|_| RouterError::Token {
                    what: "method",
                    value: m.to_owned(),
                })
            })
            .transpose()?;
        let headers = cfg
            .headers
            .iter()
            .map(|(name, m)| {
                let name =
                    HeaderName::from_bytes(name.as_bytes()).map_err(|_| RouterError::Token {
                        what: "header name",
                        value: name.clone(),
                    })?;
                Ok((name, ValueMatch::try_from_config(m)?))
            })
            .collect::<Result<_, RouterError>>()?;
        let query = cfg
            .query
            .iter()
            .map(|(name, m)| Ok((name.clone(), ValueMatch::try_from_config(m)?)))
            .collect::<Result<_, RouterError>>()?;
        Ok(Self {
            host,
            path,
            method,
            headers,
            query,
        })
    }

    /// Whether `req` satisfies every condition.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(m) = &self.method
            && m != req.method
        {
            return false;
        }
        if let Some(h) = &self.host
            && !req.host.is_some_and(|host| h.matches(host))
        {
            return false;
        }
        if let Some(p) = &self.path
            && !p.matches(req.path)
        {
            return false;
        }
        self.headers
            .iter()
            .all(|(name, m)| m.matches_header(req.headers, name))
            && (self.query.is_empty() || self.query_matches(req.query.unwrap_or("")))
    }

    fn query_matches(&self, query: &str) -> bool {
        self.query.iter().all(|(name, m)| {
            let values = form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v);
            m.matches_values(values)
        })
    }
}

// === impl HostMatch ===

impl HostMatch {
    /// `*.suffix` becomes a suffix match; anything else an exact one. Both ignore case.
    pub fn new(pattern: &str) -> Self {
        let lower = pattern.to_ascii_lowercase();
        match lower.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') => HostMatch::Suffix(suffix.to_owned()),
            _ => HostMatch::Exact(lower),
        }
    }

    /// Whether `host` (without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h),
            HostMatch::Suffix(s) => {
                host.len() > s.len()
                    && host
                        .get(host.len() - s.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(s))
            }
        }
    }
}

// === impl PathMatch ===

impl PathMatch {
    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

// === impl ValueMatch ===

impl ValueMatch {
    /// Compiles a header/query condition.
    pub fn try_from_config(cfg: &StringMatchConfig) -> Result<Self, RouterError> {
        match cfg {
            StringMatchConfig::Exact(s) => Ok(ValueMatch::Exact(s.clone())),
            StringMatchConfig::Rule(rule) => match (&rule.exact, &rule.regex, rule.present) {
                (Some(s), _, _) => Ok(ValueMatch::Exact(s.clone())),
                (None, Some(r), _) => Ok(ValueMatch::Regex(anchored(r)?)),
                (None, None, Some(p)) => Ok(ValueMatch::Present(p)),
                (None, None, None) => Ok(ValueMatch::Present(true)),
            },
        }
    }

    fn matches_header(&self, headers: &HeaderMap, name: &HeaderName) -> bool {
        let values = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(std::borrow::Cow::Borrowed);
        self.matches_values(values)
    }

    fn matches_values<'a>(
        &self,
        mut values: impl Iterator<Item = std::borrow::Cow<'a, str>>,
    ) -> bool {
        match self {
            ValueMatch::Present(want) => values.next().is_some() == *want,
            ValueMatch::Exact(s) => values.any(|v| v == s.as_str()),
            ValueMatch::Regex(r) => values.any(|v| r.is_match(v.as_ref())),
        }
    }
}

/// Compiles `pattern` so that it must match the whole input.
fn anchored(pattern: &str) -> Result<Regex, RouterError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| RouterError::Regex {
        pattern: pattern.to_owned(),
        reason: e.to_string(),
    })
}
