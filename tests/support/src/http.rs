//! [`MockHttp`]: an HTTP endpoint speaking HTTP/1.1 and HTTP/2 prior knowledge (h2c) on one port,
//! for end-to-end tests of the L7 proxy.
//!
//! Routes (any method):
//!
//! | path | response |
//! |---|---|
//! | `/healthz` | 200, body `ok` (a health check target) |
//! | `/echo` | 200, the request body streamed back frame by frame |
//! | `/headers` | 200, every request header as a `name: value\n` line |
//! | `/status/{code}` | `{code}` (200..=999), body = the endpoint name |
//! | `/delay/{ms}` | 200 after `ms` milliseconds |
//! | `/bytes/{n}` | 200, `n` bytes of [`pattern_byte`] generated chunk by chunk |
//! | `/drip/{chunks}/{ms}` | 200, `chunks` × [`DRIP_CHUNK`] bytes of the same pattern, one chunk every `ms` |
//! | `/sink` | 200, the number of request body bytes read (the body is discarded as it streams); `x-body-ms`: milliseconds from the request head to the body's end |
//! | WebSocket upgrade (HTTP/1.1) | 101, then every message echoed |
//! | anything else | 200, body = the endpoint name |
//!
//! Every response carries `x-endpoint: <name>` and what the mock saw: `x-seen-path` (path and
//! query), `x-seen-method`, `x-seen-version` (`HTTP/1.1`, `HTTP/2.0`) and `x-seen-host` (the
//! URI authority, else the `Host` header). Builder switches ([`MockHttpBuilder::delay`],
//! [`MockHttpBuilder::fail_with`], [`MockHttpBuilder::reset`]) apply to every request, and
//! [`MockHttp::set_fail_with`] switches failing on and off while the mock runs (health checks
//! that must see an endpoint go down and come back).
//!
//! [`MockHttp::traceparents`] lists the `traceparent` of every request received, whatever its
//! answer (trace tests, where a failing endpoint's answer cannot echo it).
//!
//! With [`MockHttpBuilder::tls`] the mock serves HTTPS instead (HTTP/1.1 or HTTP/2 by ALPN) and
//! adds `x-seen-sni`: the server name the client sent, if any, and `x-seen-client-subject`: the
//! subject of the certificate the client presented, if the config asked for one (upstream TLS
//! and mTLS tests; see [`crate::Issued::mtls_server_config`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::util::{Background, accept_loop, bind_loopback};
use crate::ws;

/// Bodies of every response the mock sends.
pub(crate) type MockBody = UnsyncBoxBody<Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `/bytes/{n}` is sent in chunks of this size.
const CHUNK: usize = 64 * 1024;
/// Period of [`pattern_byte`]; prime, so a dropped or repeated chunk shows up as a mismatch.
const PATTERN_PERIOD: u64 = 251;

/// A running mock HTTP endpoint. Dropping it closes the listener and every open connection.
#[derive(Debug)]
pub struct MockHttp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    connections: Arc<AtomicU64>,
    background: Background,
}

/// Configures a [`MockHttp`] before it starts; see the module docs for the routes.
#[derive(Debug, Clone)]
#[must_use = "call .start().await to run the mock"]
pub struct MockHttpBuilder {
    name: String,
    behaviour: Behaviour,
}

/// Switches that apply to every request, whatever its path.
#[derive(Debug, Clone, Default)]
struct Behaviour {
    delay: Option<Duration>,
    fail_with: Option<StatusCode>,
    /// Every `n`th request (by arrival) is answered with this status.
    fail_every: Option<(u64, StatusCode)>,
    reset: bool,
    /// Serve TLS with this config.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// State the connection tasks share with the handle.
#[derive(Debug)]
struct Shared {
    name: String,
    behaviour: Behaviour,
    /// The status set by [`MockHttp::set_fail_with`]; 0 when unset.
    fail_now: AtomicU16,
    requests: AtomicU64,
    posts: AtomicU64,
    /// The `traceparent` of every request, in arrival order.
    traceparents: std::sync::Mutex<Vec<String>>,
    token: CancellationToken,
}

/// The `/bytes/{n}` body: slices of one shared pattern buffer, so memory stays constant whatever
/// `n` is.
struct PatternBody {
    pattern: Bytes,
    offset: u64,
    len: u64,
}

impl MockHttp {
    /// Starts a mock with default behaviour, named `name`.
    pub async fn start(name: impl Into<String>) -> Self {
        Self::builder(name).start().await
    }

