//! Serving a file from a handler: `Range` requests, conditional requests and
//! `HEAD`, answered with a [`FileBody`] (or an [`MmapBody`]) or a slice of
//! it; and serving a directory: [`ServeDir`] and [`ServeFile`], drop-ins
//! for tower-http's services of the same names
//! (`Router::new().nest_service("/assets", ServeDir::new("assets"))`).
//!
//! [`respond`] turns a request's method and headers and the file's body into
//! the response a download needs. It depends only on `http`, so the same
//! call serves from axum, a hyper `service_fn` or any tower service:
//!
//! ```no_run
//! use axum::{http::{HeaderMap, Method, Response, StatusCode}, routing::get, Router};
//! use mmap_body::FileBody;
//!
//! async fn download(method: Method, headers: HeaderMap) -> Result<Response<FileBody>, StatusCode> {
//!     // Safe whoever rewrites the file: see `FileBody`.
//!     let body = FileBody::open("/srv/files/big.iso").map_err(|_| StatusCode::NOT_FOUND)?;
//!     Ok(mmap_body::serve::respond(&method, &headers, body))
//! }
//!
//! let app: Router = Router::new().route("/big.iso", get(download));
//! ```
//!
//! What it does, following RFC 9110:
//!
//! - `200 OK` with the whole file, `Accept-Ranges: bytes`, a strong `ETag`
//!   made of the file's size and modification time, and `Last-Modified`.
//!   The length is exact, so hyper sends `Content-Length`.
//! - A single byte range (`bytes=0-99`, `bytes=100-`, `bytes=-100`) on a
//!   `GET`: `206 Partial Content` with `Content-Range`, and a
//!   [`slice`](FileBody::slice) of the body: no byte copied where it is
//!   mapped. A range past
//!   the end is cut to the end.
//! - A range that starts at or past the end: `416 Range Not Satisfiable`
//!   with `Content-Range: bytes */<size>`.
//! - A `Range` the server may ignore is ignored and the whole file sent:
//!   several ranges (see [`Serve`] for a `multipart/byteranges` answer), a
//!   unit other than `bytes`, a malformed value, or an `If-Range` whose
//!   validator no longer matches the file (§13.1.5).
//! - `If-Match` (strong comparison, `*` included) and, without it,
//!   `If-Unmodified-Since` answer `412 Precondition Failed` when the file
//!   is not the version the client names (a resumed download or an edit
//!   made against a copy that has since changed); they are evaluated first,
//!   as RFC 9110 §13.2.2 orders.
//! - `If-None-Match` (weak comparison, `*` included) and, without it,
//!   `If-Modified-Since` answer `304 Not Modified` with no body.
//! - `If-Range` with a date applies the range only while `Last-Modified` is
//!   a strong validator: the file is at least a second older than the
//!   response (§8.8.2.2); a file changed within the same second could
//!   otherwise be mixed from two versions.
//! - A modification time that an HTTP date cannot express (before 1970 or
//!   after 9999) sends no `Last-Modified` and makes every date condition
//!   ignored (`If-Range` with a date: the whole file); the `ETag` still
//!   names the version.
//! - `HEAD`: the headers a `GET` would get, with its `Content-Length`, and
//!   no body.
//! - Any other method: `405 Method Not Allowed` with `Allow: GET, HEAD`.
//!
//! `Content-Type` is the caller's to set on the returned response ([`Serve`]
//! sets it, and answers several ranges with `multipart/byteranges`).
//!
//! `Range` is parsed by `http-range-header`, as tower-http's `ServeFile`
//! does, and the preconditions by the `headers` crate's typed headers; the
//! `If-Range` comparison is this module's own (RFC 9110 §13.1.5 asks for an
//! exact match with a strong validator).

mod body;
mod conditional;
mod dir;
mod range;

use std::hash::{BuildHasher, Hasher};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

pub use body::ServeBody;
pub use dir::{
    DefaultServeDirFallback, ResponseFuture, ServeDir, ServeFile, SetStatus, SetStatusFuture,
};

use crate::{FileBody, MmapBody};
use body::Segment;
use conditional::Validators;
use range::{parse_range, plan, Plan, Wanted};

/// The default [`Serve::max_ranges`].
const DEFAULT_MAX_RANGES: usize = 16;

