//! Keeping a runtime's worker threads free: an `MmapBody` gives its worker
//! back after every [`YIELD_BYTES`] it hands out, and brings a frame's
//! pages in on tokio's blocking pool when they are not resident, instead
//! of letting hyper's `write()` take the page faults on the worker.
//!
//! Only inside a tokio runtime (feature `runtime`, on by default); without
//! one, or without the feature, a body is a plain mapping: every frame is
//! ready at once and its pages fault in where they are read.

use std::sync::Arc;
use std::task::{Context, Poll};

use super::mapping::Mapping;

/// Bytes a body hands out before it gives its worker back once: about half
/// a millisecond of hyper's writes on this crate's test machine, so that a
/// timer or another connection on the same worker waits no longer than
/// that for one upload. Each yield costs one more poll of the connection's
/// task (a few microseconds).
#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
pub(super) const YIELD_BYTES: usize = 2 << 20;

/// A body's place in the cooperative schedule, and a load in progress.
#[derive(Debug, Default)]
pub(super) struct Warm {
    /// Bytes handed out since the last yield.
    since_yield: usize,
    #[cfg_attr(not(feature = "runtime"), allow(dead_code))]
    state: imp::State,
}

impl Warm {
    /// Ready when the frame `start..end` of `mapping` may be handed out now;
    /// otherwise the body yields (the worker runs other tasks first) or its
    /// pages are being read on the blocking pool, and `cx` is woken. Once
    /// ready, the pages of the frame after it (`end..next`) are read ahead
    /// on the blocking pool if they are not in memory.
    pub(super) fn poll_ready(
        &mut self,
        mapping: &Arc<Mapping>,
        (start, end, next): (usize, usize, usize),
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        imp::poll_ready(self, mapping, start, end, next, cx)
    }

    /// `true` once the body reads its file ahead on the blocking pool.
    pub(super) fn reads_ahead(&self) -> bool {
        imp::reads_ahead(self)
    }

    /// Counts `len` bytes handed out.
    pub(super) fn sent(&mut self, len: usize) {
        self.since_yield += len;
    }
}

#[cfg(feature = "runtime")]
mod imp {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{ready, Context, Poll};

    use tokio::task::JoinHandle;

    use super::{Warm, YIELD_BYTES};
    use crate::mmap::mapping::Mapping;

    #[derive(Default)]
    pub(super) struct State {
        /// Giving the worker back: tokio's `yield_now`, which wakes the
        /// task only after the runtime has polled its timers and I/O.
        yielding: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
        /// A load on the blocking pool, and the offset of the frame it is
        /// for: the next frame's, started while this one goes out.
        load: Option<(usize, JoinHandle<()>)>,
        /// A frame was found cold: from then on the next frame is always
        /// read ahead on the blocking pool. (`mincore` also counts pages
        /// whose read from disk is still under way as resident, so asking
        /// it again would send the worker into the faults this avoids.)
        cold: bool,
    }

    impl std::fmt::Debug for State {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("State")
                .field("yielding", &self.yielding.is_some())
                .field("loading", &self.load.as_ref().map(|(at, _)| at))
                .field("cold", &self.cold)
                .finish()
        }
    }

    pub(super) fn reads_ahead(warm: &Warm) -> bool {
        warm.state.cold
    }

    fn spawn(
        runtime: &tokio::runtime::Handle,
        mapping: &Arc<Mapping>,
        start: usize,
        end: usize,
    ) -> (usize, JoinHandle<()>) {
        let mapping = Arc::clone(mapping);
        (
            start,
            runtime.spawn_blocking(move || mapping.populate(start, end)),
        )
    }

    pub(super) fn poll_ready(
        warm: &mut Warm,
        mapping: &Arc<Mapping>,
        start: usize,
        end: usize,
        next: usize,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Poll::Ready(());
        };
        let state = &mut warm.state;
        if warm.since_yield >= YIELD_BYTES {
            let yielding = state
                .yielding
                .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
            ready!(yielding.as_mut().poll(cx));
            state.yielding = None;
            warm.since_yield = 0;
        }
        // This frame's pages: wait for their load, or start one.
        if state.load.as_ref().is_some_and(|(at, _)| *at != start) {
            state.load = None; // for another frame (a slice, a seek): let it run
        }
        if state.load.is_none() && !state.cold && !mapping.resident(start, end) {
            state.cold = true;
            state.load = Some(spawn(&runtime, mapping, start, end));
        }
        if let Some((_, load)) = &mut state.load {
            // A load that panicked or was cancelled leaves the pages to
            // fault in where they are read, as without this module.
            let _ = ready!(Pin::new(load).poll(cx));
            state.load = None;
        }
        // The next frame's, while this one goes out.
        if next > end && (state.cold || !mapping.resident(end, next)) {
            state.cold = true;
            state.load = Some(spawn(&runtime, mapping, end, next));
        }
        Poll::Ready(())
    }
}

#[cfg(not(feature = "runtime"))]
mod imp {
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use super::Warm;
    use crate::mmap::mapping::Mapping;

    #[derive(Debug, Default)]
    pub(super) struct State;

    pub(super) fn reads_ahead(_warm: &Warm) -> bool {
        false
    }

    pub(super) fn poll_ready(
        _warm: &mut Warm,
        _mapping: &Arc<Mapping>,
        _start: usize,
        _end: usize,
        _next: usize,
        _cx: &mut Context<'_>,
    ) -> Poll<()> {
        Poll::Ready(())
    }
}

#[cfg(all(test, feature = "runtime"))]
mod tests {
    use std::io::Write;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use http_body::Body;

    use crate::MmapBody;

    /// Polls `body` to its end with a waker that does nothing; how many
    /// times it was pending, and the bytes it sent.
    fn drain(body: &mut MmapBody) -> (usize, usize) {
        let mut cx = Context::from_waker(Waker::noop());
        let (mut pending, mut sent) = (0, 0);
        loop {
            match Pin::new(&mut *body).poll_frame(&mut cx) {
                Poll::Ready(Some(frame)) => sent += frame.unwrap().into_data().unwrap().len(),
                Poll::Ready(None) => return (pending, sent),
                Poll::Pending => pending += 1,
            }
            assert!(pending < 1000, "never ready");
        }
    }

    fn body(len: usize) -> MmapBody {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; len]).unwrap();
        // SAFETY: a temp file private to this test.
        unsafe { MmapBody::from_file(file) }
            .unwrap()
            .chunk_size(1 << 20)
    }

    /// 8 MiB in 1 MiB frames gives the worker back after every 2 MiB, and
    /// sends every byte; outside a runtime it never waits.
    #[test]
    fn a_body_yields_every_two_mib_inside_a_runtime_only() {
        let len = 8 << 20;
        let (pending, sent) = drain(&mut body(len));
        assert_eq!((pending, sent), (0, len), "outside a runtime");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _inside = runtime.enter();
        let mut inside = body(len);
        let (pending, sent) = drain(&mut inside);
        assert_eq!(sent, len);
        // Frames 3, 5, 7 start after 2 MiB more (the last byte, its own
        // frame, may add a yield for frames still held: none are here).
        assert_eq!(pending, 3, "one yield every 2 MiB");
    }
}
