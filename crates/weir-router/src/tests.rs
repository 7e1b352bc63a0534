use http::{HeaderMap, HeaderValue, Method};
use weir_config::{RouteMatchConfig, StringMatchConfig, StringMatchRuleConfig};

use super::*;

fn rule(exact: Option<&str>, regex: Option<&str>, present: Option<bool>) -> StringMatchConfig {
    StringMatchConfig::Rule(StringMatchRuleConfig {
        exact: exact.map(str::to_owned),
        regex: regex.map(str::to_owned),
        present,
    })
}

struct Req {
    method: Method,
    host: Option<&'static str>,
    path: &'static str,
    query: Option<&'static str>,
    headers: HeaderMap,
}

impl Req {
    fn get(path: &'static str) -> Self {
        Self {
            method: Method::GET,
            host: Some("api.example.com"),
            path,
            query: None,
            headers: HeaderMap::new(),
        }
    }
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            host: self.host,
            path: self.path,
            query: self.query,
            headers: &self.headers,
        }
    }
}

fn matcher(f: impl FnOnce(&mut RouteMatchConfig)) -> RouteMatcher {
    let mut cfg = RouteMatchConfig::default();
    f(&mut cfg);
    RouteMatcher::try_from_config(&cfg).unwrap()
}

#[test]
fn empty_match_matches_everything() {
    assert!(matcher(|_| {}).matches(&Req::get("/anything").view()));
}

#[test]
fn host_exact_and_wildcard_ignore_case() {
    let m = matcher(|c| c.host = Some("API.example.com".into()));
    assert!(m.matches(&Req::get("/").view()));
    let mut r = Req::get("/");
    r.host = Some("web.example.com");
    assert!(!m.matches(&r.view()));
    r.host = None;
    assert!(
        !m.matches(&r.view()),
        "no host never matches a host condition"
    );

    let w = matcher(|c| c.host = Some("*.Example.com".into()));
    assert!(w.matches(&Req::get("/").view()));
    let mut r = Req::get("/");
    r.host = Some("example.com");
    assert!(!w.matches(&r.view()), "the bare domain is not a subdomain");
    r.host = Some("a.b.EXAMPLE.com");
    assert!(w.matches(&r.view()));
}

#[test]
fn path_exact_prefix_regex() {
    let exact = matcher(|c| c.path = Some("/old".into()));
    assert!(exact.matches(&Req::get("/old").view()));
    assert!(!exact.matches(&Req::get("/old/x").view()));
    let prefix = matcher(|c| c.path_prefix = Some("/v1".into()));
    assert!(prefix.matches(&Req::get("/v1/users").view()));
    assert!(!prefix.matches(&Req::get("/v2").view()));
    let re = matcher(|c| c.path_regex = Some("/users/[0-9]+".into()));
    assert!(re.matches(&Req::get("/users/42").view()));
    assert!(
        !re.matches(&Req::get("/users/42/x").view()),
        "regex is anchored"
    );
}

#[test]
fn method_must_equal() {
    let m = matcher(|c| c.method = Some("POST".into()));
    assert!(!m.matches(&Req::get("/").view()));
    let mut r = Req::get("/");
    r.method = Method::POST;
    assert!(m.matches(&r.view()));
}

#[test]
fn headers_exact_present_absent_regex() {
    let mut r = Req::get("/");
    r.headers.insert("x-canary", HeaderValue::from_static("1"));
    r.headers.append("x-tier", HeaderValue::from_static("gold"));
    let exact = matcher(|c| {
        c.headers
            .insert("x-canary".into(), StringMatchConfig::Exact("1".into()));
    });
    assert!(exact.matches(&r.view()));
    assert!(!exact.matches(&Req::get("/").view()));
    let present = matcher(|c| {
        c.headers
            .insert("x-canary".into(), rule(None, None, Some(true)));
    });
    assert!(present.matches(&r.view()));
    let absent = matcher(|c| {
        c.headers
            .insert("x-canary".into(), rule(None, None, Some(false)));
    });
    assert!(!absent.matches(&r.view()));
    assert!(absent.matches(&Req::get("/").view()));
    let re = matcher(|c| {
        c.headers
            .insert("x-tier".into(), rule(None, Some("gold|silver"), None));
    });
    assert!(re.matches(&r.view()));
}

#[test]
fn query_parameters_are_decoded() {
    let m = matcher(|c| {
        c.query
            .insert("q".into(), StringMatchConfig::Exact("a b".into()));
        c.query.insert("debug".into(), rule(None, None, Some(true)));
    });
    let mut r = Req::get("/");
    r.query = Some("q=a%20b&debug");
    assert!(m.matches(&r.view()));
    r.query = Some("q=a+b");
    assert!(!m.matches(&r.view()), "debug is missing");
    r.query = None;
    assert!(!m.matches(&r.view()));
}

#[test]
fn first_match_wins() {
    let table = RouteTable::new(vec![
        (matcher(|c| c.path_prefix = Some("/v1".into())), "api"),
        (matcher(|c| c.path_prefix = Some("/".into())), "web"),
    ]);
    assert_eq!(table.match_request(&Req::get("/v1/x").view()), Some(&"api"));
    assert_eq!(table.match_request(&Req::get("/v2").view()), Some(&"web"));
    let empty: RouteTable<()> = RouteTable::new(vec![]);
    assert!(empty.match_request(&Req::get("/").view()).is_none());
}

#[test]
fn bad_regex_is_an_error_not_a_panic() {
    let cfg = RouteMatchConfig {
        path_regex: Some("(".into()),
        ..Default::default()
    };
    assert!(matches!(
        RouteMatcher::try_from_config(&cfg),
        Err(RouterError::Regex { .. })
    ));
}

#[test]
fn strips_ports() {
    assert_eq!(host_without_port("example.com:8080"), "example.com");
    assert_eq!(host_without_port("example.com"), "example.com");
    assert_eq!(host_without_port("[::1]:80"), "[::1]");
    assert_eq!(host_without_port("[::1]"), "[::1]");
}
