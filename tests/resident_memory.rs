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
    (status_kib("VmHWM:").expect("VmHWM:") - before) / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_rss_stays_bounded_while_sending_512_mib() {
    let file = test_file(512 << 20);
    let addr = hashing_server().await;
    // SAFETY: the temp file is private to this test.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();

    let released = upload_peak_rss_growth_mib(addr, body.clone()).await;
    let kept = upload_peak_rss_growth_mib(addr, body.clone().release_sent_pages(false)).await;
    eprintln!("peak RSS growth: {released} MiB released, {kept} MiB kept");
    assert!(released < 64, "RSS grew by {released} MiB");
    // The measurement can see the difference: without release the whole
    // file ends up resident.
    assert!(kept > 400, "RSS grew by only {kept} MiB without release");
}
