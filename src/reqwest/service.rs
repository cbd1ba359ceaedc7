//! [`ReqwestService`]: a `tower::Service<http::Request<B>>` over a
//! `reqwest::Client`.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::send::{FinalUrl, RequestTimeout};
use crate::error::BoxError;

/// A tower `Service<http::Request<B>>` over a [`reqwest::Client`]: each
/// request's body is sent through [`reqwest::Body::wrap`], so the stack of
/// this crate (`ReplayLayer`, `RetryLayer` with `RetryPolicy`,
/// `TrackProgressLayer`) works on reqwest as on hyper-util.
///
/// It is as cheap to clone as the `Client` it wraps (a reference count),
/// and shares its connection pool. A request sent with
/// [`send_through`](super::RequestBuilderExt::send_through) keeps its own
/// `timeout` (for each attempt). The response carries the URL it came from
/// (after redirects), so `reqwest::Response::from(response).url()` and
/// `error_for_status` name it. See the [module docs](super) for the stack
/// and for what each reqwest path gives and loses.
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
        let timeout = request.extensions().get::<RequestTimeout>().map(|t| t.0);
        // `wrap` keeps the body's `size_hint`, so hyper sends the exact
        // `Content-Length` of an `MmapBody` (or `ReplayLayer`'s header).
        let request = request.map(::reqwest::Body::wrap);
        let mut request = match ::reqwest::Request::try_from(request) {
            Ok(request) => request,
            // A URI reqwest cannot take (no scheme or host).
            Err(error) => {
                return ResponseFuture {
                    state: State::Refused { error: Some(error) },
                }
            }
        };
        if let Some(timeout) = timeout {
            *request.timeout_mut() = Some(timeout);
        }
        ResponseFuture {
            state: State::Sent {
                future: self.client.call(request),
            },
        }
    }
}

/// `reqwest::Response` into `http::Response`, keeping its URL where
/// `reqwest::Response::from` looks for it (reqwest's own conversion drops
/// it: the URL is a field of its `Response`, not an extension).
fn into_http(response: ::reqwest::Response) -> http::Response<::reqwest::Body> {
    use ::reqwest::ResponseBuilderExt;
    let url = response.url().clone();
    let mut response = http::Response::from(response);
    // reqwest's key type is private: a builder of its own sets it.
    if let Ok(carrier) = http::Response::builder().url(url.clone()).body(()) {
        let (parts, ()) = carrier.into_parts();
        response.extensions_mut().extend(parts.extensions);
    }
    response.extensions_mut().insert(FinalUrl(url));
    response
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
                Ok(response) => Ok(into_http(response)),
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
