//! Hostile clients (issue #30), against the test server's
//! `resume::Uploads`: descriptors held, uploads abandoned, appends raced
//! by a `DELETE`, a `HEAD` or another append, chunked bodies past
//! `max-append-size`. Each test failed before its fix.

use super::*;

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
