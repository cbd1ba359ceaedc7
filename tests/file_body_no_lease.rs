//! `FileBody::disable_leases`: for a program that uses `SIGRTMIN + 7`
//! itself. No lease is taken from then on: every `FileBody` reads with
//! `pread`, and a writer never waits. Its own binary, as the switch is the
//! process's.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use mmap_body::FileBody;
use mmap_body_devkit::files::{sha256, test_file};

#[test]
fn without_leases_every_body_reads_with_pread_and_no_writer_waits() {
    let file = test_file(4 << 20);
    assert!(FileBody::open(&file.path).unwrap().is_mapped());
    FileBody::disable_leases();
    let body = FileBody::open(&file.path).unwrap();
    assert!(!body.is_mapped());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bytes = rt.block_on(body.clone().collect()).unwrap().to_bytes();
    assert_eq!(sha256(&bytes), file.sha256);
    // No lease: a writer's open goes on at once, and the body sees it.
    let started = Instant::now();
    let out = std::process::Command::new("sh")
        .args(["-c", "printf x > \"$0\""])
        .arg(&file.path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(rt.block_on(body.collect()).is_err());
}
