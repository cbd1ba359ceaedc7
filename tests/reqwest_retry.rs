//! `mmap_body::reqwest::ReqwestService` behind `ReplayLayer` + `RetryLayer`
//! (`RetryPolicy`) + `TrackProgressLayer`: real reqwest 0.13 clients against real
//! hyper servers on 127.0.0.1, over HTTP/1.1 and HTTP/2 (prior knowledge).
//!
//! - a 512 MiB upload survives a dropped connection and a 503 with
//!   `Retry-After: 0`: the last attempt gets the whole file with its
//!   `Content-Length`, the attempts follow the policy, progress restarts at
//!   zero with each attempt;
//! - the service alone keeps the body's exact length;
//! - a file changed mid-upload fails with `Modified` / `Truncated` in the
//!   error chain and is never retried.
//!
//! The SIGBUS guard is installed (a truncation over HTTP/2 copies frames in
//! user space), so these tests have a binary of their own.
#![cfg(all(feature = "reqwest", feature = "retry", feature = "progress"))]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Version};
use http_body_util::BodyExt;
use mmap_body::progress::{Progress, ProgressBody, TrackProgressLayer};
use mmap_body::reqwest::ReqwestService;
use mmap_body::retry::RetryPolicy;
use mmap_body::{Error, ErrorKind, MmapBody, ReplayBody, ReplayLayer};
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::{change, test_file, Change};
use mmap_body_devkit::server::pausing_server;
use mmap_body_devkit::BoxError;
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

const MIB: u64 = 1024 * 1024;
/// Every request, retries included, ends within this.
const LIMIT: Duration = Duration::from_secs(180);

fn reqwest_client(http2: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(LIMIT)
        .tcp_nodelay(true);
    if http2 {
        builder = builder
            .http2_prior_knowledge()
            .http2_initial_stream_window_size(8 << 20)
            .http2_initial_connection_window_size(16 << 20);
    }
    builder.build().expect("reqwest client")
}

fn open(path: &std::path::Path) -> MmapBody {
    mmap_body::guard::install().expect("install the SIGBUS guard");
    // SAFETY: the temp file is private to this test; the changes some tests
    // make to it while mapped are their point, made with the guard installed.
    unsafe { MmapBody::open(path) }.unwrap()
}

/// (attempt, sent, total) of a `Progress`.
type Sample = (u32, u64, Option<u64>);

fn sample(p: &Progress) -> Sample {
    (p.attempt(), p.sent(), p.total())
}

/// The stack, with two taps on the progress: just before `TrackProgressLayer`
/// starts an attempt (what the previous one had sent), and just after
/// (what the new one starts from).
macro_rules! stack {
    ($policy:expr, $http2:expr, $before:expr, $after:expr) => {{
        let before = $before.clone();
        let after = $after.clone();
        ServiceBuilder::new()
            .layer(ReplayLayer::new(64 * 1024))
            .layer(RetryLayer::new($policy))
            .map_request(move |req: Request<ReplayBody<MmapBody>>| {
                if let Some(p) = req.extensions().get::<Progress>() {
                    before.lock().unwrap().push(sample(p));
                }
                req
            })
            .layer(TrackProgressLayer::new())
            .map_request(move |req: Request<ProgressBody<ReplayBody<MmapBody>>>| {
                if let Some(p) = req.extensions().get::<Progress>() {
                    after.lock().unwrap().push(sample(p));
                }
                req
            })
            .service(ReqwestService::new(reqwest_client($http2)))
    }};
}

fn policy() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(3)
        .backoff(Duration::from_millis(10), Duration::from_millis(40))
}

