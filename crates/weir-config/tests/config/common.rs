//! Helpers shared by the config integration tests.

#![allow(clippy::panic, reason = "test helpers: a panic is a failed assertion")]

use weir_config::{ConfigError, ValidatedConfig, load_str};

/// The config from the issue that introduced loading; every error test edits a copy of it.
pub(crate) const EXAMPLE: &str = "\
admin: { address: 127.0.0.1:9901 }
listeners:
  - name: public
    address: 127.0.0.1:8080
    protocol: http
    routes:
      - match: { host: api.example.com, path_prefix: /v1, method: GET, headers: { x-canary: \"1\" } }
        cluster: api
        timeout: 5s
      - match: { path_prefix: /static }
        weighted_clusters: [ { cluster: web, weight: 90 }, { cluster: web-next, weight: 10 } ]
      - match: { path: /old }
        redirect: { path: /new, status: 301 }
      - match: { path_prefix: / }
        cluster: web
clusters:
  - name: api
    lb_policy: round_robin
    protocol: http2
    connect_timeout: 1s
    endpoints:
      - address: 127.0.0.1:9001
      - { address: 127.0.0.1:9002, weight: 2 }
  - name: web
    endpoints: [ 127.0.0.1:9003 ]
  - name: web-next
    endpoints: [ 127.0.0.1:9004 ]
";

/// Joins `lines` so that `lines[i]` is line `i + 1` of the document.
pub(crate) fn yaml(lines: &[&str]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Loads `lines` as `weir.yaml`, which must succeed.
pub(crate) fn load_ok(lines: &[&str]) -> ValidatedConfig {
    match load_str(&yaml(lines), "weir.yaml") {
        Ok(config) => config,
        Err(e) => panic!("expected the config to load, got: {e}"),
    }
}

/// Loads `lines` as `weir.yaml`, which must fail.
pub(crate) fn load_err(lines: &[&str]) -> ConfigError {
    match load_str(&yaml(lines), "weir.yaml") {
        Ok(config) => panic!("expected an error, loaded: {:?}", config.config()),
        Err(e) => e,
    }
}

/// Asserts that loading `lines` fails at `path` on `line`, and that the message and hint (as
/// displayed) contain the given fragments.
pub(crate) fn assert_error(
    lines: &[&str],
    path: &str,
    line: usize,
    message: &str,
    hint: &str,
) -> ConfigError {
    let error = load_err(lines);
    let shown = error.to_string();
    eprintln!("{shown}");
    assert_eq!(error.file, "weir.yaml", "{shown}");
    assert_eq!(error.path, path, "{shown}");
    assert_eq!(error.line, Some(line), "{shown}");
    let prefix = if path.is_empty() {
        format!("weir.yaml (line {line}): ")
    } else {
        format!("weir.yaml: {path} (line {line}): ")
    };
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} should start with {prefix:?}"
    );
    assert!(
        error.message.contains(message),
        "message {:?} lacks {message:?}",
        error.message
    );
    let shown_hint = error.hint.clone().unwrap_or_default();
    assert!(
        shown_hint.contains(hint),
        "hint {shown_hint:?} lacks {hint:?}"
    );
    assert!(shown.ends_with(&format!("; {shown_hint}")), "{shown}");
    error
}

/// A listener whose single route is given by `route` (lines 5 onwards), plus clusters api, web.
pub(crate) fn with_route(route: &[&'static str]) -> Vec<&'static str> {
    let mut lines = vec![
        "clusters: [ { name: api }, { name: web } ]",
        "listeners:",
        "  - name: public",
        "    address: 127.0.0.1:8080",
        "    routes:",
    ];
    lines.extend_from_slice(route);
    lines
}
