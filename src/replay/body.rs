//! [`ReplayBody`]: a request body that can be sent again.

use std::any::Any;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{ready, Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Empty, Full};

use crate::error::{Error, ErrorKind};
use crate::MmapBody;

use crate::error::BoxError;

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
/// Once more than `max_replay_bytes` have gone out, the recording is freed,
/// the attempt in flight goes on normally, [`is_replayable`] turns false,
/// and a clone that needs the lost bytes yields an
/// [`ErrorKind::ReplayBufferExceeded`] error. A body whose exact size is
/// known to exceed the cap is never recorded; it can still be sent again if
/// no byte of it was taken yet (a connection refused before the upload
/// began).
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
    /// Bytes this attempt must send in all (from `Content-Length`).
    expected_len: Option<u64>,
    /// Bytes this attempt has yielded so far.
    sent: u64,
    /// This attempt ended with an error: it yields nothing more.
    failed: bool,
    /// The frame that completed the declared length, held back until the
    /// body shows it has nothing more.
    held: Option<Bytes>,
    /// A trailers frame to yield after `held`.
    queued: Option<Frame<Bytes>>,
    /// The source returned `None`.
    source_done: bool,
}

/// What every clone of one request's body, and the response future of the
/// request, know about it: the first failure that no replay can fix (a
/// truncated or changed file, a length mismatch, a failed original body, a
/// replay past the cap).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    failure: OnceLock<(ErrorKind, String)>,
}

impl Outcome {
    fn record(&self, err: &Error) {
        if err.is_permanent() {
            let _ = self.failure.set((err.kind(), err.to_string()));
        }
    }

    /// The recorded failure as a new error, if any.
    pub(crate) fn failure(&self) -> Option<Error> {
        let (kind, message) = self.failure.get()?;
        Some(Error::new(
            *kind,
            format!("the request body failed, so the request was not completed: {message}"),
        ))
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
}

/// Where one clone is in a recorded body.
#[derive(Clone, Copy, Default)]
struct Cursor {
    /// Index of the next recorded frame to replay.
    frame: usize,
    /// Bytes this clone has read.
    pos: u64,
    /// This clone has yielded the trailers.
    trailers_sent: bool,
}

struct Recording<B> {
    body: Pin<Box<B>>,
    /// The data frames pulled from `body`, while recording.
    frames: Vec<Bytes>,
    /// Bytes pulled from `body`.
    pulled: u64,
    /// Still recording: `false` once `cap` was passed (the frames are freed).
    recording: bool,
    cap: usize,
    trailers: Option<HeaderMap>,
    /// `body` returned `None`.
    ended: bool,
    /// `body` failed; its message, for the clones that reach that point.
    failure: Option<String>,
    /// Clones waiting for a frame another clone is pulling.
    waiters: Vec<Waker>,
}

impl<B> Recording<B> {
    /// A recording of `body` that keeps up to `cap` bytes, if `recording`.
    fn source(body: B, cap: usize, recording: bool) -> Source<B> {
        Source::Recorded {
            shared: Arc::new(Mutex::new(Recording {
                body: Box::pin(body),
                frames: Vec::new(),
                pulled: 0,
                recording,
                cap,
                trailers: None,
                ended: false,
                failure: None,
                waiters: Vec::new(),
            })),
            cursor: Cursor::default(),
        }
    }

    fn wake_all(&mut self) {
        for waker in self.waiters.drain(..) {
            waker.wake();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while the lock was held leaves nothing half-written that later
    // polls could misread: each field is updated in one step.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn get_mut<T>(mutex: &mut Mutex<T>) -> &mut T {
    mutex.get_mut().unwrap_or_else(PoisonError::into_inner)
}

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
        if clone_known(&body).is_some() {
            return ReplayBody::from_pristine(body, clone_known::<B>);
        }
        let too_big = body
            .size_hint()
            .exact()
            .is_some_and(|len| len > max_replay_bytes as u64);
        ReplayBody::with_source(Recording::source(body, max_replay_bytes, !too_big))
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
            expected_len: None,
            sent: 0,
            failed: false,
            held: None,
            queued: None,
            source_done: false,
        }
    }

    fn from_pristine(body: B, clone: fn(&B) -> Option<B>) -> ReplayBody<B> {
        match clone(&body) {
            Some(first) => ReplayBody::with_source(Source::Cloned {
                body: Mutex::new(Some(Box::pin(first))),
                pristine: Arc::new(Pristine {
                    body: Mutex::new(body),
                    clone,
                }),
            }),
            // Unreachable for the clone functions above; without a copy the
            // body is still sent, just not replayable.
            None => ReplayBody::with_source(Recording::source(body, 0, false)),
        }
    }

