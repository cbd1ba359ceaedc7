//! An axum proxy that forwards uploads to a flaky upstream and retries
//! them with the client's own body, streamed and replayed.
//!
//! Three servers on 127.0.0.1:
//!
//! - an upstream (hyper) that drops the connection in the middle of the
//!   first attempt, answers 503 after reading part of the second, and
//!   hashes the third;
//! - the proxy (axum 0.8), whose handler forwards each request with
//!   `mmap_body::proxy` through `ReplayLayer` + `RetryLayer(RetryPolicy)` +
//!   a `TimeoutLayer` per attempt + a hyper-util client;
//! - a reqwest client uploading 64 MiB with `Content-Length` to the proxy.
//!
//! It prints what each attempt did, as the proxy sent it and as the
//! upstream saw it, and whether the upstream got the body the client sent.
//!
//! ```text
//! cargo run --release --example axum_proxy --all-features
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use mmap_body::proxy::{self, Forwarding, Upstream};
use mmap_body::retry::RetryPolicy;
use mmap_body::{Replay, ReplayBody, ReplayLayer};
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::BoxError;
use sha2::{Digest, Sha256};
use tower::retry::{Retry, RetryLayer};
use tower::timeout::{Timeout, TimeoutLayer};
use tower::util::MapRequest;
use tower::{ServiceBuilder, ServiceExt};

/// The upload.
const SIZE: usize = 64 << 20;

/// The client stack of the proxy: replayable body, retries, a timeout per
/// attempt (and a line printed per attempt), hyper-util.
type ClientStack = Replay<
    Retry<
        RetryPolicy,
        MapRequest<
            Timeout<Client<HttpConnector, ReplayBody<Body>>>,
            fn(http::Request<ReplayBody<Body>>) -> http::Request<ReplayBody<Body>>,
        >,
    >,
>;

#[derive(Clone)]
struct Proxy {
    client: ClientStack,
    upstream: Upstream,
    forwarding: Forwarding,
}

static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

/// Printed by the proxy as each attempt leaves it.
fn log_attempt(req: http::Request<ReplayBody<Body>>) -> http::Request<ReplayBody<Body>> {
    let n = ATTEMPTS.fetch_add(1, Ordering::SeqCst) + 1;
    println!(
        "proxy: attempt {n}: {} {} content-length={:?} via={:?}",
        req.method(),
        req.uri(),
        req.headers().get(http::header::CONTENT_LENGTH),
        req.headers().get(http::header::VIA),
    );
    req
}

/// The handler: the whole proxy.
async fn forward(
    State(proxy): State<Proxy>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let req =
        match proxy::upstream_request(req, &proxy.upstream, &proxy.forwarding, Some(peer.ip())) {
            Ok(req) => req,
            Err(refused) => return proxy::error_response(&refused),
        };
    match proxy.client.oneshot(req).await {
        Ok(res) => match proxy::check_response(&res) {
            Ok(()) => proxy::downstream_response(res, &proxy.forwarding).map(Body::new),
            Err(refused) => proxy::error_response(&refused),
        },
        Err(err) => {
            println!("proxy: upstream failed for good: {err}");
            proxy::error_response(&*err)
        }
    }
}

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

    let client = ServiceBuilder::new()
        // Outside the retries: each attempt is held to the client's
        // Content-Length, and the body is recorded so that a retry can send
        // it again: the first 64 KiB in memory (zero-copy: the frames'
        // `Bytes` are shared with hyper), the rest, up to 1 GiB, in an
        // unlinked temp file that replays read back as mapped slices. The
        // proxy's heap stays in KiB whatever the size of the upload.
        .layer(ReplayLayer::new(64 * 1024).spill_to_disk(1 << 30))
        .layer(RetryLayer::new(
            RetryPolicy::default()
                .max_attempts(4)
                .backoff(Duration::from_millis(50), Duration::from_millis(500)),
        ))
        .map_request(log_attempt as fn(_) -> _)
        // Each attempt, not the whole request: a stalled upstream is
        // given up on after 10 s and the body sent again.
        .layer(TimeoutLayer::new(Duration::from_secs(10)))
        .service(Client::builder(TokioExecutor::new()).build_http());
    let state = Proxy {
        client,
        upstream: format!("http://{upstream_addr}/store").parse()?,
        forwarding: Forwarding::new().via("example-proxy").forwarded_for(true),
    };
    let app = axum::Router::new().fallback(forward).with_state(state);
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
        "client: {status} after {} attempts in {:.2} s, via {via:?}: {}",
        ATTEMPTS.load(Ordering::SeqCst),
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
