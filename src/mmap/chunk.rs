//! The owners of the frames' bytes: each keeps the mapping alive and, once
//! the last `Bytes` of its frame is dropped, gives the frame's pages back
//! to the kernel and counts the frame out of those an attempt has in
//! flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use super::mapping::Mapping;
use super::sys;

/// The frames one attempt gave out and their holders have not dropped yet,
/// and the task waiting for them to be, to end the body.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    frames: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

impl InFlight {
    /// Counts one more frame given out.
    pub(super) fn gave_out(&self) {
        self.frames.fetch_add(1, Ordering::AcqRel);
    }

    fn dropped(&self) {
        if self.frames.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waker = self
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// Ready once every frame is dropped; otherwise `cx` is woken when the
    /// last one is.
    pub(super) fn poll_all_dropped(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.frames.load(Ordering::Acquire) == 0 {
            return Poll::Ready(());
        }
        *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        // The last frame may have gone between the check and the store.
        if self.frames.load(Ordering::Acquire) == 0 {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The owner of one frame's bytes: keeps the mapping alive and, when the
/// last `Bytes` of the frame is dropped, gives its pages back.
pub(super) struct Chunk {
    pub(super) mapping: Arc<Mapping>,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) release: bool,
    pub(super) in_flight: Option<Arc<InFlight>>,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.mapping.map[self.start..self.end]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.release {
            // SAFETY: `release` is only set for the shared read-only file
            // mappings `MmapBody` makes itself (never for `from_mmap`). For
            // those, MADV_DONTNEED only unmaps the pages from this process;
            // the data stays in the page cache and any later access, by
            // another frame sharing an edge page or by a clone, faults the
            // same bytes back in.
            unsafe { sys::release(&self.mapping.map, self.start, self.end - self.start) };
        }
        if let Some(in_flight) = &self.in_flight {
            in_flight.dropped();
        }
    }
}

/// The owner of [`Bytes::from`](bytes::Bytes::from)`(MmapBody)`: the whole
/// range, never released.
pub(super) struct Whole {
    pub(super) mapping: Arc<Mapping>,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl AsRef<[u8]> for Whole {
    fn as_ref(&self) -> &[u8] {
        &self.mapping.map[self.start..self.end]
    }
}
