//! `multipart::Form` uploads (issue #34) through the real stack, parsed by
//! parsers no one here wrote: axum's `Multipart` extractor and multer, over
//! HTTP/1.1 and HTTP/2 (prior knowledge) from a hyper-util client; and
//! retried, behind `ReplayLayer` + `RetryLayer(RetryPolicy)`, from
//! hyper-util and from `ReqwestService`, by a server that answers 503 once
//! after reading half of the file part: the second attempt arrives whole,
//! although the form is far larger than the layer's replay cap (it was
//! cloned, not recorded).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use mmap_body::multipart::{Form, FormBody, Part};
use mmap_body::{FileBody, MmapBody};
use mmap_body_devkit::files::{hex, test_file};
use mmap_body_devkit::server::{client, serve, serve_axum};
use sha2::{Digest, Sha256};

/// What a parser saw of one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) name: String,
    pub(crate) file_name: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) len: u64,
    pub(crate) sha256: String,
}

impl Seen {
    fn new(name: &str, file_name: Option<&str>, content_type: Option<&str>, bytes: &[u8]) -> Seen {
        Seen {
            name: name.to_owned(),
            file_name: file_name.map(str::to_owned),
            content_type: content_type.map(str::to_owned),
            len: bytes.len() as u64,
            sha256: hex(&Sha256::digest(bytes)),
        }
    }
}

/// What a server saw of one request: its `Content-Length`, the body bytes
/// its parser took, and the parts, if it read them all.
#[derive(Debug, Clone, Default)]
struct Request {
    content_length: Option<u64>,
    read: u64,
    parts: Option<Vec<Seen>>,
}

/// A server's log, and whether it answers the next request 503 after half
/// of its file part.
#[derive(Default)]
struct Log {
    requests: Mutex<Vec<Request>>,
    fail_half_way: AtomicBool,
    /// A file to cut to a length before answering 503.
    truncate_on_503: Mutex<Option<(std::path::PathBuf, u64)>>,
}

