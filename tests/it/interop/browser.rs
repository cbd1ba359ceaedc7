//! A real browser as the peer of `serve::respond`: Debian's Chromium,
//! headless, driven by playwright-core (`peers/browser.mjs`), opens a page
//! (`peers/player.html`) served by axum that plays an MP4 made here by
//! ffmpeg (40 s of H.264, ~50 MB, its index at the end) and seeks to its
//! middle, then `fetch()`es a 128 MiB file reading it chunk by chunk. The
//! server logs every request the browser made and every byte it sent;
//! the page reports where the video landed and what the fetch read (its
//! length and a checksum of every byte). A screenshot after the seek is
//! kept at `target/interop/browser-seek.png`.
//!
//! Twice: with Chromium's HTTP cache off, its media requests are plain
//! ranges (`bytes=0-`, the index at the tail, `bytes=N-` for the seek);
//! with the cache on it also sends bounded ranges with `If-Range` and
//! ranges with `If-None-Match`, and every answer is checked against what
//! RFC 9110 asks for those headers.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use http::header;
use http_body::{Body, Frame, SizeHint};
use mmap_body::MmapBody;
use mmap_body_devkit::files::write_pattern;
use mmap_body_devkit::server::serve_axum;
use serde_json::Value;

use super::{npm_dir, peer, record, setup_dir, Peer};

const BIG: u64 = 128 * 1024 * 1024;

/// One request the browser made, and what the server answered.
#[derive(Debug, Clone)]
struct Logged {
    path: String,
    range: Option<String>,
    if_range: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
    status: u16,
    content_range: Option<String>,
    etag: Option<String>,
    /// Body bytes the server handed to hyper before the browser stopped
    /// reading (it aborts media requests it no longer needs).
    sent: Arc<AtomicU64>,
}

#[derive(Clone)]
struct Site {
    media: PathBuf,
    log: Arc<Mutex<Vec<Logged>>>,
}

