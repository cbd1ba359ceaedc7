//! The recording of a streamed body that every clone of a
//! [`ReplayBody`](super::ReplayBody) shares: the original body, pulled by
//! whichever clone is furthest along, and the bytes kept for the others:
//! in memory up to the cap, then (with a spill configured) on disk.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::spill::{Spill, SpillConfig};
use crate::error::{BoxError, Error, ErrorKind};
use crate::MmapBody;

/// The state shared by the clones of a recorded body.
pub(super) struct Recording<B> {
    body: Pin<Box<B>>,
    kept: Kept,
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

/// The bytes kept for replay.
struct Kept {
    /// The first bytes, as the frames they came in, up to `cap`.
    frames: Vec<Bytes>,
    /// Bytes in `frames`.
    in_memory: u64,
    cap: usize,
    spill: Spilling,
    /// Why bytes pulled are no longer all kept, once they are not.
    lost: Option<Lost>,
}

/// Whether, and where, bytes past the cap go.
enum Spilling {
    Off,
    /// Configured; the file is made with the first byte past the cap.
    Ready(Arc<SpillConfig>, u64),
    On(Arc<Spill>, u64),
}

/// Why a recording stopped keeping bytes.
#[derive(Debug, Clone)]
enum Lost {
    /// The in-memory cap was passed and no spill is configured.
    Cap(usize),
    /// The spill limit was passed.
    Limit(u64),
    /// The spill file could not be made or written.
    SpillFailed(String),
}

impl Lost {
    fn error(&self, pulled: u64) -> Error {
        match self {
            Lost::Cap(cap) => Error::new(
                ErrorKind::ReplayBufferExceeded,
                format!(
                    "cannot replay the request body: {pulled} bytes were sent but at most \
                     {cap} are kept for replay; raise max_replay_bytes, spill to disk \
                     (ReplayLayer::spill_to_disk), or send a body that can be cloned \
                     (MmapBody, Full<Bytes>)"
                ),
            ),
            Lost::Limit(limit) => Error::new(
                ErrorKind::ReplayBufferExceeded,
                format!(
                    "cannot replay the request body: {pulled} bytes were sent but at most \
                     {limit} are kept for replay, in memory and on disk; raise the limit \
                     given to spill_to_disk"
                ),
            ),
            Lost::SpillFailed(why) => Error::new(
                ErrorKind::SpillFailed,
                format!(
                    "cannot replay the request body: the part past the in-memory cap \
                     could not be kept on disk ({why}); check the spill directory and \
                     free space"
                ),
            ),
        }
    }
}

impl Kept {
    fn lose(&mut self, why: Lost) {
        self.lost = Some(why);
        self.frames = Vec::new();
        if let Spilling::On(spill, _) = &self.spill {
            spill.close();
        }
        self.spill = Spilling::Off;
    }

    /// Keeps `data`, the frame that brought the bytes pulled to `pulled`.
    fn keep(&mut self, data: &Bytes, pulled: u64) {
        if self.lost.is_some() {
            return;
        }
        let past_cap = pulled > self.cap as u64;
        match &self.spill {
            _ if !past_cap => {
                self.frames.push(data.clone());
                self.in_memory += data.len() as u64;
            }
            Spilling::Off => self.lose(Lost::Cap(self.cap)),
            Spilling::Ready(_, limit) | Spilling::On(_, limit) if pulled > *limit => {
                let limit = *limit;
                self.lose(Lost::Limit(limit));
            }
            Spilling::Ready(config, limit) => match Spill::create(config) {
                Ok(spill) => {
                    spill.push(data.clone());
                    self.spill = Spilling::On(spill, *limit);
                }
                Err(err) => self.lose(Lost::SpillFailed(err.to_string())),
            },
            Spilling::On(spill, _) => spill.push(data.clone()),
        }
    }

