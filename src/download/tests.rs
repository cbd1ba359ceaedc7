//! `DownloadBody` without a network: a scripted [`Refetch`] answering
//! the range requests, bodies that end early or fail after some frames.
//! `poll_frame`, `size_hint`, `is_end_stream` and the progress figures are
//! checked together, as http-body-util checks its bodies.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};

use super::plan::{BoxFuture, Plan, Refetch};
use super::{DownloadBody, ResumeDownloadLayer};
use crate::error::BoxError;

type Frames = Vec<Result<Frame<Bytes>, BoxError>>;
type TestBody = BoxBody<Bytes, BoxError>;

const DATA: &[u8] = b"0123456789abcdefghij";

fn body(frames: Frames) -> TestBody {
    BoxBody::new(StreamBody::new(futures_util::stream::iter(frames)))
}

/// `frames`, then nothing, ever: a silent connection.
fn stalling(frames: Frames) -> TestBody {
    let frames = futures_util::stream::iter(frames).chain(futures_util::stream::pending());
    BoxBody::new(StreamBody::new(frames))
}

fn data(range: std::ops::Range<usize>) -> Result<Frame<Bytes>, BoxError> {
    Ok(Frame::data(Bytes::from_static(&DATA[range])))
}

/// Answers each range request with the next response; logs the `Range`.
#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Response<TestBody>>>>,
    asked: Arc<Mutex<Vec<(String, String)>>>,
}

impl Refetch<TestBody> for Script {
    fn refetch(
        &mut self,
        range: HeaderValue,
        if_range: HeaderValue,
    ) -> BoxFuture<Result<Response<TestBody>, BoxError>> {
        self.asked.lock().unwrap().push((
            range.to_str().unwrap().to_owned(),
            if_range.to_str().unwrap().to_owned(),
        ));
        let next = self.answers.lock().unwrap().pop_front();
        Box::pin(async move { next.ok_or_else(|| BoxError::from("no more answers")) })
    }
}

fn partial(from: usize, frames: Frames) -> Response<TestBody> {
    Response::builder()
        .status(206)
        .header("etag", "\"v1\"")
        .header("content-range", format!("bytes {from}-19/20"))
        .body(body(frames))
        .unwrap()
}

/// The body of a `200` (`etag`, 20 bytes) with `frames`, resumed from
/// `script`, for a request carrying `progress`.
fn download(
    etag: &str,
    first: TestBody,
    script: &Script,
    layer: ResumeDownloadLayer,
    progress: Option<&crate::progress::Progress>,
) -> DownloadBody<TestBody> {
    let mut request = Request::get("http://h/f").body(()).unwrap();
    if let Some(progress) = progress {
        request.extensions_mut().insert(progress.clone());
    }
    let plan = Plan::new(Box::new(script.clone()), layer, &request);
    let response = Response::builder()
        .header("etag", etag)
        .header("content-length", "20")
        .body(first)
        .unwrap();
    let (parts, b) = response.into_parts();
    plan.body(&parts, b)
}

fn layer() -> ResumeDownloadLayer {
    ResumeDownloadLayer::new().backoff(Duration::from_millis(1), Duration::from_millis(1))
}

async fn collect(body: &mut DownloadBody<TestBody>) -> (Vec<u8>, Option<BoxError>) {
    let mut got = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => got.extend_from_slice(&frame.into_data().unwrap()),
            Err(err) => return (got, Some(err)),
        }
    }
    (got, None)
}

#[tokio::test]
async fn a_body_that_ends_short_is_resumed_and_counted_from_the_offset() {
    let script = Script::default();
    script
        .answers
        .lock()
        .unwrap()
        .push_back(partial(8, vec![data(8..14), data(14..20)]));
    let progress = crate::progress::Progress::new();
    // 8 of 20 bytes, then the end: no error, but short.
    let mut body = download(
        "\"v1\"",
        body(vec![data(0..4), data(4..8)]),
        &script,
        layer(),
        Some(&progress),
    );
    assert!(body.is_resumable());
    assert_eq!(body.size_hint().exact(), Some(20));
    assert_eq!((progress.attempt(), progress.total()), (1, Some(20)));

    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.data_ref().unwrap().len(), 4);
    assert_eq!(body.size_hint().exact(), Some(16));
    assert_eq!(progress.sent(), 4);

    let (rest, err) = collect(&mut body).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(rest, &DATA[4..]);
    assert_eq!(body.resumed_at(), [8]);
    assert_eq!(body.delivered(), 20);
    assert!(body.is_end_stream());
    assert_eq!(body.size_hint().exact(), Some(0));
    assert_eq!(
        script.asked.lock().unwrap().as_slice(),
        [("bytes=8-".to_owned(), "\"v1\"".to_owned())]
    );
    // The resumed answer is attempt 2, counted from byte 8 of 20.
    assert_eq!(
        (progress.attempt(), progress.sent(), progress.total()),
        (2, 20, Some(20))
    );
    assert_eq!(progress.sent_in_all(), 20, "no byte counted twice");
}

