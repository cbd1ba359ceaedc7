//! `mmap_body::proxy` in a real axum 0.8 proxy on 127.0.0.1: a hyper-util
//! client behind `ReplayLayer` + `RetryLayer(RetryPolicy)` +
//! `tower::timeout` forwards to real hyper upstreams (HTTP/1.1, and HTTP/2
//! with prior knowledge), and real hyper clients (or a raw TCP socket)
//! call the proxy.
//!
//! - hop-by-hop headers, one named by `Connection` among them, reach
//!   neither the upstream nor the client; `Via` does, both ways;
//! - the URI and `Host` the upstream sees; `Forwarded` / `X-Forwarded-For`;
//!   dot segments resolved under the prefix;
//! - hostile requests over a raw socket: transfer codings other than one
//!   final `chunked` (501), encoded slashes and backslashes and `..;`
//!   (400), never forwarded; a response with such codings is a 502;
//! - trailers forwarded both ways;
//! - an upstream that stalls → `504`; a closed port → `502`;
//! - a client body cut short (the socket closed mid-body, or a body that
//!   ends before its `Content-Length`) → the upstream never gets a
//!   complete body, and the proxy lives on;
//! - a retry after the upstream dropped the first attempt delivers all
//!   16 MiB (SHA-256 equal).
//!
//! Issue #29's hostile headers and framing: the `hostile` and `framing`
//! submodules, with the raw-socket helpers of `raw`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request as AxumRequest, State};
use axum::response::Response as AxumResponse;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use mmap_body::proxy::{self, Forwarding, Upstream};
use mmap_body::retry::RetryPolicy;
use mmap_body::{Replay, ReplayBody, ReplayLayer};
use mmap_body_devkit::bodies::Streamed;
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::{hex, pattern, sha256};
use mmap_body_devkit::harness::chain;
use mmap_body_devkit::server::{client, serve, serve_axum, trailer_list};
use mmap_body_devkit::BoxError;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tower::retry::{Retry, RetryLayer};
use tower::timeout::{Timeout, TimeoutLayer};
use tower::{ServiceBuilder, ServiceExt};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// No request of this module may take longer than this.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- the proxy

type ClientStack = Replay<Retry<RetryPolicy, Timeout<Client<HttpConnector, ReplayBody<Body>>>>>;

#[derive(Clone)]
struct Proxy {
    client: ClientStack,
    upstream: Upstream,
    forwarding: Forwarding,
}

/// The handler under test, as the module docs and the example write it.
async fn forward(
    State(proxy): State<Proxy>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: AxumRequest,
) -> AxumResponse {
    let req =
        match proxy::upstream_request(req, &proxy.upstream, &proxy.forwarding, Some(peer.ip())) {
            Ok(req) => req,
            Err(refused) => return proxy::error_response(&refused),
        };
    match proxy.client.oneshot(req).await {
        Ok(res) => match proxy::downstream_response(res, &proxy.forwarding) {
            Ok(res) => res.map(Body::new),
            Err(refused) => proxy::error_response(&refused),
        },
        Err(err) => {
            eprintln!("proxy: upstream failed: {}", chain(&*err));
            proxy::error_response(&*err)
        }
    }
}

struct Options {
    http2: bool,
    cap: usize,
    attempt_timeout: Duration,
    policy: RetryPolicy,
    forwarding: Forwarding,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            http2: false,
            cap: 4 * MIB,
            attempt_timeout: Duration::from_secs(10),
            policy: RetryPolicy::default()
                .backoff(Duration::from_millis(10), Duration::from_millis(40)),
            forwarding: Forwarding::new().via("test-proxy").forwarded_for(true),
        }
    }
}

/// How a test names the upstream's protocol in its messages.
fn upstream_label(http2: bool) -> &'static str {
    if http2 {
        "[h2 upstream]"
    } else {
        "[h1 upstream]"
    }
}

/// The proxy's client stack: `ReplayLayer` + `RetryLayer` + a timeout per
/// attempt + a hyper-util client.
fn client_stack(options: &Options) -> ClientStack {
    ServiceBuilder::new()
        .layer(ReplayLayer::new(options.cap))
        .layer(RetryLayer::new(options.policy.clone()))
        .layer(TimeoutLayer::new(options.attempt_timeout))
        .service(client::<ReplayBody<Body>>(options.http2))
}

