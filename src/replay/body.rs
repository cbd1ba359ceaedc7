//! [`ReplayBody`]: a request body that can be sent again.

use std::any::Any;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Empty, Full};

use super::length::LengthCheck;
use super::recording::{body_error, lock, poll_recorded, Cursor, Recording};
use super::spill::SpillConfig;
use crate::error::{BoxError, Error, ErrorKind};
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
    source: Source<B>,
    /// Shared by every clone: a failure that no replay can fix.
    outcome: Arc<Outcome>,
    /// This attempt held to its declared length.
    length: LengthCheck,
    /// This attempt ended with an error: it yields nothing more.
    failed: bool,
}

/// What every clone of one request's body, and the response future of the
/// request, know about it: the first failure that no replay can fix (a
/// truncated or changed file, a length mismatch, a failed original body, a
/// replay past the cap).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    failure: OnceLock<Error>,
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

enum Source<B> {
    /// A body that is cheap to clone: this attempt owns its own copy. The
    /// `Mutex` is only ever reached through `&mut` (no locking); it makes the
    /// body `Sync` for any `B: Send`.
    /// `None` if the copy could not be made (not for the known types).
    Cloned {
        body: Mutex<Option<Pin<Box<B>>>>,
        pristine: Arc<Pristine<B>>,
    },
    /// Any other body, recorded as it streams.
    Recorded {
        shared: Arc<Mutex<Recording<B>>>,
        cursor: Cursor,
    },
}

/// An untouched copy of a cheap-to-clone body and how to clone it.
struct Pristine<B> {
    body: Mutex<B>,
    clone: fn(&B) -> Option<B>,
    /// Whether a copy would still send what the first attempt was sending.
    intact: fn(&B) -> Result<(), Error>,
}

/// For an [`MmapBody`]: its file is unchanged now. A connection can break
/// on a changed file (a "broken pipe" over HTTP/2, say) before the body's
/// own check saw the change; the retry policy asks this before replaying.
fn intact_known<B: 'static>(body: &B) -> Result<(), Error> {
    match (body as &dyn Any).downcast_ref::<MmapBody>() {
        Some(body) => body.verify(),
        None => Ok(()),
    }
}

use crate::sync::get_mut;

/// Moves `value` into a `U` when `T` and `U` are the same type.
fn cast<T: 'static, U: 'static>(value: T) -> Option<U> {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
}

/// A fresh copy of `body`, from its start, for the body types known to
/// clone cheaply and restart (the poor man's specialisation axum-core uses
/// to avoid boxing twice).
fn clone_known<B: 'static>(body: &B) -> Option<B> {
    let any = body as &dyn Any;
    if let Some(body) = any.downcast_ref::<MmapBody>() {
        cast(body.clone())
    } else if let Some(body) = any.downcast_ref::<Full<Bytes>>() {
        cast(body.clone())
    } else if let Some(body) = any.downcast_ref::<Empty<Bytes>>() {
        cast(*body)
    } else {
        None
    }
}

fn clone_restartable<B: Clone>(body: &B) -> Option<B> {
    Some(body.clone())
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
        if clone_known(&body).is_some() {
            return ReplayBody::from_pristine(body, clone_known::<B>);
        }
        ReplayBody::recorded(Recording::new(body, max_replay_bytes, spill))
    }
}

impl<B> ReplayBody<B>
where
    B: Body<Data = Bytes> + Clone + 'static,
{
    /// Wraps a body whose clones restart it from the beginning and are
    /// cheap, so that replays clone it instead of recording it, at any size.
    ///
    /// The clone is taken before `body` is ever polled. Do not use it for
    /// bodies whose clones share a stream (a clone of a channel receiver
    /// would not send the bytes again).
    pub fn restartable(body: B) -> ReplayBody<B> {
        ReplayBody::from_pristine(body, clone_restartable::<B>)
    }
}

impl<B> ReplayBody<B> {
    fn with_source(source: Source<B>) -> ReplayBody<B> {
        ReplayBody {
            source,
            outcome: Arc::default(),
            length: LengthCheck::new(None),
            failed: false,
        }
    }

    fn recorded(recording: Recording<B>) -> ReplayBody<B> {
        ReplayBody::with_source(Source::Recorded {
            shared: Arc::new(Mutex::new(recording)),
            cursor: Cursor::default(),
        })
    }

