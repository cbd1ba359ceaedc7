//! Heap use of a `multipart::Form` upload with a file part, through
//! `ReplayLayer` + `RetryLayer`, does not depend on the file's size: the
//! file part is sent as its mapping's frames and the form is cloned, not
//! recorded (issue #34).
//!
//! This binary installs a counting global allocator; only the client's
//! thread is counted (the server runs on other threads).
#![cfg(all(feature = "multipart", feature = "retry"))]

use http::header::CONTENT_TYPE;
use http_body_util::BodyExt;
use mmap_body::multipart::{Form, FormBody, Part};
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayBody, ReplayLayer};
use mmap_body_devkit::alloc::{track_heap, CountingAlloc, HeapUse};
use mmap_body_devkit::files::{hex, test_file};
use mmap_body_devkit::server::{client, hashing_server, received};
use sha2::{Digest, Sha256};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The SHA-256 of what `body` sends (read outside the tracked thread).
fn sha256_of(body: FormBody) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let mut body = body;
        let mut sha = Sha256::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                sha.update(&data);
            }
        }
        hex(&sha.finalize())
    })
}

/// Uploads a form of a text field and a `len`-byte file part from a fresh
/// client on a tracked thread, and returns the client's heap use.
fn client_heap(addr: std::net::SocketAddr, len: u64, http2: bool) -> HeapUse {
    let file = test_file(len);
    // SAFETY: the temp file is private to this test.
    let mapped = unsafe { MmapBody::open(&file.path) }.unwrap();
    let form = Form::new()
        .text("key", "uploads/big.bin")
        .part("file", Part::mmap(mapped).file_name("big.bin"));
    let content_type = form.content_type();
    let body = form.into_body();
    let (form_len, expected) = (body.len(), sha256_of(body.clone()));
    let (seen, heap) = track_heap(async move {
        // A 64 KiB cap: a recorded form would keep (and lose) its bytes.
        let service = ServiceBuilder::new()
            .layer(ReplayLayer::new(64 * 1024))
            .layer(RetryLayer::new(RetryPolicy::default()))
            .service(client::<ReplayBody<FormBody>>(http2));
        let request = http::Request::put(format!("http://{addr}/"))
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        received(&response)
    });
    assert_eq!(seen.content_length, Some(form_len));
    assert_eq!(seen.sha256, expected);
    heap
}

#[test]
fn form_upload_heap_is_independent_of_file_size() {
    let server = tokio::runtime::Runtime::new().unwrap();
    let addr = server.block_on(hashing_server());
    for http2 in [false, true] {
        // Warm up once so one-time allocations (thread-locals, DNS) are equal.
        client_heap(addr, 1 << 20, http2);
        let small = client_heap(addr, 64 << 20, http2);
        let large = client_heap(addr, 512 << 20, http2);
        eprintln!("http2={http2}: 64 MiB {small:?}, 512 MiB {large:?}");
        let diff = large.peak.abs_diff(small.peak);
        assert!(
            diff <= 8 * 1024,
            "peak heap grew with the file: {small:?} vs {large:?}"
        );
        assert!(
            large.peak < 128 * 1024,
            "peak heap {} >= 128 KiB",
            large.peak
        );
        if !http2 {
            // A copy or a recording would allocate per frame: 8x the data
            // must not mean anywhere near 8x the allocations.
            assert!(
                large.allocations < small.allocations + 1024,
                "allocations grew with size: {small:?} vs {large:?}"
            );
        }
    }
}
