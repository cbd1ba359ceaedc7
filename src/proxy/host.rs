//! The host a request is for: one valid `Host` over HTTP/1.1 (RFC 9112
//! §3.2), `:authority` over HTTP/2 with any `Host` agreeing (RFC 9113
//! §8.3.1).

use std::net::Ipv6Addr;

use http::header::HOST;
use http::{HeaderMap, HeaderValue, Uri, Version};

/// The host the request is for (`host[:port]`, for `Forwarded: host=`), or
/// why it must be answered `400`:
///
/// - more than one `Host` line, or one that is not `host[:port]` (RFC 3986
///   §3.2.2: no user info, no path, no blank), whatever the version;
/// - HTTP/1.1 with neither a `Host` nor an authority in the request
///   target (absolute form, `GET http://a.example/ HTTP/1.1`); with one,
///   the target's authority is the host (RFC 9112 §3.2.2);
/// - HTTP/2 and HTTP/3, whose `:authority` hyper puts in the URI: a
///   `Host` that names another host than `:authority`, or neither;
/// - an authority with user info (`user@host`, RFC 9113 §8.3.1).
///
/// HTTP/1.0 needs no `Host`: `Ok(None)` without one.
pub(super) fn request_host(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, &'static str> {
    let mut lines = headers.get_all(HOST).iter();
    let host = lines.next();
    if lines.next().is_some() {
        return Err("the request has more than one Host header (RFC 9112 §3.2)");
    }
    if host.is_some_and(|h| !is_valid_host(h.as_bytes())) {
        return Err("the request's Host header is not a valid host[:port] (RFC 9112 §3.2)");
    }
    let authority = match uri.authority() {
        Some(a) if !is_valid_host(a.as_str().as_bytes()) => {
            return Err("the request's authority is not a valid host[:port] (no user info)")
        }
        Some(a) => Some(HeaderValue::from_str(a.as_str()).map_err(|_| "invalid authority")?),
        None => None,
    };
    match version {
        Version::HTTP_2 | Version::HTTP_3 => {
            if let (Some(authority), Some(host)) = (&authority, host) {
                let default = uri.scheme_str().and_then(default_port);
                if !same_host(authority.as_bytes(), host.as_bytes(), default) {
                    return Err("the request's Host header names another host than its \
                                :authority (RFC 9113 §8.3.1)");
                }
            }
            match authority.or_else(|| host.cloned()) {
                Some(host) => Ok(Some(host)),
                None => Err("the request names no host: neither :authority nor a Host header"),
            }
        }
        Version::HTTP_09 | Version::HTTP_10 => Ok(authority.or_else(|| host.cloned())),
        _ => match authority.or_else(|| host.cloned()) {
            Some(host) => Ok(Some(host)),
            None => Err("an HTTP/1.1 request must have a Host header (RFC 9112 §3.2)"),
        },
    }
}

/// Whether `value` is `host [":" port]` (RFC 9110 §7.2, RFC 3986 §3.2.2):
/// a bracketed IPv6 address or a non-empty reg-name (unreserved,
/// sub-delims, `%XX`: IPv4 addresses and DNS names among them), then a
/// port of at most 65535.
pub(super) fn is_valid_host(value: &[u8]) -> bool {
    let Some((host, port)) = split_port(value) else {
        return false;
    };
    let host_ok = match host.strip_prefix(b"[") {
        Some(literal) => literal
            .strip_suffix(b"]")
            .and_then(|ip| std::str::from_utf8(ip).ok())
            .is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok()),
        None => is_reg_name(host),
    };
    let port_ok = port.is_none_or(|p| {
        p.is_empty()
            || (p.len() <= 5
                && p.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(p).is_ok_and(|p| p.parse::<u16>().is_ok()))
    });
    host_ok && port_ok
}

/// `value` as its host and, after the `:` that follows it, its port.
fn split_port(value: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let host_end = if value.first() == Some(&b'[') {
        value.iter().position(|&b| b == b']')? + 1
    } else {
        value.iter().position(|&b| b == b':').unwrap_or(value.len())
    };
    let (host, rest) = value.split_at(host_end);
    match rest.split_first() {
        None => Some((host, None)),
        Some((b':', port)) => Some((host, Some(port))),
        Some(_) => None,
    }
}

/// RFC 3986 §3.2.2: `*( unreserved / pct-encoded / sub-delims )`, here
/// non-empty (an `http` URI's host must not be, RFC 9110 §4.2.1).
fn is_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = host.get(i) {
        if b == b'%' {
            let hex = host.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) {
            i += 1;
        } else {
            return false;
        }
    }
    !host.is_empty()
}

fn default_port(scheme: &str) -> Option<&'static [u8]> {
    match scheme {
        "http" => Some(b"80"),
        "https" => Some(b"443"),
        _ => None,
    }
}

