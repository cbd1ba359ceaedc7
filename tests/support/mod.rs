//! Shared pieces of the integration tests: a real hyper server on 127.0.0.1
//! that hashes what it receives, a hyper-util client, test files, and a
//! counting allocator that a test binary can install.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

mod alloc;
pub mod bodies;
pub mod faulty;
#[allow(unused_imports)] // only the binaries that install the allocator use it
pub use alloc::*;

// ---------------------------------------------------------------- files

/// A temp file of `len` pseudo-random bytes, removed with its directory.
pub struct TestFile {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub len: u64,
    pub sha256: String,
}

/// Deterministic, incompressible bytes: xorshift64*.
pub fn pattern(seed: u64, buf: &mut [u8]) -> u64 {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    x
}

pub fn test_file(len: u64) -> TestFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("body.bin");
    let mut file = std::fs::File::create(&path).expect("create");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut seed = len ^ 0x9e37_79b9_7f4a_7c15;
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        seed = pattern(seed, &mut buf[..n]);
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    file.sync_all().expect("sync");
    TestFile {
        dir,
        path,
        len,
        sha256: hex(&hasher.finalize()),
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------- server

/// What the server saw of one request, sent back in response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub version: String,
    pub content_length: Option<u64>,
    pub transfer_encoding: Option<String>,
    pub len: u64,
    pub sha256: String,
    pub trailers: Option<String>,
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on 127.0.0.1; every request
/// body is read to the end, hashed, and described in the response headers.
pub async fn hashing_server() -> SocketAddr {
    serve(|req| async move { Ok(hash_request(req).await) }).await
}

/// Serves `handler` on 127.0.0.1 with hyper-util's auto (h1 + h2c) builder
/// and windows big enough for HTTP/2 not to be the bottleneck.
pub async fn serve<F, Fut, B>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http2()
                    .initial_stream_window_size(8 << 20)
                    .initial_connection_window_size(16 << 20)
                    .max_frame_size(1 << 20);
                let service = hyper::service::service_fn(handler);
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

pub async fn hash_request(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let version = format!("{:?}", req.version());
    let header = |name: http::header::HeaderName| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("<bad>").to_owned())
    };
    let content_length = header(http::header::CONTENT_LENGTH);
    let transfer_encoding = header(http::header::TRANSFER_ENCODING);
    let mut body = req.into_body();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => {
                    hasher.update(&data);
                    len += data.len() as u64;
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        let mut pairs: Vec<String> = t
                            .iter()
                            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("")))
                            .collect();
                        pairs.sort();
                        trailers = Some(pairs.join(","));
                    }
                }
            },
            Err(err) => {
                return Response::builder()
                    .status(400)
                    .body(Full::new(Bytes::from(format!("body error: {err}"))))
                    .unwrap()
            }
        }
    }
    let mut res = Response::builder()
        .header("x-version", version)
        .header("x-len", len.to_string())
        .header("x-sha256", hex(&hasher.finalize()));
    if let Some(cl) = content_length {
        res = res.header("x-content-length", cl);
    }
    if let Some(te) = transfer_encoding {
        res = res.header("x-transfer-encoding", te);
    }
    if let Some(t) = trailers {
        res = res.header("x-trailers", t);
    }
    res.body(Full::new(Bytes::new())).unwrap()
}

/// Reads back what [`hash_request`] put in the response headers.
pub fn received<B>(res: &Response<B>) -> Received {
    let get = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(res.status(), 200, "server answered {}", res.status());
    Received {
        version: get("x-version").expect("x-version"),
        content_length: get("x-content-length").map(|v| v.parse().unwrap()),
        transfer_encoding: get("x-transfer-encoding"),
        len: get("x-len").expect("x-len").parse().unwrap(),
        sha256: get("x-sha256").expect("x-sha256"),
        trailers: get("x-trailers"),
    }
}

// ---------------------------------------------------------------- client

/// A hyper-util legacy client speaking HTTP/1.1, or HTTP/2 with prior
/// knowledge when `http2` is set.
pub fn client<B>(http2: bool) -> Client<HttpConnector, B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut builder = Client::builder(TokioExecutor::new());
    if http2 {
        builder
            .http2_only(true)
            .http2_initial_stream_window_size(8 << 20)
            .http2_initial_connection_window_size(16 << 20);
    }
    builder.build_http()
}

