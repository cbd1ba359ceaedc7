//! The recording's concurrent behaviour, without a network: clones polled
//! in turns with wakers that count (two clones at the front, a replay
//! started during the recording, a clone dropped while it pulls), a cap hit
//! at and inside a frame, trailers, the hand-over from memory to a spill
//! file, and clones on other tasks.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use mmap_body_devkit::bodies::Streamed;
use mmap_body_devkit::files::{sha256, test_file};

use super::ReplayBody;
use crate::sync::lock;
use crate::{Error, ErrorKind, MmapBody};

const MIB: u64 = 1024 * 1024;

/// What a test has fed a [`Fed`] body so far.
#[derive(Default)]
struct Feed {
    frames: VecDeque<Frame<Bytes>>,
    ended: bool,
    /// The waker of the last poll that found nothing.
    waker: Option<Waker>,
    polls: usize,
}

/// A body the test feeds frame by frame through its [`Feeder`]: pending
/// (its poller's waker kept) until the next frame comes. Its size is
/// unknown; it is not cloneable, so `ReplayBody` records it.
struct Fed(Arc<Mutex<Feed>>);

/// The test's end of a [`Fed`] body.
#[derive(Clone)]
struct Feeder(Arc<Mutex<Feed>>);

fn fed() -> (Fed, Feeder) {
    let feed = Arc::new(Mutex::new(Feed::default()));
    (Fed(Arc::clone(&feed)), Feeder(feed))
}

impl Feeder {
    fn push(&self, frame: Frame<Bytes>) {
        let mut feed = lock(&self.0);
        feed.frames.push_back(frame);
        if let Some(waker) = feed.waker.take() {
            waker.wake();
        }
    }

    fn data(&self, data: &'static str) -> &Feeder {
        self.push(Frame::data(Bytes::from_static(data.as_bytes())));
        self
    }

    fn end(&self) {
        let mut feed = lock(&self.0);
        feed.ended = true;
        if let Some(waker) = feed.waker.take() {
            waker.wake();
        }
    }

    /// How often the body was polled.
    fn polls(&self) -> usize {
        lock(&self.0).polls
    }
}

impl Body for Fed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let mut feed = lock(&self.0);
        feed.polls += 1;
        match feed.frames.pop_front() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None if feed.ended => Poll::Ready(None),
            None => {
                feed.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let feed = lock(&self.0);
        feed.ended && feed.frames.is_empty()
    }
}

/// A waker that counts its wake-ups.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Waker, Arc<Count>) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    (Waker::from(Arc::clone(&count)), count)
}

fn woken(count: &Count) -> usize {
    count.0.load(Ordering::SeqCst)
}

/// What one poll gave, as a string: `data:…`, `trailers:…`, `end`,
/// `pending`, or `error:<kind>`.
fn step<B>(body: &mut ReplayBody<B>, waker: &Waker) -> String
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<crate::error::BoxError>,
{
    match Pin::new(body).poll_frame(&mut Context::from_waker(waker)) {
        Poll::Pending => "pending".into(),
        Poll::Ready(None) => "end".into(),
        Poll::Ready(Some(Err(err))) => format!("error:{:?}", err.kind()),
        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
            Ok(data) => format!("data:{}", String::from_utf8_lossy(&data)),
            Err(frame) => format!("trailers:{:?}", frame.into_trailers().ok()),
        },
    }
}

#[test]
fn two_clones_at_the_front_pull_once_and_wake_each_other() {
    let (body, feed) = fed();
    let mut a = ReplayBody::new(body, 1024);
    let mut b = a.clone();
    let (wa, ca) = counting_waker();
    let (wb, cb) = counting_waker();
    assert_eq!(step(&mut a, &wa), "pending");
    assert_eq!(step(&mut b, &wb), "pending");
    // The body holds `b`'s waker only; `a` waits on the recording.
    feed.data("one");
    assert_eq!((woken(&ca), woken(&cb)), (0, 1));
    assert_eq!(step(&mut b, &wb), "data:one");
    assert_eq!(woken(&ca), 1, "the clone that pulled wakes the one waiting");
    let polls = feed.polls();
    assert_eq!(step(&mut a, &wa), "data:one");
    assert_eq!(feed.polls(), polls, "a recorded frame is not pulled again");
    // Now `a` is at the front.
    feed.data("two").end();
    assert_eq!(step(&mut a, &wa), "data:two");
    assert_eq!(step(&mut a, &wa), "end");
    assert_eq!(step(&mut b, &wb), "data:two");
    assert_eq!(step(&mut b, &wb), "end");
    assert!(a.is_end_stream() && b.is_end_stream());
    assert!(a.is_replayable());
}

