//! A hyper-util client behind `ReplayLayer` + `tower::retry::RetryLayer` +
//! `RetryPolicy` + `TrackProgressLayer` + `tower::timeout::TimeoutLayer`,
//! uploading to a local server that drops the first connection mid-body,
//! answers 503 to the second attempt and stalls on the third, which the
//! per-attempt timeout ends. Prints each attempt as the client sends it and
//! as the server sees it, the upload progress, which starts again with each
//! attempt, and whether the server got the file (SHA-256).
//!
//! Crates it uses, to copy it into your own: `mmap-body` (`retry`,
//! `progress`), `tokio`, `hyper` (`server`, `http1`), `hyper-util`
//! (`client-legacy`, `http1`, `tokio`), `tower` (`retry`, `timeout`,
//! `util`), `http`, `http-body-util`, `bytes`, `sha2`, `tempfile`.
//!
//! ```text
//! cargo run --release --example retry_tower
//! ```

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mmap_body::progress::{Progress, ProgressBody, TrackProgressLayer};
use mmap_body::retry::RetryPolicy;
use mmap_body::{FileBody, ReplayBody, ReplayLayer, DEFAULT_MAX_REPLAY_BYTES};
use sha2::{Digest, Sha256};
use tower::retry::RetryLayer;
use tower::timeout::TimeoutLayer;
use tower::{ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SIZE: u64 = 64 << 20;
const MIB: u64 = 1 << 20;

/// What the server does with a request: read this many bytes of its body,
/// then drop the connection, answer 503, or stop reading and never answer.
/// Past its script it reads the whole body and answers with its SHA-256.
#[derive(Debug, Clone, Copy)]
enum Fault {
    HangUp(u64),
    Unavailable(u64),
    Stall(u64),
}

async fn flaky_server(script: Vec<Fault>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let requests = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (script, requests) = (script.clone(), requests.clone());
            let service = hyper::service::service_fn(move |req| {
                let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
                answer(n, script.lock().unwrap().pop_front(), req)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::spawn(conn);
        }
    });
    Ok(addr)
}

async fn answer(
    n: usize,
    fault: Option<Fault>,
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, BoxError> {
    let length = req.headers().get(http::header::CONTENT_LENGTH).cloned();
    println!(
        "server: request {n}: {} {} content-length={length:?}",
        req.method(),
        req.uri()
    );
    let limit = match fault {
        Some(Fault::HangUp(n) | Fault::Unavailable(n) | Fault::Stall(n)) => n,
        None => u64::MAX,
    };
    let (mut body, mut read, mut sha) = (req.into_body(), 0, Sha256::new());
    while read < limit {
        let Some(frame) = body.frame().await else {
            break;
        };
        if let Some(data) = frame?.data_ref() {
            read += data.len() as u64;
            sha.update(data);
        }
    }
    let said = |what: &str| println!("server: request {n}: read {} MiB, {what}", read / MIB);
    match fault {
        // An error from the service makes hyper close the connection.
        Some(Fault::HangUp(_)) => {
            said("dropping the connection");
            Err("dropped on purpose".into())
        }
        Some(Fault::Unavailable(_)) => {
            said("answering 503");
            let res = http::Response::builder()
                .status(503)
                .header("connection", "close");
            Ok(res.body(Full::from("try again"))?)
        }
        Some(Fault::Stall(_)) => {
            said("stalling");
            std::future::pending().await // the body stays open, unread
        }
        None => {
            let sha = format!("{:x}", sha.finalize());
            said(&format!("sha256 {}.., answering 200", &sha[..16]));
            Ok(http::Response::new(Full::from(format!(
                "received {read} bytes, sha256 {sha}"
            ))))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The file to upload: 64 MiB of pseudo-random bytes, and their SHA-256.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("upload.bin");
    let mut bytes = vec![0u8; SIZE as usize];
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for word in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
    std::fs::File::create(&path)?.write_all(&bytes)?;
    let sent = format!("{:x}", Sha256::digest(&bytes));
    drop(bytes);

    // Attempt 1: read 16 MiB, drop the connection. Attempt 2: read 32 MiB,
    // answer 503. Attempt 3: read 8 MiB, then stall. Then: read everything.
    let addr = flaky_server(vec![
        Fault::HangUp(16 * MIB),
        Fault::Unavailable(32 * MIB),
        Fault::Stall(8 * MIB),
    ])
    .await?;
    let attempts = Arc::new(AtomicUsize::new(0));
    let client =
        Client::builder(TokioExecutor::new()).build_http::<ProgressBody<ReplayBody<FileBody>>>();
    let progress = Progress::new();
    let service = ServiceBuilder::new()
        // A file body is cloned for each retry: no cap applies to it.
        .layer(ReplayLayer::new(DEFAULT_MAX_REPLAY_BYTES))
        .layer(RetryLayer::new(
            RetryPolicy::default()
                .max_attempts(4)
                .backoff(Duration::from_millis(100), Duration::from_secs(1)),
        ))
        .map_request({
            // Inside the retries: each attempt as it leaves, and how far
            // the one before it got.
            let (attempts, progress) = (attempts.clone(), progress.clone());
            move |req: http::Request<_>| {
                let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                if n > 1 {
                    let sent = sent_of_total(&progress);
                    println!(
                        "client: progress: attempt {} had handed {sent} to hyper",
                        n - 1
                    );
                }
                let length = req.headers().get(http::header::CONTENT_LENGTH);
                println!(
                    "client: attempt {n}: {} {} content-length={length:?}",
                    req.method(),
                    req.uri()
                );
                req
            }
        })
        .layer(TrackProgressLayer::new())
        // Inside the retry layer: each attempt gets 3 s. Its error is a
        // boxed `Elapsed`, which `RetryPolicy` retries like a dropped
        // connection.
        .layer(TimeoutLayer::new(Duration::from_secs(3)))
        .service(client);

    let body = FileBody::open(&path)?;
    let mut request = http::Request::put(format!("http://{addr}/upload")).body(body)?;
    request.extensions_mut().insert(progress.clone());
    let started = Instant::now();
    let response = service.oneshot(request).await?;
    let status = response.status();
    let text = String::from_utf8(response.into_body().collect().await?.to_bytes().to_vec())?;
    println!(
        "client: {status} after {} attempts in {:.2} s: {text}",
        attempts.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64(),
    );
    println!(
        "client: progress: attempt {}, {}",
        progress.attempt(),
        sent_of_total(&progress)
    );
    if !status.is_success() || !text.ends_with(&sent) {
        return Err(format!("the upload failed ({status}) or the server got other bytes").into());
    }
    println!("client: the server received the file whole (SHA-256 equal)");
    Ok(())
}

/// `41 MiB of 64 MiB (64%)`: how much of the body the current attempt has
/// handed to the client.
fn sent_of_total(progress: &Progress) -> String {
    let (sent, total) = (progress.sent(), progress.total().unwrap_or(0));
    let percent = progress.fraction().unwrap_or(0.0) * 100.0;
    format!("{} MiB of {} MiB ({percent:.0}%)", sent / MIB, total / MIB)
}