/// Starts the axum proxy on 127.0.0.1, forwarding to `upstream`.
async fn start_proxy(upstream: &str, options: Options) -> SocketAddr {
    let client = client_stack(&options);
    let state = Proxy {
        client,
        upstream: upstream.parse().expect("an upstream"),
        forwarding: options.forwarding,
    };
    serve_axum(axum::Router::new().fallback(forward).with_state(state)).await
}

/// Sends `req` to the proxy with a hyper-util HTTP/1.1 client, within
/// [`REQUEST_LIMIT`]; returns the response with its body and trailers read.
async fn call<B>(req: Request<B>) -> (Response<()>, Bytes, Option<HeaderMap>)
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    call_with(false, req).await
}

/// [`call`], over HTTP/2 (prior knowledge) when `http2` is set.
async fn call_with<B>(http2: bool, req: Request<B>) -> (Response<()>, Bytes, Option<HeaderMap>)
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let client = client::<B>(http2);
    tokio::time::timeout(REQUEST_LIMIT, async move {
        let res = client
            .request(req)
            .await
            .expect("a response from the proxy");
        let (parts, body) = res.into_parts();
        let collected = body.collect().await.expect("the response body");
        let trailers = collected.trailers().cloned();
        (
            Response::from_parts(parts, ()),
            collected.to_bytes(),
            trailers,
        )
    })
    .await
    .expect("the proxy answered in time")
}

fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

// ---------------------------------------------------------------- upstream

/// How one request's body ended, as the upstream read it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Reading,
    Complete {
        sha256: String,
        trailers: Option<String>,
    },
    Failed(String),
}

/// One request the recording upstream saw.
#[derive(Debug, Clone)]
struct Seen {
    uri: http::Uri,
    version: Version,
    headers: HeaderMap,
    read: u64,
    outcome: Outcome,
}

/// A hyper upstream (HTTP/1.1 and HTTP/2 prior knowledge) that logs every
/// request's head and how its body ended, and answers with hop-by-hop
/// headers of its own, a `Via`, a chunked body, and a trailer.
#[derive(Clone)]
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
        let log = seen.clone();
        let addr = serve(move |req| Recorder::handle(log.clone(), req)).await;
        Recorder { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (at most 5 s) until `done` holds for the log.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let started = Instant::now();
        loop {
            let log = self.seen();
            if done(&log) {
                return log;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the upstream never saw {what}: {log:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn handle(
        log: Arc<Mutex<Vec<Seen>>>,
        req: Request<Incoming>,
    ) -> Result<Response<Streamed>, Infallible> {
        let index = {
            let mut log = log.lock().unwrap();
            log.push(Seen {
                uri: req.uri().clone(),
                version: req.version(),
                headers: req.headers().clone(),
                read: 0,
                outcome: Outcome::Reading,
            });
            log.len() - 1
        };
        let update = |f: &dyn Fn(&mut Seen)| f(&mut log.lock().unwrap()[index]);
        let mut body = req.into_body();
        let mut hasher = Sha256::new();
        let mut read = 0u64;
        let mut trailers = None;
        let outcome = loop {
            match body.frame().await {
                None => {
                    break Outcome::Complete {
                        sha256: hex(&hasher.clone().finalize()),
                        trailers: trailers.take(),
                    }
                }
                Some(Err(err)) => break Outcome::Failed(err.to_string()),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        hasher.update(&data);
                        read += data.len() as u64;
                        update(&|s| s.read = read);
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            trailers = Some(trailer_list(&t));
                        }
                    }
                },
            }
        };
        let failed = matches!(outcome, Outcome::Failed(_));
        update(&|s| s.outcome = outcome.clone());
        let mut res_trailers = HeaderMap::new();
        res_trailers.insert("x-upstream-sum", "42".parse().unwrap());
        let res = Response::builder()
            .status(if failed { 400 } else { 200 })
            .header("connection", "x-upstream-secret")
            .header("x-upstream-secret", "s")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic realm=\"up\"")
            .header("upgrade", "h2c")
            .header("via", "1.1 upstream-cache")
            .header("x-upstream-kept", "k")
            .header("trailer", "x-upstream-sum")
            .body(Streamed::new(
                [Bytes::from_static(b"ok")],
                Some(res_trailers),
            ))
            .unwrap();
        Ok(res)
    }
}

