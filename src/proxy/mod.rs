//! Forwarding requests upstream from an axum (or any hyper / tower)
//! handler: hop-by-hop headers, `Via`, the upstream URI, and the answer
//! when the upstream fails.
//!
//! A handler takes the request apart as a proxy must
//! ([`upstream_request`]), sends it through a client stack that can retry
//! its body, and passes the response back ([`downstream_response`]) or
//! answers `502` / `504` ([`error_response`]). Each part refuses what it
//! cannot forward faithfully, so the handler has an answer for the client
//! either way:
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::time::Duration;
//!
//! use axum::extract::{ConnectInfo, Request, State};
//! use axum::body::Body;
//! use axum::response::Response;
//! use hyper_util::client::legacy::{connect::HttpConnector, Client};
//! use hyper_util::rt::TokioExecutor;
//! use mmap_body::proxy::{self, Forwarding, Upstream};
//! use mmap_body::retry::RetryPolicy;
//! use mmap_body::{Replay, ReplayBody, ReplayLayer};
//! use tower::retry::{Retry, RetryLayer};
//! use tower::timeout::{Timeout, TimeoutLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! type ClientStack = Replay<Retry<RetryPolicy, Timeout<Client<HttpConnector, ReplayBody<Body>>>>>;
//!
//! #[derive(Clone)]
//! struct Proxy {
//!     client: ClientStack,
//!     upstream: Upstream,
//!     forwarding: Forwarding,
//! }
//!
//! async fn forward(
//!     State(proxy): State<Proxy>,
//!     ConnectInfo(peer): ConnectInfo<SocketAddr>,
//!     req: Request,
//! ) -> Response {
//!     let req = match proxy::upstream_request(req, &proxy.upstream, &proxy.forwarding, Some(peer.ip())) {
//!         Ok(req) => req,
//!         Err(refused) => return proxy::error_response(&refused),
//!     };
//!     match proxy.client.oneshot(req).await {
//!         Ok(res) => match proxy::downstream_response(res, &proxy.forwarding) {
//!             Ok(res) => res.map(Body::new),
//!             Err(refused) => proxy::error_response(&refused),
//!         },
//!         Err(err) => {
//!             eprintln!("upstream failed: {err}");
//!             proxy::error_response(&*err)
//!         }
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ServiceBuilder::new()
//!     // Outside the retries: the incoming body becomes replayable, up to
//!     // 8 MiB of it, and each attempt is held to its Content-Length.
//!     .layer(ReplayLayer::new(8 << 20))
//!     // PUT, GET, DELETE...: sent again after a dropped connection or a 503.
//!     .layer(RetryLayer::new(RetryPolicy::default()))
//!     // Each attempt, not the whole request: a stalled one is retried.
//!     .layer(TimeoutLayer::new(Duration::from_secs(30)))
//!     .service(Client::builder(TokioExecutor::new()).build_http());
//! let state = Proxy {
//!     client,
//!     upstream: "http://127.0.0.1:9000/storage".parse()?,
//!     // At the edge: the client's own X-Forwarded-For and kin are dropped.
//!     forwarding: Forwarding::new()
//!         .via("edge-1")
//!         .strip_client_forwarding(true)
//!         .forwarded_for(true),
//! };
//! let app = axum::Router::new().fallback(forward).with_state(state);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! The body is streamed: each frame goes upstream as it arrives, and the
//! [`ReplayLayer`] keeps reference-counted clones of the frames, up to its
//! cap, for a retry. The client's `Content-Length` is kept, so the upstream
//! sees the same framing, and the [`ReplayLayer`] fails an attempt whose
//! body comes out shorter or longer. Trailers are forwarded both ways (see
//! [`upstream_request`]).
//!
//! `examples/axum_proxy.rs` runs this against an upstream that fails twice.
//!
//! # Hazards
//!
//! - **Replaying a request that is not idempotent can apply it twice.** A
//!   POST whose upstream dropped the connection may have been applied
//!   already. [`RetryPolicy`] retries only idempotent methods unless told
//!   to; turn that on only for an upstream that makes repeats harmless (an
//!   idempotency key).
//! - **Hop-by-hop headers smuggle requests.** `Transfer-Encoding` and
//!   `Content-Length` together let two servers disagree on where a request
//!   ends, and the one after the proxy reads the rest as a second request
//!   that no one checked. [`remove_hop_by_hop`] drops `Transfer-Encoding`
//!   (the next hop's client chooses its own framing) and, when it was
//!   there, the `Content-Length` that came with it; a `Connection` header
//!   cannot remove `Content-Length`; the [`ReplayLayer`] refuses a
//!   malformed or repeated one before anything is sent, and fails an
//!   attempt whose body does not match it. A client body that ends early
//!   aborts the upstream request (over HTTP/1.1 the connection is closed
//!   mid-body), so the upstream never takes a short body as complete.
//!   Headers named by `Connection` are removed *before* this proxy adds its
//!   own, so a client cannot name `Via` or `X-Forwarded-For` to strip what
//!   the proxy says about it. `Upgrade` is removed too: WebSocket and other
//!   upgrades are not forwarded, and `CONNECT` is refused.
//! - **Paths with `..` escape a prefix.** `/../admin` forwarded under
//!   `/storage` reaches `/admin` on an upstream that resolves dot segments.
//!   [`Upstream`] resolves them first, after decoding unreserved
//!   characters (`%2e` is `.`), so the path stays under the prefix
//!   ([`DotSegments`]). Spellings an upstream may read otherwise than the
//!   proxy are refused with `400` by default: `%2F` / `%5C` / `\`
//!   (`..%2f..%2fadmin` is one segment here and three to an upstream that
//!   decodes it; [`EscapedSlashes`]), and a `;` on a dot segment (`..;/`,
//!   which Tomcat-style upstreams read as `..`). Each is a [`PathRules`]
//!   switch, as in Envoy.
//! - **Transfer codings hide content codings.** hyper decodes only a final
//!   `chunked`; `Transfer-Encoding: gzip, chunked` leaves gzip bytes that,
//!   forwarded under fresh framing, an upstream stores as the content. Such
//!   requests are refused with `501` (RFC 9112 §6.1), and
//!   [`downstream_response`] refuses such a response (a `502`).
//! - **Two hosts, two readings.** A request with two `Host` lines, or an
//!   HTTP/2 `Host` that disagrees with `:authority`, lets this proxy
//!   (its `Forwarded: host=`) and a server behind it, or a log, each pick
//!   another host; one with no host at all cannot be placed. Such requests
//!   are refused with `400` (RFC 9112 §3.2, RFC 9113 §8.3.1).
//! - **Retries need the bytes, and bytes need room.** A streamed body is
//!   replayable only while it fits the [`ReplayLayer`]'s cap, held in
//!   memory; past it, a failed upstream attempt is the client's `502`. A
//!   large cap is memory each concurrent upload may take; spilling the
//!   recording to disk trades it for disk space, as much as the bodies in
//!   flight, which a flood of large uploads can fill: bound it.
//! - **Forwarding headers can be forged.** `Forwarded`, `X-Forwarded-For`
//!   and their kin are end-to-end headers: by default a client's own
//!   values reach the upstream, as they are or, with
//!   [`Forwarding::forwarded_for`], with the client's address appended; an
//!   upstream must trust only the entries its own proxies added. A proxy
//!   that clients reach directly should remove them
//!   ([`Forwarding::strip_client_forwarding`]). A malformed `Forwarded` is
//!   replaced, never appended into (see [`Forwarding`]).
//!
//! [`ReplayLayer`]: crate::ReplayLayer
//! [`RetryPolicy`]: crate::retry::RetryPolicy

