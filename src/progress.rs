//! Upload progress a person can watch: bytes sent of the total, per attempt,
//! starting again from zero when a retry sends the body again.
//!
//! A [`Progress`] is a cheap, shared handle. Give it to [`Progress::track`]
//! to count one body's bytes, or put it in the request's extensions and let
//! a [`TrackProgressLayer`] count each attempt. Placed inside `RetryLayer`, the
//! layer sees every attempt, so the figures restart honestly on a retry:
//!
//! ```no_run
//! use std::time::Duration;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use mmap_body::progress::{Progress, ProgressBody, TrackProgressLayer};
//! use mmap_body::{retry::RetryPolicy, MmapBody, ReplayBody, ReplayLayer, DEFAULT_MAX_REPLAY_BYTES};
//! use tower::{retry::RetryLayer, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = Client::builder(TokioExecutor::new())
//!     .build_http::<ProgressBody<ReplayBody<MmapBody>>>();
//! let service = ServiceBuilder::new()
//!     .layer(ReplayLayer::new(DEFAULT_MAX_REPLAY_BYTES))
//!     .layer(RetryLayer::new(RetryPolicy::default()))
//!     .layer(TrackProgressLayer::new()) // inside the retries: sees each attempt
//!     .service(client);
//!
//! // SAFETY: nothing truncates or rewrites the file while it is being sent.
//! let body = unsafe { MmapBody::open("big.iso")? };
//! let mut request = http::Request::put("http://127.0.0.1:3000/upload").body(body)?;
//! let progress = Progress::new();
//! request.extensions_mut().insert(progress.clone());
//! let upload = tokio::spawn(service.oneshot(request));
//!
//! while !upload.is_finished() {
//!     let percent = progress.fraction().unwrap_or(0.0) * 100.0;
//!     println!("attempt {}: {percent:.0}%", progress.attempt());
//!     tokio::time::sleep(Duration::from_millis(500)).await;
//! }
//! println!("{}", upload.await??.status());
//! # Ok(())
//! # }
//! ```
//!
//! # What is counted
//!
//! A byte counts once the HTTP client is done with the frame that carries
//! it: hyper and reqwest drop a frame once it is written to the socket
//! (over HTTP/2, once it left h2's send buffer, which flow control can keep
//! full for a while), so the figure follows what left the process, not
//! what the client was handed. A frame an attempt drops unwritten because
//! it failed counts too, but never into a later attempt. What the server
//! has read is only known when it answers.
//!
//! [`sent`](Progress::sent) is the current attempt's figure; a resumed
//! upload's attempt (a request with `Upload-Offset`, as
//! `ResumeLayer` sends: put `TrackProgressLayer` inside it)
//! starts at the offset the server holds, of the whole length.
//! [`sent_in_all`](Progress::sent_in_all) adds every attempt's bytes: what
//! the retries cost on the wire.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// A shared view of one request's upload: which attempt is being sent, how
/// many bytes of it have been handed to the client, and of how many.
///
/// Clones share the same figures. It is `Send + Sync`, and a read takes an
/// uncontended lock, so a UI thread can poll it as often as it likes.
#[derive(Debug, Clone)]
pub struct Progress {
    state: Arc<Mutex<State>>,
}

/// One lock for the three figures, so that bytes of an earlier attempt can
/// never be counted into a later one.
#[derive(Debug, Clone, Copy)]
struct State {
    attempt: u32,
    sent: u64,
    total: Option<u64>,
    /// Every attempt's bytes.
    sent_in_all: u64,
}

impl Default for Progress {
    fn default() -> Progress {
        Progress::new()
    }
}