    /// A builder for a mock named `name` (the default body and the `x-endpoint` header).
    pub fn builder(name: impl Into<String>) -> MockHttpBuilder {
        MockHttpBuilder {
            name: name.into(),
            behaviour: Behaviour::default(),
        }
    }

    /// The bound loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint name given at start.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// `http://127.0.0.1:{port}{path}`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received so far (counted on arrival, before any delay), including WebSocket
    /// upgrades and requests answered by `fail_with`.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// POST requests received so far (counted like [`MockHttp::requests`]).
    pub fn posts(&self) -> u64 {
        self.shared.posts.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far, including ones closed at once by `reset`.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// The `traceparent` header of every request received so far, in arrival order.
    pub fn traceparents(&self) -> Vec<String> {
        self.shared
            .traceparents
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// While `Some(status)`, answers every request — `/healthz` included — with `status`
    /// (body = the endpoint name), overriding [`MockHttpBuilder::fail_with`]; `None` restores
    /// the configured behaviour. Takes effect for the next request.
    pub fn set_fail_with(&self, status: Option<StatusCode>) {
        let code = status.map_or(0, |s| s.as_u16());
        self.shared.fail_now.store(code, Ordering::SeqCst);
    }

    /// Stops accepting, closes every open connection and waits until all of it has stopped.
    pub async fn shutdown(self) {
        self.background.shutdown().await;
    }
}

impl MockHttpBuilder {
    /// Waits `delay` before answering every request (after counting it).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.behaviour.delay = Some(delay);
        self
    }

    /// Answers every request with `status` (body = the endpoint name), whatever its path.
    pub fn fail_with(mut self, status: StatusCode) -> Self {
        self.behaviour.fail_with = Some(status);
        self
    }

    /// Answers every `n`th request (the 1st, `n+1`th, … by arrival) with `status`: `n = 2`
    /// fails half of all requests, alternately.
    pub fn fail_every(mut self, n: u64, status: StatusCode) -> Self {
        self.behaviour.fail_every = Some((n.max(1), status));
        self
    }

    /// Serves HTTPS with `config` (its certificate and ALPN protocols) instead of cleartext.
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.behaviour.tls = Some(config);
        self
    }

