//! Resumable uploads end to end (issue #19, part 2), this crate on both
//! sides: `UploadLayer` (`ReplayLayer` + `RetryLayer(RetryPolicy)` +
//! `ResumeLayer` + `TrackProgressLayer`, in one call) on a
//! hyper-util client, against a hyper server whose handler answers with
//! `resume::Uploads`, over HTTP/1.1 and HTTP/2 on 127.0.0.1. The server
//! drops every connection once its uploads have received a set number of
//! bytes (a real drop: the connection's future is dropped mid-body), and
//! logs every request with the body bytes it read; a completed upload is
//! answered with the SHA-256 of the stored file.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mmap_body::progress::Progress;
use mmap_body::resume::{Handled, Limits, ResumeLayer, Resumed, Uploads, UPLOAD_OFFSET};
use mmap_body::retry::RetryPolicy;
use mmap_body::{ErrorKind, MmapBody, ReplayLayer, UploadLayer};
use mmap_body_devkit::bodies::ExactStreamed;
use mmap_body_devkit::files::{change, sha256, test_file, Change};
use mmap_body_devkit::harness::chain;
use mmap_body_devkit::server::{auto_builder, client};
use mmap_body_devkit::BoxError;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::{ServiceBuilder, ServiceExt};

use crate::fault_matrix::{Proto, GIB, MIB};

mod dialects;
mod hostile;
mod hostile_store;
mod tus;

/// No upload of this module takes longer, all attempts together.
const LIMIT: Duration = Duration::from_secs(120);

/// One request the server saw: method, path, `Upload-Offset`, body bytes
/// read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: Method,
    path: String,
    offset: Option<u64>,
    read: u64,
}

/// What the server does at its trip point, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtTrip {
    /// Drop every connection.
    Drop,
    /// Drop every connection and forget every upload (a server that lost
    /// its state).
    DropAndForget,
}

/// The test server and what it saw.
struct Server {
    addr: SocketAddr,
    uploads: Uploads,
    seen: Arc<Mutex<Vec<Seen>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests of one method.
    fn of(&self, method: Method) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method)
            .collect()
    }
}

/// What runs at the trip point.
type Hook = Box<dyn FnOnce() + Send>;

/// Shared by the handler and the connections.
#[derive(Clone)]
struct Ctx {
    uploads: Uploads,
    resumable: bool,
    seen: Arc<Mutex<Vec<Seen>>>,
    trip: Option<(u64, AtTrip)>,
    tripped: Arc<AtomicBool>,
    kill: Arc<Notify>,
    /// Runs when the trip point is passed, before the drop.
    on_trip: Arc<Mutex<Option<Hook>>>,
    ids: Arc<Mutex<Vec<String>>>,
    /// Answer offset queries with this offset instead of the real one.
    lie: Arc<Mutex<Option<u64>>>,
    /// How many `Completed` uploads reached the handler.
    completed: Arc<AtomicUsize>,
    /// Answer `OPTIONS` as the newest draft does: `Upload-Limit`, no
    /// `Accept-Patch`.
    newest_options: Arc<AtomicBool>,
}

/// Starts the server. `resumable: false` is a server that knows nothing of
/// the draft (no `Accept-Patch`; a creation is a plain upload to it).
async fn server(resumable: bool, trip: Option<(u64, AtTrip)>) -> (Server, Ctx) {
    server_with(resumable, trip, None).await
}

/// [`server`], its `Uploads` with these limits instead of the defaults.
async fn server_with(
    resumable: bool,
    trip: Option<(u64, AtTrip)>,
    limits: Option<Limits>,
) -> (Server, Ctx) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut uploads = Uploads::new(dir.path(), "/uploads/");
    if let Some(limits) = limits {
        uploads = uploads.limits(limits);
    }
    let ctx = Ctx {
        uploads: uploads.clone(),
        resumable,
        seen: Arc::default(),
        trip,
        tripped: Arc::default(),
        kill: Arc::default(),
        on_trip: Arc::default(),
        ids: Arc::default(),
        lie: Arc::default(),
        completed: Arc::default(),
        newest_options: Arc::default(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = ctx.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let ctx = accept.clone();
            tokio::spawn(async move {
                let kill = ctx.kill.clone();
                let service = hyper::service::service_fn(move |req| handle(ctx.clone(), req));
                let builder = auto_builder();
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = conn => {}
                    _ = kill.notified() => {}
                }
            });
        }
    });
    let server = Server {
        addr,
        uploads,
        seen: ctx.seen.clone(),
        _dir: dir,
    };
    (server, ctx)
}