    /// Makes every attempt check that it sends exactly `len` bytes: more or
    /// fewer ends the attempt with [`ErrorKind::ContentLengthMismatch`].
    pub(crate) fn expect_len(mut self, len: Option<u64>) -> ReplayBody<B> {
        self.expected_len = len;
        self
    }

    /// `false` once a clone of this body can no longer be sent in full: its
    /// recording passed `max_replay_bytes` (or its size was known to exceed
    /// it and bytes were already taken), or any clone of it failed for good
    /// (the original body failed, a file behind it was truncated or
    /// changed, it was longer or shorter than its `Content-Length`).
    ///
    /// Otherwise always `true` for bodies that are cloned instead of
    /// recorded.
    pub fn is_replayable(&self) -> bool {
        if self.outcome.failed() {
            return false;
        }
        match &self.source {
            Source::Cloned { .. } => true,
            Source::Recorded { shared, .. } => {
                let rec = lock(shared);
                rec.failure.is_none() && (rec.recording || rec.pulled == 0)
            }
        }
    }
}

impl<B> ReplayBody<B> {
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
            expected_len: self.expected_len,
            sent: 0,
            failed: false,
            held: None,
            queued: None,
            source_done: false,
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
            .field("replayable", &self.is_replayable())
            .field("expected_len", &self.expected_len)
            .field("sent", &self.sent)
            .finish()
    }
}

fn body_error(err: impl Into<BoxError>) -> Error {
    let err = err.into();
    // A body that already fails with this crate's error (an `MmapBody`
    // whose file was truncated) is passed through as it is, kind and all.
    let err = match err.downcast::<Error>() {
        Ok(ours) => return *ours,
        Err(other) => other,
    };
    Error::new(
        ErrorKind::Body,
        "the request body failed while being sent; see the source error",
    )
    .with_source(err)
}

/// One step of a recorded body for one clone.
fn poll_recorded<B>(
    shared: &Mutex<Recording<B>>,
    cursor: &mut Cursor,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, Error>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut rec = lock(shared);
    // Replay what is recorded first.
    if rec.recording && cursor.frame < rec.frames.len() {
        let data = rec.frames[cursor.frame].clone();
        cursor.frame += 1;
        cursor.pos += data.len() as u64;
        return Poll::Ready(Some(Ok(Frame::data(data))));
    }
    if cursor.pos < rec.pulled {
        // The bytes this clone needs were sent and not kept.
        return Poll::Ready(Some(Err(Error::new(
            ErrorKind::ReplayBufferExceeded,
            format!(
                "cannot replay the request body: {} bytes were sent but at most {} are \
                 kept for replay; raise max_replay_bytes, or send a body that can be \
                 cloned (MmapBody, Full<Bytes>)",
                rec.pulled, rec.cap
            ),
        ))));
    }
    if let Some(failure) = &rec.failure {
        return Poll::Ready(Some(Err(Error::new(
            ErrorKind::Body,
            format!("the original request body failed, so it cannot be replayed: {failure}"),
        ))));
    }
    if rec.trailers.is_some() || rec.ended {
        if !cursor.trailers_sent {
            cursor.trailers_sent = true;
            if let Some(trailers) = rec.trailers.clone() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
        }
        return Poll::Ready(None);
    }
    // This clone is at the front: pull the next frame from the original.
    let rec = &mut *rec;
    match rec.body.as_mut().poll_frame(cx) {
        Poll::Pending => {
            if !rec.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                rec.waiters.push(cx.waker().clone());
            }
            Poll::Pending
        }
        Poll::Ready(None) => {
            rec.ended = true;
            rec.wake_all();
            cursor.trailers_sent = true;
            Poll::Ready(None)
        }
        Poll::Ready(Some(Err(err))) => {
            let err = body_error(err);
            rec.failure =
                Some(std::error::Error::source(&err).map_or_else(String::new, |s| s.to_string()));
            rec.frames = Vec::new();
            rec.wake_all();
            Poll::Ready(Some(Err(err)))
        }
        Poll::Ready(Some(Ok(frame))) => {
            let frame = match frame.into_data() {
                Ok(data) => {
                    let len = data.len() as u64;
                    rec.pulled += len;
                    if rec.recording {
                        if rec.pulled > rec.cap as u64 {
                            rec.recording = false;
                            rec.frames = Vec::new();
                        } else {
                            rec.frames.push(data.clone());
                            cursor.frame += 1;
                        }
                    }
                    cursor.pos += len;
                    Frame::data(data)
                }
                Err(frame) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        rec.trailers = Some(trailers.clone());
                        cursor.trailers_sent = true;
                    }
                    frame
                }
            };
            rec.wake_all();
            Poll::Ready(Some(Ok(frame)))
        }
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
        let out = this.poll_checked(cx);
        if let Poll::Ready(Some(Err(err))) = &out {
            this.outcome.record(err);
            this.failed = true;
            this.held = None;
            this.queued = None;
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        if self.failed {
            return true;
        }
        if self.held.is_some() || self.queued.is_some() {
            return false;
        }
        if self.expected_len.is_some_and(|len| self.sent < len) {
            // Poll once more so that a short body is reported, not sent.
            return false;
        }
        self.source_done || self.source_is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed || self.source_done {
            return SizeHint::with_exact(self.held.as_ref().map_or(0, |d| d.len() as u64));
        }
        let (inner, behind) = match &self.source {
            Source::Cloned { body, .. } => {
                let hint = lock(body)
                    .as_ref()
                    .map_or_else(SizeHint::new, |b| b.size_hint());
                (hint, 0)
            }
            Source::Recorded { shared, cursor } => {
                let rec = lock(shared);
                let inner = if rec.ended {
                    SizeHint::with_exact(0)
                } else {
                    rec.body.size_hint()
                };
                (inner, rec.pulled.saturating_sub(cursor.pos))
            }
        };
        let behind = behind + self.held.as_ref().map_or(0, |d| d.len() as u64);
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(behind));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(behind));
        }
        hint
    }
}

