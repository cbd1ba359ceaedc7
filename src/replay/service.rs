//! [`Replay`]: the service, where the `Content-Length` rules live.

use std::task::{Context, Poll};

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body::Body;
use tower_service::Service;

use super::content_length::{settle_content_length, BodySize};
use super::spill::SpillConfig;
use super::{ReplayBody, ResponseFuture};
use crate::error::BoxError;

/// Sets `Content-Length` from each request body's exact size, refuses
/// requests whose `Content-Length` disagrees with their body, and wraps
/// each body in a [`ReplayBody`] so the request can be cloned and sent again.
///
/// Made by [`ReplayLayer`](super::ReplayLayer); see the
/// [module docs](crate::replay) for the rules.
#[derive(Debug, Clone)]
pub struct Replay<S> {
    inner: S,
    max_replay_bytes: usize,
    spill: Option<Arc<SpillConfig>>,
}

impl<S> Replay<S> {
    /// Wraps `inner`, recording at most `max_replay_bytes` of each streamed
    /// request body.
    pub fn new(inner: S, max_replay_bytes: usize) -> Replay<S> {
        Replay {
            inner,
            max_replay_bytes,
            spill: None,
        }
    }

    /// A [`ReplayLayer`](super::ReplayLayer) that records at most
    /// `max_replay_bytes` of each streamed request body, as tower-http's
    /// services offer their layers
    /// (`Replay::layer(DEFAULT_MAX_REPLAY_BYTES)`).
    pub fn layer(max_replay_bytes: usize) -> super::ReplayLayer {
        super::ReplayLayer::new(max_replay_bytes)
    }

    /// Past the in-memory cap, keeps recording each streamed body into a
    /// temp file, up to `max_bytes` in all: as
    /// [`ReplayLayer::spill_to_disk`](super::ReplayLayer::spill_to_disk).
    #[cfg(feature = "spill")]
    #[cfg_attr(docsrs, doc(cfg(feature = "spill")))]
    pub fn spill_to_disk(mut self, max_bytes: u64) -> Replay<S> {
        Arc::make_mut(self.spill.get_or_insert_with(Arc::default)).max_bytes = Some(max_bytes);
        self
    }

    /// Where spill files go: as
    /// [`ReplayLayer::spill_dir`](super::ReplayLayer::spill_dir).
    #[cfg(feature = "spill")]
    #[cfg_attr(docsrs, doc(cfg(feature = "spill")))]
    pub fn spill_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Replay<S> {
        Arc::make_mut(self.spill.get_or_insert_with(Arc::default)).dir = Some(dir.into());
        self
    }

    pub(super) fn with_spill(mut self, spill: Option<Arc<SpillConfig>>) -> Replay<S> {
        self.spill = spill;
        self
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

impl<S, B> Service<Request<B>> for Replay<S>
where
    S: Service<Request<ReplayBody<B>>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let size = BodySize {
            hint: body.size_hint(),
            ended: body.is_end_stream(),
        };
        match settle_content_length(&mut parts.headers, &parts.method, &size) {
            Ok(expected) => {
                let body = ReplayBody::with_spill(body, self.max_replay_bytes, self.spill.clone())
                    .expect_len(expected);
                let outcome = body.outcome();
                ResponseFuture::called(self.inner.call(Request::from_parts(parts, body)), outcome)
            }
            Err(err) => {
                crate::trace::trace_event!(
                    target: "mmap_body::replay",
                    tracing::Level::WARN,
                    method = %parts.method,
                    uri = %parts.uri,
                    error = %err,
                    "request refused for its length"
                );
                ResponseFuture::refused(err)
            }
        }
    }
}
