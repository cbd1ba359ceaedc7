//! `MmapBody` through a real hyper-util client and hyper server on
//! 127.0.0.1, and its edge cases.

use std::io::Write;

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;
use mmap_body::{ErrorKind, MmapBody};
use mmap_body_devkit::bodies::poll_now;
use mmap_body_devkit::files::{change, pattern, sha256, test_file, Change};
use mmap_body_devkit::server::{client, hashing_server, received, Received};
use proptest::prelude::*;

fn open(path: &std::path::Path) -> MmapBody {
    // SAFETY: every file these tests map is a temp file of their own; the
    // tests that change one under a mapping do so to test the checks.
    unsafe { MmapBody::open(path) }.expect("open")
}

async fn upload(http2: bool, body: MmapBody) -> Received {
    let addr = hashing_server().await;
    let req = http::Request::put(format!("http://{addr}/upload"))
        .body(body)
        .unwrap();
    let res = client(http2).request(req).await.expect("upload");
    received(&res)
}

async fn upload_file(http2: bool) {
    let file = test_file(24 * 1024 * 1024 + 123);
    let seen = upload(http2, open(&file.path)).await;
    assert_eq!(seen.version, if http2 { "HTTP/2.0" } else { "HTTP/1.1" });
    assert_eq!(seen.content_length, Some(file.len));
    assert_eq!(seen.transfer_encoding, None);
    assert_eq!(seen.len, file.len);
    assert_eq!(seen.sha256, file.sha256);
}

#[tokio::test]
async fn uploads_over_http1_with_content_length() {
    upload_file(false).await;
}

#[tokio::test]
async fn uploads_over_http2_with_content_length() {
    upload_file(true).await;
}

#[tokio::test]
async fn uploads_a_slice_and_an_empty_file() {
    let file = test_file(3 * 1024 * 1024);
    let bytes = std::fs::read(&file.path).unwrap();
    let body = open(&file.path).chunk_size(64 * 1024);
    let seen = upload(false, body.slice(1000..2_000_000).unwrap()).await;
    assert_eq!(seen.content_length, Some(1_999_000));
    assert_eq!(seen.sha256, sha256(&bytes[1000..2_000_000]));

    let empty = test_file(0);
    for http2 in [false, true] {
        let seen = upload(http2, open(&empty.path)).await;
        assert_eq!(seen.len, 0);
        // No chunked framing. hyper itself writes no `Content-Length: 0`
        // for a body that is already at its end (a request without either
        // header has an empty body); `ReplayLayer` adds it for PUT and POST.
        assert_eq!(seen.transfer_encoding, None);
        assert!(matches!(seen.content_length, None | Some(0)));
    }
}

