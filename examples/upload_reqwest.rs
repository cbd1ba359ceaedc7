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

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mmap_body::progress::{Progress, TrackProgressLayer};
use mmap_body::reqwest::ReqwestService;
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayBody, ReplayLayer};
use support::{framing, human, parse_size, status_kib, write_file, BoxError};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut size: u64 = 256 << 20;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--size", Some(value)) => size = parse_size(&value)?,
            _ => return Err(format!("unknown option {arg}; options: --size 512MiB").into()),
        }
    }
    // A file truncated while it is sent fails the upload instead of killing
    // the process with SIGBUS (HTTP/2 and TLS copy frames in user space).
    mmap_body::guard::install()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("upload.bin");
    write_file(&path, size)?;

    let addr = flaky_server(size / 4).await?;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let progress = Progress::new();
    let watch = progress.clone();
    let client = reqwest::Client::builder().no_proxy().build()?;
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
                    "client: progress: attempt {} had handed {} of {} to reqwest",
                    watch.attempt(),
                    human(watch.sent()),
                    human(watch.total().unwrap_or(0))
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
        .service(ReqwestService::new(client));

    // SAFETY: the file is ours, in a temp dir, unchanged while mapped.
    let body = unsafe { MmapBody::open(&path)? };
    let mut request = http::Request::put(format!("http://{addr}/upload")).body(body)?;
    request.extensions_mut().insert(progress.clone());

    // Peak RSS from here on: the file is written, the server is up.
    std::fs::write("/proc/self/clear_refs", "5").ok();
    let rss_before = status_kib("VmRSS:");
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
                "client: progress: attempt {}: {} of {} ({:.0}%)",
                now.0,
                human(progress.sent()),
                human(progress.total().unwrap_or(0)),
                progress.fraction().unwrap_or(0.0) * 100.0
            );
            shown = now;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let response = upload.await??;
    let status = response.status();
    let text = response.into_body().collect().await?.to_bytes();
    let elapsed = started.elapsed().as_secs_f64();
    let grown = status_kib("VmHWM:").saturating_sub(rss_before) * 1024;
    println!(
        "client: {status} after {} attempts in {elapsed:.2} s: {}",
        attempts.load(Ordering::SeqCst),
        String::from_utf8_lossy(&text)
    );
    println!(
        "client: progress: attempt {}, {} of {} ({:.0}%)",
        progress.attempt(),
        human(progress.sent()),
        human(progress.total().unwrap_or(0)),
        progress.fraction().unwrap_or(0.0) * 100.0
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

/// Attempt 1: read `limit` bytes, drop the connection. Attempt 2: read
/// `limit` bytes, answer 503 with `Retry-After: 1`. Then: read everything,
/// answer 200 with the framing seen and the byte count.
async fn flaky_server(limit: u64) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let seen = seen.clone();
            tokio::spawn(async move {
                let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
                let kill_tx = Arc::new(Mutex::new(Some(kill_tx)));
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                    let kill_tx = kill_tx.clone();
                    async move {
                        let framing = framing(req.version(), req.headers());
                        let limit = if n <= 2 { limit } else { u64::MAX };
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
                        println!("server: attempt {n}: {framing}, read {}", human(read));
                        let reply = |status: u16| {
                            http::Response::builder()
                                .status(status)
                                .header(http::header::CONNECTION, "close")
                        };
                        match n {
                            1 => {
                                println!("server: attempt 1: dropping the connection");
                                if let Some(tx) = kill_tx.lock().unwrap().take() {
                                    let _ = tx.send(());
                                }
                                std::future::pending().await
                            }
                            2 => {
                                println!("server: attempt 2: 503, Retry-After: 1");
                                Ok::<_, Infallible>(
                                    reply(503)
                                        .header(http::header::RETRY_AFTER, "1")
                                        .body(Full::new(Bytes::from("busy")))
                                        .unwrap(),
                                )
                            }
                            _ => Ok(reply(200)
                                .body(Full::new(Bytes::from(format!("{framing} received={read}"))))
                                .unwrap()),
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