#[tokio::test]
async fn an_error_resumes_from_the_last_byte_handed_out() {
    let script = Script::default();
    script
        .answers
        .lock()
        .unwrap()
        .push_back(partial(5, vec![data(5..20)]));
    let mut body = download(
        "\"v1\"",
        body(vec![data(0..5), Err("reset".into())]),
        &script,
        layer(),
        None,
    );
    let (got, err) = collect(&mut body).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, DATA);
    assert_eq!(body.resumed_at(), [5]);
}

/// With resumes off, or a weak `ETag`, the inner body's own error comes
/// through unchanged, as without the layer.
#[tokio::test]
async fn without_resumes_the_drop_is_the_bodys_own_error() {
    for (etag, layer) in [("\"v1\"", layer().max_resumes(0)), ("W/\"v1\"", layer())] {
        let script = Script::default();
        let mut body = download(
            etag,
            body(vec![data(0..5), Err("reset by peer".into())]),
            &script,
            layer,
            None,
        );
        assert!(!body.is_resumable());
        let (got, err) = collect(&mut body).await;
        assert_eq!(got, &DATA[..5]);
        assert_eq!(err.unwrap().to_string(), "reset by peer", "{etag}");
        assert!(script.asked.lock().unwrap().is_empty());
        assert!(body.frame().await.is_none(), "ended after its error");
    }
}

/// A body short of its `Content-Length` that cannot be resumed ends with
/// an error, never looking complete.
#[tokio::test]
async fn a_short_body_that_cannot_resume_is_an_error() {
    let script = Script::default();
    let mut first = download("W/\"v1\"", body(vec![data(0..5)]), &script, layer(), None);
    assert!(!first.is_resumable());
    let (got, err) = collect(&mut first).await;
    assert_eq!(got, &DATA[..5]);
    let err = err.expect("an error, not a complete body");
    assert!(err.to_string().contains("after 5 of its 20 bytes"), "{err}");
    assert!(script.asked.lock().unwrap().is_empty());

    let layer = layer().max_resumes(1);
    let mut body = download("\"v1\"", body(vec![data(0..5)]), &script, layer, None);
    let (got, err) = collect(&mut body).await;
    assert_eq!(got, &DATA[..5]);
    let err = err.expect("an error, not a complete body");
    assert!(err.to_string().contains("1 resumes"), "{err}");
    assert_eq!(
        crate::Error::find_in(&*err).map(|e| e.kind()),
        Some(crate::ErrorKind::Io)
    );
}

/// A silent first answer is resumed once the stall timeout passes, and
/// not before.
#[tokio::test]
async fn a_stalled_body_is_resumed_after_the_timeout() {
    let script = Script::default();
    script
        .answers
        .lock()
        .unwrap()
        .push_back(partial(5, vec![data(5..20)]));
    let layer = layer().stall_timeout(Some(Duration::from_millis(200)));
    let mut body = download("\"v1\"", stalling(vec![data(0..5)]), &script, layer, None);
    let started = tokio::time::Instant::now();
    let (got, err) = collect(&mut body).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, DATA);
    assert_eq!(body.resumed_at(), [5]);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

/// Without a stall timeout, a silent body waits (no resume), as asked.
#[tokio::test]
async fn without_a_stall_timeout_a_silent_body_waits() {
    let script = Script::default();
    let layer = layer().stall_timeout(None);
    let mut body = download("\"v1\"", stalling(vec![data(0..5)]), &script, layer, None);
    assert_eq!(
        body.frame()
            .await
            .unwrap()
            .unwrap()
            .data_ref()
            .unwrap()
            .len(),
        5
    );
    let next = tokio::time::timeout(Duration::from_millis(500), body.frame()).await;
    assert!(next.is_err(), "still waiting");
    assert!(script.asked.lock().unwrap().is_empty());
}

#[tokio::test]
async fn not_a_success_passes_through() {
    let script = Script::default();
    let request = Request::get("http://h/f").body(()).unwrap();
    let plan = Plan::new(Box::new(script.clone()), layer(), &request);
    let response = Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header("etag", "\"v1\"")
        .header("content-length", "20")
        .body(body(vec![data(0..5), Err("reset".into())]))
        .unwrap();
    let (parts, b) = response.into_parts();
    let mut body = plan.body(&parts, b);
    assert!(!body.is_resumable());
    let (_, err) = collect(&mut body).await;
    assert_eq!(err.unwrap().to_string(), "reset");
}

#[test]
fn bodies_are_send_and_unpin() {
    fn check<T: Send + Unpin>() {}
    check::<DownloadBody<TestBody>>();
    check::<DownloadBody<http_body_util::Full<Bytes>>>();
}
