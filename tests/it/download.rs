//! Downloads that survive a dropped connection (issue #33): a hyper-util
//! client with `ResumeDownloadLayer` fetching files through a relay on
//! 127.0.0.1 that cuts or stalls connections at chosen bytes
//! (`devkit::relay`), from this crate's `serve::respond` and tower-http's
//! `ServeFile` (which ignores `If-Range`: a changed file is caught by its
//! `ETag` on the `206`). `hostile` has scripted servers that answer the
//! range request wrongly; `save` the `.part` file across "kills".
//! nginx and aiohttp are in `interop::download`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use mmap_body::download::{ResumeDownload, ResumeDownloadLayer};
use mmap_body::{ErrorKind, MmapBody};
use mmap_body_devkit::files::{sha256, test_file};
use mmap_body_devkit::harness::chain;
use mmap_body_devkit::relay::{Cut, Relay};
use mmap_body_devkit::server::{client, serve, serve_axum};
use mmap_body_devkit::BoxError;
use tower::{Layer, ServiceExt};

mod hostile;
mod save;

pub(crate) const MIB: u64 = 1024 * 1024;

/// Every download's bound.
pub(crate) const LIMIT: Duration = Duration::from_secs(60);

pub(crate) type Plain = Client<HttpConnector, Empty<Bytes>>;

/// The layer as the tests use it: quick backoff, a 2 s stall timeout.
pub(crate) fn layer() -> ResumeDownloadLayer {
    ResumeDownloadLayer::new()
        .backoff(Duration::from_millis(1), Duration::from_millis(20))
        .stall_timeout(Some(Duration::from_secs(2)))
}

pub(crate) fn downloader(layer: ResumeDownloadLayer) -> ResumeDownload<Plain> {
    layer.layer(client(false))
}

/// This crate's server: the file at `path`, opened at each request (so a
/// file replaced by a rename is served as the new one).
pub(crate) async fn own_server(path: PathBuf) -> SocketAddr {
    serve(move |req: Request<hyper::body::Incoming>| {
        let path = path.clone();
        async move {
            // SAFETY: the tests replace the file by renaming a new one over
            // it, never changing the mapped one.
            let body = unsafe { MmapBody::open(&path) }.expect("open the served file");
            Ok::<_, Infallible>(mmap_body::serve::respond(req.method(), req.headers(), body))
        }
    })
    .await
}

/// tower-http's `ServeFile` for the file at `path`, behind axum.
pub(crate) async fn serve_file(path: PathBuf) -> SocketAddr {
    let app = axum::Router::new().route_service("/f", tower_http::services::ServeFile::new(path));
    serve_axum(app).await
}

/// Replaces the file at `path` by a new one (a rename: the old inode stays
/// whole for whoever has it open) of `len` other bytes, modified 10 s
/// later, so that every server's `ETag` changes. Returns its bytes.
pub(crate) fn replace(path: &Path, len: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len as usize];
    mmap_body_devkit::files::pattern(0xdead_beef, &mut bytes);
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, &bytes).unwrap();
    let file = std::fs::File::options().write(true).open(&tmp).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(10))
        .unwrap();
    drop(file);
    std::fs::rename(&tmp, path).unwrap();
    bytes
}

/// What a download handed out, and how it ended.
pub(crate) struct Fetched {
    pub(crate) status: StatusCode,
    pub(crate) bytes: Vec<u8>,
    pub(crate) end: Result<(), BoxError>,
    pub(crate) resumed_at: Vec<u64>,
    /// The first answer's `ETag`.
    pub(crate) etag: Option<String>,
}

impl Fetched {
    /// The kind of the crate's error the body ended with.
    pub(crate) fn kind(&self) -> Option<ErrorKind> {
        let err = self.end.as_ref().err()?;
        mmap_body::Error::find_in(&**err).map(|e| e.kind())
    }
}

