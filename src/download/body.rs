//! [`DownloadBody`]: the first answer's body, then, each time it drops or
//! stalls, the body of a range request that continues it (checked by
//! [`continuation`](super::continuation)), as one body.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::continuation::Extent;
use super::plan::BoxFuture;
use super::resume_body::Resume;
use super::stall::Stall;
use crate::error::{BoxError, Error, ErrorKind};
#[cfg(feature = "progress")]
use crate::progress::Progress;

/// The response body of [`ResumeDownload`](super::ResumeDownload).
///
/// It yields the first answer's bytes; when that body fails (the
/// connection dropped), ends short of its length, or brings no byte for
/// the [stall timeout](super::ResumeDownloadLayer::stall_timeout), it sends the
/// request again with `Range: bytes=N-` and `If-Range`, checks that the
/// answer continues the same representation from byte N (see the [module
/// docs](super)), and goes on with its bytes. Its consumer sees one body:
/// no byte twice, none missing, none of another version: an answer that
/// is not the continuation ends it with
/// [`ErrorKind::Modified`].
///
/// `size_hint` is the first answer's length less the bytes handed out.
/// Errors are boxed: the inner body's own (when it cannot be resumed), or
/// an [`Error`] (find it with
/// [`Error::find_in`](crate::Error::find_in)).
///
/// It is `Send` (not `Sync`), and its timers are tokio's: poll it in a
/// tokio runtime with its time driver, as hyper-util's client needs.
pub struct DownloadBody<B> {
    pub(super) phase: Phase<B>,
    /// Bytes handed to the consumer.
    pub(super) delivered: u64,
    /// What the first answer carries, when it said (a resumable body).
    pub(super) extent: Option<Extent>,
    pub(super) stall: Option<Stall>,
    pub(super) resume: Option<Box<Resume<B>>>,
    #[cfg(feature = "progress")]
    pub(super) progress: Option<(Progress, u32)>,
}

pub(super) enum Phase<B> {
    Body(Pin<Box<B>>),
    /// The backoff (or `Retry-After`) before a range request.
    Wait(Pin<Box<Sleep>>),
    /// A range request, waiting for its answer's head.
    Ask(BoxFuture<Result<Response<B>, BoxError>>),
    Ended,
}

impl<B> DownloadBody<B> {
    /// The first answer's `body`, resumable when `resume` is given.
    pub(super) fn first(
        body: B,
        extent: Option<Extent>,
        resume: Option<Box<Resume<B>>>,
        stall_timeout: Option<Duration>,
        #[cfg(feature = "progress")] progress: Option<(Progress, u32)>,
    ) -> DownloadBody<B> {
        DownloadBody {
            phase: Phase::Body(Box::pin(body)),
            delivered: 0,
            extent,
            stall: stall_timeout.map(Stall::new),
            resume,
            #[cfg(feature = "progress")]
            progress,
        }
    }

    /// `body` passed through: not a `GET`, not a success.
    pub(crate) fn plain(body: B) -> DownloadBody<B>
    where
        B: Body,
    {
        DownloadBody {
            phase: Phase::Body(Box::pin(body)),
            delivered: 0,
            extent: None,
            stall: None,
            resume: None,
            #[cfg(feature = "progress")]
            progress: None,
        }
    }

    /// Where each range request started, in order: empty when the first
    /// answer's body went through whole (or could not be resumed).
    pub fn resumed_at(&self) -> &[u64] {
        self.resume.as_ref().map_or(&[], |r| &r.resumed_at)
    }

    /// Whether a drop of this body would be resumed: the answer to a `GET`
    /// was a `200` with a `Content-Length` or a `206` with a
    /// `Content-Range`, with a strong validator.
    pub fn is_resumable(&self) -> bool {
        self.resume.is_some()
    }

    /// Bytes handed out so far (of this body, not counting the offset a
    /// `206` began at).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Ends the body with `err`.
    pub(super) fn fail(
        &mut self,
        err: impl Into<BoxError>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.phase = Phase::Ended;
        Poll::Ready(Some(Err(err.into())))
    }
}

impl<B> Body for DownloadBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match &mut this.phase {
                Phase::Body(body) => match body.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            let len = data.len() as u64;
                            let total = this.delivered.saturating_add(len);
                            if let Some(extent) = this.extent.filter(|e| total > e.len()) {
                                return this.fail(Error::new(
                                    ErrorKind::Protocol,
                                    format!(
                                        "the server sent more than the {} bytes it announced",
                                        extent.len()
                                    ),
                                ));
                            }
                            this.delivered = total;
                            if let Some(stall) = &mut this.stall {
                                stall.touch();
                            }
                            #[cfg(feature = "progress")]
                            if let Some((progress, attempt)) = &this.progress {
                                progress.add(*attempt, len);
                            }
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Poll::Ready(Some(Err(err))) => {
                        if let Err(err) = this.dropped(err.into(), None) {
                            return this.fail(err);
                        }
                    }
                    Poll::Ready(None) => match this.extent {
                        Some(extent) if this.delivered < extent.len() => {
                            let short = Error::new(
                                ErrorKind::Io,
                                format!(
                                    "the body ended after {} of its {} bytes",
                                    this.delivered,
                                    extent.len()
                                ),
                            );
                            if let Err(err) = this.dropped(short.into(), None) {
                                return this.fail(err);
                            }
                        }
                        _ => {
                            this.phase = Phase::Ended;
                            return Poll::Ready(None);
                        }
                    },
                    Poll::Pending => {
                        if !this.stall.as_mut().is_some_and(|s| s.stalled(cx)) {
                            return Poll::Pending;
                        }
                        let err = this.stall_error();
                        if let Err(err) = this.dropped(err, None) {
                            return this.fail(err);
                        }
                    }
                },
                Phase::Wait(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.ask();
                }
                Phase::Ask(answer) => match answer.as_mut().poll(cx) {
                    Poll::Ready(Ok(response)) => {
                        if let Err(err) = this.answer(response) {
                            return this.fail(err);
                        }
                    }
                    Poll::Ready(Err(err)) => {
                        if let Err(err) = this.dropped(err, None) {
                            return this.fail(err);
                        }
                    }
                    Poll::Pending => {
                        if !this.stall.as_mut().is_some_and(|s| s.stalled(cx)) {
                            return Poll::Pending;
                        }
                        let err = this.stall_error();
                        if let Err(err) = this.dropped(err, None) {
                            return this.fail(err);
                        }
                    }
                },
                Phase::Ended => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.phase {
            Phase::Ended => true,
            Phase::Body(body) => {
                body.is_end_stream() && self.extent.is_none_or(|e| self.delivered >= e.len())
            }
            _ => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (self.extent, &self.phase) {
            (Some(extent), _) => SizeHint::with_exact(extent.len() - self.delivered),
            (None, Phase::Body(body)) => body.size_hint(),
            (None, Phase::Ended) => SizeHint::with_exact(0),
            (None, _) => SizeHint::default(),
        }
    }
}

impl<B> fmt::Debug for DownloadBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Body(_) => "body",
            Phase::Wait(_) => "waiting to resume",
            Phase::Ask(_) => "asking for the rest",
            Phase::Ended => "ended",
        };
        f.debug_struct("DownloadBody")
            .field("phase", &phase)
            .field("delivered", &self.delivered)
            .field("extent", &self.extent)
            .field("resumed_at", &self.resumed_at())
            .finish()
    }
}
