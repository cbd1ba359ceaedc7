//! Requests that provably never left are retried whatever their method
//! (issue #19, part 1): POSTs through `ReplayLayer` + `tower::retry`
//! (`RetryPolicy`, defaults but for short waits) + a hyper-util client,
//! against real servers on 127.0.0.1:
//!
//! - the first connection refused by the kernel (a closed port), or the
//!   connector failing once: the POST arrives exactly once;
//! - an HTTP/2 server (the `h2` crate's) that resets the first stream with
//!   `REFUSED_STREAM`, and one (raw frames) that answers the first stream's
//!   `HEADERS` with `GOAWAY(last_stream_id = 0)`: retried, one arrival;
//! - a POST whose connection drops mid-body: not retried, the server saw
//!   one partial request and the caller gets the error (unless
//!   `retry_non_idempotent`).
//!
//! Each case also runs with `retry_unsent(false)`, which must hand the
//! caller the failure: what proves the retry is the policy's doing.
//!
//! The client connects where the test says, whatever the URI: the first
//! connection to the misbehaving place, every later one to the real server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayLayer};
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::{sha256, test_file};
use mmap_body_devkit::harness::chain;
use mmap_body_devkit::BoxError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

use crate::fault_matrix::{Proto, MIB, REQUEST_LIMIT};

/// The upload: big enough that a mid-body drop is mid-body.
const LEN: u64 = 8 * MIB;

/// Where the client's first connection goes.
#[derive(Debug, Clone, Copy)]
enum First {
    /// A port nothing listens on: the kernel refuses the connection.
    Closed,
    /// Nowhere: the connector fails with an error of its own.
    Fails,
    /// This address (a misbehaving server).
    To(SocketAddr),
    /// The real server, like every later connection.
    Server,
}

/// A hyper-util client whose connections go to `first`, then to `server`;
/// and the number of connections it opened.
fn client(
    proto: Proto,
    first: First,
    server: SocketAddr,
) -> (
    Client<
        impl hyper_util::client::legacy::connect::Connect + Clone,
        mmap_body::ReplayBody<MmapBody>,
    >,
    Arc<AtomicUsize>,
) {
    let connects = Arc::new(AtomicUsize::new(0));
    let count = connects.clone();
    let closed = closed_port();
    let connector = tower::service_fn(move |_: Uri| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let to = match (n, first) {
                (0, First::Closed) => closed,
                (0, First::Fails) => {
                    return Err::<TokioIo<TcpStream>, BoxError>(
                        "the test's connector fails its first connection".into(),
                    )
                }
                (0, First::To(addr)) => addr,
                _ => server,
            };
            let stream = TcpStream::connect(to).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    });
    let mut builder = Client::builder(TokioExecutor::new());
    if proto == Proto::H2 {
        builder.http2_only(true);
    }
    (builder.build(connector), connects)
}

/// A port on 127.0.0.1 that was just free: connecting to it is refused.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// A POST of the test file through the stack; the response's status, or
/// the error's chain.
async fn post(
    proto: Proto,
    first: First,
    server: SocketAddr,
    policy: RetryPolicy,
) -> (Result<u16, String>, usize, String) {
    let file = test_file(LEN);
    let (client, connects) = client(proto, first, server);
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(
            policy.backoff(Duration::from_millis(5), Duration::from_millis(20)),
        ))
        .service(client);
    // SAFETY: the test owns the file and nothing changes it.
    let body = unsafe { MmapBody::open(&file.path) }.expect("open");
    let request = Request::post(format!("http://{server}/upload"))
        .version(proto.version())
        .body(body)
        .expect("request");
    let result = tokio::time::timeout(REQUEST_LIMIT, service.oneshot(request))
        .await
        .expect("the request ended in time");
    let result = match result {
        Ok(res) => {
            let status = res.status().as_u16();
            drain(res).await;
            Ok(status)
        }
        Err(err) => Err(chain(&*err)),
    };
    (result, connects.load(Ordering::SeqCst), file.sha256)
}

async fn drain(res: Response<Incoming>) {
    use http_body_util::BodyExt;
    let _ = res.into_body().collect().await;
}

/// What `Faulty` saw: (method, bytes read, whole body's SHA-256).
fn arrivals(server: &Faulty) -> Vec<(String, u64, Option<String>)> {
    server
        .seen()
        .into_iter()
        .map(|s| (s.method, s.read, s.sha256))
        .collect()
}

