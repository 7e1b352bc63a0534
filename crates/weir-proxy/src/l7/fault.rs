//! Fault injection per route (Envoy's HTTP fault filter): delay and/or abort a share of requests.
//!
//! It exists to test how clients and the services behind weir cope with a slow or failing
//! dependency without breaking anything for real. The decision is made once per request, right
//! after its route matched and before a cluster is picked: with the route's header condition
//! met, a delay is drawn with probability `delay.percent` and an abort with `abort.percent`
//! (independent uniform draws). A delayed request waits, then goes on; an aborted one gets the
//! configured status at once and never reaches an endpoint (after its delay, if both apply).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use weir_config::{FaultConfig, RouteMatchConfig};
use weir_router::{RequestView, RouteMatcher};

use super::route::Route;
use crate::body::full;
use crate::snapshot::Listener;
use crate::{CompileError, ProxyBody, Snapshot};

/// The body of an aborted request (Envoy's wording).
const ABORT_BODY: &str = "fault filter abort\n";

/// A route's compiled `fault` block and its counters.
#[derive(Debug)]
pub(crate) struct FaultPolicy {
    /// Delay and the probability (0.0–1.0) that a request gets it.
    delay: Option<(Duration, f64)>,
    /// Abort status and the probability (0.0–1.0) that a request gets it.
    abort: Option<(StatusCode, f64)>,
    /// Header conditions; `None` applies the fault to every request.
    condition: Option<RouteMatcher>,
    delayed: AtomicU64,
    aborted: AtomicU64,
}

/// What fault injection did on one route since the route was compiled (a reload starts afresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultStats {
    /// Requests that were delayed.
    pub delayed: u64,
    /// Requests answered with the abort status.
    pub aborted: u64,
}

// === impl FaultPolicy ===

impl FaultPolicy {
    /// Compiles `cfg`; `at` is its YAML path for error messages.
    pub(crate) fn compile(cfg: &FaultConfig, at: &str) -> Result<Self, CompileError> {
        let abort = cfg
            .abort
            .as_ref()
            .map(|a| {
                StatusCode::from_u16(a.status)
                    .map(|s| (s, probability(a.percent.get())))
                    .map_err(|_| CompileError {
                        path: format!("{at}.abort.status"),
                        reason: format!("invalid status {}", a.status),
                    })
            })
            .transpose()?;
        Ok(Self {
            delay: cfg
                .delay
                .as_ref()
                .map(|d| (d.fixed.get(), probability(d.percent.get()))),
            abort,
            condition: header_condition(&cfg.headers, &format!("{at}.headers"))?,
            delayed: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
        })
    }

    /// Decides what happens to one request, drawing from `roll` (uniform in `[0, 1)`) for the
    /// delay and the abort in turn; the counters move here.
    fn decide(&self, req: &RequestView<'_>, mut roll: impl FnMut() -> f64) -> Plan {
        if self.condition.as_ref().is_some_and(|c| !c.matches(req)) {
            return Plan::default();
        }
        let delay = self
            .delay
            .and_then(|(d, p)| (roll() < p).then_some(d))
            .inspect(|_| {
                self.delayed.fetch_add(1, Ordering::Relaxed);
            });
        let abort = self
            .abort
            .and_then(|(s, p)| (roll() < p).then_some(s))
            .inspect(|_| {
                self.aborted.fetch_add(1, Ordering::Relaxed);
            });
        Plan { delay, abort }
    }

    fn stats(&self) -> FaultStats {
        FaultStats {
            delayed: self.delayed.load(Ordering::Relaxed),
            aborted: self.aborted.load(Ordering::Relaxed),
        }
    }
}

/// What one request gets.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    delay: Option<Duration>,
    abort: Option<StatusCode>,
}

/// The fault hook, called once a route matched: decides at once (so the returned future holds
/// no borrow of the request) and resolves after the delay, if any, to the abort response, if
/// any. `None` means the request goes on as usual.
pub(crate) fn inject(
    route: &Route,
    req: &RequestView<'_>,
) -> impl Future<Output = Option<Response<ProxyBody>>> + Send + 'static {
    let plan = route
        .fault
        .as_ref()
        .map(|f| f.decide(req, rand::random::<f64>))
        .unwrap_or_default();
    async move {
        if let Some(delay) = plan.delay {
            tokio::time::sleep(delay).await;
        }
        plan.abort.map(|status| {
            let mut res = Response::new(full(ABORT_BODY));
            *res.status_mut() = status;
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            res
        })
    }
}

