//! A route's action and per-route policy, compiled so a request only follows indices.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use weir_config::{HeaderRulesConfig, RouteConfig};

use super::fault::FaultPolicy;
use super::mirror::MirrorPolicy;
use super::retry::RetryPolicy;
use crate::affinity::SessionAffinity;
use crate::rate_limit::RouteLimiter;
use crate::{Cluster, CompileError, RouteClusterStats};

/// What a matched request gets, plus the route's policy.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) action: RouteAction,
    pub(crate) timeout: Option<Duration>,
    /// Retries of failed attempts, if the route asks for them.
    pub(crate) retry: Option<RetryPolicy>,
    /// The hedge delay, if the route hedges.
    pub(crate) hedge: Option<Duration>,
    /// Read the whole body (at most this many bytes) before picking an endpoint.
    pub(crate) buffer: Option<u64>,
    pub(crate) request_headers: HeaderRules,
    pub(crate) response_headers: HeaderRules,
    /// Copy selected requests to a shadow cluster (`mirror.rs`).
    pub(crate) mirror: Option<MirrorPolicy>,
    /// Delay or abort selected requests (`fault.rs`).
    pub(crate) fault: Option<FaultPolicy>,
    /// Rate limits checked right after the route matches.
    pub(crate) rate_limit: Option<Arc<RouteLimiter>>,
    /// What the route answered (`/metrics`), carried over reloads by position.
    pub(crate) traffic: Arc<crate::stats::RouteTraffic>,
    /// The clusters the action forwards to, each with the route's counters for it.
    pub(crate) clusters: Vec<RouteCluster>,
    /// Session affinity overriding the cluster's.
    pub(crate) session_affinity: Option<SessionAffinity>,
}

/// The action of a route.
#[derive(Debug)]
pub(crate) enum RouteAction {
    /// Forward to the cluster at this index of `Snapshot::clusters`.
    Cluster(usize),
    /// Forward to one of these clusters, chosen by weight per request.
    Weighted {
        targets: Vec<(usize, u32)>,
        total: u64,
    },
    /// Answer with a redirect.
    Redirect {
        status: StatusCode,
        scheme: Option<String>,
        host: Option<String>,
        path: Option<String>,
    },
    /// Answer with a fixed response.
    Direct {
        status: StatusCode,
        content_type: HeaderValue,
        body: bytes::Bytes,
    },
}

/// A cluster a route forwards to, with what the route's requests met there (`/metrics`).
#[derive(Debug)]
pub(crate) struct RouteCluster {
    /// The cluster's index in `Snapshot::clusters`.
    pub(crate) index: usize,
    /// The cluster's name, by which the counters are carried over a reload.
    pub(crate) name: Arc<str>,
    pub(crate) stats: Arc<RouteClusterStats>,
}

/// Compiled header edits: remove, then set, then add.
#[derive(Debug, Default)]
pub(crate) struct HeaderRules {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

// === impl Route ===

impl Route {
    /// Compiles `cfg`; `at` is its YAML path for error messages, `id` its name in shared rate
    /// limit counters (`<listener>/<index>`); `previous` is the route that held this place
    /// before a reload: its rate limiter is kept when its limits are unchanged, and its
    /// counters (`traffic`, per cluster) carry over.
    pub(crate) fn compile(
        cfg: &RouteConfig,
        clusters: &[Cluster],
        at: &str,
        id: &str,
        previous: Option<&Route>,
    ) -> Result<Self, CompileError> {
        let err = |field: &str, reason: String| CompileError {
            path: format!("{at}.{field}"),
            reason,
        };
        let cluster_index = |name: &str, field: &str| {
            clusters
                .iter()
                .position(|c| &*c.name == name)
                .ok_or_else(|| err(field, format!("unknown cluster `{name}`")))
        };
        let action = if let Some(name) = &cfg.cluster {
            RouteAction::Cluster(cluster_index(name, "cluster")?)
        } else if let Some(split) = &cfg.weighted_clusters {
            let targets = split
                .iter()
                .map(|w| Ok((cluster_index(&w.cluster, "weighted_clusters")?, w.weight)))
                .collect::<Result<Vec<_>, CompileError>>()?;
            let total = targets.iter().map(|&(_, w)| u64::from(w)).sum();
            if total == 0 {
                return Err(err("weighted_clusters", "total weight is 0".into()));
            }
            RouteAction::Weighted { targets, total }
        } else if let Some(r) = &cfg.redirect {
            RouteAction::Redirect {
                status: StatusCode::from_u16(r.status)
                    .map_err(|_| err("redirect.status", format!("invalid status {}", r.status)))?,
                scheme: r.scheme.clone(),
                host: r.host.clone(),
                path: r.path.clone(),
            }
        } else if let Some(d) = &cfg.direct_response {
            let content_type = d
                .content_type
                .as_deref()
                .unwrap_or("text/plain; charset=utf-8");
            RouteAction::Direct {
                status: StatusCode::from_u16(d.status).map_err(|_| {
                    err(
                        "direct_response.status",
                        format!("invalid status {}", d.status),
                    )
                })?,
                content_type: HeaderValue::from_str(content_type).map_err(|_| {
                    err(
                        "direct_response.content_type",
                        "invalid header value".into(),
                    )
                })?,
                body: bytes::Bytes::from(d.body.clone()),
            }
        } else {
            return Err(err("", "route has no action".into()));
        };
        let route_clusters = (action.cluster_indices().into_iter())
            .filter_map(|index| {
                let name = Arc::clone(&clusters.get(index)?.name);
                let stats = previous
                    .and_then(|p| p.clusters.iter().find(|c| c.name == name))
                    .map(|c| Arc::clone(&c.stats))
                    .unwrap_or_default();
                Some(RouteCluster { index, name, stats })
            })
            .collect();
        Ok(Self {
            action,
            timeout: cfg.timeout.map(|t| t.get()).filter(|t| !t.is_zero()),
            retry: cfg.retry.as_ref().map(RetryPolicy::compile),
            hedge: cfg.hedge.map(|h| h.delay.get()),
            buffer: cfg.buffer.map(|b| b.max_request_bytes),
            request_headers: HeaderRules::compile(
                &cfg.request_headers,
                &format!("{at}.request_headers"),
            )?,
            response_headers: HeaderRules::compile(
                &cfg.response_headers,
                &format!("{at}.response_headers"),
            )?,
            mirror: (cfg.mirror.as_ref())
                .map(|m| MirrorPolicy::compile(m, clusters, &format!("{at}.mirror")))
                .transpose()?,
            fault: (cfg.fault.as_ref())
                .map(|f| FaultPolicy::compile(f, &format!("{at}.fault")))
                .transpose()?,
            rate_limit: cfg
                .rate_limit
                .as_ref()
                .map(|r| {
                    let limiter = previous.and_then(|p| p.rate_limit.as_ref());
                    RouteLimiter::compile_or_keep(r, id, at, limiter)
                })
                .transpose()?,
            traffic: previous.map(|p| Arc::clone(&p.traffic)).unwrap_or_default(),
            clusters: route_clusters,
            session_affinity: (cfg.session_affinity.as_ref())
                .map(SessionAffinity::compile)
                .transpose()
                .map_err(|reason| err("session_affinity", reason))?,
        })
    }