    /// A spill writer that failed turns the recording lossy.
    fn check_spill(&mut self) {
        if let Spilling::On(spill, _) = &self.spill {
            if let Err(why) = spill.written() {
                self.lose(Lost::SpillFailed(why));
            }
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let Spilling::On(spill, _) = &self.spill {
            spill.close();
        }
    }
}

/// Where one clone is in a recorded body.
#[derive(Default)]
pub(super) struct Cursor {
    /// Index of the next recorded frame to replay.
    frame: usize,
    /// Bytes this clone has read.
    pos: u64,
    /// The spilled bytes this clone is replaying now.
    spilled: Option<MmapBody>,
    /// This clone has yielded the trailers.
    trailers_sent: bool,
}

pub(super) use crate::sync::lock;

impl<B: Body> Recording<B> {
    /// A recording of `body` that keeps up to `cap` bytes in memory and,
    /// with `spill`, the rest on disk up to its limit. A body whose exact
    /// size is known to exceed what can be kept is not recorded at all.
    pub(super) fn new(body: B, cap: usize, spill: Option<Arc<SpillConfig>>) -> Recording<B> {
        let spill = match spill {
            Some(config) => match config.max_bytes {
                Some(limit) => Spilling::Ready(config, limit),
                None => Spilling::Off,
            },
            None => Spilling::Off,
        };
        let keepable = match &spill {
            Spilling::Ready(_, limit) => (*limit).max(cap as u64),
            _ => cap as u64,
        };
        let lost = match body.size_hint().exact() {
            Some(len) if len > keepable => Some(match &spill {
                Spilling::Ready(_, limit) => Lost::Limit(*limit),
                _ => Lost::Cap(cap),
            }),
            _ => None,
        };
        Recording {
            body: Box::pin(body),
            kept: Kept {
                frames: Vec::new(),
                in_memory: 0,
                cap,
                spill: if lost.is_some() { Spilling::Off } else { spill },
                lost,
            },
            pulled: 0,
            trailers: None,
            ended: false,
            failure: None,
            waiters: Vec::new(),
        }
    }
}

impl<B> Recording<B> {
    /// A new clone may still get every byte.
    pub(super) fn is_replayable(&mut self) -> bool {
        self.kept.check_spill();
        self.failure.is_none() && (self.kept.lost.is_none() || self.pulled == 0)
    }

    /// Bytes pulled that `cursor` has not read yet.
    pub(super) fn behind(&self, cursor: &Cursor) -> u64 {
        self.pulled.saturating_sub(cursor.pos)
    }

    pub(super) fn wake_all(&mut self) {
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

impl<B: Body> Recording<B> {
    /// The size hint of what is left for `cursor`.
    pub(super) fn size_hint(&self, cursor: &Cursor) -> (SizeHint, u64) {
        let inner = if self.ended {
            SizeHint::with_exact(0)
        } else {
            self.body.size_hint()
        };
        (inner, self.behind(cursor))
    }

    /// `cursor` has read everything and the original body says it is done.
    pub(super) fn is_end_stream(&self, cursor: &Cursor) -> bool {
        let trailers_pending = self.trailers.is_some() && !cursor.trailers_sent;
        cursor.pos == self.pulled
            && cursor.spilled.is_none()
            && self.failure.is_none()
            && !trailers_pending
            && (self.ended || self.trailers.is_some() || self.body.is_end_stream())
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

/// One step of a recorded body for the clone at `cursor`.
pub(super) fn poll_recorded<B>(
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
    rec.kept.check_spill();
    loop {
        // 1. Frames kept in memory.
        if rec.kept.lost.is_none() && cursor.frame < rec.kept.frames.len() {
            let data = rec.kept.frames[cursor.frame].clone();
            cursor.frame += 1;
            cursor.pos += data.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(data))));
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
        if cursor.pos < rec.pulled {
            // 3. Bytes that were pulled and are not in memory.
            if let Some(lost) = &rec.kept.lost {
                return Poll::Ready(Some(Err(lost.error(rec.pulled))));
            }
            // Past the frames in memory, bytes are on disk (or lost, above).
            let (Spilling::On(spill, _), Some(from)) =
                (&rec.kept.spill, cursor.pos.checked_sub(rec.kept.in_memory))
            else {
                return Poll::Ready(Some(Err(Lost::Cap(rec.kept.cap).error(rec.pulled))));
            };
            let written = match spill.written() {
                Ok(written) => written,
                Err(why) => {
                    rec.kept.lose(Lost::SpillFailed(why));
                    continue;
                }
            };
            if from < written {
                match spill.read(from, written) {
                    Ok(body) => {
                        cursor.spilled = Some(body);
                        continue;
                    }
                    Err(err) => {
                        rec.kept.lose(Lost::SpillFailed(format!(
                            "mapping the spill file failed: {err}"
                        )));
                        continue;
                    }
                }
            }
            // Pulled but not on disk yet: wait for the writer.
            let spill = Arc::clone(spill);
            drop(guard);
            return match spill.poll_written(from, cx) {
                // Written meanwhile: look again at once.
                Poll::Ready(()) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Poll::Pending => Poll::Pending,
            };
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
        if let Spilling::On(spill, _) = &rec.kept.spill {
            if spill.poll_backlog(cx).is_pending() {
                return Poll::Pending;
            }
        }
        return pull(rec, cursor, cx);
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
            let cap = rec.kept.cap;
            rec.kept.lose(Lost::Cap(cap));
            rec.wake_all();
            Poll::Ready(Some(Err(err)))
        }
        Poll::Ready(Some(Ok(frame))) => {
            let frame = match frame.into_data() {
                Ok(data) => {
                    let len = data.len() as u64;
                    rec.pulled += len;
                    let before = rec.kept.frames.len();
                    rec.kept.keep(&data, rec.pulled);
                    if rec.kept.frames.len() > before {
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
