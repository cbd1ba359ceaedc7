//! Header rewriting: hop-by-hop removal (RFC 9110 §7.6.1), `Via`
//! (§7.6.3), and `Forwarded` / `X-Forwarded-For` (RFC 7239).

use std::net::IpAddr;

use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TE, TRANSFER_ENCODING, VIA};
use http::{HeaderMap, HeaderName, HeaderValue, Version};

/// How a proxy marks the requests and responses it forwards.
///
/// ```
/// use mmap_body::proxy::Forwarding;
///
/// // `Via: 1.1 edge-7` on each message forwarded, and the client's address
/// // in `Forwarded` and `X-Forwarded-For` on each request.
/// let forwarding = Forwarding::new().via("edge-7").forwarded_for(true);
/// # let _ = forwarding;
/// ```
#[derive(Debug, Clone)]
pub struct Forwarding {
    pseudonym: HeaderValue,
    forwarded_for: bool,
}

impl Default for Forwarding {
    fn default() -> Forwarding {
        Forwarding {
            pseudonym: HeaderValue::from_static("mmap-body"),
            forwarded_for: false,
        }
    }
}

impl Forwarding {
    /// `Via: <version> mmap-body`, and no `Forwarded` / `X-Forwarded-For`.
    pub fn new() -> Forwarding {
        Forwarding::default()
    }

    /// The name this proxy gives itself in `Via` (RFC 9110 §7.6.3: a
    /// token, such as `edge-7`, rather than a real host name, which `Via`
    /// would otherwise reveal).
    ///
    /// # Panics
    ///
    /// If `pseudonym` is empty or not an HTTP token (letters, digits and
    /// ``!#$%&'*+-.^_`|~``): it is configuration, not input.
    pub fn via(mut self, pseudonym: &str) -> Forwarding {
        assert!(
            !pseudonym.is_empty() && pseudonym.bytes().all(is_tchar),
            "the Via pseudonym {pseudonym:?} must be an HTTP token, such as `edge-7`"
        );
        self.pseudonym = HeaderValue::from_str(pseudonym).expect("a token is a header value");
        self
    }

    /// Whether each request forwarded carries the client's address, in
    /// `Forwarded: for=...` (RFC 7239, with `host=` the client's `Host`)
    /// and `X-Forwarded-For` (default: no).
    ///
    /// Values already in the request are kept and appended to, so an
    /// upstream behind a chain of proxies sees all of it; but the client
    /// may have written them. An upstream must trust only the entries its
    /// own proxies appended: the last one, behind a single proxy.
    pub fn forwarded_for(mut self, on: bool) -> Forwarding {
        self.forwarded_for = on;
        self
    }

    /// Adds `Via`, and `Forwarded` / `X-Forwarded-For` when turned on and
    /// `peer` is known, to a request's headers. `host` is the client's
    /// `Host` (or `:authority`), taken before it was replaced.
    pub(crate) fn mark_request(
        &self,
        headers: &mut HeaderMap,
        version: Version,
        peer: Option<IpAddr>,
        host: Option<&HeaderValue>,
    ) {
        append_via(headers, version, &self.pseudonym);
        if let (true, Some(peer)) = (self.forwarded_for, peer) {
            append_list(
                headers,
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(&peer.to_string()).expect("an address is a header value"),
            );
            append_list(
                headers,
                http::header::FORWARDED,
                forwarded_element(peer, host),
            );
        }
    }

    /// Adds `Via` to a response's headers.
    pub(crate) fn mark_response(&self, headers: &mut HeaderMap, version: Version) {
        append_via(headers, version, &self.pseudonym);
    }
}

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
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `Via`'s received-protocol (RFC 9110 §7.6.3): the protocol name is
/// omitted for HTTP.
fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

fn append_via(headers: &mut HeaderMap, version: Version, pseudonym: &HeaderValue) {
    let mut hop = Vec::with_capacity(4 + pseudonym.len());
    hop.extend_from_slice(protocol(version).as_bytes());
    hop.push(b' ');
    hop.extend_from_slice(pseudonym.as_bytes());
    let hop = HeaderValue::from_bytes(&hop).expect("a version and a token");
    append_list(headers, VIA, hop);
}

