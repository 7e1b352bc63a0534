//! Session affinity (`session_affinity:` on a cluster or a route): keep a client on the endpoint
//! it started with, whatever the cluster's LB policy.
//!
//! Three ways to say who "the same client" is: a signed cookie weir sets (`cookie`), a request
//! header (`header`) or the client's IP address (`client_address`). The cookie names its endpoint
//! directly; the other two hash onto the endpoints with Maglev, so a key keeps its endpoint while
//! the endpoint set is stable and few keys move when it changes; a bounded table of recent
//! hashed sessions (`max_sessions`, `session_idle`) lets a draining endpoint keep the sessions it
//! has. `docs/affinity.md` has the design; validation lives in `validate/affinity.rs`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigDuration;

/// Default of `max_sessions`: hashed sessions remembered per cluster.
pub const DEFAULT_MAX_SESSIONS: u32 = 65_536;

/// Largest `max_sessions` accepted (each remembered session costs about 80 bytes).
pub const MAX_MAX_SESSIONS: u32 = 16_777_216;

/// Default of `session_idle`: a hashed session ends after this long without traffic.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(300);

/// Shortest cookie key accepted, in bytes (the HMAC-SHA256 output length, RFC 2104 §3).
pub const MIN_COOKIE_KEY_BYTES: usize = 32;

/// Session affinity of a cluster or route. Exactly one of `cookie`, `header`,
/// `client_address`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionAffinityConfig {
    /// A signed cookie set by weir names the endpoint.
    #[serde(default)]
    pub cookie: Option<AffinityCookieConfig>,
    /// Consistent hashing on the value of this request header; without the header the
    /// request is balanced as usual.
    #[serde(default)]
    pub header: Option<String>,
    /// Consistent hashing on the client's IP address.
    #[serde(default)]
    pub client_address: Option<bool>,
    /// How long a drained endpoint keeps the sessions it has (cookie sessions, and the hashed
    /// sessions the table remembers), counted from the drain. 0 moves them at once. Default 5m.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: ConfigDuration,
    /// `header` and `client_address`: how many recent sessions (key → endpoint) the cluster
    /// remembers, so that a draining endpoint keeps them; the sessions idle longest are
    /// evicted beyond it. 0 remembers none (a drained endpoint's keys then move at once).
    /// Absent: [`DEFAULT_MAX_SESSIONS`]. Not for `cookie`, whose state is in the cookie.
    #[serde(default)]
    pub max_sessions: Option<u32>,
    /// `header` and `client_address`: a remembered session ends after this long without a
    /// request (or L4 connection). Absent: [`DEFAULT_SESSION_IDLE`]. Not for `cookie`.
    #[serde(default)]
    pub session_idle: Option<ConfigDuration>,
}

/// The affinity cookie: its name, lifetime, attributes and signing key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AffinityCookieConfig {
    /// Cookie name. Default `weir-affinity`.
    #[serde(default = "default_cookie_name")]
    pub name: String,
    /// Lifetime (`Max-Age`, and the signed expiry); 0 (default) makes a session cookie whose
    /// signed expiry is [`SESSION_COOKIE_LIFETIME`], refreshed while it is used.
    #[serde(default)]
    pub ttl: ConfigDuration,
    /// `Path` attribute. Default `/`.
    #[serde(default = "default_cookie_path")]
    pub path: String,
    /// `Domain` attribute; absent (default) keeps the cookie to the host that set it.
    #[serde(default)]
    pub domain: Option<String>,
    /// `Secure` attribute. Default false.
    #[serde(default)]
    pub secure: bool,
    /// `HttpOnly` attribute. Default true.
    #[serde(default = "default_true")]
    pub http_only: bool,
    /// `SameSite` attribute. Default `lax`.
    #[serde(default)]
    pub same_site: SameSiteConfig,
    /// HMAC-SHA256 key, hex or base64, at least 32 bytes. Absent: a random key made at start
    /// and kept across reloads (cookies then do not survive a restart, nor work across weir
    /// instances). Hidden in `/config`.
    #[serde(default)]
    pub key: Option<String>,
}

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SameSiteConfig {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    #[default]
    Lax,
    /// `SameSite=None` (requires `secure: true`).
    None,
}

