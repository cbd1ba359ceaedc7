//! An `MmapBody` uploaded with reqwest 0.13 over rustls (ring, a
//! certificate made at run time) on 127.0.0.1, HTTP/1.1 and HTTP/2 chosen
//! through ALPN, through `reqwest::Body::wrap` and through `ReplayLayer` +
//! `RetryLayer` + `ReqwestService`, to a server that hashes what it reads.
//!
//! The provider: no process-wide one. Every client is
//! `reqwest_tls_client`, built with `tls_backend_preconfigured` and the ring
//! `ClientConfig` of `TestCert::client_config` (see the crate docs); each
//! test checks that no default provider got installed on the way.

use std::time::Duration;

use mmap_body::reqwest::ReqwestService;
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayLayer};
use mmap_body_devkit::files::{test_file, TestFile};
use mmap_body_devkit::server::{received, Received};
use mmap_body_devkit::tls::{hashing_server_tls, TestCert};
use mmap_body_interop_reqwest_tls::{process_provider_installed, reqwest_tls_client};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

/// Each upload's bound, handshake included.
const LIMIT: Duration = Duration::from_secs(60);

const LEN: u64 = 64 * 1024 * 1024;

fn open(file: &TestFile) -> MmapBody {
    // SAFETY: the temp file is private to this test and left unchanged
    // while mapped.
    unsafe { MmapBody::open(&file.path) }.expect("open")
}

fn version(http2: bool) -> http::Version {
    if http2 {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    }
}

fn assert_whole_file(seen: &Received, file: &TestFile, http2: bool) {
    let asked = if http2 { "HTTP/2.0" } else { "HTTP/1.1" };
    assert_eq!(seen.version, asked, "the protocol asked for");
    assert_eq!(seen.content_length, Some(file.len));
    assert_eq!(seen.transfer_encoding, None);
    assert_eq!(seen.len, file.len);
    assert_eq!(seen.sha256, file.sha256);
}

/// Uploads the file with `reqwest_tls_client`, its body through
/// `reqwest::Body::wrap` (the body's own length, pages given back).
async fn wrapped_upload(http2: bool) {
    let file = test_file(LEN);
    let (addr, cert) = hashing_server_tls().await;
    let send = reqwest_tls_client(http2, &cert)
        .put(format!("https://{addr}/upload"))
        .body(reqwest::Body::wrap(open(&file)))
        .send();
    let res = tokio::time::timeout(LIMIT, send)
        .await
        .expect("the upload ended in time")
        .expect("upload");
    assert_eq!(res.version(), version(http2));
    assert_whole_file(&received(&http::Response::from(res)), &file, http2);
    assert!(!process_provider_installed());
}

/// Uploads the file through `ReplayLayer` + `RetryLayer(RetryPolicy)` +
/// `ReqwestService` on `reqwest_tls_client`, to `https://{host}:{port}/`.
async fn stack_upload(http2: bool, host: &str) {
    let file = test_file(LEN);
    let (addr, cert) = hashing_server_tls().await;
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(RetryPolicy::default()))
        .service(ReqwestService::new(reqwest_tls_client(http2, &cert)));
    let req = http::Request::put(format!("https://{host}:{}/upload", addr.port()))
        .body(open(&file))
        .unwrap();
    let res = tokio::time::timeout(LIMIT, service.oneshot(req))
        .await
        .expect("the upload ended in time")
        .expect("upload");
    assert_eq!(res.version(), version(http2));
    assert_whole_file(&received(&res), &file, http2);
    assert!(!process_provider_installed());
}

#[tokio::test]
async fn body_wrap_uploads_over_tls_with_http1() {
    wrapped_upload(false).await;
}

#[tokio::test]
async fn body_wrap_uploads_over_tls_with_http2() {
    wrapped_upload(true).await;
}

#[tokio::test]
async fn the_stack_uploads_over_tls_with_http1() {
    stack_upload(false, "127.0.0.1").await;
}

#[tokio::test]
async fn the_stack_uploads_over_tls_with_http2() {
    stack_upload(true, "127.0.0.1").await;
}

/// The certificate names `localhost` too (which resolves to 127.0.0.1).
#[tokio::test]
async fn the_stack_uploads_over_tls_to_localhost() {
    stack_upload(true, "localhost").await;
}

/// The client trusts the certificate in the config it was handed and
/// nothing else: that config is the one reqwest uses.
#[tokio::test]
async fn a_client_refuses_a_server_with_another_certificate() {
    let (addr, _) = hashing_server_tls().await;
    let stranger = TestCert::generate();
    for http2 in [false, true] {
        let res = tokio::time::timeout(
            LIMIT,
            reqwest_tls_client(http2, &stranger)
                .put(format!("https://{addr}/upload"))
                .body("hello")
                .send(),
        )
        .await
        .expect("in time");
        let err = res.expect_err("a certificate nobody trusts");
        assert!(err.is_connect(), "http2={http2}: {err:?}");
    }
}

/// Why this crate is a workspace of its own: in this build a reqwest
/// client left to choose its own TLS config panics, as no process-wide
/// provider is installed. (Were it ever to stop, the crate docs and
/// mmap-body's `devkit/src/tls.rs` would need another look.)
#[test]
fn a_client_without_a_config_of_its_own_panics_here() {
    let built = std::panic::catch_unwind(|| reqwest::Client::builder().build());
    let panic = built.expect_err("no provider, no config: reqwest panics");
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(message.contains("crypto provider"), "{message}");
    assert!(!process_provider_installed());
}
