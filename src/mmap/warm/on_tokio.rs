//! [`Warm`] inside a tokio runtime: the body's share of its worker, its
//! yields, and its pages read in on the blocking pool.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tokio::task::JoinHandle;

use super::share::{share, streaming_here, Streaming};
pub(super) use super::yielding::defer;
use super::yielding::Resume;
use super::{Warm, AHEAD, YIELD_AFTER};
use crate::mmap::mapping::Mapping;

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