/// GETs `uri` through `service` (with `headers`), reading the body to its
/// end or error; `after_first` runs once the first frame arrived.
pub(crate) async fn fetch<S>(
    service: S,
    uri: &str,
    headers: &[(&str, &str)],
    after_first: impl FnOnce(),
) -> Fetched
where
    S: tower::Service<
        Request<Empty<Bytes>>,
        Response = Response<mmap_body::download::DownloadBody<hyper::body::Incoming>>,
    >,
    S::Error: std::fmt::Debug,
{
    let mut request = Request::get(uri).body(Empty::new()).unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            value.parse().expect("a header value"),
        );
    }
    tokio::time::timeout(LIMIT, async move {
        let response = service.oneshot(request).await.expect("a response");
        let (parts, mut body) = response.into_parts();
        let (mut bytes, mut end, mut after_first) = (Vec::new(), Ok(()), Some(after_first));
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        bytes.extend_from_slice(&data);
                    }
                    if let Some(f) = after_first.take() {
                        f();
                    }
                }
                Err(err) => {
                    end = Err(err);
                    break;
                }
            }
        }
        Fetched {
            status: parts.status,
            bytes,
            end,
            resumed_at: body.resumed_at().to_vec(),
            etag: parts
                .headers
                .get(http::header::ETAG)
                .map(|v| v.to_str().expect("an ASCII ETag").to_owned()),
        }
    })
    .await
    .expect("the download ended within its bound")
}

/// Three cuts (at 5, 6 and 7 MiB of three connections) in a 24 MiB
/// download: whole and equal, resumed three times, and the relay passed
/// the file once (plus heads), not again from zero.
async fn three_cuts(server: SocketAddr, path: &str, expected: &str, len: u64) {
    let relay = Relay::start(server, [5 * MIB, 6 * MIB, 7 * MIB].map(Cut::After)).await;
    let got = fetch(downloader(layer()), &relay.uri(path), &[], || {}).await;
    assert!(
        got.end.is_ok(),
        "{}",
        chain(&**got.end.as_ref().unwrap_err())
    );
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.bytes.len() as u64, len);
    assert_eq!(sha256(&got.bytes), expected, "whole and equal");
    assert_eq!(got.resumed_at.len(), 3, "{:?}", got.resumed_at);
    assert!(
        got.resumed_at.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        got.resumed_at
    );
    assert_eq!(relay.connections(), 4);
    let wire = relay.bytes_to_clients();
    assert!(
        wire >= len && wire < len + 64 * 1024,
        "{wire} bytes crossed the relay for {len}"
    );
}

#[tokio::test]
async fn three_cuts_from_serve_respond() {
    let file = test_file(24 * MIB);
    let server = own_server(file.path.clone()).await;
    three_cuts(server, "/f", &file.sha256, file.len).await;
}

#[tokio::test]
async fn three_cuts_from_tower_http_serve_file() {
    let file = test_file(24 * MIB);
    let server = serve_file(file.path.clone()).await;
    three_cuts(server, "/f", &file.sha256, file.len).await;
}

/// The same over HTTP/2 (prior knowledge): the cut takes the connection,
/// the resume opens another.
#[tokio::test]
async fn three_cuts_over_http2() {
    let file = test_file(24 * MIB);
    let server = own_server(file.path.clone()).await;
    let relay = Relay::start(server, [5 * MIB, 6 * MIB, 7 * MIB].map(Cut::After)).await;
    let service = layer().layer(client::<Empty<Bytes>>(true));
    let got = fetch(service, &relay.uri("/f"), &[], || {}).await;
    assert!(
        got.end.is_ok(),
        "{}",
        chain(&**got.end.as_ref().unwrap_err())
    );
    assert_eq!(sha256(&got.bytes), file.sha256);
    assert_eq!(got.resumed_at.len(), 3);
    assert_eq!(relay.connections(), 4);
}

/// Without a cut the layer passes the body through: no range request.
#[tokio::test]
async fn no_cut_no_resume() {
    let file = test_file(4 * MIB);
    let server = own_server(file.path.clone()).await;
    let relay = Relay::start(server, []).await;
    let got = fetch(downloader(layer()), &relay.uri("/f"), &[], || {}).await;
    assert!(got.end.is_ok());
    assert_eq!(sha256(&got.bytes), file.sha256);
    assert!(got.resumed_at.is_empty());
    assert_eq!(relay.connections(), 1);
}

