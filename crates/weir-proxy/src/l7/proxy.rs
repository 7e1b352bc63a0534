//! The per-request flow: route, pick, forward, stream back.
//!
//! One call to [`handle`] per request. It loads the snapshot once, matches the listener's route
//! table, and either answers directly (redirect, direct response) or forwards: the cluster's
//! balancer picks an endpoint, the request is rewritten for the upstream protocol and sent over
//! a pooled connection, and the response streams back with the endpoint's in-flight count held
//! until the body ends. Every failure goes through [`super::respond::error`].

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use weir_config::UpstreamProtocol;
use weir_core::{Error, ErrorKind};
use weir_router::{RequestView, host_without_port};

use super::attempts::{Attempts, RequestBody};
use super::listener::HttpListener;
use super::replay::Replay;
use super::route::{Route, RouteAction};
use super::{decision, fault, grpc, headers, mirror, respond, retry, trace, upgrade};
use crate::access_log::{CountedBody, HttpEntry};
use crate::affinity::{SessionAffinity, cookie};
use crate::body::{ExchangeGuards, IdleTimeout, UpstreamBody, empty};
use crate::server::ConnInfo;
use crate::snapshot::Listener;
use crate::{Cluster, ProxyBody, Snapshot};

/// Serves one request. Never fails: errors become responses.
pub(crate) async fn handle(
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    log: Option<&mut HttpEntry>,
) -> Result<Response<ProxyBody>, Infallible> {
    let snapshot = conn.snapshot();
    let log = trace::on_request(req.headers_mut(), snapshot.trace_sampling, log);
    let grpc = grpc::is_grpc(req.headers());
    let Some(Listener::Http(listener)) = conn.listener.get(&snapshot) else {
        let e = Error::new(ErrorKind::Internal, "listener missing from snapshot");
        return Ok(respond::error(&e, grpc));
    };
    let trusted = &listener.options.debug_trusted;
    if let Some(wanted) = decision::requested(req.headers_mut(), trusted, conn.remote.ip()) {
        req.extensions_mut().insert(wanted);
    }
    let response = match route_request(&snapshot, listener, conn, req, grpc, log).await {
        Ok(r) => r,
        Err(e) => respond::error(&e, grpc),
    };
    Ok(response)
}

async fn route_request(
    snapshot: &Arc<Snapshot>,
    listener: &HttpListener,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    grpc: bool,
    mut log: Option<&mut HttpEntry>,
) -> Result<Response<ProxyBody>, Error> {
    if req.method() == Method::CONNECT {
        return Err(Error::new(
            ErrorKind::MethodNotAllowed,
            "CONNECT is not supported",
        ));
    }
    // The identity header is weir's alone: what a client sent under that name never passes,
    // and routes, mirrors and endpoints all see the verified identity (or nothing).
    if let Some(name) = listener
        .tls
        .as_ref()
        .and_then(|t| t.client_cert_header.as_ref())
    {
        req.headers_mut().remove(name);
        if let Some(id) = conn.tls.as_ref().and_then(|p| p.identity.clone()) {
            req.headers_mut().insert(name.clone(), id);
        }
    }
    let authority = request_authority(&req)?;
    let host = text(&authority).map(host_without_port);
    let view = RequestView {
        method: req.method(),
        host,
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
    };
    let Some((index, route)) = listener.routes.match_indexed(&view) else {
        return Err(Error::new(
            ErrorKind::NoRoute,
            "no route matches this request",
        ));
    };
    if let Some(log) = log.as_deref_mut() {
        log.set_route(index);
    }
    let started = std::time::Instant::now();
    let answered = answer_route(snapshot, listener, route, conn, req, authority, grpc, log).await;
    let status = match &answered {
        Ok(r) => r.status(),
        Err(e) => respond::status_for(e.kind()),
    };
    route.traffic.record(status, started.elapsed());
    answered
}

