//! `UploadLayer`: the whole client stack in one call, on a hyper-util
//! client and on reqwest, against a real hyper server on 127.0.0.1 that
//! drops connections and answers 503 on purpose, over HTTP/1.1 and HTTP/2.
//! (Resumed uploads through it: `it::resume`, whose every upload goes
//! through `UploadLayer`.)

use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use mmap_body::progress::Progress;
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, UploadLayer};
use mmap_body_devkit::bodies::Streamed;
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::test_file;
use mmap_body_devkit::server::{client, received};
use tower::{ServiceBuilder, ServiceExt};

const MIB: u64 = 1024 * 1024;

/// A fast policy for tests: waits of 5 to 20 ms.
fn policy() -> RetryPolicy {
    RetryPolicy::default().backoff(Duration::from_millis(5), Duration::from_millis(20))
}

/// No request of this module takes longer, all attempts together.
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_file_upload_survives_a_drop_and_a_503() {
    for http2 in [false, true] {
        let file = test_file(24 * MIB);
        let server = Faulty::start([
            Fault::DropAfter(8 * MIB),
            Fault::StatusAfter(503, 4 * MIB, None),
        ])
        .await;
        let service = ServiceBuilder::new()
            .layer(UploadLayer::new().retry(policy()))
            .service(client(http2));
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::open(&file.path) }.unwrap();
        let mut request = Request::put(server.uri("/upload")).body(body).unwrap();
        let progress = Progress::new();
        request.extensions_mut().insert(progress.clone());
        let res = tokio::time::timeout(LIMIT, service.oneshot(request))
            .await
            .expect("in time")
            .expect("retried");
        let seen = received(&res);
        assert_eq!(
            (seen.sha256, seen.content_length),
            (file.sha256.clone(), Some(24 * MIB))
        );
        assert_eq!(server.seen().len(), 3, "http2 {http2}");
        // Counted per attempt, inside the retries: the third sent it all.
        assert_eq!((progress.attempt(), progress.sent()), (3, 24 * MIB));
        assert!(
            progress.sent_in_all() >= 36 * MIB,
            "{}",
            progress.sent_in_all()
        );
    }
}

#[tokio::test]
async fn a_streamed_body_is_recorded_up_to_the_default_cap() {
    for http2 in [false, true] {
        // 3 MiB streamed, answered 503 after 1 MiB: replayed from the
        // recording (8 MiB by default), no setting needed.
        let (body, hash) = Streamed::random(3 << 20, 64 << 10);
        let server = Faulty::start([Fault::StatusAfter(503, MIB, None)]).await;
        let service = ServiceBuilder::new()
            .layer(UploadLayer::new().retry(policy()))
            .service(client(http2));
        let request = Request::put(server.uri("/upload")).body(body).unwrap();
        let res = tokio::time::timeout(LIMIT, service.oneshot(request))
            .await
            .expect("in time")
            .expect("retried");
        assert_eq!(received(&res).sha256, hash, "http2 {http2}");
        assert_eq!(server.seen().len(), 2);
    }
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn reqwest_gets_the_same_stack() {
    use mmap_body::reqwest::ReqwestService;
    for http2 in [false, true] {
        let file = test_file(16 * MIB);
        let server = Faulty::start([Fault::DropAfter(4 * MIB)]).await;
        let mut builder = reqwest::Client::builder().no_proxy();
        if http2 {
            builder = builder.http2_prior_knowledge();
        }
        let service = ServiceBuilder::new()
            .layer(UploadLayer::new().retry(policy()))
            .service(ReqwestService::new(builder.build().unwrap()));
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::open(&file.path) }.unwrap();
        let request = Request::put(server.uri("/upload")).body(body).unwrap();
        let res = tokio::time::timeout(LIMIT, service.oneshot(request))
            .await
            .expect("in time")
            .expect("retried");
        assert_eq!(res.status(), 200, "http2 {http2}");
        let sha = res.headers()["x-sha256"].to_str().unwrap().to_owned();
        let _ = res.into_body().collect().await;
        assert_eq!(sha, file.sha256);
        let log = server.seen();
        assert_eq!(log.len(), 2);
        assert!(log
            .iter()
            .all(|s| s.content_length.as_deref() == Some("16777216")));
    }
}
