//! Request routing: which path and method gets which view, and every error answer.
//!
//! The admin API is small, so routing is a plain match on the path segments rather than a router
//! crate. Every answer but `/` (the dashboard's HTML) and `/metrics` (Prometheus text) is JSON,
//! including errors
//! (`{"error": ...}`): an unknown path is `404`, a
//! known path with a method it does not take is `405` with an `allow` header, and a name that
//! does not percent-decode to UTF-8 is `400`. Reads take `GET`/`HEAD`; the calls that change
//! state (drain, undrain, reload) take `POST` and, when a token is configured, need
//! `authorization: Bearer <token>` (`401` otherwise). Nothing here panics on input; the request
//! body is never read.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::stats::StatsView;
use crate::views::{
    ClusterView, ClustersView, EndpointView, ErrorView, ListenersView, ReadyView, ReloadView,
    data_plane_now,
};
use crate::{AdminState, ReloadError};

/// The body of every admin response.
pub(crate) type AdminBody = Full<Bytes>;

/// The methods every read path accepts, as sent in `allow`.
const ALLOW: &str = "GET, HEAD";
/// The method the state-changing paths accept.
const ALLOW_POST: &str = "POST";

/// A path the admin API knows: a read (`GET`/`HEAD`) or a change (`POST`).
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Read(Read<'a>),
    /// `/reload`: load the config source again and apply it.
    Reload,
    /// `/clusters/{name}/endpoints/{address}/{drain|undrain}`, still percent-encoded.
    Drain {
        cluster: &'a str,
        endpoint: &'a str,
        drain: bool,
    },
}

/// A read-only path.
#[derive(Debug, PartialEq, Eq)]
enum Read<'a> {
    /// `/`: the live dashboard, one HTML page.
    Dashboard,
    Ready,
    Clusters,
    /// `/clusters/{name}`, the name still percent-encoded.
    Cluster(&'a str),
    Listeners,
    /// `/metrics`: Prometheus / OpenMetrics text, not JSON.
    Metrics,
    /// `/stats`: compact cumulative totals for pollers (the dashboard).
    Stats,
    /// `/config`: the running config with secrets redacted.
    Config,
}

/// Answers one admin request.
pub(crate) fn handle<B>(state: &AdminState, req: &Request<B>) -> Response<AdminBody> {
    let path = req.uri().path();
    let Some(route) = Route::parse(path) else {
        return error(StatusCode::NOT_FOUND, format!("no such path: {path}"));
    };
    match route {
        Route::Drain { .. } | Route::Reload => {
            if req.method() != Method::POST {
                return method_not_allowed(req.method(), path, ALLOW_POST, "POST");
            }
            if !authorized(state, req) {
                let mut res = error(
                    StatusCode::UNAUTHORIZED,
                    "this call changes state and needs `authorization: Bearer <admin token>`"
                        .into(),
                );
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return res;
            }
            match route {
                Route::Drain {
                    cluster,
                    endpoint,
                    drain,
                } => set_drain(state, cluster, endpoint, drain),
                _ => reload(state),
            }
        }
        Route::Read(read) => {
            let head = match *req.method() {
                Method::GET => false,
                Method::HEAD => true,
                ref other => return method_not_allowed(other, path, ALLOW, "GET"),
            };
            let res = answer(state, &read, req.headers());
            if head { without_body(res) } else { res }
        }
    }
}

/// `405` with `allow` listing the methods `path` takes and the message suggesting `usual`.
fn method_not_allowed(
    method: &Method,
    path: &str,
    allow: &'static str,
    usual: &str,
) -> Response<AdminBody> {
    let mut res = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed on {path}; use {usual}"),
    );
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

