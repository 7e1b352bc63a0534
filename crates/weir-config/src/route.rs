//! HTTP routes: what a request must look like, and what to do with it.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{ConfigDuration, FaultConfig, MirrorConfig};

/// One route: a match, exactly one action, and per-route policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// What the request must look like; every given condition must hold.
    #[serde(rename = "match", default)]
    pub match_: RouteMatchConfig,
    /// Action: send to this cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Action: split across clusters by weight.
    #[serde(default)]
    pub weighted_clusters: Option<Vec<WeightedClusterConfig>>,
    /// Action: answer with a redirect.
    #[serde(default)]
    pub redirect: Option<RedirectConfig>,
    /// Action: answer directly with a fixed status and body.
    #[serde(default)]
    pub direct_response: Option<DirectResponseConfig>,
    /// Time allowed for the upstream to produce response headers. Default: none (no limit).
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
    /// Retry failed attempts (on another endpoint), within the cluster's retry budget.
    #[serde(default)]
    pub retry: Option<crate::RetryConfig>,
    /// Send a second attempt when the first is slow; the first answer wins.
    #[serde(default)]
    pub hedge: Option<crate::HedgeConfig>,
    /// Read the whole request body before choosing an endpoint (413 above the limit).
    #[serde(default)]
    pub buffer: Option<crate::BufferConfig>,
    /// Edits applied to the request before it goes upstream.
    #[serde(default)]
    pub request_headers: HeaderRulesConfig,
    /// Edits applied to the response before it goes downstream.
    #[serde(default)]
    pub response_headers: HeaderRulesConfig,
    /// Copy selected requests to a shadow cluster (`traffic.rs`). Default: none.
    #[serde(default)]
    pub mirror: Option<MirrorConfig>,
    /// Delay or abort selected requests (`traffic.rs`). Default: none.
    #[serde(default)]
    pub fault: Option<FaultConfig>,
    /// Request rate limits (local and/or global), see `docs/rate-limiting.md`.
    #[serde(default)]
    pub rate_limit: Option<crate::RouteRateLimitConfig>,
    /// Session affinity for this route's requests, overriding their cluster's
    /// (`docs/affinity.md`).
    #[serde(default)]
    pub session_affinity: Option<crate::SessionAffinityConfig>,
}

/// Conditions on a request. All given conditions must hold; an empty match matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatchConfig {
    /// `Host` (or `:authority`) without port: exact (case-insensitive) or `*.suffix`.
    #[serde(default)]
    pub host: Option<String>,
    /// Path equals this exactly.
    #[serde(default)]
    pub path: Option<String>,
    /// Path starts with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Path matches this regular expression (anchored at both ends).
    #[serde(default)]
    pub path_regex: Option<String>,
    /// Request method, e.g. `GET`.
    #[serde(default)]
    pub method: Option<String>,
    /// Header conditions by header name.
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatchConfig>,
    /// Query parameter conditions by parameter name.
    #[serde(default)]
    pub query: BTreeMap<String, StringMatchConfig>,
}

/// How a header or query value must look: a plain string is an exact match.
///
/// Written either as a string (`x-canary: "1"`) or as a map with exactly one of `exact`,
/// `regex`, `present` (`x-canary: { regex: "[0-9]+" }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatchConfig {
    /// The value equals this string.
    Exact(String),
    /// A map with exactly one of `exact`, `regex`, `present`.
    Rule(StringMatchRuleConfig),
}

/// The long form of [`StringMatchConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatchRuleConfig {
    /// The value equals this string.
    #[serde(default)]
    pub exact: Option<String>,
    /// The value matches this regular expression (anchored).
    #[serde(default)]
    pub regex: Option<String>,
    /// `true`: the header/parameter is present; `false`: it is absent.
    #[serde(default)]
    pub present: Option<bool>,
}

/// One entry of a weighted split.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedClusterConfig {
    /// Target cluster.
    pub cluster: String,
    /// Relative weight (0 disables the entry).
    pub weight: u32,
}

/// A redirect answer; unset parts keep the request's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// New path (query is kept).
    #[serde(default)]
    pub path: Option<String>,
    /// New host.
    #[serde(default)]
    pub host: Option<String>,
    /// New scheme (`http` or `https`).
    #[serde(default)]
    pub scheme: Option<String>,
    /// 301 (default), 302, 303, 307 or 308.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

/// A fixed answer from weir itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectResponseConfig {
    /// Status code, 200–599.
    pub status: u16,
    /// Response body (sent as `text/plain` unless `content_type` says otherwise).
    #[serde(default)]
    pub body: String,
    /// `content-type` of the body. Default `text/plain; charset=utf-8`.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// Header edits: `add` appends, `set` replaces, `remove` deletes (applied remove → set → add).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRulesConfig {
    /// Headers appended (existing values are kept).
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Headers set (existing values are replaced).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Header names removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Accepts both forms of a [`StringMatchConfig`].
struct StringMatchVisitor;

// === impl StringMatchConfig ===

// Hand-written rather than `#[serde(untagged)]`: untagged enums replace every inner error with
// "data did not match any variant", which would hide a misspelt `regx:` key.
impl<'de> Deserialize<'de> for StringMatchConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StringMatchVisitor)
    }
}

impl<'de> Visitor<'de> for StringMatchVisitor {
    type Value = StringMatchConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string (exact match) or a map with one of `exact`, `regex`, `present`")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<StringMatchConfig, E> {
        Ok(StringMatchConfig::Exact(text.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StringMatchConfig, A::Error> {
        StringMatchRuleConfig::deserialize(MapAccessDeserializer::new(map))
            .map(StringMatchConfig::Rule)
    }
}

fn default_redirect_status() -> u16 {
    301
}
