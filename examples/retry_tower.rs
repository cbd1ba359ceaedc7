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

use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mmap_body::progress::{Progress, ProgressBody, TrackProgressLayer};
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayBody, ReplayLayer};
use tower::retry::RetryLayer;
use tower::timeout::TimeoutLayer;
use tower::{ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SIZE: u64 = 64 << 20;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // A file truncated while it is sent fails the upload instead of killing
    // the process with SIGBUS (HTTP/2 and TLS copy frames in user space).
    mmap_body::guard::install()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("upload.bin");
    let mut file = std::fs::File::create(&path)?;
    for i in 0..SIZE / (1 << 20) {
        file.write_all(&vec![i as u8; 1 << 20])?;
    }
    drop(file);

    let addr = flaky_server().await?;
    let attempt = Arc::new(AtomicUsize::new(0));
    let counter = attempt.clone();
    let client =
        Client::builder(TokioExecutor::new()).build_http::<ProgressBody<ReplayBody<MmapBody>>>();
    let progress = Progress::new();
    let watch = progress.clone();
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(
            RetryPolicy::default()
                .max_attempts(4)
                .backoff(Duration::from_millis(100), Duration::from_secs(1)),
        ))
        .map_request(move |req: http::Request<ReplayBody<MmapBody>>| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            if n > 1 {
                println!(
                    "client: progress: attempt {} had handed {} of {:?} bytes to hyper",
                    watch.attempt(),
                    watch.sent(),
                    watch.total()
                );
            }
            println!(
                "client: attempt {n}: {} {} content-length={:?}",
                req.method(),
                req.uri(),
                req.headers().get(http::header::CONTENT_LENGTH)
            );
            req
        })
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
        attempt.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&text)
    );
    println!(
        "client: progress: attempt {}, {} of {:?} bytes ({:.0}%)",
        progress.attempt(),
        progress.sent(),
        progress.total(),
        progress.fraction().unwrap_or(0.0) * 100.0
    );
    if !status.is_success() {
        return Err(format!("upload failed with {status}").into());
    }
    Ok(())
}

/// Attempt 1: read 16 MiB, drop the connection. Attempt 2: read 32 MiB,
/// answer 503. Attempt 3: read 8 MiB, then stall. Attempt 4 on: read
/// everything, answer 200.
async fn flaky_server() -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
                let kill_tx = Arc::new(std::sync::Mutex::new(Some(kill_tx)));
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                    let kill_tx = kill_tx.clone();
                    async move {
                        let limit = match n {
                            1 => 16 << 20,
                            2 => 32 << 20,
                            3 => 8 << 20,
                            _ => u64::MAX,
                        };
                        let mut body = req.into_body();
                        let mut read = 0u64;
                        while read < limit {
                            match body.frame().await {
                                Some(Ok(frame)) => {
                                    read += frame.data_ref().map_or(0, |d| d.len() as u64)
                                }
                                _ => break,
                            }
                        }
                        println!("server: attempt {n}: read {} MiB", read >> 20);
                        let reply = |status: u16, text: String| {
                            http::Response::builder()
                                .status(status)
                                .header(http::header::CONNECTION, "close")
                                .body(Full::new(Bytes::from(text)))
                                .unwrap()
                        };
                        match n {
                            1 => {
                                println!("server: attempt 1: dropping the connection");
                                if let Some(tx) = kill_tx.lock().unwrap().take() {
                                    let _ = tx.send(());
                                }
                                // Never answers: the connection is gone.
                                std::future::pending().await
                            }
                            2 => Ok::<_, Infallible>(reply(503, "busy".into())),
                            3 => {
                                println!("server: attempt 3: stalling");
                                std::future::pending().await
                            }
                            _ => Ok(reply(200, format!("received {read} bytes"))),
                        }
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = conn => {}
                    _ = kill_rx => {}
                }
            });
        }
    });
    Ok(addr)
}
