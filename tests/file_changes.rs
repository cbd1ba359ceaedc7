//! Files changed under a body while it is sent: truncated or modified
//! mid-upload, over HTTP/1.1 and HTTP/2, with and without the retry stack,
//! in a process with the SIGBUS guard (`mmap_body::guard`) installed
//! explicitly. (`safe_by_default.rs` has the same without a setup call and
//! after an opt-out; `guard.rs` the handler's manners.)
#![cfg(all(unix, feature = "retry"))]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::Body;
use mmap_body::retry::RetryPolicy;
use mmap_body::{Error, ErrorKind, MmapBody, ReplayBody, ReplayLayer};
use mmap_body_devkit::bodies::poll_now;
use mmap_body_devkit::files::{change, test_file, Change};
use mmap_body_devkit::server::{client, pausing_server, Upload};
use mmap_body_devkit::BoxError;
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

const MIB: u64 = 1024 * 1024;

fn open(path: &std::path::Path) -> MmapBody {
    mmap_body::guard::install().expect("install the SIGBUS guard");
    // The guard's case: no read lease, as where the kernel gives none (a
    // lease makes a truncation wait for the held frames' copy instead:
    // `file_body.rs`).
    mmap_body::FileBody::disable_leases();
    // SAFETY: the temp file is private to this test; the changes made to it
    // while mapped are the point of the test, made with the guard installed
    // or in a child process expected to die.
    unsafe { MmapBody::open(path) }.unwrap()
}

/// A user-space copy of a frame whose pages the file lost reads zeros, the
/// process lives, and the body then fails instead of going on.
#[test]
fn a_read_past_the_new_end_is_zeros_and_an_error() {
    let file = test_file(8 * MIB);
    let original = std::fs::read(&file.path).unwrap();
    let mut body = open(&file.path).chunk_size(MIB as usize);
    let first = poll_now(&mut body).unwrap().unwrap().into_data().unwrap();
    let second = poll_now(&mut body).unwrap().unwrap().into_data().unwrap();
    change(&file.path, Change::Truncate);
    // What h2's framing or a TLS stack does: copy the frame's bytes.
    assert_eq!(&first.to_vec()[..], &original[..MIB as usize]);
    let copied = second.to_vec();
    assert!(
        copied.iter().all(|&b| b == 0),
        "pages past the end read as zeros"
    );
    drop((first, second));
    let err = poll_now(&mut body).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated);
    assert!(err.to_string().contains("SIGBUS guard"), "{err}");
    assert!(poll_now(&mut body).is_none());
    // A retry of the poisoned mapping fails too, before sending anything.
    let mut retry = body.clone();
    let err = poll_now(&mut retry).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated);
}

