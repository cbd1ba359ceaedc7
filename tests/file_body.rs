//! `FileBody` (issue #31): zero-copy under a read lease, whose break copies
//! every frame still held out of the file before the writer goes on, and
//! `pread` where the kernel gives no lease. Writers are other processes (a
//! shell, Python), timed; uploads go to a real hyper server over HTTP/1.1
//! and HTTP/2. Its own binary: the lease's listening thread and the SIGBUS
//! guard are the process's. Linux, where this process may lease its own
//! temp files.
#![cfg(all(target_os = "linux", feature = "retry"))]

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mmap_body::retry::RetryPolicy;
use mmap_body::{ErrorKind, FileBody, ReplayBody, ReplayLayer};
use mmap_body_devkit::bodies::poll_now;
use mmap_body_devkit::files::{sha256, test_file};
use mmap_body_devkit::server::{client, serve};
use tokio::sync::Notify;
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

const MIB: u64 = 1024 * 1024;

/// Runs `script` in `sh` with the path as `$0`, and how long it took.
fn shell(script: &str, path: &Path) -> Duration {
    let started = Instant::now();
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{out:?}");
    started.elapsed()
}

/// Truncates the file at `path` to one byte from another process, with
/// `truncate(2)` on the path (which waits for a lease; coreutils'
/// `truncate` opens with `O_NONBLOCK` and gives up instead), and how long
/// it took.
fn truncate_elsewhere(path: &Path) -> Duration {
    let started = Instant::now();
    let out = std::process::Command::new("python3")
        .args(["-c", "import os, sys; os.truncate(sys.argv[1], 1)"])
        .arg(path)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{out:?}");
    started.elapsed()
}

/// Every frame of `body` but its last byte, held.
fn hold_all_but_the_tail(body: &mut FileBody) -> Vec<Bytes> {
    let mut frames = Vec::new();
    while body.size_hint().exact() > Some(1) {
        let frame = poll_now(body).expect("a frame").expect("the file's bytes");
        frames.push(frame.into_data().unwrap());
    }
    frames
}

fn ends_with(body: &mut FileBody, kind: ErrorKind) {
    let err = loop {
        match poll_now(body) {
            Some(Ok(_)) => continue,
            Some(Err(err)) => break err,
            None => panic!("the body ended without an error"),
        }
    };
    assert_eq!(err.kind(), kind, "{err}");
}

/// The body and its clone end with `kind`: `Modified` for a file written,
/// `Truncated` for one cut short.
fn a_writer_waits_only_for_the_copy(write: impl FnOnce(&Path) -> Duration, kind: ErrorKind) {
    let file = test_file(16 * MIB);
    let original = std::fs::read(&file.path).unwrap();
    let mut body = FileBody::open(&file.path).unwrap();
    assert!(body.is_mapped(), "this process may lease its own temp file");
    let clone = body.clone();
    let frames = hold_all_but_the_tail(&mut body);
    assert_eq!(frames.len(), 16);

    let waited = write(&file.path);
    assert!(
        waited < Duration::from_secs(1),
        "the writer waited {waited:?}"
    );

    assert_ne!(
        std::fs::read(&file.path).unwrap(),
        original,
        "the file changed"
    );
    // Every held frame still holds the file's bytes as they were opened.
    let held: Vec<u8> = frames.concat();
    assert_eq!(held.len() as u64, 16 * MIB - 1);
    assert!(
        held[..] == original[..held.len()],
        "held frames kept their bytes"
    );
    assert_eq!(sha256(&original), file.sha256);
    ends_with(&mut body, kind);
    let mut clone = clone;
    ends_with(&mut clone, kind);
}

#[test]
fn held_frames_keep_their_bytes_when_another_process_overwrites_the_file() {
    a_writer_waits_only_for_the_copy(
        |path| {
            shell(
                "dd if=/dev/zero of=\"$0\" bs=1M count=16 conv=notrunc status=none",
                path,
            )
        },
        ErrorKind::Modified,
    );
}

#[test]
fn held_frames_keep_their_bytes_when_another_process_truncates_the_file() {
    a_writer_waits_only_for_the_copy(truncate_elsewhere, ErrorKind::Truncated);
}

#[test]
fn a_file_open_for_writing_elsewhere_is_read_with_pread() {
    let file = test_file(3 * MIB + 5);
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&file.path)
        .unwrap();
    let body = FileBody::open(&file.path).unwrap();
    assert!(
        !body.is_mapped(),
        "no lease while the file is open for writing"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bytes = rt.block_on(body.clone().collect()).unwrap().to_bytes();
    assert_eq!(sha256(&bytes), file.sha256);
    let part = rt
        .block_on(body.slice(MIB..2 * MIB + 3).unwrap().collect())
        .unwrap()
        .to_bytes();
    assert!(part[..] == bytes[MIB as usize..2 * MIB as usize + 3]);

    // The writer writes: the next read sees it, and the body stops.
    let mut reading = body.clone().chunk_size(MIB as usize);
    let first = poll_now(&mut reading);
    assert!(first.is_some_and(|f| f.is_ok()));
    std::thread::sleep(Duration::from_millis(20));
    std::os::unix::fs::FileExt::write_at(&writer, b"changed", 2 * MIB).unwrap();
    ends_with(&mut reading, ErrorKind::Modified);
    assert_eq!(body.verify().unwrap_err().kind(), ErrorKind::Modified);
}

