//! A reqwest 0.13 client behind `ReplayLayer` + `RetryLayer(RetryPolicy)` +
//! `TrackProgressLayer` (`mmap_body::reqwest::ReqwestService` at the bottom),
//! uploading a temp file to a local hyper server that drops the first
//! connection mid-body and answers 503 with `Retry-After: 1` to the second
//! attempt. Prints each attempt as the client sends it and as the server
//! sees it, the progress (which starts again with each attempt), and the
//! sender's peak RSS growth, which stays far below the file size.
//!
//! ```text
//! cargo run --release --example upload_reqwest --features reqwest [-- --size 512MiB]
//! ```

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use mmap_body::progress::{Progress, TrackProgressLayer};
use mmap_body::reqwest::ReqwestService;
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayLayer};
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::temp_file;
use mmap_body_devkit::rss::status_kib;
use mmap_body_devkit::size::human;
use mmap_body_devkit::size::size_arg;
use mmap_body_devkit::BoxError;
use support::{log_attempt, sent_of_total};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let size = size_arg(256 << 20)?;
    // A file truncated while it is sent fails the upload instead of killing
    // the process with SIGBUS (HTTP/2 and TLS copy frames in user space).
    mmap_body::guard::install()?;
    let (_dir, path) = temp_file("upload.bin", size)?;

    // Attempt 1: read a quarter of the file, drop the connection. Attempt 2:
    // read a quarter, answer 503 with `Retry-After: 1`. Then: read everything.
    let addr = Faulty::narrated(
        "server",
        [
            Fault::DropAfter(size / 4),
            Fault::StatusAfter(503, size / 4, Some("1")),
        ],
    )
    .await
    .addr;
    let attempts = Arc::new(AtomicUsize::new(0));
    let progress = Progress::new();
    let client = reqwest::Client::builder().no_proxy().build()?;
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(
            RetryPolicy::default()
                .max_attempts(4)
                .backoff(Duration::from_millis(100), Duration::from_secs(1)),
        ))
        .map_request(log_attempt(&attempts, &progress, "reqwest"))
        .layer(TrackProgressLayer::new())
        .service(ReqwestService::new(client));

    // SAFETY: the file is ours, in a temp dir, unchanged while mapped.
    let body = unsafe { MmapBody::open(&path)? };
    let mut request = http::Request::put(format!("http://{addr}/upload")).body(body)?;
    request.extensions_mut().insert(progress.clone());

    // Peak RSS from here on: the file is written, the server is up.
    std::fs::write("/proc/self/clear_refs", "5").ok();
    let rss_before = status_kib("VmRSS:").unwrap_or(0);
    let started = Instant::now();
    let upload = tokio::spawn(service.oneshot(request));
    let mut shown = (0, 0);
    while !upload.is_finished() {
        let now = (
            progress.attempt(),
            (progress.fraction().unwrap_or(0.0) * 4.0) as u32,
        );
        if now != shown && now.0 > 0 {
            println!(
                "client: progress: attempt {}: {}",
                now.0,
                sent_of_total(&progress)
            );
            shown = now;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let response = upload.await??;
    let status = response.status();
    let text = response.into_body().collect().await?.to_bytes();
    let elapsed = started.elapsed().as_secs_f64();
    let grown = status_kib("VmHWM:").unwrap_or(0).saturating_sub(rss_before) * 1024;
    println!(
        "client: {status} after {} attempts in {elapsed:.2} s: {}",
        attempts.load(Ordering::SeqCst),
        String::from_utf8_lossy(&text)
    );
    println!(
        "client: progress: attempt {}, {}",
        progress.attempt(),
        sent_of_total(&progress)
    );
    println!(
        "client: peak RSS growth {} for a {} file (server in the same process)",
        human(grown),
        human(size)
    );
    if !status.is_success() || progress.sent() != size {
        return Err(format!("upload failed with {status}").into());
    }
    Ok(())
}
