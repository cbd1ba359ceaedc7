//! Header rewriting: hop-by-hop removal (RFC 9110 §7.6.1), `Cookie`
//! fields joined (RFC 9113 §8.2.3), and the list rules the other rewrites
//! share.

use http::header::{CONNECTION, CONTENT_LENGTH, COOKIE, TE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, not the message (RFC 9110
/// §7.6.1), besides those a `Connection` header names. `Proxy-Connection`
/// and `Keep-Alive` are obsolete but still sent; `Proxy-Authorization` and
/// `Proxy-Authenticate` are meant for this proxy, not for the next hop.
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TE,
    TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::PROXY_AUTHORIZATION,
    http::header::PROXY_AUTHENTICATE,
];

/// Removes the hop-by-hop headers of a request or response before it is
/// forwarded (RFC 9110 §7.6.1): `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`,
/// `Proxy-Authorization` and `Proxy-Authenticate`.
///
/// Two rules keep the message's framing intact:
///
/// - a `Connection` header naming `Content-Length` does not remove it: the
///   length is the message's, not the connection's, and
///   [`ReplayLayer`](crate::ReplayLayer) holds each attempt to it;
/// - a message with `Transfer-Encoding` loses its `Content-Length` too:
///   `Transfer-Encoding` overrides it (RFC 9112 §6.3), so a length sent
///   along with it is one the sender never honoured, and forwarding it
///   without `Transfer-Encoding` would let it frame the message
///   (request smuggling).
///
/// Returns whether the message's `TE` accepted trailers (`TE: trailers`).
///
/// ```
/// use http::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("connection", "x-session, keep-alive".parse().unwrap());
/// headers.insert("x-session", "abc".parse().unwrap());
/// headers.insert("keep-alive", "timeout=5".parse().unwrap());
/// headers.insert("x-request-id", "42".parse().unwrap());
/// mmap_body::proxy::remove_hop_by_hop(&mut headers);
/// assert_eq!(headers.len(), 1);
/// assert!(headers.contains_key("x-request-id"));
/// ```
pub fn remove_hop_by_hop(headers: &mut HeaderMap) -> bool {
    let trailers = headers
        .get_all(TE)
        .iter()
        .flat_map(list_items)
        .any(|item| item.eq_ignore_ascii_case("trailers"));
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(list_items)
        .filter_map(|item| HeaderName::from_bytes(item.as_bytes()).ok())
        .filter(|name| *name != CONTENT_LENGTH)
        .collect();
    if headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
    }
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    trailers
}

/// Joins a request's `Cookie` fields into one, the crumbs separated by
/// `; `. HTTP/2 lets a client send each crumb as a field of its own, for
/// better compression, and a peer that forwards them to HTTP/1.1 must join
/// them (RFC 9113 §8.2.3): an HTTP/1.1 server expects one `Cookie` line
/// (RFC 6265 §5.4), and one that reads only the first loses the rest. Empty
/// fields are skipped.
pub(super) fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(COOKIE).iter().nth(1).is_none() {
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for crumb in headers.get_all(COOKIE).iter().filter(|v| !v.is_empty()) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    // Field values joined by `; ` are a field value.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

/// The items of a comma-separated header value, trimmed, empty ones
/// skipped; nothing for a value that is not visible ASCII.
fn list_items(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// RFC 9110 §5.6.2.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Appends `item` to the comma-separated list in `name`, as one header
/// line: `a, b` becomes `a, b, item` (several lines are joined first, as
/// RFC 9110 §5.3 allows), so readers that look at one line see it all.
pub(super) fn append_list(headers: &mut HeaderMap, name: HeaderName, item: HeaderValue) {
    let mut joined: Vec<u8> = Vec::new();
    for value in headers.get_all(&name) {
        if !value.is_empty() {
            joined.extend_from_slice(value.as_bytes());
            joined.extend_from_slice(b", ");
        }
    }
    joined.extend_from_slice(item.as_bytes());
    // The parts were valid header values, and so is their concatenation.
    let value = HeaderValue::from_bytes(&joined).unwrap_or(item);
    headers.insert(name, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn pairs(map: &HeaderMap) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn hop_by_hop_removal() {
        // (headers in, headers kept, TE accepted trailers)
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Pairs, Pairs, bool)] = &[
            (&[("x-a", "1")], &[("x-a", "1")], false),
            (
                &[
                    ("connection", "keep-alive"),
                    ("keep-alive", "timeout=5"),
                    ("proxy-connection", "keep-alive"),
                    ("te", "gzip"),
                    ("upgrade", "websocket"),
                    ("proxy-authorization", "Basic eDp5"),
                    ("proxy-authenticate", "Basic"),
                    ("x-a", "1"),
                ],
                &[("x-a", "1")],
                false,
            ),
            // Every header `Connection` names, over several lines, any case.
            (
                &[
                    ("connection", "X-Secret, , x-other"),
                    ("connection", "close"),
                    ("x-secret", "s"),
                    ("x-other", "o"),
                    ("x-kept", "k"),
                ],
                &[("x-kept", "k")],
                false,
            ),
            // `Connection` cannot remove the framing.
            (
                &[("connection", "content-length"), ("content-length", "5")],
                &[("content-length", "5")],
                false,
            ),
            // `Transfer-Encoding` takes `Content-Length` with it.
            (
                &[("transfer-encoding", "chunked"), ("content-length", "5")],
                &[],
                false,
            ),
            // `TE: trailers` is reported, then removed like any TE.
            (&[("te", "deflate, Trailers;q=1")], &[], false),
            (&[("te", "trailers, deflate")], &[], true),
            // A name that is not a header name is ignored, not a panic.
            (
                &[("connection", "bad name, x-a"), ("x-a", "1"), ("x-b", "2")],
                &[("x-b", "2")],
                false,
            ),
        ];
        for (input, kept, trailers) in cases {
            let mut headers = map(input);
            let got = remove_hop_by_hop(&mut headers);
            let want: Vec<(String, String)> = kept
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(pairs(&headers), want, "{input:?}");
            assert_eq!(got, *trailers, "{input:?}");
        }
    }

    #[test]
    fn cookies_joined() {
        // (Cookie fields, the one sent on)
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &[]),
            (&["a=1"], &["a=1"]),
            (&["a=1; b=2"], &["a=1; b=2"]),
            (&["a=1", "b=2"], &["a=1; b=2"]),
            (&["a=1", "b=2; c=3", "d=4"], &["a=1; b=2; c=3; d=4"]),
            (&["a=1", "", "b=2"], &["a=1; b=2"]),
            (&["", ""], &[""]),
        ];
        for (fields, want) in cases {
            let mut headers = HeaderMap::new();
            for field in *fields {
                headers.append(COOKIE, HeaderValue::from_str(field).unwrap());
            }
            headers.append("x-other", HeaderValue::from_static("o"));
            join_cookies(&mut headers);
            let got: Vec<&str> = headers
                .get_all(COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert_eq!(got, *want, "{fields:?}");
            assert_eq!(headers["x-other"], "o");
        }
    }
}
