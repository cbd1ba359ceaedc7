//! Keeping a runtime's worker threads free: an `MmapBody` gives its worker
//! back after every [`YIELD_BYTES`] it hands out, or once [`YIELD_AFTER`]
//! has passed since it last got the worker back, and brings a frame's
//! pages in on tokio's blocking pool when they are not resident, instead
//! of letting hyper's `write()` take the page faults on the worker.
//!
//! Bodies streaming on one worker thread share the [`YIELD_BYTES`]: with
//! `n` of them, each hands out frames of at most `YIELD_BYTES / n` (never
//! below [`MIN_SHARE`]) and yields after each, so a worker running all of
//! them still gets back to its timers and I/O after about [`YIELD_BYTES`].
//!
//! Only inside a tokio runtime (feature `tokio`, on by default); without
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
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(super) const YIELD_BYTES: usize = 2 << 20;

/// How long a body goes on handing out frames after it got its worker
/// back: past this it yields before its next frame, even short of
/// [`YIELD_BYTES`]. Where the connection writes slower than 2 MiB a
/// millisecond (HTTP/2's 16 KiB frames, TLS, a slower machine or a busy
/// one), bytes alone would let one poll of the connection's task run for
/// milliseconds; this bounds it at about this long plus one frame's write.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(super) const YIELD_AFTER: std::time::Duration = std::time::Duration::from_micros(500);

/// How far ahead of the frame going out pages are made resident: 4 MiB
/// (one 1 MiB frame ahead keeps a cold file's reads too short to stream).
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(super) const AHEAD: usize = 4 << 20;

/// The least a body hands out between two yields when many stream at once:
/// below this, the cost of a poll and a write per frame outweighs the
/// stall it saves.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(super) const MIN_SHARE: usize = 64 << 10;

/// A body's place in the cooperative schedule, and a load in progress.
#[derive(Debug, Default)]
pub(super) struct Warm {
    /// Bytes handed out since the last yield.
    since_yield: usize,
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    state: imp::State,
}

impl Warm {
    /// Ready with the length of the next frame, from `start` and at most
    /// `most` bytes, once it may be handed out: `most`, or the body's share
    /// of [`YIELD_BYTES`] while other bodies stream too. Otherwise the body
    /// yields (it handed out its share, or [`YIELD_AFTER`] passed since it
    /// got the worker back: the worker runs other tasks first) or the
    /// frame's pages are being read on the blocking pool, and `cx` is woken. Once ready, the
    /// next [`AHEAD`] bytes (up to `limit`) are read ahead on the blocking
    /// pool if they are not in memory.
    ///
    /// Without `load_pages` (the body's access hints are off) it only
    /// yields.
    pub(super) fn poll_ready(
        &mut self,
        mapping: &Arc<Mapping>,
        (start, most, limit): (usize, usize, usize),
        load_pages: bool,
        cx: &mut Context<'_>,
    ) -> Poll<usize> {
        imp::poll_ready(self, mapping, (start, most, limit), load_pages, cx)
    }

    /// Wakes `cx` to be polled again soon: on tokio, after the runtime has
    /// polled its timers and I/O (`yield_now`); elsewhere at once.
    pub(super) fn defer(&self, cx: &mut Context<'_>) {
        imp::defer(cx);
    }

    /// The body sent its last byte: it no longer takes a share.
    pub(super) fn finished(&mut self) {
        imp::finished(self);
    }

    /// `true` while the body sees to its pages itself, inside a runtime:
    /// it knows the pages ahead are in memory (`mincore`), or reads them in
    /// on the blocking pool. The kernel's read-ahead advice is then of no
    /// use (and, on a cold range, could block the worker).
    pub(super) fn reads_ahead(&self) -> bool {
        imp::reads_ahead(self)
    }

    /// Counts `len` bytes handed out.
    pub(super) fn sent(&mut self, len: usize) {
        self.since_yield += len;
    }
}

