//! The draft's header fields (Structured Fields, RFC 9651: the few forms
//! the draft uses), its media type, interop version and problem types.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// `Upload-Offset`: bytes of the representation the server holds, or the
/// offset a request's content starts at (an sf-integer).
pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
/// `Upload-Complete`: whether the request's content ends the
/// representation, or the upload is complete (an sf-boolean).
pub const UPLOAD_COMPLETE: HeaderName = HeaderName::from_static("upload-complete");
/// `Upload-Length`: the whole representation's length (an sf-integer).
pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
/// `Upload-Limit`: the server's limits (an sf-dictionary).
pub const UPLOAD_LIMIT: HeaderName = HeaderName::from_static("upload-limit");
/// `Upload-Draft-Interop-Version`: which revision of the draft a request
/// follows, while it is a draft.
pub const UPLOAD_DRAFT_INTEROP_VERSION: HeaderName =
    HeaderName::from_static("upload-draft-interop-version");

/// The draft revision implemented here: draft-ietf-httpbis-resumable-upload-12
/// (July 2026).
pub const DRAFT: &str = "draft-ietf-httpbis-resumable-upload-12";

/// The interop version this crate sends and accepts: 8, the value the draft
/// has carried since revision -09 (it was 6 in -04/-05 and 7 in -06 to -08).
pub const INTEROP_VERSION: &str = "8";

/// The media type of a `PATCH` that appends to an upload.
pub const PARTIAL_UPLOAD: &str = "application/partial-upload";

/// An sf-integer that is not negative (RFC 9651 §3.3.1: at most 15
/// digits), with parameters allowed and ignored; `None` for anything else
/// or for a field given twice.
pub(crate) fn integer(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let value = single(headers, name)?;
    let item = bare_item(value)?;
    if item.is_empty() || item.len() > 15 || !item.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    item.parse().ok()
}

/// An sf-boolean (`?0` or `?1`), parameters ignored; `None` otherwise.
pub(crate) fn boolean(headers: &HeaderMap, name: &HeaderName) -> Option<bool> {
    match bare_item(single(headers, name)?)? {
        "?1" => Some(true),
        "?0" => Some(false),
        _ => None,
    }
}

/// The one value of `name`, as text.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()
}

/// The item before any `;parameters`, trimmed.
fn bare_item(value: &str) -> Option<&str> {
    Some(value.split(';').next()?.trim_matches([' ', '\t']))
}

/// `?1` or `?0`.
pub(crate) fn sf_bool(value: bool) -> HeaderValue {
    HeaderValue::from_static(if value { "?1" } else { "?0" })
}

/// An sf-integer.
pub(crate) fn sf_int(value: u64) -> HeaderValue {
    HeaderValue::from(value)
}

/// A server's limits on uploads (`Upload-Limit`); each `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The largest representation accepted, in bytes (`max-size`).
    pub max_size: Option<u64>,
    /// The smallest (`min-size`).
    pub min_size: Option<u64>,
    /// The most content one request may carry (`max-append-size`).
    pub max_append_size: Option<u64>,
    /// The least content one request that does not complete the upload may
    /// carry (`min-append-size`).
    pub min_append_size: Option<u64>,
    /// How long the upload resource lives after the answer (`max-age`).
    pub max_age: Option<Duration>,
}

impl Limits {
    /// The dictionary's text, the lifetime under `age_key` (`max-age`, or
    /// `expires` for interop version 6); `None` when there is no limit.
    pub(crate) fn to_text(self, age_key: &str) -> Option<String> {
        let members = [
            ("max-size", self.max_size),
            ("min-size", self.min_size),
            ("max-append-size", self.max_append_size),
            ("min-append-size", self.min_append_size),
            (age_key, self.max_age.map(|age| age.as_secs())),
        ];
        let text: Vec<String> = members
            .iter()
            .filter_map(|(key, value)| value.map(|v| format!("{key}={v}")))
            .collect();
        (!text.is_empty()).then(|| text.join(", "))
    }

    /// `Upload-Limit` as the draft says a receiver reads it: unknown keys
    /// are ignored, a known key with a value that is not an integer makes
    /// the whole field ignored (all limits unknown).
    pub(crate) fn from_headers(headers: &HeaderMap) -> Limits {
        let Some(value) = single(headers, &UPLOAD_LIMIT) else {
            return Limits::default();
        };
        let mut limits = Limits::default();
        for member in value.split(',') {
            let member = member
                .split(';')
                .next()
                .unwrap_or("")
                .trim_matches([' ', '\t']);
            let (key, value) = member.split_once('=').unwrap_or((member, "?1"));
            let slot = match key {
                "max-size" => &mut limits.max_size,
                "min-size" => &mut limits.min_size,
                "max-append-size" => &mut limits.max_append_size,
                "min-append-size" => &mut limits.min_append_size,
                "max-age" => {
                    match parse_int(value) {
                        Some(age) => limits.max_age = Some(Duration::from_secs(age)),
                        None => return Limits::default(),
                    }
                    continue;
                }
                _ => continue,
            };
            match parse_int(value) {
                Some(value) => *slot = Some(value),
                None => return Limits::default(),
            }
        }
        limits
    }
}