/// [`respond`] with `multipart/byteranges` for requests of several ranges,
/// and the representation's `Content-Type`.
///
/// A response builder, not a tower `Service`: it holds only these options
/// (cheap to clone, one for the whole app), and its
/// [`respond`](Serve::respond) answers a request's method and headers with
/// the file body the handler opened, as [`respond`] does:
///
/// ```no_run
/// use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
/// use mmap_body::serve::{Serve, ServeBody};
/// use mmap_body::FileBody;
///
/// async fn download(method: Method, headers: HeaderMap) -> Result<Response<ServeBody>, StatusCode> {
///     let body = FileBody::open("/srv/files/manual.pdf").map_err(|_| StatusCode::NOT_FOUND)?;
///     let serve = Serve::new().content_type(HeaderValue::from_static("application/pdf"));
///     Ok(serve.respond(&method, &headers, body))
/// }
/// ```
///
/// Everything [`respond`] does, and for a `GET` of several ranges
/// (`Range: bytes=0-99,1000-1099`): the ranges that select bytes are kept
/// (none: `416`), those that overlap or touch coalesced, and the parts sent
/// in the order asked (RFC 9110 §15.3.7.2); one left is a plain `206`; several are a `206` of `multipart/byteranges`
/// (RFC 9110 §14.6) whose parts carry `Content-Range` and the
/// [`content_type`](Serve::content_type), each part's bytes a zero-copy
/// slice of the file, with an exact `Content-Length` for the whole. More
/// than [`max_ranges`](Serve::max_ranges) ranges, or ranges that together
/// ask for more bytes than the file has (RFC 9110 §14.2's amplification),
/// are answered `200` with the whole file, as nginx's `max_ranges` and Go's
/// `ServeContent` do. `If-Range` and `HEAD` apply as for one range.
#[derive(Debug, Clone)]
pub struct Serve {
    content_type: Option<HeaderValue>,
    max_ranges: usize,
}

impl Default for Serve {
    fn default() -> Serve {
        Serve::new()
    }
}

impl Serve {
    /// At most 16 ranges, no `Content-Type`.
    pub fn new() -> Serve {
        Serve {
            content_type: None,
            max_ranges: DEFAULT_MAX_RANGES,
        }
    }

    /// The file's media type: the `Content-Type` of `200` and single-range
    /// answers, and of each part of a multipart one.
    pub fn content_type(mut self, media_type: HeaderValue) -> Serve {
        self.content_type = Some(media_type);
        self
    }

    /// The most ranges one request may ask for; more are answered with the
    /// whole file (default 16).
    pub fn max_ranges(mut self, ranges: usize) -> Serve {
        self.max_ranges = ranges.max(1);
        self
    }

    /// The answer to `method` with `headers` for the file sent by `body`
    /// (see the type's docs). Never panics and never reads the file.
    pub fn respond(
        &self,
        method: &Method,
        headers: &HeaderMap,
        body: impl Into<FileBody>,
    ) -> Response<ServeBody> {
        respond_core(method, headers, body.into(), SystemTime::now(), Some(self))
    }
}

/// A file body [`respond`] answers with: [`FileBody`] or [`MmapBody`].
/// Sealed: only the crate's file bodies are answered from.
pub trait Servable: Into<FileBody> + Clone + sealed::Sealed {
    /// The answer's body back as `Self` (a slice of the body given).
    #[doc(hidden)]
    fn from_answer(body: FileBody) -> Option<Self>;
}

impl Servable for FileBody {
    fn from_answer(body: FileBody) -> Option<FileBody> {
        Some(body)
    }
}