/// The file replaced between the first frame and the cut: the resume is
/// refused (`Modified`), and every byte handed out is the old file's.
async fn replaced_before_the_resume(server: SocketAddr, path: &Path) {
    let old = std::fs::read(path).unwrap();
    let relay = Relay::start(server, [Cut::After(3 * MIB)]).await;
    let len = old.len() as u64;
    let got = fetch(downloader(layer()), &relay.uri("/f"), &[], || {
        replace(path, len);
    })
    .await;
    assert_eq!(got.kind(), Some(ErrorKind::Modified), "{:?}", got.end.err());
    assert_eq!(got.resumed_at.len(), 1);
    assert!(got.bytes.len() < old.len());
    assert!(
        old.starts_with(&got.bytes),
        "only bytes of the first version"
    );
}

#[tokio::test]
async fn a_file_replaced_before_the_resume_is_modified_serve_respond() {
    let file = test_file(8 * MIB);
    let server = own_server(file.path.clone()).await;
    replaced_before_the_resume(server, &file.path).await;
}

#[tokio::test]
async fn a_file_replaced_before_the_resume_is_modified_serve_file() {
    let file = test_file(8 * MIB);
    let server = serve_file(file.path.clone()).await;
    replaced_before_the_resume(server, &file.path).await;
}

/// A connection that goes silent after 3 MiB: the stall timeout counts it
/// as a drop and the download goes on.
#[tokio::test]
async fn a_stall_is_resumed() {
    let file = test_file(8 * MIB);
    let server = own_server(file.path.clone()).await;
    let relay = Relay::start(server, [Cut::StallAfter(3 * MIB)]).await;
    let layer = layer().stall_timeout(Some(Duration::from_millis(300)));
    let started = tokio::time::Instant::now();
    let got = fetch(downloader(layer), &relay.uri("/f"), &[], || {}).await;
    assert!(
        got.end.is_ok(),
        "{}",
        chain(&**got.end.as_ref().unwrap_err())
    );
    assert_eq!(sha256(&got.bytes), file.sha256);
    assert_eq!(got.resumed_at.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The same stall without a stall timeout would hang; with resumes off it
/// is an error, not a hang.
#[tokio::test]
async fn a_stall_without_resumes_is_an_error() {
    let file = test_file(8 * MIB);
    let server = own_server(file.path.clone()).await;
    let relay = Relay::start(server, [Cut::StallAfter(3 * MIB)]).await;
    let layer = layer()
        .stall_timeout(Some(Duration::from_millis(300)))
        .max_resumes(0);
    let got = fetch(downloader(layer), &relay.uri("/f"), &[], || {}).await;
    assert_eq!(got.kind(), Some(ErrorKind::Io), "{:?}", got.end.err());
    assert!(got.bytes.len() as u64 <= 3 * MIB);
    assert_eq!(relay.connections(), 1);
}

/// A range of the caller's own (`bytes=1048576-`), cut: resumed within
/// that range, the answer a `206` throughout.
#[tokio::test]
async fn a_range_of_the_callers_own_is_resumed_within_it() {
    let file = test_file(8 * MIB);
    let all = std::fs::read(&file.path).unwrap();
    let server = own_server(file.path.clone()).await;
    let relay = Relay::start(server, [Cut::After(2 * MIB)]).await;
    let range = format!("bytes={}-{}", MIB, 6 * MIB - 1);
    let got = fetch(
        downloader(layer()),
        &relay.uri("/f"),
        &[("range", &range)],
        || {},
    )
    .await;
    assert!(
        got.end.is_ok(),
        "{}",
        chain(&**got.end.as_ref().unwrap_err())
    );
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(got.bytes, &all[MIB as usize..6 * MIB as usize]);
    assert_eq!(got.resumed_at.len(), 1);
    assert!(got.resumed_at[0] > MIB && got.resumed_at[0] < 3 * MIB);
}

/// A `HEAD`, a `404` and a `POST` pass through the layer untouched.
#[tokio::test]
async fn what_is_not_a_download_passes_through() {
    let file = test_file(MIB);
    let server = own_server(file.path.clone()).await;
    let uri = format!("http://{server}/f");
    let service = downloader(layer());
    let head = Request::head(&uri).body(Empty::new()).unwrap();
    let res = service.clone().oneshot(head).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.body().is_resumable());
    assert!(res
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .is_empty());
    let post = Request::builder()
        .method(Method::POST)
        .uri(&uri)
        .body(Empty::new())
        .unwrap();
    let res = service.oneshot(post).await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(!res.body().is_resumable());
}
