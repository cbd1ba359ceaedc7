//! `ReplayLayer` + `tower::retry` + `RetryPolicy` against a real hyper server
//! on 127.0.0.1 that drops connections and answers 503 on purpose.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use mmap_body::retry::RetryPolicy;
use mmap_body::{ErrorKind, MmapBody, ReplayBody, ReplayLayer};
use mmap_body_devkit::bodies::Streamed;
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::test_file;
use mmap_body_devkit::server::{client, hashing_server, received};
use mmap_body_devkit::BoxError;
use tower::retry::budget::TpsBudget;
use tower::retry::RetryLayer;
use tower::{Service, ServiceBuilder, ServiceExt};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// A fast policy for tests: waits of 10 to 40 ms.
fn policy() -> RetryPolicy {
    RetryPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(40))
}

/// ReplayLayer outside, RetryLayer inside, a hyper-util client at the core.
async fn send<B>(
    cap: usize,
    policy: RetryPolicy,
    req: Request<B>,
) -> Result<Response<Incoming>, BoxError>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(cap))
        .layer(RetryLayer::new(policy))
        .service(client::<ReplayBody<B>>(false));
    // Every test is bounded in time: nothing may hang.
    tokio::time::timeout(Duration::from_secs(60), service.oneshot(req))
        .await
        .expect("the request finished in time")
}

#[tokio::test]
async fn mmap_upload_survives_a_dropped_connection() {
    let file = test_file(64 * MIB);
    let server = Faulty::start([Fault::DropAfter(32 * MIB)]).await;
    // SAFETY: the temp file is private to this test.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();
    let req = Request::put(server.uri("/upload")).body(body).unwrap();
    // A cap of 64 KiB: the mmap body is cloned, not recorded.
    let res = send(64 * 1024, policy(), req).await.expect("retried");
    let seen = received(&res);
    assert_eq!(seen.sha256, file.sha256);
    assert_eq!(seen.content_length, Some(64 * MIB));
    let log = server.seen();
    assert_eq!(log.len(), 2);
    assert!(log
        .iter()
        .all(|s| s.content_length == Some((64 * MIB).to_string())));
}