impl Servable for MmapBody {
    fn from_answer(body: FileBody) -> Option<MmapBody> {
        body.into_mmap()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::FileBody {}
    impl Sealed for crate::MmapBody {}
}

/// The response to a request for the file sent by `body`, honouring
/// `Range`, `If-Range`, `If-Match`, `If-Unmodified-Since`, `If-None-Match`,
/// `If-Modified-Since` and `HEAD` (see the [module docs](self)).
///
/// Never panics, whatever the headers, and never reads the file: every
/// answer is a zero-copy slice of `body` (empty for `HEAD`, `304`, `405`,
/// `412` and `416`).
pub fn respond<F: Servable>(method: &Method, headers: &HeaderMap, body: F) -> Response<F> {
    respond_at(method, headers, body, SystemTime::now())
}

/// [`respond`] as of `now` (when the response is sent), which decides
/// whether `Last-Modified` is a strong validator for `If-Range`.
fn respond_at<F: Servable>(
    method: &Method,
    headers: &HeaderMap,
    body: F,
    now: SystemTime,
) -> Response<F> {
    let whole = body.clone();
    // Without `Serve` the answer is always one slice of the body, which
    // comes back as an `F`; should that ever be wrong, the whole file is
    // still a correct answer.
    respond_core(method, headers, body.into(), now, None)
        .map(|served| served.into_file().and_then(F::from_answer).unwrap_or(whole))
}

/// The answer; a multipart one only with `serve`.
fn respond_core(
    method: &Method,
    headers: &HeaderMap,
    body: FileBody,
    now: SystemTime,
    serve: Option<&Serve>,
) -> Response<ServeBody> {
    let mut response = respond_plain(method, headers, body, now, serve);
    if let Some(media_type) = serve.and_then(|s| s.content_type.clone()) {
        let status = response.status();
        if status == StatusCode::OK
            || (status == StatusCode::PARTIAL_CONTENT
                && !response.headers().contains_key(header::CONTENT_TYPE))
        {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, media_type);
        }
    }
    response
}

