//! `download::save`: a download "killed" partway (its future dropped,
//! as a killed process stops writing) leaves `<name>.part` and
//! `<name>.part.meta`; the next call resumes it, or starts over when the
//! file changed; success leaves the one file. A write failing past
//! `RLIMIT_FSIZE` (a full disk) keeps the `.part` for the next call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use mmap_body::download::{save, Saved};
use mmap_body::ErrorKind;
use mmap_body_devkit::files::{sha256_file, test_file, TestFile};
use mmap_body_devkit::harness::chain;
use mmap_body_devkit::relay::{Cut, Relay};
use mmap_body_devkit::server::client;

use super::{downloader, layer, own_server, replace, serve_file, LIMIT, MIB};

fn get(uri: &str) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn part(path: &Path) -> PathBuf {
    path.with_file_name(format!(
        "{}.part",
        path.file_name().unwrap().to_string_lossy()
    ))
}

/// Saves from `uri` until the `.part` holds at least `bytes`, then drops
/// the future: what a kill leaves (the relay stalls the answer after a
/// while, so the download cannot finish first).
async fn save_until_killed(uri: &str, path: &Path, bytes: u64) {
    let part = part(path);
    let saving = save(client::<Empty<Bytes>>(false), get(uri), path);
    let grown = async {
        while std::fs::metadata(&part).map_or(0, |m| m.len()) < bytes {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(LIMIT, async {
        tokio::select! {
            done = saving => panic!("the download finished before its kill: {done:?}"),
            () = grown => {}
        }
    })
    .await
    .expect("the .part grew");
    // The call is gone: nothing of it writes any more (a write it had on
    // the blocking pool finished in its drop).
    let held = std::fs::metadata(&part).unwrap().len();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        held,
        "a write of the dropped call landed after it"
    );
}

async fn save_ok(uri: &str, path: &Path) -> Saved {
    let saving = save(downloader(layer()), get(uri), path);
    match tokio::time::timeout(LIMIT, saving).await.expect("bounded") {
        Ok(saved) => saved,
        Err(err) => panic!("{}", chain(&*err)),
    }
}

/// A save of a 16 MiB file, served by this crate's server or by
/// `ServeFile` through a relay that stalls after 10 MiB, killed once it
/// wrote 4 MiB into `out/big.bin.part`.
struct Killed {
    file: TestFile,
    relay: Relay,
    out: tempfile::TempDir,
    path: PathBuf,
}

async fn killed(serve_file_server: bool) -> Killed {
    let file = test_file(16 * MIB);
    let server = if serve_file_server {
        serve_file(file.path.clone()).await
    } else {
        own_server(file.path.clone()).await
    };
    let relay = Relay::start(server, [Cut::StallAfter(10 * MIB)]).await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("big.bin");
    save_until_killed(&relay.uri("/f"), &path, 4 * MIB).await;
    Killed {
        file,
        relay,
        out,
        path,
    }
}

/// Served from `src` (own server or `ServeFile`), saved into a dir of
/// its own.
async fn killed_then_resumed(serve_file_server: bool) {
    let Killed {
        file,
        relay,
        out,
        path,
    } = killed(serve_file_server).await;
    assert_eq!(names(out.path()), ["big.bin.part", "big.bin.part.meta"]);
    let held = std::fs::metadata(part(&path)).unwrap().len();
    assert!(held >= 4 * MIB && held < file.len);

    let saved = save_ok(&relay.uri("/f"), &path).await;
    assert_eq!(saved.resumed_from, held, "resumed from the .part");
    assert_eq!(saved.written, file.len - held);
    assert_eq!(saved.len, file.len);
    assert_eq!(sha256_file(&path).unwrap(), file.sha256);
    assert_eq!(names(out.path()), ["big.bin"], "nothing else left");
}

#[tokio::test]
async fn a_killed_save_is_resumed_serve_respond() {
    killed_then_resumed(false).await;
}

#[tokio::test]
async fn a_killed_save_is_resumed_serve_file() {
    killed_then_resumed(true).await;
}

/// The file changed between the kill and the next call: the `.part` is
/// started over (own server: `If-Range` gives a `200`; `ServeFile`
/// ignores `If-Range`, and its `206` of another `ETag` makes `save` ask
/// again from zero), never mixed.
async fn changed_starts_over(serve_file_server: bool) {
    let Killed {
        file,
        relay,
        out,
        path,
    } = killed(serve_file_server).await;
    let new = replace(&file.path, file.len);
    let saved = save_ok(&relay.uri("/f"), &path).await;
    assert_eq!(saved.resumed_from, 0, "started over");
    assert_eq!(saved.written, file.len);
    assert!(std::fs::read(&path).unwrap() == new, "the new version only");
    assert_eq!(names(out.path()), ["big.bin"]);
}

#[tokio::test]
async fn a_changed_file_starts_over_serve_respond() {
    changed_starts_over(false).await;
}

#[tokio::test]
async fn a_changed_file_starts_over_serve_file() {
    changed_starts_over(true).await;
}

/// Three cuts within one call, with the layer: one file, whole.
#[tokio::test]
async fn save_through_three_cuts() {
    let file = test_file(16 * MIB);
    let server = own_server(file.path.clone()).await;
    let relay = Relay::start(server, [3 * MIB, 3 * MIB, 3 * MIB].map(Cut::After)).await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("big.bin");
    let saved = save_ok(&relay.uri("/f"), &path).await;
    assert_eq!((saved.resumed_from, saved.len), (0, file.len));
    assert_eq!(sha256_file(&path).unwrap(), file.sha256);
    assert_eq!(names(out.path()), ["big.bin"]);
    assert_eq!(relay.connections(), 4);
}

/// A whole `.part` (killed between its last write and the rename): the
/// next call asks for the last byte again, which proves the version, and
/// renames.
#[tokio::test]
async fn a_whole_part_is_checked_and_renamed() {
    let file = test_file(8 * MIB);
    let server = own_server(file.path.clone()).await;
    let relay = Relay::start(server, [Cut::StallAfter(6 * MIB)]).await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("big.bin");
    save_until_killed(&relay.uri("/f"), &path, 4 * MIB).await;
    // The rest written as the killed call would have.
    std::fs::copy(&file.path, part(&path)).unwrap();
    let saved = save_ok(&relay.uri("/f"), &path).await;
    assert_eq!(
        (saved.resumed_from, saved.written),
        (file.len - 1, 1),
        "{saved:?}"
    );
    assert_eq!(sha256_file(&path).unwrap(), file.sha256);
    assert_eq!(names(out.path()), ["big.bin"]);
}

/// A `404` keeps the `.part` and its `.meta`.
#[tokio::test]
async fn an_error_status_keeps_the_part() {
    let file = test_file(8 * MIB);
    let server = own_server(file.path.clone()).await;
    let relay = Relay::start(server, [Cut::StallAfter(6 * MIB)]).await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("big.bin");
    save_until_killed(&relay.uri("/f"), &path, 4 * MIB).await;
    let axum404 = mmap_body_devkit::server::serve_axum(axum::Router::new()).await;
    // Same URI path, another server: the .meta's URI differs, so a 404
    // from there must not touch this .part either.
    let err = save(
        client::<Empty<Bytes>>(false),
        get(&format!("http://{axum404}/f")),
        &path,
    )
    .await
    .unwrap_err();
    assert_eq!(
        mmap_body::Error::find_in(&*err).map(|e| e.kind()),
        Some(ErrorKind::Protocol),
        "{err}"
    );
    assert_eq!(names(out.path()), ["big.bin.part", "big.bin.part.meta"]);
}

/// A write that fails (past `RLIMIT_FSIZE`, as on a full disk): an `Io`
/// error that keeps the `.part` with what was written; with the limit
/// lifted, the next call resumes from there. In a child process: the
/// limit is per process.
#[test]
fn a_full_disk_keeps_the_part() {
    if std::env::var("MMAP_BODY_CHILD").as_deref() == Ok("download-fsize") {
        let set_limit = |bytes: libc::rlim_t| {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: changing a resource limit of this child process,
            // which does nothing else.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
        };
        // SAFETY: as above; the write past the limit then fails with
        // EFBIG instead of killing the process.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let file = test_file(16 * MIB);
            let server = own_server(file.path.clone()).await;
            let uri = format!("http://{server}/f");
            let out = tempfile::tempdir().unwrap();
            let path = out.path().join("big.bin");
            set_limit(6 * MIB as libc::rlim_t);
            let err = save(downloader(layer()), get(&uri), &path)
                .await
                .unwrap_err();
            assert_eq!(
                mmap_body::Error::find_in(&*err).map(|e| e.kind()),
                Some(ErrorKind::Io),
                "{err}"
            );
            assert_eq!(names(out.path()), ["big.bin.part", "big.bin.part.meta"]);
            let held = std::fs::metadata(part(&path)).unwrap().len();
            assert!(held > 0 && held <= 6 * MIB, "{held}");
            set_limit(libc::RLIM_INFINITY);
            let saved = save_ok(&uri, &path).await;
            assert_eq!(saved.resumed_from, held);
            assert_eq!(sha256_file(&path).unwrap(), file.sha256);
            assert_eq!(names(out.path()), ["big.bin"]);
        });
        std::process::exit(0);
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--exact")
        .arg(mmap_body_devkit::harness::test_name(
            module_path!(),
            "a_full_disk_keeps_the_part",
        ))
        .arg("--nocapture")
        .env("MMAP_BODY_CHILD", "download-fsize")
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// A real `kill -9` of a process in the middle of `save` (a child running
/// this test with `MMAP_BODY_CHILD=download-kill`): the `.part` and
/// `.meta` it leaves are resumed by the next call, here, to the whole file.
#[tokio::test]
async fn a_save_killed_with_sigkill_is_resumed() {
    if std::env::var("MMAP_BODY_CHILD").as_deref() == Ok("download-kill") {
        let uri = std::env::var("MMAP_BODY_URI").unwrap();
        let path = PathBuf::from(std::env::var("MMAP_BODY_PATH").unwrap());
        // The relay stalls the answer: this never returns, it is killed.
        let _ = save(client::<Empty<Bytes>>(false), get(&uri), &path).await;
        std::process::exit(3);
    }
    let file = test_file(16 * MIB);
    let server = own_server(file.path.clone()).await;
    let relay = Relay::start(server, [Cut::StallAfter(10 * MIB)]).await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("big.bin");
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg("--exact")
        .arg(mmap_body_devkit::harness::test_name(
            module_path!(),
            "a_save_killed_with_sigkill_is_resumed",
        ))
        .env("MMAP_BODY_CHILD", "download-kill")
        .env("MMAP_BODY_URI", relay.uri("/f"))
        .env("MMAP_BODY_PATH", &path)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let grown = async {
        while std::fs::metadata(part(&path)).map_or(0, |m| m.len()) < 4 * MIB {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(LIMIT, grown)
        .await
        .expect("the .part grew");
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "{status:?}");
    assert_eq!(names(out.path()), ["big.bin.part", "big.bin.part.meta"]);
    let held = std::fs::metadata(part(&path)).unwrap().len();
    let saved = save_ok(&relay.uri("/f"), &path).await;
    assert_eq!(saved.resumed_from, held);
    assert_eq!(sha256_file(&path).unwrap(), file.sha256);
    assert_eq!(names(out.path()), ["big.bin"]);
}