/// Applies a matched route: its rate limits and faults, then its action.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn answer_route(
    snapshot: &Arc<Snapshot>,
    listener: &HttpListener,
    route: &Route,
    conn: &ConnInfo,
    req: Request<Incoming>,
    authority: Option<HeaderValue>,
    grpc: bool,
    log: Option<&mut HttpEntry>,
) -> Result<Response<ProxyBody>, Error> {
    let authority_text = text(&authority);
    let view = RequestView {
        method: req.method(),
        host: authority_text.map(host_without_port),
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
    };
    // Rate limits: decided from memory, before any cluster is picked, and before a fault's
    // delay could hold anything for a refused client.
    if let Some(refused) = route
        .rate_limit
        .as_ref()
        .and_then(|l| l.check(req.headers(), conn.remote.ip(), grpc))
    {
        return Ok(refused);
    }
    if let Some(aborted) = fault::inject(route, &view).await {
        return Ok(aborted);
    }
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
            let location =
                redirect_location(&req, authority_text, scheme, new_host, path, conn.scheme());
            respond::redirect(*status, &location)
        }
        action => {
            let Some(cluster) = action.cluster(rand::random()) else {
                return Err(Error::new(ErrorKind::Internal, "route has no cluster"));
            };
            // The route's affinity overrides the cluster's; its cookie is weir's alone and is
            // taken out before anything (endpoint or mirror) sees the request.
            let affinity = route.session_affinity.as_ref().or_else(|| {
                let c = snapshot.clusters.get(cluster)?;
                c.session_affinity.as_ref()
            });
            let mut req = req;
            let cookie = affinity
                .and_then(SessionAffinity::cookie_name)
                .and_then(|name| cookie::take(req.headers_mut(), name));
            let (req, shadow) = mirror::tee(route, snapshot, listener, conn, req, authority_text);
            let target = Target {
                cluster,
                affinity: affinity.map(|a| (a, cookie)),
            };
            let forwarded = forward(
                snapshot, listener, route, target, conn, req, authority, grpc, log,
            )
            .await;
            shadow.primary_answered(&forwarded);
            forwarded?
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

/// Where a forwarded request goes: the cluster, and the session affinity that applies with the
/// affinity cookie's value from the request.
struct Target<'a> {
    cluster: usize,
    affinity: Option<(&'a SessionAffinity, Option<String>)>,
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn forward(
    snapshot: &Snapshot,
    listener: &HttpListener,
    route: &Route,
    target: Target<'_>,
    conn: &ConnInfo,
    mut req: Request<ProxyBody>,
    authority: Option<HeaderValue>,
    grpc: bool,
    mut log: Option<&mut HttpEntry>,
) -> Result<Response<ProxyBody>, Error> {
    let cluster = snapshot
        .clusters
        .get(target.cluster)
        .ok_or_else(|| Error::new(ErrorKind::Internal, "route names a missing cluster"))?;
    if let Some(log) = log.as_deref_mut() {
        log.set_cluster(&cluster.name, cluster.lb_policy);
    }
    // Resolved when the snapshot was built: the route's counters for this cluster.
    let route_stats = route.cluster_stats(target.cluster);
    // The limit applies before any work is done for the request.
    let request_slot = cluster.breakers.request().inspect_err(|e| {
        if let Some(s) = route_stats {
            s.record_failure(e);
        }
    })?;

    let upgrade = req.version() == Version::HTTP_11
        && cluster.protocol == UpstreamProtocol::Http1
        && headers::is_upgrade_request(req.headers());
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let downstream_version = req.version();
    let deadline = min_timeout(
        route.timeout,
        grpc.then(|| grpc::timeout(req.headers())).flatten(),
    )
    .map(|d| tokio::time::Instant::now() + d);

    let (mut parts, body) = req.into_parts();
    let wanted = parts.extensions.get::<decision::Wanted>().copied();
    // Boxed: a recorder is 2 KiB, and inline it would size every request's future.
    let recorder = wanted.map(|_| Box::new(decision::Recorder::default()));
    // Nothing of the downstream exchange (hyper's upgrade handle and such) goes upstream.
    parts.extensions = http::Extensions::new();
    upstream_head(
        &mut parts,
        listener,
        route,
        conn,
        cluster,
        text(&authority),
        upgrade,
    )?;
    let stall = listener.options.stream_idle_timeout;

    // An upgraded connection is one exchange: it is never retried or hedged.
    let (retry, hedge) = match upgrade {
        true => (None, None),
        false => (route.retry.as_ref(), route.hedge),
    };
    // The access log counts the request body bytes as they are forwarded.
    let counter = log
        .as_deref_mut()
        .filter(|_| !body.is_end_stream())
        .map(HttpEntry::request_body_counter);
    let body = match body.is_end_stream() {
        true => RequestBody::Empty,
        false => {
            request_body(
                IdleTimeout::new(CountedBody::new(body, counter), stall).boxed_unsync(),
                &parts.headers,
                route.buffer,
                retry.map(|r| r.max_replay_bytes).or(hedge.map(|_| 0)),
            )
            .await?
        }
    };
    let affinity = target
        .affinity
        .as_ref()
        .map(|(a, cookie)| a.begin(cluster, cookie.as_deref()));
    let attempts = Attempts {
        cluster,
        route: route_stats,
        retry,
        hedge,
        deadline,
        idempotent: retry::is_idempotent(&parts.method),
        client: conn.remote,
        local: conn.local,
        sent: AtomicU32::new(0),
        decision: recorder.as_deref(),
        affinity: affinity.as_ref(),
        trace: log.as_deref().and_then(|l| l.attempt_tracer(&cluster.name)),
    };
    let answer = attempts.run(parts, body).await;
    let mut set_cookie = None;
    if let (Some(affinity), Ok(a)) = (&affinity, &answer) {
        let (header, verdict) = affinity.finish(cluster, a.endpoint);
        set_cookie = header;
        if let (Some(record), Some(v)) = (&recorder, verdict) {
            record.affinity(v.as_str());
        }
    }
    let record = recorder
        .as_ref()
        .map(|r| r.render(cluster, answer.as_ref().ok().map(|a| a.endpoint)));
    if let Some(record) = &record {
        tracing::debug!(cluster = %cluster.name, decision = %record, "decision record");
    }
    if let Some(log) = log {
        log.set_attempts(attempts.sent.load(Ordering::Relaxed));
        if let Ok(a) = &answer {
            log.set_upstream(a.endpoint, a.elapsed);
        }
    }
    let answer = answer?;
    // The answering attempt's client span ends with the response body.
    let held = ExchangeGuards::new(answer.in_flight, request_slot).with_span(answer.span);
    let upstream = answer.upstream;

    let mut response = upstream.response;
    if let Some(v) = set_cookie {
        response.headers_mut().append(http::header::SET_COOKIE, v);
    }
    if let Some(down) = downstream_upgrade
        && response.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let up = hyper::upgrade::on(&mut response);
        upgrade::tunnel(down, up, held, conn);
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(parts, empty()));
    }
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    if let (Some(record), Some(true)) = (&record, wanted.map(|w| w.header)) {
        parts
            .headers
            .insert(decision::DECISION, decision::header_value(record));
    }
    // The client gets its own protocol version back, whatever the endpoint spoke.
    parts.version = downstream_version;
    let body =
        IdleTimeout::new(UpstreamBody::new(body, held, upstream.sender), stall).boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

/// The request body in the form the attempts need: read in full first when the route buffers
/// (413 above the limit), kept for replays when the route retries or hedges (`replay` bytes at
/// most), else streamed once.
async fn request_body(
    body: ProxyBody,
    headers: &http::HeaderMap,
    buffer: Option<u64>,
    replay: Option<u64>,
) -> Result<RequestBody, Error> {
    if body.is_end_stream() {
        return Ok(RequestBody::Empty);
    }
    let Some(limit) = buffer else {
        return Ok(match replay {
            Some(limit) => RequestBody::Replay(Replay::new(body, limit)),
            None => RequestBody::Once(Some(body)),
        });
    };
    let too_large = || {
        Error::new(
            ErrorKind::PayloadTooLarge,
            format!("request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = body;
    let mut data = bytes::BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Error::new(ErrorKind::DownstreamProtocol, "the request body broke off").with_cause(e)
        })?;
        match frame.into_data() {
            Ok(chunk) => {
                if (data.len() + chunk.len()) as u64 > limit {
                    return Err(too_large());
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    Ok(RequestBody::Buffered(data.freeze(), trailers))
}

/// Puts the request in the form the upstream protocol wants: origin-form with `Host` for
/// HTTP/1.1, absolute-form carrying `:authority` for HTTP/2. The original authority is kept.
/// Turns a downstream request head into the head sent to `cluster`: hop-by-hop headers out
/// (the upgrade ones kept when `upgrade`), `x-forwarded-*` (unless turned off) and `via` added, the route's header
/// rules applied, and the form the upstream protocol wants, carrying `authority`. The primary
/// request and a mirror's copy both go through here.
pub(super) fn upstream_head(
    parts: &mut http::request::Parts,
    listener: &HttpListener,
    route: &Route,
    conn: &ConnInfo,
    cluster: &Cluster,
    authority: Option<&str>,
    upgrade: bool,
) -> Result<(), Error> {
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    if listener.options.x_forwarded {
        headers::add_forwarded(&mut parts.headers, conn.client_ip(), conn.scheme());
    }
    if let Some((via11, via2)) = &listener.options.via {
        let v = if parts.version == Version::HTTP_2 {
            via2
        } else {
            via11
        };
        headers::add_via(&mut parts.headers, v);
    }
    route.request_headers.apply(&mut parts.headers);
    rewrite_for_upstream(parts, cluster, authority)
}

fn rewrite_for_upstream(
    parts: &mut http::request::Parts,
    cluster: &crate::Cluster,
    authority: Option<&str>,
) -> Result<(), Error> {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let bad_authority = || Error::new(ErrorKind::DownstreamProtocol, "invalid host/authority");
    match cluster.protocol {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            parts.uri = Uri::from(path);
            // The endpoint sees the authority weir routed on, never a different Host (the
            // client's own Host line, when it is that authority, is kept as it is).
            if let Some(a) = authority
                && parts
                    .headers
                    .get(HOST)
                    .is_none_or(|h| h.as_bytes() != a.as_bytes())
            {
                let v = HeaderValue::from_str(a).map_err(|_| bad_authority())?;
                parts.headers.insert(HOST, v);
            }
            headers::join_cookies(&mut parts.headers);
        }
        UpstreamProtocol::Http2 => {
            parts.version = Version::HTTP_2;
            parts.headers.remove(HOST);
            let authority = Authority::try_from(authority.unwrap_or("localhost"))
                .map_err(|_| bad_authority())?;
            let scheme = match cluster.tls {
                Some(_) => Scheme::HTTPS,
                None => Scheme::HTTP,
            };
            let mut uri = Uri::builder().scheme(scheme).authority(authority);
            uri = uri.path_and_query(path);
            parts.uri = uri.build().map_err(|_| bad_authority())?;
        }
    }
    Ok(())
}

/// The authority the request is routed on and forwarded with (RFC 9112 §3.2): the URI's
/// (`:authority`, absolute-form) when present, else the one `Host` header. Several `Host`
/// headers, an unreadable one, or an HTTP/1.1 request without any are client errors.
fn request_authority<B>(req: &Request<B>) -> Result<Option<HeaderValue>, Error> {
    let bad = |why: &'static str| Error::new(ErrorKind::DownstreamProtocol, why);
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("more than one Host header"));
    }
    if let Some(a) = req.uri().authority() {
        return HeaderValue::from_str(a.as_str())
            .map(Some)
            .map_err(|_| bad("invalid authority"));
    }
    match host {
        // Shared with the request's own header: no copy.
        Some(v) => match v.to_str() {
            Ok(_) => Ok(Some(v.clone())),
            Err(_) => Err(bad("Host header is not valid text")),
        },
        None if req.version() == Version::HTTP_11 => {
            Err(bad("HTTP/1.1 request without a Host header"))
        }
        None => Ok(None),
    }
}

/// The text of a request's authority ([`request_authority`] checked that it is text).
fn text(authority: &Option<HeaderValue>) -> Option<&str> {
    authority.as_ref().and_then(|v| v.to_str().ok())
}

fn redirect_location<B>(
    req: &Request<B>,
    authority: Option<&str>,
    scheme: &Option<String>,
    host: &Option<String>,
    path: &Option<String>,
    own_scheme: &'static str,
) -> String {
    let scheme = scheme.as_deref().unwrap_or(own_scheme);
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
