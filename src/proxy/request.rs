//! [`upstream_request`]: the request a proxy sends upstream for the one a
//! client sent.

use std::net::IpAddr;

use http::header::{CONNECTION, HOST, TE};
use http::{HeaderValue, Method, Request, StatusCode, Version};

use super::framing::{collapse_content_length, unforwardable_codings};
use super::headers::{join_cookies, remove_hop_by_hop};
use super::host::request_host;
#[cfg(doc)]
use super::{error_response, Builder, PathRules, ReverseProxy};
use super::{Forwarding, Refused, Upstream};

/// The request to send upstream for the request a client sent, body
/// untouched (streamed, not buffered):
///
/// - the URI is the [`Upstream`]'s, with the request's path (after the
///   upstream's prefix) and query ([`Upstream::uri_for`]);
/// - hop-by-hop headers are removed ([`remove_hop_by_hop`]), `Host` too
///   (the client library sets it, or `:authority`, from the new URI), and
///   `TE: trailers` is sent again when the client sent it, so that an
///   upstream sends this proxy the response trailers it will pass on
///   (hyper's HTTP/1.1 server sends none without it), with `Connection:
///   te`: `TE` is hop-by-hop, and RFC 9110 §10.1.4 has its sender name it
///   there, so that a next hop that does not know `TE` drops it instead of
///   passing it on;
/// - `Via` names this proxy, with `Forwarded` / `X-Forwarded-For` for
///   `peer` when [`Forwarding::forwarded_for`] is on;
/// - the version is reset to HTTP/1.1, which lets the client choose the
///   upstream's protocol (HTTP/2 with prior knowledge or ALPN);
/// - several `Cookie` fields (HTTP/2 clients split them) are joined into
///   one, with `; ` (RFC 9113 §8.2.3);
/// - `Content-Length` is kept, a list of one value (`5, 5`, RFC 9110 §8.6)
///   written as that value; other headers and the extensions are kept.
///
/// HTTP/2 has no `Connection` field (RFC 9113 §8.2.2): hyper's HTTP/2
/// client drops it, and with it the `TE` it names, so an HTTP/2 upstream
/// gets no `te: trailers` (it may send trailers all the same). For an
/// HTTP/2 upstream that requires it (gRPC servers may), remove the
/// `Connection` header before sending; [`ReverseProxy`] does when built
/// with [`http2(true)`](Builder::http2).
///
/// Request trailers reach an HTTP/1.1 upstream only when the client
/// declared them in a `Trailer` header, which is kept (hyper sends only
/// the trailer fields declared there).
///
/// Refuses `CONNECT` (`501`: tunnels are not forwarded), transfer codings
/// other than one final `chunked` (`501`, RFC 9112 §6.1), a request that
/// does not name one valid host (`400`: an HTTP/1.1 request without `Host`
/// or an absolute-form target, several `Host` lines, an invalid one, or
/// over HTTP/2 one that names another host than `:authority`; RFC 9112
/// §3.2, RFC 9113 §8.3.1), `Content-Length` values that differ or are not
/// numbers (`400`), and a path its [`PathRules`] refuse (`400`); answer the
/// client with [`error_response`].
pub fn upstream_request<B>(
    req: Request<B>,
    upstream: &Upstream,
    forwarding: &Forwarding,
    peer: Option<IpAddr>,
) -> Result<Request<B>, Refused> {
    if req.method() == Method::CONNECT {
        return Err(Refused::new(
            StatusCode::NOT_IMPLEMENTED,
            "this proxy does not open tunnels (CONNECT)",
        ));
    }
    if let Some(why) = unforwardable_codings(req.headers()) {
        return Err(Refused::new(StatusCode::NOT_IMPLEMENTED, why));
    }
    let uri = upstream
        .forward_uri(req.uri())
        .map_err(|why| Refused::new(StatusCode::BAD_REQUEST, why))?;
    let host = request_host(req.version(), req.uri(), req.headers())
        .map_err(|why| Refused::new(StatusCode::BAD_REQUEST, why))?;
    let (mut parts, body) = req.into_parts();
    let trailers = remove_hop_by_hop(&mut parts.headers);
    join_cookies(&mut parts.headers);
    // After `Transfer-Encoding` took any `Content-Length` with it.
    collapse_content_length(&mut parts.headers)
        .map_err(|reason| Refused::new(StatusCode::BAD_REQUEST, reason))?;
    parts.headers.remove(HOST);
    if trailers {
        parts
            .headers
            .insert(TE, HeaderValue::from_static("trailers"));
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("te"));
    }
    forwarding.mark_request(&mut parts.headers, parts.version, peer, host.as_ref());
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    Ok(Request::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::error_response;

    fn request(method: &str, uri: &str, version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(uri).version(version);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap()
    }

    fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Vec<&'a str> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn upstream_requests() {
        let upstream: Upstream = "http://10.0.0.9:9000/store".parse().unwrap();
        let fwd = Forwarding::new().via("edge").forwarded_for(true);
        let peer = Some("192.0.2.1".parse().unwrap());

        let req = request(
            "PUT",
            "/a.bin?v=1",
            Version::HTTP_11,
            &[
                ("host", "files.example"),
                ("content-length", "10"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("te", "trailers"),
                ("trailer", "x-sum"),
                ("via", "1.0 front"),
            ],
        );
        let out = upstream_request(req, &upstream, &fwd, peer).unwrap();
        assert_eq!(out.uri(), "http://10.0.0.9:9000/store/a.bin?v=1");
        assert_eq!(out.version(), Version::HTTP_11);
        let h = out.headers();
        assert!(header(h, "host").is_empty());
        assert!(header(h, "x-hop").is_empty());
        assert_eq!(
            header(h, "connection"),
            ["te"],
            "the client's gone, TE named"
        );
        assert_eq!(header(h, "content-length"), ["10"]);
        assert_eq!(header(h, "te"), ["trailers"]);
        assert_eq!(header(h, "trailer"), ["x-sum"]);
        assert_eq!(header(h, "via"), ["1.0 front, 1.1 edge"]);
        assert_eq!(header(h, "x-forwarded-for"), ["192.0.2.1"]);
        assert_eq!(
            header(h, "forwarded"),
            ["for=192.0.2.1;host=\"files.example\""]
        );

        // HTTP/2: the host from `:authority`, the version reset, `Via: 2`.
        let req = request(
            "GET",
            "https://files.example/x",
            Version::HTTP_2,
            &[("te", "gzip")],
        );
        let out = upstream_request(req, &upstream, &fwd, None).unwrap();
        assert_eq!(out.version(), Version::HTTP_11);
        assert_eq!(out.uri(), "http://10.0.0.9:9000/store/x");
        assert_eq!(header(out.headers(), "via"), ["2 edge"]);
        assert!(header(out.headers(), "te").is_empty());
        assert!(header(out.headers(), "connection").is_empty());
        assert!(header(out.headers(), "forwarded").is_empty(), "no peer");

        // A list of one length goes on as that length.
        let req = request(
            "PUT",
            "/a",
            Version::HTTP_11,
            &[
                ("host", "up"),
                ("content-length", "3, 3"),
                ("content-length", "03"),
            ],
        );
        let out = upstream_request(req, &upstream, &fwd, None).unwrap();
        assert_eq!(header(out.headers(), "content-length"), ["3"]);
    }

    #[test]
    fn refused_requests() {
        let upstream: Upstream = "http://up/store".parse().unwrap();
        let fwd = Forwarding::new();
        let cases = [
            ("CONNECT", "up:443", StatusCode::NOT_IMPLEMENTED),
            ("GET", "/..%2f..%2fetc/passwd", StatusCode::BAD_REQUEST),
            ("PUT", "/a/..;/b", StatusCode::BAD_REQUEST),
        ];
        for (method, uri, status) in cases {
            let req = request(method, uri, Version::HTTP_11, &[("host", "up")]);
            let err = upstream_request(req, &upstream, &fwd, None).expect_err(uri);
            assert_eq!(err.status(), status, "{method} {uri}");
        }
        // No one valid host (the rules are host.rs's).
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let hosts: [(Version, &str, Headers); 4] = [
            (Version::HTTP_11, "/a", &[]),
            (Version::HTTP_11, "/a", &[("host", "a"), ("host", "a")]),
            (Version::HTTP_11, "/a", &[("host", "a b")]),
            (Version::HTTP_2, "https://a/x", &[("host", "b")]),
        ];
        for (version, uri, headers) in hosts {
            let req = request("GET", uri, version, headers);
            let err = upstream_request(req, &upstream, &fwd, None).expect_err("no host");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{headers:?}");
            assert!(err.to_string().contains("Host"), "{err}");
        }
        for codings in [
            "gzip, chunked",
            "chunked, chunked",
            "chunked;x=1, gzip",
            "identity",
        ] {
            let req = request(
                "POST",
                "/a",
                Version::HTTP_11,
                &[("host", "up"), ("transfer-encoding", codings)],
            );
            let err = upstream_request(req, &upstream, &fwd, None).expect_err(codings);
            assert_eq!(err.status(), StatusCode::NOT_IMPLEMENTED, "{codings}");
        }
        for lengths in [&["5", "6"][..], &["5, 6"], &["five"]] {
            let mut req = request("PUT", "/a", Version::HTTP_11, &[("host", "up")]);
            for length in lengths {
                req.headers_mut()
                    .append("content-length", length.parse().unwrap());
            }
            let err = upstream_request(req, &upstream, &fwd, None).expect_err("differing lengths");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{lengths:?}");
        }
        let chunked = request(
            "POST",
            "/a",
            Version::HTTP_11,
            &[("host", "up"), ("transfer-encoding", "Chunked")],
        );
        assert!(upstream_request(chunked, &upstream, &fwd, None).is_ok());
        let err = upstream_request(
            request("CONNECT", "up:443", Version::HTTP_11, &[]),
            &upstream,
            &fwd,
            None,
        )
        .expect_err("CONNECT");
        let res: http::Response<String> = error_response(&err);
        assert_eq!(res.status(), StatusCode::NOT_IMPLEMENTED);
    }
}