/// A percentage as a probability, clamped to 0.0–1.0 (the validator rejects anything outside).
fn probability(percent: f64) -> f64 {
    (percent / 100.0).clamp(0.0, 1.0)
}

/// Compiles a `headers:` condition map; an empty map is no condition.
pub(super) fn header_condition(
    headers: &std::collections::BTreeMap<String, weir_config::StringMatchConfig>,
    at: &str,
) -> Result<Option<RouteMatcher>, CompileError> {
    if headers.is_empty() {
        return Ok(None);
    }
    let cfg = RouteMatchConfig {
        headers: headers.clone(),
        ..RouteMatchConfig::default()
    };
    RouteMatcher::try_from_config(&cfg)
        .map(Some)
        .map_err(|e| CompileError {
            path: at.to_owned(),
            reason: e.to_string(),
        })
}

impl Snapshot {
    /// Fault-injection counters of route `route` of listener `listener` (indices as in the
    /// config); `None` when there is no such HTTP route or it has no `fault` block.
    pub fn fault_stats(&self, listener: usize, route: usize) -> Option<FaultStats> {
        let Some(Listener::Http(l)) = self.listeners.get(listener) else {
            return None;
        };
        l.routes.get(route)?.fault.as_ref().map(FaultPolicy::stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Method};

    fn policy(yaml: &str) -> FaultPolicy {
        let cfg: FaultConfig = weir_config::load_str(
            &format!(
                "clusters: [ {{ name: c }} ]\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes:\n      - cluster: c\n        fault: {yaml}\n"
            ),
            "t.yaml",
        )
        .unwrap()
        .config()
        .listeners[0]
            .routes[0]
            .fault
            .clone()
            .unwrap();
        FaultPolicy::compile(&cfg, "r.fault").unwrap()
    }

    fn view(headers: &HeaderMap) -> RequestView<'_> {
        RequestView {
            method: &Method::GET,
            host: None,
            path: "/",
            query: None,
            headers,
        }
    }

    #[test]
    fn draws_decide_delay_then_abort_independently() {
        let p =
            policy("{ delay: { fixed: 50ms, percent: 30 }, abort: { status: 503, percent: 10 } }");
        let h = HeaderMap::new();
        // Rolls: delay draw first, abort draw second.
        let mut rolls = [0.29, 0.5].into_iter();
        let plan = p.decide(&view(&h), || rolls.next().unwrap());
        assert_eq!(plan.delay, Some(Duration::from_millis(50)));
        assert_eq!(plan.abort, None);
        let mut rolls = [0.3, 0.09].into_iter();
        let plan = p.decide(&view(&h), || rolls.next().unwrap());
        assert_eq!(plan.delay, None, "a roll equal to the share misses");
        assert_eq!(plan.abort, Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(
            p.stats(),
            FaultStats {
                delayed: 1,
                aborted: 1
            }
        );
    }

    #[test]
    fn header_condition_gates_everything() {
        let p = policy("{ abort: { status: 418 }, headers: { x-weir-fault: { present: true } } }");
        let without = HeaderMap::new();
        assert_eq!(p.decide(&view(&without), || 0.0), Plan::default());
        let mut with = HeaderMap::new();
        with.insert("x-weir-fault", HeaderValue::from_static("1"));
        assert_eq!(
            p.decide(&view(&with), || 0.999).abort,
            Some(StatusCode::IM_A_TEAPOT),
            "percent defaults to 100"
        );
    }

    #[tokio::test]
    async fn inject_sleeps_then_answers_with_the_status() {
        let config = weir_config::load_str(
            "clusters: [ { name: c } ]\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes:\n      - cluster: c\n        fault: { delay: { fixed: 50ms }, abort: { status: 429 } }\n",
            "t.yaml",
        )
        .unwrap();
        let snapshot = Snapshot::compile(&config, None).unwrap();
        let Some(Listener::Http(l)) = snapshot.listeners.first() else {
            panic!("an http listener")
        };
        let route = l.routes.get(0).unwrap();
        let h = HeaderMap::new();
        let start = std::time::Instant::now();
        let res = inject(route, &view(&h)).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(50),
            "delayed first"
        );
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            snapshot.fault_stats(0, 0),
            Some(FaultStats {
                delayed: 1,
                aborted: 1
            })
        );
        assert_eq!(snapshot.fault_stats(0, 1), None);
    }
}
