//! The fault matrix (issue #8): real hyper servers on 127.0.0.1 that
//! misbehave on purpose, a real hyper-util client behind `ReplayLayer` +
//! `tower::retry` (`RetryPolicy`) + `tower::timeout`, over HTTP/1.1 and
//! HTTP/2, for three kinds of body:
//!
//! - an `MmapBody` of an 8 MiB temp file (cloned for a retry);
//! - a streamed body of unknown size, 600 KiB in 16 KiB frames (recorded);
//! - the same streamed body reporting its exact size (recorded, and sent
//!   with `Content-Length`).
//!
//! Faults: the connection dropped mid-body, a 503 after half the body, an
//! early 413 that reads none of it, and a stall ended by the timeout. Then
//! an axum proxy (the library's `proxy` helpers) that forwards its request
//! body upstream with retries, and cancelled uploads that must release
//! their files. (The file hazards, a file replaced under its path and a
//! sparse file past 4 GiB, are in `mmap_body.rs`; they send through this
//! module's stack.)
//!
//! Every case is its own test, named `<protocol>_<body>_<fault>`.
//!
//! Linux only: the cancellation tests read `/proc/self/fd` and
//! `/proc/self/maps`.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayBody, ReplayLayer};
use mmap_body_devkit::bodies::{ExactStreamed, Streamed};
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::test_file;
use mmap_body_devkit::harness::chain;
use mmap_body_devkit::server::{client, received};
use mmap_body_devkit::BoxError;
use tower::retry::RetryLayer;
use tower::timeout::TimeoutLayer;
use tower::{ServiceBuilder, ServiceExt};

pub(crate) const KIB: u64 = 1024;
pub(crate) const MIB: u64 = 1024 * 1024;
pub(crate) const GIB: u64 = 1024 * MIB;

/// The `MmapBody` cases' file.
const MMAP_LEN: u64 = 8 * MIB;
/// The streamed bodies: 600 KiB in 16 KiB frames.
const STREAM_LEN: u64 = 600 * KIB;
const STREAM_FRAME: usize = 16 * 1024;
/// What `ReplayLayer` may record: more than the streamed bodies.
const CAP: usize = 2 * MIB as usize;
/// `tower::timeout` around each attempt: ends a stalled one.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(300);
/// No request of this module may take longer than this, all attempts
/// together.
pub(crate) const REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// A fast policy for tests: waits of 10 to 40 ms.
fn policy() -> RetryPolicy {
    RetryPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(40))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    H1,
    H2,
}

impl Proto {
    pub(crate) fn version(self) -> Version {
        match self {
            Proto::H1 => Version::HTTP_11,
            Proto::H2 => Version::HTTP_2,
        }
    }
}

/// `ReplayLayer` outside, `RetryLayer` inside, a timeout per attempt
/// inside that, a hyper-util client at the core; the whole request bounded
/// by [`REQUEST_LIMIT`].
pub(crate) async fn send<B>(
    proto: Proto,
    attempt_timeout: Duration,
    req: Request<B>,
) -> Result<Response<Incoming>, BoxError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(CAP))
        .layer(RetryLayer::new(policy()))
        .layer(TimeoutLayer::new(attempt_timeout))
        .service(client::<ReplayBody<B>>(proto == Proto::H2));
    tokio::time::timeout(REQUEST_LIMIT, service.oneshot(req))
        .await
        .unwrap_or_else(|_| panic!("the request did not finish within {REQUEST_LIMIT:?}"))
}

fn is_elapsed(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<tower::timeout::error::Elapsed>() {
            return true;
        }
        next = err.source();
    }
    false
}

// ---------------------------------------------------------------- the matrix

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `MmapBody` of an 8 MiB temp file.
    Mmap,
    /// `Streamed`, unknown size.
    Streamed,
    /// `ExactStreamed`: streamed, exact size.
    Exact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// The connection is dropped after half the body, then the server succeeds.
    Drop,
    /// 503 after half the body, then success.
    Status503,
    /// 413 at once, reading nothing: not retryable.
    Early413,
    /// Reads a quarter, then neither reads nor answers; the timeout ends it.
    Stall,
}

impl Case {
    fn fault(self, len: u64) -> Fault {
        match self {
            Case::Drop => Fault::DropAfter(len / 2),
            Case::Status503 => Fault::StatusAfter(503, len / 2, None),
            Case::Early413 => Fault::EarlyStatus(413),
            Case::Stall => Fault::StallAfter(len / 4),
        }
    }
}