fn respond_plain(
    method: &Method,
    headers: &HeaderMap,
    body: FileBody,
    now: SystemTime,
    serve: Option<&Serve>,
) -> Response<ServeBody> {
    let len = body.len();
    let validators = Validators::of(&body);
    let empty = || body.slice(len..).unwrap_or_else(|_| body.clone());

    if method != Method::GET && method != Method::HEAD {
        let mut response = with_status(StatusCode::METHOD_NOT_ALLOWED, empty());
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }

    // RFC 9110 §13.2.2: the preconditions in their order.
    if !validators.preconditions_hold(headers) {
        return with_status(StatusCode::PRECONDITION_FAILED, empty());
    }
    if validators.not_modified(headers) {
        let mut response = with_status(StatusCode::NOT_MODIFIED, empty());
        validators.insert(response.headers_mut());
        return response;
    }

    let wanted = match headers.get(header::RANGE) {
        Some(value) if method == Method::GET && validators.if_range_holds(headers, now) => {
            match serve {
                Some(serve) => plan(value, len, serve.max_ranges),
                None => match parse_range(value, len) {
                    None => Plan::Whole,
                    Some(Wanted::Unsatisfiable) => Plan::Unsatisfiable,
                    Some(Wanted::Bytes { first, last }) => Plan::One { first, last },
                },
            }
        }
        _ => Plan::Whole,
    };
    let mut response = match wanted {
        Plan::Whole => with_status(StatusCode::OK, body.clone()),
        Plan::Unsatisfiable => {
            let mut response = with_status(StatusCode::RANGE_NOT_SATISFIABLE, empty());
            insert_str(
                response.headers_mut(),
                header::CONTENT_RANGE,
                format!("bytes */{len}"),
            );
            return response;
        }
        Plan::One { first, last } => match body.slice(first..=last) {
            Ok(part) => {
                let mut response = with_status(StatusCode::PARTIAL_CONTENT, part);
                insert_str(
                    response.headers_mut(),
                    header::CONTENT_RANGE,
                    format!("bytes {first}-{last}/{len}"),
                );
                response
            }
            // The plan only holds ranges inside the body; should that ever
            // be wrong, the whole file is still a correct answer.
            Err(_) => with_status(StatusCode::OK, body.clone()),
        },
        Plan::Many(ranges) => {
            let media_type = serve.and_then(|s| s.content_type.as_ref());
            match multipart(&body, &ranges, media_type) {
                Some((parts, boundary)) => {
                    let mut response = Response::new(parts);
                    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                    insert_str(
                        response.headers_mut(),
                        header::CONTENT_TYPE,
                        format!("multipart/byteranges; boundary={boundary}"),
                    );
                    response
                }
                None => with_status(StatusCode::OK, body.clone()),
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    validators.insert(headers);
    if method == Method::HEAD {
        let length = response.body().len();
        insert_str(
            response.headers_mut(),
            header::CONTENT_LENGTH,
            length.to_string(),
        );
        *response.body_mut() = ServeBody::file(empty());
    }
    response
}

fn with_status(status: StatusCode, body: FileBody) -> Response<ServeBody> {
    let mut response = Response::new(ServeBody::file(body));
    *response.status_mut() = status;
    response
}

/// The `multipart/byteranges` body (RFC 9110 §14.6) of `ranges` of `body`,
/// and its boundary. `None` if a range is outside the body (the plan never
/// makes one).
fn multipart(
    body: &FileBody,
    ranges: &[(u64, u64)],
    media_type: Option<&HeaderValue>,
) -> Option<(ServeBody, String)> {
    let len = body.len();
    let boundary = boundary(len);
    let content_type = media_type
        .and_then(|v| v.to_str().ok())
        .map(|v| format!("Content-Type: {v}\r\n"))
        .unwrap_or_default();
    let mut segments = Vec::with_capacity(ranges.len() * 2 + 1);
    for (i, (first, last)) in ranges.iter().enumerate() {
        let lead = if i == 0 { "" } else { "\r\n" };
        let head = format!(
            "{lead}--{boundary}\r\n{content_type}Content-Range: bytes {first}-{last}/{len}\r\n\r\n"
        );
        segments.push(Segment::Head(Bytes::from(head)));
        segments.push(Segment::File(body.slice(first..=last).ok()?));
    }
    segments.push(Segment::Head(Bytes::from(format!(
        "\r\n--{boundary}--\r\n"
    ))));
    Some((ServeBody::parts(segments), boundary))
}

/// A boundary no file is likely to hold: random (the process's hasher
/// keys, this answer's size and time) and long.
fn boundary(len: u64) -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(len);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    format!("mmap-body-{:016x}{:08x}", hasher.finish(), nanos as u32)
}

fn insert_str(headers: &mut HeaderMap, name: header::HeaderName, value: String) {
    // Only digits, spaces, `bytes`, `*`, `-` and `/` are ever built here,
    // all valid in a header value.
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::conditional::strong_etag;
    use super::*;

    /// A body over a temp file whose modification time is `modified`.
    pub(super) fn body_modified(modified: SystemTime) -> (MmapBody, tempfile::NamedTempFile) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"0123456789").unwrap();
        file.as_file().set_modified(modified).unwrap();
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::open(file.path()) }.unwrap();
        (body, file)
    }

    pub(super) fn answer(body: &MmapBody, pairs: &[(&str, &str)], now: SystemTime) -> (u16, u64) {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let response = respond_at(&Method::GET, &headers, body.clone(), now);
        (response.status().as_u16(), response.body().len())
    }

    #[test]
    fn preconditions_in_rfc_order() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let later = t + Duration::from_secs(3600);
        let (body, _file) = body_modified(t);
        let etag = strong_etag(&body.clone().into()).unwrap();
        let date = httpdate::fmt_http_date(t);
        let before = httpdate::fmt_http_date(t - Duration::from_secs(1));
        let weak = format!("W/{etag}");
        type Case<'a> = (&'a [(&'a str, &'a str)], (u16, u64));
        let cases: &[Case] = &[
            (&[("if-match", "*")], (200, 10)),
            (&[("if-match", &etag)], (200, 10)),
            (&[("if-match", "\"other\", \"x\"")], (412, 0)),
            // If-Match compares strongly: a weak tag never matches.
            (&[("if-match", &weak)], (412, 0)),
            (&[("if-unmodified-since", &date)], (200, 10)),
            (&[("if-unmodified-since", &before)], (412, 0)),
            (&[("if-unmodified-since", "not a date")], (200, 10)),
            // If-Match wins over If-Unmodified-Since.
            (
                &[("if-match", &etag), ("if-unmodified-since", &before)],
                (200, 10),
            ),
            // 412 comes before 304 and before a range.
            (&[("if-match", "\"x\""), ("if-none-match", &etag)], (412, 0)),
            (&[("if-match", "\"x\""), ("range", "bytes=0-1")], (412, 0)),
            (&[("if-none-match", &weak)], (304, 0)),
            (&[("if-match", &etag), ("range", "bytes=2-4")], (206, 3)),
            // If-Range with a date: only while Last-Modified is strong.
            (&[("if-range", &date), ("range", "bytes=2-4")], (206, 3)),
            (&[("if-range", &before), ("range", "bytes=2-4")], (200, 10)),
        ];
        for (pairs, want) in cases {
            assert_eq!(answer(&body, pairs, later), *want, "{pairs:?}");
        }
        // Modified less than a second before the response: a weak
        // validator, so a date If-Range sends the whole file.
        let same_second = [("if-range", date.as_str()), ("range", "bytes=2-4")];
        assert_eq!(answer(&body, &same_second, t), (200, 10));
    }
}