#[test]
fn frames_point_into_the_mapping() {
    let file = test_file(5 * 1024 * 1024 + 7);
    let mut body = open(&file.path).chunk_size(1024 * 1024);
    let whole = Bytes::from(body.clone());
    let range = whole.as_ptr_range();
    let mut frames = Vec::new();
    while let Some(frame) = poll_now(&mut body) {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    // Six frames of the mapping, then the last byte on its own, copied
    // once the rest is verified.
    let last = frames.pop().unwrap();
    assert_eq!(frames.len(), 6);
    for data in &frames {
        let ptrs = data.as_ptr_range();
        assert!(range.start <= ptrs.start && ptrs.end <= range.end);
    }
    assert_eq!(
        frames.iter().map(Bytes::len).sum::<usize>() + 1,
        file.len as usize
    );
    assert_eq!(last.len(), 1);
    assert!(!range.contains(&last.as_ptr()));
    assert_eq!(last[0], whole[whole.len() - 1]);
    // `Bytes::from` is the mapping itself: the pointer stays the same.
    assert_eq!(Bytes::from(open(&file.path)).len() as u64, file.len);
    assert_eq!(sha256(&whole), file.sha256);
}

#[test]
fn a_small_body_is_one_copy_made_after_the_check() {
    let file = test_file(40 * 1024);
    let whole = std::fs::read(&file.path).unwrap();
    let mut body = open(&file.path);
    let mapping = Bytes::from(body.clone()).as_ptr_range();
    let frame = poll_now(&mut body).unwrap().unwrap().into_data().unwrap();
    // One frame, the whole body, copied out of the mapping: one write.
    assert_eq!(&frame[..], &whole[..]);
    assert!(!mapping.contains(&frame.as_ptr()));
    assert!(body.is_end_stream());
    // The copy is made after the file's check: a file truncated or
    // rewritten before it is an error, not a body.
    for truncate in [true, false] {
        let file = test_file(40 * 1024);
        let mut body = open(&file.path);
        match truncate {
            true => mmap_body_devkit::files::truncate(&file.path, 100),
            false => change(&file.path, Change::Touch),
        }
        let err = poll_now(&mut body).unwrap().expect_err("changed");
        assert!(
            matches!(err.kind(), ErrorKind::Truncated | ErrorKind::Modified),
            "truncated {truncate}: {err}"
        );
        assert!(body.is_end_stream());
    }
}

#[test]
fn size_hint_and_end_stream_follow_each_frame() {
    let file = test_file(10 * 1024);
    let mut body = open(&file.path).chunk_size(4096);
    let mut expected = [4096u64, 4096, 2047, 1].into_iter();
    assert_eq!(body.size_hint().exact(), Some(10 * 1024));
    while let Some(frame) = poll_now(&mut body) {
        let len = frame.unwrap().into_data().unwrap().len() as u64;
        assert_eq!(Some(len), expected.next());
        assert_eq!(body.is_end_stream(), body.size_hint().exact() == Some(0));
    }
    assert!(body.is_end_stream());
    assert_eq!(expected.next(), None);
}

#[test]
fn sizes_around_chunk_boundaries() {
    let chunk = 4096usize;
    for len in [1, chunk - 1, chunk, chunk + 1, 2 * chunk, 2 * chunk + 1] {
        let file = test_file(len as u64);
        let bytes = std::fs::read(&file.path).unwrap();
        let mut body = open(&file.path).chunk_size(chunk);
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = poll_now(&mut body) {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
            frames += 1;
        }
        assert_eq!(got, bytes, "len {len}");
        // A body no longer than a frame is one copied frame; a longer one
        // sends its last byte in a frame of its own.
        let want = if len <= chunk {
            1
        } else {
            (len - 1).div_ceil(chunk) + 1
        };
        assert_eq!(frames, want, "len {len}");
        for (range, want) in [
            (0..1, &bytes[..1]),
            (len as u64 - 1..len as u64, &bytes[len - 1..]),
            (len as u64..len as u64, &[][..]),
        ] {
            assert_eq!(&Bytes::from(body.slice(range).unwrap())[..], want);
        }
    }
}

#[test]
fn clone_after_partial_consumption_starts_again() {
    let file = test_file(100_000);
    let bytes = std::fs::read(&file.path).unwrap();
    let mut body = open(&file.path)
        .slice(10..90_010)
        .unwrap()
        .chunk_size(30_000);
    let first = poll_now(&mut body).unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], &bytes[10..30_010]);
    assert_eq!(body.size_hint().exact(), Some(60_000));

    let mut clone = body.clone();
    assert_eq!(clone.size_hint().exact(), Some(90_000));
    let mut got = Vec::new();
    while let Some(frame) = poll_now(&mut clone) {
        got.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(&got[..], &bytes[10..90_010]);
    // The original goes on where it was.
    let second = poll_now(&mut body).unwrap().unwrap().into_data().unwrap();
    assert_eq!(&second[..], &bytes[30_010..60_010]);
}

