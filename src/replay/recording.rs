//! The recording of a streamed body that every clone of a
//! [`ReplayBody`](super::ReplayBody) shares, and [`Recorded`], one clone's
//! reading of it: the original body is pulled by whichever clone is at the
//! front, and the others read what it pulled from the
//! [`Storage`] when they get there.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::source::{body_error, less, skip_bytes};
use super::spill::SpillConfig;
use super::storage::{OnDisk, Storage};
use crate::error::{BoxError, Error};
use crate::sync::lock;
use crate::MmapBody;

/// The state shared by the clones of a recorded body.
struct Recording<B> {
    body: Pin<Box<B>>,
    storage: Storage,
    /// Bytes pulled from `body`.
    pulled: u64,
    trailers: Option<HeaderMap>,
    /// `body` returned `None`.
    ended: bool,
    /// `body` failed: its error, for the other clones.
    failure: Option<Error>,
    /// Clones waiting for a frame another clone is pulling.
    waiters: Vec<Waker>,
}

/// Where one clone is in a recorded body.
#[derive(Default)]
struct Cursor {
    /// Index of the next frame kept in memory to replay.
    frame: usize,
    /// Bytes this clone has read.
    pos: u64,
    /// The spilled bytes this clone is replaying now.
    spilled: Option<MmapBody>,
    /// This clone has yielded the trailers.
    trailers_sent: bool,
    /// Bytes still to pass over without yielding them (a read from an
    /// offset on); they count in `pos` as they are passed.
    skip: u64,
}

/// One clone's reading of a recorded body: a body that yields it from the
/// start. Its clones read the same recording, each from the start.
pub(super) struct Recorded<B> {
    shared: Arc<Mutex<Recording<B>>>,
    cursor: Cursor,
}

impl<B: Body> Recorded<B> {
    /// A recording of `body` that keeps up to `cap` bytes in memory and,
    /// with `spill`, the rest on disk up to its limit. A body whose exact
    /// size is known to exceed what can be kept is not recorded at all.
    pub(super) fn new(body: B, cap: usize, spill: Option<Arc<SpillConfig>>) -> Recorded<B> {
        let storage = Storage::new(cap, spill, body.size_hint().exact());
        let recording = Recording {
            body: Box::pin(body),
            storage,
            pulled: 0,
            trailers: None,
            ended: false,
            failure: None,
            waiters: Vec::new(),
        };
        Recorded {
            shared: Arc::new(Mutex::new(recording)),
            cursor: Cursor::default(),
        }
    }
}

impl<B> Recorded<B> {
    /// A new clone may still get every byte.
    pub(super) fn is_replayable(&self) -> bool {
        let mut rec = lock(&self.shared);
        rec.storage.check_spill();
        rec.failure.is_none() && (rec.storage.is_lossless() || rec.pulled == 0)
    }
}

impl<B> Recorded<B> {
    /// The whole body's size, when it is known exactly: what was pulled
    /// and what the original says is left.
    pub(super) fn full_size(&self) -> Option<u64>
    where
        B: Body,
    {
        let rec = lock(&self.shared);
        if rec.ended {
            return Some(rec.pulled);
        }
        rec.body.size_hint().exact().map(|left| rec.pulled + left)
    }

    /// Part of the recording is on disk.
    #[cfg_attr(not(all(feature = "tracing", feature = "retry")), allow(dead_code))]
    pub(super) fn spilling(&self) -> bool {
        lock(&self.shared).storage.spill().is_some()
    }

    /// The same recording, read from byte `offset` on.
    pub(super) fn starting_at(&self, offset: u64) -> Recorded<B> {
        Recorded {
            shared: Arc::clone(&self.shared),
            cursor: Cursor {
                skip: offset,
                ..Cursor::default()
            },
        }
    }
}

impl<B> Clone for Recorded<B> {
    /// The same recording, read from the start.
    fn clone(&self) -> Recorded<B> {
        Recorded {
            shared: Arc::clone(&self.shared),
            cursor: Cursor::default(),
        }
    }
}

impl<B> Drop for Recorded<B> {
    fn drop(&mut self) {
        // If this clone was the one pulling the original body, its waker is
        // the one registered there: let the others poll it instead.
        lock(&self.shared).wake_all();
    }
}

impl<B> Recording<B> {
    fn wake_all(&mut self) {
        for waker in self.waiters.drain(..) {
            waker.wake();
        }
    }

    fn wait(&mut self, cx: &Context<'_>) {
        if !self.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            self.waiters.push(cx.waker().clone());
        }
    }
}

