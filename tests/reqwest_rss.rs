//! The sender's peak RSS for a 512 MiB reqwest upload, three ways:
//! `ReqwestService` behind `ReplayLayer` + `RetryLayer` + `TrackProgressLayer`,
//! `reqwest::Body::wrap(body)`, and `reqwest::Body::from(Bytes::from(body))`.
//!
//! One test in its own binary: peak RSS (`VmHWM`) is a property of the
//! process. The counter is reset before each upload by writing `5` to
//! `/proc/self/clear_refs` (Linux >= 4.0), as `resident_memory.rs` does.
#![cfg(all(
    target_os = "linux",
    feature = "reqwest",
    feature = "retry",
    feature = "progress"
))]

use std::time::{Duration, Instant};

use bytes::Bytes;
use mmap_body::progress::{Progress, TrackProgressLayer};
use mmap_body::reqwest::ReqwestService;
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayLayer};
use mmap_body_devkit::files::test_file;
use mmap_body_devkit::rss::{reset_peak_rss, status_kib};
use mmap_body_devkit::server::hashing_server;
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

const MIB: u64 = 1024 * 1024;
const LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy)]
enum Path {
    Service,
    Wrap,
    FromBytes,
}

/// Uploads `body` one way; checks the server got all of it with its
/// `Content-Length`; returns the peak RSS growth in MiB.
async fn peak_rss_growth_mib(
    addr: std::net::SocketAddr,
    client: &reqwest::Client,
    body: MmapBody,
    sha256: &str,
    path: Path,
) -> u64 {
    let len = body.len();
    let url = format!("http://{addr}/upload");
    reset_peak_rss().expect("reset VmHWM");
    let before = status_kib("VmRSS:").expect("VmRSS:");
    let started = Instant::now();
    let headers = match path {
        Path::Service => {
            let service = ServiceBuilder::new()
                .layer(ReplayLayer::new(64 * 1024))
                .layer(RetryLayer::new(RetryPolicy::default()))
                .layer(TrackProgressLayer::new())
                .service(ReqwestService::new(client.clone()));
            let mut request = http::Request::put(&url).body(body).unwrap();
            let progress = Progress::new();
            request.extensions_mut().insert(progress.clone());
            let response = tokio::time::timeout(LIMIT, service.oneshot(request))
                .await
                .expect("in time")
                .expect("uploaded");
            assert_eq!(progress.sent(), len);
            response.headers().clone()
        }
        Path::Wrap | Path::FromBytes => {
            let body = match path {
                Path::Wrap => reqwest::Body::wrap(body),
                _ => reqwest::Body::from(Bytes::from(body)),
            };
            let response = tokio::time::timeout(LIMIT, client.put(&url).body(body).send())
                .await
                .expect("in time")
                .expect("uploaded");
            response.headers().clone()
        }
    };
    let growth = (status_kib("VmHWM:").expect("VmHWM:") - before) / 1024;
    let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(get("x-len"), Some(len.to_string()), "{path:?}");
    assert_eq!(get("x-content-length"), Some(len.to_string()), "{path:?}");
    assert_eq!(get("x-transfer-encoding"), None, "{path:?}");
    assert_eq!(get("x-sha256").as_deref(), Some(sha256), "{path:?}");
    eprintln!(
        "{path:?}: peak RSS growth {growth} MiB, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    growth
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_service_keeps_peak_rss_bounded_for_512_mib() {
    let file = test_file(512 * MIB);
    let addr = hashing_server().await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // SAFETY: the temp file is private to this test.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();

    let service =
        peak_rss_growth_mib(addr, &client, body.clone(), &file.sha256, Path::Service).await;
    let wrap = peak_rss_growth_mib(addr, &client, body.clone(), &file.sha256, Path::Wrap).await;
    let from_bytes =
        peak_rss_growth_mib(addr, &client, body.clone(), &file.sha256, Path::FromBytes).await;
    eprintln!(
        "peak RSS growth for 512 MiB: ReqwestService {service} MiB, Body::wrap {wrap} MiB, \
         Body::from(Bytes) {from_bytes} MiB"
    );
    assert!(service < 64, "ReqwestService: RSS grew by {service} MiB");
    assert!(wrap < 64, "Body::wrap: RSS grew by {wrap} MiB");
    // The measurement sees the difference: a `Bytes` of the whole mapping
    // keeps every page it sent resident.
    assert!(
        from_bytes > 400,
        "Body::from(Bytes): RSS grew by only {from_bytes} MiB"
    );
}
