//! Hostile peers (issue #30): a server that sends the client elsewhere or
//! lies about completion, and clients that hold descriptors, abandon
//! uploads, race their own appends or stream past the limits. Each test
//! failed before its fix.

use std::net::SocketAddr;

use http::header::HeaderMap;

use super::*;

/// A request a scripted server saw: method, headers, body bytes.
#[derive(Debug, Clone)]
struct Hit {
    method: Method,
    headers: HeaderMap,
    body: u64,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// A server on `ip` (a loopback address) that reads each request's body to
/// its end, logs it, and answers what `script` says.
async fn scripted<F>(ip: &str, script: F) -> (SocketAddr, Hits)
where
    F: Fn(&Hit) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Hits::default();
    let log = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (script, log) = (script.clone(), log.clone());
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (script, log) = (script.clone(), log.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.map(|c| c.to_bytes().len());
                    let hit = Hit {
                        method: parts.method,
                        headers: parts.headers,
                        body: body.unwrap_or(0) as u64,
                    };
                    let res = script(&hit);
                    log.lock().unwrap().push(hit);
                    Ok::<_, Infallible>(res)
                }
            });
            tokio::spawn(async move {
                let builder = auto_builder();
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// An answer with these headers.
fn reply(status: u16, headers: &[(&'static str, String)]) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        res.headers_mut()
            .insert(*name, value.parse().expect("a header value"));
    }
    res
}

/// What a resumable server answers to `OPTIONS` and to the creation, the
/// creation's `Location` being `location`; `None` for other requests.
fn resumable(hit: &Hit, location: &str) -> Option<Response<Full<Bytes>>> {
    match hit.method {
        Method::OPTIONS => Some(reply(
            204,
            &[("accept-patch", "application/partial-upload".into())],
        )),
        Method::POST => Some(reply(
            201,
            &[
                ("location", location.to_owned()),
                ("upload-complete", "?0".into()),
                ("upload-offset", "0".into()),
            ],
        )),
        _ => None,
    }
}

/// Sends a 2 MiB POST with credentials to `addr`'s `/files` through
/// `UploadLayer` with `resume`: the status, or the error chain and kind.
async fn post_2_mib(
    addr: SocketAddr,
    resume: ResumeLayer,
) -> Result<StatusCode, (String, Option<ErrorKind>)> {
    let stack = ServiceBuilder::new()
        .layer(
            UploadLayer::new()
                .retry(
                    RetryPolicy::default()
                        .backoff(Duration::from_millis(5), Duration::from_millis(20)),
                )
                .resume(resume),
        )
        .service(client(false));
    let request = Request::post(format!("http://{addr}/files"))
        .header("authorization", "Bearer secret")
        .header("cookie", "session=secret")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-request-id", "7")
        .body(Full::new(Bytes::from(vec![7u8; 2 * MIB as usize])))
        .unwrap();
    match tokio::time::timeout(LIMIT, stack.oneshot(request))
        .await
        .expect("the upload ended in time")
    {
        Ok(res) => Ok(res.status()),
        Err(err) => Err((
            chain(&*err),
            mmap_body::Error::find_in(&*err).map(mmap_body::Error::kind),
        )),
    }
}

/// An upload resource that takes every append whole and says so.
async fn accepting(ip: &str) -> (SocketAddr, Hits) {
    scripted(ip, |hit| match hit.method {
        Method::HEAD => reply(
            204,
            &[
                ("upload-offset", "0".into()),
                ("upload-complete", "?0".into()),
            ],
        ),
        _ => reply(200, &[("upload-complete", "?1".into())]),
    })
    .await
}

/// Hostile 1: a creation answered with a `Location` on another host or
/// port: nothing reaches it, not the body, not the credentials.
#[tokio::test]
async fn a_location_on_another_origin_is_refused() {
    for ip in ["127.0.0.2", "127.0.0.1"] {
        let (elsewhere, stolen) = accepting(ip).await;
        let location = format!("http://{elsewhere}/u/1");
        let (origin, seen) = scripted("127.0.0.1", move |hit| {
            resumable(hit, &location).unwrap_or_else(|| reply(500, &[]))
        })
        .await;
        let (err, kind) = post_2_mib(origin, ResumeLayer::new())
            .await
            .expect_err("a cross-origin upload resource is refused");
        assert_eq!(kind, Some(ErrorKind::Protocol), "{err}");
        assert!(err.contains("origin"), "{err}");
        assert!(
            stolen.lock().unwrap().is_empty(),
            "{ip}: {:?}",
            stolen.lock().unwrap()
        );
        let methods: Vec<Method> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.method.clone())
            .collect();
        assert_eq!(
            methods,
            [Method::OPTIONS, Method::POST],
            "{ip}: sent once, not retried"
        );
    }
}

/// Hostile 1, the option: `allow_cross_origin(true)` follows, without
/// `Authorization`, `Cookie` and `Proxy-Authorization`.
#[tokio::test]
async fn allow_cross_origin_follows_without_credentials() {
    let (elsewhere, hits) = accepting("127.0.0.2").await;
    let location = format!("http://{elsewhere}/u/1");
    let (origin, seen) = scripted("127.0.0.1", move |hit| {
        resumable(hit, &location).unwrap_or_else(|| reply(500, &[]))
    })
    .await;
    let status = post_2_mib(origin, ResumeLayer::new().allow_cross_origin(true))
        .await
        .expect("the upload completes elsewhere");
    assert_eq!(status, StatusCode::OK);
    let creation = seen.lock().unwrap()[1].clone();
    assert_eq!(
        creation.headers["authorization"], "Bearer secret",
        "same origin: kept"
    );
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let patch = &hits[0];
    assert_eq!((&patch.method, patch.body), (&Method::PATCH, 2 * MIB));
    for name in ["authorization", "cookie", "proxy-authorization"] {
        assert!(
            !patch.headers.contains_key(name),
            "{name} went to another origin"
        );
    }
    assert_eq!(patch.headers["x-request-id"], "7");
}

/// Hostile 2: `Upload-Complete: ?1` at 256 KiB of a 2 MiB body, in the
/// append's answer and in an offset query's, is an error, not a success.
#[tokio::test]
async fn a_completion_short_of_the_body_is_an_error() {
    let short = || {
        [
            ("upload-complete", "?1".to_owned()),
            ("upload-offset", "262144".into()),
        ]
    };
    let (liar, _) = scripted("127.0.0.1", move |hit| {
        resumable(hit, "/u/1").unwrap_or_else(|| reply(204, &short()))
    })
    .await;
    let (err, kind) = post_2_mib(liar, ResumeLayer::new())
        .await
        .expect_err("a short completion is not a success");
    assert_eq!(kind, Some(ErrorKind::Protocol), "{err}");
    assert!(err.contains("262144"), "{err}");
    // The append answered 503; the offset query then claims completion.
    let (liar, seen) = scripted("127.0.0.1", move |hit| {
        resumable(hit, "/u/1").unwrap_or_else(|| match hit.method {
            Method::PATCH => reply(503, &[]),
            _ => reply(204, &short()),
        })
    })
    .await;
    let (err, kind) = post_2_mib(liar, ResumeLayer::new())
        .await
        .expect_err("a short completion is not a success");
    assert_eq!(kind, Some(ErrorKind::Protocol), "{err}");
    assert_eq!(seen.lock().unwrap().last().unwrap().method, Method::HEAD);
}

/// Descriptors open on files under `dir`.
fn open_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// Sends `req` with a plain hyper client: status, headers, body.
async fn exchange<B>(req: Request<B>) -> (http::response::Parts, Bytes)
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let res = client::<B>(false).request(req).await.expect("an answer");
    let (parts, body) = res.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

/// Creates an upload of `len` bytes with `content` in the creation; its
/// location.
async fn create(server: &Server, len: Option<u64>, content: &'static [u8]) -> String {
    let mut req =
        Request::post(format!("http://{}/files", server.addr)).header("upload-complete", "?0");
    if let Some(len) = len {
        req = req.header("upload-length", len);
    }
    let (parts, _) = exchange(req.body(Full::new(Bytes::from_static(content))).unwrap()).await;
    assert_eq!(parts.status, StatusCode::CREATED);
    parts.headers["location"].to_str().unwrap().to_owned()
}

fn append<B>(server: &Server, location: &str, offset: u64, complete: bool, body: B) -> Request<B> {
    Request::patch(format!("http://{}{location}", server.addr))
        .header("upload-offset", offset)
        .header("upload-complete", if complete { "?1" } else { "?0" })
        .header("content-type", "application/partial-upload")
        .body(body)
        .unwrap()
}

/// Hostile 3: 300 uploads, 100 completed and 200 abandoned, hold no
/// descriptor once their requests are answered.
#[tokio::test]
async fn uploads_hold_no_descriptor_between_requests() {
    let (server, ctx) = server(true, None).await;
    let dir = server._dir.path().to_owned();
    for i in 0..300 {
        let location = create(&server, Some(8), b"0123").await;
        if i % 3 == 0 {
            let body = Full::new(Bytes::from_static(b"4567"));
            let (parts, _) = exchange(append(&server, &location, 4, true, body)).await;
            assert_eq!(parts.status, StatusCode::OK);
        }
    }
    assert_eq!(ctx.completed.load(Ordering::SeqCst), 100);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 300);
    assert_eq!(open_under(&dir), 0, "descriptors left open in the store");
}

/// Files in `dir`.
fn files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Hostile 4: uploads abandoned past `max-age` are removed by the next
/// requests, whoever they are for.
#[tokio::test]
async fn expired_uploads_are_swept_by_later_requests() {
    let limits = Limits {
        max_age: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let (server, _ctx) = server_with(true, None, Some(limits)).await;
    let dir = server._dir.path().to_owned();
    let mut abandoned = Vec::new();
    for _ in 0..20 {
        abandoned.push(create(&server, Some(8), b"0123").await);
    }
    assert_eq!(files(&dir), 20);
    tokio::time::sleep(Duration::from_millis(400)).await;
    create(&server, Some(8), b"0123").await;
    assert_eq!(files(&dir), 1, "the 20 expired uploads' files were removed");
    let head = Request::head(format!("http://{}{}", server.addr, abandoned[0]))
        .body(Full::default())
        .unwrap();
    assert_eq!(exchange(head).await.0.status, StatusCode::NOT_FOUND);
}

/// Hostile 4, the sweep a server calls on a timer; a completed upload
/// lives `max-age` after its completion.
#[tokio::test]
async fn sweep_expired_removes_expired_uploads_and_their_files() {
    let age = Duration::from_millis(600);
    let limits = Limits {
        max_age: Some(age),
        ..Limits::default()
    };
    let (server, _ctx) = server_with(true, None, Some(limits)).await;
    let dir = server._dir.path().to_owned();
    for _ in 0..10 {
        create(&server, Some(8), b"0123").await;
    }
    let done = create(&server, Some(4), b"").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let body = Full::new(Bytes::from_static(b"0123"));
    assert_eq!(
        exchange(append(&server, &done, 0, true, body))
            .await
            .0
            .status,
        StatusCode::OK
    );
    assert_eq!(server.uploads.sweep_expired(), 0, "nothing expired yet");
    assert_eq!(files(&dir), 11);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(server.uploads.sweep_expired(), 10);
    assert_eq!(
        files(&dir),
        1,
        "the completed upload's file, max-age after its completion"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.uploads.sweep_expired(), 1);
    assert_eq!(files(&dir), 0);
}

/// A request body whose frames a test sends one at a time; it ends when
/// the sender is dropped (unknown length: chunked over HTTP/1.1).
struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|data| data.map(|d| Ok(Frame::data(d))))
    }
}