#[test]
fn a_replay_during_the_recording_catches_up_then_pulls() {
    let (body, feed) = fed();
    let mut first = ReplayBody::new(body, 1024);
    let (waker, _) = counting_waker();
    feed.data("ab").data("cd");
    assert_eq!(step(&mut first, &waker), "data:ab");
    assert_eq!(step(&mut first, &waker), "data:cd");
    assert_eq!(step(&mut first, &waker), "pending");
    // A retry starts while the first attempt is still streaming: it knows
    // the 4 bytes it will replay, and replays them without a pull.
    let mut retry = first.clone();
    assert_eq!(retry.size_hint().lower(), 4);
    let polls = feed.polls();
    assert_eq!(step(&mut retry, &waker), "data:ab");
    assert_eq!(step(&mut retry, &waker), "data:cd");
    assert_eq!(feed.polls(), polls);
    // Caught up: it pulls the rest itself, and the first attempt reads it.
    assert_eq!(step(&mut retry, &waker), "pending");
    feed.data("ef").end();
    assert_eq!(step(&mut retry, &waker), "data:ef");
    assert_eq!(step(&mut first, &waker), "data:ef");
    assert_eq!(step(&mut first, &waker), "end");
    assert_eq!(step(&mut retry, &waker), "end");
    // A late clone knows its whole size.
    assert_eq!(first.clone().size_hint().exact(), Some(6));
}

#[test]
fn dropping_the_clone_that_pulls_wakes_the_others() {
    let (body, _feed) = fed();
    let mut a = ReplayBody::new(body, 1024);
    let mut b = a.clone();
    let (wa, ca) = counting_waker();
    let (wb, _) = counting_waker();
    assert_eq!(step(&mut a, &wa), "pending");
    // `b` pulls last: the body would wake `b` alone.
    assert_eq!(step(&mut b, &wb), "pending");
    drop(b);
    assert_eq!(woken(&ca), 1, "nobody would poll the body again");
}

#[test]
fn a_body_exactly_at_the_cap_stays_replayable() {
    let (body, feed) = fed();
    feed.data("12345").data("67890").end();
    let mut first = ReplayBody::new(body, 10);
    let (waker, _) = counting_waker();
    assert_eq!(step(&mut first, &waker), "data:12345");
    assert_eq!(step(&mut first, &waker), "data:67890");
    assert_eq!(step(&mut first, &waker), "end");
    assert!(first.is_replayable());
    let mut retry = first.clone();
    assert_eq!(step(&mut retry, &waker), "data:12345");
    assert_eq!(step(&mut retry, &waker), "data:67890");
    assert_eq!(step(&mut retry, &waker), "end");
}

#[test]
fn a_cap_hit_inside_a_frame_keeps_the_attempt_whole_and_fails_replays() {
    let (body, feed) = fed();
    feed.data("12345").data("67890").end();
    let mut first = ReplayBody::new(body, 8);
    let mut behind = first.clone();
    let (waker, _) = counting_waker();
    assert_eq!(step(&mut first, &waker), "data:12345");
    assert_eq!(step(&mut behind, &waker), "data:12345");
    assert!(first.is_replayable());
    // The frame that passes the cap goes out whole.
    assert_eq!(step(&mut first, &waker), "data:67890");
    assert!(!first.is_replayable());
    assert_eq!(step(&mut first, &waker), "end");
    // The clone behind needed bytes that are no longer kept.
    assert_eq!(step(&mut behind, &waker), "error:ReplayBufferExceeded");
    assert_eq!(step(&mut behind, &waker), "end");
    let err = first.clone().collect().now_or_never_err();
    assert_eq!(err.kind(), ErrorKind::ReplayBufferExceeded);
    assert!(
        err.to_string().contains("10 bytes were sent but at most 8"),
        "{err}"
    );
}

#[test]
fn trailers_are_replayed_after_the_recorded_frames() {
    let (body, feed) = fed();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    feed.data("ab").data("cd");
    feed.push(Frame::trailers(trailers.clone()));
    feed.end();
    let mut first = ReplayBody::new(body, 1024);
    let (waker, _) = counting_waker();
    let expected = format!("trailers:{:?}", Some(&trailers));
    for body in [&mut first.clone(), &mut first] {
        assert_eq!(step(body, &waker), "data:ab");
        assert_eq!(step(body, &waker), "data:cd");
        assert!(!body.is_end_stream(), "the trailers are still to come");
        assert_eq!(step(body, &waker), expected);
        assert!(body.is_end_stream());
        assert_eq!(step(body, &waker), "end");
    }
    let mut late = first.clone();
    assert_eq!(step(&mut late, &waker), "data:ab");
    assert_eq!(step(&mut late, &waker), "data:cd");
    assert_eq!(step(&mut late, &waker), expected);
}

