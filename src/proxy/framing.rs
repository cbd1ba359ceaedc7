//! Framing a proxy cannot pass on as it is: transfer codings that hyper
//! leaves applied (RFC 9112 §6.1).

use http::header::TRANSFER_ENCODING;
use http::HeaderMap;

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
}