/// Counts a request body's bytes into the log entry `index`, and trips the
/// server once its uploads have received the trip point's bytes.
struct Counted {
    inner: Incoming,
    ctx: Ctx,
    index: usize,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let index = self.index;
                self.ctx.seen.lock().unwrap()[index].read += data.len() as u64;
            }
            if let Some((at, what)) = self.ctx.trip {
                if self.ctx.uploads.received() >= at
                    && !self.ctx.tripped.swap(true, Ordering::SeqCst)
                {
                    if let Some(hook) = self.ctx.on_trip.lock().unwrap().take() {
                        hook();
                    }
                    if what == AtTrip::DropAndForget {
                        for id in self.ctx.ids.lock().unwrap().iter() {
                            let delete = Request::delete("/").body(Empty::<Bytes>::new()).unwrap();
                            let uploads = self.ctx.uploads.clone();
                            let id = id.clone();
                            // A DELETE needs no body: done at once.
                            let _ = futures_util::FutureExt::now_or_never(async move {
                                uploads.handle(&id, delete).await
                            });
                        }
                    }
                    self.ctx.kill.notify_waiters();
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

async fn handle(ctx: Ctx, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let index = {
        let mut seen = ctx.seen.lock().unwrap();
        seen.push(Seen {
            method: req.method().clone(),
            path: path.clone(),
            offset: req
                .headers()
                .get(UPLOAD_OFFSET)
                .and_then(|v| v.to_str().ok()?.parse().ok()),
            read: 0,
        });
        seen.len() - 1
    };
    let req = req.map(|inner| Counted {
        inner,
        ctx: ctx.clone(),
        index,
    });
    let lie = *ctx.lie.lock().unwrap();
    let handled = if let (Some(offset), true) = (lie, req.method() == Method::HEAD) {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::NO_CONTENT;
        res.headers_mut().insert(UPLOAD_OFFSET, offset.into());
        res.headers_mut()
            .insert("upload-complete", "?0".parse().unwrap());
        Handled::Respond(res)
    } else if let Some(id) = ctx.uploads.id_in(&path).map(str::to_owned) {
        ctx.uploads.handle(&id, req).await
    } else if req.method() == Method::OPTIONS {
        if ctx.resumable {
            let mut res = ctx.uploads.options();
            if ctx.newest_options.load(Ordering::SeqCst) {
                res.headers_mut().remove("accept-patch");
            }
            Handled::Respond(res)
        } else {
            Handled::Respond(Response::new(Full::new(Bytes::new())))
        }
    } else if ctx.resumable && Uploads::is_creation(&req) {
        let handled = ctx.uploads.create(req).await;
        if let Handled::Respond(res) = &handled {
            if let Some(location) = res.headers().get(http::header::LOCATION) {
                let id = location.to_str().unwrap().trim_start_matches("/uploads/");
                ctx.ids.lock().unwrap().push(id.to_owned());
            }
        }
        handled
    } else {
        // A plain upload: hash what arrived.
        let bytes = req.into_body().collect().await.map(|c| c.to_bytes());
        return Ok(match bytes {
            Ok(bytes) => hashed(&bytes),
            Err(_) => Response::new(Full::new(Bytes::new())),
        });
    };
    Ok(match handled {
        Handled::Respond(res) => res,
        Handled::Complete(done) => {
            ctx.completed.fetch_add(1, Ordering::SeqCst);
            match std::fs::read(done.path()) {
                Ok(bytes) if bytes.len() as u64 == done.len() => done.respond(hashed(&bytes)),
                // A completed upload whose file is gone or of another
                // length: the test that caused it fails on the 500.
                _ => {
                    let mut res = Response::new(Full::new(Bytes::from("stored upload lost")));
                    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    res
                }
            }
        }
    })
}

fn hashed(bytes: &[u8]) -> Response<Full<Bytes>> {
    Response::builder()
        .header("x-sha256", sha256(bytes))
        .header("x-len", bytes.len())
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Uploads `body` with `method` through the resumable stack; the answer's
/// status, stored SHA-256 and `Resumed`, or the error chain and, when
/// there is one, this crate's error kind.
async fn upload<B>(
    proto: Proto,
    server: &Server,
    method: Method,
    body: B,
    replay: ReplayLayer,
) -> Result<(StatusCode, Option<String>, Option<Resumed>), (String, Option<ErrorKind>)>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    upload_watched(proto, server, method, body, replay, Progress::new()).await
}

/// [`upload`], counting into `progress`, through `UploadLayer` (which puts
/// a `TrackProgressLayer` inside the `ResumeLayer`).
async fn upload_watched<B>(
    proto: Proto,
    server: &Server,
    method: Method,
    body: B,
    replay: ReplayLayer,
    progress: Progress,
) -> Result<(StatusCode, Option<String>, Option<Resumed>), (String, Option<ErrorKind>)>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    // The whole stack in one call: replay, retry, resume, progress.
    let stack = ServiceBuilder::new()
        .layer(
            UploadLayer::new()
                .replay(replay)
                .retry(
                    RetryPolicy::default()
                        .backoff(Duration::from_millis(5), Duration::from_millis(20)),
                )
                .resume(ResumeLayer::new()),
        )
        .service(client(proto == Proto::H2));
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}/files", server.addr))
        .version(proto.version())
        .body(body)
        .unwrap();
    request.extensions_mut().insert(progress);
    let outcome = tokio::time::timeout(LIMIT, stack.oneshot(request))
        .await
        .expect("the upload ended in time");
    match outcome {
        Ok(res) => {
            let resumed = res.extensions().get::<Resumed>().cloned();
            let sha = res
                .headers()
                .get("x-sha256")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok((res.status(), sha, resumed))
        }
        Err(err) => {
            let kind = mmap_body::Error::find_in(&*err).map(mmap_body::Error::kind);
            Err((chain(&*err), kind))
        }
    }
}

