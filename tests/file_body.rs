//! `FileBody` (issue #31): zero-copy under a read lease, whose break copies
//! every frame still held out of the file before the writer goes on, and
//! `pread` where the kernel gives no lease. Writers are other processes (a
//! shell, Python), timed; uploads go to a real hyper server over HTTP/1.1
//! and HTTP/2. Its own binary: the lease's listening thread and the SIGBUS
//! guard are the process's. Linux, where this process may lease its own
//! temp files.
#![cfg(target_os = "linux")]

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mmap_body::{ErrorKind, FileBody};
use mmap_body_devkit::bodies::poll_now;
use mmap_body_devkit::files::{sha256, test_file};
use mmap_body_devkit::server::{client, serve};
use tokio::sync::Notify;

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

fn ends_modified(body: &mut FileBody) {
    let err = loop {
        match poll_now(body) {
            Some(Ok(_)) => continue,
            Some(Err(err)) => break err,
            None => panic!("the body ended without an error"),
        }
    };
    assert_eq!(err.kind(), ErrorKind::Modified, "{err}");
}

fn a_writer_waits_only_for_the_copy(write: impl FnOnce(&Path) -> Duration) {
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
    ends_modified(&mut body);
    let mut clone = clone;
    ends_modified(&mut clone);
}

#[test]
fn held_frames_keep_their_bytes_when_another_process_overwrites_the_file() {
    a_writer_waits_only_for_the_copy(|path| {
        shell(
            "dd if=/dev/zero of=\"$0\" bs=1M count=16 conv=notrunc status=none",
            path,
        )
    });
}

#[test]
fn held_frames_keep_their_bytes_when_another_process_truncates_the_file() {
    a_writer_waits_only_for_the_copy(truncate_elsewhere);
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
    ends_modified(&mut reading);
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

/// The server: the length and SHA-256 of each upload; `/slow` waits
/// until told before it reads past its first frame.
async fn uploads(go_on: Arc<Notify>, started: Arc<Notify>) -> std::net::SocketAddr {
    serve(move |req: Request<Incoming>| {
        let (go_on, started) = (Arc::clone(&go_on), Arc::clone(&started));
        async move {
            let slow = req.uri().path() == "/slow";
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
                if slow && !told {
                    told = true;
                    started.notify_one();
                    go_on.notified().await;
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

async fn send(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        FileBody,
    >,
    addr: std::net::SocketAddr,
    path: &str,
    body: FileBody,
) -> Result<String, String> {
    let req = Request::put(format!("http://{addr}{path}"))
        .body(body)
        .unwrap();
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    let bytes = res.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&bytes.to_bytes()).into_owned())
}

fn a_break_fails_that_request_only(http2: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (cut, whole) = (test_file(32 * MIB), test_file(32 * MIB));
        let (go_on, started) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let addr = uploads(Arc::clone(&go_on), Arc::clone(&started)).await;
        let client = client::<FileBody>(http2);
        let (a, b) = (
            FileBody::open(&cut.path).unwrap(),
            FileBody::open(&whole.path).unwrap(),
        );
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
        let waited = tokio::task::spawn_blocking(move || shell("printf x > \"$0\"", &path))
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
        assert!(
            slow.as_deref() != Ok(format!("{} {}", cut.len, cut.sha256).as_str()),
            "the rewritten file's upload must not arrive whole: {slow:?}"
        );
        let other = tokio::time::timeout(Duration::from_secs(60), other)
            .await
            .expect("the other upload ends")
            .unwrap();
        assert_eq!(other, Ok(format!("{} {}", whole.len, whole.sha256)));
        // The client still works (over HTTP/2, on the same connection).
        let again = FileBody::open(&whole.path).unwrap();
        assert_eq!(
            send(&client, addr, "/", again).await,
            Ok(format!("{} {}", whole.len, whole.sha256))
        );
    });
}

#[test]
fn a_break_in_flight_over_http1_fails_that_request_only() {
    a_break_fails_that_request_only(false);
}

#[test]
fn a_break_in_flight_over_http2_fails_that_request_only() {
    a_break_fails_that_request_only(true);
}
