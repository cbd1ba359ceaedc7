//! Test bodies beyond [`Streamed`].
#![allow(dead_code)] // each test binary uses a different part of `support`

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::Streamed;

/// A [`Streamed`] body (frames one at a time, not cloneable) that knows its
/// exact length: its `size_hint` is exact, and shrinks as frames go out, so
/// `ReplayLayer` sets `Content-Length` for it and still has to record it.
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
