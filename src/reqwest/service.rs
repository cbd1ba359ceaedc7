//! [`ReqwestService`]: the tower stack of this crate on a `reqwest::Client`.
//!
//! reqwest 0.13 can send an [`MmapBody`](crate::MmapBody) two ways, and each
//! gives something up. `reqwest::Body::from(Bytes::from(body))` is one
//! zero-copy `Bytes` with an exact length that reqwest can clone for its own
//! retries, but every page of the file stays resident until the request is
//! dropped, and the checks for a file changed under the mapping are gone.
//! `reqwest::Body::wrap(body)` keeps the length, the page release and the
//! checks, but reqwest never retries it: its `try_clone` only clones
//! in-memory bodies.
//!
//! [`ReqwestService`] is a `tower::Service<http::Request<B>>` that sends
//! each request through a `reqwest::Client`, its body through
//! `reqwest::Body::wrap`. Stacked under [`ReplayLayer`], `RetryLayer` with
//! [`RetryPolicy`] and [`TrackProgressLayer`], every attempt sends its own clone
//! of the body, so a reqwest upload keeps all of it:
//!
//! ```no_run
//! use mmap_body::progress::{Progress, TrackProgressLayer};
//! use mmap_body::reqwest::ReqwestService;
//! use mmap_body::{retry::RetryPolicy, MmapBody, ReplayLayer, DEFAULT_MAX_REPLAY_BYTES};
//! use tower::{retry::RetryLayer, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = reqwest::Client::new();
//! let service = ServiceBuilder::new()
//!     .layer(ReplayLayer::new(DEFAULT_MAX_REPLAY_BYTES)) // outside: makes requests cloneable
//!     .layer(RetryLayer::new(RetryPolicy::default())) // clones and retries
//!     .layer(TrackProgressLayer::new()) // inside the retries: counts each attempt
//!     .service(ReqwestService::new(client));
//!
//! // SAFETY: nothing truncates or rewrites the file while it is being sent.
//! let body = unsafe { MmapBody::open("big.iso")? };
//! let mut request = http::Request::put("http://127.0.0.1:3000/upload").body(body)?;
//! let progress = Progress::new();
//! request.extensions_mut().insert(progress.clone());
//! let response = service.oneshot(request).await?;
//! println!("{} after {} attempt(s)", response.status(), progress.attempt());
//! # Ok(())
//! # }
//! ```
//!
//! # Which reqwest path to take
//!
//! | | `Body::from(Bytes::from(body))` | `Body::wrap(body)` | `ReqwestService` behind the layers |
//! |---|---|---|---|
//! | zero-copy | yes | yes | yes |
//! | exact `Content-Length` | yes | yes (from `size_hint`) | yes (set by `ReplayLayer`, checked while sent) |
//! | resident memory | every page sent stays resident until the `Bytes` is dropped (the whole file) | pages sent are given back | pages sent are given back |
//! | a file changed while sent | not checked: the caller's promise must hold while the `Bytes` lives | the body fails with `Truncated` / `Modified` (in the error chain over HTTP/1.1; over HTTP/2 the caller sees a reset stream) | `Truncated` / `Modified`, over HTTP/2 too, never retried |
//! | retries | reqwest's own: by default only protocol NACKs (HTTP/2 `REFUSED_STREAM`); with `ClientBuilder::retry`, statuses too, but no backoff and no `Retry-After` | none: reqwest cannot clone it | [`RetryPolicy`]: dropped connections and 502/503/504/429, exponential backoff with jitter, `Retry-After`, a budget, idempotent methods only |
//! | progress per attempt | no | by hand ([`Progress::track`]) | [`TrackProgressLayer`], from zero at each attempt |
//!
//! # Errors
//!
//! The service fails with a boxed `reqwest::Error`, whose source chain
//! keeps hyper-util's and hyper's errors and, over HTTP/1.1, the body's
//! when the body failed. So [`RetryPolicy`] still retries a refused or
//! dropped connection, and never retries a body that failed for good (a
//! file changed under the mapping, a length mismatch): it finds this
//! crate's [`Error`](crate::Error) in the chain, and the [`ReplayBody`]
//! that failed is no longer replayable either way. Over HTTP/2 hyper only
//! reports a reset stream for a failed body; behind [`ReplayLayer`] the
//! caller still gets the body's error first, with reqwest's as its source.
//! [`Error::find_in`](crate::Error::find_in) finds it in both cases.
//!
//! # Hazards
//!
//! - `reqwest::Body::wrap` needs a body that is `Send + Sync`. A body that
//!   is only `Send` (axum's `Body`, for one) goes through [`ReplayLayer`]
//!   first: [`ReplayBody`] is `Sync` for any `Send` body, so an axum proxy
//!   can forward its incoming body with `ReqwestService` (as
//!   `proxy::ReverseProxy::builder(..).build_with(ReqwestService::new(..))`
//!   does).
//! - reqwest's own `Client` settings still apply to each attempt: a
//!   `timeout` on the client is per attempt here, not for the whole retried
//!   request. Put a `tower::timeout` outside `RetryLayer` for that.
//! - reqwest's own retries (`ClientBuilder::retry`) never see these bodies
//!   (they cannot clone them); the policy here is the only one that runs.
//!
//! [`ReplayLayer`]: crate::ReplayLayer
//! [`ReplayBody`]: crate::ReplayBody
//! [`RetryPolicy`]: crate::retry::RetryPolicy
//! [`TrackProgressLayer`]: crate::progress::TrackProgressLayer
//! [`Progress::track`]: crate::progress::Progress::track

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::BoxError;