    fn from_pristine(body: B, clone: fn(&B) -> Option<B>) -> ReplayBody<B>
    where
        B: Body + 'static,
    {
        match clone(&body) {
            Some(first) => ReplayBody::with_source(Source::Cloned {
                body: Mutex::new(Some(Box::pin(first))),
                pristine: Arc::new(Pristine {
                    body: Mutex::new(body),
                    clone,
                    intact: intact_known::<B>,
                }),
            }),
            // Unreachable for the clone functions above; without a copy the
            // body is still sent, just not replayable.
            None => ReplayBody::recorded(Recording::new(body, 0, None)),
        }
    }

    /// Makes every attempt check that it sends exactly `len` bytes: more or
    /// fewer ends the attempt with [`ErrorKind::ContentLengthMismatch`].
    pub(crate) fn expect_len(mut self, len: Option<u64>) -> ReplayBody<B> {
        self.length = LengthCheck::new(len);
        self
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

    /// [`is_replayable`](ReplayBody::is_replayable); with `record`, a file
    /// found changed is kept as the request's failure, for the response
    /// future (the caller learns the file changed, not only that the
    /// connection broke).
    fn replayable(&self, record: bool) -> bool {
        if self.outcome.failed() {
            return false;
        }
        match &self.source {
            Source::Cloned { pristine, .. } => match (pristine.intact)(&lock(&pristine.body)) {
                Ok(()) => true,
                Err(err) => {
                    if record {
                        self.outcome.record(&err);
                    }
                    false
                }
            },
            Source::Recorded { shared, .. } => lock(shared).is_replayable(),
        }
    }

    /// The state shared by every clone, for the response future.
    pub(crate) fn outcome(&self) -> Arc<Outcome> {
        Arc::clone(&self.outcome)
    }
}

impl<B> Clone for ReplayBody<B> {
    /// A body that sends everything again from the start.
    fn clone(&self) -> ReplayBody<B> {
        let source = match &self.source {
            Source::Cloned { pristine, .. } => {
                let copy = (pristine.clone)(&lock(&pristine.body));
                Source::Cloned {
                    body: Mutex::new(copy.map(Box::pin)),
                    pristine: Arc::clone(pristine),
                }
            }
            Source::Recorded { shared, .. } => Source::Recorded {
                shared: Arc::clone(shared),
                cursor: Cursor::default(),
            },
        };
        ReplayBody {
            source,
            outcome: Arc::clone(&self.outcome),
            length: self.length.restart(),
            failed: false,
        }
    }
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        // If this clone was the one pulling the original body, its waker is
        // the one registered there: let the others poll it instead.
        if let Source::Recorded { shared, .. } = &self.source {
            lock(shared).wake_all();
        }
    }
}

impl<B> std::fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.source {
            Source::Cloned { .. } => "cloned",
            Source::Recorded { .. } => "recorded",
        };
        f.debug_struct("ReplayBody")
            .field("mode", &mode)
            .field("replayable", &self.replayable(false))
            .field("expected_len", &self.length.expected())
            .field("sent", &self.length.sent())
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
        if this.failed {
            return Poll::Ready(None);
        }
        let out = this
            .length
            .poll(cx, &mut this.source, poll_source, source_is_end_stream);
        if let Poll::Ready(Some(Err(err))) = &out {
            this.outcome.record(err);
            this.failed = true;
            this.length.abandon();
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        if self.failed {
            return true;
        }
        self.length
            .is_end_stream(|| source_is_end_stream(&self.source))
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed || self.length.source_done() {
            return SizeHint::with_exact(self.length.held_len());
        }
        let (inner, behind) = match &self.source {
            Source::Cloned { body, .. } => {
                let hint = lock(body)
                    .as_ref()
                    .map_or_else(SizeHint::new, |b| b.size_hint());
                (hint, 0)
            }
            Source::Recorded { shared, cursor } => lock(shared).size_hint(cursor),
        };
        let behind = behind + self.length.held_len();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(behind));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(behind));
        }
        hint
    }
}

fn poll_source<B>(
    source: &mut Source<B>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, Error>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match source {
        Source::Cloned { body, .. } => match get_mut(body) {
            Some(body) => body
                .as_mut()
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(body_error))),
            None => Poll::Ready(Some(Err(Error::new(
                ErrorKind::ReplayBufferExceeded,
                "cannot replay the request body: its copy could not be made",
            )))),
        },
        Source::Recorded { shared, cursor } => poll_recorded(shared, cursor, cx),
    }
}

fn source_is_end_stream<B: Body>(source: &Source<B>) -> bool {
    match source {
        Source::Cloned { body, .. } => lock(body).as_ref().is_some_and(|b| b.is_end_stream()),
        Source::Recorded { shared, cursor } => lock(shared).is_end_stream(cursor),
    }
}