/// The capability sets of the calling thread (`capget(2)`, version 3).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

const CAP_LEASE: u32 = 28;

/// Drops `CAP_LEASE` from the calling thread's effective set (capabilities
/// are per thread in Linux; the raw system call leaves the other threads'
/// alone).
fn drop_cap_lease() {
    let mut header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a version-3 header and room for its two data structs.
    let got = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(got, 0, "capget: {}", std::io::Error::last_os_error());
    data[0].effective &= !(1 << CAP_LEASE);
    // SAFETY: as above; only lowers this thread's effective set.
    let set = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(set, 0, "capset: {}", std::io::Error::last_os_error());
}

#[test]
fn a_file_the_process_may_not_lease_is_read_with_pread() {
    use std::os::unix::fs::chown;
    let file = test_file(2 * MIB + 1);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let path = if root {
        // Owned by `nobody`; the thread below has no CAP_LEASE.
        chown(&file.path, Some(65534), Some(65534)).unwrap();
        file.path.clone()
    } else {
        // A file of root's, which nobody else may lease.
        "/etc/passwd".into()
    };
    // Where the capability is kept, root gets its lease: the fallback
    // below is the refusal's, not the file's.
    if root {
        assert!(FileBody::open(&path).unwrap().is_mapped());
    }
    let expected = std::fs::read(&path).unwrap();
    let body = std::thread::spawn(move || {
        if root {
            drop_cap_lease();
        }
        FileBody::open(&path).unwrap()
    })
    .join()
    .unwrap();
    assert!(!body.is_mapped(), "the lease was refused");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bytes = rt.block_on(body.collect()).unwrap().to_bytes();
    assert!(bytes[..] == expected[..]);
}

/// The server: the length and SHA-256 of each upload; `/tell` says when
/// its first frame came, and `/slow` then waits until told before it reads
/// on.
async fn uploads(go_on: Arc<Notify>, started: Arc<Notify>) -> std::net::SocketAddr {
    serve(move |req: Request<Incoming>| {
        let (go_on, started) = (Arc::clone(&go_on), Arc::clone(&started));
        async move {
            let slow = req.uri().path() == "/slow";
            let tell = slow || req.uri().path() == "/tell";
            let mut body = req.into_body();
            let mut bytes = Vec::new();
            let mut told = false;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("cut short"))));
                };
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
                if tell && !told {
                    told = true;
                    started.notify_one();
                    if slow {
                        go_on.notified().await;
                    }
                }
            }
            Ok(Response::new(Full::new(Bytes::from(format!(
                "{} {}",
                bytes.len(),
                sha256(&bytes)
            )))))
        }
    })
    .await
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    ReplayBody<FileBody>,
>;

/// A PUT through the stack users put in front of a client (`ReplayLayer` +
/// `RetryLayer(RetryPolicy)`), which tells its caller why a body failed
/// even where hyper drops the body's error (HTTP/2 resets the stream).
async fn send(
    client: &Client,
    addr: std::net::SocketAddr,
    path: &str,
    body: FileBody,
) -> Result<String, String> {
    let policy =
        RetryPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(40));
    let stack = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(policy))
        .service(client.clone());
    let req = Request::put(format!("http://{addr}{path}"))
        .body(body)
        .unwrap();
    let res = stack.oneshot(req).await.map_err(|e| {
        // What the caller sees: the crate's error kind in the chain.
        let kind = mmap_body::Error::find_in(&*e).map(mmap_body::Error::kind);
        format!("{kind:?}: {e}")
    })?;
    let bytes = res.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&bytes.to_bytes()).into_owned())
}

/// Which body the uploads are, and how another process changes the file
/// of one of them while its frames are in flight.
#[derive(Clone, Copy)]
enum Case {
    /// `FileBody::open`; the file's first MiB overwritten in place (`dd`).
    FileRewritten,
    /// `MmapBody::open` (which takes the lease too); the file truncated
    /// (`truncate(2)`), as issue #29's item 11 saw kill a whole HTTP/2
    /// connection before.
    MmapTruncated,
}

fn open_as(case: Case, path: &Path) -> FileBody {
    match case {
        Case::FileRewritten => FileBody::open(path).unwrap(),
        // SAFETY: the temp files are private to these tests; changing one
        // while mapped is the point, and the lease covers it.
        Case::MmapTruncated => FileBody::from(unsafe { mmap_body::MmapBody::open(path) }.unwrap()),
    }
}