#[cfg(feature = "tokio")]
mod imp {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{ready, Context, Poll, Wake, Waker};
    use std::time::Instant;

    use tokio::task::JoinHandle;

    use super::{Warm, AHEAD, MIN_SHARE, YIELD_AFTER, YIELD_BYTES};
    use crate::mmap::mapping::Mapping;

    thread_local! {
        /// Bodies streaming on this thread: polled here last, inside a
        /// runtime, and neither finished nor dropped. They share this
        /// worker.
        static HERE: Arc<AtomicUsize> = Arc::new(AtomicUsize::new(0));
    }

    /// One body counted among the bodies streaming on a thread, while this
    /// lives.
    #[derive(Debug)]
    struct Streaming(Arc<AtomicUsize>);

    impl Drop for Streaming {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Counts the body as streaming on this thread (no longer on the one it
    /// was polled on before, if the runtime moved its task); how many
    /// bodies stream here.
    fn streaming_here(streaming: &mut Option<Streaming>) -> usize {
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

    pub(super) fn finished(warm: &mut Warm) {
        warm.state.streaming = None;
    }

    #[derive(Default)]
    pub(super) struct State {
        /// Counts the body among those streaming on the thread that polled
        /// it last inside a runtime.
        streaming: Option<Streaming>,
        /// The worker was given back, and the body waits to be woken.
        yielded: bool,
        /// What the body yields with, made at its first yield.
        resume: Option<Arc<Resume>>,
        /// When the body handed out its first frame since it last yielded
        /// (or ever): how long it has held the worker, at most.
        holding_since: Option<Instant>,
        /// A load on the blocking pool, and where its range starts.
        load: Option<(usize, JoinHandle<()>)>,
        /// Bytes up to here are resident, or being loaded by `load`.
        ready_until: usize,
        /// A range was found cold: from then on every range ahead is read
        /// on the blocking pool. (`mincore` also counts pages whose read
        /// from disk is still under way as resident, so asking it again
        /// would send the worker into the faults this avoids.)
        cold: bool,
    }

    impl std::fmt::Debug for State {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("State")
                .field("streaming", &self.streaming.is_some())
                .field("yielded", &self.yielded)
                .field("holding_since", &self.holding_since)
                .field("loading_from", &self.load.as_ref().map(|(at, _)| at))
                .field("ready_until", &self.ready_until)
                .field("cold", &self.cold)
                .finish()
        }
    }

    pub(super) fn reads_ahead(warm: &Warm) -> bool {
        warm.state.streaming.is_some()
    }

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
    struct Resume {
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
        fn yield_now(self: &Arc<Self>, cx: &Context<'_>) {
            self.woken.store(false, Ordering::Release);
            self.waiting(cx);
            let waker = Waker::from(Arc::clone(self));
            defer(&mut Context::from_waker(&waker));
        }

        /// The task to wake, if it polls again before the wake-up.
        fn waiting(&self, cx: &Context<'_>) {
            let mut task = crate::sync::lock(&self.task);
            match &*task {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *task = Some(cx.waker().clone()),
            }
        }

        fn woken(&self) -> bool {
            self.woken.load(Ordering::Acquire)
        }
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
        (start, most, limit): (usize, usize, usize),
        load_pages: bool,
        cx: &mut Context<'_>,
    ) -> Poll<usize> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Poll::Ready(most);
        };
        let state = &mut warm.state;
        let streaming = streaming_here(&mut state.streaming);
        let share = share(streaming);
        // Alone, a body's frames are as long as it was told; with others,
        // no longer than its share, so that it yields after each.
        let len = if streaming > 1 { most.min(share) } else { most };
        let end = start + len;
        let now = Instant::now();
        let held_long = warm.since_yield > 0
            && state
                .holding_since
                .is_some_and(|since| now.saturating_duration_since(since) >= YIELD_AFTER);
        if warm.since_yield >= share || held_long {
            let resume = state.resume.get_or_insert_with(Arc::default);
            if !state.yielded {
                state.yielded = true;
                resume.yield_now(cx);
                return Poll::Pending;
            }
            if !resume.woken() {
                // Polled again in the same turn of its task.
                resume.waiting(cx);
                if !resume.woken() {
                    return Poll::Pending;
                }
            }
            state.yielded = false;
            warm.since_yield = 0;
        }
        if warm.since_yield == 0 {
            state.holding_since = Some(now);
        }
        if !load_pages {
            return Poll::Ready(len);
        }
        if state.ready_until < start {
            // A body that starts here (a slice) or jumped: nothing known.
            state.ready_until = start;
            state.load = None;
        }
        if state.ready_until < end && state.load.is_none() {
            // This frame's pages are not known to be in memory.
            let to = (start + AHEAD).min(limit).max(end);
            if !state.cold && mapping.resident(start, to) {
                state.ready_until = to;
            } else {
                state.cold = true;
                state.load = Some(spawn(&runtime, mapping, state.ready_until, end));
                state.ready_until = end;
            }
        }
        if let Some((from, load)) = &mut state.load {
            if *from < end {
                // A load that panicked or was cancelled leaves the pages to
                // fault in where they are read, as without this module.
                let _ = ready!(Pin::new(load).poll(cx));
                state.load = None;
            }
        }
        // Keep at least half a window ahead of the frame read or known.
        if state.load.is_none() && state.ready_until < (end + AHEAD / 2).min(limit) {
            let from = state.ready_until.max(end);
            let to = (from + AHEAD).min(limit);
            if state.cold || !mapping.resident(from, to) {
                state.cold = true;
                state.load = Some(spawn(&runtime, mapping, from, to));
            }
            state.ready_until = to;
        }
        Poll::Ready(len)
    }
}