/// Appends `item` to the comma-separated list in `name`, as one header
/// line: `a, b` becomes `a, b, item` (several lines are joined first, as
/// RFC 9110 §5.3 allows), so readers that look at one line see it all.
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: HeaderValue) {
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

/// A `Forwarded` element (RFC 7239 §4): `for=192.0.2.1`,
/// `for="[2001:db8::1]"`, and `;host="..."` when the client named one that
/// needs no escaping.
fn forwarded_element(peer: IpAddr, host: Option<&HeaderValue>) -> HeaderValue {
    let mut element = match peer {
        IpAddr::V4(ip) => format!("for={ip}"),
        IpAddr::V6(ip) => format!("for=\"[{ip}]\""),
    };
    let host = host.and_then(|h| h.to_str().ok()).filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    });
    if let Some(host) = host {
        element.push_str(";host=\"");
        element.push_str(host);
        element.push('"');
    }
    HeaderValue::from_str(&element).expect("visible ASCII")
}

/// The client's `Host`, for `Forwarded: host=`.
pub(crate) fn client_host(headers: &HeaderMap) -> Option<HeaderValue> {
    headers.get(HOST).cloned()
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
    fn via_is_appended() {
        let fwd = Forwarding::new().via("edge-1");
        let cases: &[(&[&str], Version, &str)] = &[
            (&[], Version::HTTP_11, "1.1 edge-1"),
            (&[], Version::HTTP_2, "2 edge-1"),
            (&[], Version::HTTP_10, "1.0 edge-1"),
            (&["1.0 fred"], Version::HTTP_11, "1.0 fred, 1.1 edge-1"),
            (
                &["1.0 fred", "1.1 p.example.net"],
                Version::HTTP_11,
                "1.0 fred, 1.1 p.example.net, 1.1 edge-1",
            ),
        ];
        for (existing, version, want) in cases {
            let mut headers = HeaderMap::new();
            for v in *existing {
                headers.append(VIA, HeaderValue::from_str(v).unwrap());
            }
            fwd.mark_response(&mut headers, *version);
            let got: Vec<&str> = headers
                .get_all(VIA)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert_eq!(got, vec![*want], "{existing:?}");
        }
    }

    #[test]
    fn forwarded_for() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let host = HeaderValue::from_static("files.example:8080");
        let odd = HeaderValue::from_static("a\"b");
        // (on, peer, host, existing XFF, XFF, Forwarded)
        type Case<'a> = (
            bool,
            Option<IpAddr>,
            Option<&'a HeaderValue>,
            &'a [&'a str],
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            (false, Some(v4), Some(&host), &[], None, None),
            (true, None, Some(&host), &[], None, None),
            (
                true,
                Some(v4),
                Some(&host),
                &[],
                Some("192.0.2.7"),
                Some("for=192.0.2.7;host=\"files.example:8080\""),
            ),
            (
                true,
                Some(v6),
                None,
                &["198.51.100.1"],
                Some("198.51.100.1, 2001:db8::1"),
                Some("for=\"[2001:db8::1]\""),
            ),
            (
                true,
                Some(v4),
                Some(&odd),
                &[],
                Some("192.0.2.7"),
                Some("for=192.0.2.7"),
            ),
        ];
        for (on, peer, host, xff, want_xff, want_fwd) in cases {
            let fwd = Forwarding::new().forwarded_for(*on);
            let mut headers = HeaderMap::new();
            for v in *xff {
                headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
            }
            fwd.mark_request(&mut headers, Version::HTTP_11, *peer, *host);
            let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap());
            assert_eq!(get("x-forwarded-for"), *want_xff, "{on} {peer:?}");
            assert_eq!(get("forwarded"), *want_fwd, "{on} {peer:?}");
            assert_eq!(get("via"), Some("1.1 mmap-body"));
        }
    }

    #[test]
    #[should_panic(expected = "must be an HTTP token")]
    fn pseudonym_must_be_a_token() {
        let _ = Forwarding::new().via("my proxy");
    }
}
