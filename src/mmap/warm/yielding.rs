//! Giving the worker back: a yield that holds until the runtime has woken
//! the body.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

/// Wakes the task after the runtime has polled its timers and I/O, as
/// `yield_now` does: one poll of it hands the waker to the scheduler
/// (outside a runtime it wakes at once).
pub(super) fn defer(cx: &mut Context<'_>) {
    let yielded = std::pin::pin!(tokio::task::yield_now());
    let _ = yielded.poll(cx);
}

/// The waker a body yields with: it notes that the runtime woke the
/// body, then wakes the task that polled it. A consumer may poll the
/// body again before its task was rescheduled (hyper's HTTP/1.1
/// dispatcher goes round its loop again when the connection asks it
/// to read); the body then waits on until the wake-up, so that a yield
/// always gives the worker to its timers, I/O and other tasks.
#[derive(Debug, Default)]
pub(super) struct Resume {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Resume {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(task) = crate::sync::lock(&self.task).take() {
            task.wake();
        }
    }
}

impl Resume {
    /// Wakes `cx`'s task as [`defer`] does, noting when that happened.
    pub(super) fn yield_now(self: &Arc<Self>, cx: &Context<'_>) {
        self.woken.store(false, Ordering::Release);
        self.waiting(cx);
        let waker = Waker::from(Arc::clone(self));
        defer(&mut Context::from_waker(&waker));
    }

    /// The task to wake, if it polls again before the wake-up.
    pub(super) fn waiting(&self, cx: &Context<'_>) {
        let mut task = crate::sync::lock(&self.task);
        match &*task {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => *task = Some(cx.waker().clone()),
        }
    }

    pub(super) fn woken(&self) -> bool {
        self.woken.load(Ordering::Acquire)
    }
}
