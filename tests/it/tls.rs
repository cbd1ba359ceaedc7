//! `MmapBody` uploaded over TLS (rustls with ring, a certificate made at
//! run time) on 127.0.0.1, HTTP/1.1 and HTTP/2 chosen through ALPN, by a
//! hyper-util client, to a server that hashes what it reads. (Not by
//! reqwest: see `mmap_body_devkit::tls` for why it has no TLS here.)

use std::time::Duration;

use mmap_body::MmapBody;
use mmap_body_devkit::files::{test_file, TestFile};
use mmap_body_devkit::server::{received, Received};
use mmap_body_devkit::tls::{hashing_server_tls, pausing_server_tls, tls_client, TestCert};

/// Each upload's bound, handshake included.
const LIMIT: Duration = Duration::from_secs(60);

const LEN: u64 = 64 * 1024 * 1024;

fn open(file: &TestFile) -> MmapBody {
    // SAFETY: the temp file is private to this test and left unchanged
    // while mapped.
    unsafe { MmapBody::open(&file.path) }.expect("open")
}

fn version(http2: bool) -> &'static str {
    if http2 {
        "HTTP/2.0"
    } else {
        "HTTP/1.1"
    }
}

fn assert_whole_file(seen: &Received, file: &TestFile, http2: bool) {
    assert_eq!(seen.version, version(http2), "the protocol asked for");
    assert_eq!(seen.content_length, Some(file.len));
    assert_eq!(seen.transfer_encoding, None);
    assert_eq!(seen.len, file.len);
    assert_eq!(seen.sha256, file.sha256);
}

/// Uploads the file through [`tls_client`] to `https://{host}:{port}/`.
async fn hyper_upload(http2: bool, host: &str) {
    let file = test_file(LEN);
    let (addr, cert) = hashing_server_tls().await;
    let req = http::Request::put(format!("https://{host}:{}/upload", addr.port()))
        .body(open(&file))
        .unwrap();
    let res = tokio::time::timeout(LIMIT, tls_client(http2, &cert).request(req))
        .await
        .expect("the upload ended in time")
        .expect("upload");
    assert_eq!(
        res.version(),
        if http2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        }
    );
    assert_whole_file(&received(&res), &file, http2);
}

#[tokio::test]
async fn hyper_util_uploads_over_tls_with_http1() {
    hyper_upload(false, "127.0.0.1").await;
}

#[tokio::test]
async fn hyper_util_uploads_over_tls_with_http2() {
    hyper_upload(true, "127.0.0.1").await;
}

/// The certificate names `localhost` too; the connector still dials
/// 127.0.0.1.
#[tokio::test]
async fn hyper_util_uploads_over_tls_to_localhost() {
    hyper_upload(true, "localhost").await;
}

/// The client trusts the test certificate it is given and nothing else.
#[tokio::test]
async fn the_client_refuses_a_server_with_another_certificate() {
    let (addr, _) = hashing_server_tls().await;
    let stranger = TestCert::generate();
    for http2 in [false, true] {
        let req = http::Request::put(format!("https://{addr}/upload"))
            .body(String::from("hello"))
            .unwrap();
        let res = tokio::time::timeout(LIMIT, tls_client(http2, &stranger).request(req))
            .await
            .expect("in time");
        assert!(res.is_err(), "http2={http2}: {res:?}");
    }
}

/// The pausing server over TLS pauses, goes on when told, and reads every
/// byte, over both protocols.
#[tokio::test]
async fn the_pausing_server_pauses_and_reads_on_over_tls() {
    let file = test_file(LEN);
    for http2 in [false, true] {
        let (server, cert) = pausing_server_tls(4 << 20).await;
        let req = http::Request::put(format!("https://{}/", server.addr))
            .body(open(&file))
            .unwrap();
        let upload = tokio::spawn(tls_client(http2, &cert).request(req));
        let log = server.change_while_paused(|| {}).await;
        let res = tokio::time::timeout(LIMIT, upload)
            .await
            .expect("the upload ended in time")
            .unwrap()
            .expect("upload");
        assert_eq!(res.status(), 200);
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "http2={http2}: {seen:?}");
        assert!(seen[0].complete, "http2={http2}: {seen:?}");
        assert_eq!(seen[0].read, file.len, "http2={http2}");
    }
}