/// Uploads `file` with `MmapBody` (64 KiB cap) and checks that the server
/// stored it whole (200, SHA-256 equal); returns the `Resumed` answer.
async fn upload_whole(
    proto: Proto,
    server: &Server,
    method: Method,
    file: &mmap_body_devkit::files::TestFile,
) -> Option<Resumed> {
    // SAFETY: the test owns the file and nothing changes it.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();
    let (status, sha, resumed) = upload(proto, server, method, body, ReplayLayer::new(64 << 10))
        .await
        .expect("the upload completes");
    assert_eq!(
        (status, sha.as_deref()),
        (StatusCode::OK, Some(&*file.sha256))
    );
    resumed
}

async fn a_gib_dropped_at_700_mib_resumes(proto: Proto) {
    let file = test_file(GIB);
    let (server, _ctx) = server(true, Some((700 * MIB, AtTrip::Drop))).await;
    // SAFETY: the test owns the file and nothing changes it.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();
    // What a progress bar would show, sampled while the upload runs.
    let progress = Progress::new();
    let watched = progress.clone();
    let samples = tokio::spawn(async move {
        let mut samples = Vec::new();
        while watched.attempt() < 2 || watched.sent() < GIB {
            samples.push((watched.attempt(), watched.sent()));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples
    });
    let replay = ReplayLayer::new(64 << 10);
    let (status, sha, resumed) =
        upload_watched(proto, &server, Method::POST, body, replay, progress.clone())
            .await
            .expect("the upload completes");
    assert_eq!(
        (status, sha.as_deref()),
        (StatusCode::OK, Some(&*file.sha256))
    );
    let resumed = resumed.expect("the answer says where the upload went");
    let [first, at] = resumed.appends[..] else {
        panic!("two appends, the second resumed: {resumed:?}");
    };
    assert_eq!(first, 0);
    assert!((690 * MIB..=710 * MIB).contains(&at), "resumed at {at}");
    let patches = server.of(Method::PATCH);
    assert_eq!(patches.len(), 2, "{:?}", server.seen());
    assert_eq!(patches[1].offset, Some(at));
    assert_eq!(patches[1].read, GIB - at, "only the rest was sent again");
    let total = server.uploads.received();
    assert!(
        (GIB..GIB + 40 * MIB).contains(&total),
        "the server received {total} bytes in all: a full resend would be ~1.7 GiB"
    );
    let methods: Vec<Method> = server.seen().into_iter().map(|s| s.method).collect();
    let expected = [
        Method::OPTIONS,
        Method::POST,
        Method::PATCH,
        Method::HEAD,
        Method::PATCH,
    ];
    assert_eq!(methods, expected);
    // Progress: the second attempt counts from the server's offset, never
    // from 0, and the total of both attempts is what crossed the wire.
    let samples = tokio::time::timeout(Duration::from_secs(10), samples)
        .await
        .expect("the progress reached the end")
        .unwrap();
    assert_eq!((progress.attempt(), progress.sent()), (2, GIB));
    assert_eq!(progress.total(), Some(GIB));
    let second: Vec<u64> = samples.iter().filter(|s| s.0 == 2).map(|s| s.1).collect();
    assert!(second.iter().all(|&sent| sent >= at), "{second:?}");
    let in_all = progress.sent_in_all();
    assert!(
        (GIB..GIB + 64 * MIB).contains(&in_all),
        "{in_all} bytes written in all; the server received {total}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_a_gib_dropped_at_700_mib_sends_only_the_rest() {
    a_gib_dropped_at_700_mib_resumes(Proto::H1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_a_gib_dropped_at_700_mib_sends_only_the_rest() {
    a_gib_dropped_at_700_mib_resumes(Proto::H2).await;
}

#[tokio::test]
async fn a_streamed_body_resumes_from_its_spill_file() {
    for proto in [Proto::H1, Proto::H2] {
        let (body, sha) = ExactStreamed::random(64 * MIB as usize, 64 * 1024);
        let (server, _ctx) = server(true, Some((40 * MIB, AtTrip::Drop))).await;
        let spill = tempfile::tempdir().unwrap();
        let replay = ReplayLayer::new(64 << 10)
            .spill_to_disk(128 * MIB)
            .spill_dir(spill.path());
        let (status, got, resumed) = upload(proto, &server, Method::PUT, body, replay)
            .await
            .expect("the upload completes");
        assert_eq!((status, got), (StatusCode::OK, Some(sha)), "{proto:?}");
        let appends = resumed.unwrap().appends;
        assert_eq!(appends.len(), 2, "{proto:?}: {appends:?}");
        assert!(appends[1] > 30 * MIB, "{proto:?}: {appends:?}");
        let patches = server.of(Method::PATCH);
        assert_eq!(patches[1].read, 64 * MIB - appends[1], "{proto:?}");
    }
}

#[tokio::test]
async fn a_file_changed_between_attempts_is_not_resumed() {
    let file = test_file(64 * MIB);
    let (server, ctx) = server(true, Some((32 * MIB, AtTrip::Drop))).await;
    let path = file.path.clone();
    *ctx.on_trip.lock().unwrap() = Some(Box::new(move || change(&path, Change::Touch)));
    // SAFETY: the test changes the file on purpose; the body must notice.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();
    let (err, kind) = upload(
        Proto::H1,
        &server,
        Method::POST,
        body,
        ReplayLayer::new(64 << 10),
    )
    .await
    .expect_err("a changed file is not resumed");
    assert_eq!(kind, Some(ErrorKind::Modified), "{err}");
    assert_eq!(server.of(Method::PATCH).len(), 1, "{:?}", server.seen());
    assert!(
        server.of(Method::HEAD).is_empty(),
        "no resumption was tried"
    );
}

#[tokio::test]
async fn a_server_that_lost_the_upload_gets_all_of_it_again() {
    let file = test_file(64 * MIB);
    let (server, _ctx) = server(true, Some((32 * MIB, AtTrip::DropAndForget))).await;
    let resumed = upload_whole(Proto::H1, &server, Method::POST, &file).await;
    assert_eq!(
        resumed.unwrap().appends,
        [0, 0],
        "a new upload, from byte 0"
    );
    let mut methods: Vec<Method> = server.seen().into_iter().map(|s| s.method).collect();
    // The first PATCH is answered 404 (its upload deleted under it) and the
    // connection dropped: when the answer gets out first, the client makes
    // a new upload at once; otherwise its HEAD finds the upload gone (404).
    if methods.get(3) == Some(&Method::HEAD) {
        methods.remove(3);
    }
    assert_eq!(
        methods,
        [
            Method::OPTIONS,
            Method::POST,
            Method::PATCH,
            Method::OPTIONS,
            Method::POST,
            Method::PATCH
        ]
    );
    assert_eq!(server.of(Method::PATCH)[1].read, 64 * MIB);
}

#[tokio::test]
async fn a_server_without_the_protocol_gets_a_plain_upload() {
    let file = test_file(8 * MIB);
    let (server, _ctx) = server(false, None).await;
    let resumed = upload_whole(Proto::H1, &server, Method::PUT, &file).await;
    assert_eq!(resumed, None);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (&seen[0].method, &seen[1].method),
        (&Method::OPTIONS, &Method::PUT)
    );
    assert_eq!(seen[1].read, 8 * MIB);
}

/// The server's own answers, asked by hand: a wrong offset is refused with
/// the right one and nothing is written; a completed upload takes nothing.
#[tokio::test]
async fn a_wrong_offset_is_refused_and_a_completed_upload_takes_nothing() {
    let (server, _ctx) = server(true, None).await;
    let base = format!("http://{}", server.addr);
    let http = client::<Full<Bytes>>(false);
    let send = |req: Request<Full<Bytes>>| {
        let http = http.clone();
        async move {
            let res = http.request(req).await.expect("an answer");
            let (parts, body) = res.into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };
    let create = Request::post(format!("{base}/files"))
        .header("upload-complete", "?0")
        .header("upload-length", "10")
        .body(Full::new(Bytes::from_static(b"0123")))
        .unwrap();
    let (parts, _) = send(create).await;
    assert_eq!(parts.status, StatusCode::CREATED);
    let location = parts.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(parts.headers["upload-offset"], "4");
    let patch = |offset: &str, complete: &str, bytes: &'static [u8]| {
        Request::patch(format!("{base}{location}"))
            .header("upload-offset", offset)
            .header("upload-complete", complete)
            .header("content-type", "application/partial-upload")
            .body(Full::new(Bytes::from_static(bytes)))
            .unwrap()
    };
    // Offset 6 where the server holds 4: 409, the right offset, no write.
    let (parts, body) = send(patch("6", "?1", b"6789")).await;
    assert_eq!(parts.status, StatusCode::CONFLICT);
    assert_eq!(parts.headers["upload-offset"], "4");
    assert_eq!(parts.headers["content-type"], "application/problem+json");
    let problem = String::from_utf8_lossy(&body);
    assert!(problem.contains("mismatching-upload-offset"), "{problem}");
    assert!(problem.contains("\"expected-offset\":4") && problem.contains("\"provided-offset\":6"));
    let head = Request::head(format!("{base}{location}"))
        .body(Full::default())
        .unwrap();
    let (parts, _) = send(head).await;
    assert_eq!(parts.status, StatusCode::NO_CONTENT);
    assert_eq!(
        (
            &parts.headers["upload-offset"],
            &parts.headers["upload-complete"]
        ),
        (&"4".parse().unwrap(), &"?0".parse().unwrap())
    );
    assert_eq!(parts.headers["upload-length"], "10");
    assert_eq!(parts.headers["cache-control"], "no-store");
    // More than the declared length: refused.
    let (parts, body) = send(patch("4", "?1", b"456789X")).await;
    assert_eq!(parts.status, StatusCode::BAD_REQUEST, "{body:?}");
    // The right offset completes it.
    let (parts, _) = send(patch("4", "?1", b"456789")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["upload-complete"], "?1");
    assert_eq!(parts.headers["x-sha256"], sha256(b"0123456789").as_str());
    // Complete: an append of more bytes is an inconsistent length, of none
    // a completed upload; the offset stays.
    let (parts, body) = send(patch("10", "?1", b"more")).await;
    assert_eq!(parts.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("inconsistent-upload-length"));
    let (parts, body) = send(patch("10", "?1", b"")).await;
    assert_eq!(parts.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("completed-upload"));
    let head = Request::head(format!("{base}{location}"))
        .body(Full::default())
        .unwrap();
    let (parts, _) = send(head).await;
    assert_eq!(parts.headers["upload-complete"], "?1");
    assert_eq!(parts.headers["upload-offset"], "10");
    // A PATCH of another media type is not an append.
    let wrong = Request::patch(format!("{base}{location}"))
        .header("upload-offset", "10")
        .header("upload-complete", "?1")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    assert_eq!(
        send(wrong).await.0.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[tokio::test]
async fn an_offset_past_the_body_is_refused_not_appended_to() {
    let file = test_file(16 * MIB);
    let (server, ctx) = server(true, Some((8 * MIB, AtTrip::Drop))).await;
    *ctx.lie.lock().unwrap() = Some(16 * MIB + 1);
    // SAFETY: the test owns the file and nothing changes it.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();
    let (err, kind) = upload(
        Proto::H1,
        &server,
        Method::POST,
        body,
        ReplayLayer::new(64 << 10),
    )
    .await
    .expect_err("a server holding more than the body is not appended to");
    assert_eq!(kind, Some(ErrorKind::OutOfRange), "{err}");
    assert_eq!(server.of(Method::PATCH).len(), 1, "{:?}", server.seen());
    assert_eq!(server.of(Method::HEAD).len(), 1);
}
