//! [`ResumeDownload`]: the service of [`ResumeDownloadLayer`]. It keeps
//! what a range request needs (the request's method, URI, headers and
//! extensions, and a clone of the service) and hands it to the response's
//! [`DownloadBody`](super::DownloadBody).

use std::future::poll_fn;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Extensions, Method, Request, Response, Uri, Version};
use http_body::Body;
use tower_service::Service;

use super::plan::{BoxFuture, Plan, Refetch};
use super::{ResponseFuture, ResumeDownloadLayer};
use crate::error::BoxError;

/// The service made by [`ResumeDownloadLayer`]: answers a `GET` with a
/// [`DownloadBody`](super::DownloadBody) that resumes where its connection
/// dropped (see the [module docs](super)); any other request passes
/// through, its body wrapped and untouched.
#[derive(Debug, Clone)]
pub struct ResumeDownload<S> {
    inner: S,
    settings: ResumeDownloadLayer,
}

impl<S> ResumeDownload<S> {
    /// `inner` with the layer's `settings`.
    pub fn new(inner: S, settings: ResumeDownloadLayer) -> ResumeDownload<S> {
        ResumeDownload { inner, settings }
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

impl<S, ReqB, ResB> Service<Request<ReqB>> for ResumeDownload<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqB: Default + Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<super::DownloadBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let plan = (request.method() == Method::GET).then(|| {
            let again = Again {
                service: self.inner.clone(),
                method: request.method().clone(),
                uri: request.uri().clone(),
                version: request.version(),
                headers: request.headers().clone(),
                extensions: request.extensions().clone(),
                body: PhantomData,
            };
            Plan::new(Box::new(again), self.settings, &request)
        });
        ResponseFuture::new(self.inner.call(request), plan)
    }
}

/// The original request, to be sent again with other `Range` and
/// `If-Range` (and an empty body: a `GET` has none).
struct Again<S, ReqB> {
    service: S,
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    /// `fn() -> ReqB`: it makes bodies, it holds none (so `Send` whatever
    /// `ReqB` is).
    body: PhantomData<fn() -> ReqB>,
}

impl<S, ReqB, ResB> Refetch<ResB> for Again<S, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqB: Default + Send + 'static,
    ResB: Send + 'static,
{
    fn refetch(
        &mut self,
        range: HeaderValue,
        if_range: HeaderValue,
    ) -> BoxFuture<Result<Response<ResB>, BoxError>> {
        let mut request = Request::new(ReqB::default());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        *request.extensions_mut() = self.extensions.clone();
        let headers = request.headers_mut();
        headers.insert(header::RANGE, range);
        headers.insert(header::IF_RANGE, if_range);
        let mut service = self.service.clone();
        Box::pin(async move {
            poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            service.call(request).await.map_err(Into::into)
        })
    }
}
