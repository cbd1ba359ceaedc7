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
//! does. The conditional headers are read here: the `headers` crate's
//! `IfRange` applies a range for any date not older than `Last-Modified`,
//! where RFC 9110 §13.1.5 asks for an exact match with a strong validator,
//! and the rest is a few lines that would otherwise bring `sha1`, `base64`
//! and `mime` into the default dependency tree. The proptest in the tests
//! holds both to the RFC's answers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::MmapBody;

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
    // Only digits, spaces, `bytes`, `*`, `-`, `/` and quotes are ever built
    // here, all valid in a header value.
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

/// The file's validators: a strong `ETag` and `Last-Modified`, when the file
/// has a modification time that an HTTP date can express (1970 to 9999);
/// without one, no date is compared and no `Last-Modified` sent.
struct Validators {
    etag: Option<String>,
    modified: Option<SystemTime>,
}

/// The first second an HTTP date cannot express: year 10000.
const END_OF_HTTP_DATES: Duration = Duration::from_secs(253_402_300_800);

/// `time` in whole seconds, if an HTTP date can express it.
fn http_time(time: SystemTime) -> Option<SystemTime> {
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    (since < END_OF_HTTP_DATES).then(|| UNIX_EPOCH + Duration::from_secs(since.as_secs()))
}

/// An HTTP date header value, for the times that can be one.
fn parse_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?.trim()).ok()
}

/// The entity tags of an `If-Match` / `If-None-Match` list, or `None` for
/// `*`; unreadable values are an empty list, which matches nothing.
fn entity_tags(value: &HeaderValue) -> Option<Vec<&str>> {
    let Ok(value) = value.to_str() else {
        return Some(Vec::new());
    };
    if value.trim() == "*" {
        return None;
    }
    Some(value.split(',').map(str::trim).collect())
}