/// Drop after 64 MiB, then 503 with `Retry-After: 0` after 32 MiB, then
/// accept: the caller gets 200, the server's third request has the whole
/// file with its `Content-Length`, progress starts from zero each time.
async fn survives_a_drop_and_a_503(http2: bool, len: u64) {
    let label = if http2 { "[h2]" } else { "[h1]" };
    let started = Instant::now();
    let file = test_file(len);
    let made = started.elapsed();
    let server = Faulty::start([
        Fault::DropAfter(64 * MIB),
        Fault::StatusAfter(503, 32 * MIB, Some("0")),
    ])
    .await;
    let before = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let after = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let service = stack!(policy(), http2, before, after);

    let mut request = Request::put(server.uri("/upload"))
        .body(open(&file.path))
        .unwrap();
    let progress = Progress::new();
    request.extensions_mut().insert(progress.clone());
    let sent_at = Instant::now();
    let response = tokio::time::timeout(LIMIT, service.oneshot(request))
        .await
        .unwrap_or_else(|_| panic!("{label} the upload ended in time"))
        .unwrap_or_else(|err| panic!("{label} the upload failed: {err:?}"));
    let took = sent_at.elapsed();
    let status = response.status();
    let _ = response.into_body().collect().await;
    eprintln!(
        "{label} {} MiB: file made in {:.1} s, upload (3 attempts) in {:.1} s",
        len / MIB,
        made.as_secs_f64(),
        took.as_secs_f64()
    );
    assert_eq!(status, 200, "{label}");

    let seen = server.seen();
    let faults: Vec<Fault> = seen.iter().map(|s| s.fault.clone()).collect();
    assert_eq!(
        faults,
        [
            Fault::DropAfter(64 * MIB),
            Fault::StatusAfter(503, 32 * MIB, Some("0")),
            Fault::Succeed
        ],
        "{label} the policy's 3 attempts: {seen:#?}"
    );
    let version = if http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.method, "PUT", "{label} attempt {}", i + 1);
        assert_eq!(s.version, version, "{label} attempt {}", i + 1);
        assert_eq!(
            s.content_length,
            Some(len.to_string()),
            "{label} attempt {}",
            i + 1
        );
        assert_eq!(s.transfer_encoding, None, "{label} attempt {}", i + 1);
    }
    let last = &seen[2];
    assert_eq!(last.read, len, "{label} the last attempt read everything");
    assert_eq!(
        last.sha256.as_deref(),
        Some(file.sha256.as_str()),
        "{label} hash"
    );

    // Each attempt starts at zero of the whole length...
    let after = after.lock().unwrap().clone();
    assert_eq!(
        after,
        [(1, 0, Some(len)), (2, 0, Some(len)), (3, 0, Some(len))],
        "{label} progress at the start of each attempt"
    );
    // ...after the one before had handed at least what the server read of
    // it (and never more than the file) to reqwest.
    let before = before.lock().unwrap().clone();
    assert_eq!(before.len(), 3, "{label} {before:?}");
    assert_eq!(before[0], (0, 0, None), "{label} {before:?}");
    for (i, &(attempt, sent, total)) in before.iter().enumerate().skip(1) {
        assert_eq!(attempt as usize, i, "{label} {before:?}");
        assert!(
            sent >= seen[i - 1].read && sent <= len && total == Some(len),
            "{label} attempt {i} had sent {sent}, the server read {}: {before:?}",
            seen[i - 1].read
        );
    }
    assert_eq!(sample(&progress), (3, len, Some(len)), "{label} at the end");
}

/// 512 MiB over HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_512_mib_survives_a_dropped_connection_and_a_503() {
    survives_a_drop_and_a_503(false, 512 * MIB).await;
}

/// The same over HTTP/2 prior knowledge, at 128 MiB (h2's 16 KiB DATA
/// frames make a debug build slow).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_128_mib_survives_a_dropped_connection_and_a_503() {
    survives_a_drop_and_a_503(true, 128 * MIB).await;
}

/// `max_attempts(2)` gives the caller the 503 of the second attempt; a
/// POST is not retried at all (not idempotent); a connection refused is
/// retried up to the limit.
#[tokio::test]
async fn attempts_follow_the_policy() {
    let file = test_file(16 * MIB);
    let none = Arc::new(Mutex::new(Vec::new()));
    let script = || {
        [
            Fault::DropAfter(4 * MIB),
            Fault::StatusAfter(503, 4 * MIB, Some("0")),
        ]
    };

    let server = Faulty::start(script()).await;
    let service = stack!(policy().max_attempts(2), false, none, none);
    let request = Request::put(server.uri("/two")).body(open(&file.path));
    let response = tokio::time::timeout(LIMIT, service.oneshot(request.unwrap()))
        .await
        .expect("in time")
        .expect("the last attempt's response");
    assert_eq!(response.status(), 503);
    assert_eq!(server.seen().len(), 2, "{:#?}", server.seen());

    let server = Faulty::start(script()).await;
    let service = stack!(policy(), false, none, none);
    let request = Request::post(server.uri("/post")).body(open(&file.path));
    let err = tokio::time::timeout(LIMIT, service.oneshot(request.unwrap()))
        .await
        .expect("in time")
        .expect_err("a POST whose connection dropped is not retried");
    assert!(
        err.downcast_ref::<reqwest::Error>().is_some(),
        "reqwest's error, boxed: {err:?}"
    );
    assert_eq!(server.seen().len(), 1, "{:#?}", server.seen());

    // Nothing listens there: each attempt is refused, three in all.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let service = stack!(policy(), false, none, attempts);
    let mut request = Request::put(format!("http://{closed}/refused"))
        .body(open(&file.path))
        .unwrap();
    request.extensions_mut().insert(Progress::new());
    let err = tokio::time::timeout(LIMIT, service.oneshot(request))
        .await
        .expect("in time")
        .expect_err("nobody listens");
    let reqwest_err = err.downcast_ref::<reqwest::Error>().expect("reqwest's");
    assert!(reqwest_err.is_connect(), "{err:?}");
    assert_eq!(attempts.lock().unwrap().len(), 3);
}