/// `len` pseudo-random bytes and their SHA-256.
fn random(len: usize) -> (Bytes, String) {
    let mut bytes = vec![0u8; len];
    pattern(len as u64 ^ 0x5eed, &mut bytes);
    let hash = sha256(&bytes);
    (Bytes::from(bytes), hash)
}

// ---------------------------------------------------------------- headers

/// Hop-by-hop headers a client sends, and the one end-to-end header with
/// them that must get through.
fn hop_by_hop_request(proxy: SocketAddr, body: Bytes) -> Request<Full<Bytes>> {
    let len = body.len();
    Request::put(format!("http://{proxy}/files/a.bin"))
        .header("host", "files.example")
        .header("content-length", len)
        .header("connection", "x-client-secret, keep-alive")
        .header("x-client-secret", "s")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "deflate")
        .header("proxy-authorization", "Basic dXNlcjpwYXNz")
        .header("x-client-kept", "k")
        .header("x-forwarded-for", "203.0.113.9")
        .body(Full::new(body))
        .unwrap()
}

const REQUEST_HOP_BY_HOP: [&str; 8] = [
    "connection",
    "x-client-secret",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

const RESPONSE_HOP_BY_HOP: [&str; 6] = [
    "connection",
    "x-upstream-secret",
    "keep-alive",
    "proxy-authenticate",
    "upgrade",
    "transfer-encoding",
];

async fn hop_by_hop_headers_stay_on_their_hop(http2: bool) {
    let label = upstream_label(http2);
    let upstream = Recorder::start().await;
    let proxy = start_proxy(
        &format!("http://{}", upstream.addr),
        Options {
            http2,
            ..Options::default()
        },
    )
    .await;
    let (body, hash) = random(256 * KIB);
    let (res, text, _) = call(hop_by_hop_request(proxy, body)).await;
    let log = upstream.seen();
    assert_eq!(
        res.status(),
        200,
        "{label}: {text:?}; upstream saw {log:#?}"
    );
    assert_eq!(log.len(), 1, "{label}: {log:#?}");
    let seen = &log[0];
    assert_eq!(
        seen.version,
        if http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        },
        "{label}"
    );

    // Upstream: no hop-by-hop header, the end-to-end ones, Via, the body.
    for name in REQUEST_HOP_BY_HOP {
        assert_eq!(
            get(&seen.headers, name),
            None,
            "{label}: the upstream got the hop-by-hop {name}: {:#?}",
            seen.headers
        );
    }
    assert_eq!(get(&seen.headers, "x-client-kept"), Some("k"), "{label}");
    assert_eq!(get(&seen.headers, "via"), Some("1.1 test-proxy"), "{label}");
    assert_eq!(
        get(&seen.headers, "x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1"),
        "{label}"
    );
    assert_eq!(
        get(&seen.headers, "content-length"),
        Some("262144"),
        "{label}: the client's Content-Length is kept"
    );
    assert_eq!(
        seen.outcome,
        Outcome::Complete {
            sha256: hash,
            trailers: None
        },
        "{label}"
    );

    // Client: no hop-by-hop header of the upstream's, its Via and ours.
    for name in RESPONSE_HOP_BY_HOP {
        if name == "transfer-encoding" {
            // The proxy's own framing towards the client may be chunked.
            continue;
        }
        assert_eq!(
            get(res.headers(), name),
            None,
            "{label}: the client got the upstream's hop-by-hop {name}: {:#?}",
            res.headers()
        );
    }
    assert_eq!(get(res.headers(), "x-upstream-kept"), Some("k"), "{label}");
    let via = if http2 {
        "1.1 upstream-cache, 2 test-proxy"
    } else {
        "1.1 upstream-cache, 1.1 test-proxy"
    };
    assert_eq!(get(res.headers(), "via"), Some(via), "{label}");
    assert_eq!(&text[..], b"ok", "{label}");
}

#[tokio::test]
async fn hop_by_hop_headers_reach_neither_side_h1_upstream() {
    hop_by_hop_headers_stay_on_their_hop(false).await;
}

#[tokio::test]
async fn hop_by_hop_headers_reach_neither_side_h2_upstream() {
    hop_by_hop_headers_stay_on_their_hop(true).await;
}