fn parse_int(text: &str) -> Option<u64> {
    let text = text.trim_matches([' ', '\t']);
    if text.is_empty() || text.len() > 15 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Whether an `Accept-Patch` field (RFC 5789 §3.1) lists the draft's media
/// type, which a resource that accepts resumable uploads must (draft §4.1:
/// `*/*` or `application/*` alone do not say so).
pub(crate) fn accepts_partial_upload(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::HeaderName::from_static("accept-patch"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(PARTIAL_UPLOAD))
        })
}

/// A problem type of the draft (RFC 9457), as the body of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// `mismatching-upload-offset`, 409.
    MismatchingOffset { expected: u64, provided: u64 },
    /// `completed-upload`, 400.
    CompletedUpload,
    /// `inconsistent-upload-length`, 400.
    InconsistentLength,
}

impl Problem {
    /// The JSON body (`application/problem+json`).
    pub(crate) fn body(self) -> Bytes {
        const BASE: &str = "https://iana.org/assignments/http-problem-types#";
        let text = match self {
            Problem::MismatchingOffset { expected, provided } => format!(
                "{{\"type\":\"{BASE}mismatching-upload-offset\",\"title\":\"offset from request does not match offset of resource\",\"expected-offset\":{expected},\"provided-offset\":{provided}}}"
            ),
            Problem::CompletedUpload => format!(
                "{{\"type\":\"{BASE}completed-upload\",\"title\":\"upload is already completed\"}}"
            ),
            Problem::InconsistentLength => format!(
                "{{\"type\":\"{BASE}inconsistent-upload-length\",\"title\":\"inconsistent length values for upload\"}}"
            ),
        };
        Bytes::from(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append((*name).clone(), value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn integers_and_booleans_as_structured_fields() {
        let ok = |v: &str| integer(&map(&[(&UPLOAD_OFFSET, v)]), &UPLOAD_OFFSET);
        assert_eq!(ok("0"), Some(0));
        assert_eq!(ok(" 734003200 "), Some(734_003_200));
        assert_eq!(ok("12;a=1"), Some(12));
        for bad in ["-1", "1.5", "", "0x10", "1234567890123456", "1, 2", "?1"] {
            assert_eq!(ok(bad), None, "{bad}");
        }
        let twice = map(&[(&UPLOAD_OFFSET, "1"), (&UPLOAD_OFFSET, "1")]);
        assert_eq!(integer(&twice, &UPLOAD_OFFSET), None);
        let b = |v: &str| boolean(&map(&[(&UPLOAD_COMPLETE, v)]), &UPLOAD_COMPLETE);
        assert_eq!(
            (b("?1"), b("?0"), b("?1;x")),
            (Some(true), Some(false), Some(true))
        );
        for bad in ["1", "true", "?2", ""] {
            assert_eq!(b(bad), None, "{bad}");
        }
    }

    #[test]
    fn limits_round_trip_and_bad_values_void_the_field() {
        let limits = Limits {
            max_size: Some(1 << 30),
            max_age: Some(Duration::from_secs(3600)),
            ..Limits::default()
        };
        let value = limits.to_text("max-age").unwrap();
        assert_eq!(value, "max-size=1073741824, max-age=3600");
        let headers = map(&[(&UPLOAD_LIMIT, &value)]);
        assert_eq!(Limits::from_headers(&headers), limits);
        let unknown = map(&[(&UPLOAD_LIMIT, "max-size=5, shiny=?1, min-size=1")]);
        let read = Limits::from_headers(&unknown);
        assert_eq!((read.max_size, read.min_size), (Some(5), Some(1)));
        let wrong_type = map(&[(&UPLOAD_LIMIT, "max-size=5, max-age=\"soon\"")]);
        assert_eq!(Limits::from_headers(&wrong_type), Limits::default());
        assert_eq!(Limits::default().to_text("max-age"), None);
    }

    #[test]
    fn accept_patch_must_name_the_media_type() {
        let name = HeaderName::from_static("accept-patch");
        let yes = map(&[(&name, "application/json, Application/Partial-Upload")]);
        assert!(accepts_partial_upload(&yes));
        for no in ["*/*", "application/*", "application/json"] {
            assert!(!accepts_partial_upload(&map(&[(&name, no)])), "{no}");
        }
        assert!(!accepts_partial_upload(&HeaderMap::new()));
    }
}
