//! Heap use of an `MmapBody` upload does not depend on the file's size.
//!
//! This binary installs a counting global allocator; only the client's
//! thread is counted (the server runs on other threads).

use mmap_body::MmapBody;
use mmap_body_devkit::alloc::{track_heap, CountingAlloc, HeapUse};
use mmap_body_devkit::files::test_file;
use mmap_body_devkit::server::{client, hashing_server, received};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Uploads `len` bytes from a fresh client on a tracked thread and returns
/// the client's heap use.
fn client_heap(addr: std::net::SocketAddr, len: u64, http2: bool) -> HeapUse {
    let file = test_file(len);
    let (seen, heap) = track_heap(async {
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::open(&file.path) }.unwrap();
        let req = http::Request::put(format!("http://{addr}/"))
            .body(body)
            .unwrap();
        let res = client(http2).request(req).await.unwrap();
        received(&res)
    });
    assert_eq!(seen.sha256, file.sha256);
    assert_eq!(seen.content_length, Some(len));
    heap
}

#[test]
fn client_heap_is_independent_of_file_size() {
    let server = tokio::runtime::Runtime::new().unwrap();
    let addr = server.block_on(hashing_server());
    for http2 in [false, true] {
        // Warm up once so one-time allocations (thread-locals, DNS) are equal.
        client_heap(addr, 1 << 20, http2);
        let small = client_heap(addr, 8 << 20, http2);
        let large = client_heap(addr, 256 << 20, http2);
        eprintln!("http2={http2}: 8 MiB {small:?}, 256 MiB {large:?}");
        let diff = large.peak.abs_diff(small.peak);
        assert!(
            diff <= 8 * 1024,
            "peak heap grew with the file: {small:?} vs {large:?}"
        );
        assert!(large.peak < 64 * 1024, "peak heap {} >= 64 KiB", large.peak);
        if !http2 {
            // A copy would show as allocations proportional to the bytes;
            // 32x the data must not mean anywhere near 32x the allocations.
            assert!(
                large.allocations < small.allocations + 1024,
                "allocations grew with size: {small:?} vs {large:?}"
            );
        }
    }
}
