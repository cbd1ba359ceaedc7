//! [`ReplayBody`]: a request body that can be sent again.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::exact::ExactLength;
use super::restart::{self, Restart};
use super::source::Source;
use super::spill::SpillConfig;
#[cfg(doc)]
use crate::error::ErrorKind;
use crate::error::{BoxError, Error};
#[cfg(doc)]
use crate::MmapBody;

/// A request body that can be sent again: every clone replays it from the
/// start.
///
/// Made by [`ReplayLayer`](crate::ReplayLayer) for every request, or by hand
/// with [`ReplayBody::new`]. How a clone gets the bytes again depends on the
/// body:
///
/// - Bodies that are cheap to clone and restart ([`MmapBody`],
///   [`http_body_util::Full<Bytes>`], [`http_body_util::Empty<Bytes>`], or any
///   body given to [`ReplayBody::restartable`]) are cloned: nothing is
///   recorded, any size is replayable, and the cap does not apply.
/// - Any other body is recorded while it streams: each data frame is kept as
///   a [`Bytes`] clone (a reference count, no copy) and trailers are kept,
///   up to `max_replay_bytes`. A clone replays the recorded frames and then
///   goes on pulling from the original body, so a retry after the server
///   read only part of the body (a 503 or a dropped connection mid-upload)
///   still sends all of it.
///
/// Once more than `max_replay_bytes` have gone out, the rest is kept on disk
/// if [`ReplayLayer::spill_to_disk`](crate::ReplayLayer) asked for it (a
/// replay reads it back as [`MmapBody`] slices), up to its limit. Past what
/// can be kept (or when the spill file cannot be written), the recording is
/// freed, the attempt in flight goes on normally, [`is_replayable`] turns
/// false, and a clone that needs the lost bytes yields an
/// [`ErrorKind::ReplayBufferExceeded`] (or `SpillFailed`) error. A body
/// whose exact size is known to exceed what can be kept is never recorded;
/// it can still be sent again if no byte of it was taken yet (a connection
/// refused before the upload began).
///
/// # Clones on several tasks
///
/// Clones may be polled from different tasks, one after another or at the
/// same time. They read the same recorded frames; the original body is
/// pulled by whichever clone first needs a frame not recorded yet, and the
/// others read that frame from the recording when they get there (a clone
/// waiting for it is woken). No clone ever sees another's bytes out of
/// order. Past the cap only the clone that is furthest along can go on; the
/// others fail as above.
///
/// [`is_replayable`]: ReplayBody::is_replayable
pub struct ReplayBody<B> {
    /// This attempt: its source's frames, held to the declared length.
    attempt: ExactLength<Source<B>>,
    /// Shared by every clone: a failure that no replay can fix.
    outcome: Arc<Outcome>,
}

/// What every clone of one request's body, and the response future of the
/// request, know about it: the first failure that no replay can fix (a
/// truncated or changed file, a length mismatch, a failed original body, a
/// replay past the cap).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    failure: OnceLock<Error>,
    /// The resumable upload this request's attempts take part in.
    #[cfg(feature = "resume")]
    pub(crate) session: OnceLock<Arc<crate::resume::Session>>,
}

impl Outcome {
    fn record(&self, err: &Error) {
        if err.is_permanent() {
            let _ = self.failure.set(err.clone());
        }
    }

    /// The recorded failure, if any: this crate's error, with the body's
    /// own chain behind it.
    pub(crate) fn failure(&self) -> Option<Error> {
        self.failure.get().cloned()
    }

    fn failed(&self) -> bool {
        self.failure.get().is_some()
    }
}

impl<B> ReplayBody<B>
where
    B: Body<Data = Bytes> + 'static,
{
    /// Wraps `body` so that it can be sent again, recording at most
    /// `max_replay_bytes` of it unless it is cheap to clone (see the type's
    /// docs).
    pub fn new(body: B, max_replay_bytes: usize) -> ReplayBody<B> {
        ReplayBody::with_spill(body, max_replay_bytes, None)
    }

    /// [`new`](ReplayBody::new), keeping bytes past `max_replay_bytes` on
    /// disk as `spill` says.
    pub(crate) fn with_spill(
        body: B,
        max_replay_bytes: usize,
        spill: Option<Arc<SpillConfig>>,
    ) -> ReplayBody<B> {
        restart::register::<B>();
        let source = match Restart::find() {
            Some(restart) => Source::cloned(body, restart),
            None => Source::recorded(body, max_replay_bytes, spill),
        };
        ReplayBody::with_source(source)
    }
}

impl<B> ReplayBody<B>
where
    B: Body<Data = Bytes> + Clone + 'static,
{
    /// Wraps a body whose clones restart it from the beginning and are
    /// cheap, so that replays clone it instead of recording it, at any size.
    ///
    /// This is how a body of your own is declared restartable: a
    /// [`ReplayLayer`](crate::ReplayLayer) it passes through clones it too
    /// (at any size, whatever its cap) and still holds each attempt to the
    /// request's `Content-Length`.
    ///
    /// The clone is taken before `body` is ever polled. Do not use it for
    /// bodies whose clones share a stream (a clone of a channel receiver
    /// would not send the bytes again).
    pub fn restartable(body: B) -> ReplayBody<B> {
        restart::register::<B>();
        ReplayBody::with_source(Source::cloned(body, Restart::by_clone()))
    }
}

impl<B> ReplayBody<B> {
    fn with_source(source: Source<B>) -> ReplayBody<B> {
        ReplayBody {
            attempt: ExactLength::new(source, None),
            outcome: Arc::default(),
        }
    }

