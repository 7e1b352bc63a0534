//! The per-request flow: route, pick, forward, stream back.
//!
//! One call to [`handle`] per request. It loads the snapshot once, matches the listener's route
//! table, and either answers directly (redirect, direct response) or forwards: the cluster's
//! balancer picks an endpoint, the request is rewritten for the upstream protocol and sent over
//! a pooled connection, and the response streams back with the endpoint's in-flight count held
//! until the body ends. Every failure goes through [`super::respond::error`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use weir_balance::PickContext;
use weir_config::UpstreamProtocol;
use weir_core::{Error, ErrorKind};
use weir_router::{RequestView, host_without_port};

use super::listener::HttpListener;
use super::route::{Route, RouteAction};
use super::{grpc, headers, respond, upgrade};
use crate::body::{UpstreamBody, empty, incoming};
use crate::{ProxyBody, Snapshot, SnapshotHandle};

/// What the listener knows about a downstream connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) snapshots: SnapshotHandle,
    pub(crate) listener: usize,
    pub(crate) remote: SocketAddr,
}

/// Serves one request. Never fails: errors become responses.
pub(crate) async fn handle(
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let snapshot = conn.snapshots.load();
    let grpc = grpc::is_grpc(req.headers());
    let Some(listener) = snapshot.listeners.get(conn.listener) else {
        let e = Error::new(ErrorKind::Internal, "listener missing from snapshot");
        return Ok(respond::error(&e, grpc));
    };
    let response = match route_request(&snapshot, listener, conn, req, grpc).await {
        Ok(r) => r,
        Err(e) => respond::error(&e, grpc),
    };
    Ok(response)
}

async fn route_request(
    snapshot: &Snapshot,
    listener: &HttpListener,
    conn: &ConnInfo,
    req: Request<Incoming>,
    grpc: bool,
) -> Result<Response<ProxyBody>, Error> {
    let authority = request_authority(&req);
    let host = authority.as_deref().map(host_without_port);
    let view = RequestView {
        method: req.method(),
        host,
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
    };
    let Some(route) = listener.routes.match_request(&view) else {
        return Err(Error::new(
            ErrorKind::NoRoute,
            "no route matches this request",
        ));
    };
    let mut response = match &route.action {
        RouteAction::Direct {
            status,
            content_type,
            body,
        } => respond::direct(*status, content_type, body.clone()),
        RouteAction::Redirect {
            status,
            scheme,
            host: new_host,
            path,
        } => {
            let location = redirect_location(&req, authority.as_deref(), scheme, new_host, path);
            respond::redirect(*status, &location)
        }
        action => {
            let Some(cluster) = action.cluster(rand::random()) else {
                return Err(Error::new(ErrorKind::Internal, "route has no cluster"));
            };
            forward(
                snapshot, listener, route, cluster, conn, req, authority, grpc,
            )
            .await?
        }
    };
    route.response_headers.apply(response.headers_mut());
    if let Some((via11, via2)) = &listener.options.via {
        let v = if response.version() == Version::HTTP_2 {
            via2
        } else {
            via11
        };
        headers::add_via(response.headers_mut(), v);
    }
    Ok(response)
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn forward(
    snapshot: &Snapshot,
    listener: &HttpListener,
    route: &Route,
    cluster_index: usize,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    authority: Option<String>,
    grpc: bool,
) -> Result<Response<ProxyBody>, Error> {
    let cluster = snapshot
        .clusters
        .get(cluster_index)
        .ok_or_else(|| Error::new(ErrorKind::Internal, "route names a missing cluster"))?;
    let (endpoint, pool) = cluster.pick(&PickContext::default()).ok_or_else(|| {
        Error::new(
            ErrorKind::NoHealthyEndpoint,
            format!("no healthy endpoint in cluster {}", cluster.name),
        )
    })?;
    let guard = endpoint.state.begin_request();

    let upgrade = req.version() == Version::HTTP_11
        && cluster.protocol == UpstreamProtocol::Http1
        && headers::is_upgrade_request(req.headers());
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let deadline = min_timeout(
        route.timeout,
        grpc.then(|| grpc::timeout(req.headers())).flatten(),
    );

    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    headers::add_forwarded(&mut parts.headers, conn.remote.ip(), "http");
    if let Some((via11, via2)) = &listener.options.via {
        let v = if parts.version == Version::HTTP_2 {
            via2
        } else {
            via11
        };
        headers::add_via(&mut parts.headers, v);
    }
    route.request_headers.apply(&mut parts.headers);
    rewrite_for_upstream(&mut parts, cluster.protocol, authority.as_deref())?;
    let upstream_req = Request::from_parts(parts, incoming(body));

    let sent = pool.send(upstream_req);
    let upstream = match deadline {
        Some(d) => tokio::time::timeout(d, sent).await.map_err(|_| {
            Error::new(
                ErrorKind::UpstreamTimeout,
                format!("endpoint {} did not answer within {d:?}", endpoint.address),
            )
        })??,
        None => sent.await?,
    };

    let mut response = upstream.response;
    if let Some(down) = downstream_upgrade
        && response.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let up = hyper::upgrade::on(&mut response);
        upgrade::tunnel(down, up, guard);
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(parts, empty()));
    }
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    let body = UpstreamBody::new(body, guard, upstream.sender).boxed();
    Ok(Response::from_parts(parts, body))
}

/// Puts the request in the form the upstream protocol wants: origin-form with `Host` for
/// HTTP/1.1, absolute-form carrying `:authority` for HTTP/2. The original authority is kept.
fn rewrite_for_upstream(
    parts: &mut http::request::Parts,
    protocol: UpstreamProtocol,
    authority: Option<&str>,
) -> Result<(), Error> {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let bad_authority = || Error::new(ErrorKind::DownstreamProtocol, "invalid host/authority");
    match protocol {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            parts.uri = Uri::from(path);
            if !parts.headers.contains_key(HOST)
                && let Some(a) = authority
            {
                let v = HeaderValue::from_str(a).map_err(|_| bad_authority())?;
                parts.headers.insert(HOST, v);
            }
        }
        UpstreamProtocol::Http2 => {
            parts.version = Version::HTTP_2;
            parts.headers.remove(HOST);
            let authority = Authority::try_from(authority.unwrap_or("localhost"))
                .map_err(|_| bad_authority())?;
            let mut uri = Uri::builder().scheme(Scheme::HTTP).authority(authority);
            uri = uri.path_and_query(path);
            parts.uri = uri.build().map_err(|_| bad_authority())?;
        }
    }
    Ok(())
}

/// The request's authority: `:authority` (HTTP/2, absolute-form) or the `Host` header.
fn request_authority<B>(req: &Request<B>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_owned());
    }
    req.headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn redirect_location<B>(
    req: &Request<B>,
    authority: Option<&str>,
    scheme: &Option<String>,
    host: &Option<String>,
    path: &Option<String>,
) -> String {
    let scheme = scheme.as_deref().unwrap_or("http");
    let host = host.as_deref().or(authority).unwrap_or("localhost");
    let path = path.as_deref().unwrap_or(req.uri().path());
    match req.uri().query() {
        Some(q) => format!("{scheme}://{host}{path}?{q}"),
        None => format!("{scheme}://{host}{path}"),
    }
}

fn min_timeout(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