/// A response body that counts what it yields.
struct Counted {
    inner: mmap_body::MmapBody,
    sent: Arc<AtomicU64>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = mmap_body::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, mmap_body::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            let len = frame.data_ref().map_or(0, |d| d.len() as u64);
            self.sent.fetch_add(len, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn page() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/interop/peers/player.html")
}

async fn index() -> Html<String> {
    Html(std::fs::read_to_string(page()).expect("the page"))
}

async fn media(
    State(site): State<Site>,
    UrlPath(name): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let path = site.media.join(&name);
    // SAFETY: the test's own files, unchanged while the browser reads them.
    let Ok(body) = (unsafe { MmapBody::open(&path) }) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut res = mmap_body::serve::respond(&method, &headers, body);
    let kind = if name.ends_with(".mp4") {
        "video/mp4"
    } else {
        "application/octet-stream"
    };
    res.headers_mut()
        .insert(header::CONTENT_TYPE, kind.parse().unwrap());
    let text = |map: &HeaderMap, name: header::HeaderName| {
        map.get(name).map(|v| v.to_str().unwrap_or("?").to_owned())
    };
    let sent = Arc::new(AtomicU64::new(0));
    site.log.lock().unwrap().push(Logged {
        path: name,
        range: text(&headers, header::RANGE),
        if_range: text(&headers, header::IF_RANGE),
        if_none_match: text(&headers, header::IF_NONE_MATCH),
        if_modified_since: text(&headers, header::IF_MODIFIED_SINCE),
        status: res.status().as_u16(),
        content_range: text(res.headers(), header::CONTENT_RANGE),
        etag: text(res.headers(), header::ETAG),
        sent: sent.clone(),
    });
    res.map(|inner| axum::body::Body::new(Counted { inner, sent }))
}

/// The page's checksum of a file: `s = s * 31 + b` (mod 2^32) over every
/// byte, from 0.
fn checksum(path: &Path) -> u32 {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .iter()
        .fold(0u32, |s, &b| s.wrapping_mul(31).wrapping_add(u32::from(b)))
}

/// The first byte of a `bytes=N-` or `bytes=N-M` range.
fn range_start(range: &str) -> Option<u64> {
    range
        .strip_prefix("bytes=")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// What RFC 9110 asks of a GET with these headers for the file with
/// `etag`: 304 when `If-None-Match` matches it (§13.1.2; `Range` is then
/// ignored, §13.2.2), 206 for a range when `If-Range` is absent or names
/// it (§13.1.5), 200 otherwise.
fn expected_status(req: &Logged, etag: &str) -> u16 {
    if let Some(tags) = &req.if_none_match {
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        if tags
            .split(',')
            .any(|t| t.trim() == "*" || weak(t) == weak(etag))
        {
            return 304;
        }
    } else if req.if_modified_since.is_some() {
        // The file is older than any date the browser got from us.
        return 304;
    }
    match (&req.range, &req.if_range) {
        (Some(_), None) => 206,
        (Some(_), Some(tag)) if tag == etag => 206,
        _ => 200,
    }
}

struct Peers {
    node: Peer,
    chromium: Peer,
    ffmpeg: Peer,
    playwright: PathBuf,
}

fn peers() -> Option<Peers> {
    let chromium = peer("chromium", &["--version"], |line| {
        let version = line.strip_prefix("Chromium ")?.split_whitespace().next()?;
        Some(format!("Chromium {version}"))
    })?;
    let ffmpeg = peer("ffmpeg", &["-version"], |line| {
        let version = line
            .strip_prefix("ffmpeg version ")?
            .split_whitespace()
            .next()?;
        Some(format!("ffmpeg {version}"))
    })?;
    let node = peer("node", &["--version"], |line| Some(format!("node {line}")))?;
    let playwright = npm_dir("playwright-core@1.64.1")?;
    Some(Peers {
        node,
        chromium,
        ffmpeg,
        playwright,
    })
}

/// 40 s of 1280×720 H.264 at a constant 10 Mbit/s (bytes in step with
/// time), a key frame each second, a clock burned in, the index at the end
/// (no `+faststart`: the browser asks for the tail first).
async fn make_clip(ffmpeg: &Peer, out: &Path) {
    let font = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf";
    let clock = if Path::new(font).exists() {
        format!(
            ",drawtext=fontfile={font}:fontsize=72:fontcolor=white:box=1:boxcolor=black@0.7:x=40:y=40:text='t=%{{pts\\:hms}} f=%{{n}}'"
        )
    } else {
        String::new()
    };
    let status = tokio::process::Command::new(&ffmpeg.program)
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1280x720:rate=30:duration=40{clock}"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-pix_fmt", "yuv420p", "-g", "30", "-b:v", "10M", "-minrate", "10M",
        ])
        .args([
            "-maxrate",
            "10M",
            "-bufsize",
            "2M",
            "-x264-params",
            "nal-hrd=cbr",
        ])
        .args(["-an", "-f", "mp4"])
        .arg(out)
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(120), status)
        .await
        .expect("ffmpeg ended in time")
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg: {status}");
}

