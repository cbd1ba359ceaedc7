//! Test bodies: [`Streamed`] (frames one at a time, size unknown, not
//! cloneable) and [`ExactStreamed`] (the same, with an exact size); and
//! [`poll_now`] for a body that never waits.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::files::{pattern, sha256};

/// A streamed body that cannot be cloned and does not know its size: its
/// frames come one at a time, each after a `Pending`, then optional
/// trailers.
#[derive(Debug)]
pub struct Streamed {
    frames: VecDeque<Bytes>,
    trailers: Option<http::HeaderMap>,
    ready: bool,
}

impl Streamed {
    /// A body of these frames, then these trailers.
    pub fn new(frames: impl IntoIterator<Item = Bytes>, trailers: Option<http::HeaderMap>) -> Self {
        Streamed {
            frames: frames.into_iter().collect(),
            trailers,
            ready: false,
        }
    }

    /// `len` pseudo-random bytes in frames of `frame` bytes, and their hash.
    pub fn random(len: usize, frame: usize) -> (Streamed, String) {
        let mut bytes = vec![0u8; len];
        pattern(len as u64 + 7, &mut bytes);
        let hash = sha256(&bytes);
        let bytes = Bytes::from(bytes);
        let frames = (0..len)
            .step_by(frame.max(1))
            .map(|at| bytes.slice(at..(at + frame).min(len)));
        (Streamed::new(frames, None), hash)
    }

    /// The same body, ending with `trailers`.
    pub fn with_trailers(mut self, trailers: http::HeaderMap) -> Self {
        self.trailers = Some(trailers);
        self
    }
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = false;
        if let Some(data) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.trailers.is_none()
    }
}

/// A [`Streamed`] body (frames one at a time, not cloneable) that knows its
/// exact length: its `size_hint` is exact, and shrinks as frames go out, so
/// `ReplayLayer` sets `Content-Length` for it and still has to record it.
#[derive(Debug)]
pub struct ExactStreamed {
    inner: Streamed,
    left: u64,
}

impl ExactStreamed {
    /// `len` pseudo-random bytes in frames of `frame` bytes, and their hash
    /// (the same bytes as [`Streamed::random`] gives for `len`).
    pub fn random(len: usize, frame: usize) -> (ExactStreamed, String) {
        let (inner, hash) = Streamed::random(len, frame);
        (
            ExactStreamed {
                inner,
                left: len as u64,
            },
            hash,
        )
    }
}

impl Body for ExactStreamed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            self.left = self.left.saturating_sub(n);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// Polls a body that waits for nothing outside itself: an `MmapBody`,
/// which at most yields once before its last byte while frames it gave out
/// are still held (woken at once), then sends it.
pub fn poll_now<B: Body + Unpin>(body: &mut B) -> Option<Result<Frame<B::Data>, B::Error>> {
    let mut body = Pin::new(body);
    for _ in 0..2 {
        if let Poll::Ready(frame) = body
            .as_mut()
            .poll_frame(&mut Context::from_waker(Waker::noop()))
        {
            return frame;
        }
    }
    panic!("an MmapBody waits for nothing but its consumer: it was pending twice")
}
