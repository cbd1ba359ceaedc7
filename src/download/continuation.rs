//! The resume decision as pure functions of headers: which validator of
//! a first answer may go into `If-Range` (RFC 9110 §13.1.5, §8.8.2.2),
//! which bytes of which representation that answer carries, and whether a
//! later answer is the continuation of it (a `206` whose `Content-Range`
//! starts where the body stopped, of the same complete length, with the
//! same validator). Table-tested below, as `serve`'s decision table is.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;

/// A strong validator of the first answer: what `If-Range` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Validator {
    /// A strong entity tag, `"…"` (never `W/"…"`).
    ETag(HeaderValue),
    /// A `Last-Modified` that RFC 9110 §8.8.2.2 lets a client treat as
    /// strong: the answer's `Date` is at least a second after it.
    LastModified(HeaderValue),
}

impl Validator {
    /// The header value, as `If-Range` carries it.
    pub(crate) fn value(&self) -> &HeaderValue {
        match self {
            Validator::ETag(v) | Validator::LastModified(v) => v,
        }
    }

    /// The header it comes from.
    pub(crate) fn header(&self) -> header::HeaderName {
        match self {
            Validator::ETag(_) => header::ETAG,
            Validator::LastModified(_) => header::LAST_MODIFIED,
        }
    }
}

/// The one value of header `name`, or `None` when absent or repeated.
fn single<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// An entity tag as RFC 9110 §8.8.3 writes a strong one: `"` etagc* `"`.
fn is_strong_etag(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    bytes.len() >= 2
        && bytes[0] == b'"'
        && bytes[bytes.len() - 1] == b'"'
        && bytes[1..bytes.len() - 1]
            .iter()
            .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
}

/// The strong validator of an answer with `headers`, if it has one.
///
/// A strong `ETag` first. A weak `ETag` is none, and neither is a
/// `Last-Modified` beside any `ETag`: §13.1.5 lets a client send a date
/// only when it has no entity tag at all. A `Last-Modified` counts when the
/// answer's `Date` is at least one second after it (§8.8.2.2).
pub(crate) fn strong_validator(headers: &HeaderMap) -> Option<Validator> {
    if headers.contains_key(header::ETAG) {
        let etag = single(headers, &header::ETAG)?;
        return is_strong_etag(etag).then(|| Validator::ETag(etag.clone()));
    }
    let modified = single(headers, &header::LAST_MODIFIED)?;
    let date = single(headers, &header::DATE)?;
    let at = |v: &HeaderValue| httpdate::parse_http_date(v.to_str().ok()?).ok();
    let (modified_at, date_at): (SystemTime, SystemTime) = (at(modified)?, at(date)?);
    let strong = date_at
        .duration_since(modified_at)
        .is_ok_and(|d| d >= Duration::from_secs(1));
    strong.then(|| Validator::LastModified(modified.clone()))
}

/// Which bytes of which representation a body carries: `start..end` of a
/// representation `complete` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    /// The first byte's position in the representation.
    pub(crate) start: u64,
    /// One past the last byte's position.
    pub(crate) end: u64,
    /// The representation's complete length.
    pub(crate) complete: u64,
}

impl Extent {
    /// The body's length.
    pub(crate) fn len(&self) -> u64 {
        self.end - self.start
    }

    /// The `Range` asking for this extent's bytes from `at` on:
    /// `bytes=at-` when they run to the end of the representation.
    pub(crate) fn range_from(&self, at: u64) -> HeaderValue {
        let text = if self.end == self.complete {
            format!("bytes={at}-")
        } else {
            format!("bytes={at}-{}", self.end - 1)
        };
        HeaderValue::try_from(text).expect("digits and ASCII")
    }
}