// Windows refuses to truncate a file while it is mapped.
#[cfg(unix)]
#[test]
fn truncation_mid_body_is_an_error_not_sigbus() {
    let file = test_file(8 * 1024 * 1024);
    let mut body = open(&file.path).chunk_size(1024 * 1024);
    assert!(poll_now(&mut body).unwrap().is_ok());
    change(&file.path, Change::Truncate);
    let err = poll_now(&mut body).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated);
    assert!(err.to_string().contains("body.bin"), "{err}");
    assert!(err.to_string().contains("shrank"), "{err}");
    // The body is over: no frame from past the end is ever produced.
    assert!(poll_now(&mut body).is_none());
    assert!(body.is_end_stream());
}

#[cfg(unix)]
#[tokio::test]
async fn truncation_during_an_upload_fails_the_request() {
    let file = test_file(64 * 1024 * 1024);
    // A server that reads 4 MiB, lets the test truncate the file, then reads on.
    let server = mmap_body_devkit::server::pausing_server(4 << 20).await;
    let addr = server.addr;
    let req = http::Request::put(format!("http://{addr}/"))
        .body(open(&file.path))
        .unwrap();
    let upload = tokio::spawn(client(false).request(req));
    let log = server
        .change_while_paused(|| change(&file.path, Change::Truncate))
        .await;
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), upload)
        .await
        .expect("the upload ended")
        .unwrap();
    // The request fails: either our check stopped the body, or the kernel
    // refused to read a frame already queued from past the new end (EFAULT).
    // Either way the process is still here and no full upload is reported.
    let err = outcome.expect_err("a truncated upload must not succeed");
    if let Some(ours) = mmap_body::Error::find_in(&err) {
        assert_eq!(ours.kind(), ErrorKind::Truncated);
    }
    let seen = log.lock().unwrap().clone();
    assert!(
        seen.iter().all(|u| !u.complete || u.read < file.len),
        "the server got a complete body: {seen:?}"
    );
}

#[test]
fn changed_file_is_refused_before_replay() {
    let file = test_file(256 * 1024);
    let body = open(&file.path).chunk_size(64 * 1024);
    let mut first = body.clone();
    while let Some(frame) = poll_now(&mut first) {
        frame.unwrap();
    }
    // Rewrite the file in place, same length, later modification time.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&file.path)
        .unwrap();
    f.write_all(b"changed").unwrap();
    drop(f);
    change(&file.path, Change::Touch);

    let mut retry = body.clone();
    let err = poll_now(&mut retry).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Modified);
    assert!(err.to_string().contains("Open the file again"), "{err}");
}

#[test]
fn growing_file_is_a_change_too() {
    let file = test_file(4096);
    let mut body = open(&file.path);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file.path)
        .unwrap();
    f.write_all(b"more").unwrap();
    let err = poll_now(&mut body).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Modified);
}

#[test]
fn from_mmap_and_from_file_send_the_same_bytes() {
    let file = test_file(300_000);
    let f = std::fs::File::open(&file.path).unwrap();
    // SAFETY: the temp file is private to this test and left unchanged.
    let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
    let a = Bytes::from(MmapBody::from_mmap(map));
    // SAFETY: as above.
    let b = Bytes::from(unsafe { MmapBody::from_file(f) }.unwrap());
    assert_eq!(sha256(&a), file.sha256);
    assert_eq!(a, b);
}

fn invalid_input(path: &std::path::Path, why: &str) {
    // SAFETY: nothing is mapped: the open must fail.
    let err = unsafe { MmapBody::open(path) }.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(why), "{msg}");
}

#[test]
fn a_directory_is_rejected_on_every_platform() {
    let dir = tempfile::tempdir().unwrap();
    invalid_input(dir.path(), "directory");
}

/// The exact reasons on Unix; built with `--cfg mmap_body_portable`, the
/// portable "not a regular file" that Windows gives.
#[cfg(target_os = "linux")]
#[test]
fn non_regular_files_are_rejected_with_the_reason() {
    let exact = |reason: &'static str| {
        if cfg!(mmap_body_portable) {
            "not a regular file"
        } else {
            reason
        }
    };
    let dir = tempfile::tempdir().unwrap();
    invalid_input(dir.path(), "directory");

    let fifo = dir.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    // Must not block waiting for a writer.
    invalid_input(&fifo, exact("FIFO"));

    let sock = dir.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    invalid_input(&sock, exact("socket"));

    invalid_input(std::path::Path::new("/dev/null"), exact("character device"));
    // The same probe on every platform: a file of size 0 that reads a byte.
    invalid_input(std::path::Path::new("/proc/self/status"), "/proc-style");
}

