//! Real servers and clients on 127.0.0.1: the hashing server (and what it
//! saw, read back from its answer), `serve` for a handler of a test's own,
//! the pausing server, and the hyper-util client. Their TLS twins are in
//! [`tls`](crate::tls).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::files::hex;
use crate::BoxError;

/// What the server saw of one request, sent back in response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The request's HTTP version (`HTTP/1.1`, `HTTP/2.0`).
    pub version: String,
    /// Its `Content-Length` header.
    pub content_length: Option<u64>,
    /// Its `Transfer-Encoding` header.
    pub transfer_encoding: Option<String>,
    /// Body bytes read.
    pub len: u64,
    /// Their SHA-256, in lower-case hex.
    pub sha256: String,
    /// Its trailers, as [`trailer_list`] writes them.
    pub trailers: Option<String>,
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on 127.0.0.1; every request
/// body is read to the end, hashed, and described in the answer (see
/// [`hash_request`]).
pub async fn hashing_server() -> SocketAddr {
    serve(|req| async move { Ok(hash_request(req).await) }).await
}

/// hyper-util's auto (HTTP/1.1 + h2c) connection builder, with windows big
/// enough for HTTP/2 not to be the bottleneck.
pub fn auto_builder() -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(1 << 20);
    builder
}

/// Serves `handler` on 127.0.0.1 with [`auto_builder`] (over TLS:
/// [`serve_tls`](crate::tls::serve_tls)).
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
                let service = hyper::service::service_fn(handler);
                let _ = auto_builder()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Serves an axum `app` on 127.0.0.1 with `TCP_NODELAY`, its handlers able
/// to ask for the peer's address (`ConnectInfo<SocketAddr>`), as a proxy
/// in front of real clients is.
pub async fn serve_axum(app: axum::Router) -> SocketAddr {
    use axum::serve::ListenerExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Trailers as sorted `name=value` pairs joined by commas.
pub fn trailer_list(trailers: &HeaderMap) -> String {
    let mut pairs: Vec<String> = trailers
        .iter()
        .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// Reads the body of `req` to its end, hashes it, and describes it in the
/// headers of a 200 (or a 400 if the body failed; see [`received`]), whose
/// body says the same for a person: `<framing> received=<bytes>
/// sha256=<hex>` (see [`framing`](crate::counting::framing)).
pub async fn hash_request(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let version = format!("{:?}", req.version());
    let framing = crate::counting::framing(req.version(), req.headers());
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
                        trailers = Some(trailer_list(&t));
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
        .header("x-len", len.to_string());
    if let Some(cl) = content_length {
        res = res.header("x-content-length", cl);
    }
    if let Some(te) = transfer_encoding {
        res = res.header("x-transfer-encoding", te);
    }
    if let Some(t) = trailers {
        res = res.header("x-trailers", t);
    }
    let sha256 = hex(&hasher.finalize());
    let text = format!("{framing} received={len} sha256={sha256}");
    res.header("x-sha256", sha256)
        .body(Full::new(Bytes::from(text)))
        .unwrap()
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

/// The builder of [`client`] (and of `tls::tls_client`): HTTP/2 only, with
/// 8 MiB stream and 16 MiB connection windows, when `http2` is set.
pub fn client_builder(http2: bool) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    if http2 {
        builder
            .http2_only(true)
            .http2_initial_stream_window_size(8 << 20)
            .http2_initial_connection_window_size(16 << 20);
    }
    builder
}

/// A hyper-util legacy client speaking HTTP/1.1, or HTTP/2 with prior
/// knowledge when `http2` is set.
pub fn client<B>(http2: bool) -> Client<HttpConnector, B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    client_builder(http2).build_http()
}

// ---------------------------------------------------------------- pausing

/// What the pausing server saw of one upload.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upload {
    /// Body bytes read so far.
    pub read: u64,
    /// The body has ended (cleanly or not).
    pub ended: bool,
    /// The body ended cleanly (not reset, not cut off).
    pub complete: bool,
}