/// `Content-Range: bytes a-b/L` (RFC 9110 §14.4), `L` known and `a <= b < L`.
pub(crate) fn content_range(headers: &HeaderMap) -> Option<Extent> {
    let text = single(headers, &header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = text.trim().strip_prefix("bytes ")?;
    let (range, complete) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (first, last, complete) = (number(first)?, number(last)?, number(complete)?);
    (first <= last && last < complete).then_some(Extent {
        start: first,
        end: last + 1,
        complete,
    })
}

/// One `Content-Length` (repeated only with the same value).
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    if values.any(|v| v != first) {
        return None;
    }
    let text = first.to_str().ok()?.trim();
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// What a first answer to a GET carries, when a dropped body of it could
/// be resumed: a `200` with a `Content-Length`, or a `206` with one
/// `Content-Range`, and a strong validator either way. `None`: not
/// resumable (a drop stays an error).
pub(crate) fn first_answer(status: StatusCode, headers: &HeaderMap) -> Option<(Extent, Validator)> {
    Some((extent_of(status, headers)?, strong_validator(headers)?))
}

/// Which bytes a `200` with a `Content-Length`, or a `206` with one
/// `Content-Range` (and a `Content-Length` that agrees, if any), carries.
pub(crate) fn extent_of(status: StatusCode, headers: &HeaderMap) -> Option<Extent> {
    let extent = match status {
        StatusCode::OK => {
            let len = content_length(headers)?;
            Extent {
                start: 0,
                end: len,
                complete: len,
            }
        }
        StatusCode::PARTIAL_CONTENT => {
            let extent = content_range(headers)?;
            // A Content-Length beside it must agree.
            if content_length(headers).is_some_and(|len| len != extent.len())
                || headers.contains_key(header::CONTENT_LENGTH) && content_length(headers).is_none()
            {
                return None;
            }
            extent
        }
        _ => return None,
    };
    Some(extent)
}

/// What to do with the answer to a range request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It goes on where the body stopped: stream its body.
    Continue,
    /// A transient refusal (`429`, `502`, `503`, `504`): ask again, after
    /// `Retry-After` when it says.
    AskAgain(Option<Duration>),
    /// Another version, or not the asked bytes: `ErrorKind::Modified`.
    Modified(String),
    /// An answer that breaks the protocol (a redirect, a `404`...):
    /// `ErrorKind::Protocol`.
    Protocol(String),
}