impl<B> ReplayBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    fn poll_source(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match &mut self.source {
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

    /// The next frame of this attempt, held to the declared length.
    ///
    /// When a data frame completes the declared length and the body does not
    /// say it has ended, that frame is held back while the body is polled
    /// once more: hyper stops reading a body once its `Content-Length` is
    /// written, so a body with more to give would otherwise be cut short
    /// without anyone noticing.
    fn poll_checked(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        if let Some(frame) = self.queued.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if self.source_done {
            return self.check_complete();
        }
        loop {
            match ready!(self.poll_source(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if self.held.is_some() && data.is_empty() => continue,
                    Ok(_) if self.held.is_some() => return Poll::Ready(Some(Err(self.too_long()))),
                    Ok(data) => {
                        let sent = self.sent + data.len() as u64;
                        match self.expected_len {
                            Some(expected) if sent > expected => {
                                return Poll::Ready(Some(Err(self.too_long())));
                            }
                            Some(expected) if sent == expected && !self.source_is_end_stream() => {
                                self.sent = sent;
                                self.held = Some(data);
                                continue;
                            }
                            _ => {
                                self.sent = sent;
                                return Poll::Ready(Some(Ok(Frame::data(data))));
                            }
                        }
                    }
                    Err(trailers) => match self.held.take() {
                        Some(data) => {
                            self.queued = Some(trailers);
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        None => return Poll::Ready(Some(Ok(trailers))),
                    },
                },
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => {
                    self.source_done = true;
                    return match self.held.take() {
                        Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                        None => self.check_complete(),
                    };
                }
            }
        }
    }
}

impl<B> ReplayBody<B>
where
    B: Body,
{
    fn source_is_end_stream(&self) -> bool {
        match &self.source {
            Source::Cloned { body, .. } => lock(body).as_ref().is_some_and(|b| b.is_end_stream()),
            Source::Recorded { shared, cursor } => {
                let rec = lock(shared);
                let trailers_pending = rec.trailers.is_some() && !cursor.trailers_sent;
                cursor.pos == rec.pulled
                    && rec.failure.is_none()
                    && !trailers_pending
                    && (rec.ended || rec.trailers.is_some() || rec.body.is_end_stream())
            }
        }
    }
}

impl<B> ReplayBody<B> {
    fn too_long(&self) -> Error {
        Error::new(
            ErrorKind::ContentLengthMismatch,
            format!(
                "the request body produced more than its Content-Length of {} bytes; \
                 the request was failed rather than sent cut short. Fix the \
                 Content-Length header or the body",
                self.expected_len.unwrap_or_default()
            ),
        )
    }

    /// At the end of the body: were all declared bytes sent?
    fn check_complete(&mut self) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.expected_len {
            Some(expected) if self.sent < expected => Poll::Ready(Some(Err(Error::new(
                ErrorKind::ContentLengthMismatch,
                format!(
                    "the request body ended after {} of the {expected} bytes its \
                     Content-Length declared; the request was failed rather than sent \
                     truncated. Fix the Content-Length header or the body",
                    self.sent
                ),
            )))),
            _ => Poll::Ready(None),
        }
    }
}