#[test]
fn missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.bin");
    // SAFETY: nothing is mapped: the open must fail.
    let err = unsafe { MmapBody::open(&path) }.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("missing.bin"), "{err}");
}

/// Run by `permission_denied_names_the_path` as an unprivileged user.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run as a child process by permission_denied_names_the_path"]
fn permission_denied_child() {
    let path = std::env::var("MMAP_BODY_PERMISSION_TEST_PATH").expect("path");
    // SAFETY: nothing is mapped: the open must fail.
    let err = unsafe { MmapBody::open(&path) }.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("secret.bin"), "{err}");
}

/// Linux only: Unix permissions, `/proc/self/status` and `setpriv`.
#[cfg(target_os = "linux")]
#[test]
fn permission_denied_names_the_path() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("secret.bin");
    std::fs::write(&path, b"secret").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let exe = std::env::current_exe().unwrap();
    // Root reads any file, so the check runs as `nobody` when we are root.
    let mut cmd = if running_as_root() {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe);
        c
    } else {
        std::process::Command::new(&exe)
    };
    let out = cmd
        .arg("--exact")
        .arg(mmap_body_devkit::harness::test_name(
            module_path!(),
            "permission_denied_child",
        ))
        .arg("--include-ignored")
        .env("MMAP_BODY_PERMISSION_TEST_PATH", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(target_os = "linux")]
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn frames_concatenate_to_the_range(
        len in 0usize..70_000,
        a in 0usize..70_000,
        b in 0usize..70_000,
        chunk in 1usize..20_000,
    ) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = vec![0u8; len];
        pattern(len as u64 + 1, &mut bytes);
        file.write_all(&bytes).unwrap();
        let body = open(file.path()).chunk_size(chunk);
        let (from, to) = (a.min(b).min(len), a.max(b).min(len));
        let mut body = body.slice(from as u64..to as u64).unwrap();
        let mut got = Vec::new();
        let mut left = (to - from) as u64;
        prop_assert_eq!(body.size_hint().exact(), Some(left));
        while let Some(frame) = poll_now(&mut body) {
            let data = frame.unwrap().into_data().unwrap();
            prop_assert!(!data.is_empty() && data.len() <= chunk);
            left -= data.len() as u64;
            prop_assert_eq!(body.size_hint().exact(), Some(left));
            prop_assert_eq!(body.is_end_stream(), left == 0);
            got.extend_from_slice(&data);
        }
        prop_assert_eq!(left, 0);
        prop_assert_eq!(&got[..], &bytes[from..to]);
    }
}

#[tokio::test]
async fn collect_matches_the_file() {
    let file = test_file(2 * 1024 * 1024 + 5);
    let got = open(&file.path).collect().await.unwrap().to_bytes();
    assert_eq!(sha256(&got), file.sha256);
    // Without access hints: the same bytes, the same frames.
    let body = open(&file.path).chunk_size(64 * 1024).access_hints(false);
    assert_eq!(body.size_hint().exact(), Some(file.len));
    let got = body.collect().await.unwrap().to_bytes();
    assert_eq!(sha256(&got), file.sha256);
}

/// reqwest sends `Bytes::from(MmapBody)` with its exact length, zero-copy,
/// and can clone the request (`RequestBuilder::try_clone`, which reqwest
/// refuses for streamed bodies) to send it again.
#[tokio::test]
async fn reqwest_uploads_an_mmap_body() {
    const LEN: u64 = 3 * 1024 * 1024 + 123;
    let file = test_file(LEN);
    let addr = hashing_server().await;
    // SAFETY: the test owns the file and leaves it unchanged while mapped.
    let mapped = unsafe { MmapBody::open(&file.path) }.unwrap();
    let bytes = Bytes::from(mapped);
    assert_eq!(bytes.len() as u64, LEN);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let request = client
        .put(format!("http://{addr}/upload"))
        .body(reqwest::Body::from(bytes));
    let again = request.try_clone().expect("a Bytes body can be sent again");
    for request in [request, again] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        let get = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(get("x-content-length"), LEN.to_string());
        assert!(response.headers().get("x-transfer-encoding").is_none());
        assert_eq!(get("x-sha256"), file.sha256);
    }
}

