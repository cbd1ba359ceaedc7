//! A hyper executor that spawns on tokio and runs a hook around every poll
//! of what it spawns: a client's connection tasks (over HTTP/1.1 the one
//! that polls the request body and writes it; over HTTP/2 the connection
//! and the task that pipes the body into its stream), a server's HTTP/2
//! streams. What happens in one poll is what that task did while it held
//! the worker thread.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What runs around each poll: `before` just ahead of it, `after` just
/// behind it, with what `before` returned.
pub trait AroundPoll: Clone + Send + Sync + 'static {
    /// What `before` notes for `after` (a time, a count).
    type Mark;
    /// Just before a poll.
    fn before(&self) -> Self::Mark;
    /// Just after it.
    fn after(&self, mark: Self::Mark);
}

/// Spawns on the current tokio runtime, each future wrapped in
/// [`Observed`] with a clone of the hook.
#[derive(Clone, Debug)]
pub struct ObservedExecutor<H>(pub H);

impl<H, F> hyper::rt::Executor<F> for ObservedExecutor<H>
where
    H: AroundPoll,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(Observed::new(self.0.clone(), future));
    }
}

pin_project_lite::pin_project! {
    /// `future`, with `hook` run around each of its polls (no allocation).
    pub struct Observed<H, F> {
        hook: H,
        #[pin]
        future: F,
    }
}

impl<H, F> Observed<H, F> {
    /// `future` observed by `hook`.
    pub fn new(hook: H, future: F) -> Observed<H, F> {
        Observed { hook, future }
    }
}

impl<H: AroundPoll, F: Future> Future for Observed<H, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mark = this.hook.before();
        let polled = this.future.poll(cx);
        this.hook.after(mark);
        polled
    }
}