/// Signed lifetime of a session cookie (`ttl: 0`): it bounds how long a stolen or stale
/// cookie stays valid, and is refreshed while the session is used.
pub const SESSION_COOKIE_LIFETIME: Duration = Duration::from_secs(24 * 3600);

// === impl SessionAffinityConfig ===

impl SessionAffinityConfig {
    /// Names of the modes that are set (valid configs have exactly one).
    pub fn set_modes(&self) -> Vec<&'static str> {
        let mut modes = Vec::new();
        if self.cookie.is_some() {
            modes.push("cookie");
        }
        if self.header.is_some() {
            modes.push("header");
        }
        if self.client_address == Some(true) {
            modes.push("client_address");
        }
        modes
    }

    /// How many hashed sessions to remember: `max_sessions`, or its default.
    pub fn max_sessions(&self) -> u32 {
        self.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS)
    }

    /// When a remembered hashed session ends: `session_idle`, or its default.
    pub fn session_idle(&self) -> Duration {
        self.session_idle.map_or(DEFAULT_SESSION_IDLE, |d| d.get())
    }
}

// === impl AffinityCookieConfig ===

impl AffinityCookieConfig {
    /// The signing key's bytes, or `None` when no key is configured. Hex (even length, all hex
    /// digits) is tried first, then base64 (standard or URL-safe, padding optional).
    pub fn key_bytes(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(text) = self.key.as_deref() else {
            return Ok(None);
        };
        let text = text.trim();
        let decoded = if text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            data_encoding::HEXLOWER_PERMISSIVE
                .decode(text.as_bytes())
                .map_err(|e| format!("key is not valid hex: {e}"))?
        } else {
            let trimmed = text.trim_end_matches('=');
            let engine = if trimmed.contains(['-', '_']) {
                &data_encoding::BASE64URL_NOPAD
            } else {
                &data_encoding::BASE64_NOPAD
            };
            engine
                .decode(trimmed.as_bytes())
                .map_err(|e| format!("key is neither hex nor base64: {e}"))?
        };
        if decoded.len() < MIN_COOKIE_KEY_BYTES {
            return Err(format!(
                "key is {} bytes; HMAC-SHA256 wants at least {MIN_COOKIE_KEY_BYTES}",
                decoded.len()
            ));
        }
        Ok(Some(decoded))
    }

    /// The signed lifetime of a cookie: `ttl`, or [`SESSION_COOKIE_LIFETIME`] for a session
    /// cookie.
    pub fn lifetime(&self) -> Duration {
        match self.ttl.get() {
            d if d.is_zero() => SESSION_COOKIE_LIFETIME,
            d => d,
        }
    }
}

// === impl SameSiteConfig ===

impl SameSiteConfig {
    /// The attribute's value as written in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

fn default_drain_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(300))
}

fn default_cookie_name() -> String {
    "weir-affinity".to_owned()
}

fn default_cookie_path() -> String {
    "/".to_owned()
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(key: &str) -> AffinityCookieConfig {
        AffinityCookieConfig {
            name: default_cookie_name(),
            ttl: ConfigDuration::default(),
            path: default_cookie_path(),
            domain: None,
            secure: false,
            http_only: true,
            same_site: SameSiteConfig::Lax,
            key: Some(key.to_owned()),
        }
    }

    #[test]
    fn keys_decode_from_hex_and_both_base64_alphabets() {
        let hex = "00ff".repeat(16);
        assert_eq!(cookie(&hex).key_bytes().unwrap().unwrap().len(), 32);
        let b64 = data_encoding::BASE64.encode(&[0xfb; 32]);
        let url = data_encoding::BASE64URL_NOPAD.encode(&[0xfb; 32]);
        assert!(b64.contains('+') && url.contains('-'));
        assert_eq!(cookie(&b64).key_bytes().unwrap().unwrap(), vec![0xfb; 32]);
        assert_eq!(cookie(&url).key_bytes().unwrap().unwrap(), vec![0xfb; 32]);
        assert!(cookie("abcd").key_bytes().unwrap_err().contains("2 bytes"));
        assert!(cookie("not base64 !").key_bytes().is_err());
    }
}
