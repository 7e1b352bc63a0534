//! The compiled form of an HTTP listener: its route table, connection options and TLS.

use std::time::Duration;

use http::HeaderValue;
use weir_config::ListenerConfig;
use weir_router::{RouteMatcher, RouteTable};

use super::route::Route;
use crate::{Cluster, CompileError};

/// An HTTP listener as the data plane sees it.
#[derive(Debug)]
pub(crate) struct HttpListener {
    pub(crate) routes: RouteTable<Route>,
    pub(crate) options: HttpOptions,
    /// Each route's rate limits, by route index (for the sync task and the counters).
    pub(crate) rate_limits: Vec<Option<std::sync::Arc<crate::rate_limit::RouteLimiter>>>,
    /// TLS termination, when the listener has a `tls` block.
    pub(crate) tls: Option<crate::tls::ListenerTls>,
}

/// Connection-level limits and options, resolved from config.
#[derive(Debug, Clone)]
pub(crate) struct HttpOptions {
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_request_headers_bytes: usize,
    pub(crate) max_request_headers: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) stream_idle_timeout: Duration,
    pub(crate) max_concurrent_streams: u32,
    /// `via` values for HTTP/1.1 and HTTP/2 exchanges, when enabled.
    pub(crate) via: Option<(HeaderValue, HeaderValue)>,
    /// Whether `x-forwarded-for`/`x-forwarded-proto` are added to forwarded requests.
    pub(crate) x_forwarded: bool,
    /// Clients whose `x-weir-debug: 1` gets the decision record.
    pub(crate) debug_trusted: weir_config::CidrList,
}

// === impl HttpListener ===

impl HttpListener {
    /// Compiles `cfg`; `clusters` resolves route targets to indices, `path` names it in errors.
    /// Rate limiters that did not change are taken over from `previous` (a reload).
    pub(crate) fn compile(
        cfg: &ListenerConfig,
        clusters: &[Cluster],
        path: &str,
        previous: Option<&HttpListener>,
    ) -> Result<Self, CompileError> {
        let routes: Vec<_> = cfg
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let at = format!("{path}.routes[{i}]");
                let matcher =
                    RouteMatcher::try_from_config(&r.match_).map_err(|e| CompileError {
                        path: format!("{at}.match"),
                        reason: e.to_string(),
                    })?;
                let id = format!("{}/{i}", cfg.name);
                let prev = previous.and_then(|p| p.routes.get(i));
                Ok((matcher, Route::compile(r, clusters, &at, &id, prev)?))
            })
            .collect::<Result<_, CompileError>>()?;
        let h = &cfg.http;
        let via = match &h.via {
            Some(v) => {
                let value = |proto: &str| {
                    HeaderValue::try_from(format!("{proto} {v}")).map_err(|_| CompileError {
                        path: format!("{path}.http.via"),
                        reason: format!("`{v}` is not a valid header value"),
                    })
                };
                Some((value("1.1")?, value("2")?))
            }
            None => None,
        };
        let rate_limits = routes.iter().map(|(_, r)| r.rate_limit.clone()).collect();
        let tls = match &cfg.tls {
            Some(t) => Some(crate::tls::ListenerTls::compile(
                t,
                &format!("{path}.tls"),
                previous.and_then(|p| p.tls.as_ref()),
            )?),
            None => None,
        };
        Ok(Self {
            rate_limits,
            tls,
            routes: RouteTable::new(routes),
            options: HttpOptions {
                header_read_timeout: h.header_read_timeout.get(),
                max_request_headers_bytes: h.max_request_headers_bytes as usize,
                max_request_headers: h.max_request_headers as usize,
                idle_timeout: h.idle_timeout.get(),
                stream_idle_timeout: h.stream_idle_timeout.get(),
                max_concurrent_streams: h.max_concurrent_streams,
                via,
                x_forwarded: h.x_forwarded,
                debug_trusted: h.debug_trusted.clone(),
            },
        })
    }
}