/// A file rewritten in place with the same length, its modification time
/// put back (what `touch -d` does): size and mtime cannot see it; the
/// inode's change time, which no user can set back, does. The body, a
/// clone about to replay and `ReplayBody::is_replayable` all refuse it.
#[cfg(all(unix, not(mmap_body_portable)))]
#[test]
fn a_rewrite_in_place_with_the_old_mtime_is_a_change() {
    let file = test_file(3 * 1024 * 1024);
    let mut body = open(&file.path).chunk_size(1024 * 1024);
    let first = poll_now(&mut body).unwrap().unwrap();
    drop(first);
    let mtime = std::fs::metadata(&file.path).unwrap().modified().unwrap();
    // The change time has a granularity of a clock tick: let one pass.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&file.path)
        .unwrap();
    writer.write_all(b"rewritten").unwrap();
    writer.set_modified(mtime).unwrap();
    drop(writer);
    let meta = std::fs::metadata(&file.path).unwrap();
    assert_eq!((meta.len(), meta.modified().unwrap()), (file.len, mtime));
    assert_eq!(body.verify().unwrap_err().kind(), ErrorKind::Modified);
    let err = poll_now(&mut body).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Modified, "{err}");
    let mut replay = body.clone();
    assert_eq!(
        poll_now(&mut replay).unwrap().unwrap_err().kind(),
        ErrorKind::Modified
    );
    #[cfg(feature = "replay")]
    assert!(!mmap_body::ReplayBody::new(body.clone(), 0).is_replayable());
}

/// `open` checks the path, then opens it: a FIFO swapped in between must
/// not block the open forever (it opens without blocking and checks the
/// open file). A thread swaps a regular file and a FIFO at one path as
/// fast as it can (`renameat2(RENAME_EXCHANGE)`) while opens run; each
/// open must end within 5 s, with a body or the FIFO's error.
#[cfg(all(target_os = "linux", not(mmap_body_portable)))]
#[test]
fn a_fifo_swapped_in_after_the_check_never_blocks_open() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swapped");
    let other = dir.path().join("other");
    std::fs::write(&path, b"a regular file").unwrap();
    let c = |p: &std::path::Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C path; mkfifo has no other precondition.
    assert_eq!(unsafe { libc::mkfifo(c(&other).as_ptr(), 0o600) }, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, a, b) = (stop.clone(), c(&path), c(&other));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: valid C paths in a directory of this test.
                let swapped = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(swapped, 0, "{}", std::io::Error::last_os_error());
            }
        })
    };
    let (mut bodies, mut fifos) = (0, 0);
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(2) || bodies == 0 || fifos == 0 {
        let (tx, rx) = std::sync::mpsc::channel();
        let at = path.clone();
        std::thread::spawn(move || {
            // SAFETY: a temp file of this test, never written once made.
            let _ = tx.send(unsafe { MmapBody::open(&at) }.map(|b| b.len()));
        });
        match rx.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(Ok(len)) => {
                assert_eq!(len, 14);
                bodies += 1;
            }
            Ok(Err(err)) => {
                assert!(
                    matches!(
                        err.kind(),
                        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::NotFound
                    ),
                    "{err}"
                );
                fifos += 1;
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                swapper.join().unwrap();
                // Free the blocked open: give its FIFO a writer.
                for p in [&path, &other] {
                    let _ = std::os::unix::fs::OpenOptionsExt::custom_flags(
                        std::fs::OpenOptions::new().write(true),
                        libc::O_NONBLOCK,
                    )
                    .open(p);
                }
                panic!("open blocked on a FIFO swapped in after the check");
            }
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    eprintln!("{bodies} bodies, {fifos} FIFOs refused");
}