async fn run(proto: Proto, kind: Kind, case: Case) {
    let label = format!("[{proto:?} {kind:?} {case:?}]");
    match kind {
        Kind::Mmap => {
            let file = test_file(MMAP_LEN);
            // SAFETY: the temp file is private to this test.
            let body = unsafe { MmapBody::open(&file.path) }.expect("open");
            check(&label, proto, case, body, MMAP_LEN, &file.sha256, true).await;
        }
        Kind::Streamed => {
            let (body, hash) = Streamed::random(STREAM_LEN as usize, STREAM_FRAME);
            check(&label, proto, case, body, STREAM_LEN, &hash, false).await;
        }
        Kind::Exact => {
            let (body, hash) = ExactStreamed::random(STREAM_LEN as usize, STREAM_FRAME);
            check(&label, proto, case, body, STREAM_LEN, &hash, true).await;
        }
    }
}

async fn check<B>(label: &str, proto: Proto, case: Case, body: B, len: u64, hash: &str, exact: bool)
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let fault = case.fault(len);
    let server = Faulty::start([fault.clone()]).await;
    let req = Request::put(server.uri("/upload")).body(body).unwrap();
    let started = Instant::now();
    let result = send(proto, ATTEMPT_TIMEOUT, req).await;
    let took = started.elapsed();
    let log = server.seen();
    eprintln!("{label}: {} requests in {took:?}", log.len());

    // The framing of every attempt, as the server saw it.
    for (i, seen) in log.iter().enumerate() {
        assert_eq!(seen.method, "PUT", "{label} request {i}");
        assert_eq!(seen.version, proto.version(), "{label} request {i}");
        if exact {
            assert_eq!(
                seen.content_length,
                Some(len.to_string()),
                "{label} request {i}: an exact-size body must carry its Content-Length"
            );
            assert_eq!(
                seen.transfer_encoding, None,
                "{label} request {i}: an exact-size body must not be chunked"
            );
        } else {
            assert_eq!(seen.content_length, None, "{label} request {i}");
            let chunked = (proto == Proto::H1).then(|| "chunked".to_owned());
            assert_eq!(seen.transfer_encoding, chunked, "{label} request {i}");
        }
    }

    match case {
        Case::Early413 => {
            match &result {
                Ok(res) => assert_eq!(res.status(), 413, "{label}"),
                Err(err) => {
                    // Over HTTP/1.1 hyper may report the connection closing
                    // under the unsent body instead of the 413.
                    assert!(
                        !is_elapsed(&**err),
                        "{label}: an early 413 ended in a timeout: {}",
                        chain(&**err)
                    );
                    eprintln!("{label}: no 413, an error: {}", chain(&**err));
                }
            }
            assert_eq!(
                log.len(),
                1,
                "{label}: a 413 must not be retried; the server saw {log:#?}"
            );
        }
        Case::Drop | Case::Status503 | Case::Stall => {
            let res = result.unwrap_or_else(|err| {
                panic!(
                    "{label}: not retried to success after {took:?}: {}; the server saw {log:#?}",
                    chain(&*err)
                )
            });
            assert_eq!(res.status(), 200, "{label}: the server saw {log:#?}");
            assert_eq!(log.len(), 2, "{label}: the server saw {log:#?}");
            assert_eq!(log[0].fault, fault, "{label}");
            assert!(
                log[0].read < len,
                "{label}: the failed attempt read all {len} bytes: {log:#?}"
            );
            let last = log.last().unwrap();
            assert_eq!(last.fault, Fault::Succeed, "{label}");
            assert_eq!(last.read, len, "{label}: bytes the last attempt carried");
            assert_eq!(
                last.sha256.as_deref(),
                Some(hash),
                "{label}: the bytes of the last attempt"
            );
            // The response agrees with the log.
            let seen = received(&res);
            assert_eq!(seen.sha256, hash, "{label}");
        }
    }
}

macro_rules! matrix {
    ($($name:ident: $proto:ident $kind:ident $case:ident;)*) => {$(
        #[tokio::test]
        async fn $name() {
            run(Proto::$proto, Kind::$kind, Case::$case).await;
        }
    )*};
}