#[tokio::test]
async fn streamed_body_is_retried_after_a_503_mid_body() {
    let (body, hash) = Streamed::random(600 * 1024, 16 * 1024);
    let server = Faulty::start([Fault::StatusAfter(503, 200 * KIB, None)]).await;
    let req = Request::put(server.uri("/")).body(body).unwrap();
    let res = send(1024 * 1024, policy(), req).await.expect("retried");
    let seen = received(&res);
    assert_eq!((seen.len, seen.sha256), (600 * KIB, hash));
    // Unknown size: chunked, both times.
    assert_eq!(seen.transfer_encoding.as_deref(), Some("chunked"));
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn streamed_body_with_trailers_is_replayed_with_them() {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    let (body, hash) = Streamed::random(300 * 1024, 10 * 1024);
    let body = body.with_trailers(trailers);
    let server = Faulty::start([Fault::StatusAfter(503, 100 * KIB, None)]).await;
    let req = Request::put(server.uri("/"))
        .header(http::header::TRAILER, "x-checksum")
        .body(body)
        .unwrap();
    let res = send(1024 * 1024, policy(), req).await.expect("retried");
    let seen = received(&res);
    assert_eq!(seen.sha256, hash);
    assert_eq!(seen.trailers.as_deref(), Some("x-checksum=abc123"));
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn body_larger_than_the_cap_completes_but_is_not_retried() {
    // The server succeeds: the first attempt goes through whole.
    let (body, hash) = Streamed::random(1024 * 1024, 32 * 1024);
    let server = Faulty::start([]).await;
    let req = Request::put(server.uri("/")).body(body).unwrap();
    let res = send(64 * 1024, policy(), req).await.unwrap();
    assert_eq!(received(&res).sha256, hash);

    // The server answers 503 after 512 KiB: past the cap, so the caller gets
    // the 503 and the server sees one request.
    let (body, _) = Streamed::random(1024 * 1024, 32 * 1024);
    let server = Faulty::start([Fault::StatusAfter(503, 512 * KIB, None)]).await;
    let req = Request::put(server.uri("/")).body(body).unwrap();
    match send(64 * 1024, policy(), req).await {
        Ok(res) => assert_eq!(res.status(), 503),
        // hyper may report the connection closing under the unsent body.
        Err(err) => eprintln!("first attempt failed without a response: {err}"),
    }
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn content_length_is_set_from_the_exact_size() {
    let server = Faulty::start([]).await;
    let full = Request::post(server.uri("/"))
        .body(Full::new(Bytes::from_static(b"{\"a\":1}")))
        .unwrap();
    let seen = received(&send(1024, policy(), full).await.unwrap());
    assert_eq!(seen.content_length, Some(7));
    assert_eq!(seen.transfer_encoding, None);

    let empty_post = Request::post(server.uri("/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let seen = received(&send(1024, policy(), empty_post).await.unwrap());
    assert_eq!(seen.content_length, Some(0));

    for method in ["GET", "HEAD", "DELETE", "OPTIONS"] {
        let req = Request::builder()
            .method(method)
            .uri(server.uri("/"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = send(1024, policy(), req).await.unwrap();
        assert_eq!(res.status(), 200, "{method}");
        let log = server.seen();
        let last = log.last().unwrap();
        assert_eq!(last.method, method);
        assert_eq!(last.content_length, None, "{method} got a Content-Length");
    }
}

#[tokio::test]
async fn mismatching_content_length_is_refused_before_sending() {
    let server = Faulty::start([]).await;
    let file = test_file(1000);
    // SAFETY: the temp file is private to this test.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();
    let req = Request::put(server.uri("/"))
        .header(http::header::CONTENT_LENGTH, "999")
        .body(body)
        .unwrap();
    let err = send(1024, policy(), req).await.unwrap_err();
    let ours = err.downcast_ref::<mmap_body::Error>().expect("our error");
    assert_eq!(ours.kind(), ErrorKind::ContentLengthMismatch);
    assert!(ours.to_string().contains("999"), "{ours}");

    let both = Request::put(server.uri("/"))
        .header(http::header::CONTENT_LENGTH, "3")
        .header(http::header::TRANSFER_ENCODING, "chunked")
        .body(Full::new(Bytes::from_static(b"abc")))
        .unwrap();
    let err = send(1024, policy(), both).await.unwrap_err();
    let ours = err.downcast_ref::<mmap_body::Error>().expect("our error");
    assert_eq!(ours.kind(), ErrorKind::ContentLengthMismatch);
    assert!(
        server.seen().is_empty(),
        "a refused request reached the server"
    );
}

/// hyper's HTTP/1.1 client never polls a body once it has written
/// `Content-Length: 0`: a streamed body declared 0 would reach the server as
/// a complete, empty request, its bytes silently gone.
#[tokio::test]
async fn declared_zero_never_hides_a_streamed_body() {
    let server = Faulty::start([]).await;
    let (body, _) = Streamed::random(100_000, 10_000);
    let req = Request::put(server.uri("/"))
        .header(http::header::CONTENT_LENGTH, "0")
        .body(body)
        .unwrap();
    let err = send(1 << 20, policy(), req).await.unwrap_err();
    let ours = mmap_body::Error::find_in(&*err).expect("our error");
    assert_eq!(ours.kind(), ErrorKind::ContentLengthMismatch);
    assert!(server.seen().is_empty(), "the request reached the server");

    // A body known to be empty may say so.
    let req = Request::put(server.uri("/"))
        .header(http::header::CONTENT_LENGTH, "0")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send(1 << 20, policy(), req).await.unwrap();
    assert_eq!(received(&res).content_length, Some(0));
}

/// `Content-Length` values with leading zeros are valid but some peers
/// refuse them (h2 servers do): they are sent in canonical form.
#[tokio::test]
async fn content_length_is_sent_canonical_over_http1_and_http2() {
    let addr = hashing_server().await;
    for http2 in [false, true] {
        for (declared, len) in [("000000000000000000000000", 0usize), ("00100", 100)] {
            let body = Full::new(Bytes::from(vec![b'x'; len]));
            let req = Request::put(format!("http://{addr}/"))
                .header(http::header::CONTENT_LENGTH, declared)
                .body(body)
                .unwrap();
            let service = ServiceBuilder::new()
                .layer(ReplayLayer::new(1024))
                .service(client::<ReplayBody<Full<Bytes>>>(http2));
            let res = tokio::time::timeout(Duration::from_secs(10), service.oneshot(req))
                .await
                .expect("in time")
                .unwrap_or_else(|e| panic!("http2={http2}, {declared}: {e}"));
            let seen = received(&res);
            assert_eq!(seen.content_length, Some(len as u64), "http2={http2}");
            assert_eq!(seen.len, len as u64);
        }
    }
}

#[tokio::test]
async fn streamed_body_shorter_or_longer_than_declared_fails() {
    for (declared, len) in [(200_000u64, 100_000usize), (50_000, 100_000)] {
        let server = Faulty::start([]).await;
        let (body, _) = Streamed::random(len, 10_000);
        let req = Request::put(server.uri("/"))
            .header(http::header::CONTENT_LENGTH, declared)
            .body(body)
            .unwrap();
        let err = send(1024 * 1024, policy(), req)
            .await
            .expect_err("a body that lies about its length must fail");
        let ours = mmap_body::Error::find_in(&*err).expect("our error in the chain");
        assert_eq!(ours.kind(), ErrorKind::ContentLengthMismatch, "{ours}");
        // Never retried: the body itself is wrong.
        assert!(server.seen().len() <= 1);
    }
}

#[tokio::test]
async fn attempts_are_bounded_and_backoff_is_observed() {
    let server = Faulty::start(vec![Fault::StatusAfter(503, 0, None); 10]).await;
    let policy = RetryPolicy::default()
        .max_attempts(4)
        .backoff(Duration::from_millis(50), Duration::from_millis(50));
    let started = Instant::now();
    let req = Request::get(server.uri("/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send(1024, policy, req).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(server.seen().len(), 4);
    // Three waits of at least 50 ms each (jitter only adds).
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_its_limit() {
    let server = Faulty::start([Fault::StatusAfter(503, 0, Some("1"))]).await;
    let started = Instant::now();
    let req = Request::get(server.uri("/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send(1024, policy(), req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(server.seen().len(), 2);

    // Asking for longer than `max_retry_after`: the caller gets the 429.
    let server = Faulty::start([Fault::StatusAfter(429, 0, Some("3600"))]).await;
    let req = Request::get(server.uri("/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send(1024, policy(), req).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn post_is_not_retried_unless_allowed() {
    let server = Faulty::start([Fault::StatusAfter(503, 0, None)]).await;
    let req = Request::post(server.uri("/"))
        .body(Full::new(Bytes::from("x")))
        .unwrap();
    assert_eq!(send(1024, policy(), req).await.unwrap().status(), 503);
    assert_eq!(server.seen().len(), 1);

    let server = Faulty::start([Fault::StatusAfter(503, 0, None)]).await;
    let req = Request::post(server.uri("/"))
        .body(Full::new(Bytes::from("x")))
        .unwrap();
    let allowed = policy().retry_non_idempotent(true);
    assert_eq!(send(1024, allowed, req).await.unwrap().status(), 200);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn connection_refused_is_retried_and_bounded() {
    // A port nothing listens on: bind, note the port, close.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let req = Request::get(format!("http://{addr}/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let started = Instant::now();
    let err = send(1024, policy().max_attempts(3), req).await.unwrap_err();
    assert!(err.to_string().contains("connect") || format!("{err:?}").contains("Connect"));
    // Two backoff waits of at least 10 ms.
    assert!(started.elapsed() >= Duration::from_millis(20));
}

#[tokio::test]
async fn budget_stops_a_retry_storm() {
    let requests = 10;
    let count = |budget: Option<Arc<TpsBudget>>| async move {
        let server = Faulty::start(vec![Fault::StatusAfter(503, 0, None); 100]).await;
        let policy = match budget {
            Some(budget) => policy().budget(budget),
            None => policy(),
        };
        let mut service = ServiceBuilder::new()
            .layer(ReplayLayer::new(1024))
            .layer(RetryLayer::new(policy))
            .service(client::<ReplayBody<Empty<Bytes>>>(false));
        for _ in 0..requests {
            let req = Request::get(server.uri("/")).body(Empty::new()).unwrap();
            let res = service.ready().await.unwrap().call(req).await.unwrap();
            assert_eq!(res.status(), 503);
        }
        server.seen().len()
    };
    assert_eq!(count(None).await, requests * 3);
    // One retry a second allowed, none earned by the failing requests.
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(1), 1, 0.0));
    let seen = count(Some(budget)).await;
    assert!(
        (requests..=requests + 2).contains(&seen),
        "the budget let {seen} requests through"
    );
}
