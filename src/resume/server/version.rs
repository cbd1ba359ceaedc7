//! The interop versions [`Uploads`](super::Uploads) answers, each in its
//! own dialect: what a request of that version means by its fields, and
//! how the answers say it back. One upload can be created in one version
//! and resumed in another; only the words change, not the upload.
//!
//! | version | draft | clients | what differs |
//! |---|---|---|---|
//! | 3 | -01 | URLSession, iOS 17 / macOS 14 | `Upload-Incomplete` (`?1`: more to come); an append without it is the last |
//! | 4, 5 | -02, -03 | URLSession, iOS 18.0 (5); tus-js-client `ietf-draft-03` (5) | `Upload-Complete`; an append without it is the last; no media type |
//! | 6 | -04, -05 | URLSession, iOS 18.1 and later; tus-js-client `ietf-draft-05`; tusd | appends are `application/partial-upload`; `Upload-Limit` says `expires` |
//! | 7 | -06 to -08 | | every append says `Upload-Complete`; an append that does not complete is `204` |
//! | 8 | -09 to the editor's copy (9 is taken as 8) | this crate's client | |
//!
//! Versions 3 to 6 answer an append that leaves the upload incomplete with
//! `201`, as their drafts say; every answer carries `Upload-Offset`
//! (tus-js-client needs it on each) and says the version back. A request
//! with no version is taken as the newest; one with a version not listed
//! here is not an upload request (`Uploads::is_creation` is `false`).

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use super::super::fields::{
    boolean, integer, sf_bool, Limits, UPLOAD_COMPLETE, UPLOAD_DRAFT_INTEROP_VERSION,
};

/// `Upload-Incomplete`: interop version 3's completeness field, the
/// opposite of `Upload-Complete` (`?1`: more content follows).
pub(crate) const UPLOAD_INCOMPLETE: HeaderName = HeaderName::from_static("upload-incomplete");

/// The interop versions answered, oldest first.
pub(crate) const VERSIONS: [u64; 7] = [3, 4, 5, 6, 7, 8, 9];

/// How one request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dialect {
    /// The interop version (9 counts as 8).
    version: u64,
    /// The version the request named, which the answers name back.
    named: Option<u64>,
}

impl Dialect {
    /// The newest dialect: what a request that names no version gets.
    pub(crate) const NEWEST: Dialect = Dialect {
        version: 8,
        named: None,
    };

