//! [`ResponseFuture`]: the answer of a [`ServeDir`](super::ServeDir) or
//! [`ServeFile`](super::ServeFile): ready at once when the file was open
//! already, else the blocking pool's work, then perhaps the fallback's.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::answer::{status, Outcome};
use super::fallback::DefaultServeDirFallback;
use crate::error::BoxError;
use crate::serve::ServeBody;

type Boxed = Pin<Box<dyn Future<Output = Response<ServeBody>> + Send + 'static>>;

pin_project_lite::pin_project! {
    /// The future of [`ServeDir`](super::ServeDir) and
    /// [`ServeFile`](super::ServeFile) answers. Never fails.
    pub struct ResponseFuture<ReqBody, F = DefaultServeDirFallback> {
        state: State<ReqBody, F>,
    }
}

enum State<ReqBody, F> {
    Ready(Option<Response<ServeBody>>),
    Blocking {
        task: tokio::task::JoinHandle<Outcome>,
        fallback: Option<(F, Request<ReqBody>)>,
    },
    Fallback(Boxed),
}

impl<ReqBody, F> fmt::Debug for ResponseFuture<ReqBody, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Ready(_) => "ready",
            State::Blocking { .. } => "on the blocking pool",
            State::Fallback(_) => "in the fallback",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<ReqBody, F> ResponseFuture<ReqBody, F> {
    pub(super) fn ready(response: Response<ServeBody>) -> Self {
        ResponseFuture {
            state: State::Ready(Some(response)),
        }
    }

    pub(super) fn blocking(
        task: tokio::task::JoinHandle<Outcome>,
        fallback: Option<(F, Request<ReqBody>)>,
    ) -> Self {
        ResponseFuture {
            state: State::Blocking { task, fallback },
        }
    }
}

impl<ReqBody, F, FResBody> ResponseFuture<ReqBody, F>
where
    F: Service<Request<ReqBody>, Response = Response<FResBody>, Error = Infallible>,
    F::Future: Send + 'static,
    FResBody: http_body::Body<Data = Bytes> + Send + 'static,
    FResBody::Error: Into<BoxError>,
{
    /// `outcome`, or for "not found" the fallback's answer (else `404`).
    pub(super) fn settle(outcome: Outcome, fallback: Option<(F, Request<ReqBody>)>) -> Self {
        match (outcome, fallback) {
            (Outcome::Answer(response), _) => ResponseFuture::ready(response),
            (Outcome::NotFound, Some((mut fallback, request))) => ResponseFuture {
                state: State::Fallback(call(&mut fallback, request)),
            },
            (Outcome::NotFound, None) => ResponseFuture::ready(status(StatusCode::NOT_FOUND)),
        }
    }
}

/// The fallback's answer to `request`, its body made a [`ServeBody`].
pub(super) fn call<F, ReqBody, FResBody>(fallback: &mut F, request: Request<ReqBody>) -> Boxed
where
    F: Service<Request<ReqBody>, Response = Response<FResBody>, Error = Infallible>,
    F::Future: Send + 'static,
    FResBody: http_body::Body<Data = Bytes> + Send + 'static,
    FResBody::Error: Into<BoxError>,
{
    let future = fallback.call(request);
    Box::pin(async move {
        match future.await {
            Ok(response) => response.map(ServeBody::other),
            Err(never) => match never {},
        }
    })
}

impl<ReqBody, F> ResponseFuture<ReqBody, F> {
    pub(super) fn fallback(future: Boxed) -> Self {
        ResponseFuture {
            state: State::Fallback(future),
        }
    }
}

impl<ReqBody, F, FResBody> Future for ResponseFuture<ReqBody, F>
where
    F: Service<Request<ReqBody>, Response = Response<FResBody>, Error = Infallible>,
    F::Future: Send + 'static,
    FResBody: http_body::Body<Data = Bytes> + Send + 'static,
    FResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<ServeBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let state = self.project().state;
        loop {
            match state {
                State::Ready(response) => {
                    let response = response
                        .take()
                        .unwrap_or_else(|| status(StatusCode::INTERNAL_SERVER_ERROR));
                    return Poll::Ready(Ok(response));
                }
                State::Fallback(future) => return future.as_mut().poll(cx).map(Ok),
                State::Blocking { task, fallback } => {
                    let outcome = match ready!(Pin::new(task).poll(cx)) {
                        Ok(outcome) => outcome,
                        // The lookup panicked (or the runtime is going
                        // away): no file to send.
                        Err(_) => Outcome::Answer(status(StatusCode::INTERNAL_SERVER_ERROR)),
                    };
                    *state = ResponseFuture::settle(outcome, fallback.take()).state;
                }
            }
        }
    }
}