/// The last byte yields (waking its task at once) while the frames it gave
/// out are still being dropped, as a transport a frame behind drops them,
/// and goes once they all are, without detaching anything.
#[test]
fn the_last_byte_yields_while_frames_are_being_dropped() {
    let file = test_file(3 * MIB);
    let mut body = open(&file.path).chunk_size(MIB as usize);
    let frames: Vec<Bytes> = (0..3)
        .map(|_| poll_now(&mut body).unwrap().unwrap().into_data().unwrap())
        .collect();
    assert_eq!(body.size_hint().exact(), Some(1));
    let woken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    struct Flag(Arc<std::sync::atomic::AtomicBool>);
    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let waker = std::task::Waker::from(Arc::new(Flag(woken.clone())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut pinned = std::pin::Pin::new(&mut body);
    let mut frames = frames.into_iter();
    assert!(pinned.as_mut().poll_frame(&mut cx).is_pending());
    assert!(woken.swap(false, std::sync::atomic::Ordering::SeqCst));
    drop(frames.next());
    // One fewer held: still being dropped, so it yields again.
    assert!(pinned.as_mut().poll_frame(&mut cx).is_pending());
    assert!(woken.load(std::sync::atomic::Ordering::SeqCst));
    drop(frames);
    let last = match pinned.as_mut().poll_frame(&mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap(),
        other => panic!("expected the last byte, got {other:?}"),
    };
    assert_eq!(last.len(), 1);
    assert!(body.is_end_stream());
}

/// The upload: 8 MiB frames, so that when the server stops reading (after
/// 2 MiB; its HTTP/2 stream window is 8 MiB) h2 still holds most of the
/// second frame, waiting for window. h2 does not poll the body again until
/// it has sent that frame, and it copies the start of every `DATA` frame
/// out of the mapping in user space: without the guard, a truncation now
/// kills the process.
const LEN: u64 = 33 * MIB;
const FRAME: usize = 8 * MIB as usize;
const PAUSE_AT: u64 = 2 * MIB;

/// Uploads a file of [`LEN`] bytes, changes it once the server has read
/// 2 MiB, and returns the client's outcome and what the server got.
async fn upload_and_change(
    http2: bool,
    how: Change,
    stack: bool,
) -> (Result<u16, BoxError>, Vec<Upload>) {
    let file = test_file(LEN);
    let server = pausing_server(PAUSE_AT).await;
    let addr = server.addr;
    let body = open(&file.path).chunk_size(FRAME);
    let uri = format!("http://{addr}/upload");
    let upload = tokio::spawn(async move {
        let req = Request::put(uri).body(body).unwrap();
        if stack {
            let service = ServiceBuilder::new()
                .layer(ReplayLayer::new(64 * 1024))
                .layer(RetryLayer::new(
                    RetryPolicy::default()
                        .backoff(Duration::from_millis(10), Duration::from_millis(40)),
                ))
                .service(client::<ReplayBody<MmapBody>>(http2));
            service.oneshot(req).await.map(|r| r.status().as_u16())
        } else {
            client::<MmapBody>(http2)
                .request(req)
                .await
                .map(|r| r.status().as_u16())
                .map_err(BoxError::from)
        }
    });
    let log = server.change_while_paused(|| change(&file.path, how)).await;
    let outcome = tokio::time::timeout(Duration::from_secs(30), upload)
        .await
        .expect("the upload ended in time")
        .unwrap();
    // Give the server's handler time to record how its body ended.
    for _ in 0..100 {
        if log.lock().unwrap().iter().any(|u| u.ended) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = log.lock().unwrap().clone();
    (outcome, seen)
}

fn assert_never_complete(seen: &[Upload], case: &str) {
    for upload in seen {
        assert!(
            !upload.complete || upload.read < LEN,
            "{case}: the server accepted a complete body: {upload:?}"
        );
    }
}

/// HTTP/2 copies frames in user space: without the guard a truncation
/// kills the process. With it, the upload fails and the server never gets
/// a complete body.
#[tokio::test]
async fn truncated_mid_upload_fails_over_http1_and_http2() {
    for http2 in [false, true] {
        let case = format!("http2={http2}");
        let (outcome, seen) = upload_and_change(http2, Change::Truncate, false).await;
        let err = outcome.expect_err("a truncated upload must fail");
        eprintln!("{case}: {err}");
        assert_never_complete(&seen, &case);
    }
}

/// Through `ReplayLayer` + `RetryLayer`: the caller gets the crate's error
/// (`Truncated` / `Modified`) over both protocols, and the request is not
/// retried: the server sees one request.
#[tokio::test]
async fn changed_mid_upload_through_the_retry_stack_is_reported_and_not_retried() {
    for how in [Change::Truncate, Change::Touch] {
        for http2 in [false, true] {
            let case = format!("{how:?}, http2={http2}");
            let (outcome, seen) = upload_and_change(http2, how, true).await;
            let err = outcome.expect_err("a changed upload must fail");
            let ours = Error::find_in(&*err).unwrap_or_else(|| panic!("{case}: {err:?}"));
            let want = match how {
                Change::Truncate => ErrorKind::Truncated,
                Change::Touch => ErrorKind::Modified,
            };
            // Over HTTP/1.1 the kernel may refuse the truncated pages
            // (EFAULT) before the body sees the change; then the crate's
            // error is about the connection, and the retry policy still
            // must not replay the changed file.
            if http2 || matches!(how, Change::Touch) {
                assert_eq!(ours.kind(), want, "{case}: {err}");
            }
            assert_eq!(seen.len(), 1, "{case}: retried: {seen:?}");
            assert_never_complete(&seen, &case);
        }
    }
}
