//! Where one attempt of a [`ReplayBody`](super::ReplayBody) gets its
//! frames: [`Source`], its own copy of a body that is cheap to clone, or its
//! reading of the shared [`Recorded`] body. Either way a clone of the source
//! starts again from the start.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::recording::Recorded;
use super::restart::Restart;
use super::spill::SpillConfig;
use crate::error::{BoxError, Error, ErrorKind};
use crate::sync::{get_mut, lock};

/// The frames of one attempt, from the start.
pub(super) enum Source<B> {
    /// A body that is cheap to clone: this attempt owns its own copy. The
    /// `Mutex` is only ever reached through `&mut` (no locking) when
    /// polled; it makes the body `Sync` for any `B: Send`.
    /// `None` if the copy could not be made (not for the known types).
    Cloned {
        body: Mutex<Option<Pin<Box<B>>>>,
        pristine: Arc<Pristine<B>>,
        /// Leading bytes of `body` not to yield (a resumed upload's copy of
        /// a body that cannot be sliced).
        skip: u64,
    },
    /// Any other body, recorded as it streams.
    Recorded(Recorded<B>),
    /// No bytes at all: the body of a request that carries none of the
    /// original's (a resumed upload's offset query), sharing its state.
    #[cfg_attr(not(feature = "resume"), allow(dead_code))]
    Empty,
}

/// An untouched copy of a cheap-to-clone body and how to restart it.
pub(super) struct Pristine<B> {
    body: Mutex<B>,
    restart: Restart<B>,
}

/// What a body's error becomes: this crate's error as it is (an `MmapBody`
/// whose file was truncated keeps its kind), any other wrapped as
/// [`ErrorKind::Body`] with the original as its source.
pub(super) fn body_error(err: impl Into<BoxError>) -> Error {
    match err.into().downcast::<Error>() {
        Ok(ours) => *ours,
        Err(other) => Error::new(
            ErrorKind::Body,
            "the request body failed while being sent; see the source error",
        )
        .with_source(other),
    }
}

impl<B: Body + 'static> Source<B> {
    /// Copies of `body` made as `restart` says; recorded (with nothing
    /// kept, so sent once) if no copy can be made.
    pub(super) fn cloned(body: B, restart: Restart<B>) -> Source<B> {
        match (restart.clone)(&body) {
            Some(first) => Source::Cloned {
                body: Mutex::new(Some(Box::pin(first))),
                pristine: Arc::new(Pristine {
                    body: Mutex::new(body),
                    restart,
                }),
                skip: 0,
            },
            // Unreachable for the crate's restarts; without a copy the body
            // is still sent, just not replayable.
            None => Source::recorded(body, 0, None),
        }
    }
}

impl<B: Body> Source<B> {
    /// `body`, recorded as [`Recorded::new`] says.
    pub(super) fn recorded(body: B, cap: usize, spill: Option<Arc<SpillConfig>>) -> Source<B> {
        Source::Recorded(Recorded::new(body, cap, spill))
    }
}

impl<B> Source<B> {
    /// Whether a fresh clone can still send every byte: `Ok(false)` once a
    /// recording lost bytes, `Err` with the reason once the body behind a
    /// copy changed (its file was truncated or modified).
    pub(super) fn replayable(&self) -> Result<bool, Error> {
        match self {
            Source::Cloned { pristine, .. } => (pristine.restart.intact)(&lock(&pristine.body)),
            Source::Recorded(recorded) => Ok(recorded.is_replayable()),
            Source::Empty => Ok(true),
        }
    }

    /// The whole body's size, when it is known exactly.
    pub(super) fn full_size(&self) -> Option<u64>
    where
        B: Body,
    {
        match self {
            Source::Cloned { pristine, .. } => lock(&pristine.body).size_hint().exact(),
            Source::Recorded(recorded) => recorded.full_size(),
            Source::Empty => Some(0),
        }
    }

    /// See [`ReplayBody::replay_source`](super::ReplayBody).
    #[cfg_attr(not(all(feature = "tracing", feature = "retry")), allow(dead_code))]
    pub(super) fn replay_source(&self) -> &'static str {
        match self {
            Source::Cloned { .. } | Source::Empty => "clone",
            Source::Recorded(recorded) if recorded.spilling() => "spill",
            Source::Recorded(_) => "memory",
        }
    }

    /// `"cloned"` or `"recorded"`, for `Debug`.
    pub(super) fn mode(&self) -> &'static str {
        match self {
            Source::Cloned { .. } => "cloned",
            Source::Recorded(_) => "recorded",
            Source::Empty => "empty",
        }
    }
}

