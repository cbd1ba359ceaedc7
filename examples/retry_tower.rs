//! A hyper-util client behind `ReplayLayer` + `tower::retry::RetryLayer` +
//! `RetryPolicy` + `TrackProgressLayer` + `tower::timeout::TimeoutLayer`,
//! uploading to a local server that drops the first connection mid-body,
//! answers 503 to the second attempt and stalls on the third, which the
//! per-attempt timeout ends. Prints each attempt as the client sends it and
//! as the server sees it, and the upload progress, which starts again with
//! each attempt.
//!
//! ```text
//! cargo run --release --example retry_tower
//! ```

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mmap_body::progress::{Progress, ProgressBody, TrackProgressLayer};
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayBody, ReplayLayer};
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::temp_file;
use mmap_body_devkit::BoxError;
use support::{log_attempt, sent_of_total};
use tower::retry::RetryLayer;
use tower::timeout::TimeoutLayer;
use tower::{ServiceBuilder, ServiceExt};

const SIZE: u64 = 64 << 20;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // A file truncated while it is sent fails the upload instead of killing
    // the process with SIGBUS (HTTP/2 and TLS copy frames in user space).
    mmap_body::guard::install()?;
    let (_dir, path) = temp_file("upload.bin", SIZE)?;

    // Attempt 1: read 16 MiB, drop the connection. Attempt 2: read 32 MiB,
    // answer 503. Attempt 3: read 8 MiB, then stall. Then: read everything.
    let addr = Faulty::narrated(
        "server",
        [
            Fault::DropAfter(16 << 20),
            Fault::StatusAfter(503, 32 << 20, None),
            Fault::StallAfter(8 << 20),
        ],
    )
    .await
    .addr;
    let attempts = Arc::new(AtomicUsize::new(0));
    let client =
        Client::builder(TokioExecutor::new()).build_http::<ProgressBody<ReplayBody<MmapBody>>>();
    let progress = Progress::new();
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(
            RetryPolicy::default()
                .max_attempts(4)
                .backoff(Duration::from_millis(100), Duration::from_secs(1)),
        ))
        .map_request(log_attempt(&attempts, &progress, "hyper"))
        .layer(TrackProgressLayer::new())
        // Inside the retry layer: each attempt gets 3 s. Its error is a
        // boxed `Elapsed`, which `RetryPolicy` retries like a dropped
        // connection.
        .layer(TimeoutLayer::new(Duration::from_secs(3)))
        .service(client);

    // SAFETY: the file is ours, in a temp dir, unchanged while mapped.
    let body = unsafe { MmapBody::open(&path)? };
    let mut request = http::Request::put(format!("http://{addr}/upload")).body(body)?;
    request.extensions_mut().insert(progress.clone());
    let started = Instant::now();
    let response = service.oneshot(request).await?;
    let status = response.status();
    let text = response.into_body().collect().await?.to_bytes();
    println!(
        "client: {status} after {} attempts in {:.2} s: {}",
        attempts.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&text)
    );
    println!(
        "client: progress: attempt {}, {}",
        progress.attempt(),
        sent_of_total(&progress)
    );
    if !status.is_success() {
        return Err(format!("upload failed with {status}").into());
    }
    Ok(())
}