    /// The route's counters for the cluster at `index` of `Snapshot::clusters` (a scan of
    /// the route's one or few clusters).
    pub(crate) fn cluster_stats(&self, index: usize) -> Option<&RouteClusterStats> {
        (self.clusters.iter())
            .find(|c| c.index == index)
            .map(|c| &*c.stats)
    }
}

// === impl RouteAction ===

impl RouteAction {
    /// The cluster index to forward to, if this action forwards; `roll` is uniform in `0..u64::MAX`.
    pub(crate) fn cluster(&self, roll: u64) -> Option<usize> {
        match self {
            RouteAction::Cluster(i) => Some(*i),
            RouteAction::Weighted { targets, total } => {
                let mut x = roll % total;
                targets.iter().find_map(|&(i, w)| {
                    if x < u64::from(w) {
                        Some(i)
                    } else {
                        x -= u64::from(w);
                        None
                    }
                })
            }
            RouteAction::Redirect { .. } | RouteAction::Direct { .. } => None,
        }
    }

    /// Every cluster index the action may forward to, each once, in config order.
    fn cluster_indices(&self) -> Vec<usize> {
        let mut out = Vec::new();
        match self {
            RouteAction::Cluster(i) => out.push(*i),
            RouteAction::Weighted { targets, .. } => {
                for &(i, _) in targets {
                    if !out.contains(&i) {
                        out.push(i);
                    }
                }
            }
            RouteAction::Redirect { .. } | RouteAction::Direct { .. } => {}
        }
        out
    }
}

// === impl HeaderRules ===

impl HeaderRules {
    fn compile(cfg: &HeaderRulesConfig, at: &str) -> Result<Self, CompileError> {
        let name = |n: &str| {
            HeaderName::from_bytes(n.as_bytes()).map_err(|_| CompileError {
                path: at.to_owned(),
                reason: format!("invalid header name `{n}`"),
            })
        };
        let pair = |(n, v): (&String, &String)| {
            let value = HeaderValue::from_str(v).map_err(|_| CompileError {
                path: format!("{at}.{n}"),
                reason: format!("invalid header value `{v}`"),
            })?;
            Ok((name(n)?, value))
        };
        Ok(Self {
            remove: cfg
                .remove
                .iter()
                .map(|n| name(n))
                .collect::<Result<_, _>>()?,
            set: cfg
                .set
                .iter()
                .map(pair)
                .collect::<Result<_, CompileError>>()?,
            add: cfg
                .add
                .iter()
                .map(pair)
                .collect::<Result<_, CompileError>>()?,
        })
    }

    /// Applies the edits to `headers`.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_roll_follows_weights() {
        let a = RouteAction::Weighted {
            targets: vec![(0, 90), (1, 10), (2, 0)],
            total: 100,
        };
        let picks: Vec<_> = (0..100).map(|r| a.cluster(r).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 90);
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 10);
        assert!(!picks.contains(&2), "weight 0 disables an entry");
    }

    #[test]
    fn header_rules_remove_then_set_then_add() {
        let mut cfg = HeaderRulesConfig::default();
        cfg.remove.push("x-drop".into());
        cfg.set.insert("x-set".into(), "new".into());
        cfg.add.insert("x-add".into(), "2".into());
        let rules = HeaderRules::compile(&cfg, "r").unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-drop", HeaderValue::from_static("1"));
        h.insert("x-set", HeaderValue::from_static("old"));
        h.insert("x-add", HeaderValue::from_static("1"));
        rules.apply(&mut h);
        assert!(h.get("x-drop").is_none());
        assert_eq!(h.get("x-set").unwrap(), "new");
        assert_eq!(h.get_all("x-add").iter().count(), 2);
    }
}