    /// Accepts each TCP connection and resets it at once (`SO_LINGER` 0) without reading or
    /// answering: the proxy should answer 502.
    pub fn reset(mut self) -> Self {
        self.behaviour.reset = true;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(self) -> MockHttp {
        let (listener, addr) = bind_loopback().await;
        self.serve(listener, addr)
    }

    /// Serves on `listener`, bound by the test: another address than `127.0.0.1` (`[::1]` for
    /// IPv6 tests), or a port chosen to match another mock's.
    pub fn start_on(self, listener: std::net::TcpListener) -> MockHttp {
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener
            .local_addr()
            .expect("local_addr of a bound listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        self.serve(listener, addr)
    }

    fn serve(self, listener: tokio::net::TcpListener, addr: SocketAddr) -> MockHttp {
        let connections = Arc::new(AtomicU64::new(0));
        let token = CancellationToken::new();
        let shared = Arc::new(Shared {
            name: self.name,
            behaviour: self.behaviour,
            fail_now: AtomicU16::new(0),
            requests: AtomicU64::new(0),
            posts: AtomicU64::new(0),
            traceparents: std::sync::Mutex::default(),
            token: token.clone(),
        });
        let state = Arc::clone(&shared);
        let serve = accept_loop(
            listener,
            token.clone(),
            Arc::clone(&connections),
            move |stream, _peer| serve_connection(Arc::clone(&state), stream),
        );
        MockHttp {
            addr,
            shared,
            connections,
            background: Background::spawn(token, serve),
        }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let remaining = self.len - self.offset;
        if remaining == 0 {
            return Poll::Ready(None);
        }
        let n = usize::try_from(remaining).map_or(CHUNK, |r| r.min(CHUNK));
        // Lossless: the remainder is below PATTERN_PERIOD.
        let start = (self.offset % PATTERN_PERIOD) as usize;
        let chunk = self.pattern.slice(start..start + n);
        self.offset += n as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset == self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.offset)
    }
}

/// `/drip/{chunks}/{ms}`: `chunks` chunks of [`DRIP_CHUNK`] pattern bytes, `ms` apart (the first
/// at once): a response that stays in flight for a known time.
fn drip(chunks: u64, gap: Duration) -> Response<MockBody> {
    let frames = futures_util::stream::unfold(0u64, move |i| async move {
        if i == chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        let start = i * DRIP_CHUNK as u64;
        let chunk: Vec<u8> = (start..start + DRIP_CHUNK as u64)
            .map(pattern_byte)
            .collect();
        let frame: Result<Frame<Bytes>, BoxError> = Ok(Frame::data(Bytes::from(chunk)));
        Some((frame, i + 1))
    });
    Response::new(http_body_util::StreamBody::new(Box::pin(frames)).boxed_unsync())
}

/// The size of each `/drip` chunk.
pub const DRIP_CHUNK: usize = 1024;

/// The byte at `offset` of every `/bytes/{n}` body: `offset % 251`.
pub fn pattern_byte(offset: u64) -> u8 {
    // Lossless: the remainder is below 251.
    (offset % PATTERN_PERIOD) as u8
}

/// A `CHUNK + PATTERN_PERIOD` buffer of the pattern, so any chunk is one slice of it.
fn pattern_buffer() -> Bytes {
    static PATTERN: OnceLock<Bytes> = OnceLock::new();
    PATTERN
        .get_or_init(|| {
            (0..(CHUNK as u64 + PATTERN_PERIOD))
                .map(pattern_byte)
                .collect::<Vec<u8>>()
                .into()
        })
        .clone()
}

/// Serves one accepted connection: h1 (with upgrades) or h2c, detected from the preface.
async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    if shared.behaviour.reset {
        // SO_LINGER 0 turns the close into an RST, the harshest failure a client can see.
        if let Err(error) = stream.set_zero_linger() {
            tracing::debug!(%error, "mock could not set SO_LINGER");
        }
        return;
    }
    let Some(tls) = shared.behaviour.tls.clone() else {
        let service = service_fn(move |req| handle(Arc::clone(&shared), req));
        let builder = auto::Builder::new(TokioExecutor::new());
        if let Err(error) = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .await
        {
            tracing::debug!(%error, "mock connection ended with an error");
        }
        return;
    };
    let stream = match tokio_rustls::TlsAcceptor::from(tls).accept(stream).await {
        Ok(s) => s,
        Err(error) => {
            tracing::debug!(%error, "mock TLS handshake failed");
            return;
        }
    };
    let sni = stream
        .get_ref()
        .1
        .server_name()
        .and_then(|n| HeaderValue::from_str(n).ok());
    let client = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| x509_parser::parse_x509_certificate(leaf).ok())
        .and_then(|(_, cert)| HeaderValue::try_from(cert.subject().to_string()).ok());
    let service = service_fn(move |req| {
        let (shared, sni, client) = (Arc::clone(&shared), sni.clone(), client.clone());
        async move {
            let mut resp = handle(shared, req).await?;
            if let Some(sni) = sni {
                resp.headers_mut()
                    .insert(HeaderName::from_static("x-seen-sni"), sni);
            }
            if let Some(subject) = client {
                resp.headers_mut()
                    .insert(HeaderName::from_static("x-seen-client-subject"), subject);
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(error) = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%error, "mock TLS connection ended with an error");
    }
}

/// Answers one request: fixed behaviours first, then the route.
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let seq = shared.requests.fetch_add(1, Ordering::SeqCst);
    if req.method() == http::Method::POST {
        shared.posts.fetch_add(1, Ordering::SeqCst);
    }
    let seen = seen_headers(&req);
    if let Some(tp) = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        && let Ok(mut all) = shared.traceparents.lock()
    {
        all.push(tp.to_owned());
    }
    if let Some(delay) = shared.behaviour.delay {
        tokio::time::sleep(delay).await;
    }
    let fail_now = StatusCode::from_u16(shared.fail_now.load(Ordering::SeqCst)).ok();
    let fail_turn = shared
        .behaviour
        .fail_every
        .and_then(|(n, status)| seq.is_multiple_of(n).then_some(status));
    let mut resp = if let Some(status) = fail_now.or(shared.behaviour.fail_with).or(fail_turn) {
        text(status, shared.name.clone())
    } else if req.version() <= http::Version::HTTP_11 && ws::is_upgrade(req.headers()) {
        ws::accept(req, shared.token.child_token())
    } else {
        route(&shared.name, req).await
    };
    let headers = resp.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&shared.name) {
        headers.insert(HeaderName::from_static("x-endpoint"), value);
    }
    headers.extend(seen);
    Ok(resp)
}