/// Whether the answer (`status`, `headers`) to `Range: bytes=at-…` with
/// `If-Range: validator` continues `extent` from `at`.
pub(crate) fn continuation(
    status: StatusCode,
    headers: &HeaderMap,
    extent: &Extent,
    at: u64,
    validator: &Validator,
    now: SystemTime,
) -> Verdict {
    match status {
        StatusCode::PARTIAL_CONTENT => {}
        StatusCode::OK => {
            return Verdict::Modified(
                "the server answered the range request with 200 and the whole \
                 representation: it changed since the download began (If-Range no \
                 longer matches), or the server ignores ranges"
                    .into(),
            )
        }
        StatusCode::PRECONDITION_FAILED | StatusCode::RANGE_NOT_SATISFIABLE => {
            return Verdict::Modified(format!(
                "the server answered the range request with {status}: the representation \
                 changed since the download began"
            ))
        }
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => {
            return Verdict::AskAgain(crate::retry::retry_after::retry_after(headers, now))
        }
        s if s.is_redirection() => {
            let to = headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nowhere");
            return Verdict::Protocol(format!(
                "the range request was redirected ({status}, to {to}): not followed, a \
                 download resumes only from the URI that began it"
            ));
        }
        s => return Verdict::Protocol(format!("the server answered the range request with {s}")),
    }
    let expected = Extent {
        start: at,
        ..*extent
    };
    match content_range(headers) {
        Some(got) if got == expected => {}
        Some(got) => {
            return Verdict::Modified(format!(
                "the server sent bytes {}-{}/{} for a request from byte {at} of {}: \
                 not the continuation (expected bytes {}-{}/{})",
                got.start,
                got.end - 1,
                got.complete,
                extent.complete,
                expected.start,
                expected.end - 1,
                expected.complete
            ))
        }
        None => {
            return Verdict::Modified(
                "the server's 206 has no single, well-formed Content-Range: not a \
                 continuation it can be checked to be"
                    .into(),
            )
        }
    }
    if headers.contains_key(header::CONTENT_LENGTH)
        && content_length(headers) != Some(expected.len())
    {
        return Verdict::Modified(format!(
            "the server's 206 announces a Content-Length other than its Content-Range's \
             {} bytes",
            expected.len()
        ));
    }
    // RFC 9110 §15.3.7: a 206 carries the ETag a 200 would have.
    let same = match validator {
        Validator::ETag(tag) => single(headers, &header::ETAG) == Some(tag),
        Validator::LastModified(date) => {
            !headers.contains_key(header::ETAG)
                && single(headers, &header::LAST_MODIFIED).is_none_or(|v| v == date)
        }
    };
    if !same {
        let name = validator.header();
        let now_value = headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return Verdict::Modified(format!(
            "the server's 206 carries {name} {now_value}, the download began with {}: \
             another version of the representation",
            validator.value().to_str().unwrap_or("?")
        ));
    }
    Verdict::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const DATE: &str = "Sun, 06 Dec 2026 03:00:00 GMT";
    const SECOND_BEFORE: &str = "Sun, 06 Dec 2026 02:59:59 GMT";

    #[test]
    fn strong_validators() {
        let etag = |v: &str| Some(Validator::ETag(HeaderValue::from_str(v).unwrap()));
        let lm = Some(Validator::LastModified(HeaderValue::from_static(
            SECOND_BEFORE,
        )));
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<Validator>);
        let cases: &[Case] = &[
            (&[("etag", "\"abc\"")], etag("\"abc\"")),
            (&[("etag", "\"\"")], etag("\"\"")),
            (&[("etag", "W/\"abc\"")], None),
            (&[("etag", "abc")], None),
            (&[("etag", "\"a\""), ("etag", "\"b\"")], None),
            // A weak ETag beside a strong date: still none (§13.1.5).
            (
                &[
                    ("etag", "W/\"abc\""),
                    ("last-modified", SECOND_BEFORE),
                    ("date", DATE),
                ],
                None,
            ),
            (&[("last-modified", SECOND_BEFORE), ("date", DATE)], lm),
            // The same second: weak.
            (&[("last-modified", DATE), ("date", DATE)], None),
            // No Date: nothing to measure it by.
            (&[("last-modified", SECOND_BEFORE)], None),
            (&[("last-modified", "yesterday"), ("date", DATE)], None),
            (&[], None),
        ];
        for (pairs, expected) in cases {
            assert_eq!(&strong_validator(&headers(pairs)), expected, "{pairs:?}");
        }
    }

    #[test]
    fn content_ranges() {
        let e = |start, end, complete| {
            Some(Extent {
                start,
                end,
                complete,
            })
        };
        let cases = [
            ("bytes 0-9/10", e(0, 10, 10)),
            ("bytes 5-9/100", e(5, 10, 100)),
            ("bytes 9-9/10", e(9, 10, 10)),
            ("bytes 5-4/10", None),
            ("bytes 0-10/10", None),
            ("bytes 0-9/*", None),
            ("bytes */10", None),
            ("bytes -1-9/10", None),
            ("bytes +1-9/10", None),
            ("items 0-9/10", None),
            ("bytes 0-18446744073709551615/18446744073709551616", None),
            (
                "bytes 0-18446744073709551613/18446744073709551614",
                e(0, u64::MAX - 1, u64::MAX - 1),
            ),
        ];
        for (value, expected) in cases {
            let h = headers(&[("content-range", value)]);
            assert_eq!(content_range(&h), expected, "{value}");
        }
    }

    #[test]
    fn first_answers() {
        let tag = ("etag", "\"v1\"");
        let ok = |pairs: &[(&str, &str)]| first_answer(StatusCode::OK, &headers(pairs));
        assert_eq!(
            ok(&[tag, ("content-length", "100")]).map(|a| a.0),
            Some(Extent {
                start: 0,
                end: 100,
                complete: 100
            })
        );
        assert_eq!(ok(&[tag]), None, "no length: not resumable");
        assert_eq!(ok(&[("content-length", "100")]), None, "no validator");
        assert_eq!(ok(&[tag, ("content-length", "1e3")]), None);
        assert_eq!(
            ok(&[tag, ("content-length", "1"), ("content-length", "2")]),
            None
        );
        let partial = |pairs: &[(&str, &str)]| {
            first_answer(StatusCode::PARTIAL_CONTENT, &headers(pairs)).map(|a| a.0)
        };
        assert_eq!(
            partial(&[tag, ("content-range", "bytes 10-19/100")]),
            Some(Extent {
                start: 10,
                end: 20,
                complete: 100
            })
        );
        assert_eq!(
            partial(&[
                tag,
                ("content-range", "bytes 10-19/100"),
                ("content-length", "11")
            ]),
            None
        );
        assert_eq!(partial(&[tag]), None, "multipart/byteranges");
        assert_eq!(
            first_answer(StatusCode::NOT_FOUND, &headers(&[tag])).map(|a| a.0),
            None
        );
    }

    #[test]
    fn continuations() {
        let extent = Extent {
            start: 0,
            end: 100,
            complete: 100,
        };
        let etag = Validator::ETag(HeaderValue::from_static("\"v1\""));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let verdict = |status: u16, pairs: &[(&str, &str)]| {
            let status = StatusCode::from_u16(status).unwrap();
            continuation(status, &headers(pairs), &extent, 40, &etag, now)
        };
        let modified = |v: &Verdict| matches!(v, Verdict::Modified(_));
        let tag = ("etag", "\"v1\"");
        assert_eq!(
            verdict(206, &[tag, ("content-range", "bytes 40-99/100")]),
            Verdict::Continue
        );
        assert_eq!(
            verdict(
                206,
                &[
                    tag,
                    ("content-range", "bytes 40-99/100"),
                    ("content-length", "60")
                ]
            ),
            Verdict::Continue
        );
        let cases: &[(u16, &[(&str, &str)])] = &[
            (200, &[tag, ("content-length", "100")]),
            (206, &[tag, ("content-range", "bytes 39-99/100")]),
            (206, &[tag, ("content-range", "bytes 41-99/100")]),
            (206, &[tag, ("content-range", "bytes 40-98/100")]),
            (206, &[tag, ("content-range", "bytes 40-99/101")]),
            (206, &[tag, ("content-range", "bytes 40-99/*")]),
            (206, &[tag]),
            (
                206,
                &[
                    tag,
                    ("content-range", "bytes 40-99/100"),
                    ("content-length", "61"),
                ],
            ),
            (
                206,
                &[("etag", "\"v2\""), ("content-range", "bytes 40-99/100")],
            ),
            (
                206,
                &[("etag", "W/\"v1\""), ("content-range", "bytes 40-99/100")],
            ),
            (206, &[("content-range", "bytes 40-99/100")]),
            (412, &[]),
            (416, &[("content-range", "bytes */100")]),
        ];
        for (status, pairs) in cases {
            let v = verdict(*status, pairs);
            assert!(modified(&v), "{status} {pairs:?}: {v:?}");
        }
        assert_eq!(
            verdict(503, &[("retry-after", "3")]),
            Verdict::AskAgain(Some(Duration::from_secs(3)))
        );
        assert_eq!(verdict(502, &[]), Verdict::AskAgain(None));
        for status in [301, 302, 307, 404, 500] {
            let v = verdict(status, &[("location", "http://elsewhere/x")]);
            assert!(matches!(v, Verdict::Protocol(_)), "{status}: {v:?}");
        }
    }

    #[test]
    fn a_date_validator_needs_the_same_date_and_no_etag() {
        let extent = Extent {
            start: 0,
            end: 10,
            complete: 10,
        };
        let lm = Validator::LastModified(HeaderValue::from_static(SECOND_BEFORE));
        let check = |pairs: &[(&str, &str)]| {
            continuation(
                StatusCode::PARTIAL_CONTENT,
                &headers(pairs),
                &extent,
                4,
                &lm,
                SystemTime::now(),
            )
        };
        let range = ("content-range", "bytes 4-9/10");
        assert_eq!(check(&[range]), Verdict::Continue);
        assert_eq!(
            check(&[range, ("last-modified", SECOND_BEFORE)]),
            Verdict::Continue
        );
        assert!(matches!(
            check(&[range, ("last-modified", DATE)]),
            Verdict::Modified(_)
        ));
        assert!(matches!(
            check(&[range, ("etag", "\"new\"")]),
            Verdict::Modified(_)
        ));
        assert_eq!(
            extent.range_from(4),
            HeaderValue::from_static("bytes=4-"),
            "to the end"
        );
        let middle = Extent {
            start: 10,
            end: 20,
            complete: 100,
        };
        assert_eq!(
            middle.range_from(15),
            HeaderValue::from_static("bytes=15-19")
        );
    }
}