/// File hazards through the retry stack of `fault_matrix` (real servers on
/// 127.0.0.1): a file replaced under its path, a sparse file past 4 GiB.
/// Linux only (the sparse file is written with `FileExt`, the stack is the
/// fault matrix's).
#[cfg(all(target_os = "linux", feature = "retry", not(mmap_body_portable)))]
mod file_hazards {
    use std::path::{Path, PathBuf};

    use http::Request;
    use http_body_util::BodyExt;
    use mmap_body::{ErrorKind, MmapBody};
    use mmap_body_devkit::faulty::{Fault, Faulty};
    use mmap_body_devkit::files::{pattern, sha256, test_file};
    use mmap_body_devkit::harness::chain;
    use mmap_body_devkit::server::{hashing_server, received};

    use crate::fault_matrix::{send, Proto, GIB, KIB, MIB, REQUEST_LIMIT};

    /// The file is unlinked after it was opened and another file of the same
    /// length is renamed over its path: the upload, and its retry after a
    /// dropped connection, send the bytes that were opened.
    async fn replaced_file_sends_the_original_bytes(proto: Proto) {
        let label = format!("[{proto:?} replaced file]");
        let file = test_file(4 * MIB);
        // SAFETY: the temp file is private to this test; it is replaced by a
        // rename, never changed in place.
        let body = unsafe { MmapBody::open(&file.path) }.expect("open");
        std::fs::remove_file(&file.path).expect("unlink");
        let other = file.dir.path().join("other.bin");
        let mut impostor = vec![0u8; 4 * MIB as usize];
        pattern(7, &mut impostor);
        std::fs::write(&other, &impostor).expect("write");
        std::fs::rename(&other, &file.path).expect("rename over");
        assert_ne!(sha256(&impostor), file.sha256);

        let server = Faulty::start([Fault::DropAfter(MIB)]).await;
        let req = Request::put(server.uri("/upload")).body(body).unwrap();
        let res = send(proto, REQUEST_LIMIT, req)
            .await
            .unwrap_or_else(|err| panic!("{label}: {}", chain(&*err)));
        assert_eq!(res.status(), 200, "{label}");
        let log = server.seen();
        assert_eq!(log.len(), 2, "{label}: {log:#?}");
        for seen in &log {
            assert_eq!(seen.content_length, Some((4 * MIB).to_string()), "{label}");
        }
        assert_eq!(
            log[1].sha256.as_deref(),
            Some(file.sha256.as_str()),
            "{label}: the retry did not send the original bytes"
        );
    }

    #[tokio::test]
    async fn h1_replaced_file_sends_the_original_bytes() {
        replaced_file_sends_the_original_bytes(Proto::H1).await;
    }

    #[tokio::test]
    async fn h2_replaced_file_sends_the_original_bytes() {
        replaced_file_sends_the_original_bytes(Proto::H2).await;
    }

    /// A sparse file of 4 GiB + 3 MiB: 1 MiB of known bytes across the 4 GiB
    /// boundary, a marker at the very end, holes elsewhere.
    struct Sparse {
        _dir: tempfile::TempDir,
        path: PathBuf,
        len: u64,
        /// The known bytes, at `pattern_at`.
        pattern: Vec<u8>,
        pattern_at: u64,
        marker: &'static [u8],
    }

    fn sparse_file() -> Sparse {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sparse.bin");
        let len = 4 * GIB + 3 * MIB;
        let file = std::fs::File::create(&path).expect("create");
        file.set_len(len).expect("set_len");
        let mut pattern = vec![0u8; MIB as usize];
        mmap_body_devkit::files::pattern(4, &mut pattern);
        let pattern_at = 4 * GIB - 512 * KIB;
        file.write_all_at(&pattern, pattern_at).expect("write");
        let marker: &'static [u8] = b"<- the last 16 B";
        file.write_all_at(marker, len - marker.len() as u64)
            .expect("write");
        file.sync_all().expect("sync");
        Sparse {
            _dir: dir,
            path,
            len,
            pattern,
            pattern_at,
            marker,
        }
    }

