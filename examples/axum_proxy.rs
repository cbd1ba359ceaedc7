//! An axum proxy that forwards uploads to a flaky upstream and retries
//! them with the client's own body, streamed and replayed.
//!
//! Three servers on 127.0.0.1:
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
//! upstream got the body the client sent.
//!
//! ```text
//! cargo run --release --example axum_proxy --all-features
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use mmap_body::proxy::{Forwarding, ReverseProxy};
use mmap_body::retry::RetryPolicy;
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::BoxError;
use sha2::{Digest, Sha256};

/// The upload.
const SIZE: usize = 64 << 20;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Attempt 1: read 16 MiB, drop the connection. Attempt 2: read 24 MiB,
    // answer 503. Then: read everything, hash it, answer 200.
    let upstream_addr = Faulty::narrated(
        "upstream",
        [
            Fault::DropAfter(16 << 20),
            Fault::StatusAfter(503, 24 << 20, None),
        ],
    )
    .await
    .addr;

    // The whole proxy. Each attempt is held to the client's Content-Length,
    // and the body is recorded so that a retry can send it again: the first
    // 64 KiB in memory (zero-copy: the frames' `Bytes` are shared with
    // hyper), the rest, up to 1 GiB, in an unlinked temp file that replays
    // read back as mapped slices; the proxy's heap stays in KiB whatever
    // the size of the upload. A stalled attempt is given up after 10 s.
    let proxy = ReverseProxy::builder(format!("http://{upstream_addr}/store"))?
        .max_replay_bytes(64 * 1024)
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

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy_addr = listener.local_addr()?;
    tokio::spawn(async move {
        use axum::serve::ListenerExt;
        // As the README explains: without TCP_NODELAY, HTTP/2 uploads stall
        // on Nagle's algorithm.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("proxy: {err}");
        }
    });
    println!("upstream on {upstream_addr}, proxy on {proxy_addr}");

    // The client: 64 MiB of pseudo-random bytes, with Content-Length.
    let mut bytes = vec![0u8; SIZE];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for word in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
    }
    let sent = hex(&Sha256::digest(&bytes));
    println!("client: PUT {SIZE} bytes, sha256 {}", &sent[..16]);
    let started = Instant::now();
    let res = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?
        .put(format!("http://{proxy_addr}/files/big.bin?v=1"))
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
    if !status.is_success() {
        return Err(format!("the upload failed with {status}").into());
    }
    if !text.contains(&sent) {
        return Err("the upstream received other bytes than the client sent".into());
    }
    println!("client: the upstream received exactly the bytes sent");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