matrix! {
    h1_mmap_dropped: H1 Mmap Drop;
    h1_mmap_503: H1 Mmap Status503;
    h1_mmap_early_413: H1 Mmap Early413;
    h1_mmap_stall_timeout: H1 Mmap Stall;
    h1_streamed_dropped: H1 Streamed Drop;
    h1_streamed_503: H1 Streamed Status503;
    h1_streamed_early_413: H1 Streamed Early413;
    h1_streamed_stall_timeout: H1 Streamed Stall;
    h1_exact_streamed_dropped: H1 Exact Drop;
    h1_exact_streamed_503: H1 Exact Status503;
    h1_exact_streamed_early_413: H1 Exact Early413;
    h1_exact_streamed_stall_timeout: H1 Exact Stall;
    h2_mmap_dropped: H2 Mmap Drop;
    h2_mmap_503: H2 Mmap Status503;
    h2_mmap_early_413: H2 Mmap Early413;
    h2_mmap_stall_timeout: H2 Mmap Stall;
    h2_streamed_dropped: H2 Streamed Drop;
    h2_streamed_503: H2 Streamed Status503;
    h2_streamed_early_413: H2 Streamed Early413;
    h2_streamed_stall_timeout: H2 Streamed Stall;
    h2_exact_streamed_dropped: H2 Exact Drop;
    h2_exact_streamed_503: H2 Exact Status503;
    h2_exact_streamed_early_413: H2 Exact Early413;
    h2_exact_streamed_stall_timeout: H2 Exact Stall;
}

// ---------------------------------------------------------------- axum proxy

// The library's own proxy helpers (`mmap_body::proxy`), as a user wires
// them: no hop-by-hop list of this test's.
#[cfg(feature = "proxy")]
mod proxy {
    use super::*;
    use axum::extract::State;
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    use mmap_body::proxy::{self, Forwarding, Upstream};
    use mmap_body::Replay;
    use mmap_body_devkit::files::{pattern, sha256};
    use mmap_body_devkit::server::serve_axum;
    use tower::retry::Retry;

    type Stack = Replay<Retry<RetryPolicy, Client<HttpConnector, ReplayBody<axum::body::Body>>>>;

    #[derive(Clone)]
    struct Proxy {
        stack: Stack,
        upstream: Upstream,
        forwarding: Forwarding,
    }

    async fn forward(
        State(proxy): State<Proxy>,
        req: axum::extract::Request,
    ) -> axum::response::Response {
        let req = match proxy::upstream_request(req, &proxy.upstream, &proxy.forwarding, None) {
            Ok(req) => req,
            Err(refused) => return proxy::error_response(&refused),
        };
        match proxy.stack.oneshot(req).await {
            Ok(res) => match proxy::downstream_response(res, &proxy.forwarding) {
                Ok(res) => res.map(axum::body::Body::new),
                Err(refused) => proxy::error_response(&refused),
            },
            Err(err) => proxy::error_response(&*err),
        }
    }

    /// Starts the proxy on 127.0.0.1, forwarding to `upstream`.
    async fn start(upstream: &Faulty, http2: bool) -> std::net::SocketAddr {
        let stack = ServiceBuilder::new()
            .layer(ReplayLayer::new(4 * MIB as usize))
            .layer(RetryLayer::new(policy()))
            .service(client::<ReplayBody<axum::body::Body>>(http2));
        let app = axum::Router::new().fallback(forward).with_state(Proxy {
            stack,
            upstream: upstream.uri("").parse().expect("the upstream's URI"),
            forwarding: Forwarding::new(),
        });
        serve_axum(app).await
    }

    async fn proxied_upload_survives_a_dropped_upstream(http2: bool) {
        let label = if http2 {
            "[proxy, h2 upstream]"
        } else {
            "[proxy, h1 upstream]"
        };
        let upstream = Faulty::start([Fault::DropAfter(256 * KIB)]).await;
        let proxy = start(&upstream, http2).await;
        let mut bytes = vec![0u8; MIB as usize];
        pattern(42, &mut bytes);
        let hash = sha256(&bytes);
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_LIMIT)
            .build()
            .expect("client");
        let res = tokio::time::timeout(
            REQUEST_LIMIT,
            client
                .put(format!("http://{proxy}/files/big.bin?v=1"))
                .header(http::header::CONTENT_LENGTH, MIB)
                .body(bytes)
                .send(),
        )
        .await
        .expect("in time")
        .expect("a response from the proxy");
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let log = upstream.seen();
        assert_eq!(
            status, 200,
            "{label}: the proxy answered {status}: {text}; upstream saw {log:#?}"
        );
        assert_eq!(log.len(), 2, "{label}: upstream saw {log:#?}");
        assert_eq!(log[0].fault, Fault::DropAfter(256 * KIB), "{label}");
        let expected = if http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        for (i, seen) in log.iter().enumerate() {
            assert_eq!(seen.version, expected, "{label} request {i}");
            assert_eq!(
                seen.content_length,
                Some(MIB.to_string()),
                "{label} request {i}"
            );
            assert_eq!(seen.transfer_encoding, None, "{label} request {i}");
        }
        let last = log.last().unwrap();
        assert_eq!(last.read, MIB, "{label}");
        assert_eq!(last.sha256.as_deref(), Some(hash.as_str()), "{label}");
    }

    #[tokio::test]
    async fn axum_proxy_retries_the_incoming_body_h1_upstream() {
        proxied_upload_survives_a_dropped_upstream(false).await;
    }

    #[tokio::test]
    async fn axum_proxy_retries_the_incoming_body_h2_upstream() {
        proxied_upload_survives_a_dropped_upstream(true).await;
    }
}

