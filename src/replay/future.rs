//! [`ResponseFuture`] of [`Replay`](super::Replay).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::Error;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pin_project! {
    /// The response future of [`Replay`](super::Replay): the inner service's
    /// future, or the error that refused the request before it was sent.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] future: F },
        Refused { error: Option<Error> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F) -> ResponseFuture<F> {
        ResponseFuture {
            state: State::Called { future },
        }
    }

    pub(crate) fn refused(error: Error) -> ResponseFuture<F> {
        ResponseFuture {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future } => future.poll(cx).map_err(Into::into),
            StateProj::Refused { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error.into())),
                None => Poll::Ready(Err(Error::new(
                    crate::ErrorKind::ContentLengthMismatch,
                    "this refused request's future was polled again after it completed",
                )
                .into())),
            },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
