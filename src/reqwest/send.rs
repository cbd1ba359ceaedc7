//! [`RequestBuilderExt::send_through`]: a request built with reqwest's own
//! builder, sent through a tower stack with a body of this crate.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::SendError;
use crate::error::BoxError;

/// Sends a request built with reqwest's builder through a tower stack, with
/// a body of this crate.
///
/// Everything reqwest's builder sets (the URL and `.query()`, the method,
/// `.header()` / `.headers()`, `.bearer_auth()` / `.basic_auth()`,
/// `.timeout()`, `.version()`) goes into an `http::Request` whose body is
/// `body`; `stack` (cloned, as cheap as its client) sends it, and its
/// response comes back as a [`reqwest::Response`], with `.text()`,
/// `.bytes()`, `.error_for_status()`, `.url()` and the rest.
///
/// ```no_run
/// use mmap_body::reqwest::{ReqwestService, RequestBuilderExt};
/// use mmap_body::{MmapBody, UploadLayer};
/// use tower::Layer;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let client = reqwest::Client::new();
/// let stack = UploadLayer::new().layer(ReqwestService::new(client.clone()));
///
/// // SAFETY: nothing truncates or rewrites the file while it is sent.
/// let body = unsafe { MmapBody::open("big.iso")? };
/// let text = client
///     .put("https://storage.example/upload")
///     .query(&[("name", "big.iso")])
///     .bearer_auth("token")
///     .send_through(&stack, body)
///     .await? // a `SendError`: `?` turns it into `anyhow::Error` too
///     .error_for_status()?
///     .text()
///     .await?;
/// # let _ = text;
/// # Ok(())
/// # }
/// ```
///
/// # What sends it
///
/// The `stack` sends the request, not the client the builder came from:
/// that client's settings (default headers, its own timeout, proxy, TLS)
/// apply only when it is also the client inside the stack, as in the
/// example. The builder's `.timeout()` is carried to [`ReqwestService`]
/// (it applies to each attempt, from connecting to the end of the
/// response body); a stack over another client (hyper-util's) needs a
/// timeout of its own (`tower::timeout::TimeoutLayer`).
///
/// Any stack whose requests take `body` works: [`UploadLayer`] or a stack of
/// [`ReplayLayer`], `RetryLayer` and [`TrackProgressLayer`] over
/// [`ReqwestService`] or hyper-util's `Client`, with an `MmapBody`, a
/// `ReplayBody`, `http_body_util::Full` or any `http_body::Body<Data = Bytes>`
/// the stack takes.
///
/// # Errors
///
/// A [`SendError`], a concrete error type that `?` turns into
/// `anyhow::Error`, `Box<dyn Error + Send + Sync>` or `Box<dyn Error>`; it
/// holds, whole:
///
/// - the builder's own error (an invalid URL or header), a
///   `reqwest::Error` with `is_builder()`;
/// - [`BodyAlreadySet`] when the builder has a body (`.body()`, `.json()`,
///   `.form()`, `.multipart()`): the body is the one given here;
/// - the stack's error, as the stack returns it: for [`ReqwestService`] a
///   `reqwest::Error`, or this crate's [`Error`](crate::Error) for a body
///   that failed (find it with
///   [`Error::find_in`](crate::Error::find_in)`(err.get_ref())`).
///
/// `is_timeout()`, `is_connect()`, `is_builder()` and `url()` ask the
/// whole chain, as `reqwest::Error`'s do of one error.
///
/// A status is not an error: `error_for_status()` makes one.
///
/// [`ReqwestService`]: super::ReqwestService
/// [`UploadLayer`]: crate::UploadLayer
/// [`ReplayLayer`]: crate::ReplayLayer
/// [`TrackProgressLayer`]: crate::progress::TrackProgressLayer
pub trait RequestBuilderExt: sealed::Sealed {
    /// Sends this request through `stack` with `body`; see the
    /// [trait docs](RequestBuilderExt).
    fn send_through<S, B, ResB>(self, stack: &S, body: B) -> SendThrough<S, B>
    where
        S: Service<http::Request<B>, Response = http::Response<ResB>> + Clone,
        S::Error: Into<BoxError>,
        ResB: Body + Send + Sync + 'static,
        ResB::Data: Into<Bytes>,
        ResB::Error: Into<BoxError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for ::reqwest::RequestBuilder {}
}

