//! Serving a file from a handler: `Range` requests, conditional requests and
//! `HEAD`, answered with an [`MmapBody`] or a zero-copy slice of it.
//!
//! [`respond`] turns a request's method and headers and the file's body into
//! the response a download needs. It depends only on `http`, so the same
//! call serves from axum, a hyper `service_fn` or any tower service:
//!
//! ```no_run
//! use axum::{http::{HeaderMap, Method, Response, StatusCode}, routing::get, Router};
//! use mmap_body::MmapBody;
//!
//! async fn download(method: Method, headers: HeaderMap) -> Result<Response<MmapBody>, StatusCode> {
//!     // SAFETY: the served files are written once, then never changed or
//!     // truncated while they may be mapped.
//!     let body = unsafe { MmapBody::open("/srv/files/big.iso") }
//!         .map_err(|_| StatusCode::NOT_FOUND)?;
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
//!   [`slice`](MmapBody::slice) of the body: no byte copied. A range past
//!   the end is cut to the end.
//! - A range that starts at or past the end: `416 Range Not Satisfiable`
//!   with `Content-Range: bytes */<size>`.
//! - A `Range` the server may ignore is ignored and the whole file sent:
//!   several ranges (a `multipart/byteranges` answer is not built), a unit
//!   other than `bytes`, a malformed value, or an `If-Range` whose validator
//!   no longer matches the file (§13.1.5).
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
//! `Content-Type` is the caller's to set on the returned response.
//!
//! `Range` is parsed by `http-range-header`, as tower-http's `ServeFile`
//! does, and the preconditions by the `headers` crate's typed headers; the
//! `If-Range` comparison is this module's own (RFC 9110 §13.1.5 asks for an
//! exact match with a strong validator).

mod conditional;
mod range;

use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::MmapBody;
use conditional::Validators;
use range::{parse_range, Wanted};

/// The response to a request for the file sent by `body`, honouring
/// `Range`, `If-Range`, `If-Match`, `If-Unmodified-Since`, `If-None-Match`,
/// `If-Modified-Since` and `HEAD` (see the [module docs](self)).
///
/// Never panics, whatever the headers, and never reads the file: every
/// answer is a zero-copy slice of `body` (empty for `HEAD`, `304`, `405`,
/// `412` and `416`).
pub fn respond(method: &Method, headers: &HeaderMap, body: MmapBody) -> Response<MmapBody> {
    respond_at(method, headers, body, SystemTime::now())
}

/// [`respond`] as of `now` (when the response is sent), which decides
/// whether `Last-Modified` is a strong validator for `If-Range`.
fn respond_at(
    method: &Method,
    headers: &HeaderMap,
    body: MmapBody,
    now: SystemTime,
) -> Response<MmapBody> {
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

    let wanted = if method == Method::GET && validators.if_range_holds(headers, now) {
        headers.get(header::RANGE).and_then(|v| parse_range(v, len))
    } else {
        None
    };
    let mut response = match wanted {
        None => with_status(StatusCode::OK, body.clone()),
        Some(Wanted::Unsatisfiable) => {
            let mut response = with_status(StatusCode::RANGE_NOT_SATISFIABLE, empty());
            insert_str(
                response.headers_mut(),
                header::CONTENT_RANGE,
                format!("bytes */{len}"),
            );
            return response;
        }
        Some(Wanted::Bytes { first, last }) => match body.slice(first..=last) {
            Ok(part) => {
                let mut response = with_status(StatusCode::PARTIAL_CONTENT, part);
                insert_str(
                    response.headers_mut(),
                    header::CONTENT_RANGE,
                    format!("bytes {first}-{last}/{len}"),
                );
                response
            }
            // `parse_range` only returns ranges inside the body; should that
            // ever be wrong, the whole file is still a correct answer.
            Err(_) => with_status(StatusCode::OK, body.clone()),
        },
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
        *response.body_mut() = empty();
    }
    response
}

fn with_status(status: StatusCode, body: MmapBody) -> Response<MmapBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
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
        let etag = strong_etag(&body).unwrap();
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
