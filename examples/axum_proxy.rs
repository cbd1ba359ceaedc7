//! An axum proxy that forwards uploads to a flaky upstream and retries
//! them with the client's own body, streamed and replayed.
//!
//! Three parties on 127.0.0.1:
//!
//! - an upstream (hyper) that drops the connection in the middle of the
//!   first attempt, answers 503 after reading part of the second, and
//!   hashes the third;
//! - the proxy (axum 0.8): `Router::new().nest_service("/files",
//!   ReverseProxy…)`, one line, with `ReplayLayer` (spilling to disk) +
//!   `RetryLayer(RetryPolicy)` + a timeout per attempt + hyper-util inside;
//! - a reqwest client uploading 64 MiB with `Content-Length` to the proxy.
//!
//! It prints what each attempt did as the upstream saw it, and whether the
//! upstream got the body the client sent (SHA-256).
//!
//! Crates it uses, to copy it into your own: `mmap-body` (`proxy`,
//! `spill`), `axum`, `reqwest`, `tokio`, `hyper` (`server`, `http1`),
//! `hyper-util` (`tokio`), `http`, `http-body-util`, `bytes`, `sha2`.
//!
//! ```text
//! cargo run --release --example axum_proxy --all-features
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::serve::ListenerExt;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mmap_body::proxy::{Forwarding, ReverseProxy};
use mmap_body::retry::RetryPolicy;
use sha2::{Digest, Sha256};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upload.
const SIZE: usize = 64 << 20;
const MIB: u64 = 1 << 20;

/// What the upstream does with a request: read this many bytes of its body,
/// then drop the connection or answer 503. Past its script it reads the
/// whole body and answers with its SHA-256.
#[derive(Debug, Clone, Copy)]
enum Fault {
    HangUp(u64),
    Unavailable(u64),
}

async fn flaky_upstream(script: Vec<Fault>) -> std::io::Result<SocketAddr> {
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
    let header = |name: &str| req.headers().get(name).cloned();
    let (length, via, xff) = (
        header("content-length"),
        header("via"),
        header("x-forwarded-for"),
    );
    println!(
        "upstream: request {n}: {} {} content-length={length:?} via={via:?} x-forwarded-for={xff:?}",
        req.method(),
        req.uri()
    );
    let limit = match fault {
        Some(Fault::HangUp(n) | Fault::Unavailable(n)) => n,
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
    let said = |what: &str| println!("upstream: request {n}: read {} MiB, {what}", read / MIB);
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
    // Attempt 1: read 16 MiB, drop the connection. Attempt 2: read 24 MiB,
    // answer 503. Then: read everything, hash it, answer 200.
    let script = vec![Fault::HangUp(16 * MIB), Fault::Unavailable(24 * MIB)];
    let upstream_addr = flaky_upstream(script).await?;

    // The whole proxy. Each attempt is held to the client's Content-Length,
    // and the body is recorded so that a retry can send it again: the first
    // 64 KiB in memory (zero-copy: the frames' `Bytes` are shared with
    // hyper; lower than the 8 MiB default, as the disk takes the rest), the
    // rest, up to 1 GiB, in an unlinked temp file that replays read back as
    // mapped slices; the proxy's heap stays in KiB whatever the size of the
    // upload. A stalled attempt is given up after 10 s.
    let proxy = ReverseProxy::builder(format!("http://{upstream_addr}/store"))?
        .max_replay_bytes(64 << 10)
        .spill_to_disk(1 << 30)
        .retry(
            RetryPolicy::default()
                .max_attempts(4)
                .backoff(Duration::from_millis(50), Duration::from_millis(500)),
        )
        .attempt_timeout(Duration::from_secs(10))
        // The edge: what the client says of where it came from is dropped,
        // and its real address sent instead.
        .forwarding(
            Forwarding::new()
                .via("example-proxy")
                .strip_client_forwarding(true)
                .forwarded_for(true),
        )
        .peer(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
        .build();
    // Mounted in one line.
    let app = axum::Router::new().nest_service("/files", proxy);

    // Without TCP_NODELAY, HTTP/2 uploads stall on Nagle's algorithm.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy_addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("upstream on {upstream_addr}, proxy on {proxy_addr}");

    // The client: 64 MiB of pseudo-random bytes, with Content-Length.
    let mut bytes = vec![0u8; SIZE];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for word in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
    let sent = format!("{:x}", Sha256::digest(&bytes));
    println!("client: PUT {SIZE} bytes, sha256 {}..", &sent[..16]);
    let started = Instant::now();
    let res = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?
        .put(format!("http://{proxy_addr}/files/big.bin?v=1"))
        // What a client claims of its origin; the edge drops it.
        .header("x-forwarded-for", "6.6.6.6")
        .body(bytes)
        .send()
        .await?;
    let status = res.status();
    let via = res.headers().get("via").cloned();
    let text = res.text().await?;
    println!(
        "client: {status} in {:.2} s, via {via:?}: {}",
        started.elapsed().as_secs_f64(),
        text.trim()
    );
    if !status.is_success() || !text.ends_with(&sent) {
        return Err(format!("the upload failed ({status}) or the upstream got other bytes").into());
    }
    println!("client: the upstream received exactly the bytes sent (SHA-256 equal)");
    Ok(())
}
