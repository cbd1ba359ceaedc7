//! A big upload through a real axum proxy (`mmap_body::proxy` helpers,
//! `ReplayLayer` + `RetryLayer`, a hyper-util client) to an upstream that
//! drops the first attempt and answers 503 to the second. With the spill,
//! the upstream's last attempt gets every byte and the process's heap does
//! not grow with the body; without it, the client gets a clear 502 and the
//! upstream never accepts a partial body.
//!
//! This binary installs a counting global allocator (it counts every thread
//! while a measurement runs: client, proxy and upstream together).
#![cfg(all(target_os = "linux", feature = "proxy", feature = "spill"))]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use mmap_body::proxy::{self, Forwarding, Upstream};
use mmap_body::retry::RetryPolicy;
use mmap_body::{ReplayBody, ReplayLayer};
use mmap_body_devkit::alloc::{stop_tracking, track_all_threads, CountingAlloc, HeapUse};
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::{hex, pattern};
use mmap_body_devkit::rss::status_kib;
use sha2::{Digest, Sha256};
use tower::retry::RetryLayer;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MIB: u64 = 1024 * 1024;
const FRAME: usize = 64 * 1024;

/// `len` bytes in 64 KiB frames cut from one 1 MiB random buffer at offsets
/// that change with every frame: no allocation per frame, no two frames in
/// a row alike, so a replay that skips or repeats bytes changes the hash.
struct Generated {
    source: Bytes,
    left: u64,
    frame: u64,
}

impl Generated {
    fn new(len: u64) -> (Generated, String) {
        let mut buf = vec![0u8; MIB as usize + FRAME];
        pattern(len, &mut buf);
        let source = Bytes::from(buf);
        let body = Generated {
            source,
            left: len,
            frame: 0,
        };
        let mut hasher = Sha256::new();
        let mut copy = Generated {
            source: body.source.clone(),
            left: len,
            frame: 0,
        };
        while let Some(data) = copy.next_data() {
            hasher.update(&data);
        }
        let hash = hex(&hasher.finalize());
        (body, hash)
    }

    fn next_data(&mut self) -> Option<Bytes> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(FRAME as u64) as usize;
        let at = (self.frame.wrapping_mul(4099) % MIB) as usize;
        self.frame += 1;
        self.left -= n as u64;
        Some(self.source.slice(at..at + n))
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.next_data().map(|d| Ok(Frame::data(d))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

type Upstreamer = BoxCloneSyncService<
    http::Request<AxumBody>,
    http::Response<hyper::body::Incoming>,
    Box<dyn std::error::Error + Send + Sync>,
>;

#[derive(Clone)]
struct Proxy {
    client: Upstreamer,
    upstream: Upstream,
    /// The statuses the proxy answered.
    answered: Arc<Mutex<Vec<u16>>>,
}

/// The counting allocator counts every thread: one measurement at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

async fn forward(State(proxy): State<Proxy>, req: Request) -> Response {
    let forwarding = Forwarding::new();
    let req = match proxy::upstream_request(req, &proxy.upstream, &forwarding, None) {
        Ok(req) => req,
        Err(refused) => return proxy::error_response(&refused),
    };
    let res = match proxy.client.oneshot(req).await {
        Ok(res) => match proxy::downstream_response(res, &forwarding) {
            Ok(res) => res.map(AxumBody::new),
            Err(refused) => proxy::error_response(&refused),
        },
        Err(err) => proxy::error_response(&*err),
    };
    proxy.answered.lock().unwrap().push(res.status().as_u16());
    res
}

/// An axum proxy on 127.0.0.1 forwarding to `upstream`, recording 64 KiB
/// in memory and, with `spill`, the rest on disk.
async fn start_proxy(upstream: &Faulty, spill: bool) -> (SocketAddr, Arc<Mutex<Vec<u16>>>) {
    let mut replay = ReplayLayer::new(64 * 1024);
    if spill {
        replay = replay.spill_to_disk(4 << 30);
    }
    let client: Client<HttpConnector, ReplayBody<AxumBody>> =
        Client::builder(TokioExecutor::new()).build_http();
    let client = ServiceBuilder::new()
        .layer(replay)
        .layer(RetryLayer::new(
            RetryPolicy::default()
                .max_attempts(3)
                .backoff(Duration::from_millis(10), Duration::from_millis(40)),
        ))
        .service(client);
    let answered = Arc::new(Mutex::new(Vec::new()));
    let proxy = Proxy {
        client: BoxCloneSyncService::new(client),
        upstream: upstream.uri("/").parse().unwrap(),
        answered: answered.clone(),
    };
    let app = axum::Router::new().fallback(forward).with_state(proxy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, answered)
}

/// What one upload through the proxy came to.
struct Upload {
    /// The status the client got, or the client's error (over HTTP/1.1 a
    /// proxy answering before it read the whole body may close the
    /// connection under the client's upload).
    client: Result<u16, String>,
    /// The statuses the proxy answered.
    answered: Vec<u16>,
    seen: Vec<mmap_body_devkit::faulty::Seen>,
    hash: String,
}

/// PUTs `len` generated bytes through a fresh proxy to a fresh upstream
/// that drops the first attempt after 100/256 of the body and answers 503
/// after 50/256 of the second.
async fn upload(len: u64, spill: bool) -> Upload {
    let upstream = Faulty::start([
        Fault::DropAfter(len * 100 / 256),
        Fault::StatusAfter(503, len * 50 / 256, None),
    ])
    .await;
    let (proxy, answered) = start_proxy(&upstream, spill).await;
    let (body, hash) = Generated::new(len);
    let client: Client<HttpConnector, Generated> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::put(format!("http://{proxy}/big.bin"))
        .body(body)
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(120), client.request(req))
        .await
        .expect("the upload finished in time");
    let answered = answered.lock().unwrap().clone();
    Upload {
        client: res
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("{e:?}")),
        answered,
        seen: upstream.seen(),
        hash,
    }
}