impl Log {
    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one part through `chunk` (axum's and multer's fields have the same
/// shape): its length and SHA-256, or `None` if the server stopped in a
/// file part once it had read `stop_at` bytes of it (then answering 503).
macro_rules! read_part {
    ($field:expr, $read:expr, $stop_at:expr) => {{
        let mut field = $field;
        let name = field.name().unwrap_or("").to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(|m| m.to_string());
        let (mut len, mut sha) = (0u64, Sha256::new());
        let mut stopped = false;
        while let Some(chunk) = field.chunk().await.expect("a well-formed part") {
            len += chunk.len() as u64;
            *$read += chunk.len() as u64;
            sha.update(&chunk);
            if file_name.is_some() && $stop_at.is_some_and(|at: u64| len >= at) {
                stopped = true;
                break;
            }
        }
        (!stopped).then(|| Seen {
            name,
            file_name,
            content_type,
            len,
            sha256: hex(&sha.finalize()),
        })
    }};
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Logs `request`, and answers 200 with the parts it read, or 503.
fn answer(log: &Log, request: Request) -> (StatusCode, String) {
    let status = match request.parts {
        Some(_) => StatusCode::OK,
        None => StatusCode::SERVICE_UNAVAILABLE,
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        if let Some((path, len)) = log.truncate_on_503.lock().unwrap().take() {
            mmap_body_devkit::files::truncate(&path, len);
        }
    }
    log.requests.lock().unwrap().push(request);
    (status, String::new())
}

/// An axum server parsing forms with its `Multipart` extractor at `/form`.
async fn axum_server() -> (String, Arc<Log>) {
    async fn handler(
        State(log): State<Arc<Log>>,
        headers: HeaderMap,
        mut form: Multipart,
    ) -> (StatusCode, String) {
        let stop_at = half_way(&log, &headers);
        let mut request = Request {
            content_length: content_length(&headers),
            ..Request::default()
        };
        let mut parts = Vec::new();
        while let Some(field) = form.next_field().await.expect("a well-formed form") {
            match read_part!(field, &mut request.read, stop_at) {
                Some(seen) => parts.push(seen),
                None => return answer(&log, request),
            }
        }
        request.parts = Some(parts);
        answer(&log, request)
    }
    let log = Arc::new(Log::default());
    let app = axum::Router::new()
        .route("/form", axum::routing::post(handler))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(log.clone());
    (format!("http://{}/form", serve_axum(app).await), log)
}

/// Where the server stops reading and answers 503, if it is to: half of
/// the form's length, counted in the file part.
fn half_way(log: &Log, headers: &HeaderMap) -> Option<u64> {
    let armed = log.fail_half_way.swap(false, Ordering::SeqCst);
    armed.then(|| content_length(headers).unwrap_or(0) / 2)
}

/// A hyper server parsing forms with multer.
async fn multer_server() -> (String, Arc<Log>) {
    let log = Arc::new(Log::default());
    let addr = serve({
        let log = log.clone();
        move |req: http::Request<hyper::body::Incoming>| {
            let log = log.clone();
            async move {
                let headers = req.headers().clone();
                let boundary = headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| multer::parse_boundary(v).ok())
                    .expect("multipart/form-data with a boundary");
                let stop_at = half_way(&log, &headers);
                let mut request = Request {
                    content_length: content_length(&headers),
                    ..Request::default()
                };
                let stream = http_body_util::BodyDataStream::new(req.into_body());
                let mut form = multer::Multipart::new(stream, boundary);
                let mut parts = Vec::new();
                let mut stopped = false;
                while let Some(field) = form.next_field().await.expect("a well-formed form") {
                    match read_part!(field, &mut request.read, stop_at) {
                        Some(seen) => parts.push(seen),
                        None => {
                            stopped = true;
                            break;
                        }
                    }
                }
                if !stopped {
                    request.parts = Some(parts);
                }
                let (status, text) = answer(&log, request);
                let mut response =
                    http::Response::new(http_body_util::Full::new(Bytes::from(text)));
                *response.status_mut() = status;
                Ok::<_, std::convert::Infallible>(response)
            }
        }
    })
    .await;
    (format!("http://{addr}/form"), log)
}

/// A form whose names and file names need every escape, and what a parser
/// must see of it (names as sent: `"` as `%22`, CR as `%0D`, LF as `%0A`).
/// `quote_blind`: the parser looks for `filename=` inside quoted values
/// too, as multer 3 does (and so axum's `Multipart`).
pub(crate) fn tricky_form(path: &std::path::Path, quote_blind: bool) -> (Form, Vec<Seen>) {
    let file_bytes = std::fs::read(path).unwrap();
    // SAFETY: the temp file is private to the test.
    let file = unsafe { MmapBody::open(path) }.unwrap();
    let pdf: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let form = Form::new()
        .text("title", "holiday")
        .text(r#"say "hi""#, "quoted")
        .text("a\r\nContent-Type: text/html", "crlf")
        // Unescaped, this name would give the part a file name.
        .text(r#"x"; filename="evil.sh"#, "injected")
        .part(
            "résumé",
            Part::bytes(pdf.clone())
                .file_name("résumé 履歴書.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        )
        .part(
            "video",
            Part::mmap(file)
                .file_name("holiday \"2026\"\n.mp4")
                .mime_str("video/mp4")
                .unwrap(),
        )
        .part(
            "doc",
            Part::file(FileBody::open(path).unwrap()).file_name("doc.bin"),
        )
        .part("empty", Part::bytes(Bytes::new()));
    let expected = vec![
        Seen::new("title", None, None, b"holiday"),
        Seen::new("say %22hi%22", None, None, b"quoted"),
        Seen::new("a%0D%0AContent-Type: text/html", None, None, b"crlf"),
        Seen::new(
            "x%22; filename=%22evil.sh",
            // The escaping keeps the name inside its quotes; a parser that
            // ignores quotes still finds `filename=` in it (see the
            // module docs' hazards).
            quote_blind.then_some("%22evil.sh\""),
            None,
            b"injected",
        ),
        Seen::new(
            "résumé",
            Some("résumé 履歴書.pdf"),
            Some("application/pdf"),
            &pdf,
        ),
        Seen::new(
            "video",
            Some("holiday %222026%22%0A.mp4"),
            Some("video/mp4"),
            &file_bytes,
        ),
        Seen::new(
            "doc",
            Some("doc.bin"),
            Some("application/octet-stream"),
            &file_bytes,
        ),
        Seen::new("empty", None, None, b""),
    ];
    (form, expected)
}

#[tokio::test]
async fn axum_and_multer_read_every_part_over_http1_and_http2() {
    let file = test_file((3 << 20) + 17);
    let (form, expected) = tricky_form(&file.path, true);
    let content_type = form.content_type();
    let body = form.into_body();
    for (server, (url, log)) in [
        ("axum", axum_server().await),
        ("multer", multer_server().await),
    ] {
        for http2 in [false, true] {
            let request = http::Request::post(&url)
                .header(CONTENT_TYPE, content_type.clone())
                .body(body.clone())
                .unwrap();
            let response = client::<FormBody>(http2).request(request).await.unwrap();
            assert_eq!(response.status(), 200, "{server} http2={http2}");
            let seen = log.requests().pop().expect("a request");
            assert_eq!(
                seen.content_length,
                Some(body.len()),
                "{server} http2={http2}"
            );
            assert_eq!(
                seen.parts.as_ref(),
                Some(&expected),
                "{server} http2={http2}"
            );
        }
    }
}

#[cfg(feature = "retry")]
mod retried {
    use std::time::Duration;

    use mmap_body::retry::RetryPolicy;
    use mmap_body::{ReplayBody, ReplayLayer};
    use tower::retry::RetryLayer;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;

    /// Far below the form's size: a form that were recorded could not be
    /// sent again after the first attempt read half of it.
    const CAP: usize = 64 * 1024;

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
            .retry_non_idempotent(true)
            .backoff(Duration::from_millis(10), Duration::from_millis(50))
    }

    /// The form of one text field and a file part of the file at `path`
    /// (an `MmapBody`, or with `file_body` a `FileBody`), and what a
    /// parser must see of it.
    fn big_form(
        path: &std::path::Path,
        sha256: &str,
        len: u64,
        file_body: bool,
    ) -> (Form, Vec<Seen>) {
        let part = if file_body {
            Part::file(FileBody::open(path).unwrap())
        } else {
            // SAFETY: the temp file is private to this test.
            Part::mmap(unsafe { MmapBody::open(path) }.unwrap())
        };
        let form = Form::new()
            .text("key", "uploads/big.bin")
            .part("file", part.file_name("big.bin"));
        let file = Seen {
            name: "file".into(),
            file_name: Some("big.bin".into()),
            content_type: Some("application/octet-stream".into()),
            len,
            sha256: sha256.into(),
        };
        (
            form,
            vec![Seen::new("key", None, None, b"uploads/big.bin"), file],
        )
    }

    /// Two requests: the first stopped half-way and answered 503, the
    /// second read whole; both announced the form's exact length.
    fn assert_retried_whole(log: &Log, len: u64, expected: &[Seen]) {
        let requests = log.requests();
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert!(requests.iter().all(|r| r.content_length == Some(len)));
        let (first, second) = (&requests[0], &requests[1]);
        assert!(first.parts.is_none());
        assert!(
            first.read >= len / 2 - len / 64 && first.read < len,
            "{first:?}"
        );
        assert_eq!(second.parts.as_deref(), Some(expected));
    }

    /// A 1 GiB file part (256 MiB over HTTP/2), answered 503 half-way,
    /// arrives whole on the retry through ReplayLayer + RetryLayer on
    /// hyper-util, parsed by axum and by multer.
    #[tokio::test]
    async fn a_form_answered_503_half_way_is_sent_again_whole() {
        for (http2, len) in [(false, 1u64 << 30), (true, 256 << 20)] {
            let file = test_file(len);
            for (server, (url, log)) in [
                ("axum", axum_server().await),
                ("multer", multer_server().await),
            ] {
                let (form, expected) = big_form(&file.path, &file.sha256, len, false);
                let content_type = form.content_type();
                let body = form.into_body();
                let form_len = body.len();
                let service = ServiceBuilder::new()
                    .layer(ReplayLayer::new(CAP))
                    .layer(RetryLayer::new(policy()))
                    .service(client::<ReplayBody<FormBody>>(http2));
                log.fail_half_way.store(true, Ordering::SeqCst);
                let request = http::Request::post(&url)
                    .header(CONTENT_TYPE, content_type)
                    .body(body)
                    .unwrap();
                let response = service.oneshot(request).await.unwrap();
                assert_eq!(response.status(), 200, "{server} http2={http2}");
                assert_retried_whole(&log, form_len, &expected);
            }
        }
    }

    /// The same through `ReqwestService`, the file part a `FileBody`:
    /// reqwest sends each attempt's clone of the form with its
    /// `Content-Length`.
    #[cfg(feature = "reqwest")]
    #[tokio::test]
    async fn reqwest_service_sends_a_form_again_after_a_503() {
        use mmap_body::reqwest::{RequestBuilderExt, ReqwestService};

        let len = 256u64 << 20;
        let file = test_file(len);
        let (url, log) = axum_server().await;
        let (form, expected) = big_form(&file.path, &file.sha256, len, true);
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let stack = ServiceBuilder::new()
            .layer(ReplayLayer::new(CAP))
            .layer(RetryLayer::new(policy()))
            .service(ReqwestService::new(client.clone()));
        log.fail_half_way.store(true, Ordering::SeqCst);
        let content_type = form.content_type();
        let body = form.into_body();
        let form_len = body.len();
        let response = client
            .post(&url)
            .header(CONTENT_TYPE, content_type)
            .send_through(&stack, body)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_retried_whole(&log, form_len, &expected);
    }

    /// A file part truncated between attempts: the form is not sent
    /// again (it would no longer be the form declared) and the server sees
    /// one request.
    ///
    /// The server truncates the file, then answers 503 while the client
    /// is still sending. Which the client sees first is a race of two
    /// processes' threads: the file's break (the body fails mid-send, and
    /// the caller gets the file's error, which `ReplayLayer` keeps), or
    /// the 503 (the policy finds the body can no longer be replayed and,
    /// as `RetryPolicy` says, hands back that response unchanged). Both
    /// are checked, and neither sends the form twice.
    #[tokio::test]
    async fn a_form_whose_file_changed_is_not_sent_again() {
        let len = 16u64 << 20;
        let file = test_file(len);
        let (url, log) = axum_server().await;
        let (form, _) = big_form(&file.path, &file.sha256, len, false);
        let content_type = form.content_type();
        let body = form.into_body();
        let kept = body.clone();
        let service = ServiceBuilder::new()
            .layer(ReplayLayer::new(CAP))
            .layer(RetryLayer::new(policy()))
            .service(client::<ReplayBody<FormBody>>(false));
        log.fail_half_way.store(true, Ordering::SeqCst);
        *log.truncate_on_503.lock().unwrap() = Some((file.path.clone(), len / 2));
        let request = http::Request::post(&url)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .unwrap();
        let outcome = service.oneshot(request).await;
        assert_eq!(log.requests().len(), 1);
        match outcome {
            // The break came first: the file's error, not a connection
            // error.
            Err(err) => {
                let ours = mmap_body::Error::find_in(&*err).expect("the crate's error");
                assert_eq!(ours.kind(), mmap_body::ErrorKind::Truncated);
            }
            // The 503 came first: handed back, not retried, because the
            // form's file no longer is the one declared.
            Ok(res) => {
                assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
                let changed = kept.verify().expect_err("the file was truncated");
                assert_eq!(changed.kind(), mmap_body::ErrorKind::Truncated);
            }
        }
    }
}