    /// The dialect `headers` speak; `None` for a version not answered here.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Dialect> {
        if !headers.contains_key(UPLOAD_DRAFT_INTEROP_VERSION) {
            return Some(Dialect::NEWEST);
        }
        let version = integer(headers, &UPLOAD_DRAFT_INTEROP_VERSION)?;
        VERSIONS.contains(&version).then_some(Dialect {
            version: version.min(8),
            named: Some(version),
        })
    }

    /// Whether a request in this dialect asks to create an upload: it says
    /// whether its content completes it.
    pub(crate) fn is_creation(self, headers: &HeaderMap) -> bool {
        headers.contains_key(self.flag_name())
    }

    fn flag_name(self) -> HeaderName {
        if self.version == 3 {
            UPLOAD_INCOMPLETE
        } else {
            UPLOAD_COMPLETE
        }
    }

    /// Whether the request's content completes the upload, as it says;
    /// `None` when it says nothing readable. An append of versions 3 to 6
    /// that says nothing is the last (`last_by_default`).
    pub(crate) fn completes(self, headers: &HeaderMap, last_by_default: bool) -> Option<bool> {
        let name = self.flag_name();
        if !headers.contains_key(&name) {
            return (last_by_default && self.version <= 6).then_some(true);
        }
        let said = boolean(headers, &name)?;
        Some(if self.version == 3 { !said } else { said })
    }

    /// Marks an answer: whether the upload is complete, in this dialect's
    /// field, and the version the request named.
    pub(crate) fn mark(self, headers: &mut HeaderMap, complete: bool) {
        if self.version == 3 {
            headers.insert(UPLOAD_INCOMPLETE, sf_bool(!complete));
        } else {
            headers.insert(UPLOAD_COMPLETE, sf_bool(complete));
        }
        if let Some(named) = self.named {
            headers.insert(UPLOAD_DRAFT_INTEROP_VERSION, HeaderValue::from(named));
        }
    }

    /// Whether an append must be `application/partial-upload` (from 6).
    pub(crate) fn needs_media_type(self) -> bool {
        self.version >= 6
    }

    /// The status of an answer to an append (or a creation) that leaves
    /// the upload incomplete: `201` to version 6, `204` from 7.
    pub(crate) fn incomplete_status(self, creation: bool) -> StatusCode {
        if creation || self.version <= 6 {
            StatusCode::CREATED
        } else {
            StatusCode::NO_CONTENT
        }
    }

    /// `Upload-Limit` as this dialect spells it (version 6 says `expires`
    /// for `max-age`); `min-size=0` when there is no limit, as the newest
    /// draft asks of every answer that announces the resource. Nothing
    /// before version 6, which had no such field.
    pub(crate) fn limits(self, limits: Limits) -> Option<HeaderValue> {
        if self.version < 6 {
            return None;
        }
        let text = limits.to_text(if self.version == 6 {
            "expires"
        } else {
            "max-age"
        });
        let text = text.unwrap_or_else(|| "min-size=0".to_owned());
        HeaderValue::from_str(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn of(version: &str) -> Option<Dialect> {
        Dialect::of(&headers(&[("upload-draft-interop-version", version)]))
    }

    #[test]
    fn versions_answered_and_refused() {
        for v in ["3", "4", "5", "6", "7", "8", "9"] {
            assert!(of(v).is_some(), "{v}");
        }
        for v in ["2", "10", "x", "-1", ""] {
            assert_eq!(of(v), None, "{v}");
        }
        assert_eq!(Dialect::of(&HeaderMap::new()), Some(Dialect::NEWEST));
        // Said twice, even the same: not one version.
        let mut twice = HeaderMap::new();
        twice.append("upload-draft-interop-version", "6".parse().unwrap());
        twice.append("upload-draft-interop-version", "6".parse().unwrap());
        assert_eq!(Dialect::of(&twice), None);
        // A completeness field given twice says nothing readable.
        let mut flags = HeaderMap::new();
        flags.append("upload-complete", "?1".parse().unwrap());
        flags.append("upload-complete", "?0".parse().unwrap());
        assert_eq!(Dialect::NEWEST.completes(&flags, true), None);
        assert_eq!(of("9").unwrap().version, 8);
    }

    #[test]
    fn version_3_reads_and_writes_upload_incomplete() {
        let v3 = of("3").unwrap();
        let more = headers(&[("upload-incomplete", "?1")]);
        let done = headers(&[("upload-incomplete", "?0")]);
        assert!(v3.is_creation(&done) && !v3.is_creation(&headers(&[("upload-complete", "?1")])));
        assert_eq!(v3.completes(&more, false), Some(false));
        assert_eq!(v3.completes(&done, false), Some(true));
        // An append that says nothing is the last one.
        assert_eq!(v3.completes(&HeaderMap::new(), true), Some(true));
        let mut answer = HeaderMap::new();
        v3.mark(&mut answer, false);
        assert_eq!(answer["upload-incomplete"], "?1");
        assert_eq!(answer["upload-draft-interop-version"], "3");
        assert!(!answer.contains_key("upload-complete"));
    }

    #[test]
    fn later_versions_read_upload_complete_and_7_on_requires_it() {
        let complete = headers(&[("upload-complete", "?1")]);
        for v in ["5", "6", "8"] {
            let dialect = of(v).unwrap();
            assert_eq!(dialect.completes(&complete, true), Some(true), "{v}");
        }
        assert_eq!(
            of("6").unwrap().completes(&HeaderMap::new(), true),
            Some(true)
        );
        assert_eq!(of("7").unwrap().completes(&HeaderMap::new(), true), None);
        assert_eq!(Dialect::NEWEST.completes(&HeaderMap::new(), false), None);
        assert!(!of("5").unwrap().needs_media_type() && of("6").unwrap().needs_media_type());
        assert_eq!(
            of("6").unwrap().incomplete_status(false),
            StatusCode::CREATED
        );
        assert_eq!(
            of("7").unwrap().incomplete_status(false),
            StatusCode::NO_CONTENT
        );
        let mut answer = HeaderMap::new();
        Dialect::NEWEST.mark(&mut answer, true);
        assert_eq!(answer["upload-complete"], "?1");
        assert!(!answer.contains_key("upload-draft-interop-version"));
    }

    #[test]
    fn limits_by_version() {
        let limits = Limits {
            max_size: Some(10),
            max_age: Some(Duration::from_secs(60)),
            ..Limits::default()
        };
        assert_eq!(of("5").unwrap().limits(limits), None);
        assert_eq!(
            of("6").unwrap().limits(limits).unwrap(),
            "max-size=10, expires=60"
        );
        assert_eq!(
            of("8").unwrap().limits(limits).unwrap(),
            "max-size=10, max-age=60"
        );
        assert_eq!(
            of("8").unwrap().limits(Limits::default()).unwrap(),
            "min-size=0"
        );
    }
}
