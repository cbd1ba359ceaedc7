//! [`ResumeBody`]: the body of every request [`Resume`](super::Resume)
//! sends below it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::error::{BoxError, Error};
use crate::ReplayBody;

/// The body of each request [`ResumeLayer`](super::ResumeLayer) sends to
/// the service below it: the original request (sent plainly), the upload's
/// creation, an offset query or an append. Its bytes are its
/// [`ReplayBody`]'s.
///
/// It is a type of its own so that a wrong stack does not compile:
/// [`RetryPolicy`](crate::retry::RetryPolicy) retries requests of
/// `ReplayBody`s only, so a `RetryLayer` below the `ResumeLayer` (where
/// every retry would resend an append the server then refuses) is a type
/// error, not a failure at run time. [`UploadLayer`](crate::UploadLayer)
/// stacks both in the order that works.
///
/// By hand, the retries outside the resumed appends compile:
///
/// ```
/// # use hyper_util::{client::legacy::Client, rt::TokioExecutor};
/// # use mmap_body::{resume::ResumeLayer, retry::RetryPolicy, MmapBody, ReplayLayer};
/// # use tower::{retry::RetryLayer, Service, ServiceBuilder};
/// # fn check<S: Service<http::Request<MmapBody>>>(_: S) {}
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let stack = ServiceBuilder::new()
///     .layer(ReplayLayer::new(64 * 1024))
///     .layer(RetryLayer::new(RetryPolicy::default()))
///     .layer(ResumeLayer::new())
///     .service(Client::builder(TokioExecutor::new()).build_http());
/// check(stack);
/// # }
/// ```
///
/// and the other way round do not:
///
/// ```compile_fail
/// # use hyper_util::{client::legacy::Client, rt::TokioExecutor};
/// # use mmap_body::{resume::ResumeLayer, retry::RetryPolicy, MmapBody, ReplayLayer};
/// # use tower::{retry::RetryLayer, Service, ServiceBuilder};
/// # fn check<S: Service<http::Request<MmapBody>>>(_: S) {}
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let stack = ServiceBuilder::new()
///     .layer(ReplayLayer::new(64 * 1024))
///     .layer(ResumeLayer::new())
///     .layer(RetryLayer::new(RetryPolicy::default()))
///     .service(Client::builder(TokioExecutor::new()).build_http());
/// check(stack); // RetryPolicy: Policy<Request<ResumeBody<MmapBody>>, ..> is not satisfied
/// # }
/// ```
#[derive(Debug)]
pub struct ResumeBody<B> {
    inner: ReplayBody<B>,
}

impl<B> ResumeBody<B> {
    pub(super) fn new(inner: ReplayBody<B>) -> ResumeBody<B> {
        ResumeBody { inner }
    }

    /// The replayable body inside.
    pub fn get_ref(&self) -> &ReplayBody<B> {
        &self.inner
    }

    /// The replayable body inside.
    pub fn into_inner(self) -> ReplayBody<B> {
        self.inner
    }
}

impl<B> Body for ResumeBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    fn assert_traits<T: Send + Sync + Unpin>() {}

    #[tokio::test]
    async fn it_is_its_replay_body() {
        assert_traits::<ResumeBody<Full<Bytes>>>();
        let body = ResumeBody::new(ReplayBody::new(Full::new(Bytes::from("abc")), 0));
        assert_eq!(body.size_hint().exact(), Some(3));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
    }
}
