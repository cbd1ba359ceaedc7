//! [`ResponseFuture`]: the inner service's future, whose response gets a
//! [`DownloadBody`].

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::plan::Plan;
use super::DownloadBody;
use crate::error::BoxError;

pin_project! {
    /// The future of [`ResumeDownload`](super::ResumeDownload): the inner
    /// service's response, its body a [`DownloadBody`]. The inner
    /// service's error is returned as it is.
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: F,
        plan: Option<Plan<B>>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn new(inner: F, plan: Option<Plan<B>>) -> ResponseFuture<F, B> {
        ResponseFuture { inner, plan }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("resumable", &self.plan.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<DownloadBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let (parts, body) = response.into_parts();
        let body = match this.plan.take() {
            Some(plan) => plan.body(&parts, body),
            None => DownloadBody::plain(body),
        };
        Poll::Ready(Ok(Response::from_parts(parts, body)))
    }
}
