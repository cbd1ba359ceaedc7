//! [`ResumeLayer`] / [`Resume`]: the client side. Each attempt of a request
//! (the first, and every retry `tower::retry` sends) goes through
//! [`Resume::call`], which creates the upload resource on the first
//! attempt, and on a retry asks it how much arrived and sends only the rest.
//!
//! By role: this file is the layer and its service; `attempt.rs` is one
//! attempt (creation, offset query, append); `dialect.rs` builds the
//! draft's requests (interop version 8), the one place a new interop
//! version changes; `origin.rs` resolves the upload resource's URI.

mod attempt;
mod dialect;
mod origin;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::ResumeBody;
use crate::error::BoxError;
use crate::ReplayBody;
use attempt::attempt;

/// Bodies smaller than this are sent plainly by default: two extra round
/// trips would cost more than resending them.
const DEFAULT_MIN_SIZE: u64 = 1024 * 1024;

/// A layer that sends uploads resumably (draft-ietf-httpbis-resumable-upload,
/// see the [module docs](super)). Give it to
/// [`UploadLayer::resume`](crate::UploadLayer::resume), which stacks it
/// where it works; by hand it goes inside `RetryLayer`: `ReplayLayer` →
/// `RetryLayer(RetryPolicy)` → `ResumeLayer` → client. (Outside the
/// retries it compiles, and every retry resends an append the server
/// refuses.)
///
/// # Hazards
///
/// - The upload resource gets the original request's headers
///   (`Authorization`, cookies...) with every offset query and append: a
///   server names it in its answer to the creation, so by default it must
///   be on the request's origin (scheme, host and port), and an upload
///   resource elsewhere fails the request with
///   [`ErrorKind::Protocol`](crate::ErrorKind::Protocol), nothing sent
///   there. [`allow_cross_origin`](ResumeLayer::allow_cross_origin) lets
///   the body go where the server says, without the credentials.
#[derive(Debug, Clone, Copy)]
pub struct ResumeLayer {
    min_size: u64,
    cross_origin: bool,
}

impl Default for ResumeLayer {
    fn default() -> ResumeLayer {
        ResumeLayer::new()
    }
}

impl ResumeLayer {
    /// Resumes uploads of 1 MiB and more.
    pub fn new() -> ResumeLayer {
        ResumeLayer {
            min_size: DEFAULT_MIN_SIZE,
            cross_origin: false,
        }
    }

    /// Bodies shorter than `bytes` are sent as plain requests.
    pub fn min_size(mut self, bytes: u64) -> ResumeLayer {
        self.min_size = bytes;
        self
    }

    /// Whether to follow an upload resource on another origin than the
    /// request's (another scheme, host or port), off by default.
    ///
    /// On, the body goes where the server's `Location` says (a storage
    /// host of the same service, say), and the requests to it carry the
    /// original request's headers except `Authorization`, `Cookie` and
    /// `Proxy-Authorization` (as curl drops them on a redirect to another
    /// host). Whoever answers the creation then chooses where the body
    /// goes: turn it on only for servers trusted with that choice.
    pub fn allow_cross_origin(mut self, allow: bool) -> ResumeLayer {
        self.cross_origin = allow;
        self
    }
}

impl<S> Layer<S> for ResumeLayer {
    type Service = Resume<S>;

    fn layer(&self, inner: S) -> Resume<S> {
        Resume {
            inner,
            settings: *self,
        }
    }
}

/// The service of [`ResumeLayer`].
#[derive(Debug, Clone)]
pub struct Resume<S> {
    inner: S,
    settings: ResumeLayer,
}

impl<S> Resume<S> {
    /// The service inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The service inside.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What a response of a resumed upload carries in its extensions: where
/// the upload resource is, and the offset each append started at (`[0]`
/// when nothing was resumed; `[0, 734003200]` when the second attempt found
/// 700 MiB on the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The upload resource.
    pub location: Uri,
    /// The first byte of each append, in order.
    pub appends: Vec<u64>,
    /// The draft's interop version the upload was made in
    /// ([`INTEROP_VERSION`](super::INTEROP_VERSION)).
    pub interop_version: u64,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResB> Service<Request<ReplayBody<B>>> for Resume<S>
where
    S: Service<Request<ResumeBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: Body + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<ResB>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReplayBody<B>>) -> Self::Future {
        // The ready service goes into the future; a clone stays (tower's
        // rule for services that are called from a future).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(attempt(inner, req, self.settings))
    }
}
