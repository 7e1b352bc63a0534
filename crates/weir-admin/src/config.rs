//! `GET /config`: the running configuration as JSON, with every secret replaced by
//! `"<redacted>"`.
//!
//! The config is the [`ValidatedConfig`] weir runs — the one it started with, or the last one a
//! reload applied ([`RunningConfig::set`]) — serialized with every default filled in, so it
//! shows what weir does rather than what the file happened to spell out.
//!
//! Redaction is by key name, over the whole JSON tree, so a secret-bearing field added to the
//! schema later is hidden without anyone remembering to opt it in: see [`is_secret_key`]. A
//! redacted value that was `null` (not set) stays `null`, so the page still tells whether a
//! token is configured.
//!
//! [`RunningConfig`] also holds the admin token in force, which a reload may change but never
//! remove while the admin API stays bound (see [`RunningConfig::set`]).

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::Value;
use weir_config::ValidatedConfig;

use crate::AdminState;

/// What a redacted value is replaced with.
pub(crate) const REDACTED: &str = "<redacted>";

/// The config weir runs now, shared between the admin API and whatever applies reloads, and
/// the admin token in force; cheap to clone.
#[derive(Debug, Clone)]
pub struct RunningConfig(Arc<ArcSwap<Running>>);

/// One state of a [`RunningConfig`].
#[derive(Debug)]
struct Running {
    config: Arc<ValidatedConfig>,
    /// The bearer token state-changing calls need: the config's `admin.token`, or the last
    /// one in force when a reload's config has none.
    token: Option<Arc<str>>,
}

/// Body of `GET /config`.
#[derive(Debug, Serialize)]
pub(crate) struct ConfigView {
    /// Where the config came from: the file path, or the name it was given.
    source: String,
    /// The config with defaults filled in and secrets redacted.
    config: Value,
}

// === impl RunningConfig ===

impl RunningConfig {
    /// Starts out as `config`, with its `admin.token` (if any) in force.
    pub fn new(config: &ValidatedConfig) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(Running {
            config: Arc::new(config.clone()),
            token: token_of(config),
        })))
    }

    /// Replaces the config shown, after a reload applied `config`. A token `config` sets is in
    /// force from now on; when it sets none (no `admin:`, or `admin:` without `token`) the last
    /// token stays in force — the admin API stays bound until a restart, and a reload must
    /// never open its state-changing calls to anyone. Returns whether a token was kept that
    /// way, which only a restart drops.
    pub fn set(&self, config: &ValidatedConfig) -> bool {
        let last = self.0.load();
        let wanted = token_of(config);
        let kept = wanted.is_none() && last.token.is_some();
        let token = wanted.or_else(|| last.token.clone());
        self.0.store(Arc::new(Running {
            config: Arc::new(config.clone()),
            token,
        }));
        kept
    }

    /// The config shown now.
    pub fn get(&self) -> Arc<ValidatedConfig> {
        Arc::clone(&self.0.load().config)
    }

    /// The bearer token state-changing admin calls need now, if any (see
    /// [`RunningConfig::set`]).
    pub fn token(&self) -> Option<Arc<str>> {
        self.0.load().token.clone()
    }
}

/// `config`'s `admin.token`.
fn token_of(config: &ValidatedConfig) -> Option<Arc<str>> {
    let admin = config.config().admin.as_ref()?;
    admin.token.as_deref().map(Arc::from)
}

// === impl ConfigView ===

impl ConfigView {
    /// The running config of `state`, redacted; `None` when the state was built without one.
    pub(crate) fn new(state: &AdminState) -> Option<Result<Self, serde_json::Error>> {
        let running = state.running_config()?.get();
        Some(serde_json::to_value(running.config()).map(|mut config| {
            redact(&mut config);
            Self {
                source: running.source_name().to_owned(),
                config,
            }
        }))
    }
}

/// Replaces the value of every secret key in `value` (at any depth) with [`REDACTED`].
pub(crate) fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_key(key) && is_secret_shaped(v) {
                    *v = Value::String(REDACTED.to_owned());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Whether a key names a secret: `token`, `password`, `passphrase`, `secret`, `credentials`,
/// `key` and any key ending in `_token`, `_password`, `_secret` or `_key` (`api_key`,
/// `private_key`), case-insensitively. Only text is hidden (see [`is_secret_shaped`]), so
/// structured keys such as `hash_key` or the rate limit's `key` list stay visible.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    const WHOLE: [&str; 6] = [
        "token",
        "password",
        "passphrase",
        "secret",
        "credentials",
        "key",
    ];
    const SUFFIXES: [&str; 5] = ["_token", "_password", "_passphrase", "_secret", "_key"];
    WHOLE.contains(&key.as_str()) || SUFFIXES.iter().any(|s| key.ends_with(s))
}