impl RequestBuilderExt for ::reqwest::RequestBuilder {
    fn send_through<S, B, ResB>(self, stack: &S, body: B) -> SendThrough<S, B>
    where
        S: Service<http::Request<B>, Response = http::Response<ResB>> + Clone,
        S::Error: Into<BoxError>,
        ResB: Body + Send + Sync + 'static,
        ResB::Data: Into<Bytes>,
        ResB::Error: Into<BoxError>,
    {
        let state = match self.build().map_err(SendError::new).and_then(|request| {
            let url = request.url().clone();
            into_http(request, body).map(|request| (request, url))
        }) {
            Ok((request, url)) => State::Ready {
                service: stack.clone(),
                request: Some((request, url)),
            },
            Err(error) => State::Failed { error: Some(error) },
        };
        SendThrough { state }
    }
}

/// The builder's request as an `http::Request` with `body` in it, and the
/// builder's timeout where [`ReqwestService`](super::ReqwestService) finds it.
fn into_http<B>(request: ::reqwest::Request, body: B) -> Result<http::Request<B>, SendError> {
    if request.body().is_some() {
        return Err(SendError::new(BodyAlreadySet { _private: () }));
    }
    let timeout = request.timeout().copied();
    let request = http::Request::try_from(request).map_err(SendError::new)?;
    let (mut parts, _none) = request.into_parts();
    if let Some(timeout) = timeout {
        parts.extensions.insert(RequestTimeout(timeout));
    }
    Ok(http::Request::from_parts(parts, body))
}

/// The builder's `timeout`, for [`ReqwestService`](super::ReqwestService)
/// to set on each attempt's `reqwest::Request`. (reqwest 0.13 keeps it in
/// the request's extensions too, under a private type; this does not rely
/// on that.)
#[derive(Debug, Clone, Copy)]
pub(super) struct RequestTimeout(pub(super) Duration);

/// The URL a [`ReqwestService`](super::ReqwestService) response came from
/// (after redirects).
#[derive(Debug, Clone)]
pub(super) struct FinalUrl(pub(super) ::reqwest::Url);

/// [`send_through`](RequestBuilderExt::send_through) was given a builder
/// that already has a body (`.body()`, `.json()`, `.form()` or
/// `.multipart()`); the body to send is the one given to `send_through`.
#[derive(Debug)]
pub struct BodyAlreadySet {
    _private: (),
}

impl fmt::Display for BodyAlreadySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "send_through: the request builder already has a body (set by .body(), .json(), \
             .form() or .multipart()); pass the body to send_through instead, and set its \
             Content-Type with .header()",
        )
    }
}

impl StdError for BodyAlreadySet {}

pin_project! {
    /// The future of [`send_through`](RequestBuilderExt::send_through):
    /// waits for the stack to be ready, calls it, and turns its response
    /// into a [`reqwest::Response`].
    pub struct SendThrough<S, B>
    where
        S: Service<http::Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<http::Request<B>>,
    {
        Failed { error: Option<SendError> },
        Ready { service: S, request: Option<(http::Request<B>, ::reqwest::Url)> },
        Called { #[pin] future: S::Future, url: Option<::reqwest::Url> },
    }
}

impl<S, B> SendThrough<S, B>
where
    S: Service<http::Request<B>>,
{
    /// Puts `value` in the request's extensions before it is sent, where
    /// the layers of the stack look for theirs (reqwest's builder has no
    /// way to): a [`Progress`](crate::progress::Progress) for
    /// `TrackProgressLayer` to count each attempt into, say.
    ///
    /// ```no_run
    /// # async fn f(stack: mmap_body::Upload<mmap_body::reqwest::ReqwestService>, body: mmap_body::MmapBody) -> Result<(), mmap_body::reqwest::SendError> {
    /// use mmap_body::progress::Progress;
    /// use mmap_body::reqwest::RequestBuilderExt;
    ///
    /// let progress = Progress::new(); // watched by another task
    /// let response = reqwest::Client::new()
    ///     .put("http://127.0.0.1:3000/upload")
    ///     .send_through(&stack, body)
    ///     .extension(progress.clone())
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn extension<T>(mut self, value: T) -> SendThrough<S, B>
    where
        T: Clone + Send + Sync + 'static,
    {
        if let State::Ready {
            request: Some((request, _)),
            ..
        } = &mut self.state
        {
            request.extensions_mut().insert(value);
        }
        self
    }
}

impl<S, B, ResB> Future for SendThrough<S, B>
where
    S: Service<http::Request<B>, Response = http::Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body + Send + Sync + 'static,
    ResB::Data: Into<Bytes>,
    ResB::Error: Into<BoxError>,
{
    type Output = Result<::reqwest::Response, SendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().unwrap_or_else(done)));
                }
                StateProj::Ready { service, request } => {
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Err(SendError::new(error)));
                    }
                    let Some((request, url)) = request.take() else {
                        return Poll::Ready(Err(done()));
                    };
                    State::Called {
                        future: service.call(request),
                        url: Some(url),
                    }
                }
                StateProj::Called { future, url } => {
                    let response = ready!(future.poll(cx)).map_err(SendError::new)?;
                    let url = url.take();
                    return Poll::Ready(Ok(into_reqwest(response, url)));
                }
            };
            this.state.set(next);
        }
    }
}