#[cfg(all(feature = "spill", unix))]
#[tokio::test]
async fn a_replay_hands_over_from_memory_to_the_spill_file() {
    use super::spill::SpillConfig;

    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(SpillConfig {
        max_bytes: Some(1000),
        dir: Some(dir.path().to_owned()),
    });
    let parts: Vec<Bytes> = (0..10u8).map(|i| Bytes::from(vec![b'a' + i; 4])).collect();
    let body = Streamed::new(parts.clone(), None);
    let first = ReplayBody::with_spill(body, 8, Some(config));
    let mut retry = first.clone();
    let whole = tokio::time::timeout(Duration::from_secs(10), first.collect())
        .await
        .expect("in time")
        .unwrap()
        .to_bytes();
    assert_eq!(whole, parts.concat());
    assert!(retry.is_replayable());
    let mut frames = Vec::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(10), retry.frame())
        .await
        .expect("in time")
    {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    assert_eq!(frames.concat(), parts.concat());
    // The first 8 bytes are the frames kept in memory, not copies; the rest
    // is read back from the file.
    assert_eq!(frames[0].as_ptr(), parts[0].as_ptr());
    assert_eq!(frames[1].as_ptr(), parts[1].as_ptr());
    assert!(frames[2..]
        .iter()
        .all(|f| !parts.iter().any(|p| p.as_ptr() == f.as_ptr())));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The error a body that waits for nothing ends with.
trait NowOrNeverErr {
    fn now_or_never_err(self) -> Error;
}

impl<F, T> NowOrNeverErr for F
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    fn now_or_never_err(self) -> Error {
        let mut future = std::pin::pin!(self);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(Err(err)) => err,
            Poll::Ready(Ok(_)) => panic!("no error"),
            Poll::Pending => panic!("pending"),
        }
    }
}

#[tokio::test]
async fn replay_past_the_cap_is_a_clear_error() {
    let (body, _) = Streamed::random(100_000, 10_000);
    let mut first = ReplayBody::new(body, 30_000);
    let retry = first.clone();
    assert!(first.is_replayable());
    let mut sent = 0;
    while let Some(frame) = first.frame().await {
        sent += frame.unwrap().into_data().unwrap().len();
    }
    assert_eq!(sent, 100_000);
    assert!(!first.is_replayable());
    let err = retry.collect().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReplayBufferExceeded);
    assert!(err.to_string().contains("max_replay_bytes"), "{err}");
}

#[tokio::test]
async fn clones_on_other_tasks_read_the_same_bytes() {
    let (body, hash) = Streamed::random(500_000, 7_000);
    let original = ReplayBody::new(body, 1 << 20);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let clone = original.clone();
        tasks.push(tokio::spawn(async move {
            let bytes = clone.collect().await.unwrap().to_bytes();
            sha256(&bytes)
        }));
    }
    let hint = original.clone();
    for task in tasks {
        let hashed = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("in time");
        assert_eq!(hashed.unwrap(), hash);
    }
    // Everything is recorded now: a late clone knows its exact size.
    assert_eq!(hint.size_hint().exact(), Some(500_000));
    let bytes = original.collect().await.unwrap().to_bytes();
    assert_eq!(sha256(&bytes), hash);
}

#[tokio::test]
async fn size_hint_stays_exact_through_a_partial_replay() {
    let file = test_file(10 * MIB);
    // SAFETY: the temp file is private to this test.
    let mmap = unsafe { MmapBody::open(&file.path) }.unwrap();
    let mut body = ReplayBody::new(mmap, 0);
    assert!(body.is_replayable());
    body.frame().await.unwrap().unwrap();
    assert_eq!(body.size_hint().exact(), Some(9 * MIB));
    let retry = body.clone();
    assert_eq!(retry.size_hint().exact(), Some(10 * MIB));
    let bytes = retry.collect().await.unwrap().to_bytes();
    assert_eq!(sha256(&bytes), file.sha256);
}

