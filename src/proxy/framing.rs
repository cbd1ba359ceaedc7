//! Framing a proxy cannot pass on as it is: transfer codings that hyper
//! leaves applied (RFC 9112 §6.1), and `Content-Length` lists (RFC 9110
//! §8.6).

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue};

/// Why a message with these headers cannot be forwarded for its transfer
/// codings: anything but one final `chunked` (RFC 9112 §6.1). hyper
/// removes the final `chunked` and hands over the bytes still coded
/// otherwise (`gzip, chunked`), or chunked twice (`chunked, chunked`);
/// forwarded under a fresh framing with the coding's name gone, they would
/// be taken as the content itself.
pub(super) fn unforwardable_codings(headers: &HeaderMap) -> Option<&'static str> {
    let mut codings = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => None,
        (Some(first), None) if first == "chunked" => None,
        _ => Some(
            "transfer codings other than one final `chunked` are not forwarded \
             (RFC 9112 §6.1)",
        ),
    }
}

/// The one length the `Content-Length` lines of `headers` declare: `None`
/// without any; an error when a value is not a decimal number or two
/// differ. A list of one value repeated (`5, 5`, or two `5` lines) is that
/// value: RFC 9110 §8.6 lets a recipient collapse it, and hyper accepts
/// it from an upstream.
pub(super) fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, &'static str> {
    const INVALID: &str = "the Content-Length values are not one decimal number of bytes \
                           (several different values, or not digits; RFC 9110 §8.6)";
    let mut declared = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let line = value.to_str().map_err(|_| INVALID)?;
        for item in line.split(',').map(str::trim) {
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(INVALID);
            }
            let length: u64 = item.parse().map_err(|_| INVALID)?;
            if declared.is_some_and(|first| first != length) {
                return Err(INVALID);
            }
            declared = Some(length);
        }
    }
    Ok(declared)
}

/// Writes a message's `Content-Length` back as one value (`5, 5` becomes
/// `5`), so that a next hop that parses strictly reads the length this
/// proxy read; an error as [`declared_length`]'s.
pub(super) fn collapse_content_length(headers: &mut HeaderMap) -> Result<(), &'static str> {
    if let Some(length) = declared_length(headers)? {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_codings() {
        // (Transfer-Encoding lines, forwardable)
        let cases: &[(&[&str], bool)] = &[
            (&[], true),
            (&["chunked"], true),
            (&["Chunked"], true),
            (&[" chunked ", ""], true),
            (&["gzip, chunked"], false),
            (&["gzip", "chunked"], false),
            (&["chunked, chunked"], false),
            (&["chunked;x=1, gzip"], false),
            (&["identity"], false),
        ];
        for (lines, ok) in cases {
            let mut headers = HeaderMap::new();
            for line in *lines {
                headers.append(TRANSFER_ENCODING, line.parse().unwrap());
            }
            assert_eq!(unforwardable_codings(&headers).is_none(), *ok, "{lines:?}");
        }
        // Not text: refused, not a panic.
        let mut headers = HeaderMap::new();
        let odd = http::HeaderValue::from_bytes(b"chunked\xff").unwrap();
        headers.insert(TRANSFER_ENCODING, odd);
        assert!(unforwardable_codings(&headers).is_some());
    }

    #[test]
    fn content_length_lists() {
        // (Content-Length lines, the one value, or None for an error)
        let cases: &[(&[&str], Option<Option<u64>>)] = &[
            (&[], Some(None)),
            (&["5"], Some(Some(5))),
            (&["05"], Some(Some(5))),
            (&["5, 5"], Some(Some(5))),
            (&["5,5 , 5"], Some(Some(5))),
            (&["5", "5"], Some(Some(5))),
            (&["5", "5, 5"], Some(Some(5))),
            (&["0"], Some(Some(0))),
            (&["5, 6"], None),
            (&["5", "6"], None),
            (&["5, "], None),
            (&["5,,5"], None),
            (&[""], None),
            (&["+5"], None),
            (&["-1"], None),
            (&["5 5"], None),
            (&["0x10"], None),
            (&["18446744073709551616"], None),
        ];
        for (lines, want) in cases {
            let mut headers = HeaderMap::new();
            for line in *lines {
                headers.append(CONTENT_LENGTH, line.parse().unwrap());
            }
            assert_eq!(declared_length(&headers).ok(), *want, "{lines:?}");
            let collapsed = collapse_content_length(&mut headers);
            match want {
                None => assert!(collapsed.is_err(), "{lines:?}"),
                Some(length) => {
                    collapsed.unwrap();
                    let got: Vec<String> = headers
                        .get_all(CONTENT_LENGTH)
                        .iter()
                        .map(|v| v.to_str().unwrap().to_owned())
                        .collect();
                    let want: Vec<String> = length.iter().map(u64::to_string).collect();
                    assert_eq!(got, want, "{lines:?}");
                }
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_bytes(b"5\xff").unwrap());
        assert!(declared_length(&headers).is_err());
    }
}