impl Validators {
    fn of(body: &MmapBody) -> Validators {
        let modified = body.modified();
        // Size and modification time name the file's version, as in nginx;
        // a slice of a file also names where it starts. Times before 1970
        // count back from it.
        let etag = modified.map(|m| {
            let (sign, since) = match m.duration_since(UNIX_EPOCH) {
                Ok(since) => ("", since),
                Err(before) => ("-", before.duration()),
            };
            let (secs, nanos) = (since.as_secs(), since.subsec_nanos());
            match body.offset() {
                0 => format!("\"{:x}-{sign}{secs:x}.{nanos:x}\"", body.len()),
                at => format!("\"{at:x}+{:x}-{sign}{secs:x}.{nanos:x}\"", body.len()),
            }
        });
        Validators {
            etag,
            modified: modified.and_then(http_time),
        }
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

    /// `If-Match` (RFC 9110 §13.1.1, strong comparison) or, when it is
    /// absent, `If-Unmodified-Since` (§13.1.4): `false` means `412`.
    fn preconditions_hold(&self, headers: &HeaderMap) -> bool {
        if let Some(value) = headers.get(header::IF_MATCH) {
            return match entity_tags(value) {
                None => true,
                Some(tags) => self
                    .etag
                    .as_deref()
                    .is_some_and(|ours| tags.contains(&ours)),
            };
        }
        // Ignored when it is not a date or the file has no usable time.
        let since = headers
            .get(header::IF_UNMODIFIED_SINCE)
            .and_then(parse_date);
        match (since, self.modified) {
            (Some(since), Some(modified)) => modified <= since,
            _ => true,
        }
    }

    /// `If-None-Match` (RFC 9110 §13.1.2, weak comparison) or, when it is
    /// absent, `If-Modified-Since` (§13.1.3) says the client's copy is
    /// current.
    fn not_modified(&self, headers: &HeaderMap) -> bool {
        if let Some(value) = headers.get(header::IF_NONE_MATCH) {
            let Some(tags) = entity_tags(value) else {
                return true;
            };
            let Some(ours) = &self.etag else {
                return false;
            };
            return tags
                .iter()
                .any(|tag| tag.strip_prefix("W/").unwrap_or(tag) == ours);
        }
        let since = headers.get(header::IF_MODIFIED_SINCE).and_then(parse_date);
        match (since, self.modified) {
            (Some(since), Some(modified)) => modified <= since,
            _ => false,
        }
    }

    /// `If-Range` (RFC 9110 §13.1.5): the range applies only if the
    /// validator sent still matches: an entity tag by strong comparison; a
    /// date exactly, and only while `Last-Modified` is a strong validator,
    /// at least one second older than the response (§8.8.2.2). No
    /// `If-Range` at all: the range applies.
    fn if_range_holds(&self, headers: &HeaderMap, now: SystemTime) -> bool {
        let Some(value) = headers.get(header::IF_RANGE) else {
            return true;
        };
        let Ok(text) = value.to_str() else {
            return false;
        };
        let text = text.trim();
        if text.starts_with('"') || text.starts_with("W/") {
            return self.etag.as_deref() == Some(text);
        }
        let strong = |modified: SystemTime| {
            now.duration_since(modified)
                .is_ok_and(|age| age >= Duration::from_secs(1))
        };
        match (parse_date(value), self.modified) {
            (Some(date), Some(modified)) => modified == date && strong(modified),
            _ => false,
        }
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

/// Parses a `Range` value (RFC 9110 §14.1.2) for a body of `len` bytes,
/// with `http-range-header` (as tower-http does). `None` means "ignore it
/// and send everything": not `bytes`, malformed, several ranges, or none
/// left to send (a suffix range of an empty file: satisfiable, but with no
/// byte to put in a `206`).
fn parse_range(value: &HeaderValue, len: u64) -> Option<Wanted> {
    let parsed = http_range_header::parse_range_header(value.to_str().ok()?).ok()?;
    match parsed.validate(len) {
        Ok(ranges) => match ranges.as_slice() {
            [one] => Some(Wanted::Bytes {
                first: *one.start(),
                last: *one.end(),
            }),
            _ => None,
        },
        Err(http_range_header::RangeUnsatisfiableError::Unsatisfiable) => {
            Some(Wanted::Unsatisfiable)
        }
        // Invalid or refused (too many, overlapping): the server may ignore
        // a Range it does not want to serve (§14.2).
        Err(_) => None,
    }
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
        assert_eq!(range("BYTES=5-5", 1000), bytes(5, 5));
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
            // No whitespace around `=` or `-` (§14.1.2).
            "bytes = 5 - 5",
        ] {
            assert_eq!(range(value, 1000), None, "{value}");
        }
        // A suffix of an empty file is satisfiable but has no bytes to put
        // in a 206: the whole (empty) file.
        assert_eq!(range("bytes=-1", 0), None);
    }

    /// A body over a temp file whose modification time is `modified`.
    fn body_modified(modified: SystemTime) -> (MmapBody, tempfile::NamedTempFile) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"0123456789").unwrap();
        file.as_file().set_modified(modified).unwrap();
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::open(file.path()) }.unwrap();
        (body, file)
    }

    fn answer(body: &MmapBody, pairs: &[(&str, &str)], now: SystemTime) -> (u16, u64) {
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
        let etag = Validators::of(&body).etag.unwrap();
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

    #[test]
    fn times_no_http_date_can_express_are_not_compared() {
        let ancient = UNIX_EPOCH - Duration::from_secs(10 * 365 * 86_400);
        let (body, _file) = body_modified(ancient);
        let now = SystemTime::now();
        let response = respond_at(&Method::GET, &HeaderMap::new(), body.clone(), now);
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get(header::LAST_MODIFIED).is_none());
        let etag = response
            .headers()
            .get(header::ETAG)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(etag.contains("--"), "{etag}");
        let epoch = httpdate::fmt_http_date(UNIX_EPOCH);
        for pairs in [
            &[("if-modified-since", epoch.as_str())][..],
            &[("if-unmodified-since", epoch.as_str())],
            &[("if-range", epoch.as_str()), ("range", "bytes=0-0")],
        ] {
            assert_eq!(answer(&body, pairs, now), (200, 10), "{pairs:?}");
        }
    }
}