impl<B> Body for Recorded<B>
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
        poll_recorded(&this.shared, &mut this.cursor, cx)
    }

    /// This clone has read everything and the original body says it is
    /// done.
    fn is_end_stream(&self) -> bool {
        let rec = lock(&self.shared);
        let cursor = &self.cursor;
        let trailers_pending = rec.trailers.is_some() && !cursor.trailers_sent;
        cursor.pos == rec.pulled
            && cursor.spilled.is_none()
            && rec.failure.is_none()
            && !trailers_pending
            && (rec.ended || rec.trailers.is_some() || rec.body.is_end_stream())
    }

    /// What is left of the original body, and the bytes it already gave
    /// that this clone has not read yet.
    fn size_hint(&self) -> SizeHint {
        let rec = lock(&self.shared);
        let inner = if rec.ended {
            SizeHint::with_exact(0)
        } else {
            rec.body.size_hint()
        };
        let behind = rec.pulled.saturating_sub(self.cursor.pos);
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(behind));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(behind));
        }
        less(hint, self.cursor.skip)
    }
}

/// The error of a replay that reached the point where the original failed.
fn failed_original(failure: &Error) -> Error {
    Error::new(
        failure.kind(),
        "the original request body failed, so it cannot be replayed; see the source error",
    )
    .with_source(failure.clone())
}

/// One step of a recorded body for the clone at `cursor`.
fn poll_recorded<B>(
    shared: &Mutex<Recording<B>>,
    cursor: &mut Cursor,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, Error>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut guard = lock(shared);
    let rec = &mut *guard;
    rec.storage.check_spill();
    loop {
        // 1. Frames kept in memory.
        if let Some(data) = rec.storage.frame(cursor.frame) {
            let data = data.clone();
            cursor.frame += 1;
            cursor.pos += data.len() as u64;
            match skip_bytes(Frame::data(data), &mut cursor.skip) {
                Some(frame) => return Poll::Ready(Some(Ok(frame))),
                None => continue,
            }
        }
        // 2. Bytes kept on disk, read back as an `MmapBody`.
        if let Some(spilled) = &mut cursor.spilled {
            match Pin::new(spilled).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                    cursor.pos += len;
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(err))) => {
                    cursor.spilled = None;
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(None) => {
                    cursor.spilled = None;
                    continue;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        if let Some(failure) = &rec.failure {
            return Poll::Ready(Some(Err(failed_original(failure))));
        }
        // 3. Bytes that were pulled and are not in memory: on disk, or lost.
        // Bytes to pass over are stepped over there, not read back.
        if cursor.skip > 0 && cursor.pos < rec.pulled {
            let step = cursor.skip.min(rec.pulled - cursor.pos);
            cursor.pos += step;
            cursor.skip -= step;
        }
        if cursor.pos < rec.pulled {
            match rec.storage.on_disk(cursor.pos, rec.pulled) {
                Ok(OnDisk::Written(body)) => {
                    cursor.spilled = Some(body);
                    continue;
                }
                Err(err) => return Poll::Ready(Some(Err(err))),
                // Pulled but not on disk yet: wait for the writer.
                Ok(OnDisk::Queued { spill, at }) => {
                    drop(guard);
                    return match spill.poll_written(at, cx) {
                        // Written meanwhile: look again at once.
                        Poll::Ready(()) => {
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
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
        // 4. This clone is at the front: pull the next frame from the
        // original, unless the spill writer is too far behind.
        if let Some(spill) = rec.storage.spill() {
            if spill.poll_backlog(cx).is_pending() {
                return Poll::Pending;
            }
        }
        // Bytes to pass over that were never pulled: pulled (and kept, for
        // the other clones), not yielded.
        match pull(rec, cursor, cx) {
            Poll::Ready(Some(Ok(frame))) if cursor.skip > 0 => {
                if let Some(frame) = skip_bytes(frame, &mut cursor.skip) {
                    return Poll::Ready(Some(Ok(frame)));
                }
            }
            other => return other,
        }
    }
}

fn pull<B>(
    rec: &mut Recording<B>,
    cursor: &mut Cursor,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, Error>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match rec.body.as_mut().poll_frame(cx) {
        Poll::Pending => {
            rec.wait(cx);
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
            rec.failure = Some(err.clone());
            rec.storage.free();
            rec.wake_all();
            Poll::Ready(Some(Err(err)))
        }
        Poll::Ready(Some(Ok(frame))) => {
            let frame = match frame.into_data() {
                Ok(data) => {
                    let len = data.len() as u64;
                    rec.pulled += len;
                    if rec.storage.keep(&data, rec.pulled) {
                        cursor.frame += 1;
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
