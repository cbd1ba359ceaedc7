//! Sending a large file keeps the sender's resident memory bounded: pages
//! already sent are given back to the kernel.
//!
//! One test per binary: peak RSS (`VmHWM`) is a property of the process.
//! Linux only: it reads `/proc/self/status`, and pages are given back with
//! `MADV_DONTNEED` only on Unix.
#![cfg(all(target_os = "linux", not(mmap_body_portable)))]

use mmap_body::MmapBody;
use mmap_body_devkit::files::test_file;
use mmap_body_devkit::rss::{reset_peak_rss, status_kib};
use mmap_body_devkit::server::{client, hashing_server, received};

async fn upload_peak_rss_growth_mib(addr: std::net::SocketAddr, body: MmapBody) -> u64 {
    let len = body.len();
    reset_peak_rss().expect("reset VmHWM");
    let before = status_kib("VmRSS:").expect("VmRSS:");
    let req = http::Request::put(format!("http://{addr}/"))
        .body(body)
        .unwrap();
    let res = client(false).request(req).await.unwrap();
    assert_eq!(received(&res).len, len);
    status_kib("VmHWM:").expect("VmHWM:").saturating_sub(before) / 1024
}

/// 32 uploads at once of 16 MiB slices of the file at `path` (over
/// HTTP/2: 32 streams of one connection): slices of one mapping, or
/// (`apart`) each of its own mapping, as 32 files would be.
async fn many_at_once_peak_rss_growth_mib(
    addr: std::net::SocketAddr,
    path: &std::path::Path,
    http2: bool,
    apart: bool,
) -> u64 {
    // SAFETY: the temp file is private to this test.
    let open = || unsafe { MmapBody::open(path) }.unwrap();
    let body = open();
    let client = client(http2);
    reset_peak_rss().expect("reset VmHWM");
    let before = status_kib("VmRSS:").expect("VmRSS:");
    let uploads = (0..32u64).map(|i| {
        let whole = if apart { open() } else { body.clone() };
        let slice = whole.slice(i * (16 << 20)..(i + 1) * (16 << 20)).unwrap();
        let req = http::Request::put(format!("http://{addr}/"))
            .body(slice)
            .unwrap();
        let client = client.clone();
        tokio::spawn(async move { received(&client.request(req).await.unwrap()).len })
    });
    for upload in uploads.collect::<Vec<_>>() {
        assert_eq!(upload.await.unwrap(), 16 << 20);
    }
    status_kib("VmHWM:").expect("VmHWM:").saturating_sub(before) / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_rss_stays_bounded_while_sending_512_mib() {
    let file = test_file(512 << 20);
    let addr = hashing_server().await;
    // SAFETY: the temp file is private to this test.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();

    let released = upload_peak_rss_growth_mib(addr, body.clone()).await;
    let many = many_at_once_peak_rss_growth_mib(addr, &file.path, false, false).await;
    let many_h2 = many_at_once_peak_rss_growth_mib(addr, &file.path, true, false).await;
    let apart = many_at_once_peak_rss_growth_mib(addr, &file.path, false, true).await;
    let apart_h2 = many_at_once_peak_rss_growth_mib(addr, &file.path, true, true).await;

    // Frames of a length that is no multiple of a page: 207 MiB stayed
    // resident when each frame gave back its own pages.
    let odd = upload_peak_rss_growth_mib(addr, body.clone().chunk_size(1_000_000)).await;
    let kept = upload_peak_rss_growth_mib(addr, body.clone().release_sent_pages(false)).await;
    eprintln!(
        "peak RSS growth: {released} MiB released, {kept} MiB kept, \
         {many} MiB for 32 slices at once ({many_h2} MiB over one HTTP/2 connection), \
         {apart} MiB for 32 mappings at once ({apart_h2} MiB over HTTP/2), {odd} MiB in 1,000,000-byte frames"
    );
    assert!(released < 64, "RSS grew by {released} MiB");
    assert!(odd < 64, "1,000,000-byte frames: RSS grew by {odd} MiB");
    // Bodies streaming at once send shorter frames; each still gives back
    // all its pages (frames that split the kernel's fault-around windows
    // would map back pages already given back: 300+ MiB here).
    assert!(many < 96, "32 at once: RSS grew by {many} MiB");
    assert!(
        many_h2 < 96,
        "32 at once over HTTP/2: RSS grew by {many_h2} MiB"
    );
    // Each mapping gathers its sent frames and gives them back a batch
    // at a time: at most a batch more each.
    assert!(apart < 96, "32 mappings at once: RSS grew by {apart} MiB");
    assert!(
        apart_h2 < 96,
        "32 mappings at once over HTTP/2: RSS grew by {apart_h2} MiB"
    );
    // The measurement can see the difference: without release the whole
    // file ends up resident.
    assert!(kept > 400, "RSS grew by only {kept} MiB without release");
}
