//! [`ServeBody`]: what [`Serve::respond`](super::Serve::respond) answers
//! with: the file (or one slice of it), or a `multipart/byteranges` body
//! whose parts are slices of the file between small part headers.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::{Error, FileBody};

/// The body of a [`Serve`](super::Serve) answer: a [`FileBody`] (the
/// whole file, one range of it, or nothing), or a `multipart/byteranges`
/// body. Either way its length is exact (hyper sends `Content-Length`), and
/// each part is a slice of the file: zero-copy where the file is mapped.
#[derive(Debug)]
pub struct ServeBody {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    File(FileBody),
    Parts {
        segments: VecDeque<Segment>,
        left: u64,
    },
}

/// A piece of a multipart body.
#[derive(Debug)]
pub(super) enum Segment {
    /// A delimiter and part headers (or the closing delimiter).
    Head(Bytes),
    /// A part's bytes.
    File(FileBody),
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Head(bytes) => bytes.len() as u64,
            Segment::File(body) => body.len(),
        }
    }
}

impl ServeBody {
    pub(super) fn file(body: FileBody) -> ServeBody {
        ServeBody {
            inner: Inner::File(body),
        }
    }

    pub(super) fn parts(segments: Vec<Segment>) -> ServeBody {
        let left = segments.iter().map(Segment::len).sum();
        ServeBody {
            inner: Inner::Parts {
                segments: segments.into(),
                left,
            },
        }
    }

    /// The bytes this body sends.
    pub fn len(&self) -> u64 {
        match &self.inner {
            Inner::File(body) => body.len(),
            Inner::Parts { left, .. } => *left,
        }
    }

    /// Whether it sends nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file body, unless this is a multipart one.
    pub fn into_file(self) -> Option<FileBody> {
        match self.inner {
            Inner::File(body) => Some(body),
            Inner::Parts { .. } => None,
        }
    }
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let (segments, left) = match &mut self.get_mut().inner {
            Inner::File(body) => return Pin::new(body).poll_frame(cx),
            Inner::Parts { segments, left } => (segments, left),
        };
        loop {
            let Some(front) = segments.front_mut() else {
                return Poll::Ready(None);
            };
            match front {
                Segment::Head(bytes) => {
                    let bytes = std::mem::take(bytes);
                    segments.pop_front();
                    *left -= bytes.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Segment::File(body) => match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(None) => {
                        segments.pop_front();
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            *left -= data.len() as u64;
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    other => return other,
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::File(body) => body.is_end_stream(),
            Inner::Parts { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len())
    }
}