impl Progress {
    /// A handle for an upload that has not started: attempt 0, nothing sent.
    pub fn new() -> Progress {
        Progress {
            state: Arc::new(Mutex::new(State {
                attempt: 0,
                sent: 0,
                total: None,
                sent_in_all: 0,
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The figures are plain numbers: a panic elsewhere cannot leave them
        // half-written, so a poisoned lock is still good to read.
        crate::sync::lock(&self.state)
    }

    /// The attempt being sent: 1 for the first, 2 for the first retry...;
    /// 0 before any started.
    pub fn attempt(&self) -> u32 {
        self.state().attempt
    }

    /// Bytes of the current attempt the client is done with (see
    /// [What is counted](self#what-is-counted)); for a resumed attempt,
    /// counted from the offset it resumed at.
    pub fn sent(&self) -> u64 {
        self.state().sent
    }

    /// The current attempt's size, when the body knows it exactly (an
    /// [`MmapBody`](crate::MmapBody), a `Full`, a body with a
    /// `Content-Length`); for a resumed attempt, the whole upload's.
    pub fn total(&self) -> Option<u64> {
        self.state().total
    }

    /// Bytes of every attempt so far, the failed ones included: what the
    /// upload cost on the wire.
    pub fn sent_in_all(&self) -> u64 {
        self.state().sent_in_all
    }

    /// `sent / total` between 0.0 and 1.0, when the total is known (an
    /// empty body is complete: 1.0).
    pub fn fraction(&self) -> Option<f64> {
        let State { sent, total, .. } = *self.state();
        match total? {
            0 => Some(1.0),
            total => Some(sent.min(total) as f64 / total as f64),
        }
    }

    /// Starts a new attempt with `body`: the attempt number goes up by one,
    /// `sent` goes back to 0 and `total` becomes the body's exact size (or
    /// unknown). Bytes of an earlier attempt's body that is still being
    /// polled are no longer counted.
    pub fn track<B: Body>(&self, body: B) -> ProgressBody<B> {
        self.track_from(0, body)
    }

    /// [`track`](Progress::track) for an attempt that sends the upload from
    /// byte `offset` on (a resumed upload): `sent` starts at `offset` and
    /// `total` is `offset` plus the body's size.
    pub fn track_from<B: Body>(&self, offset: u64, body: B) -> ProgressBody<B> {
        let total = body
            .size_hint()
            .exact()
            .map(|len| len.saturating_add(offset));
        let attempt = {
            let mut state = self.state();
            state.attempt = state.attempt.saturating_add(1);
            state.sent = offset;
            state.total = total;
            state.attempt
        };
        ProgressBody {
            body,
            progress: Some((self.clone(), attempt)),
        }
    }

    /// Starts a new attempt that goes on from byte `offset` of `total`
    /// without a body to wrap (a resumed download counts the bytes it
    /// hands out itself); returns the attempt's number for [`add`](Self::add).
    #[cfg(feature = "download")]
    pub(crate) fn begin(&self, offset: u64, total: Option<u64>) -> u32 {
        let mut state = self.state();
        state.attempt = state.attempt.saturating_add(1);
        state.sent = offset;
        state.total = total;
        state.attempt
    }

    pub(crate) fn add(&self, attempt: u32, bytes: u64) {
        let mut state = self.state();
        state.sent_in_all = state.sent_in_all.saturating_add(bytes);
        if state.attempt == attempt {
            state.sent = state.sent.saturating_add(bytes);
        }
    }
}

/// A frame's bytes, counted into its attempt when the client drops them.
struct Written {
    data: Bytes,
    progress: Progress,
    attempt: u32,
}

impl AsRef<[u8]> for Written {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        self.progress.add(self.attempt, self.data.len() as u64);
    }
}

pin_project! {
    /// A body that counts its data bytes into a [`Progress`] when the
    /// client is done with each frame (see [What is
    /// counted](self#what-is-counted)): each data frame is the same bytes
    /// (no copy) under an owner that counts them when dropped. Everything
    /// else (trailers, `size_hint`, errors) is the inner body's.
    #[derive(Debug)]
    pub struct ProgressBody<B> {
        #[pin]
        body: B,
        progress: Option<(Progress, u32)>,
    }
}

impl<B> ProgressBody<B> {
    /// Passes `body` through without counting (a request that carried no
    /// [`Progress`] through a [`TrackProgressLayer`]).
    pub fn untracked(body: B) -> ProgressBody<B> {
        ProgressBody {
            body,
            progress: None,
        }
    }

    /// The body inside.
    pub fn into_inner(self) -> B {
        self.body
    }
}

impl<B: Body<Data = Bytes>> Body for ProgressBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        let Some((progress, attempt)) = this.progress else {
            return polled;
        };
        polled.map(|frame| {
            frame.map(|frame| {
                frame.map(|frame| {
                    frame.map_data(|data| {
                        if data.is_empty() {
                            return data;
                        }
                        Bytes::from_owner(Written {
                            data,
                            progress: progress.clone(),
                            attempt: *attempt,
                        })
                    })
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A Tower layer that counts each request's upload into the [`Progress`]
/// found in its extensions (and passes requests without one through).
///
/// Put it inside `RetryLayer`, so that it sees every attempt. It builds a
/// [`TrackProgress`] (the service is named for what the layer does, as
/// `ReplayLayer` builds `Replay`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackProgressLayer {
    _private: (),
}

impl TrackProgressLayer {
    /// The layer.
    pub fn new() -> TrackProgressLayer {
        TrackProgressLayer { _private: () }
    }
}

impl<S> tower_layer::Layer<S> for TrackProgressLayer {
    type Service = TrackProgress<S>;

    fn layer(&self, inner: S) -> TrackProgress<S> {
        TrackProgress::new(inner)
    }
}

/// The service made by [`TrackProgressLayer`]: wraps each request body in
/// a [`ProgressBody`] counting into the request's [`Progress`].
#[derive(Debug, Clone)]
pub struct TrackProgress<S> {
    inner: S,
}

impl<S> TrackProgress<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> TrackProgress<S> {
        TrackProgress { inner }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> tower_service::Service<http::Request<B>> for TrackProgress<S>
where
    S: tower_service::Service<http::Request<ProgressBody<B>>>,
    B: Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> S::Future {
        let progress = request.extensions().get::<Progress>().cloned();
        // A resumed upload's append says where its content starts.
        let offset = request
            .headers()
            .get("upload-offset")
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let request = request.map(|body| match &progress {
            Some(progress) => progress.track_from(offset, body),
            None => ProgressBody::untracked(body),
        });
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn assert_traits<T: Send + Sync + Unpin + Clone + 'static>() {}

    #[test]
    fn handle_and_body_are_send_sync() {
        assert_traits::<Progress>();
        fn body<T: Send + Sync + Unpin>() {}
        body::<ProgressBody<Full<Bytes>>>();
    }

    #[tokio::test]
    async fn counts_each_attempt_from_zero() {
        let progress = Progress::new();
        assert_eq!(
            (progress.attempt(), progress.sent(), progress.total()),
            (0, 0, None)
        );

        let first = progress.track(Full::new(Bytes::from_static(b"0123456789")));
        assert_eq!((progress.attempt(), progress.total()), (1, Some(10)));
        assert_eq!(progress.fraction(), Some(0.0));
        first.collect().await.unwrap();
        assert_eq!(progress.sent(), 10);
        assert_eq!(progress.fraction(), Some(1.0));

        // A stale body of attempt 2 still polled during attempt 3 is not
        // counted into it, only into the total of all attempts.
        let frames = [Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(
            "abc",
        )))];
        let stale = progress.track(StreamBody::new(futures_util::stream::iter(frames)));
        assert_eq!((progress.attempt(), progress.total()), (2, None));
        let third = progress.track(Full::new(Bytes::from_static(b"xy")));
        stale.collect().await.unwrap();
        assert_eq!((progress.attempt(), progress.sent()), (3, 0));
        third.collect().await.unwrap();
        assert_eq!((progress.sent(), progress.total()), (2, Some(2)));
        assert_eq!(progress.sent_in_all(), 10 + 3 + 2);
    }

    #[tokio::test]
    async fn a_frame_counts_when_the_client_drops_it() {
        let progress = Progress::new();
        let mut body = progress.track(Full::new(Bytes::from_static(b"0123456789")));
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&frame[..], b"0123456789", "the same bytes");
        assert_eq!(progress.sent(), 0, "handed over, not written yet");
        let part = frame.slice(2..4);
        drop(frame);
        assert_eq!(progress.sent(), 0, "a slice still holds the frame");
        drop(part);
        assert_eq!(progress.sent(), 10);
    }

    #[tokio::test]
    async fn a_resumed_attempt_starts_at_its_offset() {
        let progress = Progress::new();
        let tail = progress.track_from(700, Full::new(Bytes::from_static(b"0123456789")));
        assert_eq!((progress.sent(), progress.total()), (700, Some(710)));
        tail.collect().await.unwrap();
        assert_eq!((progress.sent(), progress.fraction()), (710, Some(1.0)));
        assert_eq!(progress.sent_in_all(), 10);
    }
}
