//! A request body that can be sent more than once, for retries and hedges.
//!
//! The client's body is read once, as the first attempt sends it, and each chunk is kept (up
//! to a limit) so a later attempt can send the same bytes again. Nothing waits for the whole
//! body up front: a streaming upload or a gRPC stream flows to the first attempt as usual.
//! Each attempt gets its own [`ReplayBody`]; the newest attempt replays the kept chunks and
//! then goes on reading the client, so a retry after a connect failure (when the first attempt
//! read nothing) works for a body of any size. Once more than `limit` bytes were read, the kept
//! chunks are dropped and no further attempt can be made.
//!
//! One attempt reads the client at a time: making a new attempt retires the older ones, which
//! can still replay what was kept but fail if they need more of the client's body. A lock
//! guards the shared state; it is only ever taken inside `poll_frame`, never across an await.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use weir_core::BoxError;

use crate::ProxyBody;

/// The client's body, shared by every attempt of one request.
#[derive(Debug, Clone)]
pub(crate) struct Replay {
    shared: Arc<Mutex<State>>,
    size_hint: SizeHint,
}

/// One attempt's view of the body.
#[derive(Debug)]
pub(crate) struct ReplayBody {
    shared: Arc<Mutex<State>>,
    generation: u32,
    /// The next kept chunk this attempt sends.
    next: usize,
    trailers_sent: bool,
    size_hint: SizeHint,
}

struct State {
    /// The client's body, read by the newest attempt.
    source: ProxyBody,
    /// Everything read so far, while it fits in `limit`.
    kept: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    read: u64,
    limit: u64,
    /// More than `limit` bytes were read: the kept chunks are gone.
    overflowed: bool,
    /// The client's body has ended.
    ended: bool,
    /// The newest attempt; only it reads the client.
    generation: u32,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("read", &self.read)
            .field("overflowed", &self.overflowed)
            .field("ended", &self.ended)
            .field("generation", &self.generation)
            .finish()
    }
}

// === impl Replay ===

impl Replay {
    /// Keeps up to `limit` bytes of `source` for replays.
    pub(crate) fn new(source: ProxyBody, limit: u64) -> Self {
        let size_hint = source.size_hint();
        Self {
            shared: Arc::new(Mutex::new(State {
                source,
                kept: Vec::new(),
                trailers: None,
                read: 0,
                limit,
                overflowed: false,
                ended: false,
                generation: 0,
            })),
            size_hint,
        }
    }

    /// The body for a new attempt, or `None` when the body can no longer be replayed. Older
    /// attempts stop reading the client from now on.
    pub(crate) fn attempt(&self) -> Option<ProxyBody> {
        let generation = {
            let mut state = self.shared.lock();
            if state.overflowed {
                return None;
            }
            state.generation += 1;
            state.generation
        };
        Some(
            ReplayBody {
                shared: Arc::clone(&self.shared),
                generation,
                next: 0,
                trailers_sent: false,
                size_hint: self.size_hint,
            }
            .boxed_unsync(),
        )
    }

    /// Whether a new attempt could still be made.
    pub(crate) fn can_replay(&self) -> bool {
        !self.shared.lock().overflowed
    }

    /// Whether the whole body has been read and kept, so attempts in parallel are safe.
    pub(crate) fn is_complete(&self) -> bool {
        let state = self.shared.lock();
        state.ended && !state.overflowed
    }
}

// === impl ReplayBody ===

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut state = this.shared.lock();
        if let Some(chunk) = state.kept.get(this.next) {
            this.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        if state.ended {
            if !this.trailers_sent
                && let Some(t) = &state.trailers
            {
                this.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(t.clone()))));
            }
            return Poll::Ready(None);
        }
        if state.generation != this.generation {
            // A newer attempt owns the client's body.
            return Poll::Ready(Some(Err("request body handed to a newer attempt".into())));
        }
        let polled = Pin::new(&mut state.source).poll_frame(cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                state.ended = true;
                drop(state);
                self.poll_frame(cx)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(data) => {
                        state.read += data.len() as u64;
                        if state.read > state.limit {
                            state.overflowed = true;
                            state.kept = Vec::new();
                        } else {
                            state.kept.push(data.clone());
                            this.next = state.kept.len();
                        }
                        Frame::data(data)
                    }
                    Err(frame) => match frame.into_trailers() {
                        Ok(trailers) => {
                            state.trailers = Some(trailers.clone());
                            state.ended = true;
                            this.trailers_sent = true;
                            Frame::trailers(trailers)
                        }
                        Err(other) => other,
                    },
                };
                if state.source.is_end_stream() {
                    state.ended = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let state = self.shared.lock();
        state.ended
            && self.next >= state.kept.len()
            && (self.trailers_sent || state.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        self.size_hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(parts: &[&'static str]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    async fn read(body: ProxyBody) -> Result<Bytes, BoxError> {
        Ok(body.collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn every_attempt_sends_the_same_bytes() {
        let replay = Replay::new(chunks(&["ab", "cd", "ef"]), 1024);
        let first = read(replay.attempt().unwrap()).await.unwrap();
        let second = read(replay.attempt().unwrap()).await.unwrap();
        assert_eq!(first, "abcdef");
        assert_eq!(second, "abcdef");
        assert!(replay.is_complete());
    }

    #[tokio::test]
    async fn an_attempt_that_read_nothing_leaves_the_whole_body_to_the_next() {
        let replay = Replay::new(chunks(&["x"; 100]), 10);
        drop(replay.attempt().unwrap());
        let next = read(replay.attempt().unwrap()).await.unwrap();
        assert_eq!(
            next.len(),
            100,
            "nothing was read, so any size can be sent once"
        );
        assert!(!replay.can_replay(), "past the limit, no further attempt");
        assert!(replay.attempt().is_none());
    }

    #[tokio::test]
    async fn a_retry_after_a_partial_read_replays_then_continues() {
        let replay = Replay::new(chunks(&["12", "34", "56"]), 1024);
        let mut first = replay.attempt().unwrap();
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "12");
        let second = replay.attempt().unwrap();
        // The retired attempt may not read further from the client.
        assert!(first.frame().await.unwrap().is_err());
        assert_eq!(read(second).await.unwrap(), "123456");
    }

    #[tokio::test]
    async fn trailers_are_replayed() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"msg"))),
            Ok(Frame::trailers(trailers)),
        ];
        let replay = Replay::new(
            StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync(),
            1024,
        );
        for _ in 0..2 {
            let collected = replay.attempt().unwrap().collect().await.unwrap();
            assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
            assert_eq!(collected.to_bytes(), "msg");
        }
    }

    #[tokio::test]
    async fn a_complete_body_ends_without_an_extra_poll() {
        let replay = Replay::new(full("hello"), 1024);
        assert_eq!(read(replay.attempt().unwrap()).await.unwrap(), "hello");
        let again = replay.attempt().unwrap();
        assert!(!again.is_end_stream());
        assert_eq!(read(again).await.unwrap(), "hello");
    }
}