    impl Sparse {
        /// What the file holds in `start..end`.
        fn expected(&self, start: u64, end: u64) -> Vec<u8> {
            let mut out = vec![0u8; (end - start) as usize];
            let put = |out: &mut Vec<u8>, at: u64, bytes: &[u8]| {
                for (i, b) in bytes.iter().enumerate() {
                    let pos = at + i as u64;
                    if (start..end).contains(&pos) {
                        out[(pos - start) as usize] = *b;
                    }
                }
            };
            put(&mut out, self.pattern_at, &self.pattern);
            put(&mut out, self.len - self.marker.len() as u64, self.marker);
            out
        }
    }

    fn open_sparse(path: &Path) -> MmapBody {
        // SAFETY: the temp file is private to this test.
        unsafe { MmapBody::open(path) }.expect("open")
    }

    #[tokio::test]
    async fn sparse_file_past_4_gib_slices_at_the_boundary() {
        let sparse = sparse_file();
        let body = open_sparse(&sparse.path);
        assert_eq!(body.len(), sparse.len);

        // 2 MiB across the 4 GiB boundary.
        let (start, end) = (4 * GIB - MIB, 4 * GIB + MIB);
        let slice = body.slice(start..end).expect("slice across 4 GiB");
        assert_eq!(slice.len(), 2 * MIB);
        assert_eq!(
            http_body::Body::size_hint(&slice).exact(),
            Some(2 * MIB),
            "size_hint of a slice past 4 GiB"
        );
        let got = slice.collect().await.expect("collect").to_bytes();
        assert!(
            got[..] == sparse.expected(start, end)[..],
            "the bytes across the 4 GiB boundary differ"
        );

        // A few bytes straddling the boundary exactly, and the very end.
        let edge = body.slice(4 * GIB - 3..4 * GIB + 5).expect("slice");
        let got = edge.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], &sparse.expected(4 * GIB - 3, 4 * GIB + 5)[..]);
        let tail = body.slice(sparse.len - 16..).expect("slice to the end");
        let got = tail.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], sparse.marker);

        // Past the end: an error, not a panic.
        let err = body
            .slice(4 * GIB..sparse.len + 1)
            .expect_err("a slice past the end");
        assert_eq!(err.kind(), ErrorKind::OutOfRange, "{err}");
    }

    async fn sparse_slice_upload(proto: Proto) {
        let label = format!("[{proto:?} sparse upload]");
        let sparse = sparse_file();
        let body = open_sparse(&sparse.path);
        let (start, end) = (4 * GIB - MIB, 4 * GIB + 3 * MIB);
        assert_eq!(end, sparse.len);
        let slice = body.slice(start..end).expect("slice");
        let expected = sha256(&sparse.expected(start, end));
        let addr = hashing_server().await;
        let req = Request::put(format!("http://{addr}/upload"))
            .body(slice)
            .unwrap();
        let res = send(proto, REQUEST_LIMIT, req)
            .await
            .unwrap_or_else(|err| panic!("{label}: {}", chain(&*err)));
        let seen = received(&res);
        assert_eq!(seen.version, format!("{:?}", proto.version()), "{label}");
        assert_eq!(seen.content_length, Some(4 * MIB), "{label}");
        assert_eq!(seen.transfer_encoding, None, "{label}");
        assert_eq!(seen.len, 4 * MIB, "{label}");
        assert_eq!(seen.sha256, expected, "{label}");
    }

    #[tokio::test]
    async fn h1_sparse_file_slice_across_4_gib_uploads() {
        sparse_slice_upload(Proto::H1).await;
    }

    #[tokio::test]
    async fn h2_sparse_file_slice_across_4_gib_uploads() {
        sparse_slice_upload(Proto::H2).await;
    }
}
