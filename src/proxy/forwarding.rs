//! [`Forwarding`]: how a proxy marks what it forwards, `Via` (RFC 9110
//! §7.6.3) both ways, `Forwarded` / `X-Forwarded-For` (RFC 7239) on
//! requests.

use std::net::IpAddr;

use http::header::VIA;
use http::{HeaderMap, HeaderName, HeaderValue, Version};

use super::forwarded::append_forwarded;
use super::headers::{append_list, is_tchar};

/// How a proxy marks the requests and responses it forwards.
///
/// ```
/// use mmap_body::proxy::Forwarding;
///
/// // `Via: 1.1 edge-7` on each message forwarded, and the client's address
/// // in `Forwarded` and `X-Forwarded-For` on each request, in place of
/// // whatever the client put there.
/// let forwarding = Forwarding::new()
///     .via("edge-7")
///     .strip_client_forwarding(true)
///     .forwarded_for(true);
/// # let _ = forwarding;
/// ```
///
/// # Hazards
///
/// - **By default, what a client says about itself reaches the upstream.**
///   `Forwarded`, `X-Forwarded-For`, `X-Forwarded-Host`,
///   `X-Forwarded-Proto` and `X-Real-IP` are end-to-end headers: with
///   [`forwarded_for`](Forwarding::forwarded_for) off, a client's own
///   values pass through untouched, and an upstream that takes
///   `X-Forwarded-For` for the client's address (rate limits, allow lists,
///   audit logs) believes whatever the client wrote. A proxy that clients
///   reach directly should turn on
///   [`strip_client_forwarding`](Forwarding::strip_client_forwarding).
/// - **Appended lists hold the client's entries too.** With
///   [`forwarded_for`](Forwarding::forwarded_for) on and nothing
///   stripped, this proxy's entry is the last one; those before it are
///   the client's word (or the proxies' in front, if any).
#[derive(Debug, Clone)]
pub struct Forwarding {
    pseudonym: HeaderValue,
    forwarded_for: bool,
    strip_client_forwarding: bool,
}

impl Default for Forwarding {
    fn default() -> Forwarding {
        Forwarding {
            pseudonym: HeaderValue::from_static("mmap-body"),
            forwarded_for: false,
            strip_client_forwarding: false,
        }
    }
}

/// The headers in which a request tells of where it came from, which
/// [`Forwarding::strip_client_forwarding`] removes.
const CLIENT_FORWARDING: [&str; 7] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
];

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
    /// own proxies appended: the last one, behind a single proxy. A
    /// received `Forwarded` that does not follow RFC 7239 §4 (an unbalanced
    /// quote, a pair that is not `token=value`) is replaced by this proxy's
    /// element rather than appended to: appended, this proxy's element
    /// would end up inside the client's open quote.
    pub fn forwarded_for(mut self, on: bool) -> Forwarding {
        self.forwarded_for = on;
        self
    }

    /// Whether the forwarding headers a request arrives with are removed
    /// before it is forwarded (default: no, they are kept): `Forwarded`,
    /// `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto`,
    /// `X-Forwarded-Port`, `X-Forwarded-Prefix` and `X-Real-IP`.
    ///
    /// Turn it on for a proxy at the edge, the first one clients reach,
    /// so that the upstream sees only what this proxy says (with
    /// [`forwarded_for`](Forwarding::forwarded_for): the client's real
    /// address) and nothing a client made up. Leave it off behind another
    /// proxy whose entries the upstream should see.
    pub fn strip_client_forwarding(mut self, on: bool) -> Forwarding {
        self.strip_client_forwarding = on;
        self
    }

    /// Removes the client's forwarding headers when asked, then adds `Via`,
    /// and `Forwarded` / `X-Forwarded-For` when turned on and `peer` is
    /// known, to a request's headers. `host` is the client's `Host` (or
    /// `:authority`), taken before it was replaced.
    pub(crate) fn mark_request(
        &self,
        headers: &mut HeaderMap,
        version: Version,
        peer: Option<IpAddr>,
        host: Option<&HeaderValue>,
    ) {
        if self.strip_client_forwarding {
            for name in CLIENT_FORWARDING {
                headers.remove(name);
            }
        }
        append_via(headers, version, &self.pseudonym);
        if let (true, Some(peer)) = (self.forwarded_for, peer) {
            append_list(
                headers,
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(&peer.to_string()).expect("an address is a header value"),
            );
            append_forwarded(headers, peer, host);
        }
    }

    /// Adds `Via` to a response's headers.
    pub(crate) fn mark_response(&self, headers: &mut HeaderMap, version: Version) {
        append_via(headers, version, &self.pseudonym);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn client_forwarding_stripped_or_kept() {
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let received = [
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
            ("X-Forwarded-Host", "evil.example"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/admin"),
            ("x-real-ip", "6.6.6.6"),
            ("x-kept", "k"),
        ];
        // (strip, forwarded_for, the headers sent on)
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(bool, bool, Headers)] = &[
            (false, false, &received),
            (
                false,
                true,
                &[
                    ("forwarded", "for=6.6.6.6, for=192.0.2.7"),
                    ("x-forwarded-for", "6.6.6.6, 192.0.2.7"),
                    ("x-forwarded-host", "evil.example"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-port", "443"),
                    ("x-forwarded-prefix", "/admin"),
                    ("x-real-ip", "6.6.6.6"),
                    ("x-kept", "k"),
                ],
            ),
            (true, false, &[("x-kept", "k")]),
            (
                true,
                true,
                &[
                    ("forwarded", "for=192.0.2.7"),
                    ("x-forwarded-for", "192.0.2.7"),
                    ("x-kept", "k"),
                ],
            ),
        ];
        for (strip, on, want) in cases {
            let fwd = Forwarding::new()
                .strip_client_forwarding(*strip)
                .forwarded_for(*on);
            let mut headers = HeaderMap::new();
            for (name, value) in received {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_static(value),
                );
            }
            fwd.mark_request(&mut headers, Version::HTTP_11, Some(peer), None);
            assert_eq!(headers.remove(VIA).unwrap(), "1.1 mmap-body");
            let mut got: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            got.sort();
            let mut want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect();
            want.sort();
            assert_eq!(got, want, "strip {strip}, forwarded_for {on}");
        }
    }
}
