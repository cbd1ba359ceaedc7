//! [`ResponseFuture`] of [`Replay`](super::Replay).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::body::Outcome;
use crate::Error;

use crate::error::BoxError;

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
        Called { #[pin] future: F, outcome: Arc<Outcome> },
        Refused { error: Option<Error> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, outcome: Arc<Outcome>) -> ResponseFuture<F> {
        ResponseFuture {
            state: State::Called { future, outcome },
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
            StateProj::Called { future, outcome } => match ready!(future.poll(cx)) {
                Ok(response) => Poll::Ready(Ok(response)),
                // The body failed for good: say so, whatever the client
                // made of it. Over HTTP/2, hyper only logs a body's error
                // and reports a reset stream; over HTTP/1.1 the body's
                // error is somewhere in the client's chain. Either way the
                // caller gets this crate's error first.
                Err(err) => Poll::Ready(Err(match outcome.failure() {
                    // The body's error keeps its own chain when it has one
                    // (a failed inner body); otherwise the client's error
                    // is its source.
                    Some(failure) if std::error::Error::source(&failure).is_some() => {
                        failure.into()
                    }
                    Some(failure) => failure.with_source(err).into(),
                    None => err.into(),
                })),
            },
            StateProj::Refused { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error.into())),
                None => panic!("`ResponseFuture` polled after it completed"),
            },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
