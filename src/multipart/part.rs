//! [`Part`]: one field of a form, its value and how it is described.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

use super::encode::check_mime;
use crate::error::Error;
use crate::{FileBody, MmapBody};

/// One field of a [`Form`](super::Form): text, bytes in memory, or a file
/// body ([`Part::mmap`], [`Part::file`]) sent as its own frames, with an
/// optional file name and media type.
///
/// ```
/// use mmap_body::multipart::Part;
///
/// let part = Part::bytes(&b"\x89PNG..."[..])
///     .file_name("logo.png")
///     .mime_str("image/png")?;
/// # Ok::<(), mmap_body::Error>(())
/// ```
///
/// A part of a file body ([`Part::file`], [`Part::mmap`]) is sent as that
/// body's own frames (zero-copy `Bytes` slices of the mapping where the
/// body maps the file) and has the file's checks: a file truncated or
/// changed while the form is sent ends the form's body with
/// [`ErrorKind::Truncated`](crate::ErrorKind::Truncated) or
/// [`Modified`](crate::ErrorKind::Modified), never with a short part.
pub struct Part {
    pub(super) value: Value,
    pub(super) file_name: Option<String>,
    pub(super) mime: Option<String>,
}

/// Where a part's bytes come from.
#[derive(Clone)]
pub(super) enum Value {
    /// In memory: text or bytes.
    Bytes(Bytes),
    /// A file body, cloned (from its start) for each send of the form.
    Stream(Stream),
}

/// A part's file body: the bodies that restart by cloning, whose exact
/// length is known before a byte is sent.
#[derive(Clone, Debug)]
pub(super) enum Stream {
    Mmap(MmapBody),
    File(FileBody),
    /// A body that claims a length it does not send: the tests' liar.
    #[cfg(test)]
    Lying(tests::Lying),
}

impl Stream {
    /// The number of bytes the part sends.
    pub(super) fn len(&self) -> u64 {
        match self {
            Stream::Mmap(body) => body.len(),
            Stream::File(body) => body.len(),
            #[cfg(test)]
            Stream::Lying(body) => body.claimed,
        }
    }

    /// Whether a fresh copy would still send the same bytes (one `fstat`).
    pub(super) fn verify(&self) -> Result<(), Error> {
        match self {
            Stream::Mmap(body) => body.verify(),
            Stream::File(body) => body.verify(),
            #[cfg(test)]
            Stream::Lying(_) => Ok(()),
        }
    }

    /// The next frame of this copy.
    pub(super) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self {
            Stream::Mmap(body) => Pin::new(body).poll_frame(cx),
            Stream::File(body) => Pin::new(body).poll_frame(cx),
            #[cfg(test)]
            Stream::Lying(body) => Poll::Ready(body.frames.pop().map(|b| Ok(Frame::data(b)))),
        }
    }
}

impl Part {
    fn new(value: Value) -> Part {
        Part {
            value,
            file_name: None,
            mime: None,
        }
    }

    /// A part of text, sent as its UTF-8 bytes (no `Content-Type`, which
    /// RFC 7578 §4.4 reads as `text/plain`). Line breaks are sent as they
    /// are: a browser would have made them CRLF.
    pub fn text(value: impl Into<String>) -> Part {
        Part::new(Value::Bytes(Bytes::from(value.into())))
    }

    /// A part of bytes in memory, sent as they are (no copy of a `Bytes`
    /// larger than 16 KiB; smaller values are copied into the headers'
    /// frame around them). No `Content-Type` unless [`mime_str`] sets one.
    ///
    /// [`mime_str`]: Part::mime_str
    pub fn bytes(value: impl Into<Bytes>) -> Part {
        Part::new(Value::Bytes(value.into()))
    }

    /// A part of a memory-mapped file, sent as the body's own zero-copy
    /// frames: its whole range from its start ([`MmapBody::len`] bytes,
    /// whatever was already read of it), again from the start on each send
    /// of the form. `Content-Type: application/octet-stream` unless
    /// [`mime_str`](Part::mime_str) says otherwise (RFC 7578 §4.4).
    pub fn mmap(body: MmapBody) -> Part {
        Part::new(Value::Stream(Stream::Mmap(body)))
    }

