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
mod on_tokio;
#[cfg(not(feature = "tokio"))]
mod plain;
#[cfg(feature = "tokio")]
mod share;
#[cfg(all(test, feature = "tokio"))]
mod tests;
#[cfg(feature = "tokio")]
mod yielding;

#[cfg(feature = "tokio")]
use on_tokio as imp;
#[cfg(not(feature = "tokio"))]
use plain as imp;