impl<B> Source<B> {
    /// The same frames again, from byte `offset` on: an [`MmapBody`](crate::MmapBody) is
    /// sliced, a recording is read from there (frames kept in memory are
    /// sliced, the spill file is mapped from there), any other copy skips
    /// its first `offset` bytes as it yields them.
    pub(super) fn starting_at(&self, offset: u64) -> Result<Source<B>, Error> {
        match self {
            Source::Cloned { pristine, .. } => {
                let original = lock(&pristine.body);
                let (copy, skip) = match (pristine.restart.slice)(&original, offset) {
                    Some(tail) => (Some(tail?), 0),
                    None => ((pristine.restart.clone)(&original), offset),
                };
                Ok(Source::Cloned {
                    body: Mutex::new(copy.map(Box::pin)),
                    pristine: Arc::clone(pristine),
                    skip,
                })
            }
            Source::Recorded(recorded) => Ok(Source::Recorded(recorded.starting_at(offset))),
            Source::Empty => Ok(Source::Empty),
        }
    }
}

impl<B> Clone for Source<B> {
    /// The same frames again, from the start.
    fn clone(&self) -> Source<B> {
        match self {
            Source::Cloned { pristine, .. } => {
                let copy = (pristine.restart.clone)(&lock(&pristine.body));
                Source::Cloned {
                    body: Mutex::new(copy.map(Box::pin)),
                    pristine: Arc::clone(pristine),
                    skip: 0,
                }
            }
            Source::Recorded(recorded) => Source::Recorded(recorded.clone()),
            Source::Empty => Source::Empty,
        }
    }
}

impl<B> Body for Source<B>
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
        match self.get_mut() {
            Source::Cloned { body, skip, .. } => match get_mut(body) {
                Some(body) => loop {
                    let polled = body
                        .as_mut()
                        .poll_frame(cx)
                        .map(|frame| frame.map(|frame| frame.map_err(body_error)));
                    match polled {
                        Poll::Ready(Some(Ok(frame))) if *skip > 0 => {
                            if let Some(frame) = skip_bytes(frame, skip) {
                                return Poll::Ready(Some(Ok(frame)));
                            }
                        }
                        other => return other,
                    }
                },
                None => Poll::Ready(Some(Err(Error::new(
                    ErrorKind::ReplayBufferExceeded,
                    "cannot replay the request body: its copy could not be made",
                )))),
            },
            Source::Recorded(recorded) => Pin::new(recorded).poll_frame(cx),
            Source::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Source::Cloned { body, .. } => lock(body).as_ref().is_some_and(|b| b.is_end_stream()),
            Source::Recorded(recorded) => recorded.is_end_stream(),
            Source::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Source::Cloned { body, skip, .. } => lock(body)
                .as_ref()
                .map_or_else(SizeHint::new, |b| less(b.size_hint(), *skip)),
            Source::Recorded(recorded) => recorded.size_hint(),
            Source::Empty => SizeHint::with_exact(0),
        }
    }
}

/// `frame` without the first `*skip` bytes of data, counted off `*skip`;
/// `None` when nothing of it is left to yield. Trailers pass.
pub(super) fn skip_bytes(frame: Frame<Bytes>, skip: &mut u64) -> Option<Frame<Bytes>> {
    match frame.into_data() {
        Ok(data) => {
            let dropped = usize::try_from(*skip).map_or(data.len(), |skip| skip.min(data.len()));
            *skip -= dropped as u64;
            (dropped < data.len()).then(|| Frame::data(data.slice(dropped..)))
        }
        Err(frame) => Some(frame),
    }
}

/// `hint` less `bytes` that will not be yielded.
pub(super) fn less(hint: SizeHint, bytes: u64) -> SizeHint {
    let mut out = SizeHint::new();
    out.set_lower(hint.lower().saturating_sub(bytes));
    if let Some(upper) = hint.upper() {
        out.set_upper(upper.saturating_sub(bytes));
    }
    out
}
