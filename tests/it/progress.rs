//! Upload progress through the real stack: `ReplayLayer` + `tower::retry` +
//! `TrackProgressLayer` + a hyper-util client, against a flaky server on
//! 127.0.0.1 that drops the first attempt and answers 503 to the second.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use mmap_body::progress::{Progress, ProgressBody, TrackProgressLayer};
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayBody, ReplayLayer};
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::test_file;
use mmap_body_devkit::server::{client, hashing_server, received};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

const MIB: u64 = 1024 * 1024;

/// (attempt, sent, total) read by the watcher.
type Sample = (u32, u64, Option<u64>);

#[tokio::test]
async fn progress_restarts_with_each_attempt_and_ends_complete() {
    let file = test_file(16 * MIB);
    let server = Faulty::start([
        Fault::DropAfter(8 * MIB),
        Fault::StatusAfter(503, 4 * MIB, None),
    ])
    .await;

    let progress = Progress::new();
    // What the previous attempt had handed to the client when the next one
    // began, read just before `TrackProgressLayer` starts the new attempt.
    let before_each = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let log = before_each.clone();
    // What each attempt starts from, read just after.
    let after_each = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let log_after = after_each.clone();
    let watch = progress.clone();
    let sample = move |p: &Progress| (p.attempt(), p.sent(), p.total());
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(
            RetryPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(50)),
        ))
        .map_request(move |req: Request<ReplayBody<MmapBody>>| {
            log.lock().unwrap().push(sample(&watch));
            req
        })
        .layer(TrackProgressLayer::new())
        .map_request(move |req: Request<ProgressBody<ReplayBody<MmapBody>>>| {
            let progress = req.extensions().get::<Progress>().unwrap();
            log_after.lock().unwrap().push(sample(progress));
            req
        })
        .service(client::<ProgressBody<ReplayBody<MmapBody>>>(false));

    // SAFETY: the temp file is private to this test.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();
    let mut req = Request::put(server.uri("/upload")).body(body).unwrap();
    req.extensions_mut().insert(progress.clone());

    // A watcher, as a progress bar would be: within one attempt the count
    // only grows and never passes the total.
    let watcher = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut seen: Vec<Sample> = Vec::new();
            while progress.fraction() != Some(1.0) || progress.attempt() < 3 {
                seen.push((progress.attempt(), progress.sent(), progress.total()));
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            seen
        })
    };
    let res = tokio::time::timeout(Duration::from_secs(60), service.oneshot(req))
        .await
        .expect("the upload finished in time")
        .expect("retried to success");
    let got = received(&res);
    assert_eq!(got.sha256, file.sha256);
    assert_eq!(server.seen().len(), 3);

    let total = Some(16 * MIB);
    assert_eq!(
        (progress.attempt(), progress.sent(), progress.total()),
        (3, 16 * MIB, total)
    );
    let before = before_each.lock().unwrap().clone();
    assert_eq!(before.len(), 3);
    assert_eq!(before[0], (0, 0, None), "nothing before the first attempt");
    // The server read 8 MiB, then 4 MiB, before giving up on an attempt, so
    // at least that much had been handed over by then.
    assert_eq!(before[1].0, 1);
    assert!(
        before[1].1 >= 8 * MIB && before[1].1 <= 16 * MIB,
        "{before:?}"
    );
    assert_eq!(before[2].0, 2);
    assert!(
        before[2].1 >= 4 * MIB && before[2].1 <= 16 * MIB,
        "{before:?}"
    );
    // Every attempt starts from zero with the whole size as its total.
    let after = after_each.lock().unwrap().clone();
    assert_eq!(after, vec![(1, 0, total), (2, 0, total), (3, 0, total)]);

    let seen = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("the watcher saw the end")
        .unwrap();
    for pair in seen.windows(2) {
        let ((a1, s1, _), (a2, s2, _)) = (pair[0], pair[1]);
        assert!(a2 >= a1, "attempts only go up: {pair:?}");
        if a1 == a2 {
            assert!(s2 >= s1, "within an attempt the count only grows: {pair:?}");
        }
    }
    assert!(seen.iter().all(|&(_, sent, t)| t.is_none_or(|t| sent <= t)));
}

/// Without a `Progress` in its extensions a request passes through the
/// layer untouched and uncounted (here over HTTP/2).
#[tokio::test]
async fn requests_without_progress_pass_through() {
    let file = test_file(MIB);
    let addr = hashing_server().await;
    let service = ServiceBuilder::new()
        .layer(TrackProgressLayer::new())
        .service(client::<ProgressBody<MmapBody>>(true));
    // SAFETY: the temp file is private to this test.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();
    let req = Request::put(format!("http://{addr}/upload"))
        .body(body)
        .unwrap();
    let res = service.oneshot(req).await.unwrap();
    let got = received(&res);
    assert_eq!(got.sha256, file.sha256);
    assert_eq!(got.content_length, Some(MIB));
}