/// Whether two valid `host[:port]` values name the same host: the host
/// compared without case, a missing port as the scheme's `default`.
fn same_host(a: &[u8], b: &[u8], default: Option<&[u8]>) -> bool {
    let (Some((host_a, port_a)), Some((host_b, port_b))) = (split_port(a), split_port(b)) else {
        return false;
    };
    let port_a = port_a.filter(|p| !p.is_empty()).or(default);
    let port_b = port_b.filter(|p| !p.is_empty()).or(default);
    host_a.eq_ignore_ascii_case(host_b) && port_a == port_b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_hosts() {
        let good = [
            "a.example",
            "a.example:8080",
            "A.Example:0",
            "a.example:",
            "127.0.0.1",
            "127.0.0.1:65535",
            "[::1]",
            "[2001:db8::1]:443",
            "xn--caf-dma.example",
            "a%2Db.example",
            "a_b~c!$&'()*+,;=",
        ];
        for host in good {
            assert!(is_valid_host(host.as_bytes()), "{host}");
        }
        let bad: &[&[u8]] = &[
            b"",
            b":80",
            b"a b",
            b"user@a.example",
            b"a.example:80:80",
            b"a.example:http",
            b"a.example:65536",
            b"a.example:000080",
            b"a.example/path",
            b"a.example?q",
            b"a.example#f",
            b"[::1",
            b"[::1]x",
            b"[::1]:x",
            b"[a.example]",
            b"[]",
            b"::1",
            b"a%2",
            b"a%zz",
            b"a\"b",
            b"a\\b",
            b"caf\xc3\xa9.example",
            b"a.example, b.example",
        ];
        for host in bad {
            assert!(!is_valid_host(host), "{:?}", String::from_utf8_lossy(host));
        }
    }

    #[test]
    fn request_hosts() {
        type Case<'a> = (Version, &'a str, &'a [&'a str], Result<Option<&'a str>, ()>);
        use Version as V;
        let cases: &[Case] = &[
            (V::HTTP_11, "/a", &["a.example"], Ok(Some("a.example"))),
            (V::HTTP_11, "/a", &[], Err(())),
            (V::HTTP_11, "/a", &["a.example", "a.example"], Err(())),
            (V::HTTP_11, "/a", &["a.example", "b.example"], Err(())),
            (V::HTTP_11, "/a", &[""], Err(())),
            (V::HTTP_11, "/a", &["user@a.example"], Err(())),
            (V::HTTP_11, "*", &["a.example"], Ok(Some("a.example"))),
            // Absolute form: the target's authority wins (RFC 9112 §3.2.2).
            (
                V::HTTP_11,
                "http://a.example/a",
                &["b.example"],
                Ok(Some("a.example")),
            ),
            (V::HTTP_11, "http://a.example/a", &[], Ok(Some("a.example"))),
            (V::HTTP_11, "http://a.example/a", &["b b"], Err(())),
            (V::HTTP_11, "http://u@a.example/a", &["a.example"], Err(())),
            (V::HTTP_10, "/a", &[], Ok(None)),
            (V::HTTP_10, "/a", &["a.example"], Ok(Some("a.example"))),
            (V::HTTP_10, "/a", &["a b"], Err(())),
            (V::HTTP_10, "/a", &["a", "a"], Err(())),
            (V::HTTP_2, "https://a.example/a", &[], Ok(Some("a.example"))),
            (
                V::HTTP_2,
                "https://a.example/a",
                &["A.EXAMPLE"],
                Ok(Some("a.example")),
            ),
            (
                V::HTTP_2,
                "https://a.example/a",
                &["a.example:443"],
                Ok(Some("a.example")),
            ),
            (
                V::HTTP_2,
                "https://a.example:443/a",
                &["a.example"],
                Ok(Some("a.example:443")),
            ),
            (V::HTTP_2, "http://a.example/a", &["a.example:443"], Err(())),
            (V::HTTP_2, "https://a.example/a", &["b.example"], Err(())),
            (
                V::HTTP_2,
                "https://a.example:8443/a",
                &["a.example"],
                Err(()),
            ),
            (
                V::HTTP_2,
                "https://a.example/a",
                &["a.example", "a.example"],
                Err(()),
            ),
            (V::HTTP_2, "/a", &["a.example"], Ok(Some("a.example"))),
            (V::HTTP_2, "/a", &[], Err(())),
            (V::HTTP_3, "https://a.example/a", &["b.example"], Err(())),
        ];
        for (version, uri, hosts, want) in cases {
            let mut headers = HeaderMap::new();
            for host in *hosts {
                headers.append(HOST, HeaderValue::from_str(host).unwrap());
            }
            let got = request_host(*version, &uri.parse().unwrap(), &headers);
            let got = got
                .as_ref()
                .map(|h| h.as_ref().map(|h| h.to_str().unwrap()))
                .map_err(|reason| assert!(reason.contains("Host") || reason.contains("host")));
            assert_eq!(got, *want, "{version:?} {uri} {hosts:?}");
        }
    }
}
