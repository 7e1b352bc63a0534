//! `GET /`: the live dashboard, one self-contained HTML page.
//!
//! The page (`assets/dashboard.html`: markup, CSS and JavaScript in one file) is compiled into
//! the binary with `include_str!`, so it needs no files at run time, no build step and nothing
//! from the network: it draws its charts on plain `<canvas>` elements. It polls `GET /stats`
//! every second and computes rates, error ratios and latency percentiles in the browser from
//! the difference between readings (see `stats.rs` for why the server stays stateless). The
//! content security policy below lets it talk to this admin API only.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::routes::AdminBody;

/// The page, as served.
pub(crate) const PAGE: &str = include_str!("../assets/dashboard.html");

/// Inline script and style only, requests to this origin only, nothing framed or framing.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The dashboard page.
pub(crate) fn respond() -> Response<AdminBody> {
    let mut res = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    *res.status_mut() = StatusCode::OK;
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_polls_stats() {
        assert!(PAGE.starts_with("<!doctype html>"));
        assert!(
            PAGE.contains("fetch(\"stats\""),
            "polls /stats relative to the page"
        );
        for external in ["http://", "https://", "//cdn", "<script src", "<link"] {
            assert!(
                !PAGE.contains(external),
                "the page must load nothing: {external}"
            );
        }
        let res = respond();
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(
            res.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("connect-src 'self'")
        );
    }
}
