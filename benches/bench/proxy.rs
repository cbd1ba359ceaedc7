//! The proxy cases (feature `spill`): the child process runs an HTTP/1.1
//! proxy (a hyper server whose handler forwards the incoming body with a
//! hyper-util client, as an axum handler would) and a client that uploads
//! the file to it with `MmapBody`; the proxy forwards to the bench's sink.
//!
//! - `proxy-plain`: the incoming body forwarded as it is: no replay.
//! - `proxy-spill`: through `ReplayLayer::new(64 KiB).spill_to_disk(..)` +
//!   `RetryLayer`: everything past 64 KiB is recorded on disk as it goes.
//! - `proxy-replay`: the same, and the sink answers the first attempt `503`
//!   after reading all of it, so the second attempt is sent from the
//!   recording (64 KiB from memory, the rest mapped from the spill file).
//!   The two attempts are timed apart.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayBody, ReplayLayer};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

use mmap_body_devkit::BoxError;

/// How the proxy forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Plain,
    Spill,
    Replay,
}

/// What one upload through the proxy saw: the sink's answer, and for
/// [`Mode::Replay`] the seconds of each attempt.
pub(crate) struct Outcome {
    pub answer: String,
    pub attempts: Option<(f64, f64)>,
}

fn client<B>() -> Client<HttpConnector, B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Starts the proxy on 127.0.0.1, forwarding to `sink`; returns its
/// address and the start times of the attempts it sends.
async fn start(
    mode: Mode,
    sink: SocketAddr,
    size: u64,
) -> Result<(SocketAddr, Arc<Mutex<Vec<Instant>>>), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let starts = Arc::new(Mutex::new(Vec::new()));
    let log = starts.clone();
    let path = if mode == Mode::Replay {
        mmap_body_devkit::counting::FAIL_ONCE_PATH
    } else {
        "/upload"
    };
    let upstream: http::Uri = format!("http://{sink}{path}").parse()?;
    let plain = client::<Incoming>();
    let stack = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 << 10).spill_to_disk(2 * size + (1 << 20)))
        .layer(RetryLayer::new(
            RetryPolicy::default().backoff(Duration::from_millis(1), Duration::from_millis(1)),
        ))
        .map_request(move |req: http::Request<ReplayBody<Incoming>>| {
            log.lock().unwrap().push(Instant::now());
            req
        })
        .service(client::<ReplayBody<Incoming>>());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (plain, stack, upstream) = (plain.clone(), stack.clone(), upstream.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let (plain, stack) = (plain.clone(), stack.clone());
                    let (mut parts, body) = req.into_parts();
                    parts.uri = upstream.clone();
                    let req = http::Request::from_parts(parts, body);
                    async move {
                        let res = match mode {
                            Mode::Plain => plain.request(req).await.map_err(BoxError::from),
                            Mode::Spill | Mode::Replay => stack.oneshot(req).await,
                        };
                        let res = match res {
                            Ok(res) => {
                                let (parts, body) = res.into_parts();
                                let bytes = body.collect().await.map(|c| c.to_bytes());
                                let bytes = bytes.unwrap_or_else(|e| Bytes::from(e.to_string()));
                                http::Response::from_parts(parts, Full::new(bytes))
                            }
                            Err(err) => http::Response::builder()
                                .status(502)
                                .body(Full::new(Bytes::from(err.to_string())))
                                .unwrap(),
                        };
                        Ok::<_, std::convert::Infallible>(res)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, starts))
}

/// Uploads the file at `path` with `MmapBody` through a fresh proxy to
/// `sink`.
pub(crate) async fn upload(
    mode: Mode,
    sink: SocketAddr,
    path: &Path,
    size: u64,
) -> Result<Outcome, BoxError> {
    let (proxy, starts) = start(mode, sink, size).await?;
    // SAFETY: the bench owns the file in its temp dir and nothing changes
    // it while it is mapped.
    let body = unsafe { MmapBody::open(path)? };
    let request = http::Request::put(format!("http://{proxy}/upload")).body(body)?;
    let response = client::<MmapBody>().request(request).await?;
    let ended = Instant::now();
    let status = response.status();
    let text = response.into_body().collect().await?.to_bytes();
    let answer = String::from_utf8_lossy(&text).into_owned();
    if !status.is_success() {
        return Err(format!("the proxy answered {status}: {answer}").into());
    }
    let starts = starts.lock().unwrap().clone();
    let attempts = match (mode, starts.as_slice()) {
        (Mode::Replay, [first, second]) => Some((
            second.duration_since(*first).as_secs_f64(),
            ended.duration_since(*second).as_secs_f64(),
        )),
        (Mode::Replay, other) => {
            return Err(format!("expected 2 attempts, the proxy sent {}", other.len()).into())
        }
        _ => None,
    };
    Ok(Outcome { answer, attempts })
}