/// A [`pausing_server`] (or its TLS twin) and the handles a test drives it
/// with.
#[derive(Debug)]
pub struct Pausing {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Fires once the first upload has read `pause_at` bytes.
    paused: oneshot::Receiver<()>,
    /// Lets the paused upload read on.
    go: oneshot::Sender<()>,
    /// Every upload, in the order they arrived, updated as they are read.
    pub log: Arc<Mutex<Vec<Upload>>>,
}

impl Pausing {
    /// Waits (at most 30 s) until the server has paused, lets the client
    /// fill every window and buffer (200 ms), calls `change`, and lets the
    /// server read on; returns the log.
    pub async fn change_while_paused(self, change: impl FnOnce()) -> Arc<Mutex<Vec<Upload>>> {
        tokio::time::timeout(std::time::Duration::from_secs(30), self.paused)
            .await
            .expect("the server paused in time")
            .expect("the server paused");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        change();
        self.go.send(()).expect("the server waits");
        self.log
    }
}

/// A server (HTTP/1.1 and HTTP/2) that reads `pause_at` bytes of its first
/// upload, says so, waits to be told to go on, then reads on; it answers
/// 200 with the number of bytes it read, and logs every upload. Its TLS
/// twin is [`pausing_server_tls`](crate::tls::pausing_server_tls).
pub async fn pausing_server(pause_at: u64) -> Pausing {
    let (handler, pausing) = pausing(pause_at);
    pausing(serve(move |req| handler.clone().handle(req)).await)
}

/// The pausing server's handler, shared by [`pausing_server`] and its TLS
/// twin: one clone a request, all clones with the same gate and log.
#[derive(Clone)]
pub(crate) struct PausingHandler {
    pause_at: u64,
    /// Taken by the first upload: whom to tell it paused, and what to wait on.
    gate: Arc<Mutex<Option<Gate>>>,
    log: Arc<Mutex<Vec<Upload>>>,
}

/// Says "paused" and waits for "go".
type Gate = (oneshot::Sender<()>, oneshot::Receiver<()>);

/// The handler of a pausing server that pauses at `pause_at`, and what makes
/// its [`Pausing`] once it listens at an address.
pub(crate) fn pausing(pause_at: u64) -> (PausingHandler, impl FnOnce(SocketAddr) -> Pausing) {
    let (paused_tx, paused) = oneshot::channel::<()>();
    let (go, go_rx) = oneshot::channel::<()>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let handler = PausingHandler {
        pause_at,
        gate: Arc::new(Mutex::new(Some((paused_tx, go_rx)))),
        log: log.clone(),
    };
    let pausing = move |addr| Pausing {
        addr,
        paused,
        go,
        log,
    };
    (handler, pausing)
}

impl PausingHandler {
    /// Reads one upload (pausing if it is the first), logging it as it goes.
    pub(crate) async fn handle(
        self,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let PausingHandler {
            pause_at,
            gate,
            log: seen,
        } = self;
        let index = {
            let mut seen = seen.lock().unwrap();
            seen.push(Upload::default());
            seen.len() - 1
        };
        let update = |f: &dyn Fn(&mut Upload)| f(&mut seen.lock().unwrap()[index]);
        let mut body = req.into_body();
        let mut read = 0u64;
        let mut complete = true;
        let mut waiting = gate.lock().unwrap().take();
        loop {
            match body.frame().await {
                None => break,
                Some(Err(_)) => {
                    complete = false;
                    break;
                }
                Some(Ok(frame)) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    update(&|u| u.read = read);
                }
            }
            if read >= pause_at {
                if let Some((paused, go)) = waiting.take() {
                    let _ = paused.send(());
                    let _ = go.await;
                }
            }
        }
        update(&|u| {
            u.ended = true;
            u.complete = complete;
        });
        Ok(Response::new(Full::new(Bytes::from(read.to_string()))))
    }
}