#[cfg(not(feature = "tokio"))]
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

    pub(super) fn finished(_warm: &mut Warm) {}

    pub(super) fn defer(cx: &mut Context<'_>) {
        cx.waker().wake_by_ref();
    }

    pub(super) fn poll_ready(
        _warm: &mut Warm,
        _mapping: &Arc<Mapping>,
        (_start, most, _limit): (usize, usize, usize),
        _load_pages: bool,
        _cx: &mut Context<'_>,
    ) -> Poll<usize> {
        Poll::Ready(most)
    }
}

#[cfg(all(test, feature = "tokio"))]
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

    /// Alone a body hands out 2 MiB between yields; with others, an equal
    /// part in whole 64 KiB steps, never less than 64 KiB.
    #[test]
    fn bodies_streaming_at_once_share_two_mib_in_64_kib_steps() {
        use super::imp::share;
        assert_eq!(share(0), 2 << 20);
        assert_eq!(share(1), 2 << 20);
        assert_eq!(share(2), 1 << 20);
        assert_eq!(share(3), 10 << 16, "699050 rounded down to 64 KiB");
        assert_eq!(share(32), 64 << 10);
        assert_eq!(share(1000), 64 << 10);
        for n in 1..100 {
            assert_eq!(share(n) % (64 << 10), 0, "{n} bodies");
        }
    }

    /// Two bodies polled in turn inside a runtime hand out frames of 1 MiB
    /// (their share), each followed by a yield, even when told 4 MiB; once
    /// one has sent its last byte, the other is alone again.
    #[test]
    fn two_bodies_at_once_take_turns_in_their_share() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _inside = runtime.enter();
        let mut cx = Context::from_waker(Waker::noop());
        let len = 8 << 20;
        let (mut a, mut b) = (body(len).chunk_size(4 << 20), body(len).chunk_size(4 << 20));
        // Both stream once each was polled.
        let first = |body: &mut MmapBody, cx: &mut Context<'_>| match Pin::new(body).poll_frame(cx)
        {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap().len(),
            other => panic!("{:?}", other.map(|f| f.map(|f| f.map(|_| ())))),
        };
        let _ = first(&mut a, &mut cx);
        let mut lens = Vec::new();
        for _ in 0..3 {
            loop {
                match Pin::new(&mut b).poll_frame(&mut cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        lens.push(frame.into_data().unwrap().len());
                        break;
                    }
                    Poll::Pending => {}
                    other => panic!("{:?}", other.map(|f| f.map(|f| f.map(|_| ())))),
                }
            }
        }
        assert!(lens.iter().all(|&len| len == 1 << 20), "{lens:?}");
        drop(a);
        let (_, sent) = drain(&mut b);
        assert_eq!(sent, len - (3 << 20));
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
        let started = std::time::Instant::now();
        let (pending, sent) = drain(&mut inside);
        assert_eq!(sent, len);
        // Frames 3, 5, 7 start after 2 MiB more (the last byte, its own
        // frame, may add a yield for frames still held: none are here).
        // A drain that took longer than YIELD_AFTER (this thread was
        // descheduled) may have yielded sooner, never more than per frame.
        if started.elapsed() < super::YIELD_AFTER {
            assert_eq!(pending, 3, "one yield every 2 MiB");
        } else {
            assert!((3..=7).contains(&pending), "{pending} yields");
        }
    }

    /// A consumer that polls the body again in the same turn of its task,
    /// right after the body yielded (as hyper's HTTP/1.1 dispatcher may),
    /// gets no frame until the runtime has woken the task; a task on the
    /// same runtime runs in between, every time.
    #[test]
    fn a_yield_holds_until_the_runtime_rescheduled_the_body() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let turns = runtime.block_on(async {
            let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let other = ran.clone();
            let neighbour = tokio::spawn(async move {
                loop {
                    other.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            });
            let len = 8 << 20;
            let mut body = body(len);
            let (mut sent, mut turns) = (0, Vec::new());
            std::future::poll_fn(|cx| loop {
                match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Ready(Some(frame)) => sent += frame.unwrap().into_data().unwrap().len(),
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => {
                        let again = Pin::new(&mut body).poll_frame(cx);
                        assert!(again.is_pending(), "a frame before the wake-up");
                        turns.push(ran.load(std::sync::atomic::Ordering::Relaxed));
                        return Poll::Pending;
                    }
                }
            })
            .await;
            neighbour.abort();
            assert_eq!(sent, len);
            turns
        });
        assert!(turns.len() >= 3, "{turns:?}");
        assert!(
            turns.windows(2).all(|w| w[1] > w[0]),
            "the other task ran: {turns:?}"
        );
    }

    /// A consumer that takes 1 ms to write each 1 MiB frame (a connection
    /// writing at 1 GiB/s, as HTTP/2 does here) gets the worker back after
    /// every frame: 500 µs passed, though only 1 MiB of the 2 went out.
    /// After a yield the body hands out its next frame at once.
    #[test]
    fn a_body_yields_after_half_a_millisecond_short_of_two_mib() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _inside = runtime.enter();
        let len = 8 << 20;
        let mut body = body(len);
        let mut cx = Context::from_waker(Waker::noop());
        let (mut pending_before, mut frames, mut pending, mut sent) = (Vec::new(), 0, 0, 0);
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(frame)) => {
                    sent += frame.unwrap().into_data().unwrap().len();
                    pending_before.push(pending);
                    pending = 0;
                    frames += 1;
                    // The connection writing the frame.
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Poll::Ready(None) => break,
                Poll::Pending => pending += 1,
            }
            assert!(pending < 3, "a yield is one Pending");
        }
        // Eight frames of 1 MiB, the last one short of its last byte, which
        // is a frame of its own (held back until the file is verified, and
        // sent as soon as it is: one byte holds no worker).
        assert_eq!((frames, sent), (9, len));
        assert_eq!(
            pending_before,
            [0, 1, 1, 1, 1, 1, 1, 1, 0],
            "one yield per frame"
        );
    }
}
