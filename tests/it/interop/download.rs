//! Resumed downloads from servers no one here wrote (issue #33): nginx's
//! static files and aiohttp's (`peers/aiohttp_static.py`), each behind
//! `devkit::relay` cutting three connections of one 64 MiB download (at
//! 10, 15 and 20 MiB of each), fetched by a hyper-util client with
//! `ResumeDownloadLayer`: whole and equal (SHA-256), three resumes, the
//! file crossing the relay once. And the file replaced between the first
//! bytes and the cut: `Modified`, every byte handed out the old file's.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use mmap_body::download::ResumeDownloadLayer;
use mmap_body::ErrorKind;
use mmap_body_devkit::files::{sha256, test_file};
use mmap_body_devkit::harness::chain;
use mmap_body_devkit::relay::{Cut, Relay};
use mmap_body_devkit::server::client;
use tower::Layer;

use super::nginx::{nginx, Nginx};
use super::python::python_peer;
use super::{record, spawn_listening};

const MIB: u64 = 1024 * 1024;
/// What a download handed out, and how it ended.
type Got = crate::download::Fetched;

/// GETs `uri` through the layer; `after_first` runs after the first frame.
async fn download(uri: &str, after_first: impl FnOnce()) -> Got {
    let service = ResumeDownloadLayer::new()
        .backoff(Duration::from_millis(1), Duration::from_millis(20))
        .stall_timeout(Some(Duration::from_secs(5)))
        .layer(client::<Empty<Bytes>>(false));
    let got = crate::download::fetch(service, uri, &[], after_first).await;
    assert_eq!(got.status, 200, "{uri}");
    got
}

/// Three cuts in one download of the file the server has at `path`.
async fn three_cuts(server: std::net::SocketAddr, path: &str, sha: &str, len: u64) -> Got {
    let relay = Relay::start(server, [10 * MIB, 15 * MIB, 20 * MIB].map(Cut::After)).await;
    let got = download(&relay.uri(path), || {}).await;
    assert!(
        got.end.is_ok(),
        "{}",
        chain(&**got.end.as_ref().unwrap_err())
    );
    assert_eq!(got.bytes.len() as u64, len);
    assert_eq!(sha256(&got.bytes), sha, "whole and equal");
    assert_eq!(got.resumed_at.len(), 3, "{:?}", got.resumed_at);
    assert_eq!(relay.connections(), 4);
    assert!(relay.bytes_to_clients() < len + 64 * 1024);
    got
}

/// The file at `path` (served as `uri`) replaced by a rename once the
/// first bytes arrived: the resume is refused, nothing of the new file
/// handed out.
async fn replaced(server: std::net::SocketAddr, uri_path: &str, path: &Path) {
    let old = std::fs::read(path).unwrap();
    let relay = Relay::start(server, [Cut::After(8 * MIB)]).await;
    let target = path.to_owned();
    let got = download(&relay.uri(uri_path), move || {
        let mut new = vec![0u8; old_len(&target)];
        mmap_body_devkit::files::pattern(0xfeed, &mut new);
        let tmp = target.with_extension("new");
        std::fs::write(&tmp, &new).unwrap();
        let file = std::fs::File::options().write(true).open(&tmp).unwrap();
        file.set_modified(std::time::SystemTime::now() + Duration::from_secs(10))
            .unwrap();
        std::fs::rename(&tmp, &target).unwrap();
    })
    .await;
    let kind = got
        .end
        .as_ref()
        .err()
        .and_then(|e| mmap_body::Error::find_in(&**e))
        .map(|e| e.kind());
    assert_eq!(kind, Some(ErrorKind::Modified), "{:?}", got.end.err());
    assert!(got.bytes.len() < old.len());
    assert!(old.starts_with(&got.bytes), "only the old file's bytes");
}

fn old_len(path: &Path) -> usize {
    std::fs::metadata(path).unwrap().len() as usize
}

#[tokio::test]
async fn nginx_static_three_cuts_and_a_replaced_file() {
    let Some(peer) = nginx() else { return };
    let nginx = Nginx::start(&peer, "", "location / { }").await;
    let file = test_file(64 * MIB);
    let served = nginx.stored("/big.bin");
    std::fs::copy(&file.path, &served).unwrap();
    let server: std::net::SocketAddr = nginx
        .url("http", "")
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let got = three_cuts(server, "/big.bin", &file.sha256, file.len).await;
    let etag = got.etag.unwrap_or_default();
    assert!(etag.starts_with('"'), "nginx's ETag is strong: {etag}");
    replaced(server, "/big.bin", &served).await;
    record(
        "download-nginx",
        "nginx (static files)",
        &peer.version,
        "HTTP/1.1",
        "64 MiB download cut three times (relay): resumed with `Range` + `If-Range: <ETag>`, SHA-256 equal; file replaced before the resume: `Modified`, no byte of the new file",
    );
}

#[tokio::test]
async fn aiohttp_static_three_cuts_and_a_replaced_file() {
    let Some(peer) = python_peer("aiohttp_static.py", "aiohttp") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let file = test_file(64 * MIB);
    let served = root.path().join("big.bin");
    std::fs::copy(&file.path, &served).unwrap();
    let mut command = tokio::process::Command::new(&peer.0.program);
    command.arg(&peer.1).arg("--root").arg(root.path());
    let (_child, port) = spawn_listening(command, &peer.0.version).await;
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let got = three_cuts(server, "/big.bin", &file.sha256, file.len).await;
    let etag = got.etag.unwrap_or_default();
    assert!(etag.starts_with('"'), "aiohttp's ETag is strong: {etag}");
    replaced(server, "/big.bin", &served).await;
    record(
        "download-aiohttp",
        "aiohttp (static files)",
        &peer.0.version,
        "HTTP/1.1",
        "64 MiB download cut three times (relay): resumed with `Range` + `If-Range: <ETag>`, SHA-256 equal; file replaced before the resume: `Modified`, no byte of the new file",
    );
}