/// Whether a value under a secret key could hold secret text: a string or a number. Maps and
/// lists are structure (and are searched further); `null` says "not set" and stays.
fn is_secret_shaped(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_reload_changes_the_token_but_never_removes_it() {
        let load = |admin: &str| {
            weir_config::load_str(&format!("{admin}listeners: []\n"), "t.yaml").unwrap()
        };
        let first = load("admin: { token: first-token-0123456789 }\n");
        let running = RunningConfig::new(&load("admin: {}\n"));
        assert_eq!(running.token(), None);
        assert!(!running.set(&load("admin: {}\n")), "no token to keep");
        assert!(!running.set(&first));
        assert_eq!(running.token().as_deref(), Some("first-token-0123456789"));
        assert!(!running.set(&load("admin: { token: second-token-0123456789 }\n")));
        assert_eq!(running.token().as_deref(), Some("second-token-0123456789"));
        for removed in ["admin: {}\n", ""] {
            assert!(running.set(&load(removed)), "{removed:?}");
            assert_eq!(
                running.token().as_deref(),
                Some("second-token-0123456789"),
                "{removed:?}"
            );
            assert!(
                running
                    .get()
                    .config()
                    .admin
                    .as_ref()
                    .is_none_or(|a| a.token.is_none())
            );
        }
        assert!(!running.set(&first));
        assert_eq!(running.token().as_deref(), Some("first-token-0123456789"));
    }

    #[test]
    fn secrets_are_redacted_at_any_depth_and_structure_is_kept() {
        let mut v = json!({
            "admin": { "address": "127.0.0.1:9901", "token": "s3cret-s3cret-s3cret" },
            "unset": { "token": null },
            "clusters": [ {
                "name": "c",
                "hash_key": { "header": "x-user" },
                "tls": { "private_key": "-----BEGIN PRIVATE KEY-----", "Password": 1234 },
                "api_key": "abc",
            } ],
            "rate": { "key": ["client_address", "route"], "monkey": "visible" },
            "upstream": { "key": "/etc/weir/key.pem", "auth_token": "t", "client_secret": "s" },
        });
        redact(&mut v);
        assert_eq!(v["admin"]["token"], REDACTED);
        assert_eq!(v["admin"]["address"], "127.0.0.1:9901");
        assert!(v["unset"]["token"].is_null(), "unset stays unset");
        let c = &v["clusters"][0];
        assert_eq!(c["hash_key"], json!({ "header": "x-user" }));
        assert_eq!(c["tls"]["private_key"], REDACTED);
        assert_eq!(c["tls"]["Password"], REDACTED);
        assert_eq!(c["api_key"], REDACTED);
        assert_eq!(v["rate"]["key"], json!(["client_address", "route"]));
        assert_eq!(v["rate"]["monkey"], "visible");
        assert_eq!(v["upstream"]["key"], REDACTED);
        assert_eq!(v["upstream"]["auth_token"], REDACTED);
        assert_eq!(v["upstream"]["client_secret"], REDACTED);
        assert!(!v.to_string().contains("s3cret"));
    }

    #[test]
    fn the_affinity_cookie_key_is_hidden_and_its_settings_shown() {
        let key = "5a".repeat(32);
        let yaml = format!(
            "clusters:\n  - name: c\n    session_affinity: {{ cookie: {{ ttl: 1h, key: \"{key}\" }} }}\n"
        );
        let config = weir_config::load_str(&yaml, "t.yaml").unwrap();
        let mut v = serde_json::to_value(config.config()).unwrap();
        redact(&mut v);
        let cookie = &v["clusters"][0]["session_affinity"]["cookie"];
        assert_eq!(cookie["key"], REDACTED);
        assert_eq!(cookie["ttl"], "1h");
        assert_eq!(cookie["name"], "weir-affinity");
        assert!(!v.to_string().contains(&key));
    }

    #[test]
    fn secret_key_names() {
        for secret in [
            "token",
            "TOKEN",
            "password",
            "api_key",
            "bearer_token",
            "key",
        ] {
            assert!(is_secret_key(secret), "{secret}");
        }
        for plain in ["address", "keys", "max_keys", "monkey", "tokens_per_second"] {
            assert!(!is_secret_key(plain), "{plain}");
        }
    }

    #[test]
    fn the_running_config_follows_set() {
        let a = weir_config::load_str("clusters: []\n", "a.yaml").unwrap();
        let b = weir_config::load_str("clusters: []\n", "b.yaml").unwrap();
        let running = RunningConfig::new(&a);
        let shared = running.clone();
        assert_eq!(running.get().source_name(), "a.yaml");
        shared.set(&b);
        assert_eq!(running.get().source_name(), "b.yaml");
    }
}
