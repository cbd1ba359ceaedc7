//! [`ServeBody`]: what [`Serve::respond`](super::Serve::respond),
//! [`ServeDir`](super::ServeDir) and [`ServeFile`](super::ServeFile) answer
//! with: the file (or one slice of it), a `multipart/byteranges` body whose
//! parts are slices of the file between small part headers, or the body of
//! a `ServeDir` fallback's answer.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::error::{BoxError, ErrorKind};
use crate::{Error, FileBody};

/// The body of a [`Serve`](super::Serve), [`ServeDir`](super::ServeDir) or
/// [`ServeFile`](super::ServeFile) answer: a [`FileBody`] (the whole file,
/// one range of it, or nothing), a `multipart/byteranges` body, or the
/// body a `ServeDir` fallback service answered with. The first two have an
/// exact length (hyper sends `Content-Length`), and each part is a slice of
/// the file: zero-copy where the file is mapped.
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
    /// A fallback's body. Behind a lock only so that `ServeBody` stays
    /// `Sync` whatever the fallback's body is: `poll_frame` reaches it
    /// through `&mut` without locking.
    Other(Mutex<Other>),
}

/// A fallback service's response body, its errors made this crate's.
struct Other(Pin<Box<dyn Body<Data = Bytes, Error = Error> + Send + 'static>>);

impl fmt::Debug for Other {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fallback body")
    }
}

/// `B` with its errors as [`ErrorKind::Io`] errors (as tower-http makes
/// them `io::Error`s).
struct MapErr<B>(B);

impl<B> Body for MapErr<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        Pin::new(&mut self.0).poll_frame(cx).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                "the body of the fallback service's answer failed",
            )
            .with_source(e)
        })
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
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

    /// A body of no bytes.
    pub(super) fn empty() -> ServeBody {
        ServeBody::parts(Vec::new())
    }

    /// Any other body (a `ServeDir` fallback's answer).
    pub(super) fn other<B>(body: B) -> ServeBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let body = MapErr(Box::pin(body));
        ServeBody {
            inner: Inner::Other(Mutex::new(Other(Box::pin(body)))),
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

    /// The bytes this body sends; for a fallback's body, the least its
    /// size hint promises.
    pub fn len(&self) -> u64 {
        match &self.inner {
            Inner::File(body) => body.len(),
            Inner::Parts { left, .. } => *left,
            Inner::Other(other) => crate::sync::lock(other).0.size_hint().lower(),
        }
    }

    /// Whether it sends nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file body, unless this is a multipart one (or a fallback's).
    pub fn into_file(self) -> Option<FileBody> {
        match self.inner {
            Inner::File(body) => Some(body),
            Inner::Parts { .. } | Inner::Other(_) => None,
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
            Inner::Other(other) => return crate::sync::get_mut(other).0.as_mut().poll_frame(cx),
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
            Inner::Other(other) => crate::sync::lock(other).0.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Other(other) => crate::sync::lock(other).0.size_hint(),
            _ => SizeHint::with_exact(self.len()),
        }
    }
}
