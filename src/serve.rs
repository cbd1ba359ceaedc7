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
//! - `If-None-Match` (weak comparison, `*` included) and, without it,
//!   `If-Modified-Since` answer `304 Not Modified` with no body.
//! - `HEAD`: the headers a `GET` would get, with its `Content-Length`, and
//!   no body.
//! - Any other method: `405 Method Not Allowed` with `Allow: GET, HEAD`.
//!
//! `Content-Type` is the caller's to set on the returned response.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::MmapBody;

/// The response to a request for the file sent by `body`, honouring
/// `Range`, `If-Range`, `If-None-Match`, `If-Modified-Since` and `HEAD`
/// (see the [module docs](self)).
///
/// Never panics and never reads the file: every answer is a zero-copy slice
/// of `body` (empty for `HEAD`, `304`, `405` and `416`).
pub fn respond(method: &Method, headers: &HeaderMap, body: MmapBody) -> Response<MmapBody> {
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

    if validators.not_modified(headers) {
        let mut response = with_status(StatusCode::NOT_MODIFIED, empty());
        validators.insert(response.headers_mut());
        return response;
    }

    let wanted = if method == Method::GET && validators.if_range_holds(headers) {
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
    // Only digits, spaces, `bytes`, `*`, `-`, `/` and quotes are ever built
    // here, all valid in a header value.
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

/// The file's validators: a strong `ETag` and `Last-Modified`, when the file
/// has a modification time.
struct Validators {
    etag: Option<String>,
    modified: Option<SystemTime>,
}

impl Validators {
    fn of(body: &MmapBody) -> Validators {
        let modified = body.modified();
        // Size and modification time name the file's version, as in nginx;
        // a slice of a file also names where it starts.
        let etag = modified.and_then(|m| {
            let since = m.duration_since(UNIX_EPOCH).ok()?;
            let (secs, nanos) = (since.as_secs(), since.subsec_nanos());
            Some(match body.offset() {
                0 => format!("\"{:x}-{secs:x}.{nanos:x}\"", body.len()),
                at => format!("\"{at:x}+{:x}-{secs:x}.{nanos:x}\"", body.len()),
            })
        });
        Validators { etag, modified }
    }

    fn insert(&self, headers: &mut HeaderMap) {
        if let Some(etag) = &self.etag {
            insert_str(headers, header::ETAG, etag.clone());
        }
        if let Some(modified) = self.modified {
            insert_str(
                headers,
                header::LAST_MODIFIED,
                httpdate::fmt_http_date(modified),
            );
        }
    }

    /// `If-None-Match` (RFC 9110 §13.1.2, weak comparison) or, when it is
    /// absent, `If-Modified-Since` (§13.1.3) says the client's copy is
    /// current.
    fn not_modified(&self, headers: &HeaderMap) -> bool {
        if let Some(value) = headers.get(header::IF_NONE_MATCH) {
            let Ok(value) = value.to_str() else {
                return false;
            };
            if value.trim() == "*" {
                return true;
            }
            let Some(ours) = &self.etag else {
                return false;
            };
            return value
                .split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == ours);
        }
        let since = headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        match (since, self.modified) {
            (Some(since), Some(modified)) => whole_seconds(modified) <= since,
            _ => false,
        }
    }

    /// `If-Range` (RFC 9110 §13.1.5): the range applies only if the
    /// validator sent still matches, by strong comparison for an entity tag
    /// and exactly for a date. No `If-Range` at all: the range applies.
    fn if_range_holds(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::IF_RANGE) else {
            return true;
        };
        let Ok(value) = value.to_str() else {
            return false;
        };
        let value = value.trim();
        if value.starts_with('"') || value.starts_with("W/") {
            return self.etag.as_deref() == Some(value);
        }
        match (httpdate::parse_http_date(value), self.modified) {
            (Ok(date), Some(modified)) => whole_seconds(modified) == date,
            _ => false,
        }
    }
}

/// HTTP dates have whole seconds.
fn whole_seconds(time: SystemTime) -> SystemTime {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => UNIX_EPOCH + Duration::from_secs(since.as_secs()),
        Err(_) => time,
    }
}

/// What a `Range` header asks for, when the server honours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// Bytes `first..=last`, both inside the body.
    Bytes { first: u64, last: u64 },
    /// A valid range that selects no byte of the body: 416.
    Unsatisfiable,
}

/// Parses a `Range` value (RFC 9110 §14.1.2) for a body of `len` bytes.
/// `None` means "ignore it and send everything": not `bytes`, malformed, or
/// more than one range.
fn parse_range(value: &HeaderValue, len: u64) -> Option<Wanted> {
    let value = value.to_str().ok()?.trim();
    let (unit, set) = value.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let spec = specs.next()?;
    if specs.next().is_some() {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // `-N`: the last N bytes.
        let suffix = digits(last)?;
        if suffix == 0 || len == 0 {
            return Some(Wanted::Unsatisfiable);
        }
        return Some(Wanted::Bytes {
            first: len - suffix.min(len),
            last: len - 1,
        });
    }
    let first = digits(first)?;
    let last = match last {
        "" => None,
        last => Some(digits(last)?),
    };
    if last.is_some_and(|last| last < first) {
        return None;
    }
    if first >= len {
        return Some(Wanted::Unsatisfiable);
    }
    let last = last.map_or(len - 1, |last| last.min(len - 1));
    Some(Wanted::Bytes { first, last })
}

/// A non-empty run of ASCII digits; numbers too large for a `u64` saturate
/// (they are past the end of any file).
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, len: u64) -> Option<Wanted> {
        parse_range(&HeaderValue::from_str(value).unwrap(), len)
    }

    fn bytes(first: u64, last: u64) -> Option<Wanted> {
        Some(Wanted::Bytes { first, last })
    }

    #[test]
    fn single_ranges() {
        assert_eq!(range("bytes=0-99", 1000), bytes(0, 99));
        assert_eq!(range("bytes=100-", 1000), bytes(100, 999));
        assert_eq!(range("bytes=-100", 1000), bytes(900, 999));
        assert_eq!(range("BYTES = 5 - 5", 1000), bytes(5, 5));
        assert_eq!(range("bytes=-5000", 1000), bytes(0, 999));
        assert_eq!(range("bytes=990-5000", 1000), bytes(990, 999));
        assert_eq!(range("bytes=0-99999999999999999999999", 10), bytes(0, 9));
    }

    #[test]
    fn unsatisfiable_ranges() {
        for value in ["bytes=1000-", "bytes=1000-2000", "bytes=-0"] {
            assert_eq!(range(value, 1000), Some(Wanted::Unsatisfiable), "{value}");
        }
        assert_eq!(range("bytes=0-", 0), Some(Wanted::Unsatisfiable));
        assert_eq!(range("bytes=-1", 0), Some(Wanted::Unsatisfiable));
        assert_eq!(
            range("bytes=99999999999999999999999-", 10),
            Some(Wanted::Unsatisfiable)
        );
    }

    #[test]
    fn ranges_the_server_ignores() {
        for value in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "bytes 0-1",
            "bytes=+1-2",
            "bytes=0x10-",
        ] {
            assert_eq!(range(value, 1000), None, "{value}");
        }
    }
}
