//! Bodies the user declared restartable (`ReplayBody::restartable`), and
//! bodies already wrapped in a `ReplayBody`, behind `ReplayLayer` with a
//! small cap + `RetryLayer(RetryPolicy)`: replayed at any size by cloning,
//! never recorded, their `Content-Length` still checked. Over a real hyper
//! server on 127.0.0.1 that answers 503 mid-body, HTTP/1.1 and HTTP/2.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use mmap_body::retry::RetryPolicy;
use mmap_body::{ErrorKind, ReplayBody, ReplayLayer};
use mmap_body_devkit::bodies::Streamed;
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::server::{client, received};
use mmap_body_devkit::BoxError;
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

const KIB: u64 = 1024;

/// A body of the user's own that restarts by cloning: frames of an
/// in-memory buffer, an exact size.
#[derive(Clone)]
struct Chunks {
    data: Bytes,
    at: usize,
}

impl Chunks {
    fn random(len: usize) -> (Chunks, String) {
        let (mut streamed, hash) = Streamed::random(len, len);
        let data = mmap_body_devkit::bodies::poll_now(&mut streamed)
            .and_then(|frame| frame.ok()?.into_data().ok())
            .unwrap_or_default();
        (Chunks { data, at: 0 }, hash)
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let end = (self.at + 16 * 1024).min(self.data.len());
        if self.at == end {
            return Poll::Ready(None);
        }
        let frame = self.data.slice(self.at..end);
        self.at = end;
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.at == self.data.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.data.len() - self.at) as u64)
    }
}

/// `ReplayLayer(64 KiB)` + `RetryLayer(RetryPolicy)` on a hyper-util client.
async fn send<B>(
    http2: bool,
    req: Request<B>,
) -> Result<http::Response<hyper::body::Incoming>, BoxError>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let policy =
        RetryPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(40));
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(policy))
        .service(client::<ReplayBody<B>>(http2));
    tokio::time::timeout(Duration::from_secs(60), service.oneshot(req))
        .await
        .expect("the request finished in time")
}

#[tokio::test]
async fn a_body_declared_restartable_is_retried_past_the_cap() {
    for http2 in [false, true] {
        let (body, hash) = Chunks::random(1024 * 1024);
        // 1 MiB, 16 times the cap; the server answers 503 after 200 KiB.
        let server = Faulty::start([Fault::StatusAfter(503, 200 * KIB, None)]).await;
        let req = Request::put(server.uri("/"))
            .body(ReplayBody::restartable(body))
            .unwrap();
        let res = send(http2, req).await.expect("retried");
        let seen = received(&res);
        assert_eq!(
            (seen.len, seen.sha256),
            (1024 * KIB, hash),
            "http2: {http2}"
        );
        // The exact size still becomes the Content-Length, both times.
        assert_eq!(seen.content_length, Some(1024 * KIB));
        let log = server.seen();
        assert_eq!(log.len(), 2, "http2: {http2}");
        assert!(log
            .iter()
            .all(|s| s.content_length.as_deref() == Some("1048576")));
    }
}

#[tokio::test]
async fn a_body_already_wrapped_is_replayed_by_its_own_recording() {
    for http2 in [false, true] {
        // A streamed body the caller wrapped with a 1 MiB cap of its own:
        // the layer's 64 KiB cap does not apply to it.
        let (body, hash) = Streamed::random(600 * 1024, 16 * 1024);
        let server = Faulty::start([Fault::StatusAfter(503, 200 * KIB, None)]).await;
        let req = Request::put(server.uri("/"))
            .body(ReplayBody::new(body, 1 << 20))
            .unwrap();
        let res = send(http2, req).await.expect("retried");
        let seen = received(&res);
        assert_eq!((seen.len, seen.sha256), (600 * KIB, hash), "http2: {http2}");
        assert_eq!(server.seen().len(), 2, "http2: {http2}");
    }
}

#[tokio::test]
async fn a_wrapped_body_past_its_own_cap_is_not_replayed() {
    // The caller's own cap (64 KiB) is what counts: the 503 comes back.
    let (body, _) = Streamed::random(600 * 1024, 16 * 1024);
    let server = Faulty::start([Fault::StatusAfter(503, 300 * KIB, None)]).await;
    let req = Request::put(server.uri("/"))
        .body(ReplayBody::new(body, 64 * 1024))
        .unwrap();
    let res = send(false, req).await.expect("the 503 itself");
    assert_eq!(res.status(), 503);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_restartable_body_is_still_held_to_its_content_length() {
    let (body, _) = Chunks::random(100 * 1024);
    let server = Faulty::start([]).await;
    let req = Request::put(server.uri("/"))
        .header(http::header::CONTENT_LENGTH, "1000")
        .body(ReplayBody::restartable(body))
        .unwrap();
    let err = send(false, req).await.expect_err("refused");
    let err = mmap_body::Error::find_in(&*err).expect("the crate's error");
    assert_eq!(err.kind(), ErrorKind::ContentLengthMismatch);
    assert!(server.seen().is_empty(), "nothing was sent");
}

/// A `FileBody`, on both of its paths, passes `ReplayLayer(64 KiB)` as
/// cheap to clone: retried whole at 16 times the cap, never recorded.
#[tokio::test]
async fn a_file_body_is_retried_past_the_cap_on_both_paths() {
    use mmap_body::FileBody;
    let file = mmap_body_devkit::files::test_file(1024 * KIB);
    for (http2, pread) in [(false, false), (true, false), (false, true), (true, true)] {
        let _writer = pread.then(|| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file.path)
                .unwrap()
        });
        let body = FileBody::open(&file.path).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(body.is_mapped(), !pread);
        }
        let server = Faulty::start([Fault::StatusAfter(503, 200 * KIB, None)]).await;
        let req = Request::put(server.uri("/")).body(body).unwrap();
        let res = send(http2, req).await.expect("retried");
        let seen = received(&res);
        assert_eq!(
            (seen.len, seen.sha256.as_str()),
            (1024 * KIB, file.sha256.as_str()),
            "http2: {http2}, pread: {pread}"
        );
        assert_eq!(server.seen().len(), 2);
    }
}