/// An error for a future polled again after it completed.
fn done() -> SendError {
    SendError::new("send_through's future polled after it completed")
}

/// The stack's response as a `reqwest::Response` whose `url()` is the one
/// the response came from (a [`ReqwestService`](super::ReqwestService)'s,
/// after redirects), or else the request's.
fn into_reqwest<ResB>(
    response: http::Response<ResB>,
    request_url: Option<::reqwest::Url>,
) -> ::reqwest::Response
where
    ResB: Body + Send + Sync + 'static,
    ResB::Data: Into<Bytes>,
    ResB::Error: Into<BoxError>,
{
    use ::reqwest::ResponseBuilderExt;
    let (mut parts, body) = response.into_parts();
    let url = parts.extensions.remove::<FinalUrl>().map(|u| u.0);
    if let Some(url) = url.or(request_url) {
        // reqwest's key type is private: a builder of its own sets it.
        if let Ok(carrier) = http::Response::builder().url(url).body(()) {
            parts.extensions.extend(carrier.into_parts().0.extensions);
        }
    }
    ::reqwest::Response::from(http::Response::from_parts(
        parts,
        ::reqwest::Body::wrap(body),
    ))
}

impl<S, B> fmt::Debug for SendThrough<S, B>
where
    S: Service<http::Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendThrough").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// A stack that answers every request with what it got.
    #[derive(Clone)]
    struct Echo;

    impl Service<http::Request<Full<Bytes>>> for Echo {
        type Response = http::Response<Full<Bytes>>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Self::Response, BoxError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
            let text = format!(
                "{} {} auth={:?} timeout={:?}",
                req.method(),
                req.uri(),
                req.headers().get("authorization").map(|v| v.to_str()),
                req.extensions().get::<RequestTimeout>().map(|t| t.0),
            );
            std::future::ready(Ok(http::Response::new(Full::from(text))))
        }
    }

    fn echo() -> Echo {
        Echo
    }

    #[tokio::test]
    async fn the_builder_s_parts_reach_the_stack() {
        let client = ::reqwest::Client::new();
        let future = client
            .post("http://example.test/up?a=1")
            .query(&[("b", "2")])
            .bearer_auth("t0k")
            .timeout(Duration::from_secs(7))
            .send_through(&echo(), Full::from("x"));
        assert_send(&future);
        let response = future.await.unwrap();
        assert_eq!(response.url().as_str(), "http://example.test/up?a=1&b=2");
        assert_eq!(
            response.text().await.unwrap(),
            "POST http://example.test/up?a=1&b=2 auth=Some(Ok(\"Bearer t0k\")) timeout=Some(7s)"
        );
    }

    #[tokio::test]
    async fn extensions_reach_the_stack() {
        #[derive(Clone)]
        struct Seen;
        impl Service<http::Request<Full<Bytes>>> for Seen {
            type Response = http::Response<Full<Bytes>>;
            type Error = BoxError;
            type Future = std::future::Ready<Result<Self::Response, BoxError>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
                let tag = req.extensions().get::<&'static str>().copied();
                let text = Full::from(tag.unwrap_or("none"));
                std::future::ready(Ok(http::Response::new(text)))
            }
        }
        let response = ::reqwest::Client::new()
            .post("http://example.test/")
            .send_through(&Seen, Full::from("x"))
            .extension("tagged")
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), "tagged");
    }

    #[tokio::test]
    async fn a_builder_error_or_a_body_is_an_error_not_a_panic() {
        let client = ::reqwest::Client::new();
        let err = client
            .get("not a url")
            .send_through(&echo(), Full::from("x"))
            .await
            .unwrap_err();
        let reqwest = err.get_ref().downcast_ref::<::reqwest::Error>();
        assert!(reqwest.expect("reqwest's").is_builder(), "{err:?}");
        assert!(err.is_builder());

        let err = client
            .put("http://example.test/")
            .body("already")
            .send_through(&echo(), Full::from("x"))
            .await
            .unwrap_err();
        assert!(err.get_ref().is::<BodyAlreadySet>(), "{err:?}");
        assert!(err.is_builder());
        assert!(err.to_string().contains("already has a body"), "{err}");

        let err = client
            .put("http://example.test/")
            .header("bad\nname", "v")
            .send_through(&echo(), Full::from("x"))
            .await
            .unwrap_err();
        assert!(err.reqwest().is_some_and(|e| e.is_builder()), "{err:?}");
    }
}
