//! No latency for the integrity check on sockets left as they come
//! (`TCP_NODELAY` off on both ends, as hyper-util's `HttpConnector` and
//! `axum::serve` leave them): an `MmapBody` sent as an upload or as a
//! download, over HTTP/1.1 and HTTP/2, takes no longer than the same bytes
//! in a `Full` body on the same connection, where a small last write held
//! by Nagle's algorithm for the peer's delayed ACK would add 40 ms.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use mmap_body::MmapBody;
use mmap_body_devkit::files::test_file;
use mmap_body_devkit::server::{client, hash_request, serve};
use mmap_body_devkit::BoxError;

const KIB: u64 = 1024;

/// Small bodies, each sent as one frame. (Longer ones keep their last
/// byte apart; over HTTP/1.1 it follows full TCP segments and costs
/// nothing, over HTTP/2 a 3 MiB upload still waits for a delayed ACK.)
const SIZES: [u64; 4] = [1, 4 * KIB, 16 * KIB, 64 * KIB];

/// How much slower than `Full` a body may be: a delayed ACK is 40 ms.
const MARGIN: Duration = Duration::from_millis(25);

/// The median time of 9 runs of `run`, after one to warm up.
async fn median<F: std::future::Future<Output = ()>>(mut run: impl FnMut() -> F) -> Duration {
    run().await;
    let mut times = Vec::new();
    for _ in 0..9 {
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), run())
            .await
            .expect("in time");
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// Either the file's body or the same bytes in memory.
enum Either {
    Mmap(MmapBody),
    Full(Full<Bytes>),
}

impl Either {
    fn new(mmap: bool, path: &std::path::Path) -> Either {
        // SAFETY: the temp file is private to the test.
        let body = unsafe { MmapBody::open(path) }.unwrap();
        match mmap {
            true => Either::Mmap(body),
            false => Either::Full(Full::new(Bytes::from(body))),
        }
    }
}

impl Body for Either {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Either::Mmap(body) => std::pin::Pin::new(body).poll_frame(cx).map_err(Into::into),
            Either::Full(body) => std::pin::Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Either::Mmap(body) => body.is_end_stream(),
            Either::Full(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Either::Mmap(body) => body.size_hint(),
            Either::Full(body) => body.size_hint(),
        }
    }
}

/// The cases where the file's body was slower than `Full` by a margin.
fn compare(
    what: &str,
    http2: bool,
    len: u64,
    mmap: Duration,
    full: Duration,
    slow: &mut Vec<String>,
) {
    eprintln!("{what}, http2 {http2}, {len} bytes: MmapBody {mmap:?}, Full {full:?}");
    if mmap > full + MARGIN {
        slow.push(format!(
            "{what} of {len} bytes (http2 {http2}): {mmap:?} against {full:?}"
        ));
    }
}

#[tokio::test]
async fn uploads_wait_for_no_delayed_ack() {
    let addr = serve(|req| async move { Ok(hash_request(req).await) }).await;
    let mut slow = Vec::new();
    for http2 in [false, true] {
        let client = client::<Either>(http2);
        for len in SIZES {
            let file = test_file(len);
            let mut times = [Duration::ZERO; 2];
            for (mmap, time) in [true, false].into_iter().zip(&mut times) {
                *time = median(|| {
                    let req = Request::put(format!("http://{addr}/"))
                        .body(Either::new(mmap, &file.path))
                        .unwrap();
                    let sent = client.request(req);
                    async move {
                        let res = sent.await.expect("answered");
                        assert_eq!(res.status(), 200);
                    }
                })
                .await;
            }
            compare("upload", http2, len, times[0], times[1], &mut slow);
        }
    }
    assert!(slow.is_empty(), "slower than Full: {slow:?}");
}

#[tokio::test]
async fn downloads_wait_for_no_delayed_ack() {
    let mut slow = Vec::new();
    for len in SIZES {
        let file = test_file(len);
        let path = file.path.clone();
        let addr = serve(move |req: Request<hyper::body::Incoming>| {
            let path = path.clone();
            async move {
                let mmap = req.uri().path() == "/mmap";
                let res = mmap_body::serve::respond(
                    &Method::GET,
                    req.headers(),
                    // SAFETY: the temp file is private to the test.
                    unsafe { MmapBody::open(&path) }.unwrap(),
                );
                Ok(res.map(|body| match mmap {
                    true => Either::Mmap(body),
                    false => Either::Full(Full::new(Bytes::from(body))),
                }))
            }
        })
        .await;
        for http2 in [false, true] {
            let client = client::<Empty<Bytes>>(http2);
            let mut times = [Duration::ZERO; 2];
            for (path, time) in ["/mmap", "/full"].into_iter().zip(&mut times) {
                *time = median(|| {
                    let req = Request::get(format!("http://{addr}{path}"))
                        .body(Empty::new())
                        .unwrap();
                    let sent = client.request(req);
                    async move {
                        let body = sent.await.unwrap().collect().await.unwrap().to_bytes();
                        assert_eq!(body.len() as u64, len);
                    }
                })
                .await;
            }
            compare("download", http2, len, times[0], times[1], &mut slow);
        }
    }
    assert!(slow.is_empty(), "slower than Full: {slow:?}");
}
