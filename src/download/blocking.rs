//! Blocking file work for [`save`](fn@super::save), on tokio's blocking pool:
//! a call dropped while its work runs waits for it.

use std::sync::{Arc, Condvar, Mutex};

use crate::error::{BoxError, Error, ErrorKind};

/// Whether a piece of blocking work has finished.
#[derive(Default)]
struct Done {
    finished: Mutex<bool>,
    changed: Condvar,
}

/// Marks the work finished when dropped (its end, or its panic).
struct Finished(Arc<Done>);

impl Drop for Finished {
    fn drop(&mut self) {
        *crate::sync::lock(&self.0.finished) = true;
        self.0.changed.notify_all();
    }
}

/// Waits, when dropped, until the work has finished.
struct WaitOnDrop(Arc<Done>);

impl Drop for WaitOnDrop {
    fn drop(&mut self) {
        let mut finished = crate::sync::lock(&self.0.finished);
        while !*finished {
            finished = self
                .0
                .changed
                .wait(finished)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Runs `work` on tokio's blocking pool when there is a runtime, else here.
///
/// A `save` dropped while its write runs (its caller gave up, a timeout)
/// waits for that write in its drop (one batch, milliseconds): no write of
/// a dropped call lands after it, in a `.part` that the next call may
/// already have started over.
/// `Err` only when the runtime shut down before the work ran.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BoxError> {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return Ok(work());
    };
    let done = Arc::new(Done::default());
    let finished = Finished(done.clone());
    let task = handle.spawn_blocking(move || {
        let _finished = finished;
        work()
    });
    let _wait = WaitOnDrop(done);
    match task.await {
        Ok(out) => Ok(out),
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(_) => Err(Error::new(
            ErrorKind::Io,
            "the runtime shut down before the download's file was written: the .part keeps \
             what was written before",
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call dropped while its write runs on the blocking pool waits for
    /// it: nothing it wrote can land after it is gone.
    #[tokio::test]
    async fn a_dropped_call_waits_for_its_write() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let written = Arc::new(AtomicBool::new(false));
        let flag = written.clone();
        let mut call = Box::pin(blocking(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            flag.store(true, Ordering::SeqCst);
        }));
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(20), &mut call).await;
        assert!(gave_up.is_err(), "still writing");
        drop(call);
        assert!(
            written.load(Ordering::SeqCst),
            "the drop waited for the write"
        );
    }
}