mod error;
mod forwarded;
mod forwarding;
mod framing;
mod headers;
mod host;
mod path;
mod service;
mod uri;

use std::net::IpAddr;

use http::header::{CONNECTION, HOST, TE, TRANSFER_ENCODING};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};

use framing::{collapse_content_length, declared_length, unforwardable_codings};

pub use error::{error_response, error_status, Refused};
pub use forwarding::Forwarding;
pub use headers::remove_hop_by_hop;
pub use path::{DotSegments, EscapedSlashes, PathRules};
pub use service::{Builder, HyperClient, ProxyBody, ProxyFuture, ReverseProxy};
pub use uri::{InvalidUpstream, Upstream};

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
    let host = host::request_host(req.version(), req.uri(), req.headers())
        .map_err(|why| Refused::new(StatusCode::BAD_REQUEST, why))?;
    let (mut parts, body) = req.into_parts();
    let trailers = remove_hop_by_hop(&mut parts.headers);
    headers::join_cookies(&mut parts.headers);
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

/// Whether the upstream's response `res` can be passed on: `Err` (a `502`
/// for the client, through [`error_response`]) when
///
/// - its status is `101 Switching Protocols` (or another `1xx`): this
///   proxy forwards no upgrade and asked for none, so an upstream that
///   switches protocols anyway is broken, and the client would be left on
///   a connection speaking something else;
/// - its transfer codings are anything but one final `chunked`, whose
///   other codings hyper would leave applied to the body it hands over;
/// - its `Content-Length` values differ or are not numbers (RFC 9110
///   §8.6; hyper's client already refuses most of these).
///
/// [`downstream_response`] makes this check itself; call this one to
/// decide before taking the response apart.
pub fn check_response<B>(res: &Response<B>) -> Result<(), Refused> {
    let refuse = |reason| Err(Refused::new(StatusCode::BAD_GATEWAY, reason));
    if res.status().is_informational() {
        return refuse(
            "the upstream switched protocols (101) or answered 1xx as its final \
             answer; this proxy forwards no upgrade",
        );
    }
    if unforwardable_codings(res.headers()).is_some() {
        return refuse(
            "the upstream answered with transfer codings other than one final `chunked`",
        );
    }
    if !res.headers().contains_key(TRANSFER_ENCODING) && declared_length(res.headers()).is_err() {
        return refuse("the upstream answered with a Content-Length that is not one number");
    }
    Ok(())
}