    /// Makes every attempt check that it sends exactly `len` bytes: more or
    /// fewer ends the attempt with [`ErrorKind::ContentLengthMismatch`].
    pub(crate) fn expect_len(self, len: Option<u64>) -> ReplayBody<B> {
        ReplayBody {
            attempt: ExactLength::new(self.attempt.into_inner(), len),
            outcome: self.outcome,
        }
    }

    /// `false` once a clone of this body can no longer be sent in full: its
    /// recording passed `max_replay_bytes` (or, with a spill, its limit; or
    /// the spill file could not be written), or its size was known to
    /// exceed that and bytes were already taken, or any clone of it failed
    /// for good (the original body failed, a file behind it was truncated
    /// or changed, it was longer or shorter than its `Content-Length`).
    ///
    /// For bodies that are cloned instead of recorded, otherwise always
    /// `true`, except for an [`MmapBody`] whose file is no longer as it was
    /// mapped ([`MmapBody::verify`], one `fstat`).
    pub fn is_replayable(&self) -> bool {
        self.replayable(true)
    }

    /// Whether a clone can still send every byte, as
    /// [`is_replayable`](ReplayBody::is_replayable), with the failure that
    /// ended it where there is one: how a `ReplayBody` wrapped again (by a
    /// `ReplayLayer` it is handed to) answers its wrapper.
    pub(super) fn check_replayable(&self) -> Result<bool, Error> {
        match self.outcome.failure() {
            Some(failure) => Err(failure),
            None => self.attempt.get_ref().replayable(),
        }
    }

    /// [`is_replayable`](ReplayBody::is_replayable); with `record`, a file
    /// found changed is kept as the request's failure, for the response
    /// future (the caller learns the file changed, not only that the
    /// connection broke).
    fn replayable(&self, record: bool) -> bool {
        if self.outcome.failed() {
            return false;
        }
        match self.attempt.get_ref().replayable() {
            Ok(replayable) => replayable,
            Err(changed) => {
                if record {
                    self.outcome.record(&changed);
                }
                false
            }
        }
    }

    /// A body that sends this one from byte `offset` on, as a resumed
    /// upload does once the server said it holds the first `offset` bytes.
    ///
    /// Like a clone it shares this body's recording and failures, and it
    /// is held to the declared length less `offset`. An [`MmapBody`] is
    /// sliced (the pages before `offset` are not read); a recording is read
    /// from `offset` on, its spill file mapped from there; any other
    /// cheap-to-clone body is sent from the start with its first `offset`
    /// bytes left out.
    ///
    /// An `offset` past the body's known size is an
    /// [`ErrorKind::OutOfRange`] error; one past what a recording still
    /// holds fails the body as a replay past the cap does.
    pub fn resume_from(&self, offset: u64) -> Result<ReplayBody<B>, Error>
    where
        B: Body,
    {
        let size = self
            .attempt
            .expected()
            .or_else(|| self.attempt.get_ref().full_size());
        if let Some(size) = size.filter(|&size| offset > size) {
            return Err(Error::new(
                crate::error::ErrorKind::OutOfRange,
                format!(
                    "cannot resume at byte {offset} of a {size}-byte body: the server reports \
                     holding more than the body has"
                ),
            ));
        }
        let source = self.attempt.get_ref().starting_at(offset)?;
        let expected = self.attempt.expected().map(|len| len - offset);
        Ok(ReplayBody {
            attempt: ExactLength::new(source, expected),
            outcome: Arc::clone(&self.outcome),
        })
    }

    /// A body of no bytes that shares this one's state (its failures,
    /// and the resumable-upload session of its request), for a request
    /// sent on this body's behalf that carries none of it.
    #[cfg(feature = "resume")]
    pub(crate) fn empty_sibling(&self) -> ReplayBody<B> {
        ReplayBody {
            attempt: ExactLength::new(Source::Empty, Some(0)),
            outcome: Arc::clone(&self.outcome),
        }
    }

    /// The resumable upload this request's attempts share.
    #[cfg(feature = "resume")]
    pub(crate) fn resume_session(&self) -> Arc<crate::resume::Session> {
        Arc::clone(self.outcome.session.get_or_init(Default::default))
    }

    /// Part of this body is held by an upload resource, so a retry sends
    /// only the rest (see [`crate::resume`]).
    #[cfg(feature = "resume")]
    pub(crate) fn is_resuming(&self) -> bool {
        self.outcome.session.get().is_some_and(|s| s.resuming())
    }

    /// Where a replay of this body reads it from: `"clone"` (a fresh copy of
    /// a cheap body), `"memory"` (the recording), `"spill"` (the recording,
    /// partly on disk), for `tracing`.
    #[cfg_attr(not(all(feature = "tracing", feature = "retry")), allow(dead_code))]
    pub(crate) fn replay_source(&self) -> &'static str {
        self.attempt.get_ref().replay_source()
    }

    /// The state shared by every clone, for the response future.
    pub(crate) fn outcome(&self) -> Arc<Outcome> {
        Arc::clone(&self.outcome)
    }
}

impl<B> Clone for ReplayBody<B> {
    /// A body that sends everything again from the start.
    fn clone(&self) -> ReplayBody<B> {
        ReplayBody {
            attempt: self.attempt.restart(),
            outcome: Arc::clone(&self.outcome),
        }
    }
}

impl<B> std::fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayBody")
            .field("mode", &self.attempt.get_ref().mode())
            .field("replayable", &self.replayable(false))
            .field("expected_len", &self.attempt.expected())
            .field("sent", &self.attempt.sent())
            .finish()
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let out = Pin::new(&mut this.attempt).poll_frame(cx);
        if let Poll::Ready(Some(Err(err))) = &out {
            this.outcome.record(err);
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.attempt.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.attempt.size_hint()
    }
}
