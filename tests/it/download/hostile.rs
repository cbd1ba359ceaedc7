//! Scripted servers whose first answer drops after 256 KiB of 1 MiB and
//! whose answer to the range request is wrong in one way each: the
//! layer must end the body (`Modified`, `Protocol`, `Io`) without a byte
//! of the wrong answer, or wait as told and go on.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use mmap_body::ErrorKind;
use mmap_body_devkit::server::serve;
use mmap_body_devkit::BoxError;

use super::{downloader, fetch, layer, MIB};

const LEN: usize = MIB as usize;
const CUT: usize = 256 * 1024;
const ETAG: &str = "\"v1\"";

fn data() -> Bytes {
    let mut bytes = vec![0u8; LEN];
    mmap_body_devkit::files::pattern(7, &mut bytes);
    Bytes::from(bytes)
}

/// `bytes`, then (once hyper has written them) an error: hyper drops the
/// connection mid-body.
fn dropping(bytes: Bytes) -> BoxBody<Bytes, BoxError> {
    let frames = stream::iter([Some(bytes), None]).then(|item| async move {
        match item {
            Some(bytes) => Ok(Frame::data(bytes)),
            None => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Err(BoxError::from("cut by the test"))
            }
        }
    });
    BoxBody::new(StreamBody::new(frames))
}

fn full(bytes: Bytes) -> BoxBody<Bytes, BoxError> {
    BoxBody::new(Full::new(bytes).map_err(|never| match never {}))
}

/// The first answer: `200` with `etag`, the length, and a body that drops
/// after [`CUT`].
fn first(etag: &str) -> Response<BoxBody<Bytes, BoxError>> {
    Response::builder()
        .header("etag", etag)
        .header("content-length", LEN)
        .body(dropping(data().slice(..CUT)))
        .unwrap()
}

/// A `206` for bytes `from..` of [`data`] saying `content_range`.
fn partial(from: usize, content_range: &str, etag: &str) -> Response<BoxBody<Bytes, BoxError>> {
    Response::builder()
        .status(206)
        .header("etag", etag)
        .header("content-range", content_range)
        .body(full(data().slice(from..)))
        .unwrap()
}

/// What the server saw of each request: its `Range` and `If-Range`.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// A server answering request `n` with `script(n)` (the first with
/// [`first`]`(ETAG)` unless the script says otherwise).
async fn scripted(
    script: impl Fn(usize) -> Response<BoxBody<Bytes, BoxError>> + Send + Sync + 'static,
) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let script = Arc::new(script);
    let addr = serve(move |req: Request<hyper::body::Incoming>| {
        let (log, script) = (log.clone(), script.clone());
        async move {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            let n = {
                let mut log = log.lock().unwrap();
                log.push((header("range"), header("if-range")));
                log.len() - 1
            };
            Ok::<_, std::convert::Infallible>(script(n))
        }
    })
    .await;
    (format!("http://{addr}/f"), seen)
}

async fn run(
    layer: mmap_body::download::ResumeDownloadLayer,
    script: impl Fn(usize) -> Response<BoxBody<Bytes, BoxError>> + Send + Sync + 'static,
) -> (super::Fetched, Seen) {
    let (uri, seen) = scripted(script).await;
    let got = fetch(downloader(layer), &uri, &[], || {}).await;
    // Never a byte that is not the first version's, at its place.
    assert!(data().starts_with(&got.bytes), "bytes of another answer");
    (got, seen)
}

#[tokio::test]
async fn a_resume_asks_for_the_rest_with_if_range() {
    let from = format!("bytes {CUT}-{}/{LEN}", LEN - 1);
    let (got, seen) = run(layer(), move |n| match n {
        0 => first(ETAG),
        _ => partial(CUT, &from, ETAG),
    })
    .await;
    assert!(got.end.is_ok(), "{:?}", got.end.err());
    assert_eq!(got.bytes.len(), LEN);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (None, None),
            (Some(format!("bytes={CUT}-")), Some(ETAG.to_owned()))
        ]
    );
}