/// A tower `Service<http::Request<B>>` over a [`reqwest::Client`]: each
/// request's body is sent through [`reqwest::Body::wrap`], so the stack of
/// this crate (`ReplayLayer`, `RetryLayer` with `RetryPolicy`,
/// `TrackProgressLayer`) works on reqwest as on hyper-util.
///
/// It is as cheap to clone as the `Client` it wraps (a reference count),
/// and shares its connection pool. See the [module docs](self) for the
/// stack and for what each reqwest path gives and loses.
#[derive(Debug, Clone)]
pub struct ReqwestService {
    client: ::reqwest::Client,
}

impl ReqwestService {
    /// Sends requests through `client`, with its connection pool, proxy,
    /// TLS and timeout settings.
    pub fn new(client: ::reqwest::Client) -> ReqwestService {
        ReqwestService { client }
    }

    /// The wrapped client.
    pub fn get_ref(&self) -> &::reqwest::Client {
        &self.client
    }

    /// Unwraps the client.
    pub fn into_inner(self) -> ::reqwest::Client {
        self.client
    }
}

impl From<::reqwest::Client> for ReqwestService {
    fn from(client: ::reqwest::Client) -> ReqwestService {
        ReqwestService::new(client)
    }
}

/// reqwest's response future. Its type (`reqwest`'s `Pending`) is not
/// exported by name, but it is the `Future` of reqwest's own
/// `Service<reqwest::Request>` impl, which names it without boxing it again.
type Pending = <::reqwest::Client as Service<::reqwest::Request>>::Future;

impl<B> Service<http::Request<B>> for ReqwestService
where
    B: Body + Send + Sync + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<::reqwest::Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Service::<::reqwest::Request>::poll_ready(&mut self.client, cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> ResponseFuture {
        // `wrap` keeps the body's `size_hint`, so hyper sends the exact
        // `Content-Length` of an `MmapBody` (or `ReplayLayer`'s header).
        let request = request.map(::reqwest::Body::wrap);
        match ::reqwest::Request::try_from(request) {
            Ok(request) => ResponseFuture {
                state: State::Sent {
                    future: self.client.call(request),
                },
            },
            // A URI reqwest cannot take (no scheme or host).
            Err(error) => ResponseFuture {
                state: State::Refused { error: Some(error) },
            },
        }
    }
}

pin_project! {
    /// The response future of [`ReqwestService`]: reqwest's own, with its
    /// response turned into an `http::Response<reqwest::Body>` and its
    /// error boxed.
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Sent { #[pin] future: Pending },
        Refused { error: Option<::reqwest::Error> },
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<::reqwest::Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sent { future } => Poll::Ready(match ready!(future.poll(cx)) {
                Ok(response) => Ok(http::Response::from(response)),
                Err(error) => Err(error.into()),
            }),
            StateProj::Refused { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error.into())),
                None => panic!("`ResponseFuture` polled after it completed"),
            },
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_send<T: Send + 'static>() {}

    #[test]
    fn service_and_future_are_send() {
        assert_send_sync::<ReqwestService>();
        assert_send::<ResponseFuture>();
    }

    #[tokio::test]
    async fn a_uri_reqwest_cannot_take_is_an_error_not_a_panic() {
        let mut service = ReqwestService::new(::reqwest::Client::new());
        let request = http::Request::put("/no-host")
            .body(http_body_util::Full::new(Bytes::from_static(b"x")))
            .unwrap();
        let err = service.call(request).await.unwrap_err();
        assert!(err.downcast_ref::<::reqwest::Error>().is_some(), "{err:?}");
        assert!(crate::Error::find_in(&*err).is_none());
    }
}
