//! Rules for `session_affinity` (cluster or route): exactly one mode, a valid header name, a
//! cookie that browsers will accept and weir can sign (name, path, domain, key), and a session
//! table (`max_sessions`, `session_idle`) only for the hashing modes, bounded. The lifetime
//! needs no rule of its own: durations stop at a year, under browsers' 400-day cap.

use super::Checker;
use super::route::note;
use super::syntax;
use crate::path::YamlPath;
use crate::{AffinityCookieConfig, MAX_MAX_SESSIONS, SameSiteConfig, SessionAffinityConfig};

// === impl Checker ===

impl Checker<'_> {
    /// Checks a `session_affinity` block at `path`.
    pub(super) fn session_affinity(&mut self, cfg: &SessionAffinityConfig, path: &YamlPath) {
        let modes = cfg.set_modes();
        if modes.len() != 1 {
            let message = match modes.len() {
                0 => "session_affinity names no mode".to_owned(),
                _ => format!("session_affinity sets {} at once", modes.join(" and ")),
            };
            self.report(
                path,
                message,
                "set exactly one of `cookie`, `header` or `client_address: true`",
            );
        }
        if let Some(header) = &cfg.header {
            note(self, &path.key("header"), syntax::check_header_name(header));
        }
        if let Some(cookie) = &cfg.cookie {
            self.affinity_cookie(cookie, &path.key("cookie"));
        }
        self.session_table(cfg, path);
    }

    /// `max_sessions` and `session_idle`: the hashing modes' session table.
    fn session_table(&mut self, cfg: &SessionAffinityConfig, path: &YamlPath) {
        if cfg.cookie.is_some() {
            for (key, set) in [
                ("max_sessions", cfg.max_sessions.is_some()),
                ("session_idle", cfg.session_idle.is_some()),
            ] {
                if set {
                    self.report(
                        &path.key(key),
                        format!("{key} applies to header and client_address affinity only"),
                        "leave it out: a cookie session's state is in the cookie",
                    );
                }
            }
        }
        if let Some(max) = cfg.max_sessions
            && max > MAX_MAX_SESSIONS
        {
            self.report(
                &path.key("max_sessions"),
                format!("max_sessions {max} is more than {MAX_MAX_SESSIONS}"),
                "each remembered session costs about 80 bytes; use at most 16777216, or 0 to remember none",
            );
        }
        if cfg.session_idle.is_some_and(|d| d.get().is_zero()) {
            self.report(
                &path.key("session_idle"),
                "session_idle 0 would end every session at once",
                "give a duration such as 5m, or set `max_sessions: 0` to remember no sessions",
            );
        }
    }

    fn affinity_cookie(&mut self, cookie: &AffinityCookieConfig, path: &YamlPath) {
        if !syntax::is_token(&cookie.name) {
            self.report(
                &path.key("name"),
                format!("{:?} is not a valid cookie name", cookie.name),
                "use letters, digits and !#$%&'*+-.^_`|~, e.g. weir-affinity",
            );
        }
        if !cookie.path.starts_with('/') || !is_attribute_value(&cookie.path) {
            self.report(
                &path.key("path"),
                format!("cookie path {:?} is not a valid path", cookie.path),
                "write an absolute path without `;` or control characters, e.g. /",
            );
        }
        if let Some(domain) = &cookie.domain
            && (domain.is_empty()
                || !is_attribute_value(domain)
                || domain.contains([' ', ',', '/']))
        {
            self.report(
                &path.key("domain"),
                format!("cookie domain {domain:?} is not a host name"),
                "write a host name such as example.com, or leave `domain` out",
            );
        }
        if cookie.same_site == SameSiteConfig::None && !cookie.secure {
            self.report(
                &path.key("same_site"),
                "same_site: none without secure: browsers drop such a cookie",
                "set `secure: true` (and serve over HTTPS), or use lax or strict",
            );
        }
        if let Err(why) = cookie.key_bytes() {
            self.report(
                &path.key("key"),
                why,
                "give 32 or more random bytes as hex or base64, e.g. from `openssl rand -hex 32`",
            );
        }
    }
}

/// Text allowed in a `Set-Cookie` attribute value: visible ASCII except `;` (RFC 6265 §4.1.1).
fn is_attribute_value(text: &str) -> bool {
    text.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b';')
}