    /// A part of a file opened with [`FileBody::open`] (no `unsafe`: a file
    /// the program does not own), sent as that body's own frames: zero-copy
    /// slices of the mapping under a read lease, `pread` copies elsewhere.
    /// Its whole range from its start, again on each send of the form;
    /// `Content-Type: application/octet-stream` unless
    /// [`mime_str`](Part::mime_str) says otherwise. A file that changes
    /// while the form is sent ends the form's body with `Modified` or
    /// `Truncated`.
    ///
    /// ```no_run
    /// use mmap_body::multipart::{Form, Part};
    /// use mmap_body::FileBody;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let video = FileBody::open("holiday.mp4")?;
    /// let form = Form::new().part("file", Part::file(video).file_name("holiday.mp4"));
    /// # let _ = form;
    /// # Ok(())
    /// # }
    /// ```
    pub fn file(body: FileBody) -> Part {
        Part::new(Value::Stream(Stream::File(body)))
    }

    /// The `filename` the part is sent with (escaped as the module docs
    /// say). Servers such as axum's `Multipart` and S3 take a part with a
    /// file name as a file upload.
    pub fn file_name(mut self, file_name: impl Into<String>) -> Part {
        self.file_name = Some(file_name.into());
        self
    }

    /// The part's `Content-Type`, as `"video/mp4"` or
    /// `"text/plain; charset=utf-8"`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if
    /// `mime` is not `type/subtype` of RFC 9110 tokens with parameters of
    /// visible ASCII, spaces and tabs: a CR or LF would end the header line
    /// and let the value add headers or parts of its own.
    pub fn mime_str(mut self, mime: &str) -> Result<Part, Error> {
        self.mime = Some(check_mime(mime)?);
        Ok(self)
    }

    /// The number of bytes of the part's value (not counting its header).
    pub fn len(&self) -> u64 {
        match &self.value {
            Value::Bytes(bytes) => bytes.len() as u64,
            Value::Stream(stream) => stream.len(),
        }
    }

    /// `true` for a part whose value is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `Content-Type` the part is sent with, if any.
    pub(super) fn content_type(&self) -> Option<&str> {
        match (&self.mime, &self.value) {
            (Some(mime), _) => Some(mime),
            (None, Value::Stream(_)) => Some("application/octet-stream"),
            (None, Value::Bytes(_)) => None,
        }
    }
}

impl fmt::Debug for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = match &self.value {
            Value::Bytes(_) => "bytes",
            Value::Stream(Stream::Mmap(_)) => "mmap",
            Value::Stream(Stream::File(_)) => "file",
            #[cfg(test)]
            Value::Stream(Stream::Lying(_)) => "lying",
        };
        f.debug_struct("Part")
            .field("value", &value)
            .field("len", &self.len())
            .field("file_name", &self.file_name)
            .field("mime", &self.mime)
            .finish()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ErrorKind;

    /// A part body that sends `frames` (last first) but claims `claimed`
    /// bytes.
    #[derive(Clone, Debug)]
    pub(in crate::multipart) struct Lying {
        pub(in crate::multipart) frames: Vec<Bytes>,
        pub(in crate::multipart) claimed: u64,
    }

    impl Part {
        /// A part of `frames` that claims to be `claimed` bytes long.
        pub(in crate::multipart) fn lying(frames: &[&'static str], claimed: u64) -> Part {
            let frames = frames
                .iter()
                .rev()
                .map(|f| Bytes::from_static(f.as_bytes()));
            Part::new(Value::Stream(Stream::Lying(Lying {
                frames: frames.collect(),
                claimed,
            })))
        }
    }

    #[test]
    fn mime_str_refuses_what_is_not_a_media_type() {
        let err = Part::text("x").mime_str("text/plain\r\nX: y").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let part = Part::text("x").mime_str("text/plain").unwrap();
        assert_eq!(part.content_type(), Some("text/plain"));
    }

    #[test]
    fn file_bodies_default_to_octet_stream_and_memory_to_none() {
        let file = tempfile::tempfile().unwrap();
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::from_file(file) }.unwrap();
        assert_eq!(
            Part::mmap(body).content_type(),
            Some("application/octet-stream")
        );
        assert_eq!(Part::bytes("x").content_type(), None);
        assert_eq!(Part::text("abc").len(), 3);
    }
}
