//! Minimal hyper clients over one TCP connection, so tests control connection reuse exactly.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// Request body type every test client sends.
pub(crate) type ReqBody = BoxBody<Bytes, std::io::Error>;

/// One client connection, HTTP/1.1 or HTTP/2 prior knowledge.
pub(crate) struct Conn {
    addr: SocketAddr,
    sender: Sender,
}

/// The version-specific half of [`Conn`].
enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

impl Conn {
    /// Opens a connection to `addr` speaking `version`; also returns the connection driver task,
    /// which ends when the connection closes.
    pub(crate) async fn open(addr: SocketAddr, version: Version) -> (Self, JoinHandle<()>) {
        let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        if version == Version::HTTP_2 {
            let (send, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            (
                Self {
                    addr,
                    sender: Sender::H2(send),
                },
                driver,
            )
        } else {
            let (send, conn) = http1::handshake(io).await.unwrap();
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            (
                Self {
                    addr,
                    sender: Sender::H1(send),
                },
                driver,
            )
        }
    }

    /// Another handle on the same HTTP/2 connection, for concurrent streams.
    pub(crate) fn clone_h2(&self) -> Self {
        match &self.sender {
            Sender::H2(send) => Self {
                addr: self.addr,
                sender: Sender::H2(send.clone()),
            },
            Sender::H1(_) => panic!("an HTTP/1.1 connection carries one request at a time"),
        }
    }

    /// Sends `req` and returns the response head with its streaming body.
    pub(crate) async fn send(
        &mut self,
        req: Request<ReqBody>,
    ) -> hyper::Result<Response<Incoming>> {
        match &mut self.sender {
            Sender::H1(send) => {
                send.ready().await?;
                send.send_request(req).await
            }
            Sender::H2(send) => {
                let mut send = send.clone();
                send.ready().await?;
                send.send_request(req).await
            }
        }
    }

    /// A request for `path`: origin-form with `Host` over HTTP/1.1, absolute-form over HTTP/2
    /// (which needs `:scheme` and `:authority`).
    pub(crate) fn request(&self, method: Method, path: &str, body: ReqBody) -> Request<ReqBody> {
        let builder = match self.sender {
            Sender::H1(_) => Request::builder()
                .uri(path)
                .header(http::header::HOST, self.addr.to_string()),
            Sender::H2(_) => Request::builder()
                .uri(format!("http://{}{path}", self.addr))
                .version(Version::HTTP_2),
        };
        builder.method(method).body(body).unwrap()
    }

    /// `GET path` with an empty body, collected.
    pub(crate) async fn get(&mut self, path: &str) -> (Response<()>, Bytes) {
        let req = self.request(Method::GET, path, empty());
        let resp = self.send(req).await.unwrap();
        collect(resp).await
    }
}

/// An empty request body.
pub(crate) fn empty() -> ReqBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A fixed request body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ReqBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A request body fed chunk by chunk through the returned sender; dropping it ends the body.
pub(crate) fn channel_body() -> (mpsc::Sender<Bytes>, ReqBody) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let frames = ReceiverStream::new(rx).map(|chunk| Ok(Frame::data(chunk)));
    (tx, StreamBody::new(frames).boxed())
}

/// Splits a response into its head and its whole body.
pub(crate) async fn collect(resp: Response<Incoming>) -> (Response<()>, Bytes) {
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, ()), bytes)
}

/// The value of header `name` as a string.
pub(crate) fn header<'a, B>(resp: &'a Response<B>, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}