// ---------------------------------------------------------------- cancellation

/// Entries of `/proc/self/fd` and lines of `/proc/self/maps` that name one
/// of `paths`.
fn open_and_mapped(paths: &[PathBuf]) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let named = |s: &str| names.iter().any(|n| s.contains(n.as_str()));
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let Ok(entry) = entry else { continue };
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.display().to_string();
            if named(&target) {
                fds.push(format!("fd {:?} -> {target}", entry.file_name()));
            }
        }
    }
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let maps = maps
        .lines()
        .filter(|l| named(l))
        .map(str::to_owned)
        .collect();
    (fds, maps)
}

/// Starts 8 uploads of 16 MiB files to a server that reads 1 MiB of each and
/// then stalls, aborts them after 100 ms, drops the client, and checks
/// that no fd or mapping of the files is left. With `hang_up`, the server
/// also closes its connections after the abort (a peer that goes away,
/// rather than one that stays connected and silent).
async fn cancelled_uploads_release_their_files(proto: Proto, hang_up: bool) {
    const UPLOADS: usize = 8;
    let label = format!("[{proto:?} cancel, server hangs up: {hang_up}]");
    let source = test_file(16 * MIB);
    let paths: Vec<PathBuf> = (0..UPLOADS)
        .map(|i| {
            let path = source.dir.path().join(format!("upload-{i}.bin"));
            std::fs::copy(&source.path, &path).expect("copy");
            std::fs::canonicalize(&path).expect("canonical path")
        })
        .collect();
    let server = Faulty::start(vec![Fault::StallAfter(MIB); 4 * UPLOADS]).await;
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(CAP))
        .layer(RetryLayer::new(policy()))
        .layer(TimeoutLayer::new(REQUEST_LIMIT))
        .service(client::<ReplayBody<MmapBody>>(proto == Proto::H2));
    let mut tasks = Vec::new();
    for path in &paths {
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::open(path) }.expect("open");
        let req = Request::put(server.uri("/upload")).body(body).unwrap();
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::timeout(REQUEST_LIMIT, service.oneshot(req)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = server.seen().len();
    let (_, mapped) = open_and_mapped(&paths);
    assert!(
        started > 0 && !mapped.is_empty(),
        "{label}: the test is vacuous: {started} uploads reached the server, \
         {} mappings of the files",
        mapped.len()
    );
    for task in &tasks {
        assert!(!task.is_finished(), "{label}: an upload ended on its own");
        task.abort();
    }
    for task in tasks {
        let joined = task.await;
        assert!(joined.is_err_and(|e| e.is_cancelled()), "{label}");
    }
    drop(service);
    if hang_up {
        server.hang_up();
    }

    // Settle: the client's connection tasks notice the cancellation.
    let deadline = Instant::now() + Duration::from_secs(3);
    let (fds, maps) = loop {
        let (fds, maps) = open_and_mapped(&paths);
        if (fds.is_empty() && maps.is_empty()) || Instant::now() > deadline {
            break (fds, maps);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        fds.is_empty() && maps.is_empty(),
        "{label}: {started} uploads reached the server and were cancelled, but 3 s \
         later the process still holds {} fds and {} mappings of the files:\n{}\n{}",
        fds.len(),
        maps.len(),
        fds.join("\n"),
        maps.join("\n")
    );
    drop(source);
}

// Not tested: HTTP/1.1 with a peer that stays connected and stops reading.
// hyper's HTTP/1.1 connection, once its request is cancelled, flushes what
// it had queued before it closes (`poll_shutdown` in hyper 1.12's
// `proto/h1/dispatch.rs`), and the queued frames are slices of the mapping:
// the file stays open and mapped until the peer reads or goes away, as the
// `_once_the_server_hangs_up` case shows. The same happens with any body
// whose frames borrow memory; a plain hyper-util client without this crate
// behaves the same.

#[tokio::test]
async fn h2_cancelled_uploads_release_their_files() {
    cancelled_uploads_release_their_files(Proto::H2, false).await;
}

#[tokio::test]
async fn h1_cancelled_uploads_release_their_files_once_the_server_hangs_up() {
    cancelled_uploads_release_their_files(Proto::H1, true).await;
}

#[tokio::test]
async fn h2_cancelled_uploads_release_their_files_once_the_server_hangs_up() {
    cancelled_uploads_release_their_files(Proto::H2, true).await;
}