/// The response for a known route and an allowed method (`headers`: the request's, for
/// content negotiation).
fn answer(state: &AdminState, read: &Read<'_>, headers: &http::HeaderMap) -> Response<AdminBody> {
    match read {
        Read::Dashboard => crate::dashboard::respond(),
        Read::Ready => match state.readiness().check() {
            Ok(()) => json(
                StatusCode::OK,
                &ReadyView {
                    ready: true,
                    reason: None,
                },
            ),
            Err(why) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &ReadyView {
                    ready: false,
                    reason: Some(why.to_string()),
                },
            ),
        },
        Read::Clusters => {
            let snapshot = state.snapshots().load();
            json(
                StatusCode::OK,
                &ClustersView::new(snapshot.clusters(), data_plane_now()),
            )
        }
        Read::Cluster(raw) => {
            let Some(name) = percent_decode(raw) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("cluster name {raw:?} is not valid percent-encoded UTF-8"),
                );
            };
            let snapshot = state.snapshots().load();
            match snapshot.cluster(&name) {
                Some(c) => json(StatusCode::OK, &ClusterView::new(c, data_plane_now())),
                None => error(StatusCode::NOT_FOUND, format!("no cluster named {name:?}")),
            }
        }
        Read::Listeners => {
            let tls = state.snapshots().load().tls_reload_failures();
            json(
                StatusCode::OK,
                &ListenersView::new(&state.listeners(), &tls),
            )
        }
        Read::Metrics => crate::metrics::respond(state, headers),
        Read::Stats => {
            let snapshot = state.snapshots().load();
            let view = StatsView::new(snapshot.clusters(), std::time::SystemTime::now());
            // Compact: this is polled every second by every open dashboard.
            match serde_json::to_vec(&view) {
                Ok(mut body) => {
                    body.push(b'\n');
                    with_status(StatusCode::OK, body)
                }
                Err(e) => internal_error(&e),
            }
        }
        Read::Config => match crate::config::ConfigView::new(state) {
            Some(Ok(view)) => json(StatusCode::OK, &view),
            Some(Err(e)) => internal_error(&e),
            None => error(
                StatusCode::NOT_FOUND,
                "this admin API was started without a config to show".into(),
            ),
        },
    }
}

/// Whether `req` may change state: no token is configured, or it carries the token.
fn authorized<B>(state: &AdminState, req: &Request<B>) -> bool {
    let Some(token) = state.token() else {
        return true;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// Compares without returning early, so response timing does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, &x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// Loads and applies the config source again: `200` with what was applied, `400` with the
/// config error (the running config keeps serving), `409` when weir was not started from a
/// file, `503` once a graceful shutdown has begun.
fn reload(state: &AdminState) -> Response<AdminBody> {
    let Some(reloader) = state.reloader() else {
        return error(
            StatusCode::CONFLICT,
            "this weir was not started from a config file; there is nothing to reload".into(),
        );
    };
    match reloader.reload() {
        Ok(summary) => {
            tracing::info!(
                clusters = summary.clusters,
                "config reloaded via the admin API"
            );
            json(
                StatusCode::OK,
                &ReloadView {
                    reloaded: true,
                    summary,
                },
            )
        }
        Err(ReloadError::Rejected(message)) => {
            tracing::error!(
                "reload via the admin API rejected, the running config keeps serving: {message}"
            );
            error(StatusCode::BAD_REQUEST, message)
        }
        Err(ReloadError::ShuttingDown) => {
            tracing::warn!("reload via the admin API refused: weir is shutting down");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "weir is shutting down: reloads are refused until it has stopped (a reload \
                 would start again what the shutdown stopped); the running config serves the \
                 drain"
                    .into(),
            )
        }
    }
}

/// Drains (or undrains) one endpoint: a drained endpoint gets no new requests; those running
/// finish. Answers the endpoint's view after the change.
fn set_drain(
    state: &AdminState,
    cluster: &str,
    endpoint: &str,
    drain: bool,
) -> Response<AdminBody> {
    let (Some(cluster_name), Some(endpoint_text)) =
        (percent_decode(cluster), percent_decode(endpoint))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "cluster and endpoint must be valid percent-encoded UTF-8".into(),
        );
    };
    let Ok(address) = endpoint_text.parse::<std::net::SocketAddr>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{endpoint_text:?} is not an endpoint address such as 127.0.0.1:9001"),
        );
    };
    let snapshot = state.snapshots().load();
    let Some(cluster) = snapshot.cluster(&cluster_name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no cluster named {cluster_name:?}"),
        );
    };
    let Some(ep) = cluster.endpoints.iter().find(|e| e.address == address) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("cluster {cluster_name:?} has no endpoint {address}"),
        );
    };
    let now = data_plane_now();
    let change = ep
        .state
        .set_unhealthy(weir_core::Unhealthy::Drained, drain, now);
    if change.flag_changed(weir_core::Unhealthy::Drained) {
        tracing::info!(
            cluster = %cluster_name,
            endpoint = %address,
            health = %change.after,
            in_flight = ep.state.in_flight(),
            "{} via the admin API",
            if drain { "endpoint drained" } else { "endpoint undrained" }
        );
    }
    json(StatusCode::OK, &EndpointView::new(ep, now))
}

// === impl Route ===