/// The first [`mmap_body::Error`] in an error's source chain.
pub fn find_mmap_error<'a>(
    mut err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a mmap_body::Error> {
    loop {
        if let Some(found) = err.downcast_ref::<mmap_body::Error>() {
            return Some(found);
        }
        err = err.source()?;
    }
}

// ---------------------------------------------------------------- flaky server

/// What the flaky server does with one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Read the whole body, hash it, answer 200 (as [`hash_request`]).
    Succeed,
    /// Read this many body bytes (or all, if fewer), then drop the connection.
    DropAfter(u64),
    /// Read this many body bytes (or all, if fewer), then answer this status
    /// with `Connection: close` and, if given, `Retry-After`.
    StatusAfter(u16, u64, Option<&'static str>),
}

/// One request the flaky server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub content_length: Option<String>,
    pub fault: Fault,
}

/// A hyper server on 127.0.0.1 that misbehaves on purpose, following a
/// script (then succeeding), and logs every request it sees.
#[derive(Clone)]
pub struct Flaky {
    pub addr: SocketAddr,
    script: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Fault>>>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl Flaky {
    pub async fn start(script: impl IntoIterator<Item = Fault>) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let flaky = Flaky {
            addr: listener.local_addr().expect("addr"),
            script: std::sync::Arc::new(std::sync::Mutex::new(script.into_iter().collect())),
            seen: Default::default(),
        };
        let server = flaky.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let kill = std::sync::Arc::new(tokio::sync::Notify::new());
                    let killer = kill.clone();
                    let service = hyper::service::service_fn(move |req| {
                        server.clone().handle(req, killer.clone())
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    // Dropping the connection future closes the socket.
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.notified() => {}
                    }
                });
            }
        });
        flaky
    }

    pub fn uri(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn handle(
        self,
        req: Request<Incoming>,
        kill: std::sync::Arc<tokio::sync::Notify>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let fault = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Fault::Succeed);
        self.seen.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            content_length: req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .map(|v| v.to_str().unwrap().to_owned()),
            fault: fault.clone(),
        });
        let read_some = |limit: u64, mut body: Incoming| async move {
            let mut read = 0u64;
            while read < limit {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
                    _ => break,
                }
            }
            read
        };
        match fault {
            Fault::Succeed => Ok(hash_request(req).await),
            Fault::DropAfter(limit) => {
                read_some(limit, req.into_body()).await;
                kill.notify_one();
                std::future::pending().await
            }
            Fault::StatusAfter(status, limit, retry_after) => {
                read_some(limit, req.into_body()).await;
                let mut res = Response::builder()
                    .status(status)
                    .header(http::header::CONNECTION, "close");
                if let Some(after) = retry_after {
                    res = res.header(http::header::RETRY_AFTER, after);
                }
                Ok(res
                    .body(Full::new(Bytes::from_static(b"try again")))
                    .unwrap())
            }
        }
    }
}

// ---------------------------------------------------------------- bodies

/// A streamed body that cannot be cloned and does not know its size: its
/// frames come one at a time, each after a `Pending`, then optional
/// trailers.
pub struct Streamed {
    frames: std::collections::VecDeque<Bytes>,
    trailers: Option<http::HeaderMap>,
    ready: bool,
}

impl Streamed {
    pub fn new(frames: impl IntoIterator<Item = Bytes>, trailers: Option<http::HeaderMap>) -> Self {
        Streamed {
            frames: frames.into_iter().collect(),
            trailers,
            ready: false,
        }
    }

    /// `len` pseudo-random bytes in frames of `frame` bytes, and their hash.
    pub fn random(len: usize, frame: usize) -> (Streamed, String) {
        let mut bytes = vec![0u8; len];
        pattern(len as u64 + 7, &mut bytes);
        let hash = sha256(&bytes);
        let bytes = Bytes::from(bytes);
        let frames = (0..len)
            .step_by(frame.max(1))
            .map(|at| bytes.slice(at..(at + frame).min(len)));
        (Streamed::new(frames, None), hash)
    }

    pub fn with_trailers(mut self, trailers: http::HeaderMap) -> Self {
        self.trailers = Some(trailers);
        self
    }
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        use std::task::Poll;
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = false;
        if let Some(data) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(data))));
        }
        Poll::Ready(
            self.trailers
                .take()
                .map(|t| Ok(hyper::body::Frame::trailers(t))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.trailers.is_none()
    }
}