fn measured(len: u64) -> HeapUse {
    let rt = tokio::runtime::Runtime::new().unwrap();
    track_all_threads();
    let upload = rt.block_on(upload(len, true));
    let heap = stop_tracking();
    drop(rt);
    let seen = &upload.seen;
    assert_eq!(upload.client, Ok(200), "{len}: {seen:#?}");
    assert_eq!(seen.len(), 3, "{len}: {seen:#?}");
    let last = seen.last().unwrap();
    assert_eq!(last.read, len);
    assert_eq!(last.sha256.as_deref(), Some(upload.hash.as_str()));
    assert_eq!(last.content_length, Some(len.to_string()));
    heap
}

#[test]
fn a_256_mib_upload_is_retried_through_the_proxy_in_bounded_memory() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Warm up: one-time allocations (runtime, thread-locals) out of the way.
    measured(4 * MIB);
    let hwm_before = status_kib("VmHWM:").expect("VmHWM:");
    let small = measured(64 * MIB);
    let large = measured(256 * MIB);
    let hwm_growth = (status_kib("VmHWM:").expect("VmHWM:") - hwm_before) / 1024;
    eprintln!("heap: 64 MiB {small:?}; 256 MiB {large:?}; peak RSS growth {hwm_growth} MiB");
    // Client, proxy and upstream together: hyper's buffers, the 64 KiB
    // kept in memory, and at most 2 MiB of frames waiting for the spill
    // writer, whatever the size of the body. (Measured: 3.5 to 5 MiB for
    // both sizes, as the writer keeps up more or less.)
    for heap in [small, large] {
        assert!(heap.peak < 8 * MIB as usize, "heap {small:?} / {large:?}");
    }
    assert!(
        large.peak.abs_diff(small.peak) < 3 * MIB as usize,
        "the heap grew with the body: {small:?} -> {large:?}"
    );
    assert!(
        hwm_growth < 96,
        "peak RSS grew by {hwm_growth} MiB for a 256 MiB upload"
    );
}

#[test]
fn without_the_spill_the_proxy_answers_502_and_nothing_partial_is_accepted() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upload = rt.block_on(upload(64 * MIB, false));
    let seen = &upload.seen;
    assert_eq!(upload.answered, vec![502], "{seen:#?}");
    match &upload.client {
        Ok(status) => assert_eq!(*status, 502),
        // The proxy answered before reading the rest, and closed.
        Err(err) => assert!(err.contains("BodyWrite") || err.contains("Closed"), "{err}"),
    }
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert!(seen[0].sha256.is_none() && seen[0].read < 64 * MIB);
}