/// The hyper client of the proxy strips some hop-by-hop headers itself
/// over HTTP/2; over HTTP/1.1 it sends what it is given. A raw HTTP/1.1
/// upstream that echoes the head it received shows every header that left
/// the proxy, with nothing in between to tidy up.
#[tokio::test]
async fn raw_upstream_sees_no_hop_by_hop_header() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().unwrap();
    let head = Arc::new(Mutex::new(String::new()));
    let seen = head.clone();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.expect("read");
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        *seen.lock().unwrap() = String::from_utf8_lossy(&buf[..end]).into_owned();
        let _ = stream
            .write_all(
                b"HTTP/1.1 200 OK\r\nconnection: x-up, close\r\nx-up: 1\r\n\
                  keep-alive: timeout=5\r\nproxy-authenticate: Basic\r\n\
                  content-length: 2\r\n\r\nok",
            )
            .await;
    });
    let proxy = start_proxy(&format!("http://{upstream}"), Options::default()).await;
    let (res, text, _) = call(hop_by_hop_request(proxy, Bytes::from_static(b"12345"))).await;
    let head = head.lock().unwrap().to_ascii_lowercase();
    assert_eq!(res.status(), 200, "{text:?}; upstream saw:\n{head}");
    for line in head.lines().skip(1) {
        let name = line.split(':').next().unwrap();
        assert!(
            !REQUEST_HOP_BY_HOP.contains(&name),
            "the upstream got the hop-by-hop {name}:\n{head}"
        );
    }
    assert!(head.contains("\r\nx-client-kept: k"), "{head}");
    assert!(head.contains("\r\nvia: 1.1 test-proxy"), "{head}");
    assert!(head.contains("\r\ncontent-length: 5"), "{head}");
    for name in ["connection", "x-up", "keep-alive", "proxy-authenticate"] {
        assert_eq!(
            get(res.headers(), name),
            None,
            "{name}: {:#?}",
            res.headers()
        );
    }
}

// ---------------------------------------------------------------- URI, Host, trailers

/// An HTTP/2 client, an HTTP/1.1 upstream: the proxy's client chooses the
/// upstream's protocol, and `Via` names the one the proxy received.
#[tokio::test]
async fn http2_client_reaches_an_http1_upstream() {
    let upstream = Recorder::start().await;
    let proxy = start_proxy(&format!("http://{}", upstream.addr), Options::default()).await;
    let (body, hash) = random(200 * KIB);
    let (res, text, _) = call_with(
        true,
        Request::put(format!("http://{proxy}/h2"))
            .body(Full::new(body))
            .unwrap(),
    )
    .await;
    let log = upstream.seen();
    assert_eq!(res.status(), 200, "{text:?}; upstream saw {log:#?}");
    assert_eq!(res.version(), Version::HTTP_2);
    assert_eq!(log[0].version, Version::HTTP_11);
    assert_eq!(get(&log[0].headers, "via"), Some("2 test-proxy"));
    assert_eq!(
        get(&log[0].headers, "host"),
        Some(upstream.addr.to_string().as_str())
    );
    assert_eq!(
        get(&log[0].headers, "forwarded"),
        Some(format!("for=127.0.0.1;host=\"{proxy}\"").as_str()),
        "the client's :authority"
    );
    assert_eq!(
        log[0].outcome,
        Outcome::Complete {
            sha256: hash,
            trailers: None
        }
    );
}