/// A clone that reaches the point where the original body failed gets the
/// original error's chain, not just its message.
#[tokio::test]
async fn a_failed_original_keeps_its_error_chain_for_every_clone() {
    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(b"some bytes"))),
        Err(std::io::Error::other("disk on fire")),
    ];
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let first = ReplayBody::new(body, 1 << 20);
    let retry = first.clone();
    let err = first.collect().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Body);
    assert!(!retry.is_replayable());
    let err = retry.collect().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Body);
    let mut chain = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = next {
        chain.push(e.to_string());
        next = e.source();
    }
    assert!(chain.iter().any(|e| e == "disk on fire"), "{chain:?}");
}

// ------------------------------------------------------------- resume_from

/// Every data byte of `body`, and its exact size hint before the first poll.
async fn tail<B>(body: ReplayBody<B>) -> (Option<u64>, Bytes)
where
    B: Body<Data = Bytes> + Unpin + 'static,
    B::Error: Into<crate::error::BoxError>,
{
    let hint = body.size_hint().exact();
    let bytes = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("in time")
        .expect("the tail")
        .to_bytes();
    (hint, bytes)
}

#[tokio::test]
async fn resume_from_slices_a_file_body_and_skips_a_full_one() {
    let file = test_file(3 * MIB + 5);
    let whole = std::fs::read(&file.path).unwrap();
    // SAFETY: the test owns the file and nothing changes it.
    let body = ReplayBody::new(unsafe { MmapBody::open(&file.path) }.unwrap(), 0);
    for offset in [0, 1, MIB + 7, 3 * MIB + 5] {
        let (hint, bytes) = tail(body.resume_from(offset).unwrap()).await;
        assert_eq!(hint, Some(3 * MIB + 5 - offset), "{offset}");
        assert!(bytes == whole[offset as usize..], "{offset}");
    }
    let err = body.resume_from(3 * MIB + 6).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfRange);

    let full = ReplayBody::new(
        http_body_util::Full::new(Bytes::from_static(b"0123456789")),
        0,
    );
    let (hint, bytes) = tail(full.resume_from(4).unwrap()).await;
    assert_eq!((hint, &bytes[..]), (Some(6), &b"456789"[..]));
    assert_eq!(
        full.resume_from(11).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
}

#[tokio::test]
async fn resume_from_reads_a_recording_from_inside_a_frame_and_past_it() {
    let parts: Vec<Bytes> = ["abcd", "efgh", "ijkl"]
        .map(|s| Bytes::from_static(s.as_bytes()))
        .to_vec();
    let first = ReplayBody::new(Streamed::new(parts.clone(), None), 64);
    let mut attempt = first.clone();
    // The first attempt took two frames, then broke.
    for part in &parts[..2] {
        let frame = attempt.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&frame, part);
    }
    drop(attempt);
    // Inside a recorded frame: sliced, the same memory.
    let mut resumed = first.resume_from(5).unwrap();
    let frame = resumed.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&frame[..], b"fgh");
    assert_eq!(frame.as_ptr(), parts[1][1..].as_ptr());
    let (_, rest) = tail(resumed).await;
    assert_eq!(&rest[..], b"ijkl");
    // Past what was pulled: the original is pulled, the skipped part kept
    // for other clones but not yielded.
    let fresh = ReplayBody::new(Streamed::new(parts.clone(), None), 64);
    let (_, bytes) = tail(fresh.resume_from(6).unwrap()).await;
    assert_eq!(&bytes[..], b"ghijkl");
    let (_, again) = tail(fresh.clone()).await;
    assert_eq!(&again[..], b"abcdefghijkl");
}

#[cfg(all(feature = "spill", unix))]
#[tokio::test]
async fn resume_from_maps_the_spill_file_from_the_offset() {
    use super::spill::SpillConfig;

    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(SpillConfig {
        max_bytes: Some(1000),
        dir: Some(dir.path().to_owned()),
    });
    let parts: Vec<Bytes> = (0..10u8).map(|i| Bytes::from(vec![b'a' + i; 4])).collect();
    let first = ReplayBody::with_spill(Streamed::new(parts.clone(), None), 8, Some(config));
    let (_, whole) = tail(first.clone()).await;
    assert_eq!(whole, parts.concat());
    // 8 bytes in memory, 32 on disk: resume inside each, and at the end.
    for offset in [3u64, 8, 21, 40] {
        let (hint, bytes) = tail(first.resume_from(offset).unwrap()).await;
        assert_eq!(bytes, whole[offset as usize..], "{offset}");
        assert_eq!(hint, Some(40 - offset), "known once the original ended");
    }
}
