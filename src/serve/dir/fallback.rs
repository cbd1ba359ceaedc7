//! The fallback services' types: [`DefaultServeDirFallback`] (none) and
//! [`SetStatus`], what [`ServeDir::not_found_service`] wraps a fallback in.
//!
//! [`ServeDir::not_found_service`]: super::ServeDir::not_found_service

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use crate::serve::ServeBody;

/// The fallback of a [`ServeDir`](super::ServeDir) that has none: a type
/// with no value, as tower-http's of the same name.
#[derive(Debug, Clone, Copy)]
pub struct DefaultServeDirFallback(Infallible);

impl<ReqBody> Service<Request<ReqBody>> for DefaultServeDirFallback {
    type Response = Response<ServeBody>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<ServeBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self.0 {}
    }

    fn call(&mut self, _request: Request<ReqBody>) -> Self::Future {
        match self.0 {}
    }
}

/// A service whose answers all get one status: what
/// [`ServeDir::not_found_service`](super::ServeDir::not_found_service)
/// makes of its fallback (`404 Not Found`), as tower-http's `SetStatus`.
#[derive(Debug, Clone, Copy)]
pub struct SetStatus<S> {
    inner: S,
    status: StatusCode,
}

impl<S> SetStatus<S> {
    /// `inner`, whose answers get `status`.
    pub fn new(inner: S, status: StatusCode) -> SetStatus<S> {
        SetStatus { inner, status }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, to change.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service back.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SetStatus<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = SetStatusFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        SetStatusFuture {
            inner: self.inner.call(request),
            status: self.status,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`SetStatus`].
    #[derive(Debug)]
    pub struct SetStatusFuture<F> {
        #[pin]
        inner: F,
        status: StatusCode,
    }
}

impl<F, B, E> Future for SetStatusFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        *response.status_mut() = *this.status;
        Poll::Ready(Ok(response))
    }
}
