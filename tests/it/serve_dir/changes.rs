//! Files that change while `ServeDir` serves them: a rewrite during a
//! download never yields a mixed body, and the open-file cache sees every
//! kind of change on the next request.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use mmap_body::serve::{ServeBody, ServeDir};
use mmap_body::FileBody;
use mmap_body_devkit::server::{client, serve_axum};
use tower::{Service, ServiceExt};

const BIG: usize = 64 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rewritten_while_served_never_yields_a_mixed_body() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    std::fs::write(&path, vec![b'a'; BIG]).unwrap();
    let leased = FileBody::open(&path).unwrap().is_mapped();
    println!("the kernel gives a read lease here: {leased}");
    let app = axum::Router::new().nest_service("/files", ServeDir::new(dir.path()));
    let addr = serve_axum(app).await;
    let uri = format!("http://{addr}/files/big.bin");
    let client = client::<Empty<Bytes>>(false);

    let response = client.request(Request::get(&uri).body(Empty::new()).unwrap());
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut got = Vec::new();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    got.extend_from_slice(&first);
    // The server has handed out what the socket takes and waits; now a
    // writer rewrites the file in place, same length.
    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        let started = Instant::now();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&writer_path)
            .unwrap();
        file.write_all(&vec![b'b'; BIG]).unwrap();
        file.sync_all().unwrap();
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        got.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    })
    .await
    .expect("the body ends in time");
    let waited = writer.join().unwrap();
    println!(
        "received {} of {BIG} bytes, then {:?}; the writer waited {waited:?}",
        got.len(),
        rest.as_ref().map(|_| "the end").map_err(|e| e.to_string())
    );
    assert!(
        waited < Duration::from_secs(10),
        "the writer waited {waited:?}"
    );
    let mixed = got.iter().position(|&b| b != b'a');
    assert_eq!(mixed, None, "a byte of the new version at {mixed:?}");
    assert!(
        rest.is_err() || got.len() == BIG,
        "a body that ended cleanly is whole"
    );
    assert!(
        got.len() < BIG,
        "the rewrite came while the body was being sent"
    );

    // The next request gets the new version, whole.
    let response = client
        .request(Request::get(&uri).body(Empty::new()).unwrap())
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes.len(), BIG);
    assert!(bytes.iter().all(|&b| b == b'b'), "the new version, whole");
}

/// A runtime whose blocking pool has one thread, which `answer_now`
/// keeps busy until its first poll: a file that has to be opened cannot
/// be ready at that poll.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// The answer to a GET of `path`, and whether it was ready at the first
/// poll (answered on the worker from an open file) rather than after the
/// blocking pool's work (on a [`runtime`]).
async fn answer_now(service: &mut ServeDir, path: &str) -> (bool, StatusCode, Bytes) {
    let service = ServiceExt::<Request<Empty<Bytes>>>::ready(service)
        .await
        .unwrap();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let busy = tokio::task::spawn_blocking(move || wait.recv());
    let request = Request::get(path).body(Empty::<Bytes>::new()).unwrap();
    let mut future = pin!(service.call(request));
    let first = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    release.send(()).unwrap();
    busy.await.unwrap().unwrap();
    let (at_once, response) = match first {
        Poll::Ready(response) => (true, response.unwrap()),
        Poll::Pending => (false, future.await.unwrap()),
    };
    let status = response.status();
    let body: ServeBody = response.into_body();
    (at_once, status, body.collect().await.unwrap().to_bytes())
}

fn rewrite_in_place(path: &Path, text: &str) {
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    // The modification time put back: only the change time tells.
    file.set_modified(modified).unwrap();
}

#[test]
fn the_cache_sees_a_changed_file_on_the_next_request() {
    runtime().block_on(the_cache_sees_a_change());
}

async fn the_cache_sees_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.txt");
    std::fs::write(&path, "version 1").unwrap();
    let mut service = ServeDir::new(dir.path());

    let first = answer_now(&mut service, "/a.txt").await;
    assert_eq!(first, (false, StatusCode::OK, Bytes::from("version 1")));
    let kept = answer_now(&mut service, "/a.txt").await;
    assert_eq!(
        kept,
        (true, StatusCode::OK, Bytes::from("version 1")),
        "kept open"
    );

    // Renamed over: another inode at the path, same size.
    let new = dir.path().join("new");
    std::fs::write(&new, "version 2").unwrap();
    std::fs::rename(&new, &path).unwrap();
    let renamed = answer_now(&mut service, "/a.txt").await;
    assert_eq!(renamed, (false, StatusCode::OK, Bytes::from("version 2")));
    assert!(
        answer_now(&mut service, "/a.txt").await.0,
        "kept open again"
    );

    // Written in place, same size, modification time put back.
    rewrite_in_place(&path, "version 3");
    let rewritten = answer_now(&mut service, "/a.txt").await;
    assert_eq!(rewritten, (false, StatusCode::OK, Bytes::from("version 3")));

    // Opened for writing and closed, unchanged: the lease was broken (the
    // kept body would end at its first frame), so the file is opened again.
    assert!(answer_now(&mut service, "/a.txt").await.0, "kept open");
    drop(std::fs::OpenOptions::new().write(true).open(&path).unwrap());
    let reopened = answer_now(&mut service, "/a.txt").await;
    let leased = FileBody::open(&path).unwrap().is_mapped();
    if leased {
        assert_eq!(reopened, (false, StatusCode::OK, Bytes::from("version 3")));
    }

    // Made longer, then removed.
    std::fs::write(&path, "version four").unwrap();
    let longer = answer_now(&mut service, "/a.txt").await;
    assert_eq!(longer.2, Bytes::from("version four"));
    std::fs::remove_file(&path).unwrap();
    let removed = answer_now(&mut service, "/a.txt").await;
    assert_eq!(removed.1, StatusCode::NOT_FOUND);

    // A link moved to another file.
    #[cfg(unix)]
    {
        std::fs::write(dir.path().join("x"), "file x").unwrap();
        std::fs::write(dir.path().join("y"), "file y").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("x", &link).unwrap();
        assert_eq!(answer_now(&mut service, "/link").await.2, "file x");
        assert!(answer_now(&mut service, "/link").await.0);
        let moved = dir.path().join("link.new");
        std::os::unix::fs::symlink("y", &moved).unwrap();
        std::fs::rename(&moved, &link).unwrap();
        assert_eq!(answer_now(&mut service, "/link").await.2, "file y");
    }
}

#[test]
fn the_cache_is_bounded_and_can_be_off() {
    runtime().block_on(bounded_or_off());
}

async fn bounded_or_off() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(dir.path().join(name), name).unwrap();
    }
    let mut two = ServeDir::new(dir.path()).open_file_cache(2);
    for name in ["/a", "/b", "/c"] {
        let answer = answer_now(&mut two, name).await;
        assert!(!answer.0, "{name} opened: {answer:?}");
    }
    // `a` was the least recently used of three: let go.
    assert!(!answer_now(&mut two, "/a").await.0);
    assert!(answer_now(&mut two, "/c").await.0);

    let mut none = ServeDir::new(dir.path()).open_file_cache(0);
    for _ in 0..3 {
        let (at_once, status, body) = answer_now(&mut none, "/a").await;
        assert_eq!(
            (at_once, status, body),
            (false, StatusCode::OK, Bytes::from("a"))
        );
    }
    // On the blocking pool even when kept.
    let mut pool = ServeDir::new(dir.path()).check_on_worker(false);
    for _ in 0..3 {
        assert!(!answer_now(&mut pool, "/b").await.0);
    }
}