/// The response to pass back to the client for `res`, the upstream's:
/// hop-by-hop headers removed ([`remove_hop_by_hop`]), `Via` naming this
/// proxy added, status, other headers, body and trailers unchanged.
///
/// Refuses what [`check_response`] refuses, a response this proxy cannot
/// pass on faithfully: answer the client with [`error_response`] (a
/// `502`). A handler built from these parts cannot forward such a response
/// by forgetting a check.
///
/// The upstream's `Content-Length` is kept, so the client sees the same
/// framing (a list of one value, `5, 5`, as that value); with axum, turn the body into `axum::body::Body` with
/// `.map(axum::body::Body::new)`.
pub fn downstream_response<B>(
    res: Response<B>,
    forwarding: &Forwarding,
) -> Result<Response<B>, Refused> {
    check_response(&res)?;
    let (mut parts, body) = res.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    // Checked above: only a list of one value is left to collapse.
    collapse_content_length(&mut parts.headers)
        .map_err(|reason| Refused::new(StatusCode::BAD_GATEWAY, reason))?;
    forwarding.mark_response(&mut parts.headers, parts.version);
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let res = Response::builder()
                .header("transfer-encoding", codings)
                .body(())
                .unwrap();
            assert_eq!(
                check_response(&res).unwrap_err().status(),
                StatusCode::BAD_GATEWAY
            );
            let refused = downstream_response(res, &fwd).expect_err(codings);
            assert_eq!(refused.status(), StatusCode::BAD_GATEWAY, "{codings}");
        }
        for lengths in [&["5", "6"][..], &["5, 6"], &["five"]] {
            let mut req = request("PUT", "/a", Version::HTTP_11, &[("host", "up")]);
            for length in lengths {
                req.headers_mut()
                    .append("content-length", length.parse().unwrap());
            }
            let err = upstream_request(req, &upstream, &fwd, None).expect_err("differing lengths");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{lengths:?}");
            let mut res = Response::new(());
            for length in lengths {
                res.headers_mut()
                    .append("content-length", length.parse().unwrap());
            }
            let err = downstream_response(res, &fwd).expect_err("differing lengths");
            assert_eq!(err.status(), StatusCode::BAD_GATEWAY, "{lengths:?}");
        }
        // An upstream that switches protocols unasked.
        let switched = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        let err = downstream_response(switched, &fwd).expect_err("101");
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        assert!(err.to_string().contains("101"), "{err}");
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
        let res: Response<String> = error_response(&err);
        assert_eq!(res.status(), StatusCode::NOT_IMPLEMENTED);
    }

    #[test]
    fn downstream_responses() {
        let fwd = Forwarding::new().via("edge");
        let res = Response::builder()
            .version(Version::HTTP_2)
            .header("content-length", "3")
            .header("connection", "x-up")
            .header("x-up", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("via", "1.1 cache")
            .header("etag", "\"a\"")
            .body("abc")
            .unwrap();
        let out = downstream_response(res, &fwd).unwrap();
        let h = out.headers();
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["content-length", "etag", "via"]);
        assert_eq!(header(h, "via"), ["1.1 cache, 2 edge"]);
        assert_eq!(*out.body(), "abc");

        // A list of one length, both ways, goes on as that length.
        let res = Response::builder()
            .header("content-length", "3, 3")
            .header("content-length", "3")
            .body("abc")
            .unwrap();
        let out = downstream_response(res, &fwd).unwrap();
        assert_eq!(header(out.headers(), "content-length"), ["3"]);
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
        let upstream: Upstream = "http://up".parse().unwrap();
        let out = upstream_request(req, &upstream, &fwd, None).unwrap();
        assert_eq!(header(out.headers(), "content-length"), ["3"]);
    }
}
