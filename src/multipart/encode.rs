//! The bytes of the form around the parts: the boundary, each part's
//! header (its name and file name escaped) and the closing delimiter, and
//! the check of a part's media type.
//!
//! The escaping is the WHATWG HTML standard's, "multipart/form-data
//! encoding algorithm" (§4.10.21.8): in a field name or a file name, `"`
//! becomes `%22`, CR `%0D` and LF `%0A`; every other character, non-ASCII
//! ones included, is sent as its UTF-8 bytes. It is what browsers send, and
//! RFC 7578 §4.2 leaves the choice to the sender (its §2 and §5.1 allow
//! UTF-8 names and file names directly, without RFC 2231's `filename*=`,
//! which §4.2 says not to use).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::HeaderValue;

use crate::error::{Error, ErrorKind};

/// A field name or file name as it goes between the quotes of
/// `Content-Disposition`: `"` as `%22`, CR as `%0D`, LF as `%0A` (WHATWG).
pub(super) fn escape(name: &str) -> Cow<'_, str> {
    if !name.contains(['"', '\r', '\n']) {
        return Cow::Borrowed(name);
    }
    let mut escaped = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '"' => escaped.push_str("%22"),
            '\r' => escaped.push_str("%0D"),
            '\n' => escaped.push_str("%0A"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// A new boundary: `mmap-body-` and 32 hex digits, 128 random bits (see
/// the module docs of `multipart` on why no content holds it).
pub(super) fn new_boundary() -> String {
    let (high, low) = crate::random::unique_128();
    format!("mmap-body-{high:016x}{low:016x}")
}

/// `multipart/form-data; boundary=…` for `boundary`.
pub(super) fn content_type(boundary: &str) -> HeaderValue {
    // A boundary of `new_boundary` is ASCII letters, digits and `-`:
    // always a valid header value, and a token that needs no quotes.
    HeaderValue::try_from(format!("multipart/form-data; boundary={boundary}"))
        .unwrap_or(HeaderValue::from_static("multipart/form-data"))
}

/// The header of one part: its delimiter (after a CRLF that ends the part
/// before, unless it is the first), `Content-Disposition` and, if given,
/// `Content-Type`, then the empty line.
pub(super) fn part_header(
    boundary: &str,
    first: bool,
    name: &str,
    file_name: Option<&str>,
    mime: Option<&str>,
) -> String {
    let mut head = String::with_capacity(96 + boundary.len() + name.len());
    if !first {
        head.push_str("\r\n");
    }
    head.push_str("--");
    head.push_str(boundary);
    head.push_str("\r\nContent-Disposition: form-data; name=\"");
    head.push_str(&escape(name));
    head.push('"');
    if let Some(file_name) = file_name {
        head.push_str("; filename=\"");
        head.push_str(&escape(file_name));
        head.push('"');
    }
    head.push_str("\r\n");
    if let Some(mime) = mime {
        head.push_str("Content-Type: ");
        head.push_str(mime);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// The closing delimiter: after the last part's CRLF, or alone for a form
/// of no parts.
pub(super) fn closing(boundary: &str, empty: bool) -> Bytes {
    let lead = if empty { "" } else { "\r\n" };
    Bytes::from(format!("{lead}--{boundary}--\r\n"))
}

/// `mime` if it is a media type that can go in a part's `Content-Type`:
/// `type/subtype` of RFC 9110 tokens, then parameters of visible ASCII,
/// spaces and tabs (no CR, LF or other control byte, which would end the
/// header early and let the value write headers or parts of its own).
pub(super) fn check_mime(mime: &str) -> Result<String, Error> {
    let invalid = |why: &str| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{mime:?} is not a media type (`type/subtype`, as `video/mp4`): {why}"),
        )
    };
    let trimmed = mime.trim_matches([' ', '\t']);
    let (essence, params) = match trimmed.split_once(';') {
        Some((essence, params)) => (essence.trim_end_matches([' ', '\t']), Some(params)),
        None => (trimmed, None),
    };
    let (kind, subtype) = essence
        .split_once('/')
        .ok_or_else(|| invalid("no `/` between type and subtype"))?;
    for (what, token) in [("type", kind), ("subtype", subtype)] {
        if token.is_empty() {
            return Err(invalid(&format!("the {what} is empty")));
        }
        if let Some(c) = token.chars().find(|&c| !is_token_char(c)) {
            return Err(invalid(&format!("{c:?} is not allowed in the {what}")));
        }
    }
    if let Some(c) = params
        .unwrap_or("")
        .chars()
        .find(|&c| !(c == ' ' || c == '\t' || c.is_ascii_graphic()))
    {
        return Err(invalid(&format!("{c:?} is not allowed in the parameters")));
    }
    Ok(trimmed.to_owned())
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quote_is_percent_22() {
        // WHATWG: 0x22 (") as `%22`; RFC 7578 §4.2's example quotes the
        // name, which a quote inside would end.
        assert_eq!(escape(r#"say "hi".txt"#), "say %22hi%22.txt");
    }

    #[test]
    fn cr_is_percent_0d_and_lf_percent_0a() {
        // WHATWG: 0x0D as `%0D`, 0x0A as `%0A`: a name cannot end the
        // header line and write headers (or a part) of its own.
        assert_eq!(escape("a\rb"), "a%0Db");
        assert_eq!(escape("a\nb"), "a%0Ab");
        assert_eq!(
            escape("x\r\nContent-Type: text/html"),
            "x%0D%0AContent-Type: text/html"
        );
    }

    #[test]
    fn non_ascii_stays_utf_8() {
        // WHATWG and RFC 7578 §5.1: UTF-8 as it is, no `filename*=`.
        assert!(matches!(escape("résumé 履歴書.pdf"), Cow::Borrowed(_)));
        assert_eq!(
            escape("résumé 履歴書.pdf").as_bytes(),
            "résumé 履歴書.pdf".as_bytes()
        );
    }

    #[test]
    fn percent_backslash_and_semicolons_are_left_alone() {
        // Only the three bytes above are escaped, as browsers do: a `%`
        // already in a name is not doubled, so `a%22b` and `a"b` arrive
        // alike.
        assert_eq!(escape(r"100%; C:\a\b.txt"), r"100%; C:\a\b.txt");
        assert_eq!(escape("a%22b"), escape("a\"b"));
    }

    #[test]
    fn headers_of_first_and_later_parts() {
        let first = part_header("B", true, "title", None, None);
        assert_eq!(
            first,
            "--B\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n"
        );
        let file = part_header("B", false, "f\"", Some("a\nb.mp4"), Some("video/mp4"));
        assert_eq!(
            file,
            "\r\n--B\r\nContent-Disposition: form-data; name=\"f%22\"; filename=\"a%0Ab.mp4\"\r\n\
             Content-Type: video/mp4\r\n\r\n"
        );
        assert_eq!(closing("B", false), "\r\n--B--\r\n");
        assert_eq!(closing("B", true), "--B--\r\n");
    }

    #[test]
    fn boundaries_are_new_each_time_and_tokens() {
        let (a, b) = (new_boundary(), new_boundary());
        assert_ne!(a, b);
        assert_eq!(a.len(), "mmap-body-".len() + 32);
        // RFC 2046 §5.1.1: at most 70 characters.
        assert!(a.len() <= 70);
        assert!(a.chars().all(is_token_char));
        assert_eq!(
            content_type(&a).to_str().unwrap(),
            format!("multipart/form-data; boundary={a}")
        );
    }

    #[test]
    fn media_types_are_checked() {
        for good in [
            "video/mp4",
            "text/plain; charset=utf-8",
            "application/vnd.api+json",
            " image/png ",
            "multipart/mixed; boundary=\"a b\"",
        ] {
            assert!(check_mime(good).is_ok(), "{good}");
        }
        assert_eq!(check_mime(" image/png ").unwrap(), "image/png");
        for bad in [
            "",
            "video",
            "/mp4",
            "video/",
            "vi deo/mp4",
            "video/mp4\r\nX-Evil: 1",
            "text/plain; charset=utf-8\n",
            "text/plain; é",
            "a/b/c",
        ] {
            let err = check_mime(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
            assert!(err.to_string().contains("not a media type"), "{err}");
        }
    }
}