/// `ReqwestService` with no layer: hyper sends the exact length from the
/// body's `size_hint`, over both protocols.
#[tokio::test]
async fn the_service_alone_sends_content_length() {
    let file = test_file(8 * MIB + 5);
    for http2 in [false, true] {
        let server = Faulty::start([]).await;
        let request = Request::put(server.uri("/alone"))
            .body(open(&file.path))
            .unwrap();
        let response = ReqwestService::new(reqwest_client(http2))
            .oneshot(request)
            .await
            .expect("uploaded");
        assert_eq!(response.status(), 200);
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        let case = format!("http2={http2}: {seen:?}");
        assert_eq!(seen[0].content_length, Some(file.len.to_string()), "{case}");
        assert_eq!(seen[0].transfer_encoding, None, "{case}");
        assert_eq!(seen[0].sha256.as_deref(), Some(&*file.sha256), "{case}");
    }
}

// ---------------------------------------------------------------- file changes

/// 8 MiB frames, so that HTTP/2 still holds most of the second one (and
/// copies from it in user space) when the server pauses at 2 MiB; and far
/// more bytes than the windows and socket buffers hold (17 MiB, as in
/// `file_changes.rs`, was sometimes all in flight before the change).
const LEN: u64 = 64 * MIB + 1;
const FRAME: usize = 8 * MIB as usize;

/// Uploads [`LEN`] bytes, changes the file once the server has read 2 MiB,
/// lets it read on; returns the caller's outcome and the server's log.
async fn upload_and_change(http2: bool, how: Change, stack: bool) -> (BoxError, Vec<u64>) {
    let file = test_file(LEN);
    let server = pausing_server(2 * MIB).await;
    let addr = server.addr;
    let body = open(&file.path).chunk_size(FRAME);
    let request = Request::put(format!("http://{addr}/change"))
        .body(body)
        .unwrap();
    let upload = tokio::spawn(async move {
        if stack {
            let none = Arc::new(Mutex::new(Vec::new()));
            stack!(policy(), http2, none, none)
                .oneshot(request)
                .await
                .map(|r| r.status())
        } else {
            ReqwestService::new(reqwest_client(http2))
                .oneshot(request)
                .await
                .map(|r| r.status())
        }
    });
    let log = server.change_while_paused(|| change(&file.path, how)).await;
    let outcome = tokio::time::timeout(Duration::from_secs(30), upload)
        .await
        .expect("the upload ended in time")
        .unwrap();
    let err = match outcome {
        Ok(status) => panic!(
            "{how:?}, http2={http2}, stack={stack}: a changed upload must fail, got {status}"
        ),
        Err(err) => err,
    };
    // A retry would have arrived by now (the backoff is at most 40 ms).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = log.lock().unwrap().iter().map(|u| u.read).collect();
    (err, seen)
}

/// Through the stack: the caller finds `Modified` / `Truncated` in the
/// error chain, the server sees one request, never the whole body.
#[tokio::test]
async fn a_file_changed_mid_upload_fails_and_is_not_retried() {
    for how in [Change::Touch, Change::Truncate] {
        for http2 in [false, true] {
            let case = format!("{how:?}, http2={http2}");
            let (err, seen) = upload_and_change(http2, how, true).await;
            eprintln!("{case}: {err}");
            let ours = Error::find_in(&*err).unwrap_or_else(|| panic!("{case}: {err:?}"));
            let want = match how {
                Change::Touch => ErrorKind::Modified,
                Change::Truncate => ErrorKind::Truncated,
            };
            // Over HTTP/1.1 the kernel may refuse the truncated pages
            // (EFAULT) before the body sees the change: then the error is
            // the connection's, and the policy still must not replay the
            // changed file (the body recorded its failure).
            if http2 || how == Change::Touch {
                assert_eq!(ours.kind(), want, "{case}: {err:?}");
            }
            assert_eq!(seen.len(), 1, "{case}: retried: {seen:?}");
            assert!(seen[0] < LEN, "{case}: the server got it all: {seen:?}");
        }
    }
}

/// Without any layer, `ReqwestService`'s own error is reqwest's, boxed.
/// Over HTTP/1.1 its chain carries the body's error (reqwest's, then
/// hyper-util's, hyper's, the body's). Over HTTP/2 hyper only logs a
/// body's error and reports a reset stream, so the chain ends there: only
/// `ReplayLayer` (which keeps the body's failure) gives it back.
#[tokio::test]
async fn the_service_alone_keeps_the_body_error_in_the_chain() {
    for http2 in [false, true] {
        let (err, seen) = upload_and_change(http2, Change::Touch, false).await;
        let case = format!("http2={http2}");
        assert!(
            err.downcast_ref::<reqwest::Error>().is_some(),
            "{case}: reqwest's error, boxed: {err:?}"
        );
        if !http2 {
            let ours = Error::find_in(&*err).unwrap_or_else(|| panic!("{case}: {err:?}"));
            assert_eq!(ours.kind(), ErrorKind::Modified, "{case}: {err:?}");
        }
        assert_eq!(seen.len(), 1, "{case}");
    }
}