#[tokio::test]
async fn upstream_sees_its_uri_and_host() {
    let upstream = Recorder::start().await;
    let proxy = start_proxy(
        &format!("http://{}/base/", upstream.addr),
        Options::default(),
    )
    .await;
    let req = Request::get(format!("http://{proxy}/files/a%20b.bin?x=1&y=%2F"))
        .header("host", "files.example:8443")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (res, text, _) = call(req).await;
    let log = upstream.seen();
    assert_eq!(res.status(), 200, "{text:?}; upstream saw {log:#?}");
    assert_eq!(log.len(), 1, "{log:#?}");
    let seen = &log[0];
    assert_eq!(seen.uri, "/base/files/a%20b.bin?x=1&y=%2F");
    assert_eq!(
        get(&seen.headers, "host"),
        Some(upstream.addr.to_string().as_str()),
        "the Host of the upstream, not the client's"
    );
    assert_eq!(
        get(&seen.headers, "forwarded"),
        Some("for=127.0.0.1;host=\"files.example:8443\"")
    );
    assert_eq!(get(&seen.headers, "x-forwarded-for"), Some("127.0.0.1"));

    // A path that climbs out of the prefix is resolved under it.
    for path in ["/../secret", "/files/%2e%2E/secret"] {
        let req = Request::get(format!("http://{proxy}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (res, text, _) = call(req).await;
        assert_eq!(res.status(), 200, "{path}: {text:?}");
        assert_eq!(
            upstream.seen().last().unwrap().uri,
            "/base/secret",
            "{path}"
        );
    }
}

/// Sends `request` as it is over a raw socket (with `Connection: close`),
/// reads the whole answer, and returns its status.
async fn raw_status(proxy: SocketAddr, request: &str) -> u16 {
    let text = raw::raw_answer(proxy, request).await;
    let status = text.split(' ').nth(1).unwrap_or("");
    status
        .parse()
        .unwrap_or_else(|_| panic!("no status in {text:?}"))
}

#[tokio::test]
async fn hostile_requests_are_refused_or_resolved_under_the_prefix() {
    let upstream = Recorder::start().await;
    let proxy = start_proxy(
        &format!("http://{}/base", upstream.addr),
        Options::default(),
    )
    .await;
    let head = |line: &str, extra: &str| {
        format!("{line} HTTP/1.1\r\nhost: proxy\r\nconnection: close\r\n{extra}\r\n")
    };
    // (request, status, what the upstream saw: None for nothing new)
    let gzip = "5\r\nhello\r\n0\r\n\r\n";
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        // Codings hyper would leave applied: 501, never forwarded.
        (
            head("POST /p/a", "transfer-encoding: gzip, chunked\r\n") + gzip,
            501,
            None,
        ),
        (
            head("POST /p/a", "transfer-encoding: chunked, chunked\r\n") + gzip,
            501,
            None,
        ),
        // Paths an upstream would read otherwise than the proxy: 400.
        (head("GET /p/%2e%2e%2f%2e%2e%2fadmin", ""), 400, None),
        (head("GET /p/..%2f..%2fadmin", ""), 400, None),
        (head("GET /p/..%5c..%5cadmin", ""), 400, None),
        (head("GET /p/..;/..;/admin", ""), 400, None),
        // Dot segments resolved, never above the prefix.
        (
            head("GET /p/a/../../../admin", ""),
            200,
            Some("/base/admin"),
        ),
        (
            head("GET /p/%61dmin/%2E/x", ""),
            200,
            Some("/base/p/admin/x"),
        ),
    ];
    for (request, status, reached) in cases {
        let before = upstream.seen().len();
        let got = raw_status(proxy, &request).await;
        let first = request.lines().next().unwrap_or("").to_owned();
        assert_eq!(got, status, "{first}");
        let log = upstream.seen();
        match reached {
            None => assert_eq!(log.len(), before, "{first} reached the upstream: {log:#?}"),
            Some(uri) => assert_eq!(log.last().unwrap().uri, uri, "{first}"),
        }
    }
}

/// The handler under test passes responses on with `downstream_response`
/// alone: the part itself refuses what it cannot forward (issue #29).
#[tokio::test]
async fn a_response_with_codings_left_applied_is_502() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n\
                      5\r\nhello\r\n0\r\n\r\n",
                )
                .await;
        }
    });
    let proxy = start_proxy(&format!("http://{upstream}"), Options::default()).await;
    for http2 in [false, true] {
        let req = Request::get(format!("http://{proxy}/x"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (res, text, _) = call_with(http2, req).await;
        assert_eq!(res.status(), 502, "h2 client: {http2}: {text:?}");
        assert!(
            String::from_utf8_lossy(&text).contains("transfer codings"),
            "{text:?}"
        );
    }
}

#[tokio::test]
async fn trailers_are_forwarded_both_ways() {
    let upstream = Recorder::start().await;
    let proxy = start_proxy(&format!("http://{}", upstream.addr), Options::default()).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let (body, hash) = Streamed::random(100 * KIB, 16 * KIB);
    let req = Request::put(format!("http://{proxy}/with-trailers"))
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .body(body.with_trailers(trailers))
        .unwrap();
    let (res, text, res_trailers) = call(req).await;
    let log = upstream.seen();
    assert_eq!(res.status(), 200, "{text:?}; upstream saw {log:#?}");
    assert_eq!(
        log[0].outcome,
        Outcome::Complete {
            sha256: hash,
            trailers: Some("x-checksum=abc".into())
        }
    );
    assert_eq!(get(&log[0].headers, "te"), Some("trailers"));
    let res_trailers = res_trailers.expect("the upstream's trailers reached the client");
    assert_eq!(get(&res_trailers, "x-upstream-sum"), Some("42"));
}

// ---------------------------------------------------------------- 504, 502

#[tokio::test]
async fn upstream_timeout_is_504() {
    let stall = Fault::StallAfter(64 * KIB as u64);
    let upstream = Faulty::start([stall.clone(), stall.clone()]).await;
    let proxy = start_proxy(
        &upstream.uri(""),
        Options {
            attempt_timeout: Duration::from_millis(300),
            policy: Options::default().policy.max_attempts(2),
            ..Options::default()
        },
    )
    .await;
    let (body, _) = random(MIB);
    let started = Instant::now();
    let (res, text, _) = call(
        Request::put(format!("http://{proxy}/slow"))
            .body(Full::new(body))
            .unwrap(),
    )
    .await;
    let took = started.elapsed();
    let log = upstream.seen();
    assert_eq!(
        res.status(),
        StatusCode::GATEWAY_TIMEOUT,
        "{text:?}; upstream saw {log:#?}"
    );
    assert_eq!(
        get(res.headers(), "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        &text[..],
        b"504 Gateway Timeout: the upstream server did not answer in time\n"
    );
    assert_eq!(log.len(), 2, "both attempts timed out: {log:#?}");
    assert!(log.iter().all(|s| s.fault == stall), "{log:#?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn upstream_refused_is_502() {
    // A port nothing listens on: bound, then let go.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().unwrap()
    };
    let proxy = start_proxy(&format!("http://{closed}"), Options::default()).await;
    let (res, text, _) = call(
        Request::put(format!("http://{proxy}/x"))
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY, "{text:?}");
    assert_eq!(
        &text[..],
        b"502 Bad Gateway: the upstream server refused the connection\n"
    );
    assert_eq!(
        get(res.headers(), "via"),
        None,
        "an answer of the proxy's own"
    );
}

// ---------------------------------------------------------------- bodies cut short

/// A raw HTTP/1.1 client declares 1 MiB, sends 300 KiB, and closes its
/// socket once the upstream is reading. The upstream's body must end in an
/// error, not complete; the request must not be retried; the proxy must
/// go on serving.
async fn client_body_cut_short(http2: bool) {
    let label = upstream_label(http2);
    let upstream = Recorder::start().await;
    let proxy = start_proxy(
        &format!("http://{}", upstream.addr),
        Options {
            http2,
            ..Options::default()
        },
    )
    .await;
    let declared = MIB;
    let (body, _) = random(300 * KIB);
    let mut socket = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    let head = format!("PUT /cut HTTP/1.1\r\nhost: {proxy}\r\ncontent-length: {declared}\r\n\r\n");
    socket.write_all(head.as_bytes()).await.expect("head");
    socket.write_all(&body).await.expect("part of the body");
    upstream
        .wait_for("the body start", |log| {
            log.first().is_some_and(|s| s.read > 0)
        })
        .await;
    drop(socket);

    let log = upstream
        .wait_for("the body end", |log| {
            log.first().is_some_and(|s| s.outcome != Outcome::Reading)
        })
        .await;
    assert_eq!(log.len(), 1, "{label}: not retried: {log:#?}");
    let seen = &log[0];
    assert_eq!(
        get(&seen.headers, "content-length"),
        Some("1048576"),
        "{label}"
    );
    assert!(
        matches!(seen.outcome, Outcome::Failed(_)),
        "{label}: the upstream took a short body as complete: {seen:#?}"
    );
    assert!(seen.read < declared as u64, "{label}: {seen:#?}");

    // The proxy lives on.
    let (res, text, _) = call(
        Request::put(format!("http://{proxy}/after"))
            .body(Full::new(Bytes::from_static(b"next")))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), 200, "{label}: {text:?}");
    assert_eq!(upstream.seen().len(), 2, "{label}");
}

#[tokio::test]
async fn client_body_cut_short_never_completes_upstream_h1() {
    client_body_cut_short(false).await;
}

#[tokio::test]
async fn client_body_cut_short_never_completes_upstream_h2() {
    client_body_cut_short(true).await;
}

/// A body that ends cleanly before its `Content-Length` (a handler's own
/// body, not hyper's, which would fail instead): the `ReplayLayer` fails
/// the attempt, the upstream never gets a complete body, and the answer is
/// `400`, the client's fault, not `502`.
async fn short_body_is_refused(http2: bool) {
    let label = upstream_label(http2);
    let upstream = Recorder::start().await;
    let client = client_stack(&Options {
        cap: 4 * MIB,
        attempt_timeout: Duration::from_secs(10),
        http2,
        ..Options::default()
    });
    let (short, _) = Streamed::random(300 * KIB, 16 * KIB);
    let req = Request::put("http://client.example/short")
        .header("content-length", MIB)
        .body(Body::new(short))
        .unwrap();
    let upstream_base: Upstream = format!("http://{}", upstream.addr).parse().unwrap();
    let req = proxy::upstream_request(req, &upstream_base, &Forwarding::new(), None).unwrap();
    let err = tokio::time::timeout(REQUEST_LIMIT, client.oneshot(req))
        .await
        .expect("in time")
        .expect_err("a body short of its Content-Length must fail");
    let ours = mmap_body::Error::find_in(&*err).expect("the crate's error");
    assert_eq!(
        ours.kind(),
        mmap_body::ErrorKind::ContentLengthMismatch,
        "{label}: {}",
        chain(&*err)
    );
    let res: Response<String> = proxy::error_response(&*err);
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{label}");
    let log = upstream
        .wait_for("the body end", |log| {
            log.iter().all(|s| s.outcome != Outcome::Reading)
        })
        .await;
    assert!(log.len() <= 1, "{label}: not retried: {log:#?}");
    for seen in &log {
        assert!(
            matches!(seen.outcome, Outcome::Failed(_)),
            "{label}: the upstream took a short body as complete: {seen:#?}"
        );
    }
}

#[tokio::test]
async fn body_short_of_its_content_length_is_400_h1() {
    short_body_is_refused(false).await;
}

#[tokio::test]
async fn body_short_of_its_content_length_is_400_h2() {
    short_body_is_refused(true).await;
}

// ---------------------------------------------------------------- retries

async fn retry_delivers_the_whole_body(http2: bool) {
    let label = upstream_label(http2);
    let len = 16 * MIB;
    let drop = Fault::DropAfter(4 * MIB as u64);
    let upstream = Faulty::start([drop.clone()]).await;
    let proxy = start_proxy(
        &upstream.uri("/store"),
        Options {
            http2,
            cap: 32 * MIB,
            ..Options::default()
        },
    )
    .await;
    let (body, hash) = random(len);
    let (res, text, _) = call(
        Request::put(format!("http://{proxy}/big.bin"))
            .body(Full::new(body))
            .unwrap(),
    )
    .await;
    let log = upstream.seen();
    assert_eq!(
        res.status(),
        200,
        "{label}: {text:?}; upstream saw {log:#?}"
    );
    assert_eq!(log.len(), 2, "{label}: {log:#?}");
    assert_eq!(log[0].fault, drop, "{label}");
    assert!(log[0].read < len as u64, "{label}: {log:#?}");
    for (i, seen) in log.iter().enumerate() {
        assert_eq!(
            seen.content_length,
            Some(len.to_string()),
            "{label} attempt {i}"
        );
        assert_eq!(seen.transfer_encoding, None, "{label} attempt {i}");
    }
    assert_eq!(log[1].read, len as u64, "{label}");
    assert_eq!(log[1].sha256.as_deref(), Some(hash.as_str()), "{label}");
    assert_eq!(
        get(res.headers(), "x-sha256"),
        Some(hash.as_str()),
        "{label}"
    );
}

#[tokio::test]
async fn retry_after_a_dropped_attempt_delivers_the_whole_body_h1() {
    retry_delivers_the_whole_body(false).await;
}

#[tokio::test]
async fn retry_after_a_dropped_attempt_delivers_the_whole_body_h2() {
    retry_delivers_the_whole_body(true).await;
}

mod framing;
mod hostile;
mod raw;
