//! `MmapBody` as a neighbour on a tokio runtime (feature `runtime`): the
//! pages of a cold file are read on the blocking pool, not faulted in by
//! hyper's `write()` on the runtime's thread.

use std::io::Write;

use mmap_body::MmapBody;
use mmap_body_devkit::files::test_file;
use mmap_body_devkit::server::{client, hashing_server, received};

/// Major page faults taken so far by the calling thread
/// (`/proc/thread-self/stat`, field 12).
fn major_faults_of_this_thread() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(9).unwrap().parse().unwrap()
}

/// Drops the file's pages from the page cache, so that the next read of
/// them goes to the disk (it must be clean: written and synced).
fn make_cold(path: &std::path::Path) -> bool {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.sync_all().unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a plain advice on an open descriptor of this test's file.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) == 0 }
}

/// A 64 MiB upload of a cold file from a `current_thread` runtime, over
/// HTTP/1.1 and HTTP/2: the thread that runs the runtime (and hyper's
/// writes, or h2's copies) takes no major fault; the pages came in on the
/// blocking pool. (Without it, the writes fault the pages in on the
/// runtime's thread: 11 major faults here over HTTP/1.1.)
#[test]
fn a_cold_file_faults_on_the_blocking_pool_not_on_the_runtime() {
    for http2 in [false, true] {
        cold_upload(http2);
    }
}

fn cold_upload(http2: bool) {
    let file = test_file(64 * 1024 * 1024);
    let _ = std::io::stderr().flush();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (faults, seen) = runtime.block_on(async {
        let addr = hashing_server().await;
        if !make_cold(&file.path) {
            return (None, None);
        }
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::open(&file.path) }.unwrap();
        let before = major_faults_of_this_thread();
        let req = http::Request::put(format!("http://{addr}/"))
            .body(body)
            .unwrap();
        let res = client(http2).request(req).await.expect("upload");
        let faults = major_faults_of_this_thread() - before;
        (Some(faults), Some(received(&res)))
    });
    let (Some(faults), Some(seen)) = (faults, seen) else {
        eprintln!("skipped: posix_fadvise(DONTNEED) refused on this file system");
        return;
    };
    assert_eq!(seen.sha256, file.sha256);
    eprintln!("http2={http2}: major faults on the runtime's thread: {faults}");
    assert!(
        faults <= 2,
        "http2={http2}: {faults} major faults on the runtime's thread for a cold 64 MiB upload"
    );
}
