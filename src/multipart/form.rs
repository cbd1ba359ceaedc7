//! [`Form`]: the builder of a `multipart/form-data` body.

use std::fmt;

use bytes::BytesMut;
use http::header::HeaderValue;

use super::body::{FormBody, Segment};
use super::encode::{closing, content_type, new_boundary, part_header};
use super::part::{Part, Value};

/// Values in memory up to this size are copied into one frame with the
/// headers around them; larger ones are sent as their own `Bytes`.
const INLINE: usize = 16 * 1024;

/// A `multipart/form-data` form (RFC 7578): named parts, in order, under a
/// fresh random boundary.
///
/// ```
/// use http_body::Body;
/// use mmap_body::multipart::{Form, Part};
///
/// let form = Form::new()
///     .text("title", "holiday")
///     .part("notes", Part::bytes("day 1: beach").file_name("notes.txt"));
/// let content_type = form.content_type(); // multipart/form-data; boundary=…
/// let body = form.into_body();
/// // The whole form's length is known before a byte is sent.
/// assert!(body.size_hint().exact().is_some());
/// # let _ = content_type;
/// ```
///
/// Send the body with `Content-Type` set to [`content_type`]; the form
/// cannot send its header itself, since a body has no headers.
///
/// [`content_type`]: Form::content_type
pub struct Form {
    boundary: String,
    parts: Vec<(String, Part)>,
}

impl Form {
    /// An empty form with a new boundary (see the module docs on why no
    /// content can hold it).
    pub fn new() -> Form {
        Form {
            boundary: new_boundary(),
            parts: Vec::new(),
        }
    }

    /// Adds a text field: [`Part::text`] named `name`.
    pub fn text(self, name: impl Into<String>, value: impl Into<String>) -> Form {
        self.part(name, Part::text(value))
    }

    /// Adds `part` named `name`, after the parts already added. Names may
    /// repeat (several files under one name, as an `<input multiple>`
    /// sends them).
    pub fn part(mut self, name: impl Into<String>, part: Part) -> Form {
        self.parts.push((name.into(), part));
        self
    }

    /// The form's boundary: `mmap-body-` and 32 hex digits.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// The request's `Content-Type`: `multipart/form-data; boundary=…`.
    pub fn content_type(&self) -> HeaderValue {
        content_type(&self.boundary)
    }

    /// The form's body: headers and small values in memory, each file
    /// part's own zero-copy frames between them, with an exact size.
    pub fn into_body(self) -> FormBody {
        let mut segments = Vec::with_capacity(2 * self.parts.len() + 1);
        let mut inline = BytesMut::new();
        let mut first = true;
        for (name, part) in &self.parts {
            let head = part_header(
                &self.boundary,
                first,
                name,
                part.file_name.as_deref(),
                part.content_type(),
            );
            first = false;
            inline.extend_from_slice(head.as_bytes());
            match &part.value {
                Value::Bytes(bytes) if bytes.len() <= INLINE => inline.extend_from_slice(bytes),
                Value::Bytes(bytes) => {
                    flush(&mut inline, &mut segments);
                    segments.push(Segment::Bytes(bytes.clone()));
                }
                Value::Stream(stream) => {
                    flush(&mut inline, &mut segments);
                    segments.push(Segment::Stream(stream.clone()));
                }
            }
        }
        inline.extend_from_slice(&closing(&self.boundary, self.parts.is_empty()));
        flush(&mut inline, &mut segments);
        FormBody::new(segments)
    }
}

/// Ends the frame of headers and small values being gathered.
fn flush(inline: &mut BytesMut, segments: &mut Vec<Segment>) {
    if !inline.is_empty() {
        segments.push(Segment::Bytes(inline.split().freeze()));
    }
}

impl Default for Form {
    fn default() -> Form {
        Form::new()
    }
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Form")
            .field("boundary", &self.boundary)
            .field("parts", &self.parts)
            .finish()
    }
}
