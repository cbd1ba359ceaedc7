//! `Bytes::from(MmapBody)`, the whole file as one zero-copy `Bytes` (what
//! `reqwest::Body::from` takes), under a read lease: a file truncated or
//! rewritten while the `Bytes` lives never changes its bytes, so a receiver
//! never gets zeros the file never held or two versions of it. (Before, a
//! truncation under an HTTP/2 copy made the guard map zero pages, and the
//! server got a complete body of mostly zeros.) Linux, where this process
//! may lease its own temp files; its own binary, as the lease's listening
//! thread and the SIGBUS guard are the process's.
#![cfg(all(target_os = "linux", feature = "reqwest"))]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mmap_body::MmapBody;
use mmap_body_devkit::files::{sha256, test_file, truncate};
use mmap_body_devkit::server::serve;
use tokio::sync::Notify;

const MIB: u64 = 1024 * 1024;

fn open(path: &std::path::Path) -> MmapBody {
    // SAFETY: the temp files are private to these tests; changing them
    // while mapped is the point.
    unsafe { MmapBody::open(path) }.unwrap()
}

#[test]
fn a_writer_waits_for_the_copy_and_the_bytes_stay_the_files() {
    let file = test_file(16 * MIB);
    let bytes = Bytes::from(open(&file.path));
    // Another process truncates the file (a shell's `>`: an open for
    // writing with O_TRUNC, which waits for the lease), then one writes
    // over it.
    let started = Instant::now();
    let out = std::process::Command::new("sh")
        .args(["-c", "printf x > \"$0\""])
        .arg(&file.path)
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{out:?}");
    let waited = started.elapsed();
    std::fs::write(&file.path, vec![b'x'; 4096]).unwrap();
    assert!(
        waited < Duration::from_secs(1),
        "the writer waited {waited:?}"
    );
    assert_eq!(
        sha256(&bytes),
        file.sha256,
        "the bytes are the file's as it was"
    );
}

#[test]
fn a_body_of_a_leased_mapping_keeps_its_frames_and_ends_truncated() {
    use mmap_body::ErrorKind;
    use mmap_body_devkit::bodies::poll_now;
    let file = test_file(8 * MIB);
    let original = std::fs::read(&file.path).unwrap();
    let mut body = open(&file.path).chunk_size(MIB as usize);
    // A whole `Bytes` of the same mapping takes the lease.
    let whole = Bytes::from(body.clone());
    let first = poll_now(&mut body).unwrap().unwrap().into_data().unwrap();
    drop(whole);
    let second = poll_now(&mut body).unwrap().unwrap().into_data().unwrap();
    let out = std::process::Command::new("sh")
        .args(["-c", ": > \"$0\""])
        .arg(&file.path)
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{out:?}");
    // The frames held keep the file's bytes; no new frame is handed out.
    assert!(first[..] == original[..MIB as usize]);
    assert!(second[..] == original[MIB as usize..2 * MIB as usize]);
    // The shell truncated it (`>`): the kind says so.
    let err = poll_now(&mut body).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    assert!(err.to_string().contains("lease"), "{err}");
}

/// A server that reads each upload's first `pause_at` bytes, waits for
/// `go`, reads the rest and answers the SHA-256 of all it read.
async fn pausing_hasher(pause_at: u64) -> (std::net::SocketAddr, Arc<Notify>, Arc<Notify>) {
    let (paused, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (p, g) = (paused.clone(), go.clone());
    let seen = Arc::new(Mutex::new(()));
    let addr = serve(move |req: Request<Incoming>| {
        let (paused, go, _seen) = (p.clone(), g.clone(), seen.clone());
        async move {
            let mut body = req.into_body();
            let mut all = Vec::new();
            let mut waited = false;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => all.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
                    Err(err) => {
                        return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                            "error: {err}"
                        )))))
                    }
                }
                if !waited && all.len() as u64 >= pause_at {
                    waited = true;
                    paused.notify_one();
                    go.notified().await;
                }
            }
            Ok(Response::new(Full::new(Bytes::from(format!(
                "{}:{}",
                all.len(),
                sha256(&all)
            )))))
        }
    })
    .await;
    (addr, paused, go)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_sends_the_file_as_it_was_over_http2() {
    let file = test_file(64 * MIB);
    let (addr, paused, go) = pausing_hasher(2 * MIB).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let body = reqwest::Body::from(Bytes::from(open(&file.path)));
    let upload = tokio::spawn(
        client
            .put(format!("http://{addr}/upload"))
            .body(body)
            .send(),
    );
    tokio::time::timeout(Duration::from_secs(30), paused.notified())
        .await
        .expect("the server paused");
    // Truncated while h2 holds and copies the Bytes: the writer waits for
    // the copy, and the upload goes on with the file as it was.
    let path = file.path.clone();
    tokio::task::spawn_blocking(move || truncate(&path, MIB))
        .await
        .unwrap();
    go.notify_one();
    let res = tokio::time::timeout(Duration::from_secs(30), upload)
        .await
        .expect("in time")
        .unwrap()
        .expect("sent");
    let seen = res.text().await.unwrap();
    assert_eq!(seen, format!("{}:{}", 64 * MIB, file.sha256), "never zeros");
}
