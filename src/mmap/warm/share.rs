//! Which bodies share a worker thread, and what each of them hands out
//! between two yields.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{MIN_SHARE, YIELD_BYTES};

thread_local! {
    /// Bodies streaming on this thread: polled here last, inside a
    /// runtime, and neither finished nor dropped. They share this
    /// worker.
    static HERE: Arc<AtomicUsize> = Arc::new(AtomicUsize::new(0));
}

/// One body counted among the bodies streaming on a thread, while this
/// lives.
#[derive(Debug)]
pub(super) struct Streaming(Arc<AtomicUsize>);

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts the body as streaming on this thread (no longer on the one it
/// was polled on before, if the runtime moved its task); how many
/// bodies stream here.
pub(super) fn streaming_here(streaming: &mut Option<Streaming>) -> usize {
    HERE.with(|here| {
        if !streaming.as_ref().is_some_and(|s| Arc::ptr_eq(&s.0, here)) {
            here.fetch_add(1, Ordering::Relaxed);
            *streaming = Some(Streaming(Arc::clone(here)));
        }
        here.load(Ordering::Relaxed)
    })
}

/// What one body hands out between two yields while `streaming` bodies
/// stream: [`YIELD_BYTES`] alone, an equal part of it otherwise, in
/// whole [`MIN_SHARE`]s. (Frames then start on 64 KiB boundaries, as
/// the kernel's fault-around windows do: a frame's first write never
/// maps back pages that the frame before it already gave back.)
pub(super) fn share(streaming: usize) -> usize {
    ((YIELD_BYTES / streaming.max(1)) & !(MIN_SHARE - 1)).max(MIN_SHARE)
}