/// What happens to a running append before its body ends.
#[derive(Debug, Clone, Copy)]
enum Interrupt {
    Delete,
    Head,
    /// Another append completes the upload.
    Patch,
}

/// Hostile 5: an append that a `DELETE`, an offset query or a newer
/// append took over never completes the upload, even when its body ends
/// with nothing left to write.
#[tokio::test]
async fn a_cancelled_or_superseded_append_never_completes() {
    const LEN: u64 = 256 * 1024;
    for interrupt in [Interrupt::Delete, Interrupt::Head, Interrupt::Patch] {
        let (server, ctx) = server(true, None).await;
        let location = create(&server, Some(LEN), b"").await;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let running = tokio::spawn(exchange(append(&server, &location, 0, true, Channel(rx))));
        tx.send(Bytes::from(vec![1u8; LEN as usize])).await.unwrap();
        let file = server
            ._dir
            .path()
            .join(format!("{}.part", location.trim_start_matches("/uploads/")));
        let stored = async {
            while std::fs::metadata(&file).map_or(0, |m| m.len()) < LEN {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(LIMIT, stored)
            .await
            .expect("the bytes were stored");
        let url = format!("http://{}{location}", server.addr);
        let (parts, _) = match interrupt {
            Interrupt::Delete => {
                exchange(Request::delete(&url).body(Full::default()).unwrap()).await
            }
            Interrupt::Head => exchange(Request::head(&url).body(Full::default()).unwrap()).await,
            Interrupt::Patch => {
                exchange(append(&server, &location, LEN, true, Full::default())).await
            }
        };
        let expected = match interrupt {
            Interrupt::Patch => StatusCode::OK,
            _ => StatusCode::NO_CONTENT,
        };
        assert_eq!(parts.status, expected, "{interrupt:?}");
        let completed = ctx.completed.load(Ordering::SeqCst);
        drop(tx);
        let (parts, body) = running.await.unwrap();
        assert_ne!(parts.status, StatusCode::OK, "{interrupt:?}: {body:?}");
        assert_eq!(
            ctx.completed.load(Ordering::SeqCst),
            completed,
            "{interrupt:?}: completed by the old append"
        );
    }
}

/// Hostile 6: a chunked append (no `Content-Length`) past
/// `max-append-size` is refused with 413 and stores no byte past it; a
/// chunked creation too, and leaves no file.
#[tokio::test]
async fn a_chunked_append_stops_at_max_append_size() {
    let limits = Limits {
        max_append_size: Some(MIB),
        ..Limits::default()
    };
    let (server, _ctx) = server_with(true, None, Some(limits)).await;
    let dir = server._dir.path().to_owned();
    let location = create(&server, None, b"").await;
    let (body, _) = mmap_body_devkit::bodies::Streamed::random(3 * MIB as usize, 64 * 1024);
    let (parts, _) = exchange(append(&server, &location, 0, false, body)).await;
    assert_eq!(parts.status, StatusCode::PAYLOAD_TOO_LARGE);
    let stored = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| f.unwrap().metadata().unwrap().len())
        .sum::<u64>();
    assert!(stored <= MIB, "{stored} bytes stored past max-append-size");
    let head = Request::head(format!("http://{}{location}", server.addr))
        .body(Full::default())
        .unwrap();
    let (parts, _) = exchange(head).await;
    let offset: u64 = parts.headers["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(offset <= MIB, "offset {offset}");
    // A creation that carries too much.
    let (body, _) = mmap_body_devkit::bodies::Streamed::random(3 * MIB as usize, 64 * 1024);
    let creation = Request::post(format!("http://{}/files", server.addr))
        .header("upload-complete", "?0")
        .body(body)
        .unwrap();
    assert_eq!(
        exchange(creation).await.0.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(files(&dir), 1, "the refused creation left no file");
}

/// Hostile 5, the client's side: an append answered 404 (its upload
/// cancelled or expired under it) is followed by one new upload, not
/// handed to the caller; a server that keeps answering 404 gets two.
#[tokio::test]
async fn an_append_answered_404_makes_one_new_upload() {
    for always in [false, true] {
        let created = Arc::new(AtomicUsize::new(0));
        let count = created.clone();
        let (addr, seen) = scripted("127.0.0.1", move |hit| {
            if hit.method == Method::POST {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                return resumable(hit, &format!("/u/{n}")).unwrap();
            }
            resumable(hit, "").unwrap_or_else(|| match count.load(Ordering::SeqCst) {
                n if n == 1 || always => reply(404, &[]),
                _ => reply(
                    200,
                    &[
                        ("upload-complete", "?1".into()),
                        ("upload-offset", (2 * MIB).to_string()),
                    ],
                ),
            })
        })
        .await;
        let status = post_2_mib(addr, ResumeLayer::new())
            .await
            .expect("an answer");
        let expected = if always {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(status, expected, "always 404: {always}");
        assert_eq!(created.load(Ordering::SeqCst), 2, "always 404: {always}");
        assert_eq!(seen.lock().unwrap().len(), 6, "OPTIONS, POST, PATCH twice");
    }
}