/// The `x-seen-*` headers describing `req`.
fn seen_headers(req: &Request<Incoming>) -> Vec<(Option<HeaderName>, HeaderValue)> {
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            let host = req.headers().get(header::HOST)?;
            host.to_str().ok().map(str::to_owned)
        })
        .unwrap_or_default();
    [
        ("x-seen-path", path.to_owned()),
        ("x-seen-method", req.method().as_str().to_owned()),
        ("x-seen-version", format!("{:?}", req.version())),
        ("x-seen-host", host),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        let value = HeaderValue::from_str(&value).ok()?;
        Some((Some(HeaderName::from_static(name)), value))
    })
    .collect()
}

/// Dispatches on the path; see the module docs.
async fn route(name: &str, req: Request<Incoming>) -> Response<MockBody> {
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/healthz" => text(StatusCode::OK, "ok"),
        "/echo" => Response::new(req.into_body().map_err(BoxError::from).boxed_unsync()),
        "/headers" => headers_body(&req),
        "/sink" => sink(req.into_body()).await,
        _ => {
            if let Some(code) = path.strip_prefix("/status/") {
                match code.parse().ok().and_then(|c| StatusCode::from_u16(c).ok()) {
                    Some(status @ (StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)) => {
                        empty(status)
                    }
                    Some(status) if !status.is_informational() => text(status, name.to_owned()),
                    _ => text(StatusCode::BAD_REQUEST, "bad status code"),
                }
            } else if let Some(ms) = path.strip_prefix("/delay/") {
                let Ok(ms) = ms.parse() else {
                    return text(StatusCode::BAD_REQUEST, "bad delay");
                };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(StatusCode::OK, name.to_owned())
            } else if let Some(spec) = path.strip_prefix("/drip/") {
                let parsed = spec
                    .split_once('/')
                    .and_then(|(n, ms)| Some((n.parse::<u64>().ok()?, ms.parse::<u64>().ok()?)));
                let Some((chunks, ms)) = parsed else {
                    return text(StatusCode::BAD_REQUEST, "use /drip/{chunks}/{ms}");
                };
                drip(chunks, Duration::from_millis(ms))
            } else if let Some(n) = path.strip_prefix("/bytes/") {
                let Ok(len) = n.parse() else {
                    return text(StatusCode::BAD_REQUEST, "bad byte count");
                };
                let body = PatternBody {
                    pattern: pattern_buffer(),
                    offset: 0,
                    len,
                };
                Response::new(body.boxed_unsync())
            } else {
                text(StatusCode::OK, name.to_owned())
            }
        }
    }
}

/// `/headers`: one `name: value` line per request header, in the order hyper stores them.
fn headers_body(req: &Request<Incoming>) -> Response<MockBody> {
    let mut out = String::new();
    for (name, value) in req.headers() {
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        out.push('\n');
    }
    text(StatusCode::OK, out)
}

/// `/sink`: reads the body to its end, keeping only the byte count.
async fn sink(mut body: Incoming) -> Response<MockBody> {
    let started = std::time::Instant::now();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    total += data.len() as u64;
                }
            }
            Err(error) => return text(StatusCode::BAD_REQUEST, error.to_string()),
        }
    }
    let mut resp = text(StatusCode::OK, total.to_string());
    let took = started.elapsed().as_millis().to_string();
    if let Ok(v) = HeaderValue::from_str(&took) {
        resp.headers_mut().insert("x-body-ms", v);
    }
    resp
}

/// A response with a fixed body.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<MockBody> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(BoxError::from)
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp
}

/// A response with no body.
pub(crate) fn empty(status: StatusCode) -> Response<MockBody> {
    let mut resp = Response::new(Empty::new().map_err(BoxError::from).boxed_unsync());
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_body_is_chunked_and_continuous() {
        let len = (CHUNK as u64) * 2 + 7;
        let mut body = PatternBody {
            pattern: pattern_buffer(),
            offset: 0,
            len,
        };
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut offset = 0u64;
        let mut chunks = 0;
        while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= CHUNK);
            for (i, byte) in data.iter().enumerate() {
                assert_eq!(*byte, pattern_byte(offset + i as u64));
            }
            offset += data.len() as u64;
            chunks += 1;
        }
        assert_eq!(offset, len);
        assert_eq!(chunks, 3);
        assert!(body.is_end_stream());
    }
}