async fn refused_connection_is_retried(proto: Proto) {
    let server = Faulty::start([]).await;
    let (result, connects, sha) =
        post(proto, First::Closed, server.addr, RetryPolicy::default()).await;
    assert_eq!(result, Ok(200));
    assert_eq!(connects, 2, "one refused connection, one that worked");
    assert_eq!(arrivals(&server), [("POST".into(), LEN, Some(sha))]);

    let server = Faulty::start([]).await;
    let off = RetryPolicy::default().retry_unsent(false);
    let (result, connects, _) = post(proto, First::Closed, server.addr, off).await;
    let err = result.expect_err("without retry_unsent the caller gets the refusal");
    assert!(err.contains("refused"), "{err}");
    assert_eq!((connects, server.seen().len()), (1, 0));
}

#[tokio::test]
async fn h1_post_whose_connection_was_refused_arrives_once() {
    refused_connection_is_retried(Proto::H1).await;
}

#[tokio::test]
async fn h2_post_whose_connection_was_refused_arrives_once() {
    refused_connection_is_retried(Proto::H2).await;
}

#[tokio::test]
async fn post_whose_connector_failed_arrives_once() {
    // Not an ECONNREFUSED: only hyper-util's `is_connect()` says so.
    let server = Faulty::start([]).await;
    let (result, connects, sha) =
        post(Proto::H1, First::Fails, server.addr, RetryPolicy::default()).await;
    assert_eq!(result, Ok(200));
    assert_eq!(connects, 2);
    assert_eq!(arrivals(&server), [("POST".into(), LEN, Some(sha))]);

    let server = Faulty::start([]).await;
    let off = RetryPolicy::default().retry_unsent(false);
    let (result, _, _) = post(Proto::H1, First::Fails, server.addr, off).await;
    let err = result.expect_err("not retried");
    assert!(err.contains("fails its first connection"), "{err}");
    assert!(server.seen().is_empty());
}

async fn dropped_mid_body(proto: Proto) {
    // The connection closes after 1 MiB of the body: the server may have
    // acted on it, so a POST is not sent again.
    let server = Faulty::start([Fault::DropAfter(MIB)]).await;
    let (result, connects, _) =
        post(proto, First::Server, server.addr, RetryPolicy::default()).await;
    let err = result.expect_err("a POST dropped mid-body is the caller's to decide");
    let seen = arrivals(&server);
    assert_eq!(
        seen.len(),
        1,
        "one partial request, no second: {seen:?} ({err})"
    );
    assert!(
        seen[0].1 >= MIB && seen[0].1 < LEN && seen[0].2.is_none(),
        "{seen:?}"
    );
    assert_eq!(connects, 1);

    // The same with `retry_non_idempotent`: sent again, whole.
    let server = Faulty::start([Fault::DropAfter(MIB)]).await;
    let (result, _, sha) = post(
        proto,
        First::Server,
        server.addr,
        RetryPolicy::default().retry_non_idempotent(true),
    )
    .await;
    assert_eq!(result, Ok(200));
    let seen = arrivals(&server);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1], ("POST".into(), LEN, Some(sha)));
}

#[tokio::test]
async fn h1_post_dropped_mid_body_is_not_retried() {
    dropped_mid_body(Proto::H1).await;
}

#[tokio::test]
async fn h2_post_dropped_mid_body_is_not_retried() {
    dropped_mid_body(Proto::H2).await;
}

// ------------------------------------------------------------ REFUSED_STREAM

/// One stream an [`refusing_server`] saw: refused, or read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stream {
    Refused,
    Read {
        method: String,
        len: u64,
        sha256: String,
    },
}

/// An HTTP/2 server (the `h2` crate, prior knowledge) on 127.0.0.1 that
/// resets the first `refuse` streams with `REFUSED_STREAM` without reading
/// them, then reads each stream's body whole and answers 200.
async fn refusing_server(refuse: usize) -> (SocketAddr, Arc<Mutex<Vec<Stream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let streams = log.clone();
    tokio::spawn(async move {
        let refused = Arc::new(AtomicUsize::new(0));
        while let Ok((socket, _)) = listener.accept().await {
            let (log, refused) = (log.clone(), refused.clone());
            tokio::spawn(async move {
                let mut conn = h2::server::Builder::new()
                    .initial_window_size(8 << 20)
                    .initial_connection_window_size(16 << 20)
                    .handshake::<_, Bytes>(socket)
                    .await
                    .expect("h2 handshake");
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    if refused.fetch_add(1, Ordering::SeqCst) < refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        log.lock().unwrap().push(Stream::Refused);
                        continue;
                    }
                    let log = log.clone();
                    tokio::spawn(async move {
                        let method = req.method().to_string();
                        let mut body = req.into_body();
                        let mut all = BytesMut::new();
                        while let Some(Ok(data)) = body.data().await {
                            let _ = body.flow_control().release_capacity(data.len());
                            all.extend_from_slice(&data);
                        }
                        log.lock().unwrap().push(Stream::Read {
                            method,
                            len: all.len() as u64,
                            sha256: sha256(&all),
                        });
                        let res = Response::new(());
                        let _ = respond.send_response(res, true);
                    });
                }
            });
        }
    });
    (addr, streams)
}