#[tokio::test]
async fn a_200_to_the_range_request_is_modified() {
    let (got, seen) = run(layer(), |n| match n {
        0 => first(ETAG),
        _ => Response::builder()
            .header("etag", ETAG)
            .body(full(data()))
            .unwrap(),
    })
    .await;
    assert_eq!(got.kind(), Some(ErrorKind::Modified), "{:?}", got.end.err());
    assert_eq!(got.bytes.len(), CUT, "none of the 200's bytes");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_wrong_content_range_is_modified() {
    // Starting a byte early, a byte late, or of another complete length.
    for (from, range) in [
        (CUT - 1, format!("bytes {}-{}/{LEN}", CUT - 1, LEN - 1)),
        (CUT + 1, format!("bytes {}-{}/{LEN}", CUT + 1, LEN - 1)),
        (CUT, format!("bytes {CUT}-{}/{}", LEN - 1, LEN + 1)),
        (CUT, format!("bytes {CUT}-{}/*", LEN - 1)),
    ] {
        let r = range.clone();
        let (got, _) = run(layer(), move |n| match n {
            0 => first(ETAG),
            _ => partial(from, &r, ETAG),
        })
        .await;
        assert_eq!(got.kind(), Some(ErrorKind::Modified), "{range}");
        assert_eq!(got.bytes.len(), CUT, "{range}");
    }
}

#[tokio::test]
async fn another_etag_on_the_206_is_modified() {
    let from = format!("bytes {CUT}-{}/{LEN}", LEN - 1);
    for etag in ["\"v2\"", "W/\"v1\""] {
        let f = from.clone();
        let (got, _) = run(layer(), move |n| match n {
            0 => first(ETAG),
            _ => partial(CUT, &f, etag),
        })
        .await;
        assert_eq!(got.kind(), Some(ErrorKind::Modified), "{etag}");
        assert_eq!(got.bytes.len(), CUT);
    }
}

/// A weak `ETag` is no validator: the drop is an error, as without the
/// layer, and no range request is made.
#[tokio::test]
async fn a_weak_etag_is_not_resumed() {
    let (got, seen) = run(layer(), |_| first("W/\"v1\"")).await;
    assert!(got.end.is_err());
    assert_eq!(got.bytes.len(), CUT);
    assert_eq!(seen.lock().unwrap().len(), 1, "no range request");
}

/// A `503` with `Retry-After: 1` to the range request: waited for, then
/// resumed.
#[tokio::test]
async fn a_503_is_waited_for_as_retry_after_says() {
    let from = format!("bytes {CUT}-{}/{LEN}", LEN - 1);
    let started = tokio::time::Instant::now();
    let (got, seen) = run(layer(), move |n| match n {
        0 => first(ETAG),
        1 => Response::builder()
            .status(503)
            .header("retry-after", "1")
            .body(full(Bytes::new()))
            .unwrap(),
        _ => partial(CUT, &from, ETAG),
    })
    .await;
    assert!(got.end.is_ok(), "{:?}", got.end.err());
    assert_eq!(got.bytes, data());
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(got.resumed_at, [CUT as u64, CUT as u64]);
}

/// A `Retry-After` past `max_retry_after`: an error, not a long wait.
#[tokio::test]
async fn a_retry_after_too_long_ends_the_body() {
    let (got, seen) = run(layer(), |n| match n {
        0 => first(ETAG),
        _ => Response::builder()
            .status(503)
            .header("retry-after", "3600")
            .body(full(Bytes::new()))
            .unwrap(),
    })
    .await;
    assert_eq!(got.kind(), Some(ErrorKind::Io));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// A redirect elsewhere: not followed.
#[tokio::test]
async fn a_redirect_is_not_followed() {
    let (got, seen) = run(layer(), |n| match n {
        0 => first(ETAG),
        _ => Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header("location", "http://127.0.0.2:1/elsewhere")
            .body(full(Bytes::new()))
            .unwrap(),
    })
    .await;
    assert_eq!(got.kind(), Some(ErrorKind::Protocol));
    let err = got.end.unwrap_err().to_string();
    assert!(err.contains("127.0.0.2"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// A server that drops every answer: `max_resumes` range requests, then
/// the error, with the last drop as its source.
#[tokio::test]
async fn resumes_are_bounded() {
    let (got, seen) = run(layer().max_resumes(3), |n| match n {
        0 => first(ETAG),
        _ => {
            // Each answer brings 1 KiB more, then drops.
            let at = CUT + (n - 1) * 1024;
            Response::builder()
                .status(206)
                .header("etag", ETAG)
                .header("content-range", format!("bytes {at}-{}/{LEN}", LEN - 1))
                .header("content-length", LEN - at)
                .body(dropping(data().slice(at..at + 1024)))
                .unwrap()
        }
    })
    .await;
    assert_eq!(got.kind(), Some(ErrorKind::Io));
    assert_eq!(seen.lock().unwrap().len(), 4, "the first and 3 resumes");
    assert_eq!(got.bytes.len(), CUT + 3 * 1024);
    let err = got.end.unwrap_err().to_string();
    assert!(err.contains("3 resumes"), "{err}");
}

/// A `206` sending more than its `Content-Range` (chunked, so hyper does
/// not count): the body ends with an error, the extra bytes never handed
/// out, and it never looks complete.
#[tokio::test]
async fn a_206_longer_than_its_range_is_refused() {
    let range = format!("bytes {CUT}-{}/{LEN}", LEN - 1);
    let (got, _) = run(layer(), move |n| match n {
        0 => first(ETAG),
        _ => {
            let mut more = data().slice(CUT..).to_vec();
            more.extend_from_slice(b"extra");
            let frames: Vec<Result<Frame<Bytes>, BoxError>> =
                vec![Ok(Frame::data(Bytes::from(more)))];
            Response::builder()
                .status(206)
                .header("etag", ETAG)
                .header("content-range", range.clone())
                .body(BoxBody::new(StreamBody::new(stream::iter(frames))))
                .unwrap()
        }
    })
    .await;
    assert_eq!(got.kind(), Some(ErrorKind::Protocol), "{:?}", got.end.err());
    // hyper hands the chunk over in pieces: the ones within the range
    // went out, the one that crosses its end did not.
    assert!(got.bytes.len() < LEN, "{}", got.bytes.len());
}