impl<'a> Route<'a> {
    /// The route for `path`; one trailing slash is ignored. `None` for unknown paths.
    fn parse(path: &'a str) -> Option<Self> {
        if path == "/" {
            return Some(Self::Read(Read::Dashboard));
        }
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut segments = path.strip_prefix('/')?.split('/');
        let route = match (segments.next()?, segments.next()) {
            ("ready", None) => Self::Read(Read::Ready),
            ("reload", None) => Self::Reload,
            ("clusters", None) => Self::Read(Read::Clusters),
            ("listeners", None) => Self::Read(Read::Listeners),
            ("metrics", None) => Self::Read(Read::Metrics),
            ("stats", None) => Self::Read(Read::Stats),
            ("config", None) => Self::Read(Read::Config),
            ("clusters", Some(cluster)) if !cluster.is_empty() => {
                let Some(sub) = segments.next() else {
                    return Some(Self::Read(Read::Cluster(cluster)));
                };
                let ("endpoints", Some(endpoint), Some(action)) =
                    (sub, segments.next(), segments.next())
                else {
                    return None;
                };
                let drain = match action {
                    "drain" => true,
                    "undrain" => false,
                    _ => return None,
                };
                Self::Drain {
                    cluster,
                    endpoint,
                    drain,
                }
            }
            _ => return None,
        };
        segments.next().is_none().then_some(route)
    }
}

/// A JSON response with `status`.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<AdminBody> {
    let mut body = match serde_json::to_vec_pretty(value) {
        Ok(body) => body,
        Err(e) => return internal_error(&e),
    };
    body.push(b'\n');
    with_status(status, body)
}

/// `500` for a view that failed to serialize: views are plain data, so this would be a bug in
/// a view, not bad input.
fn internal_error(e: &serde_json::Error) -> Response<AdminBody> {
    tracing::error!(error = %e, "admin view failed to serialize");
    with_status(
        StatusCode::INTERNAL_SERVER_ERROR,
        br#"{"error":"internal error"}"#.to_vec(),
    )
}

/// A JSON error answer: `{"error": message}`.
fn error(status: StatusCode, message: String) -> Response<AdminBody> {
    json(status, &ErrorView { error: message })
}

/// A JSON answer with `status` and the headers every JSON answer carries.
fn with_status(status: StatusCode, body: Vec<u8>) -> Response<AdminBody> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Every answer is a live reading; a cached one would be wrong a moment later.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `res` for a `HEAD` request: the same status and headers (with the length `GET` would send),
/// no body.
fn without_body(res: Response<AdminBody>) -> Response<AdminBody> {
    let (mut parts, body) = res.into_parts();
    let len = hyper::body::Body::size_hint(&body).exact().unwrap_or(0);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let &[hi, lo] = bytes.get(i + 1..i + 3)? else {
                return None;
            };
            out.push(hex_value(hi)? << 4 | hex_value(lo)?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of one hex digit.
fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_to_routes() {
        assert_eq!(Route::parse("/ready"), Some(Route::Read(Read::Ready)));
        assert_eq!(Route::parse("/ready/"), Some(Route::Read(Read::Ready)));
        assert_eq!(Route::parse("/reload"), Some(Route::Reload));
        assert_eq!(Route::parse("/reload/now"), None);
        assert_eq!(Route::parse("/clusters"), Some(Route::Read(Read::Clusters)));
        assert_eq!(
            Route::parse("/clusters/web"),
            Some(Route::Read(Read::Cluster("web")))
        );
        assert_eq!(
            Route::parse("/clusters/web/"),
            Some(Route::Read(Read::Cluster("web")))
        );
        assert_eq!(
            Route::parse("/listeners"),
            Some(Route::Read(Read::Listeners))
        );
        assert_eq!(Route::parse("/metrics"), Some(Route::Read(Read::Metrics)));
        assert_eq!(Route::parse("/"), Some(Route::Read(Read::Dashboard)));
        assert_eq!(Route::parse("/stats"), Some(Route::Read(Read::Stats)));
        assert_eq!(Route::parse("/stats/"), Some(Route::Read(Read::Stats)));
        assert_eq!(Route::parse("/config"), Some(Route::Read(Read::Config)));
        assert_eq!(
            Route::parse("/clusters/web/endpoints/127.0.0.1:9001/drain"),
            Some(Route::Drain {
                cluster: "web",
                endpoint: "127.0.0.1:9001",
                drain: true
            })
        );
        assert!(matches!(
            Route::parse("/clusters/web/endpoints/127.0.0.1:9001/undrain/"),
            Some(Route::Drain { drain: false, .. })
        ));
        for unknown in [
            "/clusters/web/endpoints/127.0.0.1:9001/kill",
            "/clusters/web/endpoints/127.0.0.1:9001",
            "/clusters/web/endpoints/127.0.0.1:9001/drain/x",
            "",
            "*",
            "/stats/x",
            "/index.html",
            "//",
            "/clusters//",
            "/clusters/a/b",
            "/ready/x",
            "/nope",
            "/Ready",
        ] {
            assert_eq!(Route::parse(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn token_comparison_needs_the_whole_token() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"secret-tokem", b"secret-token"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn percent_decoding_rejects_bad_escapes() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        for bad in ["%", "%2", "%zz", "%+1", "%ff", "a%C3"] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
    }
}