/// Runs the driver against `url`; the browser's version and the page's
/// result.
async fn drive(peers: &Peers, url: &str, shot: &Path, cache: bool) -> (String, Value) {
    let tmp = tempfile::tempdir().unwrap();
    let script = page().with_file_name("browser.mjs");
    let mut command = tokio::process::Command::new(&peers.node.program);
    command
        .arg(&script)
        .arg(url)
        .arg(shot)
        .arg("60000")
        .env("PLAYWRIGHT_DIR", &peers.playwright)
        .env("CHROMIUM", &peers.chromium.program)
        .env("TMPDIR", tmp.path())
        .kill_on_drop(true);
    if cache {
        command.env("BROWSER_CACHE", "1");
    }
    let out = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("the browser run ended in time")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser.mjs {:?}: {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let version = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BROWSER "))
        .unwrap_or("?")
        .to_owned();
    let result = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("the page's result: {e}: {stdout}"));
    (version, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_seeks_and_fetches() {
    let Some(peers) = peers() else { return };
    let files = tempfile::tempdir().unwrap();
    let clip = files.path().join("clip.mp4");
    make_clip(&peers.ffmpeg, &clip).await;
    let big = files.path().join("big.bin");
    write_pattern(&big, BIG, |_| {}).unwrap();
    let clip_len = std::fs::metadata(&clip).unwrap().len();
    let big_sum = checksum(&big);

    let site = Site {
        media: files.path().to_owned(),
        log: Default::default(),
    };
    let app = axum::Router::new()
        .route("/", axum::routing::get(index))
        .route("/media/{name}", axum::routing::get(media))
        .with_state(site.clone());
    let addr = serve_axum(app).await;
    let url = format!("http://{addr}/");
    let out = setup_dir();
    std::fs::create_dir_all(&out).unwrap();

    let mut browser = String::new();
    for cache in [false, true] {
        site.log.lock().unwrap().clear();
        let shot = out.join(if cache {
            "browser-seek-cache.png"
        } else {
            "browser-seek.png"
        });
        let (version, result) = drive(&peers, &url, &shot, cache).await;
        browser = version;
        let case = if cache { "cache on" } else { "cache off" };

        // Where the video landed, as the page saw it.
        let video = &result["video"];
        let (target, at) = (video["target"].as_f64(), video["currentTime"].as_f64());
        let (target, at) = (target.expect("a target"), at.expect("a position"));
        assert!((at - target).abs() < 1.0, "{case}: the seek: {result}");
        assert_eq!(video["videoWidth"], 1280, "{case}: {result}");
        assert!(target > 10.0, "{case}: the middle of 40 s: {result}");

        // What the server saw of the video: the browser's ranges answered
        // as asked, the seek a range from the middle, no whole download.
        let log: Vec<Logged> = site.log.lock().unwrap().clone();
        let clip_log: Vec<&Logged> = log.iter().filter(|l| l.path == "clip.mp4").collect();
        let etag = clip_log
            .iter()
            .find_map(|l| l.etag.clone())
            .unwrap_or_else(|| panic!("{case}: no ETag: {clip_log:?}"));
        for req in &clip_log {
            assert_eq!(req.status, expected_status(req, &etag), "{case}: {req:?}");
            if req.status == 206 {
                let start = range_start(req.range.as_deref().unwrap()).unwrap();
                let answered = req.content_range.as_deref().unwrap();
                assert!(
                    answered.starts_with(&format!("bytes {start}-"))
                        && answered.ends_with(&format!("/{clip_len}")),
                    "{case}: {req:?}"
                );
            }
        }
        let seek = clip_log.iter().find(|l| {
            l.status == 206
                && l.range
                    .as_deref()
                    .and_then(range_start)
                    .is_some_and(|s| s > clip_len / 4 && s < clip_len * 3 / 4)
        });
        assert!(
            seek.is_some(),
            "{case}: no range from the middle: {clip_log:?}"
        );
        assert!(
            clip_log.iter().all(|l| l.status != 200),
            "{case}: a whole download: {clip_log:?}"
        );
        let sent: u64 = clip_log
            .iter()
            .map(|l| l.sent.load(Ordering::Relaxed))
            .sum();
        assert!(
            sent < 2 * clip_len,
            "{case}: {sent} video bytes sent for a file of {clip_len}"
        );

        // The fetch, read chunk by chunk: every byte, in order.
        let fetch = &result["fetch"];
        assert_eq!(fetch["status"], 200, "{case}: {result}");
        assert_eq!(fetch["bytes"], BIG, "{case}: {result}");
        assert_eq!(fetch["contentLength"], BIG.to_string(), "{case}: {result}");
        assert_eq!(fetch["checksum"], big_sum, "{case}: {result}");
        assert!(fetch["reads"].as_u64().unwrap() > 1, "{case}: {result}");
        assert!(std::fs::metadata(&shot).unwrap().len() > 0);
        eprintln!(
            "{case}: video requests {:?}, {sent} of {clip_len} bytes sent; screenshot {}",
            clip_log
                .iter()
                .map(|l| (
                    l.range.clone(),
                    l.if_range.is_some(),
                    l.if_none_match.is_some(),
                    l.status
                ))
                .collect::<Vec<_>>(),
            shot.display()
        );
    }
    record(
        "chromium-1-video",
        "Chromium, headless (playwright-core)",
        &format!("Chromium {browser}, {}", peers.ffmpeg.version),
        "HTTP/1.1",
        "plays a 40 s H.264 MP4 from `serve::respond` and seeks to its middle: lands within 1 s, the seek is a `Range` from the middle answered 206, no 200 and under 2× the file sent; with its cache on, `If-Range` / `If-None-Match` answered as RFC 9110 says; a 128 MiB `fetch()` read in chunks, every byte (checksum) equal; screenshot `target/interop/browser-seek.png`",
    );
}