#[tokio::test]
async fn h2_post_whose_stream_was_refused_arrives_once() {
    let (server, streams) = refusing_server(1).await;
    let (result, connects, sha) =
        post(Proto::H2, First::Server, server, RetryPolicy::default()).await;
    assert_eq!(result, Ok(200));
    let read = Stream::Read {
        method: "POST".into(),
        len: LEN,
        sha256: sha,
    };
    assert_eq!(*streams.lock().unwrap(), [Stream::Refused, read]);
    assert_eq!(
        connects, 1,
        "the retry is a new stream on the same connection"
    );

    let (server, streams) = refusing_server(1).await;
    let off = RetryPolicy::default().retry_unsent(false);
    let (result, _, _) = post(Proto::H2, First::Server, server, off).await;
    let err = result.expect_err("not retried");
    assert!(err.contains("refused"), "{err}");
    assert_eq!(*streams.lock().unwrap(), [Stream::Refused]);
}

// ------------------------------------------------------------------- GOAWAY

/// What the [`goaway_server`] saw on its one connection.
#[derive(Debug, Default, Clone, Copy)]
struct GoAwaySeen {
    headers: usize,
    data_bytes: u64,
}

/// A raw HTTP/2 endpoint on 127.0.0.1 for one connection: it reads the
/// preface, sends its (empty) SETTINGS and acknowledges the client's, and
/// answers the first `HEADERS` frame with `GOAWAY(last_stream_id = 0,
/// NO_ERROR)`: that stream, and any after it, were never processed. It then
/// reads what still comes until the client closes (at most 5 s).
async fn goaway_server() -> (SocketAddr, Arc<Mutex<GoAwaySeen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(GoAwaySeen::default()));
    let log = seen.clone();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut preface = [0; 24];
        socket.read_exact(&mut preface).await.expect("preface");
        assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        socket
            .write_all(&frame(0x4, 0, 0, &[]))
            .await
            .expect("settings");
        let mut went_away = false;
        let read = async {
            loop {
                let mut head = [0; 9];
                if socket.read_exact(&mut head).await.is_err() {
                    return;
                }
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let (kind, flags) = (head[3], head[4]);
                let mut payload = vec![0; len];
                if socket.read_exact(&mut payload).await.is_err() {
                    return;
                }
                match kind {
                    // SETTINGS, not an ACK: acknowledge it.
                    0x4 if flags & 0x1 == 0 => {
                        let _ = socket.write_all(&frame(0x4, 0x1, 0, &[])).await;
                    }
                    0x1 => {
                        log.lock().unwrap().headers += 1;
                        if !went_away {
                            went_away = true;
                            let mut goaway = [0u8; 8]; // last stream 0, NO_ERROR
                            goaway[..4].copy_from_slice(&0u32.to_be_bytes());
                            let _ = socket.write_all(&frame(0x7, 0, 0, &goaway)).await;
                        }
                    }
                    0x0 => log.lock().unwrap().data_bytes += len as u64,
                    _ => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    });
    (addr, seen)
}

/// An HTTP/2 frame: its 9-byte header and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn h2_post_answered_with_goaway_below_its_stream_arrives_once() {
    let server = Faulty::start([]).await;
    let (goaway, seen) = goaway_server().await;
    let (result, connects, sha) = post(
        Proto::H2,
        First::To(goaway),
        server.addr,
        RetryPolicy::default(),
    )
    .await;
    assert_eq!(result, Ok(200));
    assert_eq!(
        seen.lock().unwrap().headers,
        1,
        "the first attempt reached the GOAWAY server"
    );
    assert_eq!(connects, 2);
    assert_eq!(arrivals(&server), [("POST".into(), LEN, Some(sha))]);

    let server = Faulty::start([]).await;
    let (goaway, seen) = goaway_server().await;
    let off = RetryPolicy::default().retry_unsent(false);
    let (result, _, _) = post(Proto::H2, First::To(goaway), server.addr, off).await;
    let err = result.expect_err("not retried");
    assert_eq!(seen.lock().unwrap().headers, 1, "{err}");
    assert!(server.seen().is_empty(), "{err}");
}
