//! Python servers as the peers of `MmapBody` uploads: an HTTP/2 server
//! written with the `h2` package (prior knowledge, with its default
//! settings and with 16 MiB frames and windows) and an `aiohttp` HTTP/1.1
//! server. Each reports what it received, as it counted and hashed it
//! itself (`peers/h2_server.py`, `peers/aiohttp_server.py`: the JSON of
//! its answer and of its log line): the length, the `Content-Length` it
//! was sent, the SHA-256, the DATA frames.
//!
//! The servers run in a venv under `target/interop/venv` that the first
//! test to need it makes, with the packages [`PACKAGES`] pins.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use mmap_body::MmapBody;
use mmap_body_devkit::bodies::Streamed;
use mmap_body_devkit::files::{test_file, TestFile};
use mmap_body_devkit::server::client_builder;
use serde_json::Value;

use super::{peer, record, spawn_listening, venv, Peer};

const MIB: u64 = 1024 * 1024;
const LIMIT: Duration = Duration::from_secs(120);

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/interop/peers")
        .join(name)
}

/// The packages of the peers, pinned so that the table's versions are the
/// run's.
const PACKAGES: [&str; 2] = ["h2==4.4.1", "aiohttp==3.14.5"];

/// The venv's Python running `script` (`script --version` prints
/// `<package> <version>`), the venv made if missing.
pub(super) fn python_peer(name: &str, package: &str) -> Option<(Peer, PathBuf)> {
    let python = venv(&PACKAGES)?;
    let script = script(name);
    let script_arg = script.to_str().expect("a UTF-8 path").to_owned();
    let found = peer(&python, &[&script_arg, "--version"], |line| {
        line.strip_prefix(&format!("{package} "))
            .map(|v| format!("{package} {v}"))
    })?;
    Some((found, script))
}

/// A running Python server and its log of completed and broken requests.
struct PyServer {
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl PyServer {
    async fn start(peer: &(Peer, PathBuf), args: &[&str]) -> PyServer {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.jsonl");
        let mut command = tokio::process::Command::new(&peer.0.program);
        command.arg(&peer.1).arg("--log").arg(&log).args(args);
        let (child, port) = spawn_listening(command, &peer.0.version).await;
        PyServer {
            port,
            log,
            _dir: dir,
            _child: child,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The server's log, one report per request.
    fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect()
    }
}

/// The peer's report (its answer) says it received `len` bytes with this
/// SHA-256, declared as `content_length`, complete; its log says the same.
fn assert_report(report: &Value, server: &PyServer, len: u64, sha: &str, content_length: Value) {
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["received"], len, "{report}");
    assert_eq!(report["sha256"], sha, "{report}");
    assert_eq!(report["content_length"], content_length, "{report}");
    let logged = server.log();
    assert!(
        logged.iter().any(|l| l == report),
        "the log holds the report: {logged:?}"
    );
}

async fn report_of<B>(res: http::Response<B>) -> Value
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    assert_eq!(res.status(), 200);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).expect("the peer's JSON report")
}

/// A client of `builder` with `TCP_NODELAY`, as a proxy's should be: the
/// `h2` server's default 64 KiB window is given back a half at a time,
/// and a sender that holds its next 16 KiB frame back for the peer's
/// delayed ACK runs a hundred times slower.
fn nodelay<B>(builder: &hyper_util::client::legacy::Builder) -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<tower::BoxError>,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    builder.build(connector)
}

fn open(file: &TestFile) -> MmapBody {
    // SAFETY: the temp file is this test's and unchanged while mapped.
    unsafe { MmapBody::open(&file.path) }.expect("open")
}

/// 256 MiB `MmapBody` POSTs to the `h2` server over HTTP/2 prior
/// knowledge: its default settings (16 KiB frames, a 64 KiB window), then
/// 16 MiB − 1 frames and 16 MiB windows on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_h2_server_receives_uploads_whole() {
    let Some(peer) = python_peer("h2_server.py", "h2") else {
        return;
    };
    let file = test_file(256 * MIB);
    let big = (16 << 20) - 1;
    let cases: [(&str, Vec<String>); 2] = [
        ("default", vec![]),
        (
            "16 MiB frames and windows",
            vec![
                "--max-frame-size".into(),
                big.to_string(),
                "--window".into(),
                (16 << 20).to_string(),
            ],
        ),
    ];
    for (name, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = PyServer::start(&peer, &args).await;
        let mut builder = client_builder(true);
        if !args.is_empty() {
            builder
                .http2_max_frame_size(big)
                .http2_initial_stream_window_size(16 << 20)
                .http2_initial_connection_window_size(16 << 20);
        }
        let http = nodelay(&builder);
        let req = Request::post(server.url("/upload"))
            .body(open(&file))
            .unwrap();
        let res = tokio::time::timeout(LIMIT, http.request(req))
            .await
            .expect("in time")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(res.version(), http::Version::HTTP_2);
        let report = report_of(res).await;
        assert_report(&report, &server, file.len, &file.sha256, file.len.into());
        let largest = report["max_data_frame"].as_u64().unwrap();
        if args.is_empty() {
            assert!(
                largest <= 16384,
                "{name}: a frame past the default: {report}"
            );
        } else {
            assert!(
                largest > 16384,
                "{name}: the larger frames unused: {report}"
            );
        }
    }
    record(
        "python-1-h2",
        "Python `h2` server",
        &peer.0.version,
        "HTTP/2 (prior knowledge)",
        "256 MiB `MmapBody` POST with its default settings and with 16 MiB frames and windows: the length it counted equals `Content-Length`, its SHA-256 equal, its DATA frames within its `SETTINGS_MAX_FRAME_SIZE` (and larger than 16 KiB when allowed)",
    );
}

/// A 256 MiB `MmapBody` POST (`Content-Length`) and a 32 MiB streamed body
/// of unknown size (`Transfer-Encoding: chunked`) to the `aiohttp` server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_aiohttp_server_receives_uploads_whole() {
    let Some(peer) = python_peer("aiohttp_server.py", "aiohttp") else {
        return;
    };
    let server = PyServer::start(&peer, &[]).await;
    let file = test_file(256 * MIB);
    let req = Request::post(server.url("/upload"))
        .body(open(&file))
        .unwrap();
    let res = tokio::time::timeout(LIMIT, nodelay(&client_builder(false)).request(req))
        .await
        .expect("in time")
        .expect("an answer");
    let report = report_of(res).await;
    assert_report(&report, &server, file.len, &file.sha256, file.len.into());
    assert_eq!(report["transfer_encoding"], Value::Null, "{report}");

    let (body, sha): (Streamed, String) = Streamed::random(32 * MIB as usize, 256 * 1024);
    let req = Request::post(server.url("/streamed")).body(body).unwrap();
    let res = tokio::time::timeout(
        LIMIT,
        nodelay::<Streamed>(&client_builder(false)).request(req),
    )
    .await
    .expect("in time")
    .expect("an answer");
    let report = report_of(res).await;
    assert_report(&report, &server, 32 * MIB, &sha, Value::Null);
    assert_eq!(report["transfer_encoding"], "chunked", "{report}");
    record(
        "python-2-aiohttp",
        "Python `aiohttp` server",
        &peer.0.version,
        "HTTP/1.1",
        "256 MiB `MmapBody` POST (`Content-Length`, no `Transfer-Encoding`) and a 32 MiB body of unknown length (`chunked`): the length and SHA-256 it computed equal",
    );
}