fn a_break_fails_that_request_only(http2: bool, case: Case) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (cut, whole) = (test_file(32 * MIB), test_file(32 * MIB));
        let (go_on, started) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let addr = uploads(Arc::clone(&go_on), Arc::clone(&started)).await;
        let client: Client = client(http2);
        let (a, b) = (open_as(case, &cut.path), open_as(case, &whole.path));
        assert!(a.is_mapped() && b.is_mapped());
        let slow = tokio::spawn({
            let client = client.clone();
            async move { send(&client, addr, "/slow", a).await }
        });
        tokio::time::timeout(Duration::from_secs(20), started.notified())
            .await
            .expect("the slow upload started");
        // Another process rewrites the file while frames of it are in
        // flight; the other upload goes on at the same time.
        let other = tokio::spawn({
            let client = client.clone();
            async move { send(&client, addr, "/", b).await }
        });
        let path = cut.path.clone();
        let waited = tokio::task::spawn_blocking(move || match case {
            Case::FileRewritten => shell(
                "dd if=/dev/zero of=\"$0\" bs=1M count=1 conv=notrunc status=none",
                &path,
            ),
            Case::MmapTruncated => truncate_elsewhere(&path),
        })
        .await
        .unwrap();
        assert!(
            waited < Duration::from_secs(1),
            "the writer waited {waited:?}"
        );
        go_on.notify_one();
        let slow = tokio::time::timeout(Duration::from_secs(30), slow)
            .await
            .expect("the cut upload ends")
            .unwrap();
        // The caller of the changed file's upload gets the crate's error.
        let kind = match case {
            Case::FileRewritten => "Some(Modified)",
            Case::MmapTruncated => "Some(Truncated)",
        };
        assert!(
            slow.as_ref().is_err_and(|e| e.starts_with(kind)),
            "the changed file's upload must fail with {kind}: {slow:?}"
        );
        let other = tokio::time::timeout(Duration::from_secs(60), other)
            .await
            .expect("the other upload ends")
            .unwrap();
        assert_eq!(other, Ok(format!("{} {}", whole.len, whole.sha256)));
        // The client still works (over HTTP/2, on the same connection).
        let again = open_as(case, &whole.path);
        assert_eq!(
            send(&client, addr, "/", again).await,
            Ok(format!("{} {}", whole.len, whole.sha256))
        );
    });
}

#[test]
fn a_break_in_flight_over_http1_fails_that_request_only() {
    a_break_fails_that_request_only(false, Case::FileRewritten);
}

#[test]
fn a_break_in_flight_over_http2_fails_that_request_only() {
    a_break_fails_that_request_only(true, Case::FileRewritten);
}

/// Issue #29, item 11: a file truncated under one of two `MmapBody`
/// uploads on one HTTP/2 connection fails only its own; its caller gets
/// `Truncated`.
#[test]
fn a_truncated_mmap_body_fails_only_its_own_http2_stream() {
    a_break_fails_that_request_only(true, Case::MmapTruncated);
}

#[test]
fn a_truncated_mmap_body_over_http1_fails_only_its_own_request() {
    a_break_fails_that_request_only(false, Case::MmapTruncated);
}

/// Issue #29, item 11, as it was seen: two 64 MiB `MmapBody` uploads on
/// one HTTP/2 connection of a default hyper-util client, both streaming,
/// one file truncated a few milliseconds in. Without the lease, h2 copied
/// zeros the guard mapped and the next `writev` of the connection failed
/// (EFAULT): both uploads died. With it, the truncated one fails with
/// `Truncated` and the other arrives whole. Three rounds.
#[test]
fn a_truncated_mmap_body_does_not_kill_the_http2_connection() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (go_on, started) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let addr = uploads(go_on, Arc::clone(&started)).await;
        let client: Client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http();
        for round in 0..3 {
            let (cut, whole) = (test_file(64 * MIB), test_file(64 * MIB));
            let (a, b) = (
                open_as(Case::MmapTruncated, &cut.path),
                open_as(Case::MmapTruncated, &whole.path),
            );
            let cut_up = tokio::spawn({
                let client = client.clone();
                async move { send(&client, addr, "/tell", a).await }
            });
            let whole_up = tokio::spawn({
                let client = client.clone();
                async move { send(&client, addr, "/", b).await }
            });
            // Both stream; the truncation lands a few milliseconds into the
            // cut one (a writer in this process waits for the lease too).
            tokio::time::timeout(Duration::from_secs(20), started.notified())
                .await
                .expect("the upload started");
            tokio::time::sleep(Duration::from_millis(5)).await;
            let path = cut.path.clone();
            tokio::task::spawn_blocking(move || mmap_body_devkit::files::truncate(&path, 1))
                .await
                .unwrap();
            let limit = Duration::from_secs(60);
            let cut_up = tokio::time::timeout(limit, cut_up).await.unwrap().unwrap();
            let whole_up = tokio::time::timeout(limit, whole_up)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                whole_up,
                Ok(format!("{} {}", whole.len, whole.sha256)),
                "round {round}: the other upload on the connection"
            );
            // `Truncated`, or `Modified` when the body stopped between the
            // writer's open (which broke the lease) and its truncation: the
            // kind is the file's state when the body stops.
            assert!(
                cut_up.as_ref().is_err_and(
                    |e| e.starts_with("Some(Truncated)") || e.starts_with("Some(Modified)")
                ),
                "round {round}: {cut_up:?}"
            );
        }
    });
}
