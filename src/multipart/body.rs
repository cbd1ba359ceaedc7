//! [`FormBody`]: a form's bytes, as an exact-length `http_body::Body`.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::part::Stream;
use crate::error::{Error, ErrorKind};

/// The body of a [`Form`](super::Form): its headers and in-memory values as
/// `Bytes`, and each file part as that body's own frames, zero-copy.
///
/// - **Exact length.** [`size_hint`](Body::size_hint) is exact from the
///   start (headers, parts and closing delimiter), so hyper and reqwest
///   send `Content-Length`, not chunked encoding, and S3's POST uploads,
///   which require it, take the form.
/// - **O(1) clone, from the start.** A clone shares the form's parts (one
///   reference count) and sends them again from the first byte, each file
///   part from a fresh clone of its body. [`ReplayLayer`] knows the type:
///   it clones the form for each retry, at any size, and records nothing.
/// - **Never short.** A part that ends before its length (a file truncated
///   under its mapping) or goes past it ends the body with an error
///   ([`ErrorKind::Truncated`] or [`Modified`](ErrorKind::Modified) from the
///   file body, [`ErrorKind::ContentLengthMismatch`] otherwise), never
///   with the next part's header in its place: a receiver never sees a
///   well-formed form with a short file.
///
/// `Send + Sync + Unpin`, `Error = mmap_body::Error`.
///
#[cfg_attr(feature = "replay", doc = "[`ReplayLayer`]: crate::ReplayLayer")]
#[cfg_attr(
    not(feature = "replay"),
    doc = "[`ReplayLayer`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayLayer.html"
)]
pub struct FormBody {
    /// The form, shared by every clone.
    segments: Arc<[Segment]>,
    /// The whole form's length.
    len: u64,
    /// The segment to send after `current`.
    next: usize,
    /// This copy's file part being sent, and how many of its bytes are
    /// still to come.
    current: Option<(Stream, u64)>,
    /// Bytes of the form this copy has sent.
    sent: u64,
    /// This copy failed: it sends nothing more.
    failed: bool,
}

/// A piece of the form.
#[derive(Clone)]
pub(super) enum Segment {
    /// Headers and values in memory: one frame.
    Bytes(Bytes),
    /// A file part: the frames of a fresh copy of its body.
    Stream(Stream),
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Bytes(bytes) => bytes.len() as u64,
            Segment::Stream(stream) => stream.len(),
        }
    }
}

impl FormBody {
    pub(super) fn new(segments: Vec<Segment>) -> FormBody {
        let len = segments.iter().map(Segment::len).sum();
        FormBody {
            segments: segments.into(),
            len,
            next: 0,
            current: None,
            sent: 0,
            failed: false,
        }
    }

    /// The number of bytes of the whole form, its `Content-Length`.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always `false`: a form has at least its closing delimiter.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks now that every file part is as it was when opened (one
    /// `fstat` each, as [`MmapBody::verify`](crate::MmapBody::verify) and
    /// [`FileBody::verify`](crate::FileBody::verify)): a
    /// retry policy asks this (through [`ReplayBody::is_replayable`])
    /// before sending the form again.
    ///
    /// # Errors
    ///
    /// The first file part's [`ErrorKind::Truncated`],
    /// [`ErrorKind::Modified`] or [`ErrorKind::Io`].
    ///
    #[cfg_attr(
        feature = "replay",
        doc = "[`ReplayBody::is_replayable`]: crate::ReplayBody::is_replayable"
    )]
    #[cfg_attr(
        not(feature = "replay"),
        doc = "[`ReplayBody::is_replayable`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayBody.html#method.is_replayable"
    )]
    pub fn verify(&self) -> Result<(), Error> {
        self.segments.iter().try_for_each(|segment| match segment {
            Segment::Bytes(_) => Ok(()),
            Segment::Stream(stream) => stream.verify(),
        })
    }

    /// Ends this copy with `err`.
    fn fail(&mut self, err: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.failed = true;
        self.current = None;
        Poll::Ready(Some(Err(err)))
    }
}

impl Clone for FormBody {
    /// An O(1) copy that sends the form again from its first byte.
    fn clone(&self) -> FormBody {
        FormBody {
            segments: Arc::clone(&self.segments),
            len: self.len,
            next: 0,
            current: None,
            sent: 0,
            failed: false,
        }
    }
}

impl Body for FormBody {
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
        loop {
            if let Some((stream, left)) = &mut this.current {
                let data = match ready!(stream.poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        // A part's trailers have no place in a form.
                        Err(_) => continue,
                    },
                    Some(Err(err)) => return this.fail(err),
                    None if *left == 0 => {
                        this.current = None;
                        continue;
                    }
                    None => {
                        let err = Error::new(
                            ErrorKind::ContentLengthMismatch,
                            format!(
                                "a part of the form ended {left} bytes short of its length; \
                                 the form was not sent whole"
                            ),
                        );
                        return this.fail(err);
                    }
                };
                let len = data.len() as u64;
                if len > *left {
                    let err = Error::new(
                        ErrorKind::ContentLengthMismatch,
                        "a part of the form went past its length; the form was not sent whole",
                    );
                    return this.fail(err);
                }
                if len == 0 {
                    continue;
                }
                *left -= len;
                this.sent += len;
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            let Some(segment) = this.segments.get(this.next) else {
                return Poll::Ready(None);
            };
            this.next += 1;
            match segment {
                Segment::Bytes(bytes) => {
                    this.sent += bytes.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(bytes.clone()))));
                }
                Segment::Stream(stream) => this.current = Some((stream.clone(), stream.len())),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || (self.current.is_none() && self.next >= self.segments.len())
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed {
            return SizeHint::with_exact(0);
        }
        SizeHint::with_exact(self.len - self.sent)
    }
}

impl fmt::Debug for FormBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormBody")
            .field("len", &self.len)
            .field("sent", &self.sent)
            .field("parts", &self.segments.len())
            .finish()
    }
}
